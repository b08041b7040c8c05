"""`benchmarks/benchmark_long_video.py` measures every pipeline and context scope at every length (its numbers are not tested)."""

import re
import subprocess
import sys
from pathlib import Path


SCRIPT = Path(__file__).parents[1] / "benchmarks" / "benchmark_long_video.py"


def run(*options):
    command = [sys.executable, str(SCRIPT), "--threads", "1", *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def test_long_video_benchmark_measures_every_pipeline_and_scope_at_every_length():
    tiny = ["--frames", "5", "9", "--context_length", "4", "--height", "64", "--width", "64", "--rounds", "1"]
    result = run(*tiny, "--steps", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = re.findall(
        r"^\| (\w+) \| (\w+) \| (\d+) \| ([\d.]+) \(([\d.]+)-([\d.]+)\) \| ([\d.]+) \(", result.stdout, re.M
    )
    cases = [
        ("VideoLatentPipeline", "attention"),
        ("VideoLatentPipeline", "unet"),
        ("VideoLatentPipeline", "fifo"),
        ("AnimateDiffPipeline", "attention"),
    ]
    assert [(kind, scope, int(frames)) for kind, scope, frames, *_ in rows] == [
        (*case, frames) for case in cases for frames in (5, 9)
    ]
    for *_, median, low, high, peak in rows:
        assert 0 < float(low) <= float(median) <= float(high) and float(peak) >= 0
    ratios = re.findall(r"^\| (\w+) \| (\w+) \| ([\d.]+) \| ([\d.]+|n/a) \|$", result.stdout, re.M)
    assert [(kind, scope) for kind, scope, *_ in ratios] == cases


def test_long_video_benchmark_refuses_bad_counts():
    for option, value, message in (("--rounds", "0", ">= 1"), ("--steps", "1", "first step is not timed")):
        result = run(option, value)
        assert result.returncode == 2
        assert f"{option} must be >= " in result.stderr and message in result.stderr
