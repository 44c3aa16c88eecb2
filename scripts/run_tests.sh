#!/usr/bin/env bash
# Create .venv if missing, then run the whole test suite.
#
# The suite runs as two pytest processes: the Blender extension's tests import
# the bpy wheel in-process, and bpy's bundled LLVM/TBB clash with torch/triton
# (a segfault at import) once both are loaded. Metamorph never loads both in
# one process (blender_addon never imports torch), so the tests don't either.
# Arguments, if any, are passed to a single pytest run instead.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/ensure_venv.sh || exit 1
py=.venv/bin/python
if [ $# -gt 0 ]; then
  exec "$py" -m pytest "$@"
fi
reports="$(mktemp -d)"
trap 'rm -rf "$reports"' EXIT
status=0
echo "== lint (ruff, settings in pyproject.toml) =="
.venv/bin/ruff check . || status=1
echo "== backend, protocol, renderer, avatars, stylization =="
"$py" -m pytest -q --junitxml="$reports/backend.xml" --ignore-glob='tests/test_addon_*' tests || status=1
echo "== Blender extension (bpy in-process) =="
"$py" -m pytest -q --junitxml="$reports/addon.xml" tests/test_addon_*.py || status=1
"$py" scripts/summarize_junit.py "$reports"/*.xml || status=1
exit $status
