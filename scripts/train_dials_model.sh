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

python -m diffusers_videolatent.training.train_text_to_video \
  --pretrained_model_name_or_path "$FROM_MODEL" --output_dir "$OUTPUT_DIR" --seed 4 \
  --buckets "$DIALS_BUCKETS" --train_fps 4 8 12 16 24 --use_fps_conditioning --num_train_videos 4224 \
  --cache_latents --objective flow_matching --flow_shift 3.0 --conditioning_dropout_prob 0.1 \
  --image_conditioning_prob 0.5 --train_batch_size 16 --learning_rate 2e-4 --lr_scheduler constant_with_warmup \
  --lr_warmup_steps 50 --use_ema --ema_decay 0.995 --max_train_steps "$DIALS_STEPS" \
  --checkpointing_steps 200 --checkpoints_total_limit 3 --validation_steps 1000 \
  --num_validation_inference_steps 20 --validation_guidance_scale "$GUIDANCE" \
  --resume_from_checkpoint latest

# the grid on every 5th of the 72 combinations: 15 prompts per setting, every colour, shape and direction, 2 held out
# (every 12th, used until 2026-12-05, prompts only circles moving left); EVAL_STRIDE=1 scores all of them
python benchmarks/evaluate_default_model.py --model "$OUTPUT_DIR" --grid --image_to_video \
  --videos_per_combination 1 --combination_stride "${EVAL_STRIDE:-5}" --json "$OUTPUT_DIR/evaluation_grid.json"
