"""`benchmarks/compare_grid_evaluations.py` reads grid evaluations side by side and counts them against the targets."""

import json
import subprocess
import sys
from pathlib import Path


SCRIPT = Path(__file__).parents[1] / "benchmarks" / "compare_grid_evaluations.py"


def _cell(median, largest, shape=1.0, direction=1.0, pixels_per_frame=2.0):
    return {
        "color": 1.0,
        "shape": shape,
        "direction": direction,
        "area_variation": (median + largest) / 2,
        "area_variation_median": median,
        "area_variation_max": largest,
        "pixels_per_frame": pixels_per_frame,
    }


def _grid(path, medians, shape=1.0, fast_pixels_per_frame=1.0, prompts=("a red circle moving left",)):
    grid = {}
    # the ground truth moves 2 px per frame at 8 fps and 1 at 16 fps; the model 2 and `fast_pixels_per_frame`
    for (setting, median), per_frame, truth in zip(medians.items(), (2.0, fast_pixels_per_frame), (2.0, 1.0)):
        grid[setting] = {"settings": {}, "ground truth": _cell(0.01, 0.02, pixels_per_frame=truth)}
        grid[setting]["text-to-video"] = _cell(median, 0.1, shape=shape, pixels_per_frame=per_frame)
        grid[setting]["image-to-video"] = _cell(median + 0.01, 0.3, pixels_per_frame=per_frame)
    grid["frame_rate_dial"] = {"setting": "17x64x64 8fps"}
    grid["combinations"] = list(prompts)
    path.write_text(json.dumps({"grid": grid}))
    return path


def _run(*arguments):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, arguments)], capture_output=True, text=True)


def test_compare_counts_the_targets(tmp_path):
    first = _grid(tmp_path / "a.json", {"17x64x64 8fps": 0.04, "33x64x64 16fps": 0.05}, shape=0.9)
    second = _grid(tmp_path / "b.json", {"17x64x64 8fps": 0.03, "33x64x64 16fps": 0.06}, fast_pixels_per_frame=0.8)
    result = _run(f"old={first}", second)
    assert result.returncode == 0, result.stderr
    assert "| 17x64x64 8fps | text-to-video | 100% / 90% / 100% | 0.040 (0.100) | 0.070 | 100% / 100% / 100% |" in (
        result.stdout
    )
    lines = result.stdout.strip().splitlines()
    # old: medians 0.04, 0.05 (t2v) and 0.05, 0.06 (i2v) -> 3 of 4 at or under 0.05; shape 90% in both t2v cells
    assert lines[-2] == (
        "old: median area CV <= 0.05 in 3 of 4; shape < 95% in 2 cells, direction < 98% in 0; largest clip 0.300; "
        "per frame, 33 at 16 fps over 17 at 8 fps: ground truth 0.50, text-to-video 0.50, image-to-video 0.50"
    )
    assert lines[-1].startswith("b: median area CV <= 0.05 in 2 of 4; shape < 95% in 0 cells")
    assert lines[-1].endswith("text-to-video 0.40, image-to-video 0.40")


def test_compare_refuses_different_prompts_and_non_grids(tmp_path):
    first = _grid(tmp_path / "a.json", {"17x64x64 8fps": 0.04})
    other = _grid(tmp_path / "b.json", {"17x64x64 8fps": 0.04}, prompts=("a red square moving up",))
    result = _run(first, other)
    assert result.returncode != 0 and "different combinations" in result.stderr
    (tmp_path / "c.json").write_text(json.dumps({"videos": 3}))
    result = _run(first, tmp_path / "c.json")
    assert result.returncode != 0 and "not a grid evaluation" in result.stderr
    result = _run(first)
    assert result.returncode != 0 and "at least two" in result.stderr


def _records(areas, heldout_right):
    # one record per clip: the last is a held-out combination, all three right or not
    records = [{"split": "seen", "area_variation": area} for area in areas[:-1]]
    return records + [{"split": "heldout", "area_variation": areas[-1], "all_three": heldout_right}]


def test_compare_reads_seen_and_heldout_apart_and_counts_clips(tmp_path):
    first = _grid(tmp_path / "a.json", {"17x64x64 8fps": 0.04, "33x64x64 16fps": 0.04})
    grid = json.loads(first.read_text())
    for setting in ("17x64x64 8fps", "33x64x64 16fps"):
        for task, areas in (
            ("ground truth", [0.01, 0.06]),
            ("text-to-video", [0.02, 0.03]),
            ("image-to-video", [0.07, 0.02]),
        ):
            cell = grid["grid"][setting][task]
            # all videos read 90% shape, but the seen ones all right: the target reads the seen ones
            cell["shape"] = 0.9
            cell["seen"] = dict(cell, shape=1.0, all_three=1.0, num_videos=1)
            heldout_right = not (setting == "33x64x64 16fps" and task == "image-to-video")
            cell["heldout"] = dict(cell, all_three=float(heldout_right), num_videos=1)
            cell["videos"] = _records(areas, heldout_right)
    first.write_text(json.dumps(grid))
    second = _grid(tmp_path / "b.json", {"17x64x64 8fps": 0.04, "33x64x64 16fps": 0.04}, shape=0.9)
    result = _run(f"new={first}", f"old={second}")
    assert result.returncode == 0, result.stderr
    assert "| 33x64x64 16fps | image-to-video | 100% / 100% / 100% (0%) |" in result.stdout
    lines = result.stdout.strip().splitlines()
    assert lines[-2].startswith("new: median area CV <= 0.05 in 4 of 4; shape < 95% in 0 cells, direction < 98% in 0")
    assert "held out more than 5 points below seen in 1 cells" in lines[-2]
    assert "ground truth clips over 0.05: 2 of 4; image-to-video clips over 0.05: 2 of 4" in lines[-2]
    # without the split, every video counts and nothing is said about held-out combinations or clips
    assert lines[-1].startswith("old: median area CV <= 0.05 in 4 of 4; shape < 95% in 2 cells")
    assert "held out" not in lines[-1] and "clips over" not in lines[-1]


def test_compare_counts_by_coverage_cv_where_the_evaluation_has_it(tmp_path):
    first = _grid(tmp_path / "a.json", {"17x64x64 8fps": 0.04, "33x64x64 16fps": 0.04})
    grid = json.loads(first.read_text())
    for setting, median in (("17x64x64 8fps", 0.03), ("33x64x64 16fps", 0.055)):
        for task, coverages in (
            ("ground truth", [0.004, 0.01]),
            ("text-to-video", [0.03, 0.08]),
            ("image-to-video", [0.06, 0.02]),
        ):
            cell = grid["grid"][setting][task]
            cell["coverage_variation_median"], cell["coverage_variation_max"] = median, max(coverages)
            # the mask's area CV says the ground truth's second clip is over 0.05; its coverage says it is not
            # text-to-video draws its first clip's object too large
            cell["videos"] = [
                {
                    "split": "seen",
                    "area_variation": 0.06,
                    "coverage_variation": coverage,
                    "object_size_in_range": not (task == "text-to-video" and index == 0),
                }
                for index, coverage in enumerate(coverages)
            ]
    first.write_text(json.dumps(grid))
    second = _grid(tmp_path / "b.json", {"17x64x64 8fps": 0.04, "33x64x64 16fps": 0.04})
    result = _run(f"new={first}", f"old={second}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert "ground truth clips over 0.05: 4 of 4; image-to-video clips over 0.05: 4 of 4" in lines[-2]
    # medians 0.03 (two cells) and 0.055 (two cells); largest clip 0.08 (text-to-video)
    assert (
        "; by coverage CV: median <= 0.05 in 2 of 4, largest clip 0.080, ground truth clips over 0.05: 0 of 4, "
        "image-to-video clips over 0.05: 2 of 4; object size in the world's range: text-to-video 2 of 4, "
        "image-to-video 4 of 4; per frame" in lines[-2]
    )
    assert "coverage" not in lines[-1] and "object size" not in lines[-1]
