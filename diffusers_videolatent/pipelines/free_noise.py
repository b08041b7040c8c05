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

from contextlib import nullcontext
from typing import Any, Callable

import torch
from diffusers.models.attention import FreeNoiseTransformerBlock
from diffusers.models.cache_utils import CacheMixin
from diffusers.pipelines.free_noise_utils import AnimateDiffFreeNoiseMixin

from .._checks import is_integer
from ..geometry import num_latent_frames, unet_max_latent_frames
from ..models import UNetSpatioTemporalModel


FREE_NOISE_NOISE_TYPES = ("shuffle_context", "repeat_context", "random")
FREE_NOISE_CONTEXT_SCOPES = ("attention", "unet")


class FreeNoiseWindows:
    r"""
    The windows and weights of diffusers' `FreeNoiseTransformerBlock` (its `_get_frame_indices` and
    `_get_frame_weights`, inherited), for windows of latent frames outside a transformer block: `context_length`
    frames every `context_stride`, plus a last window ending at the last frame when the stride does not reach it.
    """

    _get_frame_indices = FreeNoiseTransformerBlock._get_frame_indices
    _get_frame_weights = FreeNoiseTransformerBlock._get_frame_weights

    def __init__(self, context_length: int, context_stride: int, weighting_scheme: str):
        self.context_length = context_length
        self.context_stride = context_stride
        self.weighting_scheme = weighting_scheme

    def windows(self, num_frames: int) -> list[tuple[int, int]]:
        """`(start, end)` of each window over `num_frames` (> `context_length`) frames, as diffusers' block has them."""
        windows = self._get_frame_indices(num_frames)
        if windows[-1][1] != num_frames:
            windows.append((num_frames - self.context_length, num_frames))
        return windows

    def weights(self) -> list[float]:
        """The weight of each frame of a window in the blend of overlapping windows."""
        return self._get_frame_weights(self.context_length, self.weighting_scheme)


class VideoLatentFreeNoiseMixin(AnimateDiffFreeNoiseMixin):
    r"""
    [FreeNoise](https://huggingface.co/papers/2310.15169) for [`VideoLatentPipeline`], with the methods, arguments and
    defaults of diffusers' [`~diffusers.pipelines.free_noise_utils.AnimateDiffFreeNoiseMixin`]: long videos from
    windows of frames, and travelling prompts `{frame_index: prompt}`. The windows are those of diffusers'
    `FreeNoiseTransformerBlock`, inside [`UNetSpatioTemporalModel`]'s temporal attentions (see
    [`~UNetSpatioTemporalModel.enable_free_noise`]), so the U-Net is still called once per step, or, with
    `context_scope="unet"`, around the whole U-Net, called once per window (memory flat in the length); the noise is
    that of diffusers' `_prepare_latents_free_noise` and the prompt interpolation its `_lerp`, both inherited. Context
    sizes count latent frames (frames, for a VAE without temporal compression); prompt keys count video frames.
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
        context_scope: str = "attention",
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
            context_scope (`str`, *optional*, defaults to `"attention"`):
                What sees one window at a time (not in diffusers, whose FreeNoise is `"attention"`). `"attention"`:
                each temporal attention, blending the windows inside the layer; the U-Net runs once per step on the
                whole clip, so its memory grows with the length, and the result is diffusers' FreeNoise. `"unet"`:
                the whole U-Net runs once per window and the windows' predictions are blended with the weighting
                scheme (the context scheduling of Gen-L-Video and ComfyUI's AnimateDiff-Evolved); every layer, the
                temporal convolutions and norms included, sees one window as in training, and the U-Net's memory is
                bounded by the window, whatever the length. Each window runs in its own cache context, so caches
                such as DeepCache keep one state per window.
        """
        self._check_free_noise_unet()
        if getattr(self, "fifo_enabled", False):
            raise ValueError(
                "FIFO denoising is enabled; FreeNoise replaces it: call `pipe.disable_fifo_denoising()` first."
            )
        if context_scope not in FREE_NOISE_CONTEXT_SCOPES:
            raise ValueError(
                f"`context_scope` must be one of {list(FREE_NOISE_CONTEXT_SCOPES)}, got {context_scope!r}."
            )
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
        self._free_noise_context_scope = context_scope

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

    def _predict_noise(
        self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor, **unet_kwargs: Any
    ) -> torch.Tensor:
        r"""
        The U-Net's prediction for one denoising step, each call inside a named `cache_context` for diffusers' cache
        hooks (a U-Net without `CacheMixin` runs as is). One call on the whole clip, unless FreeNoise runs with
        `context_scope="unet"` and the clip is longer than a window: then one call per window of latent frames (with
        the window's per-frame text and conditioning latents), blended frame by frame with the weighting scheme.
        """
        num_frames = sample.shape[2]
        context_length = getattr(self, "_free_noise_context_length", None)
        if (
            context_length is None
            or getattr(self, "_free_noise_context_scope", "attention") != "unet"
            or num_frames <= context_length
        ):
            return self._call_unet("cond_uncond", sample, timestep, encoder_hidden_states, **unet_kwargs)
        windows = FreeNoiseWindows(context_length, self._free_noise_context_stride, self._free_noise_weighting_scheme)
        weights = torch.tensor(windows.weights(), device=sample.device, dtype=torch.float32).view(1, 1, -1, 1, 1)
        conditioning_latents = unet_kwargs.pop("conditioning_latents", None)
        shape = (sample.shape[0], self.unet.config.out_channels, num_frames, *sample.shape[3:])
        prediction = sample.new_zeros(shape, dtype=torch.float32)
        total = weights.new_zeros(1, 1, num_frames, 1, 1)
        rank, num_processes = self._window_process_share()
        for index, (start, end) in enumerate(windows.windows(num_frames)):
            if index % num_processes != rank:  # another process's window (`enable_parallel_windows`)
                continue
            if conditioning_latents is not None:
                unet_kwargs["conditioning_latents"] = conditioning_latents[:, :, start:end]
            window_prediction = self._call_unet(
                f"cond_uncond_window_{start}",
                sample[:, :, start:end],
                timestep,
                encoder_hidden_states[:, start:end] if encoder_hidden_states.ndim == 4 else encoder_hidden_states,
                **unet_kwargs,
            )
            prediction[:, :, start:end] += window_prediction.float() * weights
            total[:, :, start:end] += weights
        self._sum_over_window_processes(prediction, total)
        return prediction.div_(total).to(sample.dtype)  # in place: one clip-sized buffer fewer

    def _call_unet(
        self,
        context: str,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        **unet_kwargs: Any,
    ) -> torch.Tensor:
        cache_context = self.unet.cache_context(context) if isinstance(self.unet, CacheMixin) else nullcontext()
        with cache_context:
            return self.unet(
                sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False, **unet_kwargs
            )[0]

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
