"""How the object's size wobbles in the clips of a grid evaluation: a slow drift, the latent frames, or the rest.

    python benchmarks/wobble_components.py out/evaluation_grid.json
    python benchmarks/wobble_components.py out/evaluation_grid.json --settings "17x128x128 8fps" --over 0.05

Reads a `benchmarks/evaluate_default_model.py --grid --json` result whose records hold each clip's per-frame
`coverages` (the object's summed sub-pixel coverage, from 2026-12-06 on) and splits the variance of each clip's
coverage over its frames into three parts that add up to it:
- trend: the least-squares line through the coverages against the frame index (the object growing or shrinking
  steadily over the clip);
- latent period: what is left of it, averaged over the frames at the same place between latent frames (frame index
  modulo `--period`, the VAE's temporal compression: 4 for the shipped model), repeated (a size that pulses with the
  latent frames, as a decoder that sharpens its key frames would give);
- rest: everything else (slower swings than the period, and noise).

Prints one row per setting and task: clips, median coverage CV, the median share of each part, and the median ratio
of the coverage at the end of the clip (last two frames) over the start (first two). Clips with an object in fewer
than 3 frames (a model that lost it) have no wobble to split: they are left out of their row and counted after the
table.
"""

import argparse
import json
import sys

import numpy as np
from compare_grid_evaluations import grid_settings


TASKS = ("ground truth", "text-to-video", "image-to-video")
MIN_OBJECT_FRAMES = 3  # a line through the coverages needs a residual to split


def wobble_components(coverages, period: int) -> dict:
    """
    Splits the variance of one clip's per-frame coverages into `trend`, `period` and `rest` shares (summing to 1,
    all 0 for a constant coverage) and gives its `cv` and `end_over_start`.

    Args:
        coverages (sequence of `float`): the object's coverage in each frame; frames without an object (0) are left
            out.
        period (`int`): frames from one latent frame to the next.
    """
    values = np.asarray(coverages, dtype=np.float64)
    frames = np.flatnonzero(values > 0)
    values = values[frames]
    if values.size < MIN_OBJECT_FRAMES:
        raise ValueError(
            f"`coverages` must hold at least {MIN_OBJECT_FRAMES} frames with an object, but holds {values.size}."
        )
    mean, variance = values.mean(), values.var()
    result = {"cv": float(np.sqrt(variance) / mean), "end_over_start": float(values[-2:].mean() / values[:2].mean())}
    if variance == 0:
        return {**result, "trend": 0.0, "period": 0.0, "rest": 0.0}
    residual = values - np.polyval(np.polyfit(frames, values, 1), frames)
    phases = frames % period
    phase_means = np.zeros(period)
    for phase in np.unique(phases):
        phase_means[phase] = residual[phases == phase].mean()
    pulse = phase_means[phases]
    rest = residual - pulse
    # the trend's residual is orthogonal to the line; the phase means are the projection of the residual onto the
    # phase indicators, so the three parts' variances add up to the clip's
    return {
        **result,
        "trend": float(1.0 - residual.var() / variance),
        "period": float(((pulse - pulse.mean()) ** 2).mean() / variance),
        "rest": float(((rest - rest.mean()) ** 2).mean() / variance),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("grid_json", help="a `evaluate_default_model.py --grid --json` result")
    parser.add_argument("--period", type=int, default=4, help="frames between latent frames (default: 4)")
    parser.add_argument("--settings", default=None, help="only these settings, separated by commas")
    parser.add_argument("--over", type=float, default=None, help="only clips whose coverage CV is above this")
    args = parser.parse_args(argv)
    if args.period < 2:
        sys.exit(f"error: wobble_components: --period must be >= 2, but is {args.period}")
    try:
        with open(args.grid_json) as file:
            grid = json.load(file).get("grid")
    except (OSError, ValueError) as error:
        sys.exit(f"error: wobble_components: cannot read {args.grid_json}: {error}")
    if not isinstance(grid, dict):
        sys.exit(f"error: wobble_components: {args.grid_json} is not a grid evaluation (no `grid`)")
    settings = grid_settings(grid)
    if args.settings is not None:
        wanted = [setting.strip() for setting in args.settings.split(",")]
        unknown = [setting for setting in wanted if setting not in settings]
        if unknown:
            sys.exit(f"error: wobble_components: --settings {unknown} not in the evaluation's {settings}")
        settings = wanted

    left_out = []
    print("| setting | task | clips | coverage CV (median) | trend | latent period | rest | end / start |")
    print("|---|---|---|---|---|---|---|---|")
    for setting in settings:
        for task in (task for task in TASKS if task in grid[setting]):
            records = grid[setting][task].get("videos", [])
            if not records or "coverages" not in records[0]:
                sys.exit(f"error: wobble_components: {setting} {task} has no per-frame `coverages` in its records")
            kept = [
                record
                for record in records
                if np.count_nonzero(np.asarray(record["coverages"]) > 0) >= MIN_OBJECT_FRAMES
            ]
            if len(kept) < len(records):
                left_out.append(f"{setting} {task}: {len(records) - len(kept)}")
            parts = [wobble_components(record["coverages"], args.period) for record in kept]
            if args.over is not None:
                parts = [part for part in parts if part["cv"] > args.over]
            if not parts:
                print(f"| {setting} | {task} | 0 | - | - | - | - | - |")
                continue
            medians = {key: float(np.median([part[key] for part in parts])) for key in parts[0]}
            print(
                f"| {setting} | {task} | {len(parts)} | {medians['cv']:.3f} | {medians['trend']:.0%} "
                f"| {medians['period']:.0%} | {medians['rest']:.0%} | {medians['end_over_start']:.3f} |"
            )
    if left_out:
        print(f"\nleft out, an object in fewer than {MIN_OBJECT_FRAMES} frames: {'; '.join(left_out)}")


if __name__ == "__main__":
    main()
