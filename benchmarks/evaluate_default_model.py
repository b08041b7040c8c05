"""Scores a text-to-video pipeline on the moving-shapes prompts: colour, shape and direction accuracy, and stability.

    python benchmarks/evaluate_default_model.py                      # the shipped default model
    python benchmarks/evaluate_default_model.py --model out/t2v --videos_per_combination 4 --json scores.json

Every one of the 72 combinations (66 seen in training, 6 held out) is prompted `--videos_per_combination` times with
seeded noise; `diffusers_videolatent.training.evaluate` measures the videos with plain image processing and the table
(seen / held-out / all) is printed. Sampling settings default to the model's `generation_defaults` (the recommended
settings the CLI and a plain `pipe(prompt)` use too). `--reconstruction` also scores the VAE alone: one dataset video per combination, encoded
and decoded, which bounds what the diffusion model can reach.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from diffusers_videolatent import VideoLatentPipeline
from diffusers_videolatent.cli import DEFAULT_MODEL
from diffusers_videolatent.training.evaluate import evaluate_pipeline, score_videos
from diffusers_videolatent.training.moving_shapes import ALL_COMBINATIONS, make_caption, render_moving_shape


def reconstruction_scores(pipeline: VideoLatentPipeline, num_frames: int, height: int, width: int, seed: int) -> dict:
    """Scores VAE round trips of one rendered video per combination (what the decoder can show at best)."""
    generator = np.random.default_rng(seed)
    samples = []
    for combination in ALL_COMBINATIONS:
        frames = render_moving_shape(
            *combination, num_frames=num_frames, height=height, width=width, generator=generator
        )
        video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None] * 2 - 1  # (1, 3, F, H, W) in [-1, 1]
        with torch.no_grad():
            latents = pipeline.encode_video(video)
            frames = pipeline.decode_latents(latents)  # (1, 3, F, H, W) in [-1, 1]
        frames = ((frames[0].permute(1, 2, 3, 0).float() + 1) / 2).clamp(0, 1).numpy()  # (F, H, W, 3)
        samples.append((make_caption(*combination), frames))
    return score_videos(samples, print_table=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="pipeline folder (default: the shipped model)")
    parser.add_argument("--videos_per_combination", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=24, help="prompts per pipeline call")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's recommended)")
    parser.add_argument("--guidance_scale", type=float, default=None, help="(default: the model's recommended)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reconstruction", action="store_true", help="also score VAE reconstructions")
    parser.add_argument("--json", default=None, help="write the scores (and per-video records) to this file")
    args = parser.parse_args()

    pipeline = VideoLatentPipeline.from_pretrained(args.model)
    settings = pipeline.resolve_generation_settings(num_inference_steps=args.steps, guidance_scale=args.guidance_scale)
    call_kwargs = {
        key: settings[key] for key in ("num_frames", "height", "width", "num_inference_steps", "guidance_scale")
    }
    pipeline.set_progress_bar_config(disable=True)
    print(f"model {args.model}, {args.videos_per_combination} videos per combination, {call_kwargs}")

    results = {"settings": call_kwargs, "videos_per_combination": args.videos_per_combination}
    if args.reconstruction:
        start = time.perf_counter()
        print("VAE reconstructions (one video per combination):")
        results["reconstruction"] = reconstruction_scores(
            pipeline, call_kwargs["num_frames"], call_kwargs["height"], call_kwargs["width"], args.seed
        )
        print(f"({time.perf_counter() - start:.0f} s)")

    start = time.perf_counter()
    print("Generated videos:")
    results["generation"] = evaluate_pipeline(
        pipeline,
        videos_per_combination=args.videos_per_combination,
        batch_size=args.batch_size,
        seed=args.seed,
        **call_kwargs,
    )
    seconds = time.perf_counter() - start
    results["generation_seconds"] = seconds
    print(f"({seconds:.0f} s on {torch.get_num_threads()} threads)")
    if args.json is not None:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
