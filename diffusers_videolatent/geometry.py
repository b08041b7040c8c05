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
"""Video geometry in one place: which frame counts and sizes a video VAE and a U-Net take, read from their configs.

A causal video VAE of temporal ratio `r` encodes the first frame on its own and then `r` frames per latent frame, so
it takes `num_frames = 1 + k * r` pixel frames and returns `1 + k` latent frames. Height and width must be multiples
of the VAE's spatial ratio times the U-Net's downsampling. A U-Net with a frame-position table holds at most
`temporal_max_frames` latent frames. The models' properties, the pipeline, the command line, the training scripts
and the model card all ask these functions.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from ._checks import is_integer


def num_latent_frames(num_frames: int, temporal_ratio: int) -> int:
    r"""Returns the latent frames `(num_frames - 1) // temporal_ratio + 1` of a video of `num_frames` pixel frames."""
    return (num_frames - 1) // temporal_ratio + 1


def num_pixel_frames(num_latent_frames: int, temporal_ratio: int) -> int:
    r"""Returns the pixel frames `1 + (num_latent_frames - 1) * temporal_ratio` that `num_latent_frames` decode to."""
    return 1 + (num_latent_frames - 1) * temporal_ratio


def is_valid_num_frames(num_frames: int, temporal_ratio: int) -> bool:
    r"""Whether a VAE of temporal ratio `temporal_ratio` takes `num_frames` frames (`1 + k * temporal_ratio`)."""
    return num_frames >= 1 and (num_frames - 1) % temporal_ratio == 0


def nearest_valid_num_frames(num_frames: int, temporal_ratio: int) -> tuple[int, int]:
    r"""Returns the valid frame counts `1 + k * temporal_ratio` just below and just above `num_frames`."""
    lower = num_pixel_frames(max(num_latent_frames(num_frames, temporal_ratio), 1), temporal_ratio)
    return lower, lower + temporal_ratio


def check_num_frames(num_frames: int | Sequence[int], temporal_ratio: int, name: str = "num_frames") -> None:
    r"""
    Raises a `ValueError` unless a VAE of temporal ratio `temporal_ratio` takes `num_frames` frames (`1 + k *
    temporal_ratio`). The message names the argument, its value, the rule and the nearest valid counts; every check of
    the frame rule goes through here, so it reads the same wherever it is broken.

    Args:
        num_frames (`int` or `Sequence[int]`):
            A frame count, or the counts an option holds (each is checked; the first invalid one is named).
        temporal_ratio (`int`):
            The VAE's temporal compression ratio.
        name (`str`, *optional*, defaults to `"num_frames"`):
            The argument as its user spells it: `"num_frames"`, `"--num_frames"`, `"recommended['num_frames']"`.
    """
    is_sequence = isinstance(num_frames, Sequence)
    for count in num_frames if is_sequence else (num_frames,):
        if not is_valid_num_frames(count, temporal_ratio):
            raise ValueError(
                f"`{name}` {'holds' if is_sequence else 'is'} {count}, which breaks the frame rule; a VAE with "
                f"temporal compression ratio {temporal_ratio} needs 1 + k * {temporal_ratio} frames: use "
                f"{format_choices(nearest_valid_num_frames(count, temporal_ratio))}."
            )


def nearest_multiples(size: int, multiple: int) -> tuple[int, ...]:
    r"""Returns the positive multiples of `multiple` just below and just above `size` (only the one above below it)."""
    lower = size // multiple * multiple
    return tuple(value for value in (lower, lower + multiple) if value > 0)


def largest_num_frames(max_latent_frames: int, temporal_ratio: int) -> int:
    r"""Returns the largest valid `num_frames` whose latents fit in `max_latent_frames` latent frames."""
    return num_pixel_frames(max_latent_frames, temporal_ratio)


def size_multiple(spatial_ratio: int, unet_downsample_factor: int = 1) -> int:
    r"""Returns the multiple that pixel heights and widths must be: the VAE's ratio times the U-Net's downsampling."""
    return spatial_ratio * unet_downsample_factor


def check_frame_table(
    num_frames: int, temporal_ratio: int, max_latent_frames: int | None, name: str = "num_frames", advice: str = ""
) -> None:
    r"""
    Raises a `ValueError` unless the latents of `num_frames` pixel frames fit in a U-Net's frame-position table of
    `max_latent_frames` latent frames (`None`: no table, any length). The message names `name` (as its user spells it)
    and the largest count that fits; `advice` is added to its end.
    """
    if max_latent_frames is None or num_latent_frames(num_frames, temporal_ratio) <= max_latent_frames:
        return
    raise ValueError(
        f"`{name}` is {num_frames}, but the U-Net's frame-position table holds {max_latent_frames} latent frames"
        f" (`temporal_max_frames`): the largest `{name}` it takes is"
        f" {largest_num_frames(max_latent_frames, temporal_ratio)}{advice}."
    )


def check_frame_sides(
    height: Any, width: Any, spatial_ratio: int, unet_downsample_factor: int = 1, prefix: str = ""
) -> None:
    r"""
    Raises a `ValueError` unless `height` and `width` are positive multiples of the VAE's spatial ratio times the
    U-Net's downsampling. The message names the side as `prefix + "height"` (`"--height"` on a command line), the rule
    and the nearest valid sizes.
    """
    multiple = size_multiple(spatial_ratio, unet_downsample_factor)
    for name, size in (("height", height), ("width", width)):
        is_whole = is_integer(size)
        if is_whole and size >= 1 and size % multiple == 0:
            continue
        what = f"the VAE's spatial ratio {spatial_ratio}"
        if unet_downsample_factor > 1:
            what += f" times the U-Net's downsampling {unet_downsample_factor}"
        nearest = f": use {format_choices(nearest_multiples(size, multiple))}" if is_whole and size >= 1 else ""
        raise ValueError(f"`{prefix}{name}` is {size!r}, but {what} needs a positive multiple of {multiple}{nearest}.")


def vae_compression_ratios_from_config(config: Mapping[str, Any]) -> tuple[int, int, bool]:
    r"""
    Reads the spatial and temporal compression ratios of a diffusers-style VAE from its config.

    Args:
        config (`Mapping[str, Any]`):
            The config of an [`AutoencoderKLVideo`] (`temporal_downsample`), of a diffusers image VAE such as
            [`~diffusers.AutoencoderKL`], or of a diffusers video VAE such as [`~diffusers.AutoencoderKLWan`]
            (`scale_factor_spatial`, `scale_factor_temporal`) or [`~diffusers.AutoencoderKLCogVideoX`]
            (`temporal_compression_ratio`).

    Returns:
        `tuple[int, int, bool]`: The spatial ratio, the temporal ratio (1 for an image VAE) and whether the VAE works on
        single frames (`[B, C, H, W]`) rather than on videos (`[B, C, F, H, W]`).
    """
    if config.get("scale_factor_spatial") is not None:
        spatial_ratio = config["scale_factor_spatial"]
    elif config.get("spatial_compression_ratio") is not None:
        spatial_ratio = config["spatial_compression_ratio"]
    elif config.get("temperal_downsample") is not None:
        spatial_ratio = 2 ** len(config["temperal_downsample"])
    elif config.get("block_out_channels") is not None:
        spatial_ratio = 2 ** (len(config["block_out_channels"]) - 1)
    else:
        raise ValueError(
            "The VAE config holds none of `scale_factor_spatial`, `spatial_compression_ratio`, `temperal_downsample`"
            " or `block_out_channels`, so its spatial compression ratio is unknown."
        )

    if config.get("temporal_downsample") is not None:
        temporal_ratio = 2 ** sum(bool(flag) for flag in config["temporal_downsample"])
    elif config.get("temporal_compression_ratio") is not None:
        temporal_ratio = config["temporal_compression_ratio"]
    elif config.get("scale_factor_temporal") is not None:
        temporal_ratio = config["scale_factor_temporal"]
    elif config.get("temperal_downsample") is not None:
        temporal_ratio = 2 ** sum(config["temperal_downsample"])
    else:
        # no temporal axis at all: an image VAE, applied to each frame on its own
        return int(spatial_ratio), 1, True
    return int(spatial_ratio), int(temporal_ratio), False


def get_vae_compression_ratios(vae: Any) -> tuple[int, int, bool]:
    r"""
    Reads the spatial and temporal compression ratios of any diffusers-style VAE.

    The VAE's own `spatial_compression_ratio`/`temporal_compression_ratio` properties come first; otherwise the ratios
    are read from its config with [`vae_compression_ratios_from_config`].

    Args:
        vae (`torch.nn.Module`):
            An [`AutoencoderKLVideo`], a diffusers image VAE such as [`~diffusers.AutoencoderKL`] (frame by frame), or a
            diffusers video VAE such as [`~diffusers.AutoencoderKLWan`] or [`~diffusers.AutoencoderKLCogVideoX`].

    Returns:
        `tuple[int, int, bool]`: The spatial ratio, the temporal ratio (1 for an image VAE) and whether the VAE works on
        single frames (`[B, C, H, W]`) rather than on videos (`[B, C, F, H, W]`).
    """
    has_spatial = _is_property(vae, "spatial_compression_ratio")
    has_temporal = _is_property(vae, "temporal_compression_ratio")
    if has_spatial and has_temporal:
        return int(vae.spatial_compression_ratio), int(vae.temporal_compression_ratio), False
    spatial_ratio, temporal_ratio, single_frames = vae_compression_ratios_from_config(vae.config)
    if has_spatial:
        spatial_ratio = int(vae.spatial_compression_ratio)
    if has_temporal:
        temporal_ratio, single_frames = int(vae.temporal_compression_ratio), False
    return spatial_ratio, temporal_ratio, single_frames


def _is_property(module: Any, name: str) -> bool:
    # `ModelMixin.__getattr__` falls back to config entries (with a deprecation warning), so a plain `hasattr` cannot
    # tell a real property from a config key.
    return isinstance(getattr(type(module), name, None), property)


def unet_downsample_factor(config: Mapping[str, Any]) -> int:
    r"""Returns the spatial downsampling of a U-Net, `2 ** (len(block_out_channels) - 1)`, from its config."""
    return 2 ** (len(config["block_out_channels"]) - 1)


def unet_max_latent_frames(config: Mapping[str, Any]) -> int | None:
    r"""
    Returns the most latent frames a U-Net takes: `temporal_max_frames` when its temporal layers have a frame-position
    table (`temporal_position_embedding` other than `"none"`), `None` when any number works (diffusers' U-Nets).
    """
    if config.get("temporal_position_embedding", "none") == "none" or config.get("temporal_max_frames") is None:
        return None
    return int(config["temporal_max_frames"])


def format_choices(values: tuple[int, ...] | list[int]) -> str:
    r"""Joins candidate values for an error message: `"13 or 17"`."""
    return " or ".join(str(value) for value in values)
