#!/usr/bin/env python3
"""Build the installable Metamorph extension zip.

    python scripts/build_extension.py --output-dir dist/

Stages ``blender_addon/`` with a copy of ``shared/`` inside it (imported
relatively, so nothing is added to Blender's top-level modules), downloads the
pyzmq and msgpack wheels for CPython 3.11 on linux-x64, windows-x64,
macos-arm64 and macos-x64 with ``pip download`` into ``wheels/`` (never
committed), lists them in the manifest, zips it as
``metamorph-<version>.zip`` and validates the zip with Blender's own extension
validator when it can find it (the bpy wheel ships it).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ["pyzmq", "msgpack"]
# Blender platform -> pip --platform tags (newest first; pip takes the first match).
PLATFORMS = {
    "linux-x64": ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "windows-x64": ["win_amd64"],
    "macos-arm64": ["macosx_11_0_arm64", "macosx_10_15_universal2", "macosx_10_9_universal2"],
    "macos-x64": ["macosx_10_15_x86_64", "macosx_10_9_x86_64", "macosx_10_15_universal2",
                  "macosx_10_9_universal2"],
}
EXCLUDE_DIRS = {"__pycache__", "tests", ".pytest_cache"}


def download_wheels(dest: str, pip: list[str] | None = None) -> list[str]:
    """``pip download`` every package for every platform into ``dest``; -> wheel file names."""
    os.makedirs(dest, exist_ok=True)
    pip = pip or [sys.executable, "-m", "pip"]
    for plat, tags in PLATFORMS.items():
        cmd = [*pip, "download", "--only-binary=:all:", "--no-deps", "--dest", dest,
               "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
               "--abi", "abi3", "--abi", "none", "--quiet"]
        for t in tags:
            cmd += ["--platform", t]
        for pkg in PACKAGES:
            r = subprocess.run(cmd + [pkg], capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"pip download {pkg} for {plat} failed:\n{r.stderr[-2000:]}")
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(dest, "*.whl")))


def set_wheels(manifest: str, wheels: list[str]) -> str:
    """The manifest text with ``wheels = [...]`` listing ``./wheels/<name>``."""
    items = ",\n".join(f'  "./wheels/{w}"' for w in wheels)
    value = f"wheels = [\n{items},\n]" if wheels else "wheels = []"
    new, n = re.subn(r"(?ms)^wheels\s*=\s*\[.*?\]", value, manifest)
    if n != 1:
        raise SystemExit("blender_manifest.toml must contain one 'wheels = [...]' entry.")
    return new


def manifest_version(text: str) -> str:
    m = re.search(r'(?m)^version\s*=\s*"([^"]+)"', text)
    return m.group(1) if m else "0.0.0"


def stage(dest: str, wheels_dir: str | None) -> str:
    """Copy the add-on, ``shared/`` and the wheels into ``dest``; -> manifest text."""
    def copy_tree(src, dst):
        for base, dirs, files in os.walk(src):
            dirs[:] = [d for d in dirs if d not in EXCLUDE_DIRS and not d.startswith(".")]
            rel = os.path.relpath(base, src)
            os.makedirs(os.path.join(dst, rel), exist_ok=True)
            for f in files:
                if f.endswith((".pyc", ".pyo")):
                    continue
                shutil.copy2(os.path.join(base, f), os.path.join(dst, rel, f))

    copy_tree(os.path.join(ROOT, "blender_addon"), dest)
    copy_tree(os.path.join(ROOT, "shared"), os.path.join(dest, "shared"))
    wheels = []
    if wheels_dir:
        os.makedirs(os.path.join(dest, "wheels"), exist_ok=True)
        for w in sorted(glob.glob(os.path.join(wheels_dir, "*.whl"))):
            shutil.copy2(w, os.path.join(dest, "wheels"))
            wheels.append(os.path.basename(w))
    path = os.path.join(dest, "blender_manifest.toml")
    text = set_wheels(open(path).read(), wheels)
    open(path, "w").write(text)
    return text


def zip_dir(src: str, out: str) -> str:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for base, dirs, files in os.walk(src):
            dirs.sort()
            for f in sorted(files):
                p = os.path.join(base, f)
                z.write(p, os.path.relpath(p, src))
    return out


def blender_validator() -> str | None:
    """Blender's ``blender_ext.py`` (what ``blender --command extension validate`` runs)."""
    try:
        import bpy  # noqa: F401  (the wheel ships Blender's scripts)
        base = os.path.dirname(bpy.__file__)
    except ImportError:
        return None
    hits = glob.glob(os.path.join(base, "..", "..", "addons_core", "bl_pkg", "cli", "blender_ext.py"))
    return os.path.abspath(hits[0]) if hits else None


def validate(zip_path: str) -> tuple[bool, str]:
    tool = blender_validator()
    if tool is None:
        return True, "Blender's validator not found (install the bpy wheel); skipped."
    r = subprocess.run([sys.executable, tool, "validate", zip_path], capture_output=True, text=True)
    return r.returncode == 0, (r.stdout + r.stderr).strip()


def build(output_dir: str, with_wheels: bool = True, wheels_dir: str | None = None) -> str:
    os.makedirs(output_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if with_wheels and wheels_dir is None:
            wheels_dir = os.path.join(tmp, "_wheels")
            download_wheels(wheels_dir)
        pkg = os.path.join(tmp, "metamorph")
        text = stage(pkg, wheels_dir if with_wheels else None)
        out = os.path.join(os.path.abspath(output_dir), f"metamorph-{manifest_version(text)}.zip")
        zip_dir(pkg, out)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output-dir", required=True, help="folder for the extension zip")
    ap.add_argument("--no-wheels", action="store_true",
                    help="skip the wheel download (for a Blender that already has pyzmq+msgpack)")
    ap.add_argument("--wheels-dir", help="use wheels already downloaded into this folder")
    ap.add_argument("--no-validate", action="store_true")
    a = ap.parse_args(argv)
    out = build(a.output_dir, with_wheels=not a.no_wheels, wheels_dir=a.wheels_dir)
    print(f"built {out} ({os.path.getsize(out) / 1e6:.1f} MB)")
    if not a.no_validate:
        ok, msg = validate(out)
        print(msg)
        if not ok:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
