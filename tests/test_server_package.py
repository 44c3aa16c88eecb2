"""Issue 9.3 / 9.8 and 14.12-13: the server package's structure, loud job handler
registry, one home for is_loopback, and the CLI's mapping of user mistakes to exit
codes with one sentence (a bug keeps its traceback)."""

from __future__ import annotations

import errno
import subprocess
import sys

import pytest

from conftest import ROOT
from shared import errors, protocol


def metamorph(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_server_is_a_package_of_small_modules_with_a_full_dispatch_table():
    files = sorted((ROOT / "backend" / "server").glob("*.py"))
    assert {f.stem for f in files} >= {"config", "cli", "avatars", "job_queue", "router", "runner"}
    assert not (ROOT / "backend" / "server.py").exists()
    for f in files:
        assert len(f.read_text().splitlines()) <= 500, f
    from backend.server import Server

    src = (ROOT / "backend" / "server" / "router.py").read_text()
    for kind in protocol.REQUEST_KINDS:  # every request kind has an entry in the table
        assert f'"{kind}": self._on_{kind}' in src
    assert "getattr(self" not in src  # no name-built dispatch
    assert Server.__module__ == "backend.server.router"


def test_queue_never_imports_the_socket_code():
    for mod in ("server/job_queue", "server/runner", "server/avatars", "style/guidance_cache"):
        src = (ROOT / "backend" / f"{mod}.py").read_text()
        assert "import zmq" not in src and "router" not in src.split('"""', 2)[-1], mod


def test_is_loopback_has_one_home_used_by_the_server():
    from backend import server
    from shared.endpoints import is_loopback

    assert server.is_loopback is is_loopback
    addon = (ROOT / "blender_addon" / "connection.py").read_text()
    assert "def is_loopback" not in addon or "shared" in addon  # the add-on helper switches it over


def test_builtin_handlers_are_loaded_loudly():
    from backend import jobs

    kinds = jobs.handlers()
    for kind in ("selfcheck", "stylize", "prepare"):
        assert kind in kinds, kind
    with pytest.raises(jobs.HandlerImportError, match="backend.style.jobz"):
        jobs.load_handler_modules({"backend.style.jobz": ("stylize",)})  # a renamed module
    with pytest.raises(jobs.HandlerImportError, match="did not register"):
        jobs.load_handler_modules({"backend.selfcheck": ("selfcheck", "stylise")})  # a renamed kind


def test_handler_validate_gets_the_server_limits():
    import inspect

    from backend import jobs

    for name, h in jobs.handlers().items():
        assert "limits" in inspect.signature(h.validate).parameters, name


def test_exit_codes_for_user_mistakes_and_bugs():
    assert errors.exit_code(errors.InvalidParams("x")) == 2
    assert errors.exit_code(errors.GuidanceUnavailable("x")) == 3
    assert errors.exit_code(PermissionError(errno.EACCES, "Permission denied", "/out")) == 2
    assert errors.exit_code(OSError(errno.ENOSPC, "No space left on device")) == 2
    assert errors.exit_code(OSError(errno.EIO, "I/O error")) is None  # not a user's doing
    assert errors.exit_code(ValueError("bug")) is None
    assert errors.one_sentence(PermissionError(errno.EACCES, "Permission denied", "/out")) == \
        "Permission denied: /out."


def test_cli_user_mistakes_exit_2_with_one_sentence(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for args in (["sample-avatar", "--out", str(blocker / "avatar.glb")],   # --out under a file
                 ["keys", "generate", "--out", str(blocker / "keys")]):
        r = metamorph(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr, r.stderr
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith(f"metamorph {args[0]}: ") and str(blocker) in last, last
