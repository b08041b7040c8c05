"""Device checks that need CUDA (skipped without it): half-precision generation and the offloading hooks on a GPU.

`benchmarks/gpu_check.py` is the full side-by-side check with diffusers' pipeline; these are its pass/fail core.
"""

import pytest
import torch

from .testing_utils import build_pipeline, build_unet, build_video_vae


pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
CALL = {"num_frames": 5, "height": 16, "width": 16, "num_inference_steps": 2, "output_type": "pt"}


def generate(pipe, device="cpu") -> torch.Tensor:
    frames = pipe("a red circle", generator=torch.Generator(device).manual_seed(0), **CALL).frames
    return frames.float().cpu()


@pytest.fixture
def pipe():
    return build_pipeline(unet=build_unet(identity_init=False), vae=build_video_vae())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_generation_on_cuda(pipe, dtype):
    reference = generate(pipe)
    pipe.to("cuda", dtype)
    frames = generate(pipe)
    assert torch.isfinite(frames).all()
    assert (frames - reference).abs().max().item() < 0.05


@pytest.mark.parametrize("offload", ["model", "sequential", "group"])
def test_offloading_on_cuda_gives_the_cpu_result(pipe, offload):
    reference = generate(pipe)
    if offload == "model":
        pipe.enable_model_cpu_offload(device="cuda")
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device="cuda")
    else:
        pipe.enable_group_offload(torch.device("cuda"), torch.device("cpu"), num_blocks_per_group=1)
    torch.cuda.reset_peak_memory_stats()
    frames = generate(pipe)
    assert torch.cuda.max_memory_allocated() > 0
    assert (frames - reference).abs().max().item() < 1e-3
