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
"""A causal video VAE that compresses space (8x/16x) and time (1x/2x/4x/8x) and streams over frames.

Every temporal operation is causal: a frame depends only on itself and earlier frames, and the first frame is encoded on
its own, so `1 + k * r` frames become `1 + k` latent frames. Norms and attention act per frame, which makes encoding and
decoding in temporal chunks (carrying each causal convolution's past frames in a per-call `CausalCache`) exactly equal
to processing all frames at once, with peak memory that does not grow with the number of frames.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import AutoencoderKL, ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.activations import ACT2CLS, get_activation
from diffusers.models.autoencoders.vae import AutoencoderMixin, DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.utils.accelerate_utils import apply_forward_hook

from ..geometry import (
    check_num_frames,
    format_choices,
    nearest_multiples,
    num_pixel_frames,
    vae_compression_ratios_from_config,
)
from ..hub import ModelCardHubMixin
from .attention import VideoLatentAttention
from .config_utils import check_config_choice, check_config_integers, check_config_number


class CausalCache:
    r"""
    The past frames each causal layer needs to continue a stream, carried from one temporal chunk to the next.

    One cache lives for one `encode`/`decode` call (or one spatial tile of it) and is dropped afterwards, so no state is
    left on the modules. A layer that has no entry yet is seeing the first chunk of its stream.
    """

    def __init__(self):
        self._frames = {}

    def get(self, layer: nn.Module) -> tuple[torch.Tensor, ...] | None:
        return self._frames.get(layer)

    def set(self, layer: nn.Module, frames: tuple[torch.Tensor, ...]) -> None:
        self._frames[layer] = frames


def _last_frames(parts: tuple[torch.Tensor, ...], num_frames: int) -> tuple[torch.Tensor, ...]:
    # The last `num_frames` frames of the concatenation of `parts` along time, as views of the parts.
    kept = []
    for part in reversed(parts):
        if num_frames == 0:
            break
        take = min(num_frames, part.shape[2])
        kept.insert(0, part[:, :, part.shape[2] - take :])
        num_frames -= take
    return tuple(kept)


# the spatial padding modes of `AutoencoderKLVideo`'s decoder
DECODER_PADDING_MODES = ("zeros", "replicate")


class CausalConv3d(nn.Conv3d):
    r"""
    A 3D convolution that only looks at the current and past frames.

    The first chunk of a stream is padded in time with copies of its first frame (so a temporal kernel that sums to the
    identity leaves the first frame unchanged); later chunks are padded with the frames kept in the `CausalCache`.
    Space is padded by `spatial_padding` (left, right, top, bottom), like `nn.Conv2d`: with zeros, or with copies of the
    edge pixels when `padding_mode` is `"replicate"` (`AutoencoderKLVideo`'s `decoder_padding_mode`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int] = 3,
        stride: int | tuple[int, int, int] = 1,
        spatial_padding: tuple[int, int, int, int] | None = None,
        padding_mode: str = "zeros",
    ):
        super().__init__(
            in_channels, out_channels, kernel_size=kernel_size, stride=stride, padding=0, padding_mode=padding_mode
        )
        if spatial_padding is None:
            spatial_padding = (
                self.kernel_size[2] // 2,
                self.kernel_size[2] // 2,
                self.kernel_size[1] // 2,
                self.kernel_size[1] // 2,
            )
        self.spatial_padding = tuple(spatial_padding)
        left, right, top, bottom = self.spatial_padding
        if left == right and top == bottom:
            # symmetric zero padding is done inside the convolution, saving a padded copy of every chunk
            self.padding = (0, top, left)
            self.spatial_padding = (0, 0, 0, 0)

    def forward(self, hidden_states: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        hidden_states = self._add_past_frames(hidden_states, cache)  # (B, C, past + F, H, W)
        return self._convolve(hidden_states, self.weight, self.bias, self.padding)  # (B, C_out, F_out, H_out, W_out)

    def _add_past_frames(self, hidden_states: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        temporal_kernel, temporal_stride = self.kernel_size[0], self.stride[0]

        # 1. temporal context: cached frames of the previous chunk, or copies of the first frame
        past_frames = cache.get(self) if cache is not None else None
        if past_frames is None:
            past_frames = (
                (hidden_states[:, :, :1].expand(-1, -1, temporal_kernel - 1, -1, -1),) if temporal_kernel > 1 else ()
            )
        input_frames = hidden_states
        if past_frames:
            hidden_states = torch.cat([*past_frames, input_frames], dim=2)  # (B, C, past + F, H, W)

        num_frames = hidden_states.shape[2]
        if (num_frames - temporal_kernel) % temporal_stride != 0:
            raise ValueError(
                f"A temporal chunk of {num_frames} padded frames does not fit a causal convolution with kernel "
                f"{temporal_kernel} and stride {temporal_stride}."
            )

        # 2. keep the frames the next chunk's windows start from: a copy when the chunk holds them all (so its
        # activations can be freed), else the past frames and this short chunk's input as they are (no copy; a
        # stream decoded frame by frame keeps no more than its last frames alive either way)
        if cache is not None:
            num_kept = temporal_kernel - temporal_stride
            if num_kept == 0:
                kept = ()
            elif input_frames.shape[2] >= num_kept:
                kept = (input_frames[:, :, input_frames.shape[2] - num_kept :].clone(),)
            else:
                kept = _last_frames((*past_frames, input_frames), num_kept)
            cache.set(self, kept)
        return hidden_states

    def _convolve(
        self, hidden_states: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: tuple
    ) -> torch.Tensor:
        # 3. spatial padding and convolution
        if self.padding_mode != "zeros":
            # edge copies are padded here, around the convolution's own (symmetric) padding and `spatial_padding`
            left, right, top, bottom = self.spatial_padding
            pad = (padding[2] + left, padding[2] + right, padding[1] + top, padding[1] + bottom, 0, 0)
            if any(pad):
                hidden_states = F.pad(hidden_states, pad, mode=self.padding_mode)
            padding = (padding[0], 0, 0)
        elif any(self.spatial_padding):
            hidden_states = F.pad(hidden_states, self.spatial_padding)
        if self._uses_onednn(hidden_states):
            return torch.ops.aten.mkldnn_convolution(
                hidden_states, weight, bias, padding, self.stride, self.dilation, self.groups
            )
        return F.conv3d(hidden_states, weight, bias, self.stride, padding, self.dilation, self.groups)

    def _uses_onednn(self, hidden_states: torch.Tensor) -> bool:
        # PyTorch sends a small batch-1 float32 input on the CPU (a streamed chunk at low resolution) to its
        # unblocked `slow_conv3d`, several times slower than the oneDNN kernel it picks for larger inputs; a
        # spatially 1x1 kernel is faster there, so it keeps PyTorch's choice.
        return (
            hidden_states.device.type == "cpu"
            and hidden_states.dtype == torch.float32
            and self.weight.dtype == torch.float32
            and self.kernel_size[1:] != (1, 1)
            and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled
        )


# Which of a 3-tap kernel's taps land on each of the 2 low-resolution taps, for the even (0) and odd (1) output
# pixels of a nearest-neighbour 2x upsampling: (phase, low-resolution tap, original tap).
_SUBPIXEL_TAPS = ((1.0, 0.0, 0.0), (0.0, 1.0, 1.0)), ((1.0, 1.0, 0.0), (0.0, 0.0, 1.0))


class CausalUpsampleConv3d(CausalConv3d):
    r"""
    A causal 3x3 convolution of the nearest-neighbour 2x spatial upsampling of its input, computed on the input itself.

    Each of the four output pixels of an input pixel (even/odd row, even/odd column) sees the upsampled image through
    a 3x3 window that covers only 2x2 input pixels, so the layer is four 2x2 convolutions of the input (one
    convolution with 4 x `out_channels`, whose outputs are interleaved): the same result as upsampling and then
    convolving (up to float rounding), in 16 instead of 36 multiply-adds per output value and without the upsampled
    copy. The parameters are those of the 3x3 convolution (keys and shapes are unchanged); the cache keeps past input
    frames, a quarter of the upsampled ones.
    """

    def __init__(self, channels: int):
        super().__init__(channels, channels, kernel_size=3)

    def forward(self, hidden_states: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        batch_size, _, _, height, width = hidden_states.shape
        hidden_states = self._add_past_frames(hidden_states, cache)  # (B, C, past + F, H, W)

        taps = torch.tensor(_SUBPIXEL_TAPS, dtype=self.weight.dtype, device=self.weight.device)  # (2, 2, 3)
        # (row phase, column phase, C_out, C_in, T, 2, 2) -> (4 C_out, C_in, T, 2, 2)
        weight = torch.einsum("ark,bsl,oitkl->aboitrs", taps, taps, self.weight).flatten(0, 2)
        bias = self.bias.repeat(4) if self.bias is not None else None
        # output (i, j) of the padded 2x2 convolution covers input rows i-1, i and columns j-1, j
        phases = self._convolve(hidden_states, weight, bias, (0, 1, 1))  # (B, 4 C_out, F, H + 1, W + 1)
        phases = phases.unflatten(1, (2, 2, self.out_channels))  # (B, 2, 2, C_out, F, H + 1, W + 1)

        rows = [
            torch.stack([phases[:, a, b, :, :, a : a + height, b : b + width] for b in (0, 1)], dim=-1) for a in (0, 1)
        ]  # each (B, C_out, F, H, W, 2)
        hidden_states = torch.stack(rows, dim=4)  # (B, C_out, F, H, 2, W, 2)
        return hidden_states.reshape(batch_size, self.out_channels, -1, 2 * height, 2 * width)


class FrameGroupNorm(nn.GroupNorm):
    r"""Group normalization applied to each frame on its own, so that it never mixes frames and chunks stay exact."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        batch_size, channels, num_frames, height, width = hidden_states.shape
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size * num_frames, channels, height, width)
        hidden_states = super().forward(hidden_states)  # (B * F, C, H, W)
        return hidden_states.reshape(batch_size, num_frames, channels, height, width).transpose(1, 2)


class CausalResnetBlock3D(nn.Module):
    r"""A residual block of two causal 3D convolutions with per-frame group norms (keys match `ResnetBlock2D`)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-6,
        act_fn: str = "silu",
        dropout: float = 0.0,
    ):
        super().__init__()
        self.norm1 = FrameGroupNorm(norm_num_groups, in_channels, eps=norm_eps)
        self.conv1 = CausalConv3d(in_channels, out_channels, kernel_size=3)
        self.norm2 = FrameGroupNorm(norm_num_groups, out_channels, eps=norm_eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = CausalConv3d(out_channels, out_channels, kernel_size=3)
        self.nonlinearity = get_activation(act_fn)
        self.conv_shortcut = (
            CausalConv3d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else None
        )

    def forward(self, hidden_states: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        residual = hidden_states

        hidden_states = self.nonlinearity(self.norm1(hidden_states))
        hidden_states = self.conv1(hidden_states, cache)
        hidden_states = self.nonlinearity(self.norm2(hidden_states))
        hidden_states = self.dropout(hidden_states)
        hidden_states = self.conv2(hidden_states, cache)

        if self.conv_shortcut is not None:
            residual = self.conv_shortcut(residual, cache)
        return residual + hidden_states


class SpatialDownsample(nn.Module):
    r"""Halves height and width with a strided causal convolution, padding right and bottom like `Downsample2D`."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = CausalConv3d(channels, channels, kernel_size=3, stride=(1, 2, 2), spatial_padding=(0, 1, 0, 1))

    def forward(self, hidden_states: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        return self.conv(hidden_states, cache)  # (B, C, F, H / 2, W / 2)


class SpatialUpsample(nn.Module):
    r"""
    Doubles height and width (nearest neighbour per frame), then a causal convolution, like `Upsample2D`; the two are
    computed together on the low-resolution frames (`CausalUpsampleConv3d`).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = CausalUpsampleConv3d(channels)

    def forward(self, hidden_states: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        return self.conv(hidden_states, cache)  # (B, C, F, 2 H, 2 W)


class TemporalDownsample(nn.Module):
    r"""
    Halves the frame rate causally: the first frame alone, then each pair of frames, becomes one frame.

    The convolution has temporal kernel 2 and stride 2 and is initialised to the average of the two frames; since the
    first frame is padded with a copy of itself, it passes through unchanged.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = CausalConv3d(channels, channels, kernel_size=(2, 1, 1), stride=(2, 1, 1))
        with torch.no_grad():
            identity = torch.eye(channels)[:, :, None, None]
            self.conv.weight.zero_()
            self.conv.weight[:, :, 0] = 0.5 * identity
            self.conv.weight[:, :, 1] = 0.5 * identity
            self.conv.bias.zero_()

    def forward(self, hidden_states: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        return self.conv(hidden_states, cache)  # (B, C, 1 + (F - 1) / 2, H, W)


class TemporalUpsample(nn.Module):
    r"""
    Doubles the frame rate causally: the first frame stays one frame, every later frame becomes two.

    A causal convolution predicts two frames' worth of channels per frame; it is initialised so that both copies equal
    the input frame (frame repetition), and only the second copy of the stream's first frame is kept.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = CausalConv3d(channels, 2 * channels, kernel_size=(3, 1, 1))
        with torch.no_grad():
            identity = torch.eye(channels)[:, :, None, None]
            self.conv.weight.zero_()
            self.conv.weight[:channels, :, -1] = identity
            self.conv.weight[channels:, :, -1] = identity
            self.conv.bias.zero_()

    def forward(self, hidden_states: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        is_first_chunk = cache is None or cache.get(self.conv) is None
        batch_size, channels, num_frames, height, width = hidden_states.shape

        hidden_states = self.conv(hidden_states, cache)  # (B, 2 C, F, H, W)
        hidden_states = hidden_states.reshape(batch_size, 2, channels, num_frames, height, width)
        hidden_states = hidden_states.permute(0, 2, 3, 1, 4, 5)  # (B, C, F, 2, H, W)
        hidden_states = hidden_states.reshape(batch_size, channels, 2 * num_frames, height, width)
        if is_first_chunk:
            hidden_states = hidden_states[:, :, 1:]  # (B, C, 2 F - 1, H, W)
        return hidden_states


class CausalMidBlock3D(nn.Module):
    r"""
    Resnet, per-frame spatial self-attention ([`VideoLatentAttention`], through diffusers' attention dispatcher),
    resnet; keys match `UNetMidBlock2D`.
    """

    def __init__(
        self,
        channels: int,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-6,
        act_fn: str = "silu",
        add_attention: bool = True,
    ):
        super().__init__()
        self.resnets = nn.ModuleList(
            [
                CausalResnetBlock3D(channels, channels, norm_num_groups, norm_eps, act_fn),
                CausalResnetBlock3D(channels, channels, norm_num_groups, norm_eps, act_fn),
            ]
        )
        # a list of one, `None` without attention, as in `UNetMidBlock2D` (the key stays `attentions.0`)
        attention = None
        if add_attention:
            attention = VideoLatentAttention(
                channels,
                heads=1,
                dim_head=channels,
                bias=True,
                norm_num_groups=norm_num_groups,
                eps=norm_eps,
                residual_connection=True,
                upcast_softmax=True,
            )
        self.attentions = nn.ModuleList([attention])

    def forward(self, hidden_states: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        hidden_states = self.resnets[0](hidden_states, cache)
        attention = self.attentions[0]
        if attention is not None:
            batch_size, channels, num_frames, height, width = hidden_states.shape
            hidden_states = hidden_states.transpose(1, 2).reshape(batch_size * num_frames, channels, height, width)
            hidden_states = attention(hidden_states)  # (B * F, C, H, W)
            hidden_states = hidden_states.reshape(batch_size, num_frames, channels, height, width).transpose(1, 2)
        hidden_states = self.resnets[1](hidden_states, cache)
        return hidden_states


class CausalDownEncoderBlock3D(nn.Module):
    r"""Resnets, then optional spatial and temporal downsampling (keys match `DownEncoderBlock2D`)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_layers: int,
        norm_num_groups: int,
        act_fn: str,
        add_spatial_downsample: bool,
        add_temporal_downsample: bool,
    ):
        super().__init__()
        self.resnets = nn.ModuleList(
            [
                CausalResnetBlock3D(
                    in_channels if i == 0 else out_channels, out_channels, norm_num_groups, 1e-6, act_fn
                )
                for i in range(num_layers)
            ]
        )
        self.downsamplers = None
        if add_spatial_downsample:
            self.downsamplers = nn.ModuleList([SpatialDownsample(out_channels)])
        self.temporal_downsamplers = None
        if add_temporal_downsample:
            self.temporal_downsamplers = nn.ModuleList([TemporalDownsample(out_channels)])

    def forward(self, hidden_states: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        for resnet in self.resnets:
            hidden_states = resnet(hidden_states, cache)
        if self.downsamplers is not None:
            for downsampler in self.downsamplers:
                hidden_states = downsampler(hidden_states, cache)
        if self.temporal_downsamplers is not None:
            for temporal_downsampler in self.temporal_downsamplers:
                hidden_states = temporal_downsampler(hidden_states, cache)
        return hidden_states


class CausalUpDecoderBlock3D(nn.Module):
    r"""Resnets, then optional temporal and spatial upsampling (keys match `UpDecoderBlock2D`)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_layers: int,
        norm_num_groups: int,
        act_fn: str,
        add_spatial_upsample: bool,
        add_temporal_upsample: bool,
    ):
        super().__init__()
        self.resnets = nn.ModuleList(
            [
                CausalResnetBlock3D(
                    in_channels if i == 0 else out_channels, out_channels, norm_num_groups, 1e-6, act_fn
                )
                for i in range(num_layers)
            ]
        )
        self.temporal_upsamplers = None
        if add_temporal_upsample:
            self.temporal_upsamplers = nn.ModuleList([TemporalUpsample(out_channels)])
        self.upsamplers = None
        if add_spatial_upsample:
            self.upsamplers = nn.ModuleList([SpatialUpsample(out_channels)])

    def forward(
        self, hidden_states: torch.Tensor, cache: CausalCache | None = None, part: str | None = None
    ) -> torch.Tensor:
        # `part`: "time" runs the resnets and the temporal upsampling only, "space" the spatial upsampling only (the
        # decoder streams the latter frame by frame); both go through `forward`, so device hooks onload the block
        if part not in (None, "time", "space"):
            raise ValueError(f"`part` must be None, 'time' or 'space', got {part!r}.")
        if part != "space":
            for resnet in self.resnets:
                hidden_states = resnet(hidden_states, cache)
            if self.temporal_upsamplers is not None:
                for temporal_upsampler in self.temporal_upsamplers:
                    hidden_states = temporal_upsampler(hidden_states, cache)
        if part != "time" and self.upsamplers is not None:
            for upsampler in self.upsamplers:
                hidden_states = upsampler(hidden_states, cache)
        return hidden_states


class CausalEncoder3D(nn.Module):
    r"""Maps a video `(B, C, F, H, W)` to the moments `(B, 2 * latent_channels, 1 + (F - 1) / r, H / s, W / s)`."""

    def __init__(
        self,
        in_channels: int,
        latent_channels: int,
        block_out_channels: tuple[int, ...],
        layers_per_block: int,
        temporal_downsample: tuple[bool, ...],
        norm_num_groups: int,
        act_fn: str,
        mid_block_add_attention: bool,
    ):
        super().__init__()
        self.conv_in = CausalConv3d(in_channels, block_out_channels[0], kernel_size=3)

        self.down_blocks = nn.ModuleList()
        output_channels = block_out_channels[0]
        for i, channels in enumerate(block_out_channels):
            input_channels, output_channels = output_channels, channels
            self.down_blocks.append(
                CausalDownEncoderBlock3D(
                    input_channels,
                    output_channels,
                    num_layers=layers_per_block,
                    norm_num_groups=norm_num_groups,
                    act_fn=act_fn,
                    add_spatial_downsample=i < len(block_out_channels) - 1,
                    add_temporal_downsample=temporal_downsample[i],
                )
            )

        self.mid_block = CausalMidBlock3D(
            block_out_channels[-1], norm_num_groups, 1e-6, act_fn, add_attention=mid_block_add_attention
        )

        self.conv_norm_out = FrameGroupNorm(norm_num_groups, block_out_channels[-1], eps=1e-6)
        self.conv_act = get_activation(act_fn)
        self.conv_out = CausalConv3d(block_out_channels[-1], 2 * latent_channels, kernel_size=3)

        self.gradient_checkpointing = False

    def forward(self, sample: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        # 1. pre-process
        sample = self.conv_in(sample, cache)  # (B, C_0, F, H, W)

        # 2. down and mid; checkpointing recomputes blocks, so it is only used without a cache (one chunk)
        if torch.is_grad_enabled() and self.gradient_checkpointing and cache is None:
            for down_block in self.down_blocks:
                sample = self._gradient_checkpointing_func(down_block, sample)
            sample = self._gradient_checkpointing_func(self.mid_block, sample)
        else:
            for down_block in self.down_blocks:
                sample = down_block(sample, cache)
            sample = self.mid_block(sample, cache)  # (B, C_last, F_lat, H / s, W / s)

        # 3. post-process
        sample = self.conv_act(self.conv_norm_out(sample))
        sample = self.conv_out(sample, cache)  # (B, 2 * latent_channels, F_lat, H / s, W / s)
        return sample


class CausalDecoder3D(nn.Module):
    r"""Maps latents `(B, latent_channels, F_lat, h, w)` to a video `(B, C, 1 + (F_lat - 1) * r, h * s, w * s)`."""

    def __init__(
        self,
        out_channels: int,
        latent_channels: int,
        block_out_channels: tuple[int, ...],
        layers_per_block: int,
        temporal_downsample: tuple[bool, ...],
        norm_num_groups: int,
        act_fn: str,
        mid_block_add_attention: bool,
    ):
        super().__init__()
        reversed_block_out_channels = list(reversed(block_out_channels))
        temporal_upsample = list(reversed(temporal_downsample))

        self.conv_in = CausalConv3d(latent_channels, reversed_block_out_channels[0], kernel_size=3)
        self.mid_block = CausalMidBlock3D(
            reversed_block_out_channels[0], norm_num_groups, 1e-6, act_fn, add_attention=mid_block_add_attention
        )

        self.up_blocks = nn.ModuleList()
        output_channels = reversed_block_out_channels[0]
        for i, channels in enumerate(reversed_block_out_channels):
            input_channels, output_channels = output_channels, channels
            self.up_blocks.append(
                CausalUpDecoderBlock3D(
                    input_channels,
                    output_channels,
                    num_layers=layers_per_block + 1,
                    norm_num_groups=norm_num_groups,
                    act_fn=act_fn,
                    add_spatial_upsample=i < len(block_out_channels) - 1,
                    add_temporal_upsample=temporal_upsample[i],
                )
            )

        self.conv_norm_out = FrameGroupNorm(norm_num_groups, block_out_channels[0], eps=1e-6)
        self.conv_act = get_activation(act_fn)
        self.conv_out = CausalConv3d(block_out_channels[0], out_channels, kernel_size=3)

        # the up block whose temporal upsampling gives the full frame rate (-1: none, the mid block's output has it)
        self.full_rate_block_index = max(
            [index for index, upsample in enumerate(temporal_upsample) if upsample], default=-1
        )
        self.gradient_checkpointing = False

    def forward(self, sample: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        # 1. pre-process
        sample = self.conv_in(sample, cache)  # (B, C_last, F_lat, h, w)

        # 2. mid and up; checkpointing recomputes blocks, so it is only used without a cache (one chunk)
        if torch.is_grad_enabled() and self.gradient_checkpointing and cache is None:
            sample = self._gradient_checkpointing_func(self.mid_block, sample)
            for up_block in self.up_blocks:
                sample = self._gradient_checkpointing_func(up_block, sample)
        elif cache is not None and not torch.is_grad_enabled():
            return self._streamed_forward(sample, cache)
        else:
            sample = self.mid_block(sample, cache)
            for up_block in self.up_blocks:
                sample = up_block(sample, cache)  # (B, C_0, F, h * s, w * s) after the last block

        # 3. post-process
        sample = self.conv_act(self.conv_norm_out(sample))
        sample = self.conv_out(sample, cache)  # (B, C, F, h * s, w * s)
        return sample

    def _streamed_forward(self, sample: torch.Tensor, cache: CausalCache) -> torch.Tensor:
        # Once the frame rate is full, the remaining layers (the largest activations) run one frame at a time. Every
        # layer is causal and carries its past frames in the cache, so the frames are those of the whole chunk at once.
        full_rate_index = self.full_rate_block_index

        # 1. mid block and the up blocks at a low frame rate
        sample = self.mid_block(sample, cache)
        for up_block in self.up_blocks[: max(full_rate_index, 0)]:
            sample = up_block(sample, cache)
        if full_rate_index >= 0:
            sample = self.up_blocks[full_rate_index](sample, cache, part="time")  # (B, C, F, h', w')

        # 2. the rest, frame by frame
        frames = []
        for frame in sample.split(1, dim=2):
            if full_rate_index >= 0:
                frame = self.up_blocks[full_rate_index](frame, cache, part="space")
            for up_block in self.up_blocks[full_rate_index + 1 :]:
                frame = up_block(frame, cache)  # (B, C_0, 1, h * s, w * s) after the last block
            frame = self.conv_act(self.conv_norm_out(frame))
            frames.append(self.conv_out(frame, cache))  # (B, C, 1, h * s, w * s)
        return torch.cat(frames, dim=2)  # (B, C, F, h * s, w * s)


class AutoencoderKLVideo(ModelCardHubMixin, ModelMixin, ConfigMixin, AutoencoderMixin):
    r"""
    A causal video VAE with KL loss: encodes videos `[B, 3, F, H, W]` in [-1, 1] into latents
    `[B, latent_channels, 1 + (F - 1) / r, H / s, W / s]` and decodes them back.

    Convolutions are causal in time and the first frame is encoded on its own, so a video of `1 + k * r` frames (`r` =
    `temporal_compression_ratio`) becomes `1 + k` latent frames and an image is a one-frame video. Group norms and the
    mid-block attention act per frame, so `encode` and `decode` stream over time in chunks (the first frame alone, then
    groups of `r` frames per latent frame) with the same result as processing all frames at once, and peak memory that
    does not grow with the number of frames. `enable_tiling()` adds spatial tiling with blended overlaps and
    `enable_slicing()` processes a batch one video at a time.

    This model inherits from [`ModelMixin`]. Check the superclass documentation for its generic methods (downloading,
    saving, loading).

    Args:
        in_channels (`int`, *optional*, defaults to 3):
            Number of channels of the input video.
        out_channels (`int`, *optional*, defaults to 3):
            Number of channels of the decoded video.
        block_out_channels (`tuple[int, ...]`, *optional*, defaults to `(128, 256, 512, 512)`):
            Width of each level; `len(block_out_channels) - 1` spatial halvings give the spatial compression (4
            levels: 8x, 5 levels: 16x).
        layers_per_block (`int`, *optional*, defaults to 2):
            Resnets per encoder level (the decoder has one more per level, as in `AutoencoderKL`).
        temporal_downsample (`tuple[bool, ...]`, *optional*, defaults to `(False, True, True, False)`):
            Per level, whether the encoder halves the frame rate at the end of the level (the decoder mirrors it).
            The temporal compression ratio is `2 ** sum(temporal_downsample)` and must be 1, 2, 4 or 8.
        latent_channels (`int`, *optional*, defaults to 4):
            Number of channels of the latent.
        norm_num_groups (`int`, *optional*, defaults to 32):
            Groups of the per-frame group norms; must divide every entry of `block_out_channels`.
        act_fn (`str`, *optional*, defaults to `"silu"`):
            Activation function.
        mid_block_add_attention (`bool`, *optional*, defaults to `True`):
            Whether the encoder and decoder mid blocks have a per-frame spatial self-attention.
        use_quant_conv (`bool`, *optional*, defaults to `True`):
            Whether a 1x1x1 convolution follows the encoder.
        use_post_quant_conv (`bool`, *optional*, defaults to `True`):
            Whether a 1x1x1 convolution precedes the decoder.
        scaling_factor (`float`, *optional*, defaults to 0.18215):
            Latents are multiplied by it (after subtracting `shift_factor`) before diffusion, and divided by it before
            decoding.
        shift_factor (`float`, *optional*):
            Subtracted from the latents before scaling; `None` means no shift.
        latents_mean (`tuple[float, ...]`, *optional*):
            Per-channel latent means; when given with `latents_std`, pipelines normalise per channel instead.
        latents_std (`tuple[float, ...]`, *optional*):
            Per-channel latent standard deviations.
        force_upcast (`bool`, *optional*, defaults to `True`):
            Whether pipelines should run this VAE in float32 even when the rest runs in float16/bfloat16.
        decoder_padding_mode (`str`, *optional*, defaults to `"zeros"`):
            How the decoder's convolutions pad the frame's border in space: `"zeros"` (like `AutoencoderKL`) or
            `"replicate"` (copies of the edge pixels, so an object cut by the border is not darkened there). The
            weights do not depend on it, but a decoder trained with one mode decodes worse with the other.
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = ["CausalResnetBlock3D", "CausalMidBlock3D"]
    _skip_layerwise_casting_patterns = ["norm"]
    # group offloading hooks the forward of these children: `encode`/`decode` call them, never `forward` itself
    _group_offload_block_modules = ["quant_conv", "post_quant_conv", "encoder", "decoder"]
    # the `CausalCache` the layers fill in place: device hooks pass it on as it is, never a moved copy of it
    _skip_keys = ["cache"]

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        block_out_channels: tuple[int, ...] = (128, 256, 512, 512),
        layers_per_block: int = 2,
        temporal_downsample: tuple[bool, ...] = (False, True, True, False),
        latent_channels: int = 4,
        norm_num_groups: int = 32,
        act_fn: str = "silu",
        mid_block_add_attention: bool = True,
        use_quant_conv: bool = True,
        use_post_quant_conv: bool = True,
        scaling_factor: float = 0.18215,
        shift_factor: float | None = None,
        latents_mean: tuple[float, ...] | None = None,
        latents_std: tuple[float, ...] | None = None,
        force_upcast: bool = True,
        decoder_padding_mode: str = "zeros",
    ):
        super().__init__()
        # a config.json value no model can be built from is refused naming its key, not deep inside a layer
        check_config_integers(
            {
                "in_channels": in_channels,
                "out_channels": out_channels,
                "block_out_channels": block_out_channels,
                "layers_per_block": layers_per_block,
                "latent_channels": latent_channels,
                "norm_num_groups": norm_num_groups,
            },
            minimum=1,
        )
        check_config_choice("act_fn", act_fn, ACT2CLS)
        check_config_choice("decoder_padding_mode", decoder_padding_mode, DECODER_PADDING_MODES)
        check_config_number("scaling_factor", scaling_factor, 0.0, open_minimum=True)
        for key, values in (("latents_mean", latents_mean), ("latents_std", latents_std)):
            if values is not None and len(values) != latent_channels:
                raise ValueError(
                    f"Config key `{key}` must have one entry per latent channel ({latent_channels}), got {len(values)}."
                )
        if len(temporal_downsample) != len(block_out_channels):
            raise ValueError(
                f"`temporal_downsample` must have one entry per level ({len(block_out_channels)}), got "
                f"{tuple(temporal_downsample)}."
            )
        spatial_ratio, temporal_ratio, _ = vae_compression_ratios_from_config(
            {"block_out_channels": block_out_channels, "temporal_downsample": temporal_downsample}
        )
        if temporal_ratio not in (1, 2, 4, 8):
            raise ValueError(
                f"`temporal_downsample` {tuple(temporal_downsample)} gives a temporal compression ratio of "
                f"{temporal_ratio}; allowed are 1, 2, 4 and 8."
            )
        for channels in block_out_channels:
            if channels % norm_num_groups != 0:
                raise ValueError(
                    f"`norm_num_groups` ({norm_num_groups}) must divide every entry of `block_out_channels` "
                    f"{tuple(block_out_channels)}."
                )
        temporal_downsample = tuple(bool(flag) for flag in temporal_downsample)
        # derived from the config once, for the `*_compression_ratio` properties that every call reads
        self._spatial_compression_ratio = spatial_ratio
        self._temporal_compression_ratio = temporal_ratio

        self.encoder = CausalEncoder3D(
            in_channels,
            latent_channels,
            block_out_channels,
            layers_per_block,
            temporal_downsample,
            norm_num_groups,
            act_fn,
            mid_block_add_attention,
        )
        self.decoder = CausalDecoder3D(
            out_channels,
            latent_channels,
            block_out_channels,
            layers_per_block,
            temporal_downsample,
            norm_num_groups,
            act_fn,
            mid_block_add_attention,
        )
        for module in self.decoder.modules():
            if isinstance(module, CausalConv3d):
                module.padding_mode = decoder_padding_mode
        self.quant_conv = (
            CausalConv3d(2 * latent_channels, 2 * latent_channels, kernel_size=1) if use_quant_conv else None
        )
        self.post_quant_conv = (
            CausalConv3d(latent_channels, latent_channels, kernel_size=1) if use_post_quant_conv else None
        )

        # Runtime settings (not config): latent frames per streamed step, batch slicing and spatial tiling.
        self.encode_chunk_size = 1
        self.decode_chunk_size = 1
        self.use_slicing = False
        self.use_tiling = False
        self.tile_sample_min_height = 256
        self.tile_sample_min_width = 256
        self.tile_overlap_factor_height = 0.25
        self.tile_overlap_factor_width = 0.25

    @property
    def spatial_compression_ratio(self) -> int:
        """Height and width shrink by this factor in the latents: `2 ** (len(block_out_channels) - 1)`."""
        return self._spatial_compression_ratio

    @property
    def temporal_compression_ratio(self) -> int:
        """Frames per latent frame after the first, which is encoded alone: `2 ** sum(temporal_downsample)`."""
        return self._temporal_compression_ratio

    def enable_tiling(
        self,
        tile_sample_min_height: int | None = None,
        tile_sample_min_width: int | None = None,
        tile_overlap_factor_height: float | None = None,
        tile_overlap_factor_width: float | None = None,
    ) -> None:
        r"""
        Enable spatial tiling: frames larger than a tile are encoded/decoded in overlapping tiles (each streamed over
        time) whose overlaps are blended linearly. Saves memory on large frames; results differ slightly from the
        untiled path near tile borders.

        Args:
            tile_sample_min_height (`int`, *optional*):
                Tile height in pixels (a multiple of `spatial_compression_ratio`); taller frames are tiled.
            tile_sample_min_width (`int`, *optional*):
                Tile width in pixels (a multiple of `spatial_compression_ratio`); wider frames are tiled.
            tile_overlap_factor_height (`float`, *optional*):
                Fraction of a tile's height shared with the next tile, in [0, 1).
            tile_overlap_factor_width (`float`, *optional*):
                Fraction of a tile's width shared with the next tile, in [0, 1).
        """
        ratio = self.spatial_compression_ratio
        for name, size in (
            ("tile_sample_min_height", tile_sample_min_height),
            ("tile_sample_min_width", tile_sample_min_width),
        ):
            if size is not None and (size <= 0 or size % ratio != 0):
                raise ValueError(f"`{name}` must be a positive multiple of {ratio}, got {size}.")
        for name, factor in (
            ("tile_overlap_factor_height", tile_overlap_factor_height),
            ("tile_overlap_factor_width", tile_overlap_factor_width),
        ):
            if factor is not None and not 0 <= factor < 1:
                raise ValueError(f"`{name}` must be in [0, 1), got {factor}.")
        self.use_tiling = True
        self.tile_sample_min_height = tile_sample_min_height or self.tile_sample_min_height
        self.tile_sample_min_width = tile_sample_min_width or self.tile_sample_min_width
        if tile_overlap_factor_height is not None:
            self.tile_overlap_factor_height = tile_overlap_factor_height
        if tile_overlap_factor_width is not None:
            self.tile_overlap_factor_width = tile_overlap_factor_width

    # ----------------------------------------------------------------------------------------------------------------
    # Input checks
    # ----------------------------------------------------------------------------------------------------------------

    def _check_video(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"`x` must be a torch.Tensor of shape [B, C, F, H, W], got {type(x).__name__}.")
        if x.ndim == 4:
            raise ValueError(
                f"`x` must be a 5-D video tensor [B, C, F, H, W], got a 4-D tensor of shape {tuple(x.shape)}; "
                "for a batch of images add a frame axis, e.g. `x.unsqueeze(2)`."
            )
        if x.ndim != 5:
            raise ValueError(f"`x` must be a 5-D video tensor [B, C, F, H, W], got shape {tuple(x.shape)}.")
        _, channels, num_frames, height, width = x.shape
        if channels != self.config.in_channels:
            raise ValueError(
                f"`x` has {channels} channels (shape {tuple(x.shape)}); this VAE expects in_channels="
                f"{self.config.in_channels}."
            )
        if num_frames == 0:
            raise ValueError(f"`x` has 0 frames (shape {tuple(x.shape)}); a video needs at least one.")
        check_num_frames(num_frames, self.temporal_compression_ratio, name="x.shape[2]")
        spatial = self.spatial_compression_ratio
        for name, size in (("height", height), ("width", width)):
            if size == 0 or size % spatial != 0:
                raise ValueError(
                    f"`x` has {name} {size}; it must be a positive multiple of spatial_compression_ratio={spatial} "
                    f"(nearest: {format_choices(nearest_multiples(size, spatial))})."
                )

    def _check_latents(self, z: torch.Tensor) -> None:
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"`z` must be a torch.Tensor of shape [B, C, F, H, W], got {type(z).__name__}.")
        if z.ndim == 4:
            raise ValueError(
                f"`z` must be a 5-D latent tensor [B, C, F, H, W], got a 4-D tensor of shape {tuple(z.shape)}; "
                "for image latents add a frame axis, e.g. `z.unsqueeze(2)`."
            )
        if z.ndim != 5:
            raise ValueError(f"`z` must be a 5-D latent tensor [B, C, F, H, W], got shape {tuple(z.shape)}.")
        if z.shape[1] != self.config.latent_channels:
            raise ValueError(
                f"`z` has {z.shape[1]} channels (shape {tuple(z.shape)}); this VAE expects latent_channels="
                f"{self.config.latent_channels}."
            )
        if z.shape[2] == 0 or z.shape[3] == 0 or z.shape[4] == 0:
            raise ValueError(f"`z` must have at least one frame, row and column, got shape {tuple(z.shape)}.")

    @staticmethod
    def _check_chunk_size(chunk_size: int | None) -> None:
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(
                f"`chunk_size` must be a positive int (latent frames per step) or None, got {chunk_size}."
            )

    def _uses_one_chunk(self) -> bool:
        # Gradient checkpointing recomputes blocks during backward; a cache mutated in between would give other frames.
        return torch.is_grad_enabled() and self.encoder.gradient_checkpointing

    # ----------------------------------------------------------------------------------------------------------------
    # Encoding
    # ----------------------------------------------------------------------------------------------------------------

    def _streamed_encode(self, x: torch.Tensor, chunk_size: int) -> torch.Tensor:
        if self._uses_one_chunk():
            moments = self.encoder(x)
            return self.quant_conv(moments) if self.quant_conv is not None else moments

        # first frame alone, then `chunk_size` groups of `r` frames per step
        ratio, num_frames = self.temporal_compression_ratio, x.shape[2]
        boundaries = [0, 1] + list(range(1 + ratio * chunk_size, num_frames, ratio * chunk_size)) + [num_frames]
        cache = CausalCache()
        moments = []
        for start, end in zip(boundaries[:-1], boundaries[1:]):
            if end <= start:
                continue
            chunk_moments = self.encoder(x[:, :, start:end], cache)
            if self.quant_conv is not None:
                chunk_moments = self.quant_conv(chunk_moments, cache)
            moments.append(chunk_moments)
        return torch.cat(moments, dim=2)  # (B, 2 * latent_channels, F_lat, H / s, W / s)

    def _encode(self, x: torch.Tensor, chunk_size: int) -> torch.Tensor:
        height, width = x.shape[-2:]
        if self.use_tiling and (height > self.tile_sample_min_height or width > self.tile_sample_min_width):
            return self._tiled_encode(x, chunk_size)
        return self._streamed_encode(x, chunk_size)

    @apply_forward_hook
    def encode(
        self, x: torch.Tensor, return_dict: bool = True, chunk_size: int | None = None
    ) -> AutoencoderKLOutput | tuple[DiagonalGaussianDistribution]:
        r"""
        Encode a batch of videos into latent distributions.

        Args:
            x (`torch.Tensor` of shape `(batch_size, in_channels, num_frames, height, width)`):
                Videos in [-1, 1]; `num_frames` must be `1 + k * temporal_compression_ratio` and height and width
                multiples of `spatial_compression_ratio`.
            return_dict (`bool`, *optional*, defaults to `True`):
                Whether to return an [`~models.modeling_outputs.AutoencoderKLOutput`] instead of a plain tuple.
            chunk_size (`int`, *optional*):
                Latent frames encoded per streamed step (`chunk_size * r` video frames); defaults to
                `self.encode_chunk_size`. The result does not depend on it.

        Returns:
            [`~models.modeling_outputs.AutoencoderKLOutput`] or `tuple`: the latent distribution
            (`DiagonalGaussianDistribution` over `(batch_size, latent_channels, 1 + k, height / s, width / s)`).
        """
        self._check_video(x)
        self._check_chunk_size(chunk_size)
        chunk_size = chunk_size or self.encode_chunk_size

        if self.use_slicing and x.shape[0] > 1:
            moments = torch.cat([self._encode(x_slice, chunk_size) for x_slice in x.split(1)])
        else:
            moments = self._encode(x, chunk_size)
        posterior = DiagonalGaussianDistribution(moments)

        if not return_dict:
            return (posterior,)
        return AutoencoderKLOutput(latent_dist=posterior)

    # ----------------------------------------------------------------------------------------------------------------
    # Decoding
    # ----------------------------------------------------------------------------------------------------------------

    def _streamed_decode(self, z: torch.Tensor, chunk_size: int) -> torch.Tensor:
        if self._uses_one_chunk():
            hidden_states = self.post_quant_conv(z) if self.post_quant_conv is not None else z
            return self.decoder(hidden_states)

        ratio, spatial = self.temporal_compression_ratio, self.spatial_compression_ratio
        batch_size, _, num_latent_frames, height, width = z.shape
        num_frames = num_pixel_frames(num_latent_frames, ratio)

        # the output is written in place, so only one chunk of decoded frames exists besides it
        sample = None
        boundaries = [0, 1] + list(range(1 + chunk_size, num_latent_frames, chunk_size)) + [num_latent_frames]
        cache = CausalCache()
        frame_index = 0
        for start, end in zip(boundaries[:-1], boundaries[1:]):
            if end <= start:
                continue
            hidden_states = z[:, :, start:end]
            if self.post_quant_conv is not None:
                hidden_states = self.post_quant_conv(hidden_states, cache)
            decoded = self.decoder(hidden_states, cache)  # (B, C, frames of this chunk, H, W)
            if sample is None:
                sample = decoded.new_empty(batch_size, decoded.shape[1], num_frames, height * spatial, width * spatial)
            sample[:, :, frame_index : frame_index + decoded.shape[2]] = decoded
            frame_index += decoded.shape[2]
        return sample  # (B, C, 1 + (F_lat - 1) * r, H * s, W * s)

    def _decode(self, z: torch.Tensor, chunk_size: int) -> torch.Tensor:
        tile_latent_height = self.tile_sample_min_height // self.spatial_compression_ratio
        tile_latent_width = self.tile_sample_min_width // self.spatial_compression_ratio
        if self.use_tiling and (z.shape[-2] > tile_latent_height or z.shape[-1] > tile_latent_width):
            return self._tiled_decode(z, chunk_size)
        return self._streamed_decode(z, chunk_size)

    @apply_forward_hook
    def decode(
        self,
        z: torch.Tensor,
        return_dict: bool = True,
        chunk_size: int | None = None,
    ) -> DecoderOutput | tuple[torch.Tensor]:
        r"""
        Decode a batch of video latents.

        Args:
            z (`torch.Tensor` of shape `(batch_size, latent_channels, num_latent_frames, height, width)`):
                Latents (already divided by `scaling_factor` and shifted back by the caller).
            return_dict (`bool`, *optional*, defaults to `True`):
                Whether to return a [`~models.vae.DecoderOutput`] instead of a plain tuple.
            chunk_size (`int`, *optional*):
                Latent frames decoded per streamed step; defaults to `self.decode_chunk_size`. The result does not
                depend on it, peak memory does.

        Returns:
            [`~models.vae.DecoderOutput`] or `tuple`: videos of shape
            `(batch_size, out_channels, 1 + (num_latent_frames - 1) * r, height * s, width * s)`.
        """
        self._check_latents(z)
        self._check_chunk_size(chunk_size)
        chunk_size = chunk_size or self.decode_chunk_size

        if self.use_slicing and z.shape[0] > 1:
            decoded = torch.cat([self._decode(z_slice, chunk_size) for z_slice in z.split(1)])
        else:
            decoded = self._decode(z, chunk_size)

        if not return_dict:
            return (decoded,)
        return DecoderOutput(sample=decoded)

    # ----------------------------------------------------------------------------------------------------------------
    # Spatial tiling
    # ----------------------------------------------------------------------------------------------------------------

    @staticmethod
    def _blend(previous: torch.Tensor, current: torch.Tensor, extent: int, dim: int) -> torch.Tensor:
        # Linear cross-fade from the end of `previous` into the start of `current` along `dim`.
        extent = min(extent, previous.shape[dim], current.shape[dim])
        if extent == 0:
            return current
        shape = [1] * current.ndim
        shape[dim] = extent
        weight = (torch.arange(extent, device=current.device, dtype=current.dtype) / extent).reshape(shape)
        previous_edge = previous.narrow(dim, previous.shape[dim] - extent, extent)
        current = current.clone()
        current.narrow(dim, 0, extent).copy_(previous_edge * (1 - weight) + current.narrow(dim, 0, extent) * weight)
        return current

    def _tile_layout(self, latent_size: int, tile_latent: int, overlap_factor: float) -> tuple[list[int], int, int]:
        blend_extent = int(tile_latent * overlap_factor)
        stride = max(tile_latent - blend_extent, 1)
        starts = list(range(0, max(latent_size - blend_extent, 1), stride))
        return starts, stride, blend_extent

    def _merge_tiles(
        self, rows: list[list[torch.Tensor]], stride: tuple[int, int], blend: tuple[int, int], size: tuple[int, int]
    ) -> torch.Tensor:
        # Each tile is blended with its already blended upper and left neighbours, as `AutoencoderKL` does, so an
        # inflated image VAE tiles exactly like its source.
        result_rows = []
        for i, row in enumerate(rows):
            result_row = []
            for j, tile in enumerate(row):
                if i > 0:
                    tile = self._blend(rows[i - 1][j], tile, blend[0], dim=3)
                if j > 0:
                    tile = self._blend(row[j - 1], tile, blend[1], dim=4)
                row[j] = tile
                # every tile but the last of its row/column gives up its overlap to the next one
                height = stride[0] if i < len(rows) - 1 else tile.shape[3]
                width = stride[1] if j < len(row) - 1 else tile.shape[4]
                result_row.append(tile[:, :, :, :height, :width])
            result_rows.append(torch.cat(result_row, dim=4))
        return torch.cat(result_rows, dim=3)[:, :, :, : size[0], : size[1]]

    def _tiled_encode(self, x: torch.Tensor, chunk_size: int) -> torch.Tensor:
        spatial = self.spatial_compression_ratio
        latent_height, latent_width = x.shape[3] // spatial, x.shape[4] // spatial
        tile_height = self.tile_sample_min_height // spatial
        tile_width = self.tile_sample_min_width // spatial
        row_starts, stride_height, blend_height = self._tile_layout(
            latent_height, tile_height, self.tile_overlap_factor_height
        )
        column_starts, stride_width, blend_width = self._tile_layout(
            latent_width, tile_width, self.tile_overlap_factor_width
        )

        rows = []
        for i in row_starts:
            row = []
            for j in column_starts:
                tile = x[:, :, :, i * spatial : (i + tile_height) * spatial, j * spatial : (j + tile_width) * spatial]
                row.append(self._streamed_encode(tile, chunk_size))
            rows.append(row)
        return self._merge_tiles(
            rows, (stride_height, stride_width), (blend_height, blend_width), (latent_height, latent_width)
        )

    def _tiled_decode(self, z: torch.Tensor, chunk_size: int) -> torch.Tensor:
        spatial = self.spatial_compression_ratio
        latent_height, latent_width = z.shape[3], z.shape[4]
        tile_height = self.tile_sample_min_height // spatial
        tile_width = self.tile_sample_min_width // spatial
        row_starts, stride_height, blend_height = self._tile_layout(
            latent_height, tile_height, self.tile_overlap_factor_height
        )
        column_starts, stride_width, blend_width = self._tile_layout(
            latent_width, tile_width, self.tile_overlap_factor_width
        )

        rows = []
        for i in row_starts:
            row = []
            for j in column_starts:
                tile = z[:, :, :, i : i + tile_height, j : j + tile_width]
                row.append(self._streamed_decode(tile, chunk_size))
            rows.append(row)
        return self._merge_tiles(
            rows,
            (stride_height * spatial, stride_width * spatial),
            (blend_height * spatial, blend_width * spatial),
            (latent_height * spatial, latent_width * spatial),
        )

    def forward(
        self,
        sample: torch.Tensor,
        sample_posterior: bool = False,
        return_dict: bool = True,
        generator: torch.Generator | None = None,
    ) -> DecoderOutput | tuple[torch.Tensor]:
        r"""
        Encode and decode a batch of videos.

        Args:
            sample (`torch.Tensor` of shape `(batch_size, in_channels, num_frames, height, width)`):
                Videos in [-1, 1].
            sample_posterior (`bool`, *optional*, defaults to `False`):
                Whether to sample from the posterior instead of taking its mode.
            return_dict (`bool`, *optional*, defaults to `True`):
                Whether to return a [`~models.vae.DecoderOutput`] instead of a plain tuple.
            generator (`torch.Generator`, *optional*):
                Generator for sampling the posterior.

        Returns:
            [`~models.vae.DecoderOutput`] or `tuple`: the reconstructed videos.
        """
        # 1. encode
        posterior = self.encode(sample).latent_dist

        # 2. latent
        latents = posterior.sample(generator=generator) if sample_posterior else posterior.mode()

        # 3. decode
        decoded = self.decode(latents).sample

        if not return_dict:
            return (decoded,)
        return DecoderOutput(sample=decoded)

    # ----------------------------------------------------------------------------------------------------------------
    # Inflation from an image VAE
    # ----------------------------------------------------------------------------------------------------------------

    @classmethod
    def from_image_vae(
        cls,
        vae: AutoencoderKL,
        temporal_compression_ratio: int = 1,
        temporal_downsample: tuple[bool, ...] | None = None,
    ) -> "AutoencoderKLVideo":
        r"""
        Inflate a diffusers [`AutoencoderKL`] (e.g. a Stable Diffusion 1.x/2.x/XL VAE) into a causal video VAE.

        Every `Conv2d` becomes a `CausalConv3d` whose newest-frame tap holds the 2D weights and whose older taps are
        zero; norms, attention, `quant_conv`/`post_quant_conv` and the config values `scaling_factor`, `shift_factor`,
        `latents_mean`, `latents_std` and `force_upcast` are carried over. Hence:

        - with `temporal_compression_ratio=1`, encoding and decoding equal the image VAE applied frame by frame;
        - with a ratio of 2, 4 or 8, new temporal layers are added at the deepest `log2(ratio)` levels (or where
          `temporal_downsample` says). Each encoder `TemporalDownsample` starts as the average of the two frames it
          merges (so a latent frame starts as the average over its group of `r` frames, mixed level by level), and
          each decoder `TemporalUpsample` starts as frame repetition (every latent frame is decoded `r` times). The
          first frame is padded with copies of itself, so it still encodes and decodes exactly as the image VAE does;
          the other frames are a reasonable starting point for fine-tuning the temporal taps and layers.

        Args:
            vae ([`AutoencoderKL`]):
                The image VAE; it is not modified.
            temporal_compression_ratio (`int`, *optional*, defaults to 1):
                1, 2, 4 or 8.
            temporal_downsample (`tuple[bool, ...]`, *optional*):
                Per level, where to halve the frame rate; by default the deepest `log2(ratio)` levels.

        Returns:
            [`AutoencoderKLVideo`] on the device and in the dtype of `vae`.
        """
        if not isinstance(vae, AutoencoderKL):
            raise TypeError(f"`vae` must be a diffusers AutoencoderKL, got {type(vae).__name__}.")
        if temporal_compression_ratio not in (1, 2, 4, 8):
            raise ValueError(f"`temporal_compression_ratio` must be 1, 2, 4 or 8, got {temporal_compression_ratio}.")
        image_config = vae.config
        num_levels = len(image_config.block_out_channels)
        if any(block != "DownEncoderBlock2D" for block in image_config.down_block_types) or any(
            block != "UpDecoderBlock2D" for block in image_config.up_block_types
        ):
            raise ValueError(
                "`vae` must use DownEncoderBlock2D/UpDecoderBlock2D blocks, got "
                f"{tuple(image_config.down_block_types)} / {tuple(image_config.up_block_types)}."
            )
        num_temporal_levels = int(math.log2(temporal_compression_ratio))
        if temporal_downsample is None:
            if num_temporal_levels > num_levels:
                raise ValueError(
                    f"`temporal_compression_ratio={temporal_compression_ratio}` needs {num_temporal_levels} levels, "
                    f"but `vae` has only {num_levels}."
                )
            temporal_downsample = tuple(i >= num_levels - num_temporal_levels for i in range(num_levels))
        elif 2 ** sum(bool(flag) for flag in temporal_downsample) != temporal_compression_ratio:
            raise ValueError(
                f"`temporal_downsample` {tuple(temporal_downsample)} does not give "
                f"`temporal_compression_ratio={temporal_compression_ratio}`."
            )

        video_vae = cls(
            in_channels=image_config.in_channels,
            out_channels=image_config.out_channels,
            block_out_channels=tuple(image_config.block_out_channels),
            layers_per_block=image_config.layers_per_block,
            temporal_downsample=tuple(temporal_downsample),
            latent_channels=image_config.latent_channels,
            norm_num_groups=image_config.norm_num_groups,
            act_fn=image_config.act_fn,
            mid_block_add_attention=image_config.get("mid_block_add_attention", True),
            use_quant_conv=image_config.get("use_quant_conv", True),
            use_post_quant_conv=image_config.get("use_post_quant_conv", True),
            scaling_factor=image_config.scaling_factor,
            shift_factor=image_config.get("shift_factor", None),
            latents_mean=image_config.get("latents_mean", None),
            latents_std=image_config.get("latents_std", None),
            force_upcast=image_config.get("force_upcast", True),
        )

        # Every image-VAE key exists in the video VAE under the same name; only the temporal layers are new.
        video_state_dict = video_vae.state_dict()
        image_state_dict = vae.state_dict()
        missing = [key for key in image_state_dict if key not in video_state_dict]
        if missing:
            raise ValueError(f"Cannot inflate `vae`: no place for its weights {missing[:5]}.")
        unexpected = [key for key in video_state_dict if key not in image_state_dict and "temporal_" not in key]
        if unexpected:
            raise ValueError(f"Cannot inflate `vae`: it has no weights for {unexpected[:5]}.")
        parameter = next(vae.parameters())
        for key, target in video_state_dict.items():
            weight = image_state_dict.get(key)
            if weight is None:
                inflated = target  # a new temporal layer, initialised by its constructor
            elif target.ndim == 5 and weight.ndim == 4:
                inflated = torch.zeros_like(target, dtype=weight.dtype)
                inflated[:, :, -1] = weight.cpu()
            elif target.shape == weight.shape:
                inflated = weight.clone()
            else:
                raise ValueError(f"Cannot inflate `{key}`: shape {tuple(weight.shape)} vs {tuple(target.shape)}.")
            video_state_dict[key] = inflated.to(device=parameter.device, dtype=parameter.dtype)
        # `assign=True` adopts the image VAE's device and dtype without a cast through `ModelMixin.to`
        video_vae.load_state_dict(video_state_dict, strict=True, assign=True)
        return video_vae.eval()
