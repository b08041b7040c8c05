#!/usr/bin/env bash
# Installs the package and its test extra. torch is pinned first: on these machines `torch==2.13.0`
# takes a local CPU build, while an unpinned torch would pull gigabytes of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
python3 -m pip install --quiet --disable-pip-version-check -e ".[test]"
