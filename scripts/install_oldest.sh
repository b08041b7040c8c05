#!/usr/bin/env bash
# Builds the second test environment, .venvs/oldest: the oldest releases setup.cfg admits (scripts/oldest-constraints.txt)
# with the same torch==2.13.0 as the first. It is reused while its stamp (a hash of setup.cfg and the constraints)
# matches; a missing or different stamp, as after an interrupted build, rebuilds it from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venvs/oldest
stamp="$(cat setup.cfg scripts/oldest-constraints.txt | sha256sum | cut -d' ' -f1)"
if [ -f "$venv/.stamp" ] && [ "$(cat "$venv/.stamp")" = "$stamp" ]; then
  exit 0
fi
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -c scripts/oldest-constraints.txt -e ".[test]"
echo "$stamp" > "$venv/.stamp"
