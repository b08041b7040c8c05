#!/usr/bin/env bash
# The README's main job: install, then generate a video with the shipped default model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
prompt="${1:-a red circle moving right}"
output="${2:-out.gif}"
videolatent generate "$prompt" --output "$output"
