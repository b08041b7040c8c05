#!/usr/bin/env bash
# The README's test command: install everything from this repo's own files, then run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
python3 -m pytest tests -q "$@"
