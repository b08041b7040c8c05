#!/usr/bin/env bash
# The README's test command: install everything from this repo's own files, then run the suite twice, on the newest
# releases (the system Python) and on the oldest releases setup.cfg admits (.venvs/oldest, scripts/install_oldest.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/install_oldest.sh
echo "== newest: $(python3 -c 'import diffusers, transformers; print("diffusers", diffusers.__version__, "transformers", transformers.__version__)')"
python3 -m pytest tests -q "$@"
echo "== oldest: $(.venvs/oldest/bin/python -c 'import diffusers, transformers; print("diffusers", diffusers.__version__, "transformers", transformers.__version__)')"
PATH="$PWD/.venvs/oldest/bin:$PATH" .venvs/oldest/bin/python -m pytest tests -q "$@"
