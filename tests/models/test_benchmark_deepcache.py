"""`benchmarks/benchmark_deepcache.py --quick` runs every case on both models and refuses bad counts (its timings are
not tested)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from ..testing_utils import needs_diffusers_hooks_0_42


ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "benchmarks" / "benchmark_deepcache.py"
CASES = ["none", "deepcache", "deepcache_second", "pab", "fastercache", "taylorseer"]


def run(*options):
    command = [sys.executable, str(SCRIPT), "--quick", "--threads", "1", *options]
    # the package of this checkout, whichever one is installed
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)


# diffusers 0.38's TaylorSeer hook cannot run on the CPU (see `needs_diffusers_hooks_0_42`)
@needs_diffusers_hooks_0_42
def test_deepcache_benchmark_runs_every_case_on_both_models(tmp_path):
    result = run("--repeats", "1", "--sweep", "4:1", "--json", str(tmp_path / "results.json"))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = re.findall(r"^\| (\w+) \| ([\d.]+) s \| ([\d.]+)-([\d.]+) s \| ([\d.]+) \|", result.stdout, re.M)
    # the shipped model's table, then the ModelScope-shaped U-Net's
    assert [name for name, *_ in rows] == CASES + ["deepcache_i4_b1"] + CASES + ["deepcache_i4_b1"]
    for _, median, low, high, _ in rows:
        assert 0 < float(low) <= float(median) <= float(high)

    results = json.loads((tmp_path / "results.json").read_text())
    shipped, modelscope = results["shipped"], results["modelscope"]
    assert list(shipped["cases"]) == list(shipped["quality_check"]) == CASES + ["deepcache_i4_b1"]
    assert shipped["cases"]["none"]["ratio"] == 1.0
    # (4 steps at 32x32 draw no clean shapes, so the check itself may fail here)
    assert all(isinstance(passed, bool) for passed in shipped["quality_check"].values())
    assert modelscope["cases"]["none"]["psnr"] == float("inf")
    # DeepCache changes the output of the loop, a little
    assert 20 < modelscope["cases"]["deepcache"]["psnr"] < float("inf")
    # the time of every U-Net part, uncached and with DeepCache
    assert list(shipped["parts"]) == list(modelscope["parts"]) == ["none", "deepcache"]
    assert {"conv_in", "down_blocks.0", "mid_block", "up_blocks.0", "conv_out"} <= set(shipped["parts"]["none"])
    assert "transformer_in" in modelscope["parts"]["none"]


def test_deepcache_benchmark_refuses_counts_below_one():
    for option in ("--repeats", "--batch_size", "--threads"):
        result = run(option, "0")
        assert result.returncode == 2
        assert f"{option} must be >= 1, got 0" in result.stderr
    for bad in ("4", "0:1", "a:b"):
        result = run("--sweep", bad)
        assert result.returncode == 2 and "expected INTERVAL:BRANCH" in result.stderr
