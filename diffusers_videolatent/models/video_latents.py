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
"""The latents of any diffusers-style VAE, as the U-Net sees them: encoded, normalised, and decoded back.

Our `AutoencoderKLVideo` and diffusers' video VAEs (`AutoencoderKLWan`, `AutoencoderKLCogVideoX`) take videos
`[B, C, F, H, W]`; an image VAE (`AutoencoderKL`) is applied to each frame on its own. Each normalises its latents with
the parts of `(z - shift_factor - latents_mean) * scaling_factor / latents_std` its config holds. The pipeline and
training both go through these functions, so both see the same latents.
"""

import inspect
from typing import Any

import torch


def retrieve_latents(encoder_output: Any) -> torch.Tensor:
    r"""The latents of a VAE's `encode` output: the mode of its `latent_dist`, or its `latents` for a deterministic VAE."""
    if hasattr(encoder_output, "latent_dist"):
        return encoder_output.latent_dist.mode()
    if hasattr(encoder_output, "latents"):
        return encoder_output.latents
    raise AttributeError(f"The VAE's `encode` returned {type(encoder_output).__name__}, with no latents to read.")


def latents_statistics(vae: Any, latents: torch.Tensor) -> tuple[torch.Tensor | float, ...]:
    r"""Returns the `scaling_factor`, `shift_factor`, `latents_mean` and `latents_std` of `vae`, shaped for `latents`."""
    config = vae.config
    scaling_factor = config.get("scaling_factor") or 1.0
    shift_factor = config.get("shift_factor") or 0.0
    stats_shape = (1, latents.shape[1], 1, 1, 1)
    statistics = []
    for name, neutral in (("latents_mean", 0.0), ("latents_std", 1.0)):
        value = config.get(name)
        if value is None:
            statistics.append(neutral)
        else:
            statistics.append(torch.tensor(value, device=latents.device, dtype=latents.dtype).view(stats_shape))
    return (scaling_factor, shift_factor, *statistics)


def encode_video(vae: Any, video: torch.Tensor, encodes_single_frames: bool) -> torch.Tensor:
    r"""
    Encodes pixels to normalised latents (the mode of the VAE's latent distribution).

    Args:
        vae (`torch.nn.Module`):
            A diffusers-style VAE.
        video (`torch.Tensor`):
            Pixels in [-1, 1] of shape `(batch_size, 3, num_frames, height, width)`; an image is a 1-frame video.
        encodes_single_frames (`bool`):
            Whether `vae` is an image VAE, applied to each frame on its own.

    Returns:
        `torch.Tensor`: Latents of shape `(batch_size, channels, latent_frames, latent_height, latent_width)`.
    """
    video = video.to(device=vae.device, dtype=vae.dtype)
    batch_size, _, num_frames, height, width = video.shape
    if encodes_single_frames:
        frames = video.permute(0, 2, 1, 3, 4).reshape(batch_size * num_frames, -1, height, width)
        latents = retrieve_latents(vae.encode(frames))
        latents = latents.reshape(batch_size, num_frames, *latents.shape[1:]).permute(0, 2, 1, 3, 4)
    else:
        latents = retrieve_latents(vae.encode(video))
    scaling_factor, shift_factor, latents_mean, latents_std = latents_statistics(vae, latents)
    return (latents - shift_factor - latents_mean) * scaling_factor / latents_std


def decode_latents(
    vae: Any, latents: torch.Tensor, encodes_single_frames: bool, decode_chunk_size: int | None = None
) -> torch.Tensor:
    r"""
    Decodes normalised latents to pixels.

    Args:
        vae (`torch.nn.Module`):
            A diffusers-style VAE.
        latents (`torch.Tensor`):
            Latents of shape `(batch_size, channels, latent_frames, latent_height, latent_width)`.
        encodes_single_frames (`bool`):
            Whether `vae` is an image VAE, applied to each frame on its own.
        decode_chunk_size (`int`, *optional*):
            The number of latent frames decoded at once (all by default). Passed as `chunk_size` to VAEs whose
            `decode` accepts it; diffusers' video VAEs stream their decode on their own.

    Returns:
        `torch.Tensor`: Float32 pixels in [-1, 1] of shape `(batch_size, 3, num_frames, height, width)`.
    """
    latents = latents.to(vae.dtype)
    scaling_factor, shift_factor, latents_mean, latents_std = latents_statistics(vae, latents)
    latents = latents * latents_std / scaling_factor + latents_mean + shift_factor

    batch_size, _, latent_frames, latent_height, latent_width = latents.shape
    if encodes_single_frames:
        frames = latents.permute(0, 2, 1, 3, 4).reshape(batch_size * latent_frames, -1, latent_height, latent_width)
        chunk_size = decode_chunk_size or frames.shape[0]
        decoded = [
            vae.decode(frames[start : start + chunk_size], return_dict=False)[0]
            for start in range(0, frames.shape[0], chunk_size)
        ]
        video = torch.cat(decoded)
        video = video.reshape(batch_size, latent_frames, *video.shape[1:]).permute(0, 2, 1, 3, 4)
    elif "chunk_size" in inspect.signature(vae.decode).parameters:
        video = vae.decode(latents, return_dict=False, chunk_size=decode_chunk_size)[0]
    else:
        video = vae.decode(latents, return_dict=False)[0]
    # float32 output works for every output type and costs little next to the decode
    return video.float()
