# Copyright 2026 The diffusers-videolatent authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""
The memory a pipeline call needs, estimated before it allocates anything, and the refusal of a call that cannot fit.

The estimate is a *lower bound*: it counts only tensors that the call cannot avoid holding at once, whatever the
attention kernel, with the options the pipeline has (VAE tiling, slicing); a call it refuses could not have run, and
one it lets through may still not fit. It leaves out the weights (already loaded).

- the decoded video, in float32: `videos x 3 x frames x height x width x 4` bytes (not with `output_type="latent"`);
- and the larger of:
  - the U-Net at its first level: a convolution's input and output, `2 x batch x block_out_channels[0] x latent
    frames x latent height x latent width` in the U-Net's dtype (the batch doubled by classifier-free guidance; the
    latent frames those of one window with FreeNoise);
  - without VAE tiling, the VAE decoder at full size for a single frame of one video: `2 x block_out_channels[0] x
    height x width` in the VAE's dtype.
"""

import os
from dataclasses import dataclass

import torch


# set to "1" to let every call through (the `allow_large_calls` attribute of a pipeline does it for one pipeline)
SKIP_ENVIRONMENT_VARIABLE = "VIDEOLATENT_SKIP_MEMORY_CHECK"


@dataclass
class MemoryEstimate:
    r"""A lower bound of a call's peak memory in bytes, and its parts."""

    total: int
    output: int
    unet: int
    vae_decoder: int


def _bytes(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def estimate_call_memory(
    pipeline, num_videos: int, num_frames: int, height: int, width: int, output_type: str = "np"
) -> MemoryEstimate:
    r"""
    A lower bound of the memory a call of `pipeline` needs beyond its weights (see the module's docstring).

    Args:
        pipeline ([`VideoLatentPipeline`]): The pipeline, with its VAE options (tiling, slicing) as they are.
        num_videos (`int`): Prompts times videos per prompt.
        num_frames (`int`), height (`int`), width (`int`): The video's size in pixels.
        output_type (`str`, *optional*, defaults to `"np"`): `"latent"` skips the decoding.
    """
    _, _, latent_frames, latent_height, latent_width = pipeline.latents_shape(num_videos, num_frames, height, width)
    guidance_batch = 2 if pipeline.do_classifier_free_guidance else 1
    unet_channels = (getattr(pipeline.unet.config, "block_out_channels", None) or (1,))[0]
    if getattr(pipeline, "free_noise_enabled", False):  # the U-Net sees one window of latent frames at a time
        latent_frames = min(latent_frames, pipeline._free_noise_context_length)
    if getattr(pipeline, "fifo_enabled", False):
        latent_frames = min(latent_frames, pipeline._fifo_context_length)
    unet = 2 * guidance_batch * num_videos * unet_channels * latent_frames * latent_height * latent_width
    unet *= _bytes(pipeline.unet.dtype)
    output = vae_decoder = 0
    if output_type != "latent":
        output = num_videos * 3 * num_frames * height * width * 4
        if not getattr(pipeline.vae, "use_tiling", False):
            vae_channels = (getattr(pipeline.vae.config, "block_out_channels", None) or (1,))[0]
            vae_decoder = 2 * vae_channels * height * width * _bytes(pipeline.vae.dtype)
    return MemoryEstimate(output + max(unet, vae_decoder), output, unet, vae_decoder)


def available_memory(device: torch.device) -> int | None:
    r"""The memory a call on `device` can still get in bytes: free GPU memory (with PyTorch's cached blocks), available
    RAM on the CPU (`MemAvailable`), `None` where it cannot be told."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"


def check_call_memory(
    pipeline, num_videos: int, num_frames: int, height: int, width: int, output_type: str, device: torch.device
) -> None:
    r"""
    Raises a `ValueError` before a call allocates anything when its estimated peak memory (a lower bound, see
    [`estimate_call_memory`]) exceeds what `device` has free, with the estimate and the remedies. Skipped when
    `pipeline.allow_large_calls` is `True` or the environment variable `VIDEOLATENT_SKIP_MEMORY_CHECK` is `"1"`.
    """
    if getattr(pipeline, "allow_large_calls", False) or os.environ.get(SKIP_ENVIRONMENT_VARIABLE, "") == "1":
        return
    available = available_memory(device)
    if available is None:
        return
    estimate = estimate_call_memory(pipeline, num_videos, num_frames, height, width, output_type)
    if estimate.total <= available:
        return
    remedies = ["fewer frames (`num_frames`) or a smaller `height` and `width`", "fewer videos per call"]
    if estimate.vae_decoder > 0:
        remedies.insert(0, "VAE tiling (`pipe.enable_vae_tiling()`)")
    if not getattr(pipeline, "free_noise_enabled", False) and not getattr(pipeline, "fifo_enabled", False):
        remedies.append("windows of frames for the U-Net (`pipe.enable_free_noise(context_length=...)`)")
    if num_videos > 1 and not getattr(pipeline.vae, "use_slicing", False):
        remedies.append("VAE slicing (`pipe.enable_vae_slicing()`)")
    if estimate.output > 0:
        remedies.append('`output_type="latent"` and decoding in windows (`decode_chunk_size`)')
    parts = f"decoded video {_gib(estimate.output)}, U-Net {_gib(estimate.unet)}"
    if estimate.vae_decoder:
        parts += f", VAE decoder {_gib(estimate.vae_decoder)}"
    raise ValueError(
        f"A call of {num_videos} video(s) of {num_frames} frames at {height}x{width} needs at least "
        f"{_gib(estimate.total)} ({parts}), but {device} has {_gib(available)} free. Use "
        + "; ".join(remedies)
        + f". To try anyway, set `pipe.allow_large_calls = True` (or {SKIP_ENVIRONMENT_VARIABLE}=1)."
    )
