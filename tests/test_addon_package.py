"""The extension package: builds into a zip that Blender's own validator accepts,
installs and enables in the real bpy (with shared/ bundled inside), and the
add-on's code keeps to relative imports and never imports torch."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import build_extension  # noqa: E402

pytest.importorskip("bpy")
pytestmark = pytest.mark.blender

# What add-on modules may import absolutely: Blender's own modules, numpy and the stdlib.
ALLOWED_TOP = {"bpy", "bmesh", "mathutils", "bpy_extras", "addon_utils", "numpy", "gpu"}


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    return build_extension.build(str(out), with_wheels=False)


def test_zip_passes_blenders_extension_validator(built_zip):
    ok, msg = build_extension.validate(built_zip)
    assert build_extension.blender_validator() is not None
    assert ok, msg
    names = zipfile.ZipFile(built_zip).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names
    assert "shared/client.py" in names and "shared/avatar.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)


def test_validator_rejects_a_broken_manifest(tmp_path):
    # The validator is not a rubber stamp: a manifest without a version fails.
    pkg = tmp_path / "metamorph"
    build_extension.stage(str(pkg), None)
    m = pkg / "blender_manifest.toml"
    m.write_text(m.read_text().replace('version = "0.1.0"\n', ""))
    ok, msg = build_extension.validate(build_extension.zip_dir(str(pkg), str(tmp_path / "bad.zip")))
    assert not ok and "version" in msg


def test_manifest_lists_downloaded_wheels(tmp_path):
    text = open(os.path.join(ROOT, "blender_addon", "blender_manifest.toml")).read()
    new = build_extension.set_wheels(text, ["msgpack-1.1.0-cp311-cp311-win_amd64.whl"])
    assert '"./wheels/msgpack-1.1.0-cp311-cp311-win_amd64.whl"' in new
    assert set(build_extension.PLATFORMS) == {"linux-x64", "windows-x64", "macos-arm64",
                                               "macos-x64"}
    for plat in build_extension.PLATFORMS:
        assert f'"{plat}"' in text


def test_zip_installs_and_enables_in_blender(built_zip, tmp_path):
    # A separate Blender process with its own user folder: the test never touches
    # the machine's real Blender configuration.
    script = tmp_path / "install.py"
    script.write_text(
        "import bpy, sys\n"
        "r = bpy.ops.extensions.package_install_files(filepath=sys.argv[-1], "
        "repo='user_default', enable_on_install=True)\n"
        "assert r == {'FINISHED'}, r\n"
        "mod = 'bl_ext.user_default.metamorph'\n"
        "assert mod in bpy.context.preferences.addons, list(bpy.context.preferences.addons.keys())\n"
        "p = bpy.context.preferences.addons[mod].preferences\n"
        "import importlib\n"
        "c = importlib.import_module(mod + '._shared')\n"
        "print('RESULT', p.backend_address, c.client.__name__, "
        "hasattr(bpy.types.Scene, 'metamorph'), bpy.ops.metamorph.stylize.poll())\n")
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user"))
    r = subprocess.run([sys.executable, str(script), built_zip], capture_output=True, text=True,
                       env=env, cwd=str(tmp_path), timeout=120)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT")), None)
    assert line is not None, r.stdout[-2000:] + r.stderr[-2000:]
    assert line.split()[1:] == ["tcp://127.0.0.1:5557",
                                "bl_ext.user_default.metamorph.shared.client", "True", "False"]
    # Nothing was written inside the installed extension's folder by enabling it.
    ext = tmp_path / "user" / "extensions" / "user_default" / "metamorph"
    written = [p for p in ext.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert {p.name for p in written} <= set(os.path.basename(n) for n in
                                            zipfile.ZipFile(built_zip).namelist())


def _imports(path):
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, 0
        elif isinstance(node, ast.ImportFrom):
            yield node.module or "", node.level


def test_addon_uses_relative_imports_only_and_never_torch():
    d = os.path.join(ROOT, "blender_addon")
    stdlib = set(sys.stdlib_module_names)
    for f in sorted(os.listdir(d)):
        if not f.endswith(".py"):
            continue
        for mod, level in _imports(os.path.join(d, f)):
            top = mod.split(".")[0]
            assert top not in ("torch", "backend"), f"{f} imports {mod}"
            if level == 0 and not (f == "_shared.py" and top == "shared"):
                assert top in ALLOWED_TOP or top in stdlib or top == "__future__", \
                    f"{f}: absolute import of {mod}"
