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
"""Any length for [`VideoLatentPipeline`]: FreeNoise windows and travelling prompts, with diffusers' API."""

from typing import Any, Callable

import torch
from diffusers.pipelines.free_noise_utils import AnimateDiffFreeNoiseMixin

from .._checks import is_integer
from ..geometry import num_latent_frames, unet_max_latent_frames
from ..models import UNetSpatioTemporalModel


FREE_NOISE_NOISE_TYPES = ("shuffle_context", "repeat_context", "random")


class VideoLatentFreeNoiseMixin(AnimateDiffFreeNoiseMixin):
    r"""
    [FreeNoise](https://huggingface.co/papers/2310.15169) for [`VideoLatentPipeline`], with the methods, arguments and
    defaults of diffusers' [`~diffusers.pipelines.free_noise_utils.AnimateDiffFreeNoiseMixin`]: long videos from
    windows of frames, and travelling prompts `{frame_index: prompt}`. The windows are those of diffusers'
    `FreeNoiseTransformerBlock`, inside [`UNetSpatioTemporalModel`]'s temporal attentions (see
    [`~UNetSpatioTemporalModel.enable_free_noise`]), so the U-Net is still called once per step; the noise is that of
    diffusers' `_prepare_latents_free_noise` and the prompt interpolation its `_lerp`, both inherited. Context sizes
    count latent frames (frames, for a VAE without temporal compression); prompt keys count video frames.
    """

    @property
    def vae_scale_factor(self) -> int:
        """The VAE's spatial ratio, under the name diffusers' `_prepare_latents_free_noise` reads."""
        return self.vae_scale_factor_spatial

    def _check_free_noise_unet(self) -> None:
        if not isinstance(self.unet, UNetSpatioTemporalModel):
            raise TypeError(
                f"FreeNoise windows the temporal attentions of a `UNetSpatioTemporalModel`, but the U-Net is a"
                f" {type(self.unet).__name__}; convert it with `UNetSpatioTemporalModel.from_unet3d(unet)`."
            )

    def enable_free_noise(
        self,
        context_length: int | None = 16,
        context_stride: int = 4,
        weighting_scheme: str = "pyramid",
        noise_type: str = "shuffle_context",
        prompt_interpolation_callback: Callable[[int, int, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        r"""
        Enables long video generation with FreeNoise: `num_frames` is no longer capped by the U-Net's frame-position
        table, which only has to hold one window.

        Args:
            context_length (`int`, *optional*, defaults to 16):
                The number of latent frames each temporal attention sees at once; at most the frames the U-Net's
                frame-position table holds (`temporal_max_frames`), ideally the length it was trained on. `None` uses
                `temporal_max_frames`.
            context_stride (`int`, *optional*, defaults to 4):
                The number of latent frames between the starts of two windows, in [1, `context_length`]: a length of
                16 and a stride of 4 process 24 frames as [0, 15], [4, 19], [8, 23].
            weighting_scheme (`str`, *optional*, defaults to `"pyramid"`):
                How overlapping windows are averaged: `"flat"` ([1, 1, 1, 1, 1]), `"pyramid"` ([1, 2, 3, 2, 1]) or
                `"delayed_reverse_sawtooth"` ([0.01, 0.01, 3, 2, 1]).
            noise_type (`str`, *optional*, defaults to `"shuffle_context"`):
                The starting noise: `"shuffle_context"` (the first window's noise, shuffled for each later stride),
                `"repeat_context"` (meant as one window's noise repeated, but diffusers' noise, used here, draws every
                frame: it compares `context_length` with `"repeat_context"`) or `"random"` (independent noise for
                every frame).
            prompt_interpolation_callback (`Callable`, *optional*):
                `callback(start_frame, end_frame, start_embeds, end_embeds)` returning the embeddings of latent frames
                `start_frame` to `end_frame` (inclusive) between two keys of a travelling prompt; linear by default.
        """
        self._check_free_noise_unet()
        if context_length is None:
            context_length = unet_max_latent_frames(self.unet.config)
            if context_length is None:
                raise ValueError(
                    "`context_length` is None, but the U-Net has no frame-position table to take it from; pass the"
                    " number of latent frames per window."
                )
        if noise_type not in FREE_NOISE_NOISE_TYPES:
            raise ValueError(f"`noise_type` must be one of {list(FREE_NOISE_NOISE_TYPES)}, got {noise_type!r}.")
        if prompt_interpolation_callback is not None and not callable(prompt_interpolation_callback):
            raise TypeError(
                "`prompt_interpolation_callback` must be callable or None, got"
                f" {type(prompt_interpolation_callback).__name__}."
            )
        self.unet.enable_free_noise(context_length, context_stride, weighting_scheme)

        self._free_noise_context_length = context_length
        self._free_noise_context_stride = context_stride
        self._free_noise_weighting_scheme = weighting_scheme
        self._free_noise_noise_type = noise_type
        self._free_noise_prompt_interpolation_callback = prompt_interpolation_callback or self._lerp

    def disable_free_noise(self) -> None:
        r"""Disables FreeNoise: the temporal attentions see all frames and the frame-position table caps the length."""
        self._free_noise_context_length = None
        if isinstance(self.unet, UNetSpatioTemporalModel):
            self.unet.disable_free_noise()

    def enable_free_noise_split_inference(self, spatial_split_size: int = 256, temporal_split_size: int = 16) -> None:
        r"""
        Runs the U-Net's layers in slices, so that their intermediate activations are bounded by the window and the
        slice rather than the clip (see [`~UNetSpatioTemporalModel.enable_free_noise_split_inference`]).

        Args:
            spatial_split_size (`int`, *optional*, defaults to 256):
                The slice of the `batch * height * width` sequences of frames the temporal layers process at once.
            temporal_split_size (`int`, *optional*, defaults to 16):
                The slice of the `batch * frames` images the spatial attentions, resnets and resamplers process at once.
        """
        self._check_free_noise_unet()
        self.unet.enable_free_noise_split_inference(spatial_split_size, temporal_split_size)

    def disable_free_noise_split_inference(self) -> None:
        r"""Runs the U-Net's layers on whole batches again (undoes `enable_free_noise_split_inference`)."""
        self._check_free_noise_unet()
        self.unet.disable_free_noise_split_inference()

    def _check_prompt_travel(
        self,
        prompt: dict[int, str],
        negative_prompt: Any,
        prompt_embeds: Any,
        negative_prompt_embeds: Any,
        num_frames: Any,
    ) -> None:
        # a travelling prompt is one video: `{frame_index: prompt}` with frame 0, encoded here (no embeddings)
        self._check_free_noise_unet()
        if prompt_embeds is not None or negative_prompt_embeds is not None:
            raise ValueError(
                "A travelling `prompt` (a dict) is encoded by the pipeline: pass no `prompt_embeds` or"
                " `negative_prompt_embeds`."
            )
        for name, prompts in (("prompt", prompt), ("negative_prompt", negative_prompt)):
            if not isinstance(prompts, dict):
                if prompts is not None and not isinstance(prompts, str):
                    raise TypeError(
                        f"`{name}` must be a string or a dict `{{frame_index: prompt}}` with a travelling `prompt`,"
                        f" got {type(prompts).__name__}."
                    )
                continue
            frames = list(prompts)
            if not all(is_integer(frame) and frame >= 0 for frame in frames):
                raise TypeError(f"`{name}` keys must be frame indices (integers >= 0), got {frames}.")
            if not all(isinstance(text, str) for text in prompts.values()):
                raise TypeError(f"`{name}` values must be strings, got {list(prompts.values())!r}.")
            if 0 not in prompts:
                raise ValueError(f"`{name}` must have a prompt for frame 0 (the start), got keys {sorted(frames)}.")
            if is_integer(num_frames) and max(frames) >= num_frames:
                raise ValueError(
                    f"`{name}` has frame index {max(frames)}, but the video has {num_frames} frames (0-based indices"
                    f" up to {num_frames - 1})."
                )

    def _encode_prompt_free_noise(
        self,
        prompt: dict[int, str],
        num_frames: int,
        device: torch.device,
        num_videos_per_prompt: int,
        do_classifier_free_guidance: bool,
        negative_prompt: str | dict[int, str] | None = None,
        prompt_embeds: None = None,
        negative_prompt_embeds: None = None,
        clip_skip: int | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        r"""
        Encodes a travelling prompt `{frame_index: prompt}` (and negative prompt) as diffusers' FreeNoise does: each
        key's prompt, interpolated between keys with `prompt_interpolation_callback` (linear by default), the last
        one held to the end. Frame indices count video frames; a key is placed at the latent frame that holds it.
        Takes the arguments of `encode_prompt` and `num_frames` (`prompt_embeds` and `negative_prompt_embeds` must
        be `None`, as `check_inputs` ensures).

        Returns:
            `tuple[torch.Tensor, torch.Tensor | None]`: The prompt and negative prompt embeddings, once per latent
            frame: `(num_videos_per_prompt, num_latent_frames, sequence_length, hidden_size)`.
        """
        latent_frames = num_latent_frames(num_frames, self.vae_scale_factor_temporal)
        # travelling prompts work without windowing too, interpolated linearly unless `enable_free_noise` said otherwise
        interpolate = getattr(self, "_free_noise_prompt_interpolation_callback", None) or self._lerp
        embeds = []
        for prompts in (prompt, negative_prompt or "") if do_classifier_free_guidance else (prompt,):
            prompts = {0: prompts} if isinstance(prompts, str) else prompts
            # a video frame `f` lies in latent frame ceil(f / r) of a VAE with temporal ratio `r` (frame 0 alone)
            keys = {-(-frame // self.vae_scale_factor_temporal): text for frame, text in sorted(prompts.items())}
            keys[latent_frames - 1] = keys[max(keys)]
            key_embeds, _ = self.encode_prompt(
                list(keys.values()), device, do_classifier_free_guidance=False, clip_skip=clip_skip, dtype=dtype
            )
            frame_embeds = key_embeds[:1].repeat(latent_frames, 1, 1)  # (F, L, D)
            frames = list(keys)
            for index, (start, end) in enumerate(zip(frames[:-1], frames[1:])):
                frame_embeds[start : end + 1] = interpolate(
                    start, end, key_embeds[index : index + 1], key_embeds[index + 1 : index + 2]
                )
            embeds.append(frame_embeds.unsqueeze(0).repeat(num_videos_per_prompt, 1, 1, 1))  # (B, F, L, D)
        return embeds[0], embeds[1] if do_classifier_free_guidance else None
