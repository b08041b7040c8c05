"""`benchmarks/wobble_components.py` splits each clip's size wobble into a trend, the latent period and the rest."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .testing_utils import load_script


BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
wobble_components = load_script("benchmarks", "wobble_components").wobble_components


def test_each_kind_of_wobble_lands_in_its_part():
    frames = np.arange(17)
    # steady growth, 100 -> 116 px: all trend
    growing = wobble_components(100.0 + frames, period=4)
    assert growing["trend"] == pytest.approx(1.0) and growing["period"] == pytest.approx(0.0, abs=1e-12)
    assert growing["end_over_start"] == pytest.approx(115.5 / 100.5)
    assert growing["cv"] == pytest.approx(np.std(100.0 + frames) / 108.0)
    # 10 px larger on every latent frame (0, 4, 8, 12, 16): almost all period (the line takes what the 5 of 17
    # frames at phase 0 lean it by)
    pulsing = wobble_components(100.0 + 10.0 * (frames % 4 == 0), period=4)
    assert pulsing["period"] > 0.95 and pulsing["trend"] < 0.05
    # the parts add up to the clip's variance, whatever the series
    random = wobble_components(100.0 + np.random.default_rng(0).normal(size=17), period=4)
    assert random["trend"] + random["period"] + random["rest"] == pytest.approx(1.0)
    assert wobble_components([50.0] * 9, period=4) == {
        "cv": 0.0,
        "end_over_start": 1.0,
        "trend": 0.0,
        "period": 0.0,
        "rest": 0.0,
    }
    # frames without an object are left out; fewer than 3 with one is refused
    assert wobble_components([0.0, *(100.0 + frames[1:])], period=4)["trend"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 3 frames"):
        wobble_components([0.0, 10.0, 0.0, 12.0], period=4)


def _run(*arguments):
    command = [sys.executable, str(BENCHMARKS / "wobble_components.py"), *map(str, arguments)]
    return subprocess.run(command, capture_output=True, text=True)


def test_the_command_reads_a_grid_evaluation(tmp_path):
    frames = np.arange(17)
    cell = {"videos": [{"coverages": list(100.0 + frames)}, {"coverages": list(100.0 + 40.0 * (frames % 4 == 0))}]}
    grid = {"17x64x64 8fps": {"settings": {}, "ground truth": {"videos": [{"coverages": [80.0] * 17}]}}}
    grid["17x64x64 8fps"]["image-to-video"] = cell
    grid["combinations"] = ["a red circle moving left"]
    path = tmp_path / "grid.json"
    path.write_text(json.dumps({"grid": grid}))
    result = _run(path)
    assert result.returncode == 0, result.stderr
    assert "| 17x64x64 8fps | ground truth | 1 | 0.000 | 0% | 0% | 0% | 1.000 |" in result.stdout
    # the pulsing clip's CV is the larger: only it is over 0.1
    result = _run(path, "--over", "0.1", "--settings", "17x64x64 8fps")
    assert result.returncode == 0, result.stderr
    assert "| 17x64x64 8fps | image-to-video | 1 |" in result.stdout
    assert "| 17x64x64 8fps | ground truth | 0 | - |" in result.stdout
    for arguments, message in (
        (("--settings", "9x64x64 8fps"), "not in the evaluation"),
        (("--period", "1"), "--period"),
    ):
        result = _run(path, *arguments)
        assert result.returncode != 0 and message in result.stderr
    # a clip whose object is gone after frame 1 is left out of its row and counted
    cell["videos"].append({"coverages": [90.0, 30.0] + [0.0] * 15})
    path.write_text(json.dumps({"grid": grid}))
    result = _run(path)
    assert result.returncode == 0, result.stderr
    assert "| 17x64x64 8fps | image-to-video | 2 |" in result.stdout
    assert "left out, an object in fewer than 3 frames: 17x64x64 8fps image-to-video: 1" in result.stdout
    del grid["17x64x64 8fps"]["ground truth"]["videos"][0]["coverages"]
    path.write_text(json.dumps({"grid": grid}))
    result = _run(path)
    assert result.returncode != 0 and "no per-frame `coverages`" in result.stderr
