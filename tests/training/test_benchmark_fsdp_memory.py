"""`benchmarks/benchmark_fsdp_memory.py` on a tiny U-Net: both runs launch, and every training process is measured."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..testing_utils import HAS_FULLY_SHARD, _free_port


ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "benchmarks" / "benchmark_fsdp_memory.py"


@pytest.mark.skipif(not HAS_FULLY_SHARD, reason="`--fsdp` needs torch's FSDP2 (torch 2.6 or newer)")
def test_fsdp_memory_benchmark_measures_both_processes_of_both_runs(tmp_path):
    options = ["--widths", "8", "16", "--steps", "1", "--port", str(_free_port()), "--json", str(tmp_path / "m.json")]
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *options], capture_output=True, text=True, timeout=600, env=environment
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    results = json.loads((tmp_path / "m.json").read_text())
    assert results["widths"] == [8, 16] and 0 < results["parameters"] < 10**6
    for case in ("ddp", "fsdp"):
        peaks = results["peaks_mib"][case]
        assert sorted(peaks) == ["0", "1"]  # the two training processes, not the launcher
        assert all(100 < peak[0] < 16 * 1024 for peak in peaks.values()), peaks  # a process with torch loaded
    assert "| fsdp |" in result.stdout and "process 1: fsdp / ddp = " in result.stdout


def test_fsdp_memory_benchmark_refuses_a_one_level_u_net():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--widths", "8"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and "`--widths` needs two or more widths" in result.stderr
