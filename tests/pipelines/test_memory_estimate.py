"""A call too large for the machine is refused before it allocates, with the estimate and the remedies."""

import os
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from diffusers_videolatent.pipelines import memory_estimate
from diffusers_videolatent.pipelines.memory_estimate import available_memory, estimate_call_memory

from ..testing_utils import build_pipeline


REPO = Path(__file__).resolve().parents[2]


def _max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@pytest.mark.parametrize(
    "call, remedy",
    [
        ({"height": 25600, "width": 25600, "num_frames": 5}, "VAE tiling (`pipe.enable_vae_tiling()`)"),
        ({"height": 64, "width": 64, "num_frames": 5, "num_videos_per_prompt": 200000}, "fewer videos per call"),
    ],
)
def test_a_call_larger_than_this_machine_is_refused_before_allocating(call, remedy):
    pipe = build_pipeline()
    available = available_memory(torch.device("cpu"))
    before, started = _max_rss_bytes(), time.monotonic()
    with pytest.raises(ValueError, match="needs at least") as caught:
        pipe("a cat", num_inference_steps=2, generator=torch.Generator().manual_seed(0), **call)
    message = str(caught.value)
    print(message)
    assert f"but cpu has {available / 2**30:.1f} GiB free" in message or "but cpu has" in message
    assert remedy in message and "pipe.allow_large_calls = True" in message
    # refused at once: nothing of the call's size was allocated
    assert time.monotonic() - started < 10
    assert _max_rss_bytes() - before < 200 * 2**20
    estimated = float(message.split("needs at least ")[1].split(" GiB")[0])
    assert estimated * 2**30 > available


def test_tiling_shrinks_the_estimate_and_latent_output_skips_the_decoding():
    pipe = build_pipeline()
    pipe._guidance_scale = 7.5
    size = {"num_videos": 1, "num_frames": 5, "height": 2048, "width": 2048}
    plain = estimate_call_memory(pipe, **size)
    assert plain.output == 5 * 2048 * 2048 * 3 * 4
    assert plain.vae_decoder == 2 * pipe.vae.config.block_out_channels[0] * 2048 * 2048 * 4
    pipe.enable_vae_tiling()
    tiled = estimate_call_memory(pipe, **size)
    assert tiled.vae_decoder == 0 and tiled.total == tiled.output + tiled.unet <= plain.total
    latent = estimate_call_memory(pipe, output_type="latent", **size)
    assert latent.output == 0 and latent.total == latent.unet > 0


def test_the_option_forces_a_refused_call(monkeypatch):
    pipe = build_pipeline()
    call = {"num_frames": 5, "height": 16, "width": 16, "num_inference_steps": 2, "output_type": "latent"}
    monkeypatch.setattr(memory_estimate, "available_memory", lambda device: 1024)  # a device with 1 KiB free
    with pytest.raises(ValueError, match="but cpu has 0.0 GiB free"):
        pipe("a cat", generator=torch.Generator().manual_seed(0), **call)
    pipe.allow_large_calls = True
    forced = pipe("a cat", generator=torch.Generator().manual_seed(0), **call).frames
    assert forced.ndim == 5 and torch.isfinite(forced).all()
    pipe.allow_large_calls = False
    monkeypatch.setenv(memory_estimate.SKIP_ENVIRONMENT_VARIABLE, "1")
    assert torch.equal(pipe("a cat", generator=torch.Generator().manual_seed(0), **call).frames, forced)


MEASURE = textwrap.dedent(
    """
    import sys, torch
    from tests.testing_utils import build_pipeline
    from diffusers_videolatent.pipelines.memory_estimate import estimate_call_memory

    def status(key):  # bytes of a /proc/self/status line
        with open("/proc/self/status") as file:
            return next(int(line.split()[1]) * 1024 for line in file if line.startswith(key + ":"))

    pipe = build_pipeline()
    call = dict(num_frames=9, height=int(sys.argv[1]), width=int(sys.argv[1]), num_inference_steps=1)
    pipe("a cat", num_frames=5, height=16, width=16, num_inference_steps=1)  # warm-up at a tiny size
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as file:
        file.write("5")  # resets the peak (VmHWM) to the current resident size: earlier peaks do not count
    pipe("a cat", **call)
    grown = status("VmHWM") - before
    estimate = estimate_call_memory(pipe, 1, 9, call["height"], call["width"]).total
    print(estimate, grown)
    """
)


def test_the_estimate_errs_towards_allowing(tmp_path):
    script = tmp_path / "measure.py"
    script.write_text(MEASURE)
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, str(script), "128"], cwd=REPO, env=environment, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    estimate, grown = map(int, result.stdout.split()[-2:])
    print(f"128x128x9: estimate {estimate / 2**20:.0f} MiB, measured peak growth {grown / 2**20:.0f} MiB")
    assert 0 < estimate <= grown
