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

import inspect
import math
from functools import partial
from typing import Any, Callable

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, AutoencoderKLCogVideoX, AutoencoderKLWan, DiffusionPipeline, UNet3DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.guiders.guider_utils import rescale_noise_cfg
from diffusers.pipelines.pipeline_utils import StableDiffusionMixin
from diffusers.schedulers import SchedulerMixin
from diffusers.utils import logging, replace_example_docstring
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer

from .._checks import (
    check_finite_number,
    check_finite_tensor,
    check_generator,
    check_integer,
    check_latents,
    check_prompt,
    check_sampling_schedule,
    is_real_number,
    likely_cause_of_not_finite,
    warn_if_not_finite,
)
from ..generation_defaults import check_generation_defaults, resolve_generation_settings
from ..geometry import (
    check_frame_sides,
    get_vae_compression_ratios,
    num_latent_frames,
    unet_downsample_factor,
    unet_max_latent_frames,
)
from ..hub import ModelCardHubMixin
from ..loaders import VideoLatentLoraLoaderMixin
from ..models import AutoencoderKLVideo, UNetSpatioTemporalModel
from ..models.unet_spatio_temporal import build_conditioning_latents
from ..models.video_latents import decode_latents, encode_video
from .component_checks import check_components_fit
from .fifo import VideoLatentFIFOMixin
from .free_noise import VideoLatentFreeNoiseMixin
from .input_checks import (
    check_clip_skip,
    check_negative_prompt,
    check_outputs,
    check_pipeline_num_frames,
    check_prompt_embeds,
)
from .memory_estimate import check_call_memory
from .parallel_windows import VideoLatentParallelWindowsMixin
from .pipeline_output import VideoLatentPipelineOutput
from .schedules import dynamic_shift_kwargs, retrieve_timesteps
from .video_processor import VideoLatentVideoProcessor


logger = logging.get_logger(__name__)  # pylint: disable=invalid-name

# the components whose interfaces must fit each other (see `component_checks`)
INTERFACE_COMPONENTS = ("vae", "text_encoder", "tokenizer", "unet")

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import torch
        >>> from diffusers import DPMSolverMultistepScheduler
        >>> from diffusers.utils import export_to_video
        >>> from diffusers_videolatent import VideoLatentPipeline

        >>> pipe = VideoLatentPipeline.from_pretrained("path/to/videolatent-model", torch_dtype=torch.float16)
        >>> pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
        >>> pipe.enable_model_cpu_offload()

        >>> frames = pipe("a red panda climbing a tree", num_frames=17, num_inference_steps=25).frames[0]
        >>> export_to_video(frames, "red_panda.mp4", fps=8)
        ```
"""


class VideoLatentPipeline(
    ModelCardHubMixin,
    DiffusionPipeline,
    StableDiffusionMixin,
    VideoLatentLoraLoaderMixin,
    VideoLatentFreeNoiseMixin,
    VideoLatentFIFOMixin,
    VideoLatentParallelWindowsMixin,
):
    r"""
    Pipeline for text-to-video, image-to-video and video-to-video generation in the latent space of a video VAE.

    This model inherits from [`DiffusionPipeline`]. Check the superclass documentation for the generic methods
    implemented for all pipelines (downloading, saving, running on a particular device, offloading, etc.).

    The pipeline also inherits the following loading and memory methods:
        - [`~VideoLatentLoraLoaderMixin.load_lora_weights`] for loading LoRA weights (AnimateDiff motion LoRAs too)
        - [`~VideoLatentLoraLoaderMixin.save_lora_weights`] for saving LoRA weights
        - [`~StableDiffusionMixin.enable_freeu`] and [`~DiffusionPipeline.enable_attention_slicing`] for the U-Net
        - [`~VideoLatentFreeNoiseMixin.enable_free_noise`] for videos of any length and travelling prompts
        - [`~VideoLatentFIFOMixin.enable_fifo_denoising`] for videos of any length, one window of frames at a time
        - [`~VideoLatentParallelWindowsMixin.enable_parallel_windows`] to share the windows over processes

    Args:
        vae ([`AutoencoderKLVideo`], [`~diffusers.AutoencoderKL`], [`~diffusers.AutoencoderKLWan`] or [`~diffusers.AutoencoderKLCogVideoX`]):
            Variational auto-encoder that encodes videos to latents and decodes them back. An image VAE is applied to
            each frame on its own (temporal ratio 1); video VAEs use their own spatial and temporal ratios and latent
            normalisation (`scaling_factor`, `shift_factor`, `latents_mean`, `latents_std`).
        text_encoder ([`~transformers.CLIPTextModel`], *optional*):
            Frozen CLIP text encoder. Optional when `prompt_embeds` are passed.
        tokenizer ([`~transformers.CLIPTokenizer`], *optional*):
            Tokenizer of the text encoder. Optional when `prompt_embeds` are passed.
        unet ([`UNetSpatioTemporalModel`] or [`~diffusers.UNet3DConditionModel`]):
            Spatio-temporal U-Net that denoises the video latents.
        scheduler ([`~schedulers.SchedulerMixin`]):
            Any diffusers scheduler (noise-prediction, v-prediction or flow-matching).
        generation_defaults (`dict`, *optional*):
            The call settings this model recommends (`num_frames`, `height`, `width`, `fps`, `num_inference_steps`,
            `guidance_scale`) and the words its text encoder knows (`vocabulary`). Saved in `model_index.json`, they are
            the defaults of `__call__` wherever the caller passes no value.
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["tokenizer", "text_encoder"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(
        self,
        vae: AutoencoderKLVideo | AutoencoderKL | AutoencoderKLWan | AutoencoderKLCogVideoX,
        text_encoder: CLIPTextModel | None,
        tokenizer: CLIPTokenizer | None,
        unet: UNetSpatioTemporalModel | UNet3DConditionModel,
        scheduler: SchedulerMixin,
        generation_defaults: dict[str, Any] | None = None,
    ):
        super().__init__()

        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)
        self.register_to_config(generation_defaults=check_generation_defaults(generation_defaults))
        self._derive_from_components()

    def _derive_from_components(self, **replacing: Any) -> None:
        # the ratios and the video processor derive from the VAE and the U-Net, which must fit the other components;
        # `replacing` is checked before it is set, so a component that does not fit leaves the pipeline as it was
        components = {name: replacing.get(name, getattr(self, name, None)) for name in INTERFACE_COMPONENTS}
        ratios = get_vae_compression_ratios(components["vae"]) if components["vae"] is not None else (8, 4, False)
        check_components_fit(
            **components, temporal_ratio=ratios[1], generation_defaults=self.config.generation_defaults
        )
        for name, value in replacing.items():
            super().__setattr__(name, value)
        self.vae_scale_factor_spatial, self.vae_scale_factor_temporal, self.vae_encodes_single_frames = ratios
        unet = components["unet"]
        self.unet_downsample_factor = unet_downsample_factor(unet.config) if unet is not None else 8
        self.video_processor = VideoLatentVideoProcessor(vae_scale_factor=self.vae_scale_factor_spatial)

    def __setattr__(self, name: str, value: Any) -> None:
        # `pipe.vae = other_vae` and the like: the new component is checked, and the ratios follow it
        if name in INTERFACE_COMPONENTS and "video_processor" in self.__dict__:
            self._derive_from_components(**{name: value})
        else:
            super().__setattr__(name, value)

    def resolve_generation_settings(self, **settings: Any) -> dict[str, Any]:
        r"""
        Fills the call settings left `None` from the pipeline's `generation_defaults`, then from the fallbacks (see
        [`~diffusers_videolatent.generation_defaults.resolve_generation_settings`]).

        Args:
            settings:
                Any of `num_frames`, `height`, `width`, `fps`, `num_inference_steps`, `guidance_scale`, as given to
                `__call__` (`None` for not given).

        Returns:
            `dict`: Every one of those settings. `height`/`width` fall back to the U-Net's `sample_size` times the
            VAE's spatial ratio; `num_frames` to 17. With FreeNoise or FIFO windows, a window's frames are checked
            against the trained range of `num_frames`.
        """
        window = getattr(self, "_free_noise_context_length", None) or getattr(self, "_fifo_context_length", None)
        return resolve_generation_settings(
            settings,
            self.config.get("generation_defaults"),
            self.unet.config if getattr(self, "unet", None) is not None else None,
            self.vae_scale_factor_spatial,
            window_frames=None if window is None else (window - 1) * self.vae_scale_factor_temporal + 1,
        )

    def enable_vae_slicing(self) -> None:
        r"""
        Decode (and encode) a batch one video at a time, which bounds the VAE's memory to one video. The same as
        `pipe.vae.enable_slicing()`, which diffusers' own pipelines now ask for instead.
        """
        self.vae.enable_slicing()

    def disable_vae_slicing(self) -> None:
        r"""Decode the whole batch at once again (undoes [`~VideoLatentPipeline.enable_vae_slicing`])."""
        self.vae.disable_slicing()

    def enable_vae_tiling(self) -> None:
        r"""
        Decode (and encode) large frames in overlapping spatial tiles, which bounds the VAE's memory to one tile. The
        same as `pipe.vae.enable_tiling()`, which diffusers' own pipelines now ask for instead (and which also takes
        the tile size).
        """
        self.vae.enable_tiling()

    def disable_vae_tiling(self) -> None:
        r"""Decode whole frames again (undoes [`~VideoLatentPipeline.enable_vae_tiling`])."""
        self.vae.disable_tiling()

    def fuse_qkv_projections(self, unet: bool = True, vae: bool = True) -> None:
        r"""
        Fuses the query, key and value projections of every self-attention (key and value of cross-attention) into
        one matrix each, as [`~StableDiffusionMixin.fuse_qkv_projections`] does; a VAE without
        `fuse_qkv_projections` (ours, Wan's, CogVideoX's) is left as it is instead of raising. The U-Net keeps its
        attention processors (they read the fused projections and stay on the selected attention backend), where
        diffusers' mixin would set `FusedAttnProcessor2_0`, which no attention backend reaches.

        Args:
            unet (`bool`, *optional*, defaults to `True`): Whether to fuse the U-Net's projections.
            vae (`bool`, *optional*, defaults to `True`): Whether to fuse the VAE's projections, where it can.
        """
        super().fuse_qkv_projections(unet=False, vae=vae and hasattr(self.vae, "fuse_qkv_projections"))
        if unet:
            self.unet.fuse_qkv_projections()
            self.fusing_unet = True

    def unfuse_qkv_projections(self, unet: bool = True, vae: bool = True) -> None:
        r"""
        Restores the separate projections (and, for an `AutoencoderKL`, the attention processors) used before
        [`~VideoLatentPipeline.fuse_qkv_projections`].

        Args:
            unet (`bool`, *optional*, defaults to `True`): Whether to unfuse the U-Net.
            vae (`bool`, *optional*, defaults to `True`): Whether to unfuse the VAE, where it was fused.
        """
        super().unfuse_qkv_projections(unet=unet, vae=vae and getattr(self, "fusing_vae", False))

    def _get_clip_prompt_embeds(
        self, prompt: list[str], device: torch.device, max_length: int, clip_skip: int | None
    ) -> torch.Tensor:
        text_inputs = self.tokenizer(
            prompt, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
        )
        text_input_ids = text_inputs.input_ids
        untruncated_ids = self.tokenizer(prompt, padding="longest", return_tensors="pt").input_ids
        if untruncated_ids.shape[-1] > text_input_ids.shape[-1]:
            removed_text = self.tokenizer.batch_decode(untruncated_ids[:, max_length - 1 : -1])
            logger.warning(f"The prompt was truncated to {max_length} tokens; this part was dropped: {removed_text}")

        if getattr(self.text_encoder.config, "use_attention_mask", False):
            attention_mask = text_inputs.attention_mask.to(device)
        else:
            attention_mask = None

        if clip_skip is None:
            prompt_embeds = self.text_encoder(text_input_ids.to(device), attention_mask=attention_mask)[0]
        else:
            hidden_states = self.text_encoder(
                text_input_ids.to(device), attention_mask=attention_mask, output_hidden_states=True
            ).hidden_states
            # the final layer norm is part of the last hidden state, so it is applied to the earlier layer too;
            # transformers 5 dropped the `text_model` wrapper of `CLIPTextModel`
            text_model = getattr(self.text_encoder, "text_model", self.text_encoder)
            prompt_embeds = text_model.final_layer_norm(hidden_states[-(clip_skip + 1)])
        return prompt_embeds

    def encode_prompt(
        self,
        prompt: str | list[str] | None,
        device: torch.device | None = None,
        num_videos_per_prompt: int = 1,
        do_classifier_free_guidance: bool = True,
        negative_prompt: str | list[str] | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        clip_skip: int | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        r"""
        Encodes the prompt into text encoder hidden states.

        Args:
            prompt (`str` or `list[str]`, *optional*):
                The prompt or prompts to encode. If not defined, `prompt_embeds` must be passed.
            device (`torch.device`, *optional*):
                The device to place the embeddings on; defaults to the pipeline's execution device.
            num_videos_per_prompt (`int`, *optional*, defaults to 1):
                The number of videos generated per prompt; each embedding is repeated that many times.
            do_classifier_free_guidance (`bool`, *optional*, defaults to `True`):
                Whether the negative embeddings are needed (they are returned as `None` otherwise).
            negative_prompt (`str` or `list[str]`, *optional*):
                The prompt or prompts to guide away from; the empty prompt when not given.
            prompt_embeds (`torch.Tensor`, *optional*):
                Pre-computed text embeddings of shape `(batch_size, sequence_length, hidden_size)`.
            negative_prompt_embeds (`torch.Tensor`, *optional*):
                Pre-computed negative text embeddings, of the same shape as `prompt_embeds`.
            clip_skip (`int`, *optional*):
                The number of final CLIP layers to skip (1 uses the pre-final layer), for prompt and negative prompt.
            dtype (`torch.dtype`, *optional*):
                The dtype of the returned embeddings; defaults to the text encoder's (or the U-Net's) dtype.

        Returns:
            `tuple[torch.Tensor, torch.Tensor | None]`: The prompt embeddings and the negative prompt embeddings, each
            of shape `(batch_size * num_videos_per_prompt, sequence_length, hidden_size)`.
        """
        device = device or self._execution_device
        if dtype is None:
            dtype = self.text_encoder.dtype if self.text_encoder is not None else self.unet.dtype
        check_clip_skip(clip_skip, self._num_text_encoder_layers())
        for name, embeds in (("prompt_embeds", prompt_embeds), ("negative_prompt_embeds", negative_prompt_embeds)):
            if isinstance(embeds, torch.Tensor):
                check_finite_tensor(name, embeds)

        if prompt_embeds is None:
            if self.text_encoder is None or self.tokenizer is None:
                raise ValueError("`prompt_embeds` must be passed when the pipeline has no `text_encoder`/`tokenizer`.")
            prompt = [prompt] if isinstance(prompt, str) else prompt
            prompt_embeds = self._get_clip_prompt_embeds(prompt, device, self.tokenizer.model_max_length, clip_skip)
        batch_size, seq_len, _ = prompt_embeds.shape

        if do_classifier_free_guidance and negative_prompt_embeds is None:
            if self.text_encoder is None or self.tokenizer is None:
                raise ValueError(
                    "`negative_prompt_embeds` must be passed for classifier-free guidance (`guidance_scale` > 1) when"
                    " the pipeline has no `text_encoder`/`tokenizer`."
                )
            negative_prompt = negative_prompt if negative_prompt is not None else ""
            negative_prompt = batch_size * [negative_prompt] if isinstance(negative_prompt, str) else negative_prompt
            negative_prompt_embeds = self._get_clip_prompt_embeds(negative_prompt, device, seq_len, clip_skip)

        # one copy per generated video, keeping the copies of one prompt next to each other
        prompt_embeds = prompt_embeds.to(dtype=dtype, device=device)
        prompt_embeds = prompt_embeds.repeat_interleave(num_videos_per_prompt, dim=0)
        if do_classifier_free_guidance:
            negative_prompt_embeds = negative_prompt_embeds.to(dtype=dtype, device=device)
            negative_prompt_embeds = negative_prompt_embeds.repeat_interleave(num_videos_per_prompt, dim=0)
        else:
            negative_prompt_embeds = None
        return prompt_embeds, negative_prompt_embeds

    def check_inputs(
        self,
        prompt: str | list[str] | None,
        negative_prompt: str | list[str] | None,
        image: Any,
        video: Any,
        strength: float,
        num_frames: int,
        height: int,
        width: int,
        fps: float,
        num_inference_steps: int,
        timesteps: list[int] | None,
        sigmas: list[float] | None,
        guidance_scale: float,
        guidance_rescale: float,
        num_videos_per_prompt: int,
        generator: torch.Generator | list[torch.Generator] | None,
        latents: torch.Tensor | None,
        prompt_embeds: torch.Tensor | None,
        negative_prompt_embeds: torch.Tensor | None,
        output_type: str,
        callback_on_step_end_tensor_inputs: list[str] | None,
        decode_chunk_size: int | None,
        eta: float = 0.0,
        clip_skip: int | None = None,
        callback_on_step_end: Callable | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
    ) -> None:
        r"""Raises a `ValueError` or `TypeError` naming the first invalid argument; see `__call__` for their meaning."""
        # 1. prompt and its embeddings (a dict prompt travels, one video: see `VideoLatentFreeNoiseMixin`)
        if isinstance(prompt, dict):
            self._check_prompt_travel(prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, num_frames)
        batch_size = 1 if isinstance(prompt, dict) else check_prompt(prompt, prompt_embeds)
        # a travelling prompt's negative prompt is checked with it, and it takes no embeddings
        check_negative_prompt(
            None if isinstance(prompt, dict) else negative_prompt, negative_prompt_embeds, batch_size
        )
        check_prompt_embeds(
            prompt_embeds,
            negative_prompt_embeds,
            batch_size,
            self.unet.config.cross_attention_dim,
            getattr(self.tokenizer, "model_max_length", None),
        )
        check_clip_skip(clip_skip, self._num_text_encoder_layers())

        # 2. conditioning inputs
        if image is not None and video is not None:
            raise ValueError("Pass only one of `image` (image-to-video) and `video` (video-to-video), not both.")
        if image is not None:
            self.video_processor.check_items("image", self.video_processor.split_images(image), batch_size)
        if video is not None:
            self.video_processor.check_items("video", self.video_processor.split_videos(video), batch_size)
        if not is_real_number(strength) or not 0.0 <= strength <= 1.0:
            raise ValueError(f"`strength` must be a number in [0.0, 1.0], got {strength!r}.")
        self._check_fifo_inputs(video, callback_on_step_end)

        # 3. sizes; with FreeNoise or FIFO a window, not the U-Net's frame-position table, bounds the frames it sees
        windowed = self.free_noise_enabled or self.fifo_enabled
        check_pipeline_num_frames(
            num_frames,
            self.vae_scale_factor_temporal,
            None if windowed else unet_max_latent_frames(self.unet.config),
            len(self.video_processor.split_videos(video)[0]) if video is not None else None,
        )
        check_frame_sides(height, width, self.vae_scale_factor_spatial, self.unet_downsample_factor)
        check_finite_number("fps", fps, minimum=0, inclusive=False)

        # 4. sampling
        check_sampling_schedule(
            self.scheduler.set_timesteps,
            num_inference_steps,
            timesteps,
            sigmas,
            strength if video is not None else None,
        )
        check_finite_number("guidance_scale", guidance_scale)
        check_finite_number("guidance_rescale", guidance_rescale)
        if not 0.0 <= guidance_rescale <= 1.0:
            raise ValueError(f"`guidance_rescale` must be in [0.0, 1.0], got {guidance_rescale}.")
        check_finite_number("eta", eta, minimum=0)
        check_integer("num_videos_per_prompt", num_videos_per_prompt)
        check_generator(generator, batch_size * num_videos_per_prompt, batch_size)
        if latents is not None:
            check_latents(latents, self.latents_shape(batch_size * num_videos_per_prompt, num_frames, height, width))
        if cross_attention_kwargs is not None and not isinstance(cross_attention_kwargs, dict):
            raise TypeError(
                f"`cross_attention_kwargs` must be a dict or None, got {type(cross_attention_kwargs).__name__}."
            )

        # 5. outputs
        check_outputs(
            output_type,
            callback_on_step_end,
            callback_on_step_end_tensor_inputs,
            self._callback_tensor_inputs,
            decode_chunk_size,
        )

    def _num_text_encoder_layers(self) -> int | None:
        return getattr(getattr(self.text_encoder, "config", None), "num_hidden_layers", None)

    def latents_shape(self, batch_size: int, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        r"""Returns the shape `(batch_size, channels, latent_frames, latent_height, latent_width)` of the latents."""
        return (
            batch_size,
            self.unet.config.in_channels,
            num_latent_frames(num_frames, self.vae_scale_factor_temporal),
            height // self.vae_scale_factor_spatial,
            width // self.vae_scale_factor_spatial,
        )

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        r"""
        Encodes pixels in [-1, 1] of shape `(batch_size, 3, num_frames, height, width)` to normalised latents (see
        [`~diffusers_videolatent.models.video_latents.encode_video`]).
        """
        return encode_video(self.vae, video, self.vae_encodes_single_frames)

    def decode_latents(self, latents: torch.Tensor, decode_chunk_size: int | None = None) -> torch.Tensor:
        r"""
        Decodes normalised latents to float32 pixels in [-1, 1] of shape `(batch_size, 3, num_frames, height, width)`,
        `decode_chunk_size` latent frames at once (see [`~diffusers_videolatent.models.video_latents.decode_latents`]).
        """
        return decode_latents(self.vae, latents, self.vae_encodes_single_frames, decode_chunk_size)

    def _warn_if_not_finite(self, output: torch.Tensor, name: str, guidance_scale: float, timesteps_given: bool):
        cause = partial(likely_cause_of_not_finite, guidance_scale, self.unet.dtype, self.vae.dtype, timesteps_given)
        warn_if_not_finite(output, name, cause, logger)

    def prepare_latents(
        self,
        batch_size: int,
        num_frames: int,
        height: int,
        width: int,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | list[torch.Generator] | None,
        latents: torch.Tensor | None = None,
        video_latents: torch.Tensor | None = None,
        timestep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""
        Returns the starting latents: scaled noise, or (video-to-video) `video_latents` noised to `timestep`.

        `latents`, when given, is used as the noise; otherwise, with FreeNoise on, the noise is its `noise_type`'s.
        """
        shape = self.latents_shape(batch_size, num_frames, height, width)
        if latents is None and self.free_noise_enabled:
            noise = self._prepare_latents_free_noise(*shape[:3], height, width, dtype, device, generator)
        elif latents is None:
            noise = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        else:
            noise = latents.to(device=device, dtype=dtype)

        if video_latents is None:
            # flow-matching schedulers start from unit noise and have no `init_noise_sigma`
            return noise * getattr(self.scheduler, "init_noise_sigma", 1.0)
        if timestep is None:
            # strength 0: nothing to denoise, the video's latents are the result
            return video_latents.to(device=device, dtype=dtype)
        return self.add_noise(video_latents.to(device=device, dtype=dtype), noise, timestep)

    def _apply_guidance(self, noise_pred: torch.Tensor) -> torch.Tensor:
        r"""Classifier-free guidance of a `[uncond, cond]` prediction, rescaled by `guidance_rescale` when it is > 0."""
        noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
        noise_pred = noise_pred_uncond + self.guidance_scale * (noise_pred_text - noise_pred_uncond)
        if self.guidance_rescale > 0.0:
            noise_pred = rescale_noise_cfg(noise_pred, noise_pred_text, self.guidance_rescale)
        return noise_pred

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        r"""Noises clean `latents` to `timestep` with the scheduler (`scale_noise` for flow-matching schedulers)."""
        timestep = timestep.reshape(-1)[:1].expand(latents.shape[0])
        if hasattr(self.scheduler, "scale_noise"):
            return self.scheduler.scale_noise(latents, timestep, noise)
        return self.scheduler.add_noise(latents, noise, timestep)

    def get_timesteps(self, num_inference_steps: int, strength: float) -> tuple[torch.Tensor, int]:
        r"""Keeps the last `strength` fraction of the schedule, as diffusers' image-to-image pipelines do."""
        init_timestep = min(int(num_inference_steps * strength), num_inference_steps)
        t_start = max(num_inference_steps - init_timestep, 0)
        timesteps = self.scheduler.timesteps[t_start * self.scheduler.order :]
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(t_start * self.scheduler.order)
        return timesteps, num_inference_steps - t_start

    def prepare_extra_step_kwargs(
        self, generator: torch.Generator | list[torch.Generator] | None, eta: float
    ) -> dict[str, Any]:
        r"""Returns the `eta` and `generator` arguments that the scheduler's `step` accepts."""
        step_parameters = set(inspect.signature(self.scheduler.step).parameters.keys())
        extra_step_kwargs = {}
        if "eta" in step_parameters:
            extra_step_kwargs["eta"] = eta
        if "generator" in step_parameters:
            extra_step_kwargs["generator"] = generator
        return extra_step_kwargs

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def guidance_rescale(self) -> float:
        return self._guidance_rescale

    # `guidance_scale` is the weight `w` of equation (2) of the Imagen paper (https://huggingface.co/papers/2205.11487);
    # `guidance_scale = 1` means no classifier-free guidance.
    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1.0

    @property
    def cross_attention_kwargs(self) -> dict[str, Any] | None:
        return self._cross_attention_kwargs

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    # the timestep of the running denoising step, for diffusers' cache hooks (`current_timestep_callback`)
    @property
    def current_timestep(self) -> torch.Tensor | None:
        return self._current_timestep

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        image: PIL.Image.Image | np.ndarray | torch.Tensor | list | None = None,
        video: list[PIL.Image.Image] | np.ndarray | torch.Tensor | list | None = None,
        strength: float = 0.8,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        fps: float | None = None,
        num_inference_steps: int | None = None,
        timesteps: list[int] | None = None,
        sigmas: list[float] | None = None,
        guidance_scale: float | None = None,
        guidance_rescale: float = 0.0,
        num_videos_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable[[Any, int, int, dict], dict]
        | PipelineCallback
        | MultiPipelineCallbacks
        | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        clip_skip: int | None = None,
        decode_chunk_size: int | None = None,
    ) -> VideoLatentPipelineOutput | tuple:
        r"""
        The call function to the pipeline for generation.

        Args:
            prompt (`str`, `list[str]` or `dict[int, str]`, *optional*):
                The prompt or prompts to guide the video generation. If not defined, pass `prompt_embeds`. A dict
                `{frame_index: prompt}` (frame 0 required) travels: one video whose prompt is interpolated between the
                keys, as diffusers' FreeNoise does (see [`~VideoLatentFreeNoiseMixin.enable_free_noise`]).
            negative_prompt (`str`, `list[str]` or `dict[int, str]`, *optional*):
                The prompt or prompts to guide away from (a dict only with a dict `prompt`). Ignored when not using
                guidance (`guidance_scale <= 1`).
            image (`PIL.Image.Image`, `np.ndarray`, `torch.Tensor` or a list of them, *optional*):
                Image-to-video: the first frame, one for all prompts or one per prompt (arrays `(height, width,
                channels)` and tensors `(channels, height, width)` hold floats in [0, 1], as everywhere in diffusers,
                or uint8 values). Images are converted to RGB as diffusers' `load_image` does (L, LA, P, RGBA, CMYK;
                1, 2 or 4 channels for arrays and tensors, the alpha dropped). It is encoded as a 1-frame video; a
                U-Net with `conditioning_channels > 0` receives it as extra input channels at every step and the
                result's first latent frame is the image's latent; otherwise the first latent frame is replaced by it
                (noised to the current timestep) at every step.
            video (`list[PIL.Image.Image]`, `np.ndarray`, `torch.Tensor` or a list of them, *optional*):
                Video-to-video: the video to transform, one for all prompts or one per prompt (arrays `(frames,
                height, width, channels)`, tensors `(frames, channels, height, width)`), converted to RGB as `image`.
            strength (`float`, *optional*, defaults to 0.8):
                Video-to-video only: how much of `video` is replaced, in [0, 1]. 1 starts from pure noise, 0 returns
                the video's reconstruction; only the last `strength` fraction of the schedule is run.
            num_frames (`int`, *optional*):
                The number of frames to generate, `1 + k * r` for the VAE's temporal ratio `r`. Defaults to the length
                of `video` in video-to-video, else to `generation_defaults["num_frames"]`, else 17. A U-Net with a
                frame-position table takes at most `1 + (temporal_max_frames - 1) * r` frames, any number with
                [`~VideoLatentFreeNoiseMixin.enable_free_noise`].
            height (`int`, *optional*):
                The height in pixels of the generated video. Defaults to `generation_defaults["height"]`, else
                `unet.config.sample_size * vae_scale_factor_spatial`.
            width (`int`, *optional*):
                The width in pixels of the generated video. Defaults like `height`.
            fps (`float`, *optional*):
                Frames per second; passed to the U-Net when its config has `use_fps_conditioning`, otherwise only
                meaningful for exporting. Defaults to `generation_defaults["fps"]`, else 8.
            num_inference_steps (`int`, *optional*):
                The number of denoising steps. Defaults to `generation_defaults["num_inference_steps"]`, else 50.
            timesteps (`list[int]`, *optional*):
                Custom timesteps for schedulers whose `set_timesteps` accepts them.
            sigmas (`list[float]`, *optional*):
                Custom sigmas for schedulers whose `set_timesteps` accepts them.
            guidance_scale (`float`, *optional*):
                Classifier-free guidance scale; guidance is on when `guidance_scale > 1`. Defaults to
                `generation_defaults["guidance_scale"]`, else 7.5.
            guidance_rescale (`float`, *optional*, defaults to 0.0):
                Guidance rescale factor from [Common Diffusion Noise Schedules and Sample Steps are
                Flawed](https://huggingface.co/papers/2305.08891), in [0, 1].
            num_videos_per_prompt (`int`, *optional*, defaults to 1):
                The number of videos to generate per prompt.
            eta (`float`, *optional*, defaults to 0.0):
                The η of the [DDIM](https://huggingface.co/papers/2010.02502) paper, for schedulers whose `step`
                accepts `eta`.
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*):
                One generator, or one per generated video, to make generation deterministic.
            latents (`torch.Tensor`, *optional*):
                Pre-generated Gaussian noise of shape `(batch_size * num_videos_per_prompt, channels, latent_frames,
                latent_height, latent_width)`, used instead of sampling it from `generator`.
            prompt_embeds (`torch.Tensor`, *optional*):
                Pre-generated text embeddings, used instead of encoding `prompt`.
            negative_prompt_embeds (`torch.Tensor`, *optional*):
                Pre-generated negative text embeddings, used instead of encoding `negative_prompt`.
            output_type (`str`, *optional*, defaults to `"np"`):
                One of `"pil"`, `"np"`, `"pt"` or `"latent"`.
            return_dict (`bool`, *optional*, defaults to `True`):
                Whether to return a [`VideoLatentPipelineOutput`] instead of a plain tuple.
            callback_on_step_end (`Callable`, `PipelineCallback` or `MultiPipelineCallbacks`, *optional*):
                Called at the end of each denoising step as `callback_on_step_end(self, step, timestep,
                callback_kwargs)`; it returns a dict whose entries replace the named tensors.
            callback_on_step_end_tensor_inputs (`list[str]`, *optional*, defaults to `["latents"]`):
                The tensors passed in `callback_kwargs`, a subset of `._callback_tensor_inputs`.
            cross_attention_kwargs (`dict`, *optional*):
                Keyword arguments passed to the U-Net's attention processors.
            clip_skip (`int`, *optional*):
                The number of final CLIP layers to skip when encoding the prompts, fewer than the text encoder's layers.
            decode_chunk_size (`int`, *optional*):
                The number of latent frames decoded at once; lower values use less memory. All frames by default.

        Examples:

        Returns:
            [`VideoLatentPipelineOutput`] or `tuple`:
                A [`VideoLatentPipelineOutput`] if `return_dict` is `True`, otherwise a tuple whose first element is
                the generated frames.
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        if callback_on_step_end_tensor_inputs is None:
            callback_on_step_end_tensor_inputs = ["latents"]

        # 0. Split `image` and `video` into one entry per item, once; then the default settings: the caller's, else
        # the video's length, else the pipeline's `generation_defaults`
        if image is not None:
            image = self.video_processor.split_images(image)
        if video is not None:
            video = self.video_processor.split_videos(video)
            num_frames = num_frames if num_frames is not None else len(video[0])
        settings = self.resolve_generation_settings(
            num_frames=num_frames,
            height=height,
            width=width,
            fps=fps,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
        )
        num_frames, height, width, fps, num_inference_steps, guidance_scale = settings.values()

        # 1. Check inputs. Raise error if not correct
        self.check_inputs(
            prompt=prompt,
            negative_prompt=negative_prompt,
            image=image,
            video=video,
            strength=strength,
            num_frames=num_frames,
            height=height,
            width=width,
            fps=fps,
            num_inference_steps=num_inference_steps,
            timesteps=timesteps,
            sigmas=sigmas,
            guidance_scale=guidance_scale,
            guidance_rescale=guidance_rescale,
            num_videos_per_prompt=num_videos_per_prompt,
            generator=generator,
            latents=latents,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            output_type=output_type,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            decode_chunk_size=decode_chunk_size,
            eta=eta,
            clip_skip=clip_skip,
            callback_on_step_end=callback_on_step_end,
            cross_attention_kwargs=cross_attention_kwargs,
        )
        self._guidance_scale = guidance_scale
        self._guidance_rescale = guidance_rescale
        self._cross_attention_kwargs = cross_attention_kwargs
        self._num_timesteps = 0
        self._current_timestep = None
        self._interrupt = False

        # 2. Define call parameters
        if prompt is not None:
            batch_size = 1 if isinstance(prompt, (str, dict)) else len(prompt)
        else:
            batch_size = prompt_embeds.shape[0]
        num_videos = batch_size * num_videos_per_prompt
        device = self._execution_device
        dtype = self.unet.dtype
        check_call_memory(self, num_videos, num_frames, height, width, output_type, device)  # before allocating

        # 3. Encode input prompt (a travelling prompt `{frame_index: prompt}` once per latent frame)
        encode_prompt = self.encode_prompt
        if isinstance(prompt, dict):
            encode_prompt = partial(self._encode_prompt_free_noise, num_frames=num_frames)
        prompt_embeds, negative_prompt_embeds = encode_prompt(
            prompt,
            device=device,
            num_videos_per_prompt=num_videos_per_prompt,
            do_classifier_free_guidance=self.do_classifier_free_guidance,
            negative_prompt=negative_prompt,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            clip_skip=clip_skip,
            dtype=dtype,
        )
        # one U-Net call per step for both halves of classifier-free guidance: [uncond, cond]
        if self.do_classifier_free_guidance:
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])

        # 4. Encode the image or video conditioning
        conditioning_pixels = self.video_processor.preprocess_conditioning(image, video, height, width)
        condition_latents = None
        if conditioning_pixels is not None:
            condition_latents = self.encode_video(conditioning_pixels).to(device=device, dtype=dtype)
            # one item for all prompts, or one per prompt; then one copy per generated video
            condition_latents = condition_latents.expand(batch_size, *condition_latents.shape[1:])
            condition_latents = condition_latents.repeat_interleave(num_videos_per_prompt, dim=0)

        # 5. Prepare timesteps
        latents_shape = self.latents_shape(num_videos, num_frames, height, width)
        # flow-matching schedules with `use_dynamic_shifting` shift with the number of latent tokens
        scheduler_kwargs = dynamic_shift_kwargs(self.scheduler, math.prod(latents_shape[2:]))
        timesteps_given = timesteps is not None or sigmas is not None
        if timesteps_given:
            num_inference_steps = None
        timesteps, num_inference_steps = retrieve_timesteps(
            self.scheduler, num_inference_steps, device, timesteps, sigmas, **scheduler_kwargs
        )
        video_latents = None
        latent_timestep = None
        if video is not None:
            timesteps, num_inference_steps = self.get_timesteps(num_inference_steps, strength)
            video_latents = condition_latents
            latent_timestep = timesteps[:1] if len(timesteps) > 0 else None
        self._num_timesteps = len(timesteps)

        # 6. Prepare latent variables
        latents = self.prepare_latents(
            num_videos, num_frames, height, width, dtype, device, generator, latents, video_latents, latent_timestep
        )

        conditioning_channels = self.unet.config.get("conditioning_channels", 0) or 0
        conditioning_latents = None
        image_latents = None
        image_noise = None
        if conditioning_channels > 0:
            conditioning_latents = build_conditioning_latents(
                latents, conditioning_channels, condition_latents if image is not None else None
            )
        elif image is not None:
            image_latents = condition_latents
            image_noise = randn_tensor(image_latents.shape, generator=generator, device=device, dtype=dtype)
            if len(timesteps) > 0:
                first_frame = self.add_noise(image_latents, image_noise, timesteps[:1])
            else:
                first_frame = image_latents
            latents = torch.cat([first_frame, latents[:, :, 1:]], dim=2)

        # 7. Prepare extra step kwargs
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)
        use_fps_conditioning = self.unet.config.get("use_fps_conditioning", False)

        # 8. Denoising loop: every frame at each timestep, or FIFO's queue of frames at increasing noise levels
        if self.fifo_enabled:
            latents = self._fifo_denoise(
                latents,
                prompt_embeds,
                timesteps,
                generator,
                extra_step_kwargs,
                fps if use_fps_conditioning else None,
                condition_latents if image is not None else None,
                image_noise,
            )
        else:
            num_warmup_steps = len(timesteps) - num_inference_steps * self.scheduler.order
            with self.progress_bar(total=num_inference_steps) as progress_bar:
                for i, t in enumerate(timesteps):
                    if self.interrupt:
                        continue

                    # a callback may switch guidance off (and may or may not drop the unconditional embeddings)
                    do_classifier_free_guidance = (
                        self.do_classifier_free_guidance and prompt_embeds.shape[0] == 2 * latents.shape[0]
                    )
                    if do_classifier_free_guidance:
                        encoder_hidden_states = prompt_embeds
                        latent_model_input = torch.cat([latents] * 2)
                    else:
                        encoder_hidden_states = prompt_embeds[-latents.shape[0] :]
                        latent_model_input = latents
                    if hasattr(self.scheduler, "scale_model_input"):
                        latent_model_input = self.scheduler.scale_model_input(latent_model_input, t)
                    timestep = t.expand(latent_model_input.shape[0])

                    unet_kwargs = {}
                    if use_fps_conditioning:
                        unet_kwargs["fps"] = torch.full((latent_model_input.shape[0],), float(fps), device=device)
                    if conditioning_latents is not None:
                        repeats = 2 if do_classifier_free_guidance else 1
                        unet_kwargs["conditioning_latents"] = torch.cat([conditioning_latents] * repeats)

                    self._current_timestep = t
                    noise_pred = self._predict_noise(
                        latent_model_input,
                        timestep,
                        encoder_hidden_states,
                        cross_attention_kwargs=self.cross_attention_kwargs,
                        **unet_kwargs,
                    )

                    if do_classifier_free_guidance:
                        noise_pred = self._apply_guidance(noise_pred)

                    # compute the previous noisy sample x_t -> x_t-1
                    latents_dtype = latents.dtype
                    latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]
                    if latents.dtype != latents_dtype:
                        latents = latents.to(latents_dtype)

                    if image_latents is not None:
                        # keep the first frame on the image, noised to the level the next step expects
                        if i < len(timesteps) - 1:
                            first_frame = self.add_noise(image_latents, image_noise, timesteps[i + 1 : i + 2])
                        else:
                            first_frame = image_latents
                        latents = torch.cat([first_frame, latents[:, :, 1:]], dim=2)

                    if callback_on_step_end is not None:
                        callback_kwargs = {}
                        for k in callback_on_step_end_tensor_inputs:
                            callback_kwargs[k] = locals()[k]
                        callback_outputs = callback_on_step_end(self, i, t, callback_kwargs)

                        latents = callback_outputs.pop("latents", latents)
                        prompt_embeds = callback_outputs.pop("prompt_embeds", prompt_embeds)
                        negative_prompt_embeds = callback_outputs.pop("negative_prompt_embeds", negative_prompt_embeds)

                    if i == len(timesteps) - 1 or ((i + 1) > num_warmup_steps and (i + 1) % self.scheduler.order == 0):
                        progress_bar.update()

        self._current_timestep = None
        if conditioning_latents is not None and image is not None:
            # the U-Net drew the other frames from the image's exact latent: frame 0 is that latent, not a redraw
            latents = torch.cat([condition_latents.to(latents.dtype), latents[:, :, 1:]], dim=2)

        # 9. Decode
        if output_type == "latent":
            frames = latents
            self._warn_if_not_finite(frames, "latents", self.guidance_scale, timesteps_given)
        else:
            frames = self.decode_latents(latents, decode_chunk_size=decode_chunk_size)
            self._warn_if_not_finite(frames, "frames", self.guidance_scale, timesteps_given)
            frames = self.video_processor.postprocess_video(video=frames, output_type=output_type)

        # 10. Offload all models
        self.maybe_free_model_hooks()

        if not return_dict:
            return (frames,)
        return VideoLatentPipelineOutput(frames=frames)
