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
The attention layer of [`UNetSpatioTemporalModel`] and [`AutoencoderKLVideo`], in diffusers' current pattern (as
`WanAttention` / `WanAttnProcessor`): an `AttentionModuleMixin` module holding the projections and a processor that
calls diffusers' `dispatch_attention_fn`. `model.set_attention_backend(name)` and the `attention_backend(name)` context
manager therefore reach every attention of both models. Parameter names are those of diffusers' `Attention`
(`group_norm`, `to_q`, `to_k`, `to_v`, `to_out.0`), so checkpoints and conversions load unchanged, and the attributes
diffusers' classic processors read are kept, so `AttnProcessor`, `AttnProcessor2_0` and `SlicedAttnProcessor` still
run on it through `set_attn_processor`.
"""

import inspect

import torch
from diffusers.models import attention_processor
from diffusers.models.attention import AttentionModuleMixin
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.attention_processor import (
    AttnProcessor,
    AttnProcessor2_0,
    FusedAttnProcessor2_0,
    SlicedAttnProcessor,
)
from diffusers.utils import logging
from torch import nn


logger = logging.get_logger(__name__)

# diffusers' classic processors that need nothing but what this layer has (tested to give the dispatcher's output)
CLASSIC_PROCESSORS = (AttnProcessor, AttnProcessor2_0, SlicedAttnProcessor, FusedAttnProcessor2_0)


class VideoLatentAttnProcessor:
    r"""
    Computes a [`VideoLatentAttention`] with diffusers' `dispatch_attention_fn`. `_attention_backend` is set by
    `set_attention_backend`; `None` means the backend of the `attention_backend(...)` context manager, else the
    `DIFFUSERS_ATTN_BACKEND` default (`"native"`, torch's `scaled_dot_product_attention`).
    """

    _attention_backend = None
    _parallel_config = None

    def __call__(
        self,
        attn: "VideoLatentAttention",
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # 1. pre-process: a feature map (the VAE's) becomes a sequence of its pixels
        residual = hidden_states
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channels, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channels, height * width).transpose(1, 2)  # (N, H*W, C)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        # 2. projections
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if attn.fused_projections and not attn.is_cross_attention:
            query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        elif attn.fused_projections:
            query = attn.to_q(hidden_states)
            key, value = attn.to_kv(context).chunk(2, dim=-1)
        else:
            query, key, value = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        query = query.unflatten(-1, (attn.heads, -1))  # (N, L, heads, D)
        key = key.unflatten(-1, (attn.heads, -1))  # (N, L_context, heads, D)
        value = value.unflatten(-1, (attn.heads, -1))

        # 3. attention, by the selected backend
        hidden_states = dispatch_attention_fn(
            query,
            key,
            value,
            attn_mask=attention_mask,
            dropout_p=0.0,
            is_causal=False,
            backend=self._attention_backend,
        )
        hidden_states = hidden_states.flatten(2, 3).type_as(query)  # (N, L, heads * D)

        # 4. post-process
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channels, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


class VideoLatentAttention(nn.Module, AttentionModuleMixin):
    r"""
    Multi-head (cross-)attention whose processor goes through diffusers' attention dispatcher.

    Parameters:
        query_dim (`int`): Channels of `hidden_states`.
        heads (`int`, *optional*, defaults to 8): Number of attention heads.
        dim_head (`int`, *optional*, defaults to 64): Channels per head.
        cross_attention_dim (`int`, *optional*):
            Channels of `encoder_hidden_states`; `None` makes a self-attention.
        bias (`bool`, *optional*, defaults to `False`): Whether the query, key and value projections have a bias.
        out_bias (`bool`, *optional*, defaults to `True`): Whether the output projection has a bias.
        dropout (`float`, *optional*, defaults to 0.0): Dropout after the output projection.
        norm_num_groups (`int`, *optional*):
            Groups of a `GroupNorm` applied to `hidden_states` first (the VAE's attention); `None` means none.
        eps (`float`, *optional*, defaults to 1e-5): Epsilon of that `GroupNorm`.
        residual_connection (`bool`, *optional*, defaults to `False`): Whether the input is added to the output.
        upcast_attention (`bool`, *optional*, defaults to `False`):
            Whether diffusers' classic `AttnProcessor` computes the scores in float32 (the dispatcher's backends
            choose their own precision, as `AttnProcessor2_0` did).
        upcast_softmax (`bool`, *optional*, defaults to `False`): The same, for the softmax of `AttnProcessor`.
        processor (`VideoLatentAttnProcessor`, *optional*): The processor; `None` means a new default one.
    """

    _default_processor_cls = VideoLatentAttnProcessor
    _available_processors = [VideoLatentAttnProcessor]

    def __init__(
        self,
        query_dim: int,
        heads: int = 8,
        dim_head: int = 64,
        cross_attention_dim: int | None = None,
        bias: bool = False,
        out_bias: bool = True,
        dropout: float = 0.0,
        norm_num_groups: int | None = None,
        eps: float = 1e-5,
        residual_connection: bool = False,
        upcast_attention: bool = False,
        upcast_softmax: bool = False,
        processor: VideoLatentAttnProcessor | None = None,
    ):
        super().__init__()
        self.inner_dim = dim_head * heads
        self.heads = heads
        self.sliceable_head_dim = heads
        self.scale = dim_head**-0.5
        self.is_cross_attention = cross_attention_dim is not None
        self.cross_attention_dim = cross_attention_dim if cross_attention_dim is not None else query_dim
        self.use_bias = bias
        self.residual_connection = residual_connection
        self.rescale_output_factor = 1.0
        self.upcast_attention = upcast_attention
        self.upcast_softmax = upcast_softmax
        # read by diffusers' classic processors, which run on this layer too; this layer has none of these norms
        self.spatial_norm = None
        self.norm_cross = None
        self.norm_q = None
        self.norm_k = None

        self.group_norm = None
        if norm_num_groups is not None:
            self.group_norm = nn.GroupNorm(num_channels=query_dim, num_groups=norm_num_groups, eps=eps, affine=True)
        self.to_q = nn.Linear(query_dim, self.inner_dim, bias=bias)
        self.to_k = nn.Linear(self.cross_attention_dim, self.inner_dim, bias=bias)
        self.to_v = nn.Linear(self.cross_attention_dim, self.inner_dim, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(self.inner_dim, query_dim, bias=out_bias), nn.Dropout(dropout)])

        self.set_processor(processor if processor is not None else self._default_processor_cls())

    def set_processor(self, processor) -> None:
        r"""
        Sets the attention processor: [`VideoLatentAttnProcessor`], one of diffusers' classic processors in
        `CLASSIC_PROCESSORS`, or a processor of your own. diffusers' other processors need layers this one does not
        have (added key/value projections, IP-Adapter or custom-diffusion weights) and are refused.

        Args:
            processor (`VideoLatentAttnProcessor` or a callable processor): The processor to use.
        """
        is_diffusers_processor = type(processor).__module__ == attention_processor.__name__
        if is_diffusers_processor and not isinstance(processor, CLASSIC_PROCESSORS):
            supported = ", ".join(cls.__name__ for cls in CLASSIC_PROCESSORS)
            raise ValueError(
                f"`processor` {type(processor).__name__} cannot run on {type(self).__name__}: it needs layers this "
                f"attention does not have. Use `VideoLatentAttnProcessor` (with `set_attention_backend` for xFormers, "
                f"flash or sage attention) or one of {supported}."
            )
        super().set_processor(processor)

    def set_attention_slice(self, slice_size: int | None) -> None:
        r"""
        Computes attention in slices of `slice_size` (batch * head) entries with diffusers' `SlicedAttnProcessor`, or
        goes back to the default processor.

        Args:
            slice_size (`int`, *optional*): Entries per slice, at most `heads`; `None` turns slicing off.
        """
        if slice_size is not None and slice_size > self.sliceable_head_dim:
            raise ValueError(f"`slice_size` {slice_size} has to be smaller or equal to {self.sliceable_head_dim}.")
        self.set_processor(SlicedAttnProcessor(slice_size) if slice_size is not None else VideoLatentAttnProcessor())

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **cross_attention_kwargs,
    ) -> torch.Tensor:
        if cross_attention_kwargs:
            parameters = inspect.signature(self.processor.__call__).parameters
            unused = [name for name in cross_attention_kwargs if name not in parameters]
            if unused:
                logger.warning(
                    f"`cross_attention_kwargs` {unused} are not expected by {self.processor.__class__.__name__} and "
                    "will be ignored."
                )
            cross_attention_kwargs = {
                name: value for name, value in cross_attention_kwargs.items() if name in parameters
            }
        return self.processor(self, hidden_states, encoder_hidden_states, attention_mask, **cross_attention_kwargs)
