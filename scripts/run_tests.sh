#!/usr/bin/env bash
# Create .venv if missing, then run the whole test suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/ensure_venv.sh
exec .venv/bin/python -m pytest -q "$@"
