"""`enable_parallel_windows`: two real processes (gloo, CPU) share the windows of FreeNoise's unet scope and of FIFO
denoising, each running half of the U-Net calls, and both return the video of one process running them all."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ..testing_utils import _free_port, build_pipeline, build_unet


REPOSITORY = Path(__file__).resolve().parents[2]
WORKER = """
import sys
import torch
import torch.distributed as dist
from tests.testing_utils import build_pipeline, build_unet, recording_unet_calls

mode, output = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)
parallel = "WORLD_SIZE" in __import__("os").environ
if parallel:
    dist.init_process_group("gloo")
pipe = build_pipeline(unet=build_unet(identity_init=False))
if mode == "unet":
    pipe.enable_free_noise(context_length=4, context_stride=2, context_scope="unet")
else:
    pipe.enable_fifo_denoising(context_length=4)
if parallel:
    pipe.enable_parallel_windows()
with recording_unet_calls(pipe) as calls:
    latents = pipe(
        "a red circle", num_frames=13, height=8, width=8, num_inference_steps=5, guidance_scale=4.0,
        generator=torch.Generator().manual_seed(0), output_type="latent",
    ).frames
rank = dist.get_rank() if parallel else 0
torch.save({"latents": latents, "calls": len(calls)}, f"{output}.{rank}")
if parallel:
    dist.destroy_process_group()
"""


def run_worker(tmp_path: Path, mode: str, processes: int) -> list[dict]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    output = tmp_path / f"{mode}_{processes}"
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY), "OMP_NUM_THREADS": "1"}
    if processes == 1:
        command = [sys.executable, str(script), mode, str(output)]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes)]
        command += ["--master_port", str(_free_port()), str(script), mode, str(output)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return [torch.load(f"{output}.{rank}") for rank in range(processes)]


@pytest.mark.parametrize("mode", ["unet", "fifo"])
def test_two_processes_share_the_windows_and_return_one_video(tmp_path, mode):
    (alone,) = run_worker(tmp_path, mode, 1)
    first, second = run_worker(tmp_path, mode, 2)
    # both processes hold the same video; it is one process's up to the order of the sums (float32 rounding)
    torch.testing.assert_close(first["latents"], second["latents"], rtol=0, atol=0)
    torch.testing.assert_close(first["latents"], alone["latents"], rtol=1e-5, atol=1e-5)
    # the U-Net calls are shared out: together the two processes make those of one, each about half
    assert first["calls"] + second["calls"] == alone["calls"]
    assert min(first["calls"], second["calls"]) >= alone["calls"] // 3


def test_parallel_windows_need_a_process_group():
    pipe = build_pipeline(unet=build_unet())
    with pytest.raises(ValueError, match="initialised torch.distributed process group"):
        pipe.enable_parallel_windows()
