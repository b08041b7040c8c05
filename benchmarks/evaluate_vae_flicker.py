"""Per-frame-position quality of a video VAE's reconstructions of moving-shapes clips: the flicker measure of issue 15.

Each dataset video (one per combination, seeded) is encoded (posterior mode) and decoded, then measured:
- PSNR per frame position: the image frame (frame 0) and the frames `f` with `f mod r` = 1, ..., r - 1, 0 (the last
  of each latent frame's group), averaged over videos;
- the object's area per frame (`segment_object`), its coefficient of variation per video (the ground truth has 0,
  up to pixelisation) and the mean area per frame position;
- colour, shape and direction accuracy of the reconstructions (`score_videos`).

    python benchmarks/evaluate_vae_flicker.py --vae diffusers_videolatent/default_model/vae
    python benchmarks/evaluate_vae_flicker.py --vae out/vae_final --json out/flicker_after.json
"""

import argparse
import json
import math

import numpy as np
import torch

from diffusers_videolatent import AutoencoderKLVideo
from diffusers_videolatent.atomic import atomic_file
from diffusers_videolatent.training.evaluate import score_videos, segment_object
from diffusers_videolatent.training.moving_shapes import (
    ALL_COMBINATIONS,
    TRAVEL_FRACTION,
    make_caption,
    render_moving_shape,
)


def position_names(ratio: int) -> list[str]:
    """Names of the frame positions: the image frame, then `f mod r` = 1, ..., r - 1, 0."""
    return ["frame 0"] + [f"mod {remainder}" for remainder in list(range(1, ratio)) + [0]]


def position_of(frame_index: int, ratio: int) -> int:
    """Index into `position_names` of a frame: 0 for the image frame, else its place 1..r in its latent group."""
    if frame_index == 0:
        return 0
    return (frame_index - 1) % ratio + 1


@torch.no_grad()
def measure(
    vae: AutoencoderKLVideo,
    num_frames: int,
    size: int,
    seed: int,
    videos_per_combination: int,
    chunk_size: int | None,
    travel_fraction: float = TRAVEL_FRACTION,
) -> dict:
    """Reconstructs the videos and returns the per-position PSNR and area, the area CVs and the attribute scores."""
    ratio = vae.temporal_compression_ratio
    generator = np.random.default_rng(seed)
    squared_errors = np.zeros((0, num_frames))
    areas, area_variations, samples = [], [], []
    for combination in ALL_COMBINATIONS:
        for _ in range(videos_per_combination):
            frames = render_moving_shape(
                *combination,
                num_frames=num_frames,
                height=size,
                width=size,
                generator=generator,
                travel_fraction=travel_fraction,
            )
            video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None] * 2 - 1  # (1, 3, F, H, W) in [-1, 1]
            latents = vae.encode(video, chunk_size=chunk_size).latent_dist.mode()
            decoded = vae.decode(latents, chunk_size=chunk_size).sample
            reconstruction = ((decoded[0].permute(1, 2, 3, 0) + 1) / 2).clamp(0, 1).numpy()  # (F, H, W, 3)
            error = ((reconstruction - frames) ** 2).mean(axis=(1, 2, 3))  # (F,)
            squared_errors = np.concatenate([squared_errors, error[None]])
            area = segment_object(reconstruction).sum(axis=(1, 2)).astype(np.float64)  # (F,)
            areas.append(area)
            area_variations.append(float(area.std() / max(area.mean(), 1e-9)))
            samples.append((make_caption(*combination), reconstruction))

    names = position_names(ratio)
    positions = np.asarray([position_of(index, ratio) for index in range(num_frames)])
    frame_psnr = 10 * np.log10(1.0 / np.maximum(squared_errors.mean(axis=0), 1e-12))  # (F,) PSNR of the mean MSE
    psnr_by_position = {}
    area_by_position = {}
    mean_areas = np.mean(areas, axis=0)  # (F,)
    for position, name in enumerate(names):
        selected = positions == position
        if selected.any():
            psnr_by_position[name] = float(10 * math.log10(1.0 / max(squared_errors[:, selected].mean(), 1e-12)))
            area_by_position[name] = float(mean_areas[selected].mean())
    later = [psnr_by_position[name] for name in names[1:] if name in psnr_by_position]
    scores = score_videos(samples, print_table=False)
    return {
        "num_videos": len(samples),
        "num_frames": num_frames,
        "psnr": float(10 * math.log10(1.0 / max(squared_errors.mean(), 1e-12))),
        "psnr_by_position": psnr_by_position,
        "psnr_spread_later_frames": float(max(later) - min(later)) if later else 0.0,
        "psnr_per_frame": [float(value) for value in frame_psnr],
        "area_by_position": area_by_position,
        "mean_area_per_frame": [float(value) for value in mean_areas],
        "area_cv_median": float(np.median(area_variations)),
        "area_cv_mean": float(np.mean(area_variations)),
        "color": scores["all"]["color"],
        "shape": scores["all"]["shape"],
        "direction": scores["all"]["direction"],
    }


def format_result(name: str, result: dict) -> str:
    positions = " ".join(f"{key} {value:.2f}" for key, value in result["psnr_by_position"].items())
    areas = " ".join(f"{value:.0f}" for value in result["mean_area_per_frame"])
    return (
        f"{name}: PSNR {result['psnr']:.2f} dB ({positions}; spread over later positions "
        f"{result['psnr_spread_later_frames']:.2f} dB), area CV median {result['area_cv_median']:.3f} "
        f"mean {result['area_cv_mean']:.3f}, colour {100 * result['color']:.1f}% shape {100 * result['shape']:.1f}% "
        f"direction {100 * result['direction']:.1f}%\n  mean area per frame: {areas}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vae", nargs="+", required=True, help="AutoencoderKLVideo folders to compare")
    parser.add_argument("--num_frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--videos_per_combination", type=int, default=1)
    parser.add_argument("--chunk_size", type=int, default=None, help="latent frames per streamed step")
    parser.add_argument(
        "--travel_fraction",
        type=float,
        default=TRAVEL_FRACTION,
        help="distance the object travels over the clip, as a fraction of the frame (its speed)",
    )
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()

    results = {}
    for folder in args.vae:
        vae = AutoencoderKLVideo.from_pretrained(folder).eval()
        results[folder] = measure(
            vae,
            args.num_frames,
            args.size,
            args.seed,
            args.videos_per_combination,
            args.chunk_size,
            args.travel_fraction,
        )
        print(format_result(folder, results[folder]), flush=True)
    if args.json is not None:
        with atomic_file(args.json, overwrite=True) as temporary:
            with open(temporary, "w") as file:
                json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
