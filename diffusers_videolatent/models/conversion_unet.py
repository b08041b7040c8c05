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
Bringing diffusers' U-Nets into [`UNetSpatioTemporalModel`]: config conversions and state-dict key maps for
`UNet3DConditionModel` (ModelScope / Zeroscope), `UNet2DConditionModel` (Stable Diffusion 1.x/2.x) and `MotionAdapter`
(AnimateDiff), the key maps of AnimateDiff motion LoRAs, and strict loading of the converted weights.
[`UNetSpatioTemporalModel.from_unet3d`] and [`UNetSpatioTemporalModel.from_unet2d`] call these. This module works
on configs and state dicts and knows no model class, so the model imports it and never the other way round.
"""

import re
from typing import Any

import torch
from diffusers import ModelMixin

from .config_utils import per_level


def _require(config, name: str, allowed: tuple, source: str) -> None:
    value = config.get(name)
    if value not in allowed:
        raise ValueError(f"{source} config `{name}`={value!r} is not supported; supported: {allowed}.")


def unet3d_config_to_spatio_temporal(config) -> dict:
    """Config of a [`UNetSpatioTemporalModel`] equivalent to a diffusers `UNet3DConditionModel` config."""
    source = "UNet3DConditionModel"
    _require(config, "num_attention_heads", (None,), source)
    _require(config, "time_cond_proj_dim", (None,), source)
    _require(config, "act_fn", ("silu",), source)
    if config["norm_num_groups"] is None:
        raise ValueError(f"{source} config `norm_num_groups`=None is not supported.")
    down_types, up_types = list(config["down_block_types"]), list(config["up_block_types"])
    cross = ["CrossAttn" in block_type for block_type in down_types]
    if cross[::-1] != ["CrossAttn" in block_type for block_type in up_types]:
        raise ValueError(f"{source} up blocks {up_types} must mirror down blocks {down_types}.")
    num_levels = len(config["block_out_channels"])
    # `UNet3DConditionModel` calls its per-head width `attention_head_dim` and builds (channels // it) heads.
    head_dims = per_level(config["attention_head_dim"], "attention_head_dim", num_levels)
    heads = tuple(channels // dim for channels, dim in zip(config["block_out_channels"], head_dims))
    return {
        "sample_size": config.get("sample_size"),
        "in_channels": config["in_channels"],
        "out_channels": config["out_channels"],
        "block_out_channels": tuple(config["block_out_channels"]),
        "layers_per_block": config["layers_per_block"],
        "transformer_layers_per_block": tuple(int(c) for c in cross),
        "temporal_transformer_layers_per_block": tuple(int(c) for c in cross),
        "temporal_conv_per_block": True,
        "num_attention_heads": heads,
        "temporal_num_attention_heads": heads,
        "mid_block_layers": 1,
        "mid_transformer_layers": 1,
        "mid_temporal_transformer_layers": 1,
        "mid_temporal_conv": True,
        "input_temporal_transformer_layers": 1,
        "input_temporal_num_attention_heads": 8,
        "input_temporal_attention_head_dim": config["attention_head_dim"],
        "temporal_position_embedding": "none",
        "temporal_conv_dropout": 0.1,
        "cross_attention_dim": config["cross_attention_dim"],
        "use_linear_projection": True,
        "upcast_attention": False,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "act_fn": config["act_fn"],
        "norm_num_groups": config["norm_num_groups"],
        "norm_eps": config["norm_eps"],
        "downsample_padding": config["downsample_padding"],
        "mid_block_scale_factor": config["mid_block_scale_factor"],
    }


def unet2d_config_to_spatio_temporal(config) -> dict:
    """Config of a [`UNetSpatioTemporalModel`] holding a diffusers `UNet2DConditionModel` (SD 1.x/2.x family)."""
    source = "UNet2DConditionModel"
    for name, allowed in (
        ("mid_block_type", ("UNetMidBlock2DCrossAttn",)),
        ("center_input_sample", (False,)),
        ("dual_cross_attention", (False,)),
        ("class_embed_type", (None,)),
        ("addition_embed_type", (None,)),
        ("encoder_hid_dim_type", (None,)),
        ("resnet_time_scale_shift", ("default",)),
        ("resnet_skip_time_act", (False,)),
        ("resnet_out_scale_factor", (1.0,)),
        ("time_embedding_type", ("positional",)),
        ("time_embedding_dim", (None,)),
        ("time_embedding_act_fn", (None,)),
        ("timestep_post_act", (None,)),
        ("time_cond_proj_dim", (None,)),
        ("conv_in_kernel", (3,)),
        ("conv_out_kernel", (3,)),
        ("attention_type", ("default",)),
        ("mid_block_only_cross_attention", (None, False)),
        ("cross_attention_norm", (None,)),
        ("reverse_transformer_layers_per_block", (None,)),
        ("dropout", (0.0,)),
        ("act_fn", ("silu", "swish")),
    ):
        _require(config, name, allowed, source)
    if config["norm_num_groups"] is None:
        raise ValueError(f"{source} config `norm_num_groups`=None is not supported.")
    if any(per_level(config["only_cross_attention"], "only_cross_attention", len(config["block_out_channels"]))):
        raise ValueError(f"{source} config `only_cross_attention` is not supported.")
    down_types, up_types = list(config["down_block_types"]), list(config["up_block_types"])
    if not set(down_types) <= {"CrossAttnDownBlock2D", "DownBlock2D"} or not set(up_types) <= {
        "CrossAttnUpBlock2D",
        "UpBlock2D",
    }:
        raise ValueError(f"{source} block types {down_types} / {up_types} are not supported.")
    cross = ["CrossAttn" in block_type for block_type in down_types]
    if cross[::-1] != ["CrossAttn" in block_type for block_type in up_types]:
        raise ValueError(f"{source} up blocks {up_types} must mirror down blocks {down_types}.")
    num_levels = len(config["block_out_channels"])
    cross_attention_dim = per_level(config["cross_attention_dim"], "cross_attention_dim", num_levels)
    if len(set(cross_attention_dim)) != 1:
        raise ValueError(f"{source} config `cross_attention_dim`={cross_attention_dim} must be the same everywhere.")
    transformer_layers = per_level(config["transformer_layers_per_block"], "transformer_layers_per_block", num_levels)
    if not all(isinstance(layers, int) for layers in transformer_layers):
        raise ValueError(f"{source} config `transformer_layers_per_block` must hold one int per level.")
    # `UNet2DConditionModel` falls back to `attention_head_dim` as the number of heads (diffusers issue #2011).
    heads = config.get("num_attention_heads") or config["attention_head_dim"]
    return {
        "sample_size": config.get("sample_size"),
        "in_channels": config["in_channels"],
        "out_channels": config["out_channels"],
        "block_out_channels": tuple(config["block_out_channels"]),
        "layers_per_block": config["layers_per_block"],
        "transformer_layers_per_block": tuple(layers if c else 0 for layers, c in zip(transformer_layers, cross)),
        "temporal_transformer_layers_per_block": 1,
        "temporal_conv_per_block": False,
        "num_attention_heads": heads,
        "mid_block_layers": 1,
        "mid_transformer_layers": transformer_layers[-1],
        "mid_temporal_transformer_layers": 1,
        "mid_temporal_conv": False,
        "input_temporal_transformer_layers": 0,
        "cross_attention_dim": cross_attention_dim[0],
        "use_linear_projection": config["use_linear_projection"],
        "upcast_attention": config["upcast_attention"],
        "flip_sin_to_cos": config["flip_sin_to_cos"],
        "freq_shift": config["freq_shift"],
        "act_fn": config["act_fn"],
        "norm_num_groups": config["norm_num_groups"],
        "norm_eps": config["norm_eps"],
        "downsample_padding": config["downsample_padding"],
        "mid_block_scale_factor": config["mid_block_scale_factor"],
    }


def motion_adapter_config_to_spatio_temporal(adapter_config, unet_config) -> dict:
    """Config overrides for the temporal layers of a diffusers `MotionAdapter` (AnimateDiff)."""
    source = "MotionAdapter"
    _require(adapter_config, "conv_in_channels", (None, 0), source)
    _require(adapter_config, "motion_mid_block_layers_per_block", (1,), source)
    num_levels = len(unet_config["block_out_channels"])
    if tuple(adapter_config["block_out_channels"]) != tuple(unet_config["block_out_channels"]):
        raise ValueError(
            f"{source} `block_out_channels`={adapter_config['block_out_channels']} does not match the U-Net's "
            f"{unet_config['block_out_channels']}."
        )
    adapter_layers = per_level(adapter_config["motion_layers_per_block"], "motion_layers_per_block", num_levels)
    unet_layers = per_level(unet_config["layers_per_block"], "layers_per_block", num_levels)
    if adapter_layers != unet_layers:
        raise ValueError(f"{source} `motion_layers_per_block`={adapter_layers} does not match {unet_layers}.")
    temporal_layers = per_level(
        adapter_config["motion_transformer_layers_per_block"], "motion_transformer_layers_per_block", num_levels
    )
    mid_layers = adapter_config["motion_transformer_layers_per_mid_block"]
    mid_layers = mid_layers[0] if isinstance(mid_layers, (list, tuple)) else mid_layers
    if not all(isinstance(layers, int) for layers in temporal_layers):
        raise ValueError(f"{source} `motion_transformer_layers_per_block` must hold one int per level.")
    return {
        "temporal_transformer_layers_per_block": temporal_layers,
        "temporal_num_attention_heads": adapter_config["motion_num_attention_heads"],
        "temporal_position_embedding": "sinusoidal",
        "temporal_max_frames": adapter_config["motion_max_seq_length"],
        "temporal_conv_per_block": False,
        "mid_temporal_transformer_layers": mid_layers if adapter_config["use_motion_mid_block"] else 0,
        "mid_temporal_conv": False,
    }


def convert_unet3d_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Maps `UNet3DConditionModel` keys to [`UNetSpatioTemporalModel`] keys: the temporal layers are renamed and the
    `(3, 1, 1)` kernels of the temporal convolutions lose their trailing 1 (they run as `(3, 1)` 2D kernels)."""
    converted = {}
    for key, value in state_dict.items():
        key = key.replace(".temp_convs.", ".temporal_convs.").replace(".temp_attentions.", ".temporal_attentions.")
        if ".temporal_convs." in key and key.endswith(".weight") and value.ndim == 5:
            value = value.squeeze(-1)
        converted[key] = value
    return converted


def convert_unet2d_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Maps `UNet2DConditionModel` keys to [`UNetSpatioTemporalModel`] keys (the spatial layout is the same)."""
    return dict(state_dict)


def convert_motion_adapter_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Maps `MotionAdapter` keys (`down_blocks.0.motion_modules.1...`) to `down_blocks.0.temporal_attentions.1...`."""
    converted = {}
    for key, value in state_dict.items():
        if not re.match(r"^(down_blocks\.\d+|up_blocks\.\d+|mid_block)\.motion_modules\.", key):
            raise ValueError(f"Unexpected `MotionAdapter` key {key!r}.")
        converted[key.replace(".motion_modules.", ".temporal_attentions.")] = value
    return converted


UNET_MOTION_MODULE_NAME = ".motion_modules."
TEMPORAL_ATTENTION_MODULE_NAME = ".temporal_attentions."


def is_unet_motion_lora_state_dict(state_dict: dict[str, Any]) -> bool:
    """Whether a LoRA state dict targets diffusers' `UNetMotionModel` module names (`...motion_modules...`)."""
    return any(UNET_MOTION_MODULE_NAME in key for key in state_dict)


def convert_unet_motion_lora_state_dict(state_dict: dict[str, Any]) -> dict[str, Any]:
    r"""
    Maps the keys of a LoRA made for diffusers' `UNetMotionModel` (e.g. the `guoyww/animatediff-motion-lora-*` family
    in diffusers format, `unet.down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.to_q.lora_A.weight`) to the
    module names of a [`UNetSpatioTemporalModel`] built by `from_unet2d(unet, motion_adapter=...)`: the motion modules
    are its temporal transformers and every other module keeps its name, as in [`convert_motion_adapter_state_dict`].
    Works on network alphas and on LoRA metadata keys alike, since only the keys change.
    """
    return {
        key.replace(UNET_MOTION_MODULE_NAME, TEMPORAL_ATTENTION_MODULE_NAME): value
        for key, value in state_dict.items()
    }


def convert_to_unet_motion_lora_state_dict(state_dict: dict[str, Any]) -> dict[str, Any]:
    r"""
    The reverse of [`convert_unet_motion_lora_state_dict`]: maps a LoRA of the temporal transformers of a
    [`UNetSpatioTemporalModel`] built by `from_unet2d(unet, motion_adapter=...)` to the motion modules of diffusers'
    `UNetMotionModel` (AnimateDiff). A layer outside the temporal transformers of the down, mid and up blocks has no
    place in a motion LoRA: a `ValueError` names it.
    """
    outside = sorted(
        key
        for key in state_dict
        if not re.match(r"^(unet\.)?(down_blocks\.\d+|up_blocks\.\d+|mid_block)\.temporal_attentions\.", key)
    )
    if outside:
        raise ValueError(
            f"An AnimateDiff motion LoRA holds the temporal transformers' layers only, but this LoRA also has "
            f"{len(outside)} others, e.g. {outside[0]!r}; train it with --lora_layers temporal."
        )
    return {
        key.replace(TEMPORAL_ATTENTION_MODULE_NAME, UNET_MOTION_MODULE_NAME): value
        for key, value in state_dict.items()
    }


def convert_unet_motion_lora_config(config: dict[str, Any], reverse: bool = False) -> dict[str, Any]:
    r"""
    Maps the module names inside `LoraConfig` arguments (`target_modules`, `exclude_modules`, `rank_pattern`,
    `alpha_pattern`, bare or with the `unet.` prefix of a LoRA file's metadata) from `UNetMotionModel` to
    [`UNetSpatioTemporalModel`] names, or back with `reverse=True`; other arguments are returned unchanged.
    """
    bare_names = (UNET_MOTION_MODULE_NAME.strip("."), TEMPORAL_ATTENTION_MODULE_NAME.strip("."))
    if reverse:
        bare_names = bare_names[::-1]

    def rename(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(*bare_names)
        if isinstance(value, (list, tuple, set)):
            return type(value)(rename(item) for item in value)
        if isinstance(value, dict):
            return {rename(key): item for key, item in value.items()}
        return value

    names = ("target_modules", "exclude_modules", "rank_pattern", "alpha_pattern")
    # metadata read from a LoRA file keeps the component prefix: `unet.target_modules`
    return {key: rename(value) if key.rsplit(".", 1)[-1] in names else value for key, value in config.items()}


def match_device_and_dtype(model: ModelMixin, source: ModelMixin) -> ModelMixin:
    """Moves a converted `model` to the device and dtype of the `source` it was converted from."""
    model = model.to(source.device)
    if source.dtype != model.dtype:
        model = model.to(source.dtype)
    return model


def load_converted_state_dict(
    model: ModelMixin, state_dict: dict[str, torch.Tensor], allow_missing: tuple[str, ...]
) -> None:
    """Loads `state_dict` strictly; keys containing one of `allow_missing` may keep their fresh initialisation."""
    own = model.state_dict()
    unexpected = sorted(set(state_dict) - set(own))
    missing = sorted(key for key in set(own) - set(state_dict) if not any(part in key for part in allow_missing))
    mismatched = sorted(
        key for key in set(state_dict) & set(own) if tuple(state_dict[key].shape) != tuple(own[key].shape)
    )
    if unexpected or missing or mismatched:
        raise ValueError(
            f"Cannot load the converted weights into {model.__class__.__name__}: missing keys {missing}, "
            f"unexpected keys {unexpected}, shape mismatches {mismatched}."
        )
    full = {key: state_dict.get(key, value) for key, value in own.items()}
    model.load_state_dict(full, strict=True)
