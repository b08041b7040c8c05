"""Scores a pipeline on the moving-shapes prompts: colour, shape and direction accuracy, and temporal stability.

    python benchmarks/evaluate_default_model.py                      # the shipped default model
    python benchmarks/evaluate_default_model.py --model out/t2v --videos_per_combination 4 --json scores.json
    python benchmarks/evaluate_default_model.py --model out/t2v --reconstruction --image_to_video

Every one of the 72 combinations (66 seen in training, 6 held out) is prompted `--videos_per_combination` times with
seeded noise; `diffusers_videolatent.training.evaluate` measures the videos with plain image processing (colour, shape,
direction, aligned IoU, object-area CV, centroid-path jitter, VBench's temporal-flickering score) and the table (seen /
held-out / all) is printed. Sampling settings default to the model's `generation_defaults` (the recommended settings the
CLI and a plain `pipe(prompt)` use too).

`--reconstruction` also scores ground-truth videos (one per combination, rendered with a dataset seed training did not
use) and their VAE round trips: the ground truth is the reference row, the reconstructions bound what the diffusion
model can reach. `--image_to_video` generates from the first frames of such unseen ground-truth videos (`image=`) and
adds the PSNR of the generated first frame against the given image.
"""

import argparse
import json
import time

import torch

from diffusers_videolatent import VideoLatentPipeline
from diffusers_videolatent.atomic import atomic_file
from diffusers_videolatent.cli import DEFAULT_MODEL
from diffusers_videolatent.training.evaluate import (
    IMAGE_TO_VIDEO_DATASET_SEED,
    evaluate_image_to_video,
    evaluate_pipeline,
    format_comparison_table,
    render_evaluation_videos,
    score_videos,
)


def reconstruction_scores(pipeline: VideoLatentPipeline, num_frames: int, height: int, width: int, seed: int) -> dict:
    """
    Scores unseen ground-truth videos (one per combination) and their VAE round trips (what the decoder can show at
    best); returns `{"ground_truth": ..., "reconstruction": ...}`, each what `score_videos` returns.
    """
    references = render_evaluation_videos(
        num_frames=num_frames, height=height, width=width, seed=IMAGE_TO_VIDEO_DATASET_SEED + seed
    )
    samples = []
    for prompt, frames in references:
        video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1  # (1, 3, F, H, W) in [-1, 1]
        with torch.no_grad():
            decoded = pipeline.decode_latents(pipeline.encode_video(video))  # (1, 3, F, H, W) in [-1, 1]
        decoded = ((decoded[0].permute(1, 2, 3, 0).float() + 1) / 2).clamp(0, 1).numpy()  # (F, H, W, 3)
        samples.append((prompt, decoded))
    print("ground truth:")
    ground_truth = score_videos(references, print_table=True)
    print("VAE reconstructions:")
    return {"ground_truth": ground_truth, "reconstruction": score_videos(samples, print_table=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="pipeline folder (default: the shipped model)")
    parser.add_argument("--videos_per_combination", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=24, help="prompts per pipeline call")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's recommended)")
    parser.add_argument("--guidance_scale", type=float, default=None, help="(default: the model's recommended)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reconstruction", action="store_true", help="also score ground truth and VAE round trips")
    parser.add_argument(
        "--image_to_video", action="store_true", help="also generate from unseen first frames (`image=`)"
    )
    parser.add_argument(
        "--image_videos_per_combination", type=int, default=1, help="image-to-video videos per combination"
    )
    parser.add_argument("--skip_text_to_video", action="store_true", help="only the other evaluations asked for")
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
    rows = {}
    if args.reconstruction:
        start = time.perf_counter()
        results.update(
            reconstruction_scores(
                pipeline, call_kwargs["num_frames"], call_kwargs["height"], call_kwargs["width"], args.seed
            )
        )
        rows["ground truth"] = results["ground_truth"]
        rows["VAE reconstruction"] = results["reconstruction"]
        print(f"({time.perf_counter() - start:.0f} s)")

    if not args.skip_text_to_video:
        start = time.perf_counter()
        print("Generated videos (text-to-video):")
        results["generation"] = evaluate_pipeline(
            pipeline,
            videos_per_combination=args.videos_per_combination,
            batch_size=args.batch_size,
            seed=args.seed,
            **call_kwargs,
        )
        results["generation_seconds"] = time.perf_counter() - start
        rows["text-to-video"] = results["generation"]
        print(f"({results['generation_seconds']:.0f} s on {torch.get_num_threads()} threads)")

    if args.image_to_video:
        start = time.perf_counter()
        print("Generated videos (image-to-video, from unseen first frames):")
        image_kwargs = {
            key: value for key, value in call_kwargs.items() if key not in ("num_frames", "height", "width")
        }
        results["image_to_video"] = evaluate_image_to_video(
            pipeline,
            videos_per_combination=args.image_videos_per_combination,
            num_frames=call_kwargs["num_frames"],
            height=call_kwargs["height"],
            width=call_kwargs["width"],
            batch_size=args.batch_size,
            seed=args.seed,
            **image_kwargs,
        )
        results["image_to_video_seconds"] = time.perf_counter() - start
        rows["image-to-video"] = results["image_to_video"]
        print(f"({results['image_to_video_seconds']:.0f} s on {torch.get_num_threads()} threads)")

    if len(rows) > 1:
        for split in ("seen", "heldout"):
            print(f"\nAll evaluations, {split} combinations:")
            print(format_comparison_table(rows, split=split))
    if args.json is not None:
        with atomic_file(args.json, overwrite=True) as temporary:
            with open(temporary, "w") as file:
                json.dump(results, file, indent=2, default=str)


if __name__ == "__main__":
    main()
