"""`benchmarks/benchmark_conversion_memory.py --quick` builds a small fp16 text-to-video source, converts it in a process
of its own and reports the conversion's peak memory and its verified difference (the 1.7B figures are in
docs/conversion.md)."""

import json
import subprocess
import sys
from pathlib import Path


SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "benchmark_conversion_memory.py"


def test_quick_conversion_memory_report(tmp_path):
    work_dir = tmp_path / "not" / "yet"  # made when missing
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--work_dir", str(work_dir)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["shape"] == "quick" and report["exit_code"] == 0
    # the source is fp16, so one float32 copy is twice its weights; the output keeps fp16
    assert 1.9 < report["one_float32_copy_gib"] / report["source_fp16_gib"] < 2.1
    assert report["output_gib"] < report["one_float32_copy_gib"]
    assert 0 < float(report["verified_max_abs_difference"]) < 1e-4
    assert report["peak_rss_gib"] > report["one_float32_copy_gib"]  # the process itself dominates at this size
    assert sorted(report["saved_weight_files"]) == [
        "text_encoder/model.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
    ]
    assert list(work_dir.iterdir()) == []  # its temporary folder is gone
