"""The import graph of ``backend/`` has no cycles, not even hidden ones.

Pure ``ast``: nothing is imported, so this runs without torch. Two rules:

1. Module-level imports (everything that runs when a module is imported: the module
   body and the bodies of its top-level ``if``/``try``/``with``/``class`` blocks, but
   not ``if TYPE_CHECKING:``) form no cycle.
2. A function-local import of another backend module is not a cycle in disguise: the
   imported module must not lead back (through any imports, module-level or local) to
   the importing module. Function-local imports of heavy third-party libraries (torch,
   mediapipe, ray) are outside ``backend/`` and so never in question here.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "backend"


def module_files(root: Path = ROOT, package: str = PACKAGE) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is_package) for every .py file under ``root/package``."""
    out = {}
    for p in sorted((root / package).rglob("*.py")):
        rel = p.relative_to(root).with_suffix("")
        parts = list(rel.parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(parts)] = (p, is_pkg)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(node: ast.AST, mod: str, is_pkg: bool, known: set[str]) -> list[str]:
    """The backend modules an Import/ImportFrom statement loads (submodule if it names one,
    else the package it imports from)."""
    found = []

    def known_prefix(name: str) -> str | None:
        parts = name.split(".")
        for k in range(len(parts), 0, -1):
            cand = ".".join(parts[:k])
            if cand in known:
                return cand
        return None

    if isinstance(node, ast.Import):
        for a in node.names:
            t = known_prefix(a.name)
            if t:
                found.append(t)
        return found
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
        up = node.level - 1
        base_parts = pkg[: len(pkg) - up] if up else pkg
        base = ".".join(base_parts + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    for a in node.names:
        sub = f"{base}.{a.name}"
        if sub in known:
            found.append(sub)
        else:
            t = known_prefix(base)
            if t:
                found.append(t)
    return found


def import_edges(files: dict[str, tuple[Path, bool]]):
    """(module-level edges, function-local edges): dicts module -> {target: line}."""
    known = set(files)
    top: dict[str, dict[str, int]] = {m: {} for m in files}
    local: dict[str, dict[str, int]] = {m: {} for m in files}
    for mod, (path, is_pkg) in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))

        def visit(node, in_function: bool):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for t in _targets(node, mod, is_pkg, known):
                    if t != mod:
                        (local if in_function else top)[mod].setdefault(t, node.lineno)
                return
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                for child in node.orelse:
                    visit(child, in_function)
                return
            inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            for child in ast.iter_child_nodes(node):
                visit(child, inner)

        visit(tree, False)
    return top, local


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def path_between(graph: dict[str, dict[str, int]], src: str, dst: str) -> list[str] | None:
    """A shortest import path src -> ... -> dst (breadth first), or None."""
    prev = {src: None}
    queue = [src]
    for v in queue:
        if v == dst:
            path = [v]
            while prev[path[-1]] is not None:
                path.append(prev[path[-1]])
            return path[::-1]
        for w in sorted(graph.get(v, {})):
            if w not in prev:
                prev[w] = v
                queue.append(w)
    return None


def hidden_cycles(top, local) -> list[str]:
    """Function-local imports A -> B where B leads back to A: one line per offence."""
    both = {m: {**top.get(m, {}), **local.get(m, {})} for m in set(top) | set(local)}
    found = []
    for a in sorted(local):
        for b, line in sorted(local[a].items()):
            back = path_between(both, b, a)
            if back:
                found.append(f"{a} (line {line}) imports {b} inside a function, and "
                             f"{' -> '.join(back)} imports it back")
    return found


def test_backend_has_no_module_level_import_cycle():
    top, _ = import_edges(module_files())
    assert len(top) > 20                                  # the walk found the backend
    cycles = find_cycles(top)
    assert not cycles, "module-level import cycles in backend/: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_function_local_import_hides_a_cycle():
    top, local = import_edges(module_files())
    offences = hidden_cycles(top, local)
    assert not offences, "function-local imports that hide an import cycle:\n" + "\n".join(offences)


def test_the_walk_sees_relative_imports_and_ignores_function_bodies(tmp_path):
    """The checker itself, on a tiny package: a module-level cycle through relative
    imports is found, a TYPE_CHECKING import is not an edge, and a function-local
    import that closes a cycle is reported as hidden."""
    pkg = tmp_path / "backend"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .a import x\n")
    (pkg / "sub" / "a.py").write_text("from . import b\nx = 1\n")
    (pkg / "sub" / "b.py").write_text("try:\n    from ..sub.a import x\nexcept ImportError:\n    pass\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .d import y\n"
                              "def f():\n    from .d import y\n    return y\n")
    (pkg / "d.py").write_text("from .c import f\ny = 2\n")
    top, local = import_edges(module_files(tmp_path, "backend"))
    assert find_cycles(top) == [["backend.sub.a", "backend.sub.b"]]
    assert "backend.d" not in top["backend.c"] and local["backend.c"] == {"backend.d": 5}
    assert hidden_cycles(top, local) == [
        "backend.c (line 5) imports backend.d inside a function, and backend.d -> backend.c imports it back"]
