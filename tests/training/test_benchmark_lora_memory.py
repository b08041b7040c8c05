"""`benchmarks/benchmark_lora_memory.py --quick` measures every case in its own process (its numbers are not timed)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "benchmarks" / "benchmark_lora_memory.py"


def run(*options):
    command = [sys.executable, str(SCRIPT), "--quick", "--threads", "1", *options]
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)


def test_lora_memory_benchmark_reports_real_numbers_for_each_case(tmp_path):
    result = run("--cases", "lora", "temporal", "--steps", "1", "--json", str(tmp_path / "memory.json"))
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "memory.json").read_text())
    assert set(results) == {"lora", "temporal", "full_estimate"}
    lora, temporal, full = results["lora"], results["temporal"], results["full_estimate"]
    for case in (lora, temporal):
        assert 0 < case["model_rss_gib"] <= case["peak_rss_gib"] < 64
        assert len(case["step_seconds"]) == 1 and 0 < case["step_seconds"][0] < 600
        assert case["threads"] == 1
        assert 0 < case["trained_parameters"] < case["total_parameters"]
    # the LoRA adds exactly the parameters it trains to a frozen base: the same U-Net temporal-only training sees
    assert lora["total_parameters"] - lora["trained_parameters"] == temporal["total_parameters"]
    assert lora["trained_parameters"] < temporal["total_parameters"]
    # full fine-tuning's estimate: gradients and two AdamW states of every base parameter, in float32
    assert math.isclose(full["gradients_and_adam_states_gib"], 12 * temporal["total_parameters"] / 2**30)
    assert full["peak_rss_gib"] > full["model_rss_gib"] > 0
    assert "| lora | 0.0745 M of 0.3051 M |" in result.stdout


def test_lora_memory_benchmark_refuses_counts_below_one():
    for option in ("--rank", "--steps", "--threads"):
        result = run(option, "0")
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [f"benchmark_lora_memory.py: error: {option} must be >= 1, got 0"]
