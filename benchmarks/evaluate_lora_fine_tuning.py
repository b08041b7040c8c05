"""Does a LoRA learn? Trains one on a single clip and its caption and measures how closely the pipeline reproduces it.

    python benchmarks/evaluate_lora_fine_tuning.py --output_dir /tmp/lora-one-clip            # the shipped model
    python benchmarks/evaluate_lora_fine_tuning.py --output_dir /tmp/full-one-clip --full_fine_tuning

One moving-shapes clip ("a blue square moving down", rendered with a dataset seed training did not use, saved as a gif)
is the whole training set. The pipeline generates its caption with seeded noise before and after training (the same
noise); the object's path error is the mean distance in pixels between the generated object's centroid and the clip's,
frame by frame, and the PSNR is over the whole video against the clip. With a LoRA, the script then unloads it and
checks that the base pipeline gives back its first video exactly. `--full_fine_tuning` trains every U-Net weight instead
(for comparison) and loads the saved pipeline.
"""

import argparse
import json
import os
import time

import imageio.v2 as imageio
import numpy as np
import torch

from diffusers_videolatent import VideoLatentPipeline
from diffusers_videolatent.cli import DEFAULT_MODEL
from diffusers_videolatent.training import train_text_to_video
from diffusers_videolatent.training.evaluate import segment_object
from diffusers_videolatent.training.moving_shapes import render_moving_shape


CAPTION = "a blue square moving down"


def centroids(frames: np.ndarray) -> np.ndarray:
    """The object's centroid `(x, y)` per frame, NaN where no object is found: `[F, 2]`."""
    points = []
    for mask in segment_object(frames):
        rows, columns = np.nonzero(mask)
        points.append([columns.mean(), rows.mean()] if len(rows) else [np.nan, np.nan])
    return np.array(points)


def measure(frames: np.ndarray, clip: np.ndarray) -> dict:
    """Path error (px, mean over frames) and PSNR (dB) of uint8 `frames` `[F, H, W, 3]` against `clip`."""
    distances = np.hypot(*(centroids(frames) - centroids(clip)).T)
    mse = np.mean((frames.astype(np.float64) - clip.astype(np.float64)) ** 2)
    return {
        "path_error_px": float(np.nanmean(distances)),
        "frames_without_object": int(np.isnan(distances).sum()),
        "psnr_db": float(10 * np.log10(255**2 / mse)),
    }


def generate(pipe: VideoLatentPipeline, seed: int) -> np.ndarray:
    frames = pipe(CAPTION, generator=torch.Generator().manual_seed(seed), output_type="np").frames[0]
    return np.round(frames * 255).astype(np.uint8)  # (F, H, W, 3)


def frozen_pipeline(model: str) -> VideoLatentPipeline:
    pipe = VideoLatentPipeline.from_pretrained(model)
    # frozen before any LoRA is loaded (peft freezes the base; torch's CPU kernels differ for frozen weights)
    pipe.unet.requires_grad_(False)
    pipe.text_encoder.requires_grad_(False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=str, default=str(DEFAULT_MODEL))
    parser.add_argument("--output_dir", type=str, required=True)
    parser.add_argument("--full_fine_tuning", action="store_true", help="Train every U-Net weight instead.")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lora_alpha", type=float, default=None, help="The LoRA's alpha (default: --rank).")
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--max_train_steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0, help="Noise seed of the generated videos.")
    parser.add_argument("--json", type=str, default=None, help="Also write the results here.")
    args = parser.parse_args()

    # 1. the clip: an unseen rendering, saved as the one-video training set
    data_dir = os.path.join(args.output_dir, "data")
    os.makedirs(data_dir, exist_ok=True)
    rendered = render_moving_shape("blue", "square", "down", generator=np.random.default_rng(123))
    imageio.mimsave(os.path.join(data_dir, "clip.gif"), list(np.round(rendered * 255).astype(np.uint8)), duration=125)
    with open(os.path.join(data_dir, "metadata.jsonl"), "w") as file:
        file.write(json.dumps({"file_name": "clip.gif", "text": CAPTION}) + "\n")
    clip = np.stack([frame[..., :3] for frame in imageio.mimread(os.path.join(data_dir, "clip.gif"))])

    # 2. before
    pipe = frozen_pipeline(args.model)
    before = generate(pipe, args.seed)
    results = {"before": measure(before, clip)}
    print("before:", results["before"])

    # 3. training, with the model's own objective and timestep shift
    run_dir = os.path.join(args.output_dir, "run")
    arguments = ["--pretrained_model_name_or_path", args.model, "--train_data_dir", data_dir, "--output_dir", run_dir]
    arguments += ["--num_frames", str(len(clip)), "--height", str(clip.shape[1]), "--width", str(clip.shape[2])]
    arguments += ["--objective", "flow_matching", "--flow_shift", str(pipe.scheduler.config.shift)]
    arguments += ["--train_batch_size", "1", "--max_train_steps", str(args.max_train_steps), "--seed", "0"]
    arguments += ["--learning_rate", str(args.learning_rate), "--image_conditioning_prob", "0"]
    arguments += ["--checkpointing_steps", str(10**6), "--no_validation", "--report_to", "jsonl"]
    if not args.full_fine_tuning:
        arguments += ["--rank", str(args.rank)]
        if args.lora_alpha is not None:
            arguments += ["--lora_alpha", str(args.lora_alpha)]
    start = time.perf_counter()
    train_text_to_video.main(arguments)
    results["training_seconds"] = time.perf_counter() - start
    results["settings"] = vars(args)

    # 4. after, and (LoRA) unloaded
    if args.full_fine_tuning:
        after = generate(frozen_pipeline(run_dir), args.seed)
    else:
        pipe.load_lora_weights(run_dir)
        after = generate(pipe, args.seed)
        pipe.unload_lora_weights()
        results["unloaded_equals_before"] = bool(np.array_equal(generate(pipe, args.seed), before))
    results["after"] = measure(after, clip)
    imageio.mimsave(os.path.join(args.output_dir, "before.gif"), list(before), duration=125)
    imageio.mimsave(os.path.join(args.output_dir, "after.gif"), list(after), duration=125)
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
