"""Long videos from a moving-shapes model with FreeNoise windows or FIFO: does the video keep its prompt?

    python benchmarks/evaluate_long_videos.py                                  # the shipped model, 121 and 241 frames
    python benchmarks/evaluate_long_videos.py --num_frames 121 --context_length 9 --context_scope unet --json out.json
    python benchmarks/evaluate_long_videos.py --num_frames 121 241 --fifo --every 12 --travel

Every `--every`-th of the 72 moving-shapes combinations is prompted once per length, with seeded noise and windows of
`--context_length` latent frames (`pipe.enable_free_noise`, with `--context_scope`, or `pipe.enable_fifo_denoising`
with `--fifo`); the shipped model was trained on 9 to 61 frames (3 to 16 latent frames) and its frame-position table
holds 16. Each video is measured with
`diffusers_videolatent.training.evaluate.analyze_long_video`: colour, shape and direction of the whole video, the
object-area CV, VBench's temporal-flickering score, whether the first and the last second still show the prompt's
colour, shape and direction (over a long video the whole-video direction fits one line to all centroids, which an
object that leaves the frame and comes back defeats), and the object's speed in the last second over that in the
first (constant speed: 1). A length of at most one window (17 frames) is the reference without windows. `--travel`
adds one travelling prompt per length, `{0: a red circle moving right, middle frame: a blue circle moving right}`, and
reports the colour of each of its seconds.
"""

import argparse
import json
import math
import statistics
import time

import numpy as np
import torch

from diffusers_videolatent import VideoLatentPipeline
from diffusers_videolatent.cli import DEFAULT_MODEL
from diffusers_videolatent.training.evaluate import analyze_long_video, analyze_video
from diffusers_videolatent.training.moving_shapes import ALL_COMBINATIONS, make_caption


def summarise(prompts: list[str], combinations: list[tuple], analyses: list[dict]) -> dict:
    whole = [analysis["whole"] for analysis in analyses]
    expected = [dict(zip(("color", "shape", "direction"), combination)) for combination in combinations]
    ratios = [analysis["speed_ratio"] for analysis in analyses if not math.isnan(analysis["speed_ratio"])]

    def share(values) -> float:
        return float(np.mean(list(values)))

    return {
        "videos": len(prompts),
        "color": share(found.color == wanted["color"] for found, wanted in zip(whole, expected)),
        "shape": share(found.shape == wanted["shape"] for found, wanted in zip(whole, expected)),
        "direction": share(found.direction == wanted["direction"] for found, wanted in zip(whole, expected)),
        "area_cv": share(found.area_variation for found in whole),
        "presence": share(found.presence for found in whole),
        "flicker": share(found.flicker_score for found in whole),
        "color_kept": share(
            analysis["first_second"].color == analysis["last_second"].color == wanted["color"]
            for analysis, wanted in zip(analyses, expected)
        ),
        "shape_kept": share(
            analysis["first_second"].shape == analysis["last_second"].shape == wanted["shape"]
            for analysis, wanted in zip(analyses, expected)
        ),
        "direction_kept": share(
            analysis["first_second"].direction == analysis["last_second"].direction == wanted["direction"]
            for analysis, wanted in zip(analyses, expected)
        ),
        "speed_ratio_median": statistics.median(ratios) if ratios else float("nan"),
        "speed_within_20_percent": share(abs(ratio - 1) <= 0.2 for ratio in ratios) if ratios else 0.0,
        "speed_first_second": share(analysis["speed_first_second"] for analysis in analyses),
        "speed_last_second": share(analysis["speed_last_second"] for analysis in analyses),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--num_frames", type=int, nargs="+", default=[121, 241])
    parser.add_argument("--context_length", type=int, default=16, help="latent frames per window (trained: 3-16)")
    parser.add_argument("--context_stride", type=int, default=4)
    parser.add_argument("--context_scope", default="attention", choices=("attention", "unet"))
    parser.add_argument("--weighting_scheme", default="pyramid")
    parser.add_argument("--noise_type", default="shuffle_context")
    parser.add_argument(
        "--fifo",
        action="store_true",
        help="FIFO diagonal denoising (`pipe.enable_fifo_denoising`, windows of --context_length) instead of FreeNoise",
    )
    parser.add_argument("--no_lookahead", action="store_true", help="with --fifo: tile the queue with windows")
    parser.add_argument("--every", type=int, default=6, help="prompt every N-th combination (72 in all)")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--travel", action="store_true", help="also one travelling prompt per length")
    parser.add_argument("--json", default=None, help="write the summaries here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    pipe = VideoLatentPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    if args.fifo:
        pipe.enable_fifo_denoising(context_length=args.context_length, lookahead_denoising=not args.no_lookahead)
        method = f"FIFO diagonal denoising in windows of {args.context_length} latent frames" + (
            ", no lookahead" if args.no_lookahead else ", lookahead"
        )
    else:
        pipe.enable_free_noise(
            context_length=args.context_length,
            context_stride=args.context_stride,
            weighting_scheme=args.weighting_scheme,
            noise_type=args.noise_type,
            context_scope=args.context_scope,
        )
        method = (
            f"windows of {args.context_length} latent frames, stride {args.context_stride}, {args.weighting_scheme},"
            f" {args.noise_type} noise, {args.context_scope} scope"
        )
    fps = int(pipe.resolve_generation_settings()["fps"])
    combinations = list(ALL_COMBINATIONS[:: args.every])
    prompts = [make_caption(*combination) for combination in combinations]
    call = {"num_inference_steps": args.steps} if args.steps is not None else {}

    summaries = {}
    for num_frames in args.num_frames:
        start, analyses = time.perf_counter(), []
        for index in range(0, len(prompts), args.batch_size):
            generator = torch.Generator("cpu").manual_seed(args.seed + index)
            batch = prompts[index : index + args.batch_size]
            frames = pipe(batch, num_frames=num_frames, generator=generator, output_type="np", **call).frames
            analyses.extend(analyze_long_video(video, fps) for video in frames)
        summaries[num_frames] = summarise(prompts, combinations, analyses)
        summaries[num_frames]["seconds"] = time.perf_counter() - start
        if args.travel:
            travel = {0: "a red circle moving right", num_frames // 2: "a blue circle moving right"}
            generator = torch.Generator("cpu").manual_seed(args.seed)
            video = pipe(travel, num_frames=num_frames, generator=generator, output_type="np", **call).frames[0]
            seconds = [video[start : start + fps] for start in range(0, len(video) - fps + 1, fps)]
            summaries[num_frames]["travel"] = {
                "prompt": {str(frame): text for frame, text in travel.items()},
                "colour_per_second": [analyze_video(second, min_travel=0.0).color for second in seconds],
            }

    print(f"{args.model}: {method}; {len(prompts)} prompts (every {args.every}th combination), seed {args.seed}")
    print(
        "| frames | videos | colour | shape | direction | area CV | presence | flicker score |"
        " colour kept (first/last s) | shape kept | direction kept | speed last/first s (median) | speed within 20% |"
        " seconds |"
    )
    print("|---" * 14 + "|")
    for num_frames, summary in summaries.items():
        print(
            f"| {num_frames} | {summary['videos']} | {summary['color']:.0%} | {summary['shape']:.0%} |"
            f" {summary['direction']:.0%} | {summary['area_cv']:.3f} | {summary['presence']:.2f} |"
            f" {summary['flicker']:.4f} |"
            f" {summary['color_kept']:.0%} | {summary['shape_kept']:.0%} | {summary['direction_kept']:.0%} |"
            f" {summary['speed_ratio_median']:.2f} |"
            f" {summary['speed_within_20_percent']:.0%} | {summary['seconds']:.0f} |"
        )
        if "travel" in summary:
            travel = summary["travel"]
            print(f"travelling prompt {travel['prompt']}, colour per second: {' '.join(travel['colour_per_second'])}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({str(frames): summary for frames, summary in summaries.items()}, file, indent=2)


if __name__ == "__main__":
    main()
