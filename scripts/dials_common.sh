# Sourced by scripts/train_dials_model.sh (stage 8) and scripts/train_dials_anneal.sh (stages 9-15): what every dials
# stage shares. GUIDANCE must be set before sourcing.
#
# - DIALS_TRAIN_ARGS: the moving-shapes physical world (docs/dials.md) at 5 frame rates, 4224 clips with cached
#   latents, flow matching, 10% of prompts dropped for classifier-free guidance, checkpoints every 200 steps (the
#   newest 3 kept) and resume from the newest, so rerunning a stage after a kill goes on exactly;
# - evaluate_dials OUTPUT_DIR: the grid of issue 28 with text- and image-to-video, written to
#   OUTPUT_DIR/evaluation_grid.json. EVAL_STRIDE=N scores every N-th of the 72 combinations (1 by default, all of them,
#   about 20 min on a 2-core CPU; 5 gives 15 prompts, every colour, shape and direction, in a quarter of the time,
#   but can differ from the full grid by one clip per setting).

DIALS_TRAIN_ARGS=(--train_fps 4 8 12 16 24 --num_train_videos 4224 --cache_latents --objective flow_matching
  --flow_shift 3.0 --conditioning_dropout_prob 0.1 --train_batch_size 16 --lr_warmup_steps 50
  --checkpointing_steps 200 --checkpoints_total_limit 3 --num_validation_inference_steps 20
  --validation_guidance_scale "$GUIDANCE" --resume_from_checkpoint latest)

evaluate_dials() {
  python benchmarks/evaluate_default_model.py --model "$1" --grid --image_to_video --videos_per_combination 1 \
    --combination_stride "${EVAL_STRIDE:-1}" --json "$1/evaluation_grid.json"
}
