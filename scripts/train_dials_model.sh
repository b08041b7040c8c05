#!/usr/bin/env bash
# Stage 8 of scripts/train_default_model.sh (issue 28, the three dials): fine-tunes a text- and image-to-video
# default model into one that obeys frame rate, resolution and length, then evaluates it on the grid.
#
#   bash scripts/train_dials_model.sh [FROM_MODEL] [OUTPUT_DIR]
#   # defaults: the shipped model (diffusers_videolatent/default_model) and out/default_model/dials
#
# - data: the moving-shapes physical world (docs/dials.md) in the buckets below, each clip at a frame rate drawn
#   from 4, 8, 12, 16 and 24 fps; the budget gives every bucket equal compute (most steps on the small ones);
# - model: the U-Net gets a zero-initialised fps embedding (`--use_fps_conditioning`: step 0 is the old model) and is
#   told each clip's frame rate; its 17 conditioning channels stay, half of the clips get their first frame as the
#   image condition, so text- and image-to-video are both kept;
# - the saved pipeline keeps the recommended settings of FROM_MODEL and records the trained ranges (a call outside
#   them warns).
# Resumable: rerunning the command after a kill goes on from the newest checkpoint, exactly.
set -euo pipefail

FROM_MODEL=${1:-diffusers_videolatent/default_model}
OUTPUT_DIR=${2:-out/default_model/dials}
DIALS_STEPS=${DIALS_STEPS:-6000}
DIALS_BUCKETS=${DIALS_BUCKETS:-9x64x64,17x64x64,33x64x64,61x64x64,17x96x96,17x128x128,17x64x128,17x128x64}
GUIDANCE=${GUIDANCE:-1.5}

source "$(dirname "$0")/dials_common.sh"

python -m diffusers_videolatent.training.train_text_to_video "${DIALS_TRAIN_ARGS[@]}" \
  --pretrained_model_name_or_path "$FROM_MODEL" --output_dir "$OUTPUT_DIR" --seed 4 \
  --buckets "$DIALS_BUCKETS" --use_fps_conditioning --image_conditioning_prob 0.5 --learning_rate 2e-4 \
  --lr_scheduler constant_with_warmup --use_ema --ema_decay 0.995 --max_train_steps "$DIALS_STEPS" \
  --validation_steps 1000

evaluate_dials "$OUTPUT_DIR"
