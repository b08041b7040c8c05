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

`--grid` evaluates the three dials instead (issue 28), one row per setting: 17 frames at 64x64, 96x96, 128x128,
64x128 and 128x64; 9, 33 and 61 frames at 64x64; 4, 16 and 24 fps at 17 frames 64x64; 33 frames at 16 fps (the
duration of 17 frames at 8 fps); 8 fps elsewhere. Each setting
has a ground-truth reference row (the physical moving-shapes world of `render_physical_moving_shape` at that setting,
dataset seed `IMAGE_TO_VIDEO_DATASET_SEED`), the text-to-video row and, with `--image_to_video`, the image-to-video row
from the ground truth's first frames: colour, shape, direction, median and largest area CV and coverage CV (the
object's summed sub-pixel coverage, see `diffusers_videolatent.training.evaluate`), centroid jitter, flicker score,
frame-0 PSNR, the object's speed in pixels per second and per frame, the distance it travels (medians), and its size
(the median half extent over the frame's shorter side, and the share of clips in the world's 0.12-0.17). Then the
frame-rate dial: motion per frame at 16 fps over 8 fps (0.5 in the physical world) and the distance of 33 frames at
16 fps over 17 frames at 8 fps (1.0). With `--reconstruction` each setting also has a VAE round trip row of the
ground truth (its frame-0 PSNR is the most image-to-video can keep of the image; `--skip_text_to_video` leaves only
that and what else is asked for). `--combination_stride 3` keeps every third combination (fewer videos, for a
quick table); `--grid_settings 17x64x64@8,17x64x64@16` evaluates only those settings.

    python benchmarks/evaluate_default_model.py --grid --image_to_video --videos_per_combination 1
"""

import argparse
import json
import time

import numpy as np
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
    to_uint8_frames,
)
from diffusers_videolatent.training.moving_shapes import (
    ALL_COMBINATIONS,
    COLORS,
    DIRECTIONS,
    HELDOUT_COMBINATIONS,
    SHAPES,
    make_caption,
    render_physical_moving_shape,
)


# the settings of issue 28's grid: (num_frames, height, width, fps)
GRID_SETTINGS = (
    (17, 64, 64, 8),
    (17, 96, 96, 8),
    (17, 128, 128, 8),
    (17, 64, 128, 8),
    (17, 128, 64, 8),
    (9, 64, 64, 8),
    (33, 64, 64, 8),
    (61, 64, 64, 8),
    (17, 64, 64, 4),
    (17, 64, 64, 16),
    (17, 64, 64, 24),
    (33, 64, 64, 16),  # the duration of 17 frames at 8 fps: the same distance travelled
)
GRID_COLUMNS = (
    "| setting | videos | colour | shape | direction | area CV (median) | area CV (max) | coverage CV (median) "
    "| coverage CV (max) | jitter (px) | flicker | frame-0 PSNR | px/s | px/frame | distance (px) | object size "
    "| size in range |"
)


def grid_row(samples: list, fps: float, images: list | None = None) -> dict:
    """
    Scores `(prompt, frames)` pairs of one setting; adds the median and largest area CV and coverage CV, the median
    speed in px/s, and the median object size with the share of clips whose size is in the world's range.
    """
    scores = score_videos(samples, print_table=False, images=images)
    distances = [record["travel"] for record in scores["videos"]]
    per_frame = [distance / max(len(frames) - 1, 1) for distance, (_, frames) in zip(distances, samples)]
    row = dict(scores["all"])
    # the targets are on seen combinations, with held-out ones compared to them; the records allow any
    # other statistic of the clips later (which prompt, what was read, its area CV and travel)
    row["seen"], row["heldout"] = scores["seen"], scores["heldout"]
    row["videos"] = scores["videos"]
    for measure in ("area_variation", "coverage_variation"):
        values = [record[measure] for record in scores["videos"]]
        row[f"{measure}_median"], row[f"{measure}_max"] = float(np.median(values)), float(np.max(values))
    row["pixels_per_frame"] = float(np.median(per_frame))
    row["pixels_per_second"] = row["pixels_per_frame"] * fps
    row["distance"] = float(np.median(distances))  # start to end of the clip, in pixels
    # half extent over the frame's shorter side; the world draws it from 0.12 to 0.17 at every size and aspect ratio
    row["object_size_median"] = float(np.median([record["object_size"] for record in scores["videos"]]))
    row["object_size_in_range"] = float(np.mean([record["object_size_in_range"] for record in scores["videos"]]))
    return row


def format_grid_row(name: str, row: dict) -> str:
    psnr = row.get("first_frame_psnr")
    return (
        f"| {name} | {row['num_videos']} | {100 * row['color']:.0f}% | {100 * row['shape']:.0f}% "
        f"| {100 * row['direction']:.0f}% | {row['area_variation_median']:.3f} | {row['area_variation_max']:.3f} "
        f"| {row['coverage_variation_median']:.3f} | {row['coverage_variation_max']:.3f} "
        f"| {row['centroid_jitter']:.2f} | {row['flicker_score']:.4f} | {'-' if psnr is None else f'{psnr:.1f}'} "
        f"| {row['pixels_per_second']:.1f} | {row['pixels_per_frame']:.2f} | {row['distance']:.1f} "
        f"| {row['object_size_median']:.3f} | {100 * row['object_size_in_range']:.0f}% |"
    )


def frame_rate_dial(results: dict) -> dict:
    """
    The frame-rate dial's two ratios per mode, from the first 8 fps setting of the grid that has the settings to
    compare with (17 frames at 64x64 in the default grid): motion per frame at 16 fps against 8 fps, same frames and
    size (0.5 when the model keeps the speed in the scene), and the distance travelled in the same duration at 16 fps
    (33 frames against 17) against 8 fps (1.0).
    """
    keys = ("num_frames", "height", "width", "fps")
    settings = {tuple(row["settings"][key] for key in keys): row for row in results.values()}
    for (num_frames, height, width, fps), base in settings.items():
        faster = settings.get((num_frames, height, width, 16))
        longer = settings.get((2 * num_frames - 1, height, width, 16))
        if fps != 8 or (faster is None and longer is None):
            continue
        dial = {"setting": f"{num_frames}x{height}x{width}"}
        for mode in (mode for mode in base if mode not in ("settings", "seconds")):
            ratios = {}
            if faster is not None:
                ratios["per_frame_16_over_8"] = faster[mode]["pixels_per_frame"] / base[mode]["pixels_per_frame"]
            if longer is not None:
                ratios["same_duration_distance_16_over_8"] = longer[mode]["distance"] / base[mode]["distance"]
            dial[mode] = ratios
        return dial
    return {}


def parse_grid_settings(text: str) -> tuple:
    """`"17x64x64@8,33x64x64@16"` -> `((17, 64, 64, 8), (33, 64, 64, 16))`."""
    settings = []
    for item in text.split(","):
        try:
            size, fps = item.strip().split("@")
            num_frames, height, width = (int(value) for value in size.split("x"))
            settings.append((num_frames, height, width, int(fps)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"takes FRAMESxHEIGHTxWIDTH@FPS items separated by commas, got {item!r}")
    return tuple(settings)


def describe_combinations(combinations) -> str:
    """
    One line naming the colours, shapes and directions a subset of the combinations covers, and those it leaves out:
    colour, shape and direction scores say nothing of what the subset does not prompt (every 12th of the 72
    combinations is a circle moving left in each colour; every 5th covers them all).
    """
    parts = []
    for position, (name, values) in enumerate((("colours", COLORS), ("shapes", SHAPES), ("directions", DIRECTIONS))):
        prompted = {combination[position] for combination in combinations}
        covered = [value for value in values if value in prompted]
        missing = [value for value in values if value not in prompted]
        parts.append(f"{name} {', '.join(covered)}" + (f" (not {', '.join(missing)})" if missing else ""))
    heldout = sum(combination in HELDOUT_COMBINATIONS for combination in combinations)
    return f"{len(combinations)} of {len(ALL_COMBINATIONS)} combinations ({heldout} held out): " + "; ".join(parts)


def evaluate_grid(pipeline, args, call_kwargs: dict) -> dict:
    """Every setting of `GRID_SETTINGS`: ground truth, text-to-video and (with `--image_to_video`) image-to-video."""
    combinations = ALL_COMBINATIONS[:: args.combination_stride]
    print(describe_combinations(combinations))
    results = {}
    print(GRID_COLUMNS)
    print("|---" * GRID_COLUMNS.count(" |") + "|")
    for num_frames, height, width, fps in args.grid_settings:
        setting = f"{num_frames}x{height}x{width} {fps}fps"
        start = time.perf_counter()
        references = []
        for index, combination in enumerate(c for c in combinations for _ in range(args.videos_per_combination)):
            generator = np.random.default_rng((IMAGE_TO_VIDEO_DATASET_SEED + args.seed, index))
            video = render_physical_moving_shape(*combination, num_frames, height, width, fps, generator)
            references.append((make_caption(*combination), to_uint8_frames(video)))
        prompts = [prompt for prompt, _ in references]
        images = [video[0] for _, video in references]  # (H, W, 3) uint8
        size = {"num_frames": num_frames, "height": height, "width": width, "fps": fps}
        rows = {"ground truth": grid_row(references, fps)}
        if args.reconstruction:
            round_trips = [(prompt, vae_round_trip(pipeline, video)) for prompt, video in references]
            rows["VAE reconstruction"] = grid_row(round_trips, fps, images)
        modes = () if args.skip_text_to_video else ("text-to-video",)
        for mode in modes + (("image-to-video",) if args.image_to_video else ()):
            samples = []
            for call, begin in enumerate(range(0, len(prompts), args.batch_size)):
                extra = {"image": images[begin : begin + args.batch_size]} if mode == "image-to-video" else {}
                generator = torch.Generator("cpu").manual_seed(args.seed + call)
                frames = pipeline(
                    prompts[begin : begin + args.batch_size],
                    generator=generator,
                    output_type="np",
                    **size,
                    **call_kwargs,
                    **extra,
                ).frames  # (B, F, H, W, 3)
                samples.extend(zip(prompts[begin : begin + args.batch_size], frames))
            rows[mode] = grid_row(samples, fps, images if mode == "image-to-video" else None)
        for name, row in rows.items():
            print(format_grid_row(f"{setting} {name}", row), flush=True)
        results[setting] = {"settings": size, **rows, "seconds": time.perf_counter() - start}
    results["frame_rate_dial"] = frame_rate_dial(results)
    results["combinations"] = [make_caption(*combination) for combination in combinations]
    dial = results["frame_rate_dial"]
    for mode, ratios in ((mode, ratios) for mode, ratios in dial.items() if mode != "setting"):
        values = ", ".join(f"{name} {value:.2f}" for name, value in ratios.items())
        print(f"frame-rate dial from {dial['setting']} at 8 fps, {mode}: {values}")
    return results


def vae_round_trip(pipeline: VideoLatentPipeline, frames: np.ndarray) -> np.ndarray:
    """`frames` (uint8, `(F, H, W, 3)`) encoded and decoded by the pipeline's VAE: float in [0, 1], `(F, H, W, 3)`."""
    video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1  # (1, 3, F, H, W) in [-1, 1]
    with torch.no_grad():
        decoded = pipeline.decode_latents(pipeline.encode_video(video))  # (1, 3, F, H, W) in [-1, 1]
    return ((decoded[0].permute(1, 2, 3, 0).float() + 1) / 2).clamp(0, 1).numpy()


def reconstruction_scores(pipeline: VideoLatentPipeline, num_frames: int, height: int, width: int, seed: int) -> dict:
    """
    Scores unseen ground-truth videos (one per combination) and their VAE round trips (what the decoder can show at
    best); returns `{"ground_truth": ..., "reconstruction": ...}`, each what `score_videos` returns.
    """
    references = render_evaluation_videos(
        num_frames=num_frames, height=height, width=width, seed=IMAGE_TO_VIDEO_DATASET_SEED + seed
    )
    samples = [(prompt, vae_round_trip(pipeline, frames)) for prompt, frames in references]
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
    parser.add_argument("--grid", action="store_true", help="one row per setting of the three dials (see above)")
    parser.add_argument("--combination_stride", type=int, default=1, help="--grid: every N-th combination only")
    parser.add_argument(
        "--grid_settings",
        type=parse_grid_settings,
        default=GRID_SETTINGS,
        help="--grid: the settings, FRAMESxHEIGHTxWIDTH@FPS separated by commas (default: issue 28's grid)",
    )
    args = parser.parse_args()
    if args.combination_stride < 1:
        parser.error(f"--combination_stride must be >= 1, but is {args.combination_stride}.")

    pipeline = VideoLatentPipeline.from_pretrained(args.model)
    settings = pipeline.resolve_generation_settings(num_inference_steps=args.steps, guidance_scale=args.guidance_scale)
    call_kwargs = {
        key: settings[key] for key in ("num_frames", "height", "width", "num_inference_steps", "guidance_scale")
    }
    pipeline.set_progress_bar_config(disable=True)
    print(f"model {args.model}, {args.videos_per_combination} videos per combination, {call_kwargs}")

    results = {"settings": call_kwargs, "videos_per_combination": args.videos_per_combination}
    if args.grid:
        sampling = {key: call_kwargs[key] for key in ("num_inference_steps", "guidance_scale")}
        results["grid"] = evaluate_grid(pipeline, args, sampling)
        if args.json is not None:
            with atomic_file(args.json, overwrite=True) as temporary:
                with open(temporary, "w") as file:
                    json.dump(results, file, indent=2, default=str)
        return
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
