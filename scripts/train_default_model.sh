#!/usr/bin/env bash
# Reproduces the shipped default model (diffusers_videolatent/default_model) from scratch on the CPU, then scores it.
#
#   bash scripts/train_default_model.sh [WORK_DIR]      # default WORK_DIR: out/default_model
#
# Twenty-three stages, all seeded; the times measured on a 2-core CPU are in docs/default_model.md:
# 1. the video VAE (the script's tiny default config: 17 x 64 x 64 RGB -> 16 x 5 x 8 x 8 latents, spatial ratio 8,
#    temporal ratio 4, 16 channels as in Wan's and CogVideoX's VAEs) on single frames of the moving-shapes training
#    split; the script then folds each temporal kernel onto the current frame, so the saved VAE is a per-frame
#    autoencoder, as if inflated from an image VAE (an image step is about 9x cheaper than a 9-frame clip's, and
#    colour and shape are learnt there);
# 2. the same VAE fine-tuned on 9-frame clips (its causal convolutions then encode 17-frame clips as well), MSE on
#    the decoded posterior mode, then the latent scaling factor from the training latents;
# 3. the decoder alone fine-tuned on clips, the encoder frozen (`--train_decoder_only`): the latents, and so the
#    U-Net's training data, do not change, and the decoder draws sharper edges (squares, not rounded squares);
#    then (3b) fine-tuned again on clips of several lengths and many speeds with a temporal loss: 9-, 13- and
#    17-frame clips in turn (`--num_frames 49 --alternate_num_frames 9 13 17`, each subsampled from a 49-frame clip),
#    travel 0 to 0.6 of the frame (`--travel_fraction_range 0 0.6`: up to 4.8, 3.2 and 2.4 pixels per frame): a
#    decoder that has seen one speed decodes others with a period-4 flicker, and one that has seen one length
#    flickers on the later latent frames of other lengths (docs/vae_flicker.md); then (3c) once
#    more on 9-, 13-, 17- and 25-frame clips at half the learning rate, the last frame of each latent frame's group
#    (the worst decoded) weighted 4 times the others in the pixel loss (`--frame_position_weights 1 1 1 4`);
# 4. the U-Net (the script's tiny default config, whose temporal transformers also cross-attend to the text) on
#    cached latents of 1056 training videos of 17 frames (16 per seen combination), flow matching with timestep
#    shift 20, 10% caption dropout for classifier-free guidance, constant learning rate after warm-up, EMA weights;
#    the word-level tokenizer and the small frozen CLIP text encoder are built by the script. The large shift is
#    what teaches direction: the 16-channel latent shows the object's path through the noise up to sigma ~0.98, so
#    at the usual shift the text is only needed (and learnt) for colour, and motion follows the noise;
# 5. the same U-Net fine-tuned at shift 3 (more steps at low noise, for colour and shape); the pipeline keeps
#    that scheduler, and takes the VAE with the decoder of stage 3c;
# 6. the same U-Net given 17 zero-initialised conditioning channels (what the pipeline feeds it for `image=`: the
#    image's latent at latent frame 0 and a mask channel), so it starts as the text-to-video U-Net, and fine-tuned
#    for text- AND image-to-video at shift 3: half of the videos get their own first frame as the image condition,
#    the others none;
# 7. the evaluation: 2 videos per combination (66 seen, 6 held out) with the recommended sampling settings, the
#    ground-truth and VAE-reconstruction reference rows and image-to-video from unseen first frames;
# 8. the three dials (scripts/train_dials_model.sh, docs/dials.md): t2i2v fine-tuned on clips of several sizes,
#    lengths and frame rates (bucketed, told the frame rate), into WORK_DIR/dials, then evaluated on the grid;
# 9. stage 8 annealed (scripts/train_dials_anneal.sh): the learning rate decaying to zero, a longer EMA and more steps
#    on the large frames, into WORK_DIR/dials_anneal, then evaluated on the grid;
# 10. a loss on the object (docs/dials.md's stage 11; its stage 10, not shipped, was this without that loss): the
#    same script from stage 9 with the object's latent cells weighted up (--foreground_loss_weight 8), half the
#    learning rate and more steps on the 128-wide frames, into WORK_DIR/dials_foreground;
# 11. the same again on 4224 new clips (--dataset_seed 1; docs/dials.md's stage 12), into WORK_DIR/dials_fresh;
# 12. the same on other new clips (--dataset_seed 2; docs/dials.md's stage 13) with more steps on the 96-128 pixel
#    frames and on 61 frames, into WORK_DIR/dials_large;
# 13. the same on other new clips again (--dataset_seed 3; docs/dials.md's stage 14), 70% of them trained as
#    image-to-video, into WORK_DIR/dials_image;
# 14. the same on other new clips again (--dataset_seed 4; docs/dials.md's stage 15) with more steps on the 128x128
#    and 64x128 frames, into WORK_DIR/dials_largest. Each of stages 10-14 ends evaluated on the
#    grid;
# 15. the decoder of stage 3c fine-tuned twice more on the physical world's clips, whose objects touch the frame's
#    edges (--train_fps), the second time with the first frame weighted (--first_frame_weight 4; docs/dials.md's
#    stage 16), into WORK_DIR/vae_first_frame; WORK_DIR/dials_largest takes it and is evaluated on the grid again;
# 16. that decoder fine-tuned three more times on every frame size and length at once (train_video_vae --buckets;
#    docs/dials.md's stage 17), the last two with more of the long clips, into WORK_DIR/vae_buckets;
# 17. that decoder fine-tuned once more with the first frame weighted 8 times (docs/dials.md's stage 19), into
#    WORK_DIR/vae_first_frames; WORK_DIR/dials_largest takes it and is evaluated on the grid again;
# 18. WORK_DIR/dials_largest fine-tuned on 4224 new clips with the loss on the object over the object's cells grown
#    by one latent cell (--foreground_loss_dilation 1; docs/dials.md's stage 25): the weight of stages 10-14, read
#    from the clean clip, drew objects up to 1.6 times too large; into WORK_DIR/dials_dilated, evaluated on the grid;
# 19. WORK_DIR/dials_dilated given zero-initialised temporal convolutions after every resnet (--temporal_conv_per_block
#    --mid_temporal_conv) and fine-tuned with stage 18's loss on 4224 new clips, 60% of them image-to-video
#    (docs/dials.md's stage 26): the object's size wobbles less; into WORK_DIR/dials_temporal, evaluated on the grid;
# 20. WORK_DIR/dials_temporal fine-tuned 3000 more steps with the same loss on 4224 new clips at learning rate 3e-5
#    (docs/dials.md's stage 28): fewer wrong shapes and held-out misses; into WORK_DIR/dials_temporal_more, evaluated
#    on the grid;
# 21. the loss on the object read from the U-Net's own prediction of the clean latent (--foreground_loss_from
#    prediction), but from the clean clip's masks for the clips noised above sigma 0.7
#    (--foreground_loss_clean_above_sigma 0.7), 2000 steps on new clips (docs/dials.md's stage 31): the wobble falls
#    and no object is lost; into WORK_DIR/dials_split, evaluated on the grid;
# 22. 2000 more steps of it on new clips at 3e-5 (stage 31b); into WORK_DIR/dials_split_more, evaluated on the grid;
# 23. stage 22's run with a loss on the prediction's change between latent frames (--temporal_difference_loss_weight
#    1; docs/dials.md's stage 32): the wobble falls further, and every seen cell meets its shape and direction
#    targets on both evaluation seeds; into WORK_DIR/dials_steady, evaluated on the grid.
# The shipped model is WORK_DIR/dials_steady (stages 1-7 alone give WORK_DIR/t2i2v), with the recommended
# settings as `generation_defaults` in its model_index.json.
# Every stage checkpoints at least every 400 steps and resumes from its newest checkpoint, exactly: rerunning the
# command after a kill goes on where it stopped (a finished stage restarts from its last checkpoint and saves again).
set -euo pipefail

WORK_DIR=${1:-out/default_model}
IMAGE_STEPS=${IMAGE_STEPS:-1200}
CLIP_STEPS=${CLIP_STEPS:-900}
DECODER_STEPS=${DECODER_STEPS:-1500}
TEMPORAL_DECODER_STEPS=${TEMPORAL_DECODER_STEPS:-2700}
EVEN_DECODER_STEPS=${EVEN_DECODER_STEPS:-600}
PHYSICAL_DECODER_STEPS=${PHYSICAL_DECODER_STEPS:-600}
FIRST_FRAME_DECODER_STEPS=${FIRST_FRAME_DECODER_STEPS:-900}
BUCKET_DECODER_STEPS=${BUCKET_DECODER_STEPS:-800}
LONG_DECODER_STEPS=${LONG_DECODER_STEPS:-500}
LONGEST_DECODER_STEPS=${LONGEST_DECODER_STEPS:-300}
FIRST_FRAMES_DECODER_STEPS=${FIRST_FRAMES_DECODER_STEPS:-300}
UNET_STEPS=${UNET_STEPS:-2000}
FINETUNE_STEPS=${FINETUNE_STEPS:-4800}
IMAGE_FINETUNE_STEPS=${IMAGE_FINETUNE_STEPS:-3000}
STEPS=25
GUIDANCE=1.5

python -m diffusers_videolatent.training.train_video_vae \
  --output_dir "$WORK_DIR/vae_images" --seed 0 --num_frames 1 --height 64 --width 64 \
  --train_batch_size 16 --learning_rate 1e-3 --lr_scheduler constant_with_warmup --lr_warmup_steps 30 \
  --reconstruction_loss mse --kl_weight 1e-6 --decode_posterior mode --latent_normalization scaling \
  --max_train_steps "$IMAGE_STEPS" --checkpointing_steps 400 --validation_steps 400 \
  --resume_from_checkpoint latest

python -m diffusers_videolatent.training.train_video_vae \
  --pretrained_vae_name_or_path "$WORK_DIR/vae_images" --output_dir "$WORK_DIR/vae" --seed 0 --num_frames 9 \
  --height 64 --width 64 --train_batch_size 8 --learning_rate 1e-3 --lr_scheduler constant_with_warmup \
  --lr_warmup_steps 30 --reconstruction_loss mse --kl_weight 1e-6 --decode_posterior mode \
  --latent_normalization scaling --max_train_steps "$CLIP_STEPS" --checkpointing_steps 300 --validation_steps 300 \
  --resume_from_checkpoint latest

python -m diffusers_videolatent.training.train_video_vae \
  --pretrained_vae_name_or_path "$WORK_DIR/vae" --train_decoder_only --output_dir "$WORK_DIR/vae_decoder" --seed 2 \
  --num_frames 9 --height 64 --width 64 --train_batch_size 8 --learning_rate 5e-4 \
  --lr_scheduler constant_with_warmup --lr_warmup_steps 30 --reconstruction_loss mse --kl_weight 1e-6 \
  --decode_posterior mode --max_train_steps "$DECODER_STEPS" --checkpointing_steps 300 --validation_steps 300 \
  --resume_from_checkpoint latest

python -m diffusers_videolatent.training.train_video_vae \
  --pretrained_vae_name_or_path "$WORK_DIR/vae_decoder" --train_decoder_only --output_dir "$WORK_DIR/vae_temporal" \
  --seed 3 --num_frames 49 --alternate_num_frames 9 13 17 --height 64 --width 64 --train_batch_size 4 \
  --learning_rate 5e-4 --lr_scheduler constant_with_warmup --lr_warmup_steps 30 --reconstruction_loss mse \
  --temporal_loss_weight 0.1 --travel_fraction_range 0.0 0.6 --kl_weight 1e-6 --decode_posterior mode \
  --max_train_steps "$TEMPORAL_DECODER_STEPS" --checkpointing_steps 100 --validation_steps 500 \
  --resume_from_checkpoint latest

python -m diffusers_videolatent.training.train_video_vae \
  --pretrained_vae_name_or_path "$WORK_DIR/vae_temporal" --train_decoder_only --output_dir "$WORK_DIR/vae_even" \
  --seed 4 --num_frames 49 --alternate_num_frames 9 13 17 25 --frame_position_weights 1 1 1 4 --height 64 \
  --width 64 --train_batch_size 4 --learning_rate 2.5e-4 --lr_scheduler constant_with_warmup --lr_warmup_steps 30 \
  --reconstruction_loss mse --temporal_loss_weight 0.1 --travel_fraction_range 0.0 0.6 --kl_weight 1e-6 \
  --decode_posterior mode --max_train_steps "$EVEN_DECODER_STEPS" --checkpointing_steps 100 --validation_steps 600 \
  --resume_from_checkpoint latest

# shared by both U-Net stages
UNET_ARGS=(--num_frames 17 --height 64 --width 64 --cache_latents --objective flow_matching
  --conditioning_dropout_prob 0.1 --train_batch_size 32 --lr_scheduler constant_with_warmup --use_ema
  --ema_decay 0.995 --num_validation_inference_steps 20 --validation_guidance_scale "$GUIDANCE")

python -m diffusers_videolatent.training.train_text_to_video "${UNET_ARGS[@]}" \
  --pretrained_vae_name_or_path "$WORK_DIR/vae" --output_dir "$WORK_DIR/t2v_shift20" --seed 0 --flow_shift 20.0 \
  --learning_rate 8e-4 --lr_warmup_steps 100 --max_train_steps "$UNET_STEPS" \
  --checkpointing_steps 300 --validation_steps 300 \
  --resume_from_checkpoint latest

python -m diffusers_videolatent.training.train_text_to_video "${UNET_ARGS[@]}" \
  --pretrained_model_name_or_path "$WORK_DIR/t2v_shift20" --output_dir "$WORK_DIR/t2v" --seed 1 --flow_shift 3.0 \
  --learning_rate 4e-4 --lr_warmup_steps 50 --max_train_steps "$FINETUNE_STEPS" \
  --checkpointing_steps 400 --validation_steps 400 \
  --resume_from_checkpoint latest

# the same encoder and latent normalisation, a sharper decoder that does not flicker
cp "$WORK_DIR/vae_even/config.json" "$WORK_DIR/vae_even/diffusion_pytorch_model.safetensors" "$WORK_DIR/t2v/vae/"

# the recommended settings live in the saved pipeline: `pipe(prompt)` and the CLI use them
python scripts/set_generation_defaults.py "$WORK_DIR/t2v" "$STEPS" "$GUIDANCE"

python -m diffusers_videolatent.training.train_text_to_video "${UNET_ARGS[@]}" \
  --pretrained_model_name_or_path "$WORK_DIR/t2v" --output_dir "$WORK_DIR/t2i2v" --seed 2 --flow_shift 3.0 \
  --conditioning_channels 17 --image_conditioning_prob 0.5 --learning_rate 4e-4 --lr_warmup_steps 50 \
  --max_train_steps "$IMAGE_FINETUNE_STEPS" --checkpointing_steps 200 --validation_steps 1000 \
  --resume_from_checkpoint latest

python benchmarks/evaluate_default_model.py --model "$WORK_DIR/t2i2v" --videos_per_combination 2 --reconstruction \
  --image_to_video --json "$WORK_DIR/evaluation.json"

bash scripts/train_dials_model.sh "$WORK_DIR/t2i2v" "$WORK_DIR/dials"

bash scripts/train_dials_anneal.sh "$WORK_DIR/dials" "$WORK_DIR/dials_anneal"

# stages 10-14: the loss on the object, 3000 steps each, half stage 9's learning rate
export FOREGROUND_LOSS_WEIGHT=8 ANNEAL_STEPS=3000 ANNEAL_LR=5e-5
FOREGROUND_BUCKETS=9x64x64:0.1,17x64x64:0.15,33x64x64:0.08,61x64x64:0.05,17x96x96:0.12,17x128x128:0.2,17x64x128:0.15,17x128x64:0.15
ANNEAL_SEED=6 ANNEAL_BUCKETS=$FOREGROUND_BUCKETS \
  bash scripts/train_dials_anneal.sh "$WORK_DIR/dials_anneal" "$WORK_DIR/dials_foreground"

DATASET_SEED=1 ANNEAL_SEED=7 ANNEAL_BUCKETS=$FOREGROUND_BUCKETS \
  bash scripts/train_dials_anneal.sh "$WORK_DIR/dials_foreground" "$WORK_DIR/dials_fresh"

LARGE_BUCKETS=9x64x64:0.08,17x64x64:0.12,33x64x64:0.07,61x64x64:0.08,17x96x96:0.15,17x128x128:0.2,17x64x128:0.15,17x128x64:0.15
DATASET_SEED=2 ANNEAL_SEED=8 ANNEAL_BUCKETS=$LARGE_BUCKETS \
  bash scripts/train_dials_anneal.sh "$WORK_DIR/dials_fresh" "$WORK_DIR/dials_large"

DATASET_SEED=3 IMAGE_CONDITIONING_PROB=0.7 ANNEAL_SEED=9 ANNEAL_BUCKETS=$LARGE_BUCKETS \
  bash scripts/train_dials_anneal.sh "$WORK_DIR/dials_large" "$WORK_DIR/dials_image"

LARGEST_BUCKETS=9x64x64:0.06,17x64x64:0.1,33x64x64:0.06,61x64x64:0.08,17x96x96:0.13,17x128x128:0.24,17x64x128:0.18,17x128x64:0.15
DATASET_SEED=4 IMAGE_CONDITIONING_PROB=0.7 ANNEAL_SEED=10 ANNEAL_BUCKETS=$LARGEST_BUCKETS \
  bash scripts/train_dials_anneal.sh "$WORK_DIR/dials_image" "$WORK_DIR/dials_largest"

# stage 15: the decoder of stage 3c fine-tuned twice more with the encoder frozen, on the physical world's clips (long
# slow clips cross the frame and touch its edges, which stage 3's fixed-travel clips seldom do), the second time with
# the first frame weighted 4 times (image-to-video shows the decoder's frame 0 as the user's image); the latents, and
# so the U-Net of stage 14, are unchanged. The shipped pipeline takes this decoder and is evaluated on the grid again.
VAE_PHYSICAL_ARGS=(--train_decoder_only --num_frames 49 --alternate_num_frames 9 13 17 25
  --frame_position_weights 1 1 1 4 --train_fps 4 8 16 24 --height 64 --width 64 --train_batch_size 4
  --learning_rate 1.25e-4 --lr_warmup_steps 30 --reconstruction_loss mse --temporal_loss_weight 0.1 --kl_weight 1e-6
  --decode_posterior mode --checkpointing_steps 100 --resume_from_checkpoint latest)

python -m diffusers_videolatent.training.train_video_vae "${VAE_PHYSICAL_ARGS[@]}" \
  --pretrained_vae_name_or_path "$WORK_DIR/vae_even" --output_dir "$WORK_DIR/vae_physical" --seed 5 \
  --dataset_seed 5 --lr_scheduler constant_with_warmup --max_train_steps "$PHYSICAL_DECODER_STEPS" \
  --validation_steps 600

python -m diffusers_videolatent.training.train_video_vae "${VAE_PHYSICAL_ARGS[@]}" \
  --pretrained_vae_name_or_path "$WORK_DIR/vae_physical" --output_dir "$WORK_DIR/vae_first_frame" --seed 6 \
  --dataset_seed 6 --first_frame_weight 4 --lr_scheduler cosine --use_ema --ema_decay 0.99 \
  --max_train_steps "$FIRST_FRAME_DECODER_STEPS" --validation_steps 900

cp "$WORK_DIR/vae_first_frame/config.json" "$WORK_DIR/vae_first_frame/diffusion_pytorch_model.safetensors" \
  "$WORK_DIR/dials_largest/vae/"
source scripts/dials_common.sh
evaluate_dials "$WORK_DIR/dials_largest"

# stage 16: the same decoder on every frame size and length the U-Net makes, in one run per budget (--buckets; a
# decoder fine-tuned on one size loses on the others): first a budget across all sizes, then two with more of the long
# 64x64 clips, whose first frames most often touch the frame's edge, at lower learning rates
VAE_BUCKET_ARGS=(--train_decoder_only --frame_position_weights 1 1 1 4 --first_frame_weight 4 --train_fps 4 8 16 24
  --train_batch_size 4 --lr_warmup_steps 30 --lr_scheduler cosine --use_ema --ema_decay 0.99
  --reconstruction_loss mse --temporal_loss_weight 0.1 --kl_weight 1e-6 --decode_posterior mode
  --checkpointing_steps 100 --resume_from_checkpoint latest)

python -m diffusers_videolatent.training.train_video_vae "${VAE_BUCKET_ARGS[@]}" \
  --buckets 9x64x64:0.1,17x64x64:0.15,33x64x64:0.1,61x64x64:0.1,17x96x96:0.15,17x128x128:0.2,17x64x128:0.1,17x128x64:0.1 \
  --learning_rate 1e-4 --pretrained_vae_name_or_path "$WORK_DIR/vae_first_frame" --output_dir "$WORK_DIR/vae_sizes" \
  --seed 7 --dataset_seed 7 --max_train_steps "$BUCKET_DECODER_STEPS" --validation_steps "$BUCKET_DECODER_STEPS"

python -m diffusers_videolatent.training.train_video_vae "${VAE_BUCKET_ARGS[@]}" \
  --buckets 9x64x64:0.05,17x64x64:0.1,33x64x64:0.2,61x64x64:0.3,17x96x96:0.1,17x128x128:0.1,17x64x128:0.075,17x128x64:0.075 \
  --learning_rate 5e-5 --pretrained_vae_name_or_path "$WORK_DIR/vae_sizes" --output_dir "$WORK_DIR/vae_long" \
  --seed 8 --dataset_seed 8 --max_train_steps "$LONG_DECODER_STEPS" --validation_steps "$LONG_DECODER_STEPS"

python -m diffusers_videolatent.training.train_video_vae "${VAE_BUCKET_ARGS[@]}" \
  --buckets 9x64x64:0.05,17x64x64:0.05,33x64x64:0.2,61x64x64:0.5,17x96x96:0.05,17x128x128:0.05,17x64x128:0.05,17x128x64:0.05 \
  --learning_rate 3e-5 --pretrained_vae_name_or_path "$WORK_DIR/vae_long" --output_dir "$WORK_DIR/vae_buckets" \
  --seed 9 --dataset_seed 9 --max_train_steps "$LONGEST_DECODER_STEPS" --validation_steps "$LONGEST_DECODER_STEPS"

# stage 17: the first frame (image-to-video's image, decoded from its latent alone) weighted 8 times instead of 4,
# on new clips with 40% of the steps on 61 frames, whose first frames were the last under 30 dB
python -m diffusers_videolatent.training.train_video_vae "${VAE_BUCKET_ARGS[@]}" --first_frame_weight 8 \
  --buckets 9x64x64:0.05,17x64x64:0.1,33x64x64:0.2,61x64x64:0.4,17x96x96:0.05,17x128x128:0.1,17x64x128:0.05,17x128x64:0.05 \
  --learning_rate 3e-5 --pretrained_vae_name_or_path "$WORK_DIR/vae_buckets" --output_dir "$WORK_DIR/vae_first_frames" \
  --seed 10 --dataset_seed 10 --max_train_steps "$FIRST_FRAMES_DECODER_STEPS" \
  --validation_steps "$FIRST_FRAMES_DECODER_STEPS"

cp "$WORK_DIR/vae_first_frames/config.json" "$WORK_DIR/vae_first_frames/diffusion_pytorch_model.safetensors" \
  "$WORK_DIR/dials_largest/vae/"
evaluate_dials "$WORK_DIR/dials_largest"

# stage 18: the loss on the object without its pull towards larger objects (an edge cell weighs the same whether the
# object covers it or not), stage 14's buckets, 2000 steps; the output takes dials_largest's VAE with that decoder
FOREGROUND_LOSS_DILATION=1 ANNEAL_STEPS=2000 DATASET_SEED=9 IMAGE_CONDITIONING_PROB=0.5 ANNEAL_SEED=15 \
  ANNEAL_BUCKETS=$LARGEST_BUCKETS bash scripts/train_dials_anneal.sh "$WORK_DIR/dials_largest" "$WORK_DIR/dials_dilated"

# stage 19: temporal convolutions (ModelScope's, zero-initialised, so step 0 is stage 18's model) trained with stage
# 18's loss on new clips, 3000 steps, 60% image-to-video
TEMPORAL_CONVS=1 FOREGROUND_LOSS_DILATION=1 ANNEAL_STEPS=3000 DATASET_SEED=10 IMAGE_CONDITIONING_PROB=0.6 ANNEAL_SEED=16 \
  ANNEAL_BUCKETS=$LARGEST_BUCKETS bash scripts/train_dials_anneal.sh "$WORK_DIR/dials_dilated" "$WORK_DIR/dials_temporal"

# stage 20: stage 19's run again from its output (which has the temporal convolutions), on new clips, at 3e-5
FOREGROUND_LOSS_DILATION=1 ANNEAL_STEPS=3000 ANNEAL_LR=3e-5 DATASET_SEED=11 IMAGE_CONDITIONING_PROB=0.6 ANNEAL_SEED=17 \
  ANNEAL_BUCKETS=$LARGEST_BUCKETS bash scripts/train_dials_anneal.sh "$WORK_DIR/dials_temporal" \
  "$WORK_DIR/dials_temporal_more"

# stage 21: the loss on the object read from the U-Net's own prediction of the clean latent (no pull towards larger
# objects), but from the clean clip's masks for the clips noised above sigma 0.7, where the noise hides the object;
# 2000 steps on new clips
PREDICTED_WEIGHT=(FOREGROUND_LOSS_DILATION=1 FOREGROUND_LOSS_FROM=prediction FOREGROUND_LOSS_CLEAN_ABOVE_SIGMA=0.7
  ANNEAL_STEPS=2000 IMAGE_CONDITIONING_PROB=0.6 ANNEAL_BUCKETS=$LARGEST_BUCKETS)
env "${PREDICTED_WEIGHT[@]}" DATASET_SEED=12 ANNEAL_SEED=18 \
  bash scripts/train_dials_anneal.sh "$WORK_DIR/dials_temporal_more" "$WORK_DIR/dials_split"

# stage 22: 2000 more steps of it on new clips at 3e-5
env "${PREDICTED_WEIGHT[@]}" ANNEAL_LR=3e-5 DATASET_SEED=13 ANNEAL_SEED=19 \
  bash scripts/train_dials_anneal.sh "$WORK_DIR/dials_split" "$WORK_DIR/dials_split_more"

# stage 23: stage 22's run with a loss on the prediction's change from one latent frame to the next
# (--temporal_difference_loss_weight 1), on new clips
env "${PREDICTED_WEIGHT[@]}" ANNEAL_LR=3e-5 DATASET_SEED=14 ANNEAL_SEED=20 TEMPORAL_DIFFERENCE_LOSS_WEIGHT=1 \
  bash scripts/train_dials_anneal.sh "$WORK_DIR/dials_split_more" "$WORK_DIR/dials_steady"
