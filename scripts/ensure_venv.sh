#!/usr/bin/env bash
# Create .venv at the repository root and install Metamorph with its test extra,
# unless an up-to-date install is already there (keyed by pyproject.toml's hash).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${METAMORPH_PYTHON:-python3.11}"
command -v "$py" >/dev/null || py=python3
stamp=".venv/.metamorph-installed"
want="$(sha256sum pyproject.toml | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/python ]; then
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
# The registry's default torch + torchvision (CUDA build, runs on CPU too): the
# machine's local CPU-only torch wheel has no matching torchvision.
.venv/bin/python -m pip install -q -e '.[test]'
echo "$want" > "$stamp"
