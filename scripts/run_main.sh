#!/usr/bin/env bash
# Create .venv if missing, then run the main job: stylize the built-in sample
# avatar with a text prompt and write the results under out/main/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/ensure_venv.sh
exec .venv/bin/metamorph stylize --avatar sample --prompt "${METAMORPH_PROMPT:-a bronze statue}" \
  --out out/main "$@"
