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
"""LoRA loading for [`VideoLatentPipeline`] through diffusers' PEFT integration, AnimateDiff motion LoRAs included."""

import os
from collections.abc import Callable

import torch
from diffusers.loaders.lora_base import LORA_WEIGHT_NAME, LORA_WEIGHT_NAME_SAFE, LoraBaseMixin
from diffusers.loaders.lora_pipeline import TEXT_ENCODER_NAME, UNET_NAME, StableDiffusionLoraLoaderMixin
from diffusers.utils import convert_unet_state_dict_to_peft
from huggingface_hub.utils import validate_hf_hub_args

from .atomic import atomic_file
from .models.conversion_unet import (
    convert_unet_motion_lora_config,
    convert_unet_motion_lora_state_dict,
    is_unet_motion_lora_state_dict,
)


class VideoLatentLoraLoaderMixin(StableDiffusionLoraLoaderMixin):
    r"""
    Load LoRA layers into the [`UNetSpatioTemporalModel`] and the
    [`CLIPTextModel`](https://huggingface.co/docs/transformers/model_doc/clip#transformers.CLIPTextModel) of a
    [`VideoLatentPipeline`].

    Everything is diffusers' [`~loaders.StableDiffusionLoraLoaderMixin`]: the file format
    (`pytorch_lora_weights.safetensors`, keys prefixed `unet.` and `text_encoder.`, Kohya/A1111 files converted),
    [`~loaders.StableDiffusionLoraLoaderMixin.load_lora_weights`], `set_adapters` with per-adapter weights,
    [`~loaders.StableDiffusionLoraLoaderMixin.fuse_lora`] / `unfuse_lora`, `unload_lora_weights` and
    [`~loaders.StableDiffusionLoraLoaderMixin.save_lora_weights`]. Two things are our own:

    - A LoRA made for diffusers' `UNetMotionModel` (AnimateDiff motion LoRAs such as the
      `guoyww/animatediff-motion-lora-*` family, whose keys name `...motion_modules...`) is mapped to the U-Net's
      temporal transformers, so it loads onto a U-Net built with `UNetSpatioTemporalModel.from_unet2d(unet,
      motion_adapter=...)` and computes what it computes in `AnimateDiffPipeline`.
    - The weight file is written atomically: into a temporary sibling, moved into place once complete.
    """

    _lora_loadable_modules = ["unet", "text_encoder"]
    unet_name = UNET_NAME
    text_encoder_name = TEXT_ENCODER_NAME

    def load_lora_weights(
        self,
        pretrained_model_name_or_path_or_dict: str | os.PathLike | dict[str, torch.Tensor],
        adapter_name: str | None = None,
        hotswap: bool = False,
        **kwargs,
    ) -> None:
        r"""
        Load LoRA weights into `self.unet` and `self.text_encoder`, as
        [`~loaders.StableDiffusionLoraLoaderMixin.load_lora_weights`] does (AnimateDiff motion LoRAs are mapped by
        [`~VideoLatentLoraLoaderMixin.lora_state_dict`]). When loading into the text encoder fails after the U-Net got
        its part, the U-Net's new adapter is removed again before the error is raised, so a failed load changes
        nothing. A LoRA made for another base model (a layer this U-Net lacks, or one of another size) is refused with
        a `ValueError` naming the LoRA and the pipeline, before anything is loaded.

        Parameters:
            pretrained_model_name_or_path_or_dict (`str` or `os.PathLike` or `dict`):
                A Hub id, a folder holding the LoRA file, or a state dict.
            adapter_name (`str`, *optional*):
                The adapter's name; `default_{i}` when not given.
            hotswap (`bool`, *optional*, defaults to `False`):
                Whether to replace the weights of the already loaded adapter `adapter_name` in place.
            kwargs (`dict`, *optional*):
                See [`~loaders.StableDiffusionLoraLoaderMixin.load_lora_weights`].
        """
        unet = getattr(self, self.unet_name, None)
        if unet is not None:
            state_dict_kwargs = {key: value for key, value in kwargs.items() if key != "return_lora_metadata"}
            state_dict, _ = self.lora_state_dict(pretrained_model_name_or_path_or_dict, **state_dict_kwargs)
            self._check_lora_fits_unet(pretrained_model_name_or_path_or_dict, state_dict)
        adapters_before = set(getattr(unet, "peft_config", None) or {})
        try:
            super().load_lora_weights(
                pretrained_model_name_or_path_or_dict, adapter_name=adapter_name, hotswap=hotswap, **kwargs
            )
        except Exception:
            new_adapters = sorted(set(getattr(unet, "peft_config", None) or {}) - adapters_before)
            if new_adapters and not adapters_before:
                unet.unload_lora()
            elif new_adapters:
                unet.delete_adapters(new_adapters)
            raise

    def _check_lora_fits_unet(self, source: str | os.PathLike | dict, state_dict: dict[str, torch.Tensor]) -> None:
        """Raises a `ValueError` naming the LoRA and this pipeline when a U-Net layer of the LoRA is missing from the
        U-Net or has another number of input or output features."""
        unet = getattr(self, self.unet_name)
        prefix = f"{self.unet_name}."
        unet_layers = {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}
        misfits = {}  # layer name: why it does not fit
        for key, value in convert_unet_state_dict_to_peft(unet_layers).items():
            direction = "lora_A" if ".lora_A." in key else "lora_B" if ".lora_B." in key else None
            if direction is None:
                continue
            module_name = key.split(f".{direction}.")[0]
            try:
                module = unet.get_submodule(module_name)
            except AttributeError:
                misfits[module_name] = "no such layer"
                continue
            weight = getattr(getattr(module, "base_layer", module), "weight", None)
            # lora_A reads the layer's input features (dim 1), lora_B writes its output features (dim 0)
            dim = 1 if direction == "lora_A" else 0
            if weight is None or weight.ndim < 2 or value.ndim < 2 or weight.shape[dim] != value.shape[dim]:
                size = "?" if weight is None else tuple(weight.shape)
                misfits.setdefault(module_name, f"{direction} {tuple(value.shape)}, layer weight {size}")
        if misfits:
            lora = "the given state dict" if isinstance(source, dict) else repr(str(source))
            pipeline = getattr(self, "name_or_path", None) or unet.config.get("_name_or_path") or "built in memory"
            raise ValueError(
                f"The LoRA {lora} does not fit the U-Net of this pipeline ({pipeline!r}): it was made for another base "
                f"model ({len(misfits)} of its layers do not fit, e.g. "
                + "; ".join(f"{name}: {reason}" for name, reason in sorted(misfits.items())[:2])
                + ")."
            )

    @classmethod
    @validate_hf_hub_args
    def lora_state_dict(
        cls,
        pretrained_model_name_or_path_or_dict: str | os.PathLike | dict[str, torch.Tensor],
        **kwargs,
    ):
        r"""
        Return the LoRA state dict and the network alphas (and, with `return_lora_metadata=True`, the LoRA metadata),
        as [`~loaders.StableDiffusionLoraLoaderMixin.lora_state_dict`] does, with the keys of an AnimateDiff motion
        LoRA (`...motion_modules...`) renamed to this pipeline's U-Net (`...temporal_attentions...`).

        Parameters:
            pretrained_model_name_or_path_or_dict (`str` or `os.PathLike` or `dict`):
                A Hub id, a folder holding the LoRA file, or a state dict.
            kwargs (`dict`, *optional*):
                See [`~loaders.StableDiffusionLoraLoaderMixin.lora_state_dict`].
        """
        return_lora_metadata = kwargs.get("return_lora_metadata", False)
        outputs = super().lora_state_dict(pretrained_model_name_or_path_or_dict, **kwargs)
        state_dict, network_alphas = outputs[0], outputs[1]
        metadata = outputs[2] if return_lora_metadata else None

        if is_unet_motion_lora_state_dict(state_dict):
            state_dict = convert_unet_motion_lora_state_dict(state_dict)
            if network_alphas is not None:
                network_alphas = convert_unet_motion_lora_state_dict(network_alphas)
            if metadata is not None:
                metadata = convert_unet_motion_lora_config(metadata)

        if return_lora_metadata:
            return state_dict, network_alphas, metadata
        return state_dict, network_alphas

    @staticmethod
    def write_lora_layers(
        state_dict: dict[str, torch.Tensor],
        save_directory: str | os.PathLike,
        is_main_process: bool,
        weight_name: str | None,
        save_function: Callable | None,
        safe_serialization: bool,
        lora_adapter_metadata: dict | None = None,
    ) -> None:
        r"""
        Write the LoRA layers (and their metadata) as diffusers does, into a temporary sibling of the weight file that
        is moved into place once complete, so an interrupted save leaves the previous file (or none), never half of
        one.

        Args:
            state_dict (`dict[str, torch.Tensor]`): The packed LoRA layers (keys prefixed `unet.`, `text_encoder.`).
            save_directory (`str` or `os.PathLike`): The folder to write to; created when missing.
            is_main_process (`bool`): Whether this process writes; other processes of a distributed run do not.
            weight_name (`str`, *optional*): The file name; `pytorch_lora_weights.safetensors` (or `.bin`) by default.
            save_function (`Callable`, *optional*): Called as `save_function(state_dict, path)`.
            safe_serialization (`bool`): Whether to write safetensors rather than a pickle.
            lora_adapter_metadata (`dict`, *optional*): The `LoraConfig` arguments stored in a safetensors header.
        """
        if os.path.isfile(save_directory):
            raise ValueError(f"`save_directory` must be a folder, got the file {save_directory}.")
        if not is_main_process:
            return
        if weight_name is None:
            weight_name = LORA_WEIGHT_NAME_SAFE if safe_serialization else LORA_WEIGHT_NAME
        os.makedirs(save_directory, exist_ok=True)
        with atomic_file(os.path.join(save_directory, weight_name), overwrite=True) as temporary:
            folder, temporary_name = os.path.split(temporary)
            LoraBaseMixin.write_lora_layers(
                state_dict=state_dict,
                save_directory=folder,
                is_main_process=is_main_process,
                weight_name=temporary_name,
                save_function=save_function,
                safe_serialization=safe_serialization,
                lora_adapter_metadata=lora_adapter_metadata,
            )
