"""`benchmarks/benchmark_training_step.py` runs every case and refuses bad counts (its timings are not tested)."""

import re
import subprocess
import sys
from pathlib import Path


SCRIPT = Path(__file__).parents[2] / "benchmarks" / "benchmark_training_step.py"


def run(*options):
    command = [sys.executable, str(SCRIPT), "--threads", "1", *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def test_training_step_benchmark_times_every_case_of_both_models():
    result = run("--batch_size", "1", "--rounds", "2", "--steps", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = re.findall(
        r"^\| (ours|unet3d) \| (\S+) \| ([\d.]+) \| ([\d.]+)-([\d.]+) \| ([\d.]+) \|$", result.stdout, re.M
    )
    assert [(model, case) for model, case, *_ in rows] == [
        (model, case) for model in ("ours", "unet3d") for case in ("fp32", "bf16", "bf16-math")
    ]
    for _, case, median, low, high, ratio in rows:
        assert 0 < float(low) <= float(median) <= float(high)
        if case == "fp32":
            assert ratio == "1.00"  # each model's own fp32 step is its reference


def test_training_step_benchmark_refuses_counts_below_one():
    for option in ("--batch_size", "--rounds", "--steps", "--threads"):
        result = run(option, "0")
        assert result.returncode == 2
        assert f"{option} must be >= 1, got 0" in result.stderr
