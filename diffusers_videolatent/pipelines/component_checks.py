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
"""Whether a pipeline's components fit together, checked when it is built, loaded or given a new component.

A mismatch would otherwise surface as a shape error deep inside a forward pass, or not at all: a VAE whose latents have
other channels than the U-Net denoises, a text encoder whose width is not the U-Net's cross-attention width, a tokenizer
with ids beyond the text encoder's embedding table, recommended settings the VAE or the U-Net cannot take. Each is a
`ValueError` naming both components and both numbers. Only configs are read.
"""

from typing import Any

from ..geometry import check_num_frames, num_latent_frames, unet_max_latent_frames


def vae_latent_channels(vae: Any) -> int | None:
    r"""The channels of a VAE's latents: `latent_channels` (ours, `AutoencoderKL`, CogVideoX) or `z_dim` (Wan)."""
    config = getattr(vae, "config", {})
    return config.get("latent_channels") or config.get("z_dim")


def check_components_fit(
    vae: Any, text_encoder: Any, tokenizer: Any, unet: Any, temporal_ratio: int, generation_defaults: dict | None
) -> None:
    r"""
    Raises a `ValueError` when two of a pipeline's components (any may be `None`) do not fit together.

    Args:
        vae, text_encoder, tokenizer, unet:
            The pipeline's components.
        temporal_ratio (`int`):
            The VAE's temporal compression ratio.
        generation_defaults (`dict`, *optional*):
            The pipeline's recommended settings; their `num_frames` must suit the VAE and the U-Net.
    """
    unet_config = getattr(unet, "config", None)
    if unet_config is not None:
        in_channels, conditioning_channels = (
            unet_config.get("in_channels"),
            unet_config.get("conditioning_channels") or 0,
        )
        if conditioning_channels not in (0, in_channels, in_channels + 1):
            raise ValueError(
                f"The U-Net's `conditioning_channels`={conditioning_channels} is not supported: use 0, the latent"
                f" channels ({in_channels}) or the latent channels plus a mask ({in_channels + 1})."
            )
    latent_channels = vae_latent_channels(vae) if vae is not None else None
    if unet_config is not None and latent_channels is not None:
        for key in ("in_channels", "out_channels"):
            if unet_config.get(key) != latent_channels:
                raise ValueError(
                    f"The VAE ({type(vae).__name__}) makes latents of {latent_channels} channels, but the U-Net"
                    f" ({type(unet).__name__}) has `{key}`={unet_config.get(key)}; use a VAE and a U-Net made for"
                    " each other."
                )
    text_config = getattr(text_encoder, "config", None)
    if unet_config is not None and text_config is not None:
        width = getattr(text_config, "hidden_size", None)
        if width is not None and width != unet_config.get("cross_attention_dim"):
            raise ValueError(
                f"The text encoder ({type(text_encoder).__name__}) gives embeddings of width {width}, but the U-Net"
                f" ({type(unet).__name__}) has `cross_attention_dim`={unet_config.get('cross_attention_dim')}."
            )
    if tokenizer is not None and text_encoder is not None and hasattr(text_encoder, "get_input_embeddings"):
        table_size = text_encoder.get_input_embeddings().num_embeddings
        if len(tokenizer) > table_size:
            raise ValueError(
                f"The tokenizer ({type(tokenizer).__name__}) has {len(tokenizer)} tokens, but the text encoder"
                f" ({type(text_encoder).__name__}) has an embedding table of {table_size}: ids beyond it cannot be"
                " encoded."
            )
    num_frames = (generation_defaults or {}).get("num_frames")
    if num_frames is not None and vae is not None:
        check_num_frames(num_frames, temporal_ratio, name="generation_defaults['num_frames']")
        max_latent_frames = unet_max_latent_frames(unet_config) if unet_config is not None else None
        if max_latent_frames is not None and num_latent_frames(num_frames, temporal_ratio) > max_latent_frames:
            raise ValueError(
                f"`generation_defaults['num_frames']` is {num_frames}: {num_latent_frames(num_frames, temporal_ratio)}"
                f" latent frames for the VAE ({type(vae).__name__}, temporal ratio {temporal_ratio}), but the U-Net's"
                f" frame-position table (`temporal_max_frames`) holds {max_latent_frames}."
            )
