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
"""A spatio-temporal U-Net for video latents `[B, C, F, H, W]`, built from diffusers' own layers.

Each resolution level is a stack of layers; a layer is a spatial `ResnetBlock2D`, then optionally a temporal
convolution over frames, a spatial transformer (self-attention over H*W and cross-attention to the text) and a temporal
transformer (attention over frames at each spatial position). Per-level config tuples choose which parts exist, which is
general enough to represent diffusers' `UNet3DConditionModel` (ModelScope), `UNetMotionModel` (AnimateDiff) and an
inflated `UNet2DConditionModel` exactly; `from_unet3d` and `from_unet2d` load them through the key maps of
`conversion_unet.py`.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.hooks import (
    FasterCacheConfig,
    FirstBlockCacheConfig,
    HookRegistry,
    MagCacheConfig,
    PyramidAttentionBroadcastConfig,
    TaylorSeerCacheConfig,
)
from diffusers.hooks.faster_cache import _apply_faster_cache_on_attention_class
from diffusers.loaders import PeftAdapterMixin
from diffusers.models.activations import ACT2CLS, get_activation
from diffusers.models.attention import AttentionMixin, FeedForward, FreeNoiseTransformerBlock, _chunked_feed_forward
from diffusers.models.cache_utils import CacheMixin
from diffusers.models.embeddings import SinusoidalPositionalEmbedding, TimestepEmbedding, Timesteps
from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D
from diffusers.pipelines.free_noise_utils import SplitInferenceModule
from diffusers.utils import BaseOutput, apply_lora_scale
from diffusers.utils.torch_utils import apply_freeu
from torch import nn

from .._checks import is_integer
from ..geometry import unet_downsample_factor, unet_max_latent_frames
from ..hub import ModelCardHubMixin
from .attention import VideoLatentAttention, VideoLatentAttnProcessor
from .config_utils import check_config_choice, check_config_integers, check_config_number, per_level
from .conversion_unet import (
    convert_motion_adapter_state_dict,
    convert_unet2d_state_dict,
    convert_unet3d_state_dict,
    load_converted_state_dict,
    match_device_and_dtype,
    motion_adapter_config_to_spatio_temporal,
    unet2d_config_to_spatio_temporal,
    unet3d_config_to_spatio_temporal,
)
from .deep_cache import DeepCacheConfig, apply_deep_cache, remove_deep_cache


TEMPORAL_POSITION_EMBEDDINGS = ("none", "sinusoidal", "learned")
# How FreeNoise blends overlapping windows (diffusers' `FreeNoiseTransformerBlock._get_frame_weights`).
FREE_NOISE_WEIGHTING_SCHEMES = ("flat", "pyramid", "delayed_reverse_sawtooth")

# Names of the attention layers for diffusers' cache hooks (regular expressions, full module names). Their defaults
# match a transformer's top-level `transformer_blocks`; here attention sits inside the levels of the U-Net.
_LEVEL = r"(down_blocks\.\d+|mid_block|up_blocks\.\d+)"
SPATIAL_ATTENTION_IDENTIFIERS = (rf"^{_LEVEL}\.attentions\.\d+\.transformer_blocks\.\d+\.attn\d$",)
TEMPORAL_ATTENTION_IDENTIFIERS = (
    rf"^{_LEVEL}\.temporal_attentions\.\d+\.transformer_blocks\.\d+\.attn\d$",
    r"^transformer_in\.transformer_blocks\.\d+\.attn\d$",
)
ATTENTION_IDENTIFIERS = SPATIAL_ATTENTION_IDENTIFIERS + TEMPORAL_ATTENTION_IDENTIFIERS
# The inputs of `forward` that carry the [unconditional, conditional] batch of classifier-free guidance.
GUIDANCE_BATCH_INPUTS = ("sample", "timestep", "encoder_hidden_states", "fps", "conditioning_latents")


@dataclass
class UNetSpatioTemporalOutput(BaseOutput):
    """
    The output of [`UNetSpatioTemporalModel`].

    Args:
        sample (`torch.Tensor` of shape `(batch_size, out_channels, num_frames, height, width)`):
            The predicted noise (or v / flow velocity, depending on how the model was trained).
    """

    sample: torch.Tensor


# ---------------------------------------------------------------------------------------------------------------------
# Layers: attention, transformers, temporal convolution
# ---------------------------------------------------------------------------------------------------------------------


class VideoLatentLearnedFrameEmbedding(nn.Module):
    """Adds a learned vector per frame index to a `(batch, num_frames, dim)` sequence."""

    def __init__(self, embed_dim: int, max_frames: int):
        super().__init__()
        self.embedding = nn.Parameter(torch.zeros(1, max_frames, embed_dim))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        num_frames = hidden_states.shape[1]
        return hidden_states + self.embedding[:, :num_frames].to(hidden_states.dtype)  # (N, F, D)


class VideoLatentTransformerBlock(nn.Module):
    r"""
    Self-attention, a second attention (cross-attention to the text, or a second self-attention) and a GEGLU
    feed-forward, each after a `LayerNorm` and added back as a residual: diffusers' `BasicTransformerBlock` with
    `norm_type="layer_norm"`, with the same parameter names, on [`VideoLatentAttention`] layers.

    Parameters:
        dim (`int`): Channels of the input sequence.
        num_attention_heads (`int`): Number of attention heads.
        attention_head_dim (`int`): Channels per head.
        cross_attention_dim (`int`, *optional*):
            Width of the text embeddings `attn2` attends to; `None` makes `attn2` a second self-attention.
        upcast_attention (`bool`, *optional*, defaults to `False`): Compute attention scores in float32.
        position_embedding (`str`, *optional*, defaults to `"none"`):
            Position encoding added to the normalised states before each attention: `"none"`, `"sinusoidal"`
            (diffusers' `SinusoidalPositionalEmbedding`) or `"learned"` (a table of `max_positions` vectors).
        max_positions (`int`, *optional*, defaults to 32): Positions the encoding holds.
    """

    def __init__(
        self,
        dim: int,
        num_attention_heads: int,
        attention_head_dim: int,
        cross_attention_dim: int | None = None,
        upcast_attention: bool = False,
        position_embedding: str = "none",
        max_positions: int = 32,
    ):
        super().__init__()
        self.pos_embed = None
        if position_embedding == "sinusoidal":
            self.pos_embed = SinusoidalPositionalEmbedding(dim, max_seq_length=max_positions)
        elif position_embedding == "learned":
            self.pos_embed = VideoLatentLearnedFrameEmbedding(dim, max_positions)

        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = VideoLatentAttention(
            dim, heads=num_attention_heads, dim_head=attention_head_dim, upcast_attention=upcast_attention
        )
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = VideoLatentAttention(
            dim,
            heads=num_attention_heads,
            dim_head=attention_head_dim,
            cross_attention_dim=cross_attention_dim,
            upcast_attention=upcast_attention,
        )
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, activation_fn="geglu")

        self._chunk_size = None
        self._chunk_dim = 0

    def set_chunk_feed_forward(self, chunk_size: int | None, dim: int = 0) -> None:
        """Runs the feed-forward in chunks of `chunk_size` along `dim` (0: batch, 1: sequence); `None` runs it whole."""
        self._chunk_size = chunk_size
        self._chunk_dim = dim

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        cross_attention_kwargs = cross_attention_kwargs or {}

        # 1. self-attention
        norm_hidden_states = self.norm1(hidden_states)  # (N, L, D)
        if self.pos_embed is not None:
            norm_hidden_states = self.pos_embed(norm_hidden_states)
        hidden_states = self.attn1(norm_hidden_states, **cross_attention_kwargs) + hidden_states

        # 2. cross-attention to the text (self-attention when `encoder_hidden_states` is None)
        norm_hidden_states = self.norm2(hidden_states)
        if self.pos_embed is not None:
            norm_hidden_states = self.pos_embed(norm_hidden_states)
        hidden_states = (
            self.attn2(norm_hidden_states, encoder_hidden_states=encoder_hidden_states, **cross_attention_kwargs)
            + hidden_states
        )

        # 3. feed-forward
        norm_hidden_states = self.norm3(hidden_states)
        if self._chunk_size is not None:
            ff_output = _chunked_feed_forward(self.ff, norm_hidden_states, self._chunk_dim, self._chunk_size)
        else:
            ff_output = self.ff(norm_hidden_states)
        return ff_output + hidden_states  # (N, L, D)


class VideoLatentFreeNoiseTransformerBlock(VideoLatentTransformerBlock, FreeNoiseTransformerBlock):
    r"""
    A temporal [`VideoLatentTransformerBlock`] whose attentions see one window of frames at a time: diffusers'
    `FreeNoiseTransformerBlock` (its windows, weighting schemes and `forward`) on the layers of `block`, which it takes
    over under the same names, so the state dict is unchanged. A clip no longer than one window, or a `context_length`
    of `None` (windowing off), is attended to whole.

    Parameters:
        block ([`VideoLatentTransformerBlock`]): The block whose layers (and feed-forward chunking) are used.
        context_length (`int`, *optional*): Frames per window; `None` attends to all frames.
        context_stride (`int`, *optional*): Frames between the starts of two windows.
        weighting_scheme (`str`): How overlapping windows are blended: `"flat"`, `"pyramid"` or
            `"delayed_reverse_sawtooth"`.
    """

    def __init__(
        self,
        block: VideoLatentTransformerBlock,
        context_length: int | None,
        context_stride: int | None,
        weighting_scheme: str,
    ):
        # both parents' constructors would build new layers; this block runs on `block`'s
        nn.Module.__init__(self)
        self.pos_embed = block.pos_embed
        self.norm1, self.attn1 = block.norm1, block.attn1
        self.norm2, self.attn2 = block.norm2, block.attn2
        self.norm3, self.ff = block.norm3, block.ff
        self.set_chunk_feed_forward(block._chunk_size, block._chunk_dim)
        # the settings of diffusers' block that ours fixes: a self-attention first, then layer norms
        self.only_cross_attention = False
        self.norm_type = "layer_norm"
        self.set_free_noise_properties(context_length, context_stride, weighting_scheme)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        if self.context_length is None or hidden_states.shape[1] <= self.context_length:  # (N, F, D)
            return super().forward(hidden_states, encoder_hidden_states, cross_attention_kwargs)
        return FreeNoiseTransformerBlock.forward(
            self,
            hidden_states,
            encoder_hidden_states=encoder_hidden_states,
            cross_attention_kwargs=cross_attention_kwargs,
        )


class VideoLatentSpatialTransformer(nn.Module):
    r"""
    Attention over the pixels of each frame and cross-attention to the text, added back as a residual: diffusers'
    `Transformer2DModel` for continuous inputs, with the same parameter names, on [`VideoLatentTransformerBlock`]s.

    Parameters:
        in_channels (`int`): Channels of the input feature map.
        num_attention_heads (`int`): Number of attention heads.
        attention_head_dim (`int`): Channels per head; `num_attention_heads * attention_head_dim` is the inner width.
        num_layers (`int`, *optional*, defaults to 1): Number of transformer blocks.
        cross_attention_dim (`int`, *optional*): Width of the text embeddings.
        norm_num_groups (`int`, *optional*, defaults to 32): Groups of the input `GroupNorm`.
        use_linear_projection (`bool`, *optional*, defaults to `False`):
            Linear in/out projections instead of 1x1 convolutions.
        upcast_attention (`bool`, *optional*, defaults to `False`): Compute attention scores in float32.
    """

    def __init__(
        self,
        in_channels: int,
        num_attention_heads: int,
        attention_head_dim: int,
        num_layers: int = 1,
        cross_attention_dim: int | None = None,
        norm_num_groups: int = 32,
        use_linear_projection: bool = False,
        upcast_attention: bool = False,
    ):
        super().__init__()
        inner_dim = num_attention_heads * attention_head_dim
        self.use_linear_projection = use_linear_projection

        self.norm = nn.GroupNorm(num_groups=norm_num_groups, num_channels=in_channels, eps=1e-6, affine=True)
        if use_linear_projection:
            self.proj_in = nn.Linear(in_channels, inner_dim)
        else:
            self.proj_in = nn.Conv2d(in_channels, inner_dim, kernel_size=1)
        self.transformer_blocks = nn.ModuleList(
            [
                VideoLatentTransformerBlock(
                    inner_dim,
                    num_attention_heads,
                    attention_head_dim,
                    cross_attention_dim=cross_attention_dim,
                    upcast_attention=upcast_attention,
                )
                for _ in range(num_layers)
            ]
        )
        if use_linear_projection:
            self.proj_out = nn.Linear(inner_dim, in_channels)
        else:
            self.proj_out = nn.Conv2d(inner_dim, in_channels, kernel_size=1)

        self.gradient_checkpointing = False

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        cross_attention_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        batch_frames, _, height, width = hidden_states.shape  # (B*F, C, H, W)
        residual = hidden_states

        # 1. input: a sequence of pixels per frame
        hidden_states = self.norm(hidden_states)
        if not self.use_linear_projection:
            hidden_states = self.proj_in(hidden_states)
        hidden_states = hidden_states.permute(0, 2, 3, 1).reshape(batch_frames, height * width, -1)
        if self.use_linear_projection:
            hidden_states = self.proj_in(hidden_states)  # (B*F, H*W, D)

        # 2. blocks
        for block in self.transformer_blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                hidden_states = self._gradient_checkpointing_func(
                    block, hidden_states, encoder_hidden_states, cross_attention_kwargs
                )
            else:
                hidden_states = block(hidden_states, encoder_hidden_states, cross_attention_kwargs)

        # 3. output: back to a feature map
        if self.use_linear_projection:
            hidden_states = self.proj_out(hidden_states)
        hidden_states = hidden_states.reshape(batch_frames, height, width, -1).permute(0, 3, 1, 2).contiguous()
        if not self.use_linear_projection:
            hidden_states = self.proj_out(hidden_states)
        return hidden_states + residual  # (B*F, C, H, W)


class VideoLatentTemporalConvolution(nn.Module):
    r"""
    Four (GroupNorm, SiLU, convolution over 3 frames) stages added back as a residual: ModelScope's temporal
    convolution (diffusers' `TemporalConvLayer`, same parameter names). Frames are convolved as the height of a
    `(3, 1)` `Conv2d` over `(frames, height * width)`, which is the same maths as a `(3, 1, 1)` `Conv3d` but runs on
    the fast 2D convolution kernels; the conversion from `UNet3DConditionModel` only drops the trailing 1 of the kernel.

    Parameters:
        channels (`int`): Channels of the input feature map.
        dropout (`float`, *optional*, defaults to 0.0): Dropout before the last three convolutions.
        norm_num_groups (`int`, *optional*, defaults to 32): Groups of the `GroupNorm`s.
    """

    def __init__(self, channels: int, dropout: float = 0.0, norm_num_groups: int = 32):
        super().__init__()

        def stage(with_dropout: bool) -> nn.Sequential:
            layers = [nn.GroupNorm(norm_num_groups, channels), nn.SiLU()]
            layers += [nn.Dropout(dropout)] if with_dropout else []
            return nn.Sequential(*layers, nn.Conv2d(channels, channels, (3, 1), padding=(1, 0)))

        self.conv1 = stage(with_dropout=False)
        self.conv2 = stage(with_dropout=True)
        self.conv3 = stage(with_dropout=True)
        self.conv4 = stage(with_dropout=True)

    def forward(self, hidden_states: torch.Tensor, num_frames: int) -> torch.Tensor:
        batch_frames, channels, height, width = hidden_states.shape  # (B*F, C, H, W)
        hidden_states = hidden_states.reshape(batch_frames // num_frames, num_frames, channels, height * width)
        hidden_states = hidden_states.permute(0, 2, 1, 3)  # (B, C, F, H*W), a view: the first norm reads it as is
        identity = hidden_states
        hidden_states = self.conv1(hidden_states)
        hidden_states = self.conv2(hidden_states)
        hidden_states = self.conv3(hidden_states)
        hidden_states = self.conv4(hidden_states)
        hidden_states = identity + hidden_states
        hidden_states = hidden_states.permute(0, 2, 1, 3).reshape(batch_frames, channels, height, width)
        return hidden_states  # (B*F, C, H, W)


class VideoLatentTemporalTransformer(nn.Module):
    r"""
    Attention over frames at each spatial position, added back as a residual (the temporal transformer of ModelScope
    and the motion module of AnimateDiff share this layout).

    Parameters:
        in_channels (`int`): Channels of the input feature map.
        num_attention_heads (`int`): Number of attention heads.
        attention_head_dim (`int`): Channels per head; `num_attention_heads * attention_head_dim` is the inner width.
        num_layers (`int`, *optional*, defaults to 1): Number of [`VideoLatentTransformerBlock`]s.
        norm_num_groups (`int`, *optional*, defaults to 32): Groups of the input `GroupNorm`.
        position_embedding (`str`, *optional*, defaults to `"none"`):
            Frame positional encoding added before each attention: `"none"`, `"sinusoidal"` (AnimateDiff) or
            `"learned"` (a table of `max_frames` vectors per block).
        max_frames (`int`, *optional*, defaults to 32): Frames the positional table holds.
        upcast_attention (`bool`, *optional*, defaults to `False`): Compute attention scores in float32.
        cross_attention_dim (`int`, *optional*):
            Width of the text embeddings a cross-attention after each temporal self-attention attends to (as in
            VideoCrafter's temporal transformer with `only_self_att=False`); `None` means a second self-attention.
    """

    def __init__(
        self,
        in_channels: int,
        num_attention_heads: int,
        attention_head_dim: int,
        num_layers: int = 1,
        norm_num_groups: int = 32,
        position_embedding: str = "none",
        max_frames: int = 32,
        upcast_attention: bool = False,
        cross_attention_dim: int | None = None,
    ):
        super().__init__()
        inner_dim = num_attention_heads * attention_head_dim
        self.cross_attention_dim = cross_attention_dim

        self.norm = nn.GroupNorm(num_groups=norm_num_groups, num_channels=in_channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(in_channels, inner_dim)
        self.transformer_blocks = nn.ModuleList(
            [
                VideoLatentTransformerBlock(
                    inner_dim,
                    num_attention_heads,
                    attention_head_dim,
                    cross_attention_dim=cross_attention_dim,
                    upcast_attention=upcast_attention,
                    position_embedding=position_embedding,
                    max_positions=max_frames,
                )
                for _ in range(num_layers)
            ]
        )
        self.proj_out = nn.Linear(inner_dim, in_channels)

        self.gradient_checkpointing = False

    def forward(
        self,
        hidden_states: torch.Tensor,
        num_frames: int,
        encoder_hidden_states: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        batch_frames, channels, height, width = hidden_states.shape  # (B*F, C, H, W)
        batch_size = batch_frames // num_frames
        residual = hidden_states
        if self.cross_attention_dim is None:
            encoder_hidden_states = None
        elif encoder_hidden_states is None:
            raise ValueError("This temporal transformer cross-attends to text: pass `encoder_hidden_states`.")
        else:
            # (B*F, L, D), the same text for every frame of a video -> (B*H*W, L, D), one copy per spatial position
            encoder_hidden_states = encoder_hidden_states[::num_frames].repeat_interleave(height * width, dim=0)

        hidden_states = hidden_states.reshape(batch_size, num_frames, channels, height, width)
        hidden_states = self.norm(hidden_states.permute(0, 2, 1, 3, 4))  # (B, C, F, H, W)
        hidden_states = hidden_states.permute(0, 3, 4, 2, 1).reshape(batch_size * height * width, num_frames, channels)
        # inputs by name, so that diffusers' `SplitInferenceModule` can split them (free-noise split inference)
        hidden_states = self.proj_in(input=hidden_states)  # (B*H*W, F, D)

        for block in self.transformer_blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                hidden_states = self._gradient_checkpointing_func(
                    block, hidden_states, encoder_hidden_states, cross_attention_kwargs
                )
            else:
                hidden_states = block(
                    hidden_states=hidden_states,
                    encoder_hidden_states=encoder_hidden_states,
                    cross_attention_kwargs=cross_attention_kwargs,
                )

        hidden_states = self.proj_out(input=hidden_states)  # (B*H*W, F, C)
        hidden_states = hidden_states.reshape(batch_size, height, width, num_frames, channels)
        hidden_states = hidden_states.permute(0, 3, 4, 1, 2).reshape(batch_frames, channels, height, width)
        return hidden_states + residual  # (B*F, C, H, W)


# ---------------------------------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------------------------------


def _maybe_checkpointed(block: nn.Module, layer: nn.Module, **inputs) -> torch.Tensor:
    """Calls `layer(**inputs)`, through gradient checkpointing while `block` trains with it enabled. The inputs go by
    name (in `layer`'s order), so that diffusers' `SplitInferenceModule` can split them."""
    if torch.is_grad_enabled() and block.gradient_checkpointing:
        return block._gradient_checkpointing_func(layer, *inputs.values())
    return layer(**inputs)


class VideoLatentDownBlock(nn.Module):
    r"""
    One level of the down path: `num_layers` x (resnet, temporal convolution, spatial transformer, temporal
    transformer), then an optional 2x spatial downsample. A part switched off is `None`.

    Parameters:
        in_channels (`int`): Channels of the input feature map.
        out_channels (`int`): Channels of every layer of the level.
        temb_channels (`int`): Width of the timestep embedding the resnets receive.
        num_layers (`int`, *optional*, defaults to 1): Layers of the level.
        transformer_layers (`int`, *optional*, defaults to 1):
            Transformer blocks in each spatial transformer; 0 means no spatial transformers.
        temporal_transformer_layers (`int`, *optional*, defaults to 1):
            Transformer blocks in each temporal transformer; 0 means no temporal transformers.
        use_temporal_conv (`bool`, *optional*, defaults to `False`): Whether each resnet is followed by a temporal
            convolution.
        num_attention_heads (`int`, *optional*, defaults to 8): Heads of the spatial transformers.
        temporal_num_attention_heads (`int`, *optional*, defaults to 8): Heads of the temporal transformers.
        cross_attention_dim (`int`, *optional*, defaults to 1024): Width of the text embeddings.
        temporal_cross_attention (`bool`, *optional*, defaults to `False`):
            Whether the temporal transformers cross-attend to the text after their self-attention.
        temporal_position_embedding (`str`, *optional*, defaults to `"sinusoidal"`):
            Frame positional encoding of the temporal transformers: `"none"`, `"sinusoidal"` or `"learned"`.
        temporal_max_frames (`int`, *optional*, defaults to 32): Frames the positional tables hold.
        temporal_conv_dropout (`float`, *optional*, defaults to 0.0): Dropout inside the temporal convolutions.
        norm_num_groups (`int`, *optional*, defaults to 32): Groups of every `GroupNorm`.
        norm_eps (`float`, *optional*, defaults to 1e-5): Epsilon of the resnets' norms.
        act_fn (`str`, *optional*, defaults to `"silu"`): Activation of the resnets.
        use_linear_projection (`bool`, *optional*, defaults to `True`):
            Linear (instead of 1x1 conv) in/out projections of the spatial transformers.
        upcast_attention (`bool`, *optional*, defaults to `False`): Compute attention scores in float32.
        add_downsample (`bool`, *optional*, defaults to `True`): Whether the level ends with a 2x downsample.
        downsample_padding (`int`, *optional*, defaults to 1): Padding of the downsampling convolution.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        num_layers: int = 1,
        transformer_layers: int = 1,
        temporal_transformer_layers: int = 1,
        use_temporal_conv: bool = False,
        num_attention_heads: int = 8,
        temporal_num_attention_heads: int = 8,
        cross_attention_dim: int = 1024,
        temporal_cross_attention: bool = False,
        temporal_position_embedding: str = "sinusoidal",
        temporal_max_frames: int = 32,
        temporal_conv_dropout: float = 0.0,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        act_fn: str = "silu",
        use_linear_projection: bool = True,
        upcast_attention: bool = False,
        add_downsample: bool = True,
        downsample_padding: int = 1,
    ):
        super().__init__()
        self.resnets = nn.ModuleList(
            [
                ResnetBlock2D(
                    in_channels=in_channels if index == 0 else out_channels,
                    out_channels=out_channels,
                    temb_channels=temb_channels,
                    eps=norm_eps,
                    groups=norm_num_groups,
                    non_linearity=act_fn,
                )
                for index in range(num_layers)
            ]
        )
        self.temporal_convs = None
        if use_temporal_conv:
            self.temporal_convs = nn.ModuleList(
                [
                    VideoLatentTemporalConvolution(
                        out_channels, dropout=temporal_conv_dropout, norm_num_groups=norm_num_groups
                    )
                    for _ in range(num_layers)
                ]
            )
        self.attentions = None
        if transformer_layers > 0:
            self.attentions = nn.ModuleList(
                [
                    VideoLatentSpatialTransformer(
                        out_channels,
                        num_attention_heads,
                        out_channels // num_attention_heads,
                        num_layers=transformer_layers,
                        cross_attention_dim=cross_attention_dim,
                        norm_num_groups=norm_num_groups,
                        use_linear_projection=use_linear_projection,
                        upcast_attention=upcast_attention,
                    )
                    for _ in range(num_layers)
                ]
            )
        self.temporal_attentions = None
        if temporal_transformer_layers > 0:
            self.temporal_attentions = nn.ModuleList(
                [
                    VideoLatentTemporalTransformer(
                        out_channels,
                        temporal_num_attention_heads,
                        out_channels // temporal_num_attention_heads,
                        num_layers=temporal_transformer_layers,
                        norm_num_groups=norm_num_groups,
                        position_embedding=temporal_position_embedding,
                        max_frames=temporal_max_frames,
                        upcast_attention=upcast_attention,
                        cross_attention_dim=cross_attention_dim if temporal_cross_attention else None,
                    )
                    for _ in range(num_layers)
                ]
            )
        self.downsamplers = None
        if add_downsample:
            self.downsamplers = nn.ModuleList(
                [
                    Downsample2D(
                        out_channels, use_conv=True, out_channels=out_channels, padding=downsample_padding, name="op"
                    )
                ]
            )
        self.gradient_checkpointing = False

    def forward(
        self,
        hidden_states: torch.Tensor,
        temb: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        num_frames: int,
        cross_attention_kwargs: dict[str, Any] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        output_states = ()
        for index, resnet in enumerate(self.resnets):
            hidden_states = _maybe_checkpointed(self, resnet, input_tensor=hidden_states, temb=temb)  # (B*F, C, H, W)
            if self.temporal_convs is not None:
                hidden_states = _maybe_checkpointed(
                    self, self.temporal_convs[index], hidden_states=hidden_states, num_frames=num_frames
                )
            if self.attentions is not None:
                hidden_states = self.attentions[index](
                    hidden_states=hidden_states,
                    encoder_hidden_states=encoder_hidden_states,
                    cross_attention_kwargs=cross_attention_kwargs,
                )
            if self.temporal_attentions is not None:
                hidden_states = self.temporal_attentions[index](
                    hidden_states,
                    num_frames=num_frames,
                    encoder_hidden_states=encoder_hidden_states,
                    cross_attention_kwargs=cross_attention_kwargs,
                )
            output_states = output_states + (hidden_states,)

        if self.downsamplers is not None:
            for downsampler in self.downsamplers:
                hidden_states = downsampler(hidden_states=hidden_states)  # (B*F, C, H / 2, W / 2)
            output_states = output_states + (hidden_states,)
        return hidden_states, output_states


class VideoLatentMidBlock(nn.Module):
    r"""
    The bottleneck: a resnet (and temporal convolution), then `num_layers` x (spatial transformer, temporal
    transformer, resnet, temporal convolution). A part switched off is `None`.

    Parameters:
        channels (`int`): Channels of the feature map.
        output_scale_factor (`float`, *optional*, defaults to 1.0): Output scale of the resnets.
        Others: as [`VideoLatentDownBlock`].
    """

    def __init__(
        self,
        channels: int,
        temb_channels: int,
        num_layers: int = 1,
        transformer_layers: int = 1,
        temporal_transformer_layers: int = 1,
        use_temporal_conv: bool = False,
        num_attention_heads: int = 8,
        temporal_num_attention_heads: int = 8,
        cross_attention_dim: int = 1024,
        temporal_cross_attention: bool = False,
        temporal_position_embedding: str = "sinusoidal",
        temporal_max_frames: int = 32,
        temporal_conv_dropout: float = 0.0,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        act_fn: str = "silu",
        use_linear_projection: bool = True,
        upcast_attention: bool = False,
        output_scale_factor: float = 1.0,
    ):
        super().__init__()
        self.resnets = nn.ModuleList(
            [
                ResnetBlock2D(
                    in_channels=channels,
                    out_channels=channels,
                    temb_channels=temb_channels,
                    eps=norm_eps,
                    groups=norm_num_groups,
                    non_linearity=act_fn,
                    output_scale_factor=output_scale_factor,
                )
                for _ in range(num_layers + 1)
            ]
        )
        self.temporal_convs = None
        if use_temporal_conv:
            self.temporal_convs = nn.ModuleList(
                [
                    VideoLatentTemporalConvolution(
                        channels, dropout=temporal_conv_dropout, norm_num_groups=norm_num_groups
                    )
                    for _ in range(num_layers + 1)
                ]
            )
        self.attentions = None
        if transformer_layers > 0:
            self.attentions = nn.ModuleList(
                [
                    VideoLatentSpatialTransformer(
                        channels,
                        num_attention_heads,
                        channels // num_attention_heads,
                        num_layers=transformer_layers,
                        cross_attention_dim=cross_attention_dim,
                        norm_num_groups=norm_num_groups,
                        use_linear_projection=use_linear_projection,
                        upcast_attention=upcast_attention,
                    )
                    for _ in range(num_layers)
                ]
            )
        self.temporal_attentions = None
        if temporal_transformer_layers > 0:
            self.temporal_attentions = nn.ModuleList(
                [
                    VideoLatentTemporalTransformer(
                        channels,
                        temporal_num_attention_heads,
                        channels // temporal_num_attention_heads,
                        num_layers=temporal_transformer_layers,
                        norm_num_groups=norm_num_groups,
                        position_embedding=temporal_position_embedding,
                        max_frames=temporal_max_frames,
                        upcast_attention=upcast_attention,
                        cross_attention_dim=cross_attention_dim if temporal_cross_attention else None,
                    )
                    for _ in range(num_layers)
                ]
            )
        self.gradient_checkpointing = False

    def forward(
        self,
        hidden_states: torch.Tensor,
        temb: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        num_frames: int,
        cross_attention_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        hidden_states = _maybe_checkpointed(
            self, self.resnets[0], input_tensor=hidden_states, temb=temb
        )  # (B*F, C, H, W)
        if self.temporal_convs is not None:
            hidden_states = _maybe_checkpointed(
                self, self.temporal_convs[0], hidden_states=hidden_states, num_frames=num_frames
            )
        for index in range(1, len(self.resnets)):
            if self.attentions is not None:
                hidden_states = self.attentions[index - 1](
                    hidden_states=hidden_states,
                    encoder_hidden_states=encoder_hidden_states,
                    cross_attention_kwargs=cross_attention_kwargs,
                )
            if self.temporal_attentions is not None:
                hidden_states = self.temporal_attentions[index - 1](
                    hidden_states,
                    num_frames=num_frames,
                    encoder_hidden_states=encoder_hidden_states,
                    cross_attention_kwargs=cross_attention_kwargs,
                )
            hidden_states = _maybe_checkpointed(self, self.resnets[index], input_tensor=hidden_states, temb=temb)
            if self.temporal_convs is not None:
                hidden_states = _maybe_checkpointed(
                    self, self.temporal_convs[index], hidden_states=hidden_states, num_frames=num_frames
                )
        return hidden_states


class VideoLatentUpBlock(nn.Module):
    r"""
    One level of the up path: `num_layers` x (concatenated skip connection, resnet, temporal convolution, spatial
    transformer, temporal transformer), then an optional 2x spatial upsample. A part switched off is `None`.

    Parameters:
        in_channels (`int`): Channels of the skip connection of the level's last layer.
        prev_output_channels (`int`): Channels coming from the level below.
        out_channels (`int`): Channels of every layer of the level.
        add_upsample (`bool`, *optional*, defaults to `True`): Whether the level ends with a 2x upsample.
        resolution_idx (`int`, *optional*): Index of the level in the up path (FreeU scales levels 0 and 1).
        Others: as [`VideoLatentDownBlock`].
    """

    def __init__(
        self,
        in_channels: int,
        prev_output_channels: int,
        out_channels: int,
        temb_channels: int,
        num_layers: int = 1,
        transformer_layers: int = 1,
        temporal_transformer_layers: int = 1,
        use_temporal_conv: bool = False,
        num_attention_heads: int = 8,
        temporal_num_attention_heads: int = 8,
        cross_attention_dim: int = 1024,
        temporal_cross_attention: bool = False,
        temporal_position_embedding: str = "sinusoidal",
        temporal_max_frames: int = 32,
        temporal_conv_dropout: float = 0.0,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        act_fn: str = "silu",
        use_linear_projection: bool = True,
        upcast_attention: bool = False,
        add_upsample: bool = True,
        resolution_idx: int | None = None,
    ):
        super().__init__()
        self.resolution_idx = resolution_idx
        self.resnets = nn.ModuleList(
            [
                ResnetBlock2D(
                    # the previous layer's output (or the level below's) and this layer's skip connection
                    in_channels=(prev_output_channels if index == 0 else out_channels)
                    + (in_channels if index == num_layers - 1 else out_channels),
                    out_channels=out_channels,
                    temb_channels=temb_channels,
                    eps=norm_eps,
                    groups=norm_num_groups,
                    non_linearity=act_fn,
                )
                for index in range(num_layers)
            ]
        )
        self.temporal_convs = None
        if use_temporal_conv:
            self.temporal_convs = nn.ModuleList(
                [
                    VideoLatentTemporalConvolution(
                        out_channels, dropout=temporal_conv_dropout, norm_num_groups=norm_num_groups
                    )
                    for _ in range(num_layers)
                ]
            )
        self.attentions = None
        if transformer_layers > 0:
            self.attentions = nn.ModuleList(
                [
                    VideoLatentSpatialTransformer(
                        out_channels,
                        num_attention_heads,
                        out_channels // num_attention_heads,
                        num_layers=transformer_layers,
                        cross_attention_dim=cross_attention_dim,
                        norm_num_groups=norm_num_groups,
                        use_linear_projection=use_linear_projection,
                        upcast_attention=upcast_attention,
                    )
                    for _ in range(num_layers)
                ]
            )
        self.temporal_attentions = None
        if temporal_transformer_layers > 0:
            self.temporal_attentions = nn.ModuleList(
                [
                    VideoLatentTemporalTransformer(
                        out_channels,
                        temporal_num_attention_heads,
                        out_channels // temporal_num_attention_heads,
                        num_layers=temporal_transformer_layers,
                        norm_num_groups=norm_num_groups,
                        position_embedding=temporal_position_embedding,
                        max_frames=temporal_max_frames,
                        upcast_attention=upcast_attention,
                        cross_attention_dim=cross_attention_dim if temporal_cross_attention else None,
                    )
                    for _ in range(num_layers)
                ]
            )
        self.upsamplers = None
        if add_upsample:
            self.upsamplers = nn.ModuleList([Upsample2D(out_channels, use_conv=True, out_channels=out_channels)])
        self.gradient_checkpointing = False

    def forward(
        self,
        hidden_states: torch.Tensor,
        res_hidden_states_tuple: tuple[torch.Tensor, ...],
        temb: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        num_frames: int,
        cross_attention_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        # FreeU scales the backbone and filters the skip features of the two lowest-resolution levels
        freeu = {name: getattr(self, name, None) for name in ("s1", "s2", "b1", "b2")}
        is_freeu_enabled = all(freeu.values())
        for index, resnet in enumerate(self.resnets):
            res_hidden_states = res_hidden_states_tuple[-1 - index]
            if is_freeu_enabled:
                hidden_states, res_hidden_states = apply_freeu(
                    self.resolution_idx, hidden_states, res_hidden_states, **freeu
                )
            hidden_states = torch.cat([hidden_states, res_hidden_states], dim=1)  # (B*F, C + C_skip, H, W)
            hidden_states = _maybe_checkpointed(self, resnet, input_tensor=hidden_states, temb=temb)  # (B*F, C, H, W)
            if self.temporal_convs is not None:
                hidden_states = _maybe_checkpointed(
                    self, self.temporal_convs[index], hidden_states=hidden_states, num_frames=num_frames
                )
            if self.attentions is not None:
                hidden_states = self.attentions[index](
                    hidden_states=hidden_states,
                    encoder_hidden_states=encoder_hidden_states,
                    cross_attention_kwargs=cross_attention_kwargs,
                )
            if self.temporal_attentions is not None:
                hidden_states = self.temporal_attentions[index](
                    hidden_states,
                    num_frames=num_frames,
                    encoder_hidden_states=encoder_hidden_states,
                    cross_attention_kwargs=cross_attention_kwargs,
                )

        if self.upsamplers is not None:
            for upsampler in self.upsamplers:
                hidden_states = upsampler(hidden_states=hidden_states)  # (B*F, C, 2 H, 2 W)
        return hidden_states


# ---------------------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------------------


def _with_attention_identifiers(config):
    """A copy of a cache `config` whose block identifiers left at diffusers' defaults name this model's attention."""
    defaults = type(config)()
    changes = {}
    if isinstance(config, (PyramidAttentionBroadcastConfig, FasterCacheConfig)):
        for field, identifiers in (
            ("spatial_attention_block_identifiers", SPATIAL_ATTENTION_IDENTIFIERS),
            ("temporal_attention_block_identifiers", TEMPORAL_ATTENTION_IDENTIFIERS),
            ("cross_attention_block_identifiers", ATTENTION_IDENTIFIERS),
        ):
            if hasattr(config, field) and tuple(getattr(config, field)) == tuple(getattr(defaults, field)):
                changes[field] = identifiers
    if isinstance(config, FasterCacheConfig):
        field = "_unconditional_conditional_input_kwargs_identifiers"
        if tuple(getattr(config, field)) == tuple(getattr(defaults, field)):
            changes[field] = GUIDANCE_BATCH_INPUTS
    if isinstance(config, TaylorSeerCacheConfig) and config.cache_identifiers is None:
        if config.skip_predict_identifiers is None:
            changes["cache_identifiers"] = list(ATTENTION_IDENTIFIERS)
    return dataclasses.replace(config, **changes) if changes else config


class UNetSpatioTemporalModel(
    ModelCardHubMixin, ModelMixin, AttentionMixin, CacheMixin, ConfigMixin, PeftAdapterMixin
):
    r"""
    A spatio-temporal U-Net that denoises video latents `[B, C, F, H, W]` conditioned on a timestep and on text given
    once per video.

    Per-level arguments accept an `int`/`bool` (same for every level) or a tuple with one entry per level, in down-path
    order; the up path mirrors them (with one more layer per level, as in diffusers' U-Nets).

    Parameters:
        sample_size (`int` or `tuple[int, int]`, *optional*, defaults to `None`):
            The default latent height and width (one int for both, or `(height, width)`): when a call gives no
            `height`/`width` (and its `generation_defaults` set none), [`VideoLatentPipeline`] generates
            `sample_size * vae_scale_factor_spatial` pixels; `None` leaves the pipeline's fallback. `forward` takes
            any multiple of `downsample_factor`.
        in_channels (`int`, *optional*, defaults to 4): Channels of the noisy latent `sample`.
        out_channels (`int`, *optional*, defaults to 4): Channels of the prediction.
        conditioning_channels (`int`, *optional*, defaults to 0):
            Channels of `conditioning_latents` concatenated to `sample` (image-to-video); 0 turns them off.
        block_out_channels (`tuple[int]`, *optional*, defaults to `(320, 640, 1280, 1280)`): Channels per level.
        layers_per_block (`int` or `tuple[int]`, *optional*, defaults to 2): Spatial resnet layers per down level.
        transformer_layers_per_block (`int` or `tuple[int]`, *optional*, defaults to `(1, 1, 1, 0)`):
            Blocks in the spatial transformer after each layer; 0 means no spatial transformer at that level.
        temporal_transformer_layers_per_block (`int` or `tuple[int]`, *optional*, defaults to 1):
            Blocks in the temporal transformer after each layer; 0 means none at that level.
        temporal_conv_per_block (`bool` or `tuple[bool]`, *optional*, defaults to `False`):
            Whether each layer has a temporal convolution over frames after its resnet.
        num_attention_heads (`int` or `tuple[int]`, *optional*, defaults to 8): Heads of the spatial transformers.
        temporal_num_attention_heads (`int` or `tuple[int]`, *optional*, defaults to 8):
            Heads of the temporal transformers.
        mid_block_layers (`int`, *optional*, defaults to 1): (attention, resnet) pairs after the mid block's resnet.
        mid_transformer_layers (`int`, *optional*, defaults to 1): Spatial transformer blocks in the mid block.
        mid_temporal_transformer_layers (`int`, *optional*, defaults to 1):
            Temporal transformer blocks in the mid block; 0 means none.
        mid_temporal_conv (`bool`, *optional*, defaults to `False`): Temporal convolutions in the mid block.
        input_temporal_transformer_layers (`int`, *optional*, defaults to 0):
            Blocks of a temporal transformer right after `conv_in` (ModelScope's `transformer_in`); 0 means none.
        input_temporal_num_attention_heads (`int`, *optional*, defaults to 8): Heads of that input transformer.
        input_temporal_attention_head_dim (`int`, *optional*, defaults to `None`):
            Channels per head of that input transformer; `None` means `block_out_channels[0] // heads`.
        temporal_position_embedding (`str`, *optional*, defaults to `"sinusoidal"`):
            Frame positional encoding of the temporal transformers: `"none"`, `"sinusoidal"` or `"learned"`.
        temporal_max_frames (`int`, *optional*, defaults to 32): Frames the positional tables hold.
        temporal_conv_dropout (`float`, *optional*, defaults to 0.1): Dropout inside the temporal convolutions.
        temporal_cross_attention (`bool`, *optional*, defaults to `False`):
            Whether the temporal transformers of the levels and the mid block also cross-attend to the text, after
            their self-attention over frames (so the text can shape motion directly; VideoCrafter's temporal
            transformer offers the same). `False` gives a second self-attention instead, as in ModelScope.
        cross_attention_dim (`int`, *optional*, defaults to 1024): Width of `encoder_hidden_states`.
        use_linear_projection (`bool`, *optional*, defaults to `True`):
            Linear (instead of 1x1 conv) in/out projections of the spatial transformers.
        upcast_attention (`bool`, *optional*, defaults to `False`): Compute attention scores in float32.
        flip_sin_to_cos (`bool`, *optional*, defaults to `True`): Cosine first in the sinusoidal timestep embedding.
        freq_shift (`int`, *optional*, defaults to 0): Frequency shift of the sinusoidal timestep embedding.
        act_fn (`str`, *optional*, defaults to `"silu"`): Activation of the resnets and time embedding.
        norm_num_groups (`int`, *optional*, defaults to 32): Groups of every `GroupNorm`.
        norm_eps (`float`, *optional*, defaults to 1e-5): Epsilon of the resnet and output norms.
        downsample_padding (`int`, *optional*, defaults to 1): Padding of the downsampling convolutions.
        mid_block_scale_factor (`float`, *optional*, defaults to 1.0): Output scale of the mid block's resnets.
        use_fps_conditioning (`bool`, *optional*, defaults to `False`):
            Embed `fps` like a timestep and add it to the timestep embedding (zero-initialised, so it starts inert).
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = [
        "VideoLatentTransformerBlock",
        "ResnetBlock2D",
        "VideoLatentTemporalConvolution",
        "VideoLatentTemporalTransformer",
        "VideoLatentUpBlock",
    ]
    _skip_layerwise_casting_patterns = ["norm", "time_embedding", "fps_embedding", "pos_embed"]
    _repeated_blocks = ["VideoLatentDownBlock", "VideoLatentMidBlock", "VideoLatentUpBlock"]

    @register_to_config
    def __init__(
        self,
        sample_size: int | tuple[int, int] | None = None,
        in_channels: int = 4,
        out_channels: int = 4,
        conditioning_channels: int = 0,
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int | tuple[int, ...] = 2,
        transformer_layers_per_block: int | tuple[int, ...] = (1, 1, 1, 0),
        temporal_transformer_layers_per_block: int | tuple[int, ...] = 1,
        temporal_conv_per_block: bool | tuple[bool, ...] = False,
        num_attention_heads: int | tuple[int, ...] = 8,
        temporal_num_attention_heads: int | tuple[int, ...] = 8,
        mid_block_layers: int = 1,
        mid_transformer_layers: int = 1,
        mid_temporal_transformer_layers: int = 1,
        mid_temporal_conv: bool = False,
        input_temporal_transformer_layers: int = 0,
        input_temporal_num_attention_heads: int = 8,
        input_temporal_attention_head_dim: int | None = None,
        temporal_position_embedding: str = "sinusoidal",
        temporal_max_frames: int = 32,
        temporal_conv_dropout: float = 0.1,
        temporal_cross_attention: bool = False,
        cross_attention_dim: int = 1024,
        use_linear_projection: bool = True,
        upcast_attention: bool = False,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        act_fn: str = "silu",
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        downsample_padding: int = 1,
        mid_block_scale_factor: float = 1.0,
        use_fps_conditioning: bool = False,
    ):
        super().__init__()
        # a config.json value no model can be built from is refused naming its key, not deep inside a layer
        check_config_integers(
            {
                "in_channels": in_channels,
                "out_channels": out_channels,
                "block_out_channels": block_out_channels,
                "num_attention_heads": num_attention_heads,
                "temporal_num_attention_heads": temporal_num_attention_heads,
                "input_temporal_num_attention_heads": input_temporal_num_attention_heads,
                "temporal_max_frames": temporal_max_frames,
                "cross_attention_dim": cross_attention_dim,
                "norm_num_groups": norm_num_groups,
            },
            minimum=1,
        )
        check_config_integers(
            {
                "conditioning_channels": conditioning_channels,
                "layers_per_block": layers_per_block,
                "transformer_layers_per_block": transformer_layers_per_block,
                "temporal_transformer_layers_per_block": temporal_transformer_layers_per_block,
                "mid_block_layers": mid_block_layers,
                "mid_transformer_layers": mid_transformer_layers,
                "mid_temporal_transformer_layers": mid_temporal_transformer_layers,
                "input_temporal_transformer_layers": input_temporal_transformer_layers,
            },
            minimum=0,
        )
        check_config_choice("act_fn", act_fn, ACT2CLS)
        check_config_number("temporal_conv_dropout", temporal_conv_dropout, 0.0, 1.0)
        check_config_number("norm_eps", norm_eps, 0.0, open_minimum=True)

        num_levels = len(block_out_channels)
        layers_per_block = per_level(layers_per_block, "layers_per_block", num_levels)
        transformer_layers = per_level(transformer_layers_per_block, "transformer_layers_per_block", num_levels)
        temporal_layers = per_level(
            temporal_transformer_layers_per_block, "temporal_transformer_layers_per_block", num_levels
        )
        temporal_convs = per_level(temporal_conv_per_block, "temporal_conv_per_block", num_levels)
        heads = per_level(num_attention_heads, "num_attention_heads", num_levels)
        temporal_heads = per_level(temporal_num_attention_heads, "temporal_num_attention_heads", num_levels)
        if temporal_position_embedding not in TEMPORAL_POSITION_EMBEDDINGS:
            raise ValueError(
                f"`temporal_position_embedding` must be one of {TEMPORAL_POSITION_EMBEDDINGS}, "
                f"got {temporal_position_embedding!r}."
            )
        for level, channels in enumerate(block_out_channels):
            if channels % heads[level] or channels % temporal_heads[level]:
                raise ValueError(
                    f"`block_out_channels[{level}]` ({channels}) must be divisible by `num_attention_heads[{level}]` "
                    f"({heads[level]}) and `temporal_num_attention_heads[{level}]` ({temporal_heads[level]})."
                )

        # derived from the config once, for the `downsample_factor` and `max_num_frames` properties `forward` reads
        self._downsample_factor = unet_downsample_factor(self.config)
        self._max_num_frames = unet_max_latent_frames(self.config)
        self._free_noise_context_length = None

        time_embed_dim = block_out_channels[0] * 4
        # time (and frame rate)
        self.time_proj = Timesteps(block_out_channels[0], flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(block_out_channels[0], time_embed_dim, act_fn=act_fn)
        self.fps_proj = None
        self.fps_embedding = None
        if use_fps_conditioning:
            self.fps_proj = Timesteps(block_out_channels[0], flip_sin_to_cos, freq_shift)
            self.fps_embedding = TimestepEmbedding(block_out_channels[0], time_embed_dim, act_fn=act_fn)

        # input
        self.conv_in = nn.Conv2d(in_channels + conditioning_channels, block_out_channels[0], kernel_size=3, padding=1)
        self.transformer_in = None
        if input_temporal_transformer_layers > 0:
            head_dim = input_temporal_attention_head_dim or block_out_channels[0] // input_temporal_num_attention_heads
            self.transformer_in = VideoLatentTemporalTransformer(
                block_out_channels[0],
                input_temporal_num_attention_heads,
                head_dim,
                num_layers=input_temporal_transformer_layers,
                norm_num_groups=norm_num_groups,
                position_embedding=temporal_position_embedding,
                max_frames=temporal_max_frames,
                upcast_attention=upcast_attention,
            )

        # down
        self.down_blocks = nn.ModuleList([])
        output_channels = block_out_channels[0]
        for level in range(num_levels):
            input_channels = output_channels
            output_channels = block_out_channels[level]
            self.down_blocks.append(
                VideoLatentDownBlock(
                    input_channels,
                    output_channels,
                    time_embed_dim,
                    num_layers=layers_per_block[level],
                    transformer_layers=transformer_layers[level],
                    temporal_transformer_layers=temporal_layers[level],
                    use_temporal_conv=temporal_convs[level],
                    num_attention_heads=heads[level],
                    temporal_num_attention_heads=temporal_heads[level],
                    cross_attention_dim=cross_attention_dim,
                    temporal_cross_attention=temporal_cross_attention,
                    temporal_position_embedding=temporal_position_embedding,
                    temporal_max_frames=temporal_max_frames,
                    temporal_conv_dropout=temporal_conv_dropout,
                    norm_num_groups=norm_num_groups,
                    norm_eps=norm_eps,
                    act_fn=act_fn,
                    use_linear_projection=use_linear_projection,
                    upcast_attention=upcast_attention,
                    add_downsample=level < num_levels - 1,
                    downsample_padding=downsample_padding,
                )
            )

        # mid
        self.mid_block = VideoLatentMidBlock(
            block_out_channels[-1],
            time_embed_dim,
            num_layers=mid_block_layers,
            transformer_layers=mid_transformer_layers,
            temporal_transformer_layers=mid_temporal_transformer_layers,
            use_temporal_conv=mid_temporal_conv,
            num_attention_heads=heads[-1],
            temporal_num_attention_heads=temporal_heads[-1],
            cross_attention_dim=cross_attention_dim,
            temporal_cross_attention=temporal_cross_attention,
            temporal_position_embedding=temporal_position_embedding,
            temporal_max_frames=temporal_max_frames,
            temporal_conv_dropout=temporal_conv_dropout,
            norm_num_groups=norm_num_groups,
            norm_eps=norm_eps,
            act_fn=act_fn,
            use_linear_projection=use_linear_projection,
            upcast_attention=upcast_attention,
            output_scale_factor=mid_block_scale_factor,
        )

        # up
        self.up_blocks = nn.ModuleList([])
        output_channels = block_out_channels[-1]
        for up_level in range(num_levels):
            level = num_levels - 1 - up_level
            prev_output_channels = output_channels
            output_channels = block_out_channels[level]
            skip_channels = block_out_channels[max(level - 1, 0)]
            self.up_blocks.append(
                VideoLatentUpBlock(
                    skip_channels,
                    prev_output_channels,
                    output_channels,
                    time_embed_dim,
                    num_layers=layers_per_block[level] + 1,
                    transformer_layers=transformer_layers[level],
                    temporal_transformer_layers=temporal_layers[level],
                    use_temporal_conv=temporal_convs[level],
                    num_attention_heads=heads[level],
                    temporal_num_attention_heads=temporal_heads[level],
                    cross_attention_dim=cross_attention_dim,
                    temporal_cross_attention=temporal_cross_attention,
                    temporal_position_embedding=temporal_position_embedding,
                    temporal_max_frames=temporal_max_frames,
                    temporal_conv_dropout=temporal_conv_dropout,
                    norm_num_groups=norm_num_groups,
                    norm_eps=norm_eps,
                    act_fn=act_fn,
                    use_linear_projection=use_linear_projection,
                    upcast_attention=upcast_attention,
                    add_upsample=level > 0,
                    resolution_idx=up_level,
                )
            )

        # out
        self.conv_norm_out = nn.GroupNorm(num_channels=block_out_channels[0], num_groups=norm_num_groups, eps=norm_eps)
        self.conv_act = get_activation(act_fn)
        self.conv_out = nn.Conv2d(block_out_channels[0], out_channels, kernel_size=3, padding=1)

        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Zero-initialises the output projection of every temporal layer (and the fps embedding), so a freshly built
        temporal path is the identity and the model acts as its spatial U-Net frame by frame."""
        for module in self.modules():
            if isinstance(module, VideoLatentTemporalTransformer):
                nn.init.zeros_(module.proj_out.weight)
                nn.init.zeros_(module.proj_out.bias)
            elif isinstance(module, VideoLatentTemporalConvolution):
                nn.init.zeros_(module.conv4[-1].weight)
                nn.init.zeros_(module.conv4[-1].bias)
            elif isinstance(module, VideoLatentLearnedFrameEmbedding):
                nn.init.normal_(module.embedding, std=0.02)
        if self.fps_embedding is not None:
            nn.init.zeros_(self.fps_embedding.linear_2.weight)
            nn.init.zeros_(self.fps_embedding.linear_2.bias)

    @property
    def downsample_factor(self) -> int:
        """Total spatial downsampling of the U-Net: `H` and `W` of `sample` must be multiples of it."""
        return self._downsample_factor

    @property
    def max_num_frames(self) -> int | None:
        """The most frames `sample` may have (`temporal_max_frames` with a frame-position table), `None` for any (also
        while [`~UNetSpatioTemporalModel.enable_free_noise`] windows the temporal attentions)."""
        return self._max_num_frames if self._free_noise_context_length is None else None

    # ----------------------------------------------------------------------------------------------------------------
    # Attention helpers (`attn_processors`, `set_attn_processor`, `fuse_qkv_projections` and
    # `unfuse_qkv_projections` are diffusers' `AttentionMixin`; `set_attention_backend` is `ModelMixin`'s)
    # ----------------------------------------------------------------------------------------------------------------

    def set_default_attn_processor(self) -> None:
        """Sets the default processor, [`VideoLatentAttnProcessor`] (diffusers' attention dispatcher), on every
        attention layer, replacing any custom or sliced one."""
        self.set_attn_processor(VideoLatentAttnProcessor())

    def set_attention_slice(self, slice_size: str | int | list[int | None] | None) -> None:
        r"""
        Computes attention in slices to save memory, as diffusers' U-Nets do: every attention layer gets diffusers'
        `SlicedAttnProcessor`, which computes `slice_size` (batch * head) entries of the scores at a time.

        Args:
            slice_size (`str`, `int` or `list[int]`):
                `"auto"` halves each layer's heads, so attention takes two steps; `"max"` computes one entry at a time
                (the least memory); an int slices every layer by that many entries, at most its number of heads; a
                list gives one per attention layer, in the order of `attn_processors`; `None` turns slicing off.
        """
        layers = [module for module in self.modules() if isinstance(module, VideoLatentAttention)]
        head_dims = [layer.sliceable_head_dim for layer in layers]
        if slice_size == "auto":
            # a one-head layer cannot be halved: it keeps one entry per slice
            slice_sizes = [max(dim // 2, 1) for dim in head_dims]
        elif slice_size == "max":
            slice_sizes = [1] * len(layers)
        elif isinstance(slice_size, list):
            slice_sizes = slice_size
        else:
            slice_sizes = [slice_size] * len(layers)
        if len(slice_sizes) != len(layers):
            raise ValueError(
                f"`slice_size` holds {len(slice_sizes)} sizes, but this model has {len(layers)} attention layers: "
                "give one per layer."
            )
        # every size is checked before any layer changes, so a bad one leaves the model as it was
        for size, dim in zip(slice_sizes, head_dims):
            if size is not None and size > dim:
                raise ValueError(f"`slice_size` {size} has to be smaller or equal to {dim}.")
        for layer, size in zip(layers, slice_sizes):
            layer.set_attention_slice(size)

    def enable_freeu(self, s1: float, s2: float, b1: float, b2: float) -> None:
        r"""
        Enables [FreeU](https://huggingface.co/papers/2309.11497) as diffusers' U-Nets do: in the two lowest-resolution
        up levels, half of the backbone channels are scaled by `b1`/`b2` and the low frequencies of the skip features
        by `s1`/`s2` (see [`~diffusers.utils.torch_utils.apply_freeu`]).

        Args:
            s1 (`float`): Skip-feature scale of the lowest-resolution up level.
            s2 (`float`): Skip-feature scale of the next up level.
            b1 (`float`): Backbone scale of the lowest-resolution up level.
            b2 (`float`): Backbone scale of the next up level.
        """
        factors = {"s1": s1, "s2": s2, "b1": b1, "b2": b2}
        for name, value in factors.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"`{name}` must be a positive number (0 would switch FreeU off), got {value!r}.")
        for up_block in self.up_blocks:
            for name, value in factors.items():
                setattr(up_block, name, float(value))

    def disable_freeu(self) -> None:
        """Disables FreeU: the up levels compute exactly what they computed before [`enable_freeu`]."""
        for up_block in self.up_blocks:
            for name in ("s1", "s2", "b1", "b2"):
                setattr(up_block, name, None)

    def enable_forward_chunking(self, chunk_size: int | None = None, dim: int = 0) -> None:
        """Runs every transformer feed-forward in chunks of `chunk_size` along `dim` (0: batch, 1: sequence)."""
        if dim not in (0, 1):
            raise ValueError(f"`dim` must be 0 or 1, got {dim}.")
        for module in self.modules():
            if isinstance(module, VideoLatentTransformerBlock):
                module.set_chunk_feed_forward(chunk_size=chunk_size or 1, dim=dim)

    def disable_forward_chunking(self) -> None:
        """Runs every transformer feed-forward in one piece again."""
        for module in self.modules():
            if isinstance(module, VideoLatentTransformerBlock):
                module.set_chunk_feed_forward(chunk_size=None, dim=0)

    # ----------------------------------------------------------------------------------------------------------------
    # Any length: FreeNoise windows in the temporal layers (driven by the pipeline's `enable_free_noise`)
    # ----------------------------------------------------------------------------------------------------------------

    def _temporal_transformers(self) -> list[VideoLatentTemporalTransformer]:
        return [module for module in self.modules() if isinstance(module, VideoLatentTemporalTransformer)]

    @property
    def free_noise_context_length(self) -> int | None:
        """Latent frames per window of the temporal attentions, `None` while each attends to all frames."""
        return self._free_noise_context_length

    def enable_free_noise(self, context_length: int, context_stride: int, weighting_scheme: str = "pyramid") -> None:
        r"""
        Makes every temporal attention attend to windows of `context_length` latent frames, `context_stride` apart,
        and blend the overlaps with `weighting_scheme` ([FreeNoise](https://huggingface.co/papers/2310.15169), as
        diffusers' `FreeNoiseTransformerBlock` does in AnimateDiff's motion modules). The temporal convolutions see
        three frames anyway. The model then takes any number of frames, its frame-position table only has to hold
        one window; `forward` is still one call.

        Args:
            context_length (`int`): Latent frames per window, at most `temporal_max_frames` with a frame table.
            context_stride (`int`): Latent frames between the starts of two windows, in [1, `context_length`].
            weighting_scheme (`str`, *optional*, defaults to `"pyramid"`):
                `"flat"`, `"pyramid"` or `"delayed_reverse_sawtooth"` (see diffusers' `enable_free_noise`).
        """
        if not is_integer(context_length) or context_length < 1:
            raise ValueError(f"`context_length` must be an integer >= 1, got {context_length!r}.")
        table = unet_max_latent_frames(self.config)
        if table is not None and context_length > table:
            raise ValueError(
                f"`context_length` is {context_length}, but the U-Net's {self.config.temporal_position_embedding}"
                f" frame-position table holds {table} latent frames (`temporal_max_frames`): use at most {table}."
            )
        if not is_integer(context_stride) or not 1 <= context_stride <= context_length:
            raise ValueError(
                f"`context_stride` must be an integer in [1, `context_length`={context_length}], got"
                f" {context_stride!r}."
            )
        if weighting_scheme not in FREE_NOISE_WEIGHTING_SCHEMES:
            raise ValueError(
                f"`weighting_scheme` must be one of {list(FREE_NOISE_WEIGHTING_SCHEMES)}, got {weighting_scheme!r}."
            )
        for transformer in self._temporal_transformers():
            for index, block in enumerate(transformer.transformer_blocks):
                # under split inference the block is wrapped in a `SplitInferenceModule`
                holder, name = (block, "module") if isinstance(block, SplitInferenceModule) else (None, index)
                block = block.module if holder is not None else block
                if isinstance(block, VideoLatentFreeNoiseTransformerBlock):
                    block.set_free_noise_properties(context_length, context_stride, weighting_scheme)
                    continue
                windowed = VideoLatentFreeNoiseTransformerBlock(
                    block, context_length, context_stride, weighting_scheme
                )
                if holder is not None:
                    holder.module = windowed
                else:
                    transformer.transformer_blocks[index] = windowed
        self._free_noise_context_length = context_length

    def disable_free_noise(self) -> None:
        """Makes every temporal attention attend to all frames again (undoes `enable_free_noise`)."""
        for module in self.modules():
            if isinstance(module, VideoLatentFreeNoiseTransformerBlock):
                module.set_free_noise_properties(None, None, module.weighting_scheme)
        self._free_noise_context_length = None

    def enable_free_noise_split_inference(self, spatial_split_size: int = 256, temporal_split_size: int = 16) -> None:
        r"""
        Runs the layers in slices of their batch, as diffusers' `enable_free_noise_split_inference` does for
        AnimateDiff, so that their intermediate activations are bounded by the slice rather than the clip: the
        temporal transformers' projections and blocks in slices of `spatial_split_size` pixel positions (`B * H * W`
        sequences of frames), the spatial transformers, resnets and resamplers in slices of `temporal_split_size`
        frames (`B * F` images). The temporal convolutions and the temporal transformers' group norm see the whole clip
        (their statistics span it). Layers are wrapped in diffusers' `SplitInferenceModule`, which puts `.module` in
        their state-dict keys until [`~UNetSpatioTemporalModel.disable_free_noise_split_inference`].

        Args:
            spatial_split_size (`int`, *optional*, defaults to 256): Pixel positions per slice of the temporal layers.
            temporal_split_size (`int`, *optional*, defaults to 16): Frames per slice of the spatial layers.
        """
        for name, size in (("spatial_split_size", spatial_split_size), ("temporal_split_size", temporal_split_size)):
            if not is_integer(size) or size < 1:
                raise ValueError(f"`{name}` must be an integer >= 1, got {size!r}.")
        self.disable_free_noise_split_inference()
        for transformer in self._temporal_transformers():
            transformer.proj_in = SplitInferenceModule(transformer.proj_in, spatial_split_size, 0, ["input"])
            for index, block in enumerate(transformer.transformer_blocks):
                transformer.transformer_blocks[index] = SplitInferenceModule(
                    block, spatial_split_size, 0, ["hidden_states", "encoder_hidden_states"]
                )
            transformer.proj_out = SplitInferenceModule(transformer.proj_out, spatial_split_size, 0, ["input"])
        split_inputs = {
            "attentions": ["hidden_states", "encoder_hidden_states"],
            "resnets": ["input_tensor", "temb"],
            "downsamplers": ["hidden_states"],
            "upsamplers": ["hidden_states"],
        }
        for block in [*self.down_blocks, self.mid_block, *self.up_blocks]:
            for name, inputs in split_inputs.items():
                layers = getattr(block, name, None) or []
                for index, layer in enumerate(layers):
                    layers[index] = SplitInferenceModule(layer, temporal_split_size, 0, inputs)

    def disable_free_noise_split_inference(self) -> None:
        """Runs every layer on its whole batch again (undoes `enable_free_noise_split_inference`)."""
        for module in list(self.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, SplitInferenceModule):
                    setattr(module, name, child.module)

    # ----------------------------------------------------------------------------------------------------------------
    # Caching (diffusers' `CacheMixin`)
    # ----------------------------------------------------------------------------------------------------------------

    def enable_cache(self, config) -> None:
        r"""
        Enables [DeepCache](https://huggingface.co/papers/2312.00858) ([`DeepCacheConfig`], built for U-Nets: cheap
        steps reuse the deep features of the last full step) or one of diffusers' caching techniques, as
        [`~diffusers.models.cache_utils.CacheMixin.enable_cache`] does, on the attention layers of this U-Net. Wrap
        each call in `cache_context(name)` (the pipeline does).

        Block identifiers left at diffusers' defaults (which name a transformer's top-level `transformer_blocks`) are
        replaced by this model's attention names (`SPATIAL_ATTENTION_IDENTIFIERS`, `TEMPORAL_ATTENTION_IDENTIFIERS`),
        so that spatial, temporal and cross-attention layers are told apart; identifiers you set are kept.

        Args:
            config (`DeepCacheConfig`, `PyramidAttentionBroadcastConfig`, `FasterCacheConfig` or `TaylorSeerCacheConfig`):
                The cache to apply. FasterCache reads the guidance batch from the `forward` inputs named in
                `GUIDANCE_BATCH_INPUTS` and needs `return_dict=False`, as the pipeline calls the U-Net.
        """
        if isinstance(config, DeepCacheConfig):
            if self.is_cache_enabled:
                raise ValueError(
                    f"Caching has already been enabled with {type(self._cache_config).__name__}; call "
                    "`disable_cache()` first."
                )
            apply_deep_cache(self, config)
            self._cache_config = config
            return
        if isinstance(config, (FirstBlockCacheConfig, MagCacheConfig)):
            raise ValueError(
                f"`config` {type(config).__name__} skips every block after the first of a chain of transformer "
                "blocks that keep the shape of `hidden_states`; a U-Net changes resolution from level to level and "
                "feeds skip connections to its up levels, so it has no such chain. Use "
                "`PyramidAttentionBroadcastConfig`, `FasterCacheConfig` or `TaylorSeerCacheConfig`."
            )
        if isinstance(config, TaylorSeerCacheConfig) and config.use_lite_mode:
            raise ValueError(
                "`config.use_lite_mode`=True predicts a top-level `proj_out` and zeroes top-level blocks, which this "
                "U-Net does not have; pass `use_lite_mode=False` (the attention layers are then cached)."
            )
        config = _with_attention_identifiers(config)
        super().enable_cache(config)
        if isinstance(config, FasterCacheConfig):
            # diffusers picks FasterCache's attention layers by top-level names first, which never match here
            for name, module in self.named_modules():
                if isinstance(module, VideoLatentAttention):
                    _apply_faster_cache_on_attention_class(name, module, config)
            registry = HookRegistry.check_if_exists_or_initialize(self)
            # diffusers >= 0.40 caches the child registries a hook walks; older releases look them up on every call
            if hasattr(registry, "invalidate_child_registries_cache"):
                registry.invalidate_child_registries_cache()

    def disable_cache(self) -> None:
        """Disables the cache [`enable_cache`] applied: every call computes the whole U-Net again."""
        if not isinstance(self._cache_config, DeepCacheConfig):
            super().disable_cache()
            return
        remove_deep_cache(self)
        self._cache_config = None

    # ----------------------------------------------------------------------------------------------------------------
    # Forward
    # ----------------------------------------------------------------------------------------------------------------

    def _check_inputs(
        self,
        sample: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        conditioning_latents: torch.Tensor | None,
        fps: torch.Tensor | float | int | None,
    ) -> None:
        config = self.config
        if not isinstance(sample, torch.Tensor) or sample.ndim != 5:
            shape = tuple(sample.shape) if isinstance(sample, torch.Tensor) else type(sample).__name__
            raise ValueError(f"`sample` must be a 5D tensor [B, C, F, H, W], got {shape}.")
        batch_size, channels, num_frames, height, width = sample.shape
        if channels != config.in_channels:
            raise ValueError(
                f"`sample` must have `in_channels`={config.in_channels} channels (dim 1), got {channels} "
                f"(shape {tuple(sample.shape)})."
            )
        if height % self.downsample_factor or width % self.downsample_factor:
            raise ValueError(
                f"`sample` height and width must be divisible by the downsampling factor {self.downsample_factor}, "
                f"got {height}x{width}."
            )
        if self.max_num_frames is not None and num_frames > self.max_num_frames:
            raise ValueError(
                f"`sample` has {num_frames} frames but the {config.temporal_position_embedding} frame-position table "
                f"holds at most `temporal_max_frames`={config.temporal_max_frames}."
            )
        if not isinstance(encoder_hidden_states, torch.Tensor) or encoder_hidden_states.ndim not in (3, 4):
            shape = (
                tuple(encoder_hidden_states.shape)
                if isinstance(encoder_hidden_states, torch.Tensor)
                else type(encoder_hidden_states).__name__
            )
            raise ValueError(
                f"`encoder_hidden_states` must be a 3D tensor [B, L, D] (once per video) or a 4D tensor [B, F, L, D]"
                f" (once per frame), got {shape}."
            )
        frames = (num_frames,) if encoder_hidden_states.ndim == 4 else ()
        if (
            encoder_hidden_states.shape[: 1 + len(frames)] != (batch_size, *frames)
            or encoder_hidden_states.shape[-1] != config.cross_attention_dim
        ):
            raise ValueError(
                f"`encoder_hidden_states` must have shape [{', '.join(map(str, (batch_size, *frames)))}, L,"
                f" {config.cross_attention_dim}] "
                f"(batch of `sample`, `cross_attention_dim`), got {tuple(encoder_hidden_states.shape)}."
            )
        if config.conditioning_channels > 0:
            expected = (batch_size, config.conditioning_channels, num_frames, height, width)
            if conditioning_latents is None or tuple(conditioning_latents.shape) != expected:
                got = None if conditioning_latents is None else tuple(conditioning_latents.shape)
                raise ValueError(f"`conditioning_latents` must have shape {expected}, got {got}.")
        elif conditioning_latents is not None:
            raise ValueError(
                "`conditioning_latents` was given but this model has `conditioning_channels`=0; pass None."
            )
        if config.use_fps_conditioning and fps is None:
            raise ValueError("`fps` is required: this model has `use_fps_conditioning`=True.")
        if not config.use_fps_conditioning and fps is not None:
            raise ValueError(f"`fps`={fps} was given but this model has `use_fps_conditioning`=False; pass None.")

    @staticmethod
    def _to_batch(value: torch.Tensor | float | int, name: str, batch_size: int, device: torch.device) -> torch.Tensor:
        if not isinstance(value, torch.Tensor):
            dtype = torch.float32 if isinstance(value, float) else torch.int64
            return torch.full((batch_size,), value, dtype=dtype, device=device)
        if value.ndim > 1 or (value.ndim == 1 and value.shape[0] not in (1, batch_size)):
            raise ValueError(
                f"`{name}` must be a number or a tensor of shape [], [1] or [{batch_size}] (the batch of `sample`), "
                f"got shape {tuple(value.shape)}."
            )
        return value.reshape(-1).to(device).expand(batch_size)

    @apply_lora_scale("cross_attention_kwargs")
    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        fps: torch.Tensor | float | int | None = None,
        conditioning_latents: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
    ) -> UNetSpatioTemporalOutput | tuple[torch.Tensor]:
        r"""
        The [`UNetSpatioTemporalModel`] forward method.

        Args:
            sample (`torch.Tensor`): The noisy video latent of shape `(batch, in_channels, num_frames, height, width)`.
            timestep (`torch.Tensor` or `float` or `int`): The denoising step, a number or a tensor `[]`, `[1]`, `[B]`,
                or `[B, F]` for one step per frame (frames at different noise levels).
            encoder_hidden_states (`torch.Tensor`): Text embeddings `(batch, sequence_length, cross_attention_dim)`,
                once per video, or `(batch, num_frames, sequence_length, cross_attention_dim)`, once per frame.
            fps (`torch.Tensor` or `float` or `int`, *optional*):
                Frames per second, a number or a `[B]` tensor; required when `use_fps_conditioning` is set.
            conditioning_latents (`torch.Tensor`, *optional*):
                Latents `(batch, conditioning_channels, num_frames, height, width)` concatenated to `sample`; required
                when `conditioning_channels > 0`.
            cross_attention_kwargs (`dict`, *optional*):
                Passed on to every attention processor; a `"scale"` entry scales the LoRA layers (PEFT) for this call.
            return_dict (`bool`, *optional*, defaults to `True`):
                Whether to return a [`UNetSpatioTemporalOutput`] instead of a plain tuple.

        Returns:
            [`UNetSpatioTemporalOutput`] or `tuple`: the prediction, shaped like `sample` with `out_channels`.
        """
        self._check_inputs(sample, encoder_hidden_states, conditioning_latents, fps)
        batch_size, _, num_frames, height, width = sample.shape

        # 1. time (and frame rate), one embedding per video repeated for each of its frames, or one per frame for a
        # `[B, F]` timestep (frames at different noise levels, as FIFO's diagonal denoising has them)
        if isinstance(timestep, torch.Tensor) and timestep.ndim == 2:
            if tuple(timestep.shape) != (batch_size, num_frames):
                raise ValueError(
                    f"A per-frame `timestep` must have shape [{batch_size}, {num_frames}] (batch and frames of"
                    f" `sample`), got shape {tuple(timestep.shape)}."
                )
            timesteps = timestep.reshape(-1).to(sample.device)  # (B*F,)
            temb = self.time_embedding(self.time_proj(timesteps).to(dtype=sample.dtype))  # (B*F, D_t)
        else:
            timesteps = self._to_batch(timestep, "timestep", batch_size, sample.device)
            temb = self.time_embedding(self.time_proj(timesteps).to(dtype=sample.dtype))  # (B, D_t)
            temb = temb.repeat_interleave(num_frames, dim=0, output_size=batch_size * num_frames)  # (B*F, D_t)
        if self.fps_embedding is not None:
            fps = self._to_batch(fps, "fps", batch_size, sample.device)
            fps_emb = self.fps_embedding(self.fps_proj(fps).to(dtype=sample.dtype))  # (B, D_t)
            temb = temb + fps_emb.repeat_interleave(num_frames, dim=0, output_size=batch_size * num_frames)
        if encoder_hidden_states.ndim == 4:  # one text per frame (a travelling prompt)
            encoder_hidden_states = encoder_hidden_states.flatten(0, 1)  # (B*F, L, D)
        else:
            encoder_hidden_states = encoder_hidden_states.repeat_interleave(
                num_frames, dim=0, output_size=batch_size * num_frames
            )  # (B*F, L, D)

        # 2. pre-process: frames become batch entries for the spatial layers
        if conditioning_latents is not None:
            sample = torch.cat([sample, conditioning_latents.to(sample.dtype)], dim=1)  # (B, C + C_cond, F, H, W)
        sample = sample.permute(0, 2, 1, 3, 4).reshape(batch_size * num_frames, -1, height, width)  # (B*F, C, H, W)
        sample = self.conv_in(sample)
        if self.transformer_in is not None:
            sample = self.transformer_in(sample, num_frames=num_frames, cross_attention_kwargs=cross_attention_kwargs)

        # 3. down
        down_block_res_samples = (sample,)
        for down_block in self.down_blocks:
            sample, res_samples = down_block(
                sample, temb, encoder_hidden_states, num_frames, cross_attention_kwargs=cross_attention_kwargs
            )
            down_block_res_samples = down_block_res_samples + res_samples

        # 4. mid
        sample = self.mid_block(
            sample, temb, encoder_hidden_states, num_frames, cross_attention_kwargs=cross_attention_kwargs
        )

        # 5. up
        for up_block in self.up_blocks:
            num_skips = len(up_block.resnets)
            res_samples = down_block_res_samples[-num_skips:]
            down_block_res_samples = down_block_res_samples[:-num_skips]
            sample = up_block(
                sample,
                res_samples,
                temb,
                encoder_hidden_states,
                num_frames,
                cross_attention_kwargs=cross_attention_kwargs,
            )

        # 6. post-process
        sample = self.conv_out(self.conv_act(self.conv_norm_out(sample)))  # (B*F, C_out, H, W)
        sample = sample.reshape(batch_size, num_frames, -1, height, width).permute(0, 2, 1, 3, 4)  # (B, C, F, H, W)

        if not return_dict:
            return (sample,)
        return UNetSpatioTemporalOutput(sample=sample)

    # ----------------------------------------------------------------------------------------------------------------
    # Bringing existing U-Nets in
    # ----------------------------------------------------------------------------------------------------------------

    @classmethod
    def from_unet3d(cls, unet: ModelMixin) -> "UNetSpatioTemporalModel":
        r"""
        Builds a model that computes exactly what a diffusers `UNet3DConditionModel` (ModelScope / Zeroscope)
        computes, with its weights.

        Args:
            unet (`UNet3DConditionModel`): The source model.
        """
        # every weight comes from `unet` (strict mapping, no buffers of our own), so the model is built without
        # memory and allocated once, in the source's dtype: a float16 source never costs a float32 copy here
        with torch.device("meta"):
            model = cls.from_config(unet3d_config_to_spatio_temporal(unet.config))
        model = model.to(dtype=unet.dtype).to_empty(device=unet.device)
        state_dict = convert_unet3d_state_dict(unet.state_dict())
        load_converted_state_dict(model, state_dict, allow_missing=())
        return model

    @classmethod
    def from_unet2d(
        cls,
        unet: ModelMixin,
        motion_adapter: ModelMixin | None = None,
        temporal_num_attention_heads: int | tuple[int, ...] = 8,
        temporal_position_embedding: str = "sinusoidal",
        temporal_max_frames: int = 32,
        temporal_conv: bool = False,
    ) -> "UNetSpatioTemporalModel":
        r"""
        Inflates a diffusers `UNet2DConditionModel` (Stable Diffusion 1.x/2.x family) into a video U-Net.

        Without `motion_adapter`, a temporal transformer follows each (resnet, attention) pair, as AnimateDiff lays
        them out, with zero-initialised output projections: each frame's output equals the image U-Net's on that
        frame. With a diffusers `MotionAdapter`, the result equals `UNetMotionModel.from_unet2d(unet, motion_adapter)`.

        Args:
            unet (`UNet2DConditionModel`): The image U-Net.
            motion_adapter (`MotionAdapter`, *optional*): AnimateDiff motion modules to load.
            temporal_num_attention_heads (`int` or `tuple[int]`, *optional*, defaults to 8):
                Heads of the new temporal transformers (ignored with a `motion_adapter`).
            temporal_position_embedding (`str`, *optional*, defaults to `"sinusoidal"`):
                Frame positional encoding of the new temporal transformers (ignored with a `motion_adapter`).
            temporal_max_frames (`int`, *optional*, defaults to 32): Frames the positional tables hold (ignored with
                a `motion_adapter`).
            temporal_conv (`bool`, *optional*, defaults to `False`):
                Also add zero-initialised temporal convolutions after each resnet (not with a `motion_adapter`).
        """
        config = unet2d_config_to_spatio_temporal(unet.config)
        if motion_adapter is None:
            config.update(
                temporal_num_attention_heads=temporal_num_attention_heads,
                temporal_position_embedding=temporal_position_embedding,
                temporal_max_frames=temporal_max_frames,
                temporal_conv_per_block=temporal_conv,
                mid_temporal_conv=temporal_conv,
            )
        else:
            config.update(motion_adapter_config_to_spatio_temporal(motion_adapter.config, unet.config))
        model = cls.from_config(config)

        state_dict = convert_unet2d_state_dict(unet.state_dict())
        if motion_adapter is None:
            allow_missing = ("temporal_attentions.", "temporal_convs.")
        else:
            state_dict.update(convert_motion_adapter_state_dict(motion_adapter.state_dict()))
            allow_missing = ()
        load_converted_state_dict(model, state_dict, allow_missing=allow_missing)
        return match_device_and_dtype(model, unet)


def build_conditioning_latents(
    latents: torch.Tensor,
    conditioning_channels: int,
    image_latents: torch.Tensor | None = None,
    image_given: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""
    The `conditioning_latents` of a U-Net with `conditioning_channels > 0`, as the pipeline feeds them and as
    training builds them: the image's latent at latent frame 0 and zeros at the other frames, followed, when
    `conditioning_channels` is the latent channels plus one, by a mask channel that is 1 at latent frame 0 where an
    image is given and 0 elsewhere.

    Args:
        latents (`torch.Tensor`):
            The latents `(batch_size, channels, latent_frames, height, width)` the U-Net denoises (only their shape,
            dtype and device are used).
        conditioning_channels (`int`):
            The U-Net's `conditioning_channels`: `channels` (no mask) or `channels + 1` (with the mask).
        image_latents (`torch.Tensor`, *optional*):
            Normalised latents `(batch_size, channels, 1, height, width)` of the images; `None` for text-to-video.
        image_given (`torch.Tensor`, *optional*):
            Booleans `(batch_size,)`: which items get their image (the others get zeros, as without an image);
            every item when not given.

    Returns:
        `torch.Tensor`: Conditioning latents of shape `(batch_size, conditioning_channels, latent_frames, height,
        width)`.
    """
    batch_size, num_channels = latents.shape[:2]
    if conditioning_channels not in (num_channels, num_channels + 1):
        raise ValueError(
            f"`conditioning_channels` must be the latent channels ({num_channels}) or one more (with a mask), but is"
            f" {conditioning_channels}."
        )
    conditioning_latents = torch.zeros_like(latents)  # (B, C, F, H, W)
    mask = torch.zeros_like(latents[:, :1])  # (B, 1, F, H, W)
    if image_latents is not None:
        if image_given is None:
            image_given = torch.ones(batch_size, dtype=torch.bool, device=latents.device)
        weight = image_given.to(device=latents.device, dtype=latents.dtype).view(batch_size, 1, 1, 1, 1)
        conditioning_latents[:, :, :1] = image_latents.to(latents.dtype) * weight
        mask[:, :, :1] = weight
    if conditioning_channels == num_channels + 1:
        conditioning_latents = torch.cat([conditioning_latents, mask], dim=1)  # (B, C + 1, F, H, W)
    return conditioning_latents
