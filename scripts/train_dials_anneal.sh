#!/usr/bin/env bash
# Stage 9 of scripts/train_default_model.sh (issue 28, the three dials): anneals the stage-8 dials model, whose
# object size wobbles more than the model before it (docs/dials.md), then evaluates it on the grid.
#
#   bash scripts/train_dials_anneal.sh [FROM_MODEL] [OUTPUT_DIR]
#   # defaults: the stage-8 model (out/default_model/dials) and out/default_model/dials_anneal
#
# - the same world, buckets and frame rates as stage 8, with a budget that gives the large frames more steps
#   (stage 8 gave 17x128x128 4.6% of its steps and the 128-wide frames 9.3% each; here 14% and 10%);
# - a learning rate that decays to zero (cosine from 1e-4, half of stage 8's constant 2e-4) and a longer EMA
#   (0.999 against 0.995): the noise of the last steps is what makes the object's size wobble;
# - the U-Net already has its fps embedding and its 17 conditioning channels; half of the clips get their first frame
#   as the image condition, so text- and image-to-video are both kept.
# ANNEAL_STEPS, ANNEAL_BUCKETS, ANNEAL_LR and ANNEAL_SEED change the run (docs/dials.md's stage 10, trained from stage 9
# and not shipped, set all four); FOREGROUND_LOSS_WEIGHT weights the object's latent cells up (--foreground_loss_weight,
# 0 by default: stages 9 and 10 weighted every cell alike) and DATASET_SEED draws other clips (0 by default, the clips
# of stages 8-10); IMAGE_CONDITIONING_PROB is the share of clips trained as image-to-video (0.5 by default);
# FOREGROUND_LOSS_MAX_SIGMA keeps that weighting to the clips noised to at most that sigma (--foreground_loss_max_sigma;
# unset by default: every sigma, as stages 10-19 trained) and FOREGROUND_LOSS_DILATION grows the weighted cells by
# that many latent cells (--foreground_loss_dilation; 0 by default); FOREGROUND_LOSS_FROM=prediction reads the weighted
# cells from the U-Net's own prediction of the clean latent instead of the clean clip's masks (--foreground_loss_from;
# clean by default, as stages 11-28 trained), and with it FOREGROUND_LOSS_CLEAN_ABOVE_SIGMA keeps the clean masks' cells
# for the clips noised above that sigma (--foreground_loss_clean_above_sigma; unset by default); TEMPORAL_CONVS=1 gives
# a U-Net without them zero-initialised temporal convolutions after every resnet (--temporal_conv_per_block
# --mid_temporal_conv; 0 by default); TEMPORAL_DIFFERENCE_LOSS_WEIGHT adds the loss on the prediction's change from
# one latent frame to the next (--temporal_difference_loss_weight; 0 by default, as stages 8-31 trained);
# FOREGROUND_LOSS_CONTRAST_REFERENCE scales the object's weight up where its latent contrast is under that reference
# (--foreground_loss_contrast_reference; unset by default, as stages 8-33 trained).
# Resumable: rerunning the command after a kill goes on from the newest checkpoint, exactly.
set -euo pipefail

FROM_MODEL=${1:-out/default_model/dials}
OUTPUT_DIR=${2:-out/default_model/dials_anneal}
ANNEAL_STEPS=${ANNEAL_STEPS:-4000}
ANNEAL_BUCKETS=${ANNEAL_BUCKETS:-9x64x64:0.2,17x64x64:0.2,33x64x64:0.1,61x64x64:0.06,17x96x96:0.1,17x128x128:0.14,17x64x128:0.1,17x128x64:0.1}
ANNEAL_LR=${ANNEAL_LR:-1e-4}
ANNEAL_SEED=${ANNEAL_SEED:-5}
FOREGROUND_LOSS_WEIGHT=${FOREGROUND_LOSS_WEIGHT:-0}
FOREGROUND_LOSS_DILATION=${FOREGROUND_LOSS_DILATION:-0}
DATASET_SEED=${DATASET_SEED:-0}
IMAGE_CONDITIONING_PROB=${IMAGE_CONDITIONING_PROB:-0.5}
FOREGROUND_LOSS_FROM=${FOREGROUND_LOSS_FROM:-clean}
TEMPORAL_DIFFERENCE_LOSS_WEIGHT=${TEMPORAL_DIFFERENCE_LOSS_WEIGHT:-0}
GUIDANCE=${GUIDANCE:-1.5}
TEMPORAL_CONV_ARGS=()
SIGMA_ARGS=()
if [ -n "${FOREGROUND_LOSS_MAX_SIGMA:-}" ]; then SIGMA_ARGS=(--foreground_loss_max_sigma "$FOREGROUND_LOSS_MAX_SIGMA"); fi
if [ -n "${FOREGROUND_LOSS_CLEAN_ABOVE_SIGMA:-}" ]; then
  SIGMA_ARGS+=(--foreground_loss_clean_above_sigma "$FOREGROUND_LOSS_CLEAN_ABOVE_SIGMA")
fi
if [ -n "${FOREGROUND_LOSS_CONTRAST_REFERENCE:-}" ]; then
  SIGMA_ARGS+=(--foreground_loss_contrast_reference "$FOREGROUND_LOSS_CONTRAST_REFERENCE")
fi
if [ "${TEMPORAL_CONVS:-0}" = 1 ]; then TEMPORAL_CONV_ARGS=(--temporal_conv_per_block --mid_temporal_conv); fi

source "$(dirname "$0")/dials_common.sh"

python -m diffusers_videolatent.training.train_text_to_video "${DIALS_TRAIN_ARGS[@]}" \
  --pretrained_model_name_or_path "$FROM_MODEL" --output_dir "$OUTPUT_DIR" --seed "$ANNEAL_SEED" \
  --buckets "$ANNEAL_BUCKETS" --dataset_seed "$DATASET_SEED" --image_conditioning_prob "$IMAGE_CONDITIONING_PROB" \
  --learning_rate "$ANNEAL_LR" --lr_scheduler cosine --use_ema --ema_decay 0.999 --max_train_steps "$ANNEAL_STEPS" \
  --validation_steps 2000 --foreground_loss_weight "$FOREGROUND_LOSS_WEIGHT" ${TEMPORAL_CONV_ARGS[@]+"${TEMPORAL_CONV_ARGS[@]}"} \
  --foreground_loss_dilation "$FOREGROUND_LOSS_DILATION" --foreground_loss_from "$FOREGROUND_LOSS_FROM" \
  --temporal_difference_loss_weight "$TEMPORAL_DIFFERENCE_LOSS_WEIGHT" ${SIGMA_ARGS[@]+"${SIGMA_ARGS[@]}"}

evaluate_dials "$OUTPUT_DIR"
