"""Two or more grid evaluations side by side, and how they stand against the targets of the three dials (issue 28).

    python benchmarks/compare_grid_evaluations.py stage9=out/stage9_grid.json stage11=out/dials_fg/evaluation_grid.json

Each argument is `NAME=PATH` (or a path, named by its file) of a `benchmarks/evaluate_default_model.py --grid --json`
result; all must have prompted the same combinations. Prints one row per setting and task with each evaluation's
colour / shape / direction, median area CV with the largest clip's, and mean area CV (which the large clips move),
then a summary per evaluation: settings whose median is at or under 0.05, cells with shape under 95% or direction
under 98%, the largest clip, and the frame-rate dial on clips of equal duration (33 frames at 16 fps over 17 frames at
8 fps, per frame: 0.5 when both travel the same distance).

Evaluations that keep seen and held-out combinations apart (from 2026-12-05 on) are read as the targets say: colour,
shape and direction on the seen combinations, with all three right on held-out ones (in brackets) within 5 points
of the seen ones; and the clips above 0.05 are counted, the ground truth's at the same settings beside them.
Evaluations with the coverage CV (from 2026-12-06 on: the object's summed sub-pixel coverage, which does not step with
its position on the pixel grid as the mask's area does) get the same counts by it too, and the clips whose object
size (half extent over the frame's shorter side) is in the world's range, 0.12 to 0.17, are counted.
"""

import argparse
import json
import os
import sys


TASKS = ("text-to-video", "image-to-video")
MEDIAN_TARGET, SHAPE_TARGET, DIRECTION_TARGET, HELDOUT_GAP = 0.05, 0.95, 0.98, 0.05
EQUAL_DURATION = ("17x64x64 8fps", "33x64x64 16fps")


def grid_settings(grid: dict) -> list[str]:
    """The settings of a grid result, in its order (the other keys hold the frame-rate dial and the prompts)."""
    return [key for key, value in grid.items() if isinstance(value, dict) and "settings" in value]


def accuracy_row(cell: dict) -> dict:
    """The scores the accuracy targets read: the seen combinations' where the evaluation kept them apart."""
    return cell["seen"] if "seen" in cell else cell


def heldout_gap(cell: dict) -> float | None:
    """How far all three right on held-out combinations falls below the seen ones (`None`: not kept apart)."""
    if cell.get("heldout", {}).get("num_videos", 0) == 0:
        return None
    return cell["seen"]["all_three"] - cell["heldout"]["all_three"]


def task_records(grid: dict, task: str, key: str) -> list[dict] | None:
    """The per-clip records of `task` over every setting (`None`: none, or written before they held `key`)."""
    records = [record for setting in grid_settings(grid) for record in grid[setting][task].get("videos", [])]
    return records if records and key in records[0] else None


def clips_over(grid: dict, task: str, measure: str = "area_variation") -> tuple[int, int] | None:
    """Clips of `task` whose `measure` is above the target, and all clips (`None`: no per-clip records of it)."""
    records = task_records(grid, task, measure)
    if records is None:
        return None
    return sum(record[measure] > MEDIAN_TARGET for record in records), len(records)


def sizes_in_range(grid: dict, task: str) -> tuple[int, int] | None:
    """Clips of `task` whose object size is in the world's range, and all clips (`None`: not recorded)."""
    records = task_records(grid, task, "object_size_in_range")
    if records is None:
        return None
    return sum(record["object_size_in_range"] for record in records), len(records)


def summary(grid: dict) -> dict:
    """How one grid result stands against the targets."""
    cells = [(setting, task, grid[setting][task]) for setting in grid_settings(grid) for task in TASKS]
    result = {
        "medians_met": sum(row["area_variation_median"] <= MEDIAN_TARGET for _, _, row in cells),
        "cells": len(cells),
        "shape_missed": [
            f"{setting} {task}" for setting, task, row in cells if accuracy_row(row)["shape"] < SHAPE_TARGET
        ],
        "direction_missed": [
            f"{setting} {task}" for setting, task, row in cells if accuracy_row(row)["direction"] < DIRECTION_TARGET
        ],
        "largest_clip": max(row["area_variation_max"] for _, _, row in cells),
    }
    gaps = {f"{setting} {task}": heldout_gap(row) for setting, task, row in cells}
    if all(gap is not None for gap in gaps.values()):
        result["heldout_missed"] = [cell for cell, gap in gaps.items() if gap > HELDOUT_GAP + 1e-9]
    counts = {task: clips_over(grid, task) for task in ("ground truth", "image-to-video")}
    if any(count is not None for count in counts.values()):
        result["clips_over"] = {task: count for task, count in counts.items() if count is not None}
    if all("coverage_variation_median" in row for _, _, row in cells):
        result["coverage"] = {
            "medians_met": sum(row["coverage_variation_median"] <= MEDIAN_TARGET for _, _, row in cells),
            "largest_clip": max(row["coverage_variation_max"] for _, _, row in cells),
            "clips_over": {
                task: count
                for task in ("ground truth", "image-to-video")
                if (count := clips_over(grid, task, "coverage_variation")) is not None
            },
        }
    sizes = {task: sizes_in_range(grid, task) for task in TASKS}
    if all(count is not None for count in sizes.values()):
        result["sizes_in_range"] = sizes
    if all(setting in grid for setting in EQUAL_DURATION):
        slow, fast = (grid[setting] for setting in EQUAL_DURATION)
        result["equal_duration_per_frame"] = {
            task: fast[task]["pixels_per_frame"] / slow[task]["pixels_per_frame"] for task in ("ground truth", *TASKS)
        }
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("evaluations", nargs="+", help="NAME=PATH or PATH of a grid evaluation's JSON")
    args = parser.parse_args(argv)
    if len(args.evaluations) < 2:
        sys.exit("error: compare_grid_evaluations: pass at least two evaluations")
    names, grids = [], []
    for argument in args.evaluations:
        name, _, path = argument.rpartition("=")
        try:
            with open(path) as file:
                result = json.load(file)
        except (OSError, ValueError) as error:
            sys.exit(f"error: compare_grid_evaluations: cannot read {path}: {error}")
        if not isinstance(result.get("grid"), dict):
            sys.exit(f"error: compare_grid_evaluations: {path} is not a grid evaluation (no `grid`)")
        names.append(name or os.path.splitext(os.path.basename(path))[0])
        grids.append(result["grid"])
    prompts = {tuple(grid.get("combinations", ())) for grid in grids}
    if len(prompts) != 1:
        sys.exit("error: compare_grid_evaluations: the evaluations prompted different combinations")
    settings = grid_settings(grids[0])
    if any(grid_settings(grid) != settings for grid in grids[1:]):
        sys.exit("error: compare_grid_evaluations: the evaluations have different settings")

    header = ["setting", "task"]
    for name in names:
        header += [f"{name}: colour / shape / direction", f"{name}: area CV median (max)", f"{name}: mean"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for setting in settings:
        for task in TASKS:
            row = [setting, task]
            for grid in grids:
                cell = grid[setting][task]
                scores = accuracy_row(cell)
                accuracy = f"{scores['color']:.0%} / {scores['shape']:.0%} / {scores['direction']:.0%}"
                if heldout_gap(cell) is not None:
                    accuracy += f" ({cell['heldout']['all_three']:.0%})"
                row.append(accuracy)
                row.append(f"{cell['area_variation_median']:.3f} ({cell['area_variation_max']:.3f})")
                row.append(f"{cell['area_variation']:.3f}")
            print("| " + " | ".join(row) + " |")
    print()
    for name, grid in zip(names, grids):
        result = summary(grid)
        line = (
            f"{name}: median area CV <= {MEDIAN_TARGET} in {result['medians_met']} of {result['cells']}; "
            f"shape < {SHAPE_TARGET:.0%} in {len(result['shape_missed'])} cells, direction < {DIRECTION_TARGET:.0%} "
            f"in {len(result['direction_missed'])}; largest clip {result['largest_clip']:.3f}"
        )
        if "heldout_missed" in result:
            line += f"; held out more than {100 * HELDOUT_GAP:.0f} points below seen in {len(result['heldout_missed'])} cells"
        for task, (over, total) in result.get("clips_over", {}).items():
            line += f"; {task} clips over {MEDIAN_TARGET}: {over} of {total}"
        if "coverage" in result:
            coverage = result["coverage"]
            line += (
                f"; by coverage CV: median <= {MEDIAN_TARGET} in {coverage['medians_met']} of {result['cells']}, "
                f"largest clip {coverage['largest_clip']:.3f}"
            )
            for task, (over, total) in coverage["clips_over"].items():
                line += f", {task} clips over {MEDIAN_TARGET}: {over} of {total}"
        if "sizes_in_range" in result:
            counts = ", ".join(
                f"{task} {inside} of {total}" for task, (inside, total) in result["sizes_in_range"].items()
            )
            line += f"; object size in the world's range: {counts}"
        if "equal_duration_per_frame" in result:
            dial = ", ".join(f"{task} {value:.2f}" for task, value in result["equal_duration_per_frame"].items())
            line += f"; per frame, 33 at 16 fps over 17 at 8 fps: {dial}"
        print(line)


if __name__ == "__main__":
    main()
