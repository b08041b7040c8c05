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
"""Any length for [`VideoLatentPipeline`], one window at a time: FIFO-Diffusion's diagonal denoising."""

import copy
from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor

from .._checks import is_integer
from ..geometry import unet_max_latent_frames
from ..models import UNetSpatioTemporalModel
from ..models.unet_spatio_temporal import build_conditioning_latents


def fifo_windows(queue_length: int, context_length: int, lookahead: bool) -> list[tuple[int, int, int, int]]:
    r"""
    The U-Net calls of one FIFO iteration over a queue of `queue_length` latent frames: `(start, end, take_start,
    take_end)`, a window `[start, end)` of at most `context_length` frames whose predictions are kept for the frames
    `[take_start, take_end)`. Every frame is kept from exactly one window.

    Without lookahead the windows tile the queue (FIFO-Diffusion's latent partitioning), the last one ending at the
    queue's end. With lookahead (FIFO-Diffusion's lookahead denoising) they move by half a window and each frame is
    kept from the window in whose later, noisier half it lies, so that it sees the cleaner frames ahead of it; the
    first half window is kept from the first window. About twice the U-Net calls.
    """
    length = min(context_length, queue_length)
    stride = max(length // 2, 1) if lookahead else length
    windows = [(0, length, 0, length)]
    start = stride
    while start + length <= queue_length:
        windows.append((start, start + length, windows[-1][3], start + length))
        start += stride
    if windows[-1][3] < queue_length:
        windows.append((queue_length - length, queue_length, windows[-1][3], queue_length))
    return windows


class VideoLatentFIFOMixin:
    r"""
    [FIFO-Diffusion](https://huggingface.co/papers/2405.11473)'s diagonal denoising for [`VideoLatentPipeline`]:
    videos of any length from a U-Net trained on short clips, with the U-Net's memory bounded by one window whatever
    the length. A queue holds as many latent frames as there are denoising steps, each one step less noisy than the
    next; at each iteration the U-Net denoises the queue (in windows of `context_length` frames, each frame at its
    own timestep), every frame takes one step of its own scheduler, the clean frame at the head leaves the queue and
    a frame of fresh noise joins at the tail. Each frame owns a copy of the pipeline's scheduler and goes through the
    whole schedule in order, so every diffusers scheduler works, multistep ones included. The queue starts as
    FIFO-Diffusion starts it: the first frames denoised together, each kept at the step it needs.
    """

    @property
    def fifo_enabled(self) -> bool:
        """Whether [`~VideoLatentFIFOMixin.enable_fifo_denoising`] is on."""
        return getattr(self, "_fifo_context_length", None) is not None

    def enable_fifo_denoising(self, context_length: int | None = None, lookahead_denoising: bool = True) -> None:
        r"""
        Generates with diagonal denoising: `num_frames` is no longer capped by the U-Net's frame-position table, and
        the U-Net sees one window at a time whatever the length (what still grows is the video's latents and their
        noise; docs/long_videos.md has the measured memory). The number of denoising steps is the queue's length:
        with 25 steps each U-Net call sees windows of a 25-frame queue.

        Args:
            context_length (`int`, *optional*):
                The latent frames the U-Net sees at once; at most what its frame-position table holds
                (`temporal_max_frames`), which is the default.
            lookahead_denoising (`bool`, *optional*, defaults to `True`):
                Denoise each frame in a window where it follows cleaner frames (about twice the U-Net calls), as
                FIFO-Diffusion recommends; `False` tiles the queue with windows.
        """
        if not isinstance(self.unet, UNetSpatioTemporalModel):
            raise TypeError(
                "FIFO denoising gives each frame its own timestep, which needs a `UNetSpatioTemporalModel`; the U-Net"
                f" is a {type(self.unet).__name__} (convert it with `UNetSpatioTemporalModel.from_unet3d(unet)`)."
            )
        if getattr(self, "free_noise_enabled", False):
            raise ValueError(
                "FreeNoise is enabled; FIFO denoising replaces it: call `pipe.disable_free_noise()` first."
            )
        table = unet_max_latent_frames(self.unet.config)
        if context_length is None:
            if table is None:
                raise ValueError(
                    "`context_length` is None, but the U-Net has no frame-position table to take it from; pass the"
                    " number of latent frames per window."
                )
            context_length = table
        if not is_integer(context_length) or context_length < 1:
            raise ValueError(f"`context_length` must be an integer >= 1, got {context_length!r}.")
        if table is not None and context_length > table:
            raise ValueError(
                f"`context_length` is {context_length}, but the U-Net's frame-position table holds {table} latent"
                " frames (`temporal_max_frames`)."
            )
        if not isinstance(lookahead_denoising, bool):
            raise TypeError(f"`lookahead_denoising` must be a bool, got {type(lookahead_denoising).__name__}.")
        self._fifo_context_length = int(context_length)
        self._fifo_lookahead = lookahead_denoising

    def disable_fifo_denoising(self) -> None:
        r"""Generates with the usual loop again: all frames at one timestep, the length capped by the table."""
        self._fifo_context_length = None

    def _check_fifo_inputs(self, video: Any, callback_on_step_end: Any) -> None:
        if not self.fifo_enabled:
            return
        if video is not None:
            raise ValueError(
                "`video` is not supported with FIFO denoising (frames enter its queue as pure noise); use"
                " `pipe.enable_free_noise(...)` for long video-to-video, or `pipe.disable_fifo_denoising()`."
            )
        if callback_on_step_end is not None:
            raise ValueError(
                "`callback_on_step_end` is not supported with FIFO denoising, whose iterations are not steps of the"
                " whole video; pass None or call `pipe.disable_fifo_denoising()`."
            )

    def _fifo_denoise(
        self,
        latents: torch.Tensor,
        prompt_embeds: torch.Tensor,
        timesteps: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None,
        extra_step_kwargs: dict[str, Any],
        fps: float | None,
        image_latents: torch.Tensor | None,
        image_noise: torch.Tensor | None,
    ) -> torch.Tensor:
        r"""
        Denoises `latents` (the starting noise `(B, C, F, H, W)`, one frame per latent frame of the video) by diagonal
        denoising and returns the clean latents. `prompt_embeds` are `[uncond, cond]` under guidance, once per video
        `(2B, L, D)` or once per latent frame `(2B, F, L, D)` (a travelling prompt); `image_latents` is the image's
        latent `(B, C, 1, H, W)` for image-to-video (`image_noise` its noise, for a U-Net without conditioning
        channels, whose first frame is kept on the image).
        """
        batch_size, num_channels, num_frames, height, width = latents.shape
        queue_length = len(timesteps)
        device, dtype = latents.device, latents.dtype
        # the noise of every frame that enters the queue: the video's frames, then the tail's (never finished)
        tail_noise = randn_tensor(
            (batch_size, num_channels, queue_length, height, width), generator=generator, device=device, dtype=dtype
        )
        noise = torch.cat([latents, tail_noise * getattr(self.scheduler, "init_noise_sigma", 1.0)], dim=2)
        conditioning_channels = self.unet.config.get("conditioning_channels", 0) or 0
        conditioning = None
        if conditioning_channels > 0:  # the image (if any) at frame 0, zeros (mask 0) at every other frame
            conditioning = build_conditioning_latents(noise, conditioning_channels, image_latents)
            image_latents = None  # the U-Net draws frame 0 from the conditioning, as in the usual loop
        pristine = copy.deepcopy(self.scheduler)  # set to `timesteps`: every frame starts its own copy from here

        def predict(queue: torch.Tensor, first_frame: int, steps_done: list[int], schedulers: list) -> torch.Tensor:
            # the guided prediction for every frame of the queue, each at the timestep of its own next step
            frame_timesteps = torch.stack([timesteps[step] for step in steps_done])  # (Q,)
            model_input = torch.cat(
                [
                    scheduler.scale_model_input(queue[:, :, i : i + 1], frame_timesteps[i])
                    if hasattr(scheduler, "scale_model_input")
                    else queue[:, :, i : i + 1]
                    for i, scheduler in enumerate(schedulers)
                ],
                dim=2,
            )
            prediction = queue.new_zeros((queue.shape[0], self.unet.config.out_channels, *queue.shape[2:]))
            rank, num_processes = self._window_process_share()
            windows = fifo_windows(queue.shape[2], self._fifo_context_length, self._fifo_lookahead)
            for index, (start, end, take_start, take_end) in enumerate(windows):
                if index % num_processes != rank:  # another process's window (`enable_parallel_windows`)
                    continue
                window_prediction = self._fifo_window(
                    f"fifo_window_{start}",  # one cache state per place in the queue
                    model_input[:, :, start:end],
                    frame_timesteps[start:end],
                    range(first_frame + start, first_frame + end),
                    prompt_embeds,
                    conditioning,
                    fps,
                )
                prediction[:, :, take_start:take_end] = window_prediction[:, :, take_start - start : take_end - start]
            self._sum_over_window_processes(prediction)  # each frame is kept from one window: the sum assembles them
            return prediction

        def step(queue, prediction, first_frame, steps_done, schedulers) -> torch.Tensor:
            frames = []
            for i, scheduler in enumerate(schedulers):
                frame = scheduler.step(
                    prediction[:, :, i : i + 1],
                    timesteps[steps_done[i]],
                    queue[:, :, i : i + 1],
                    **extra_step_kwargs,
                    return_dict=False,
                )[0].to(dtype)
                if image_latents is not None and first_frame + i == 0:
                    # keep the first frame on the image, noised to the level its next step expects
                    done = steps_done[i] + 1
                    frame = (
                        self.add_noise(image_latents, image_noise, timesteps[done : done + 1])
                        if done < queue_length
                        else image_latents
                    )
                frames.append(frame)
            return torch.cat(frames, dim=2)

        queue = noise[:, :, :queue_length].clone()
        if image_latents is not None:
            queue[:, :, :1] = self.add_noise(image_latents, image_noise, timesteps[:1])
        with self.progress_bar(total=queue_length - 1 + num_frames) as progress_bar:
            # 1. the starting queue: the first frames denoised together; frame i is kept after Q - 1 - i steps
            schedulers = [copy.deepcopy(pristine) for _ in range(queue_length)]
            start_queue, start_schedulers = [None] * queue_length, [None] * queue_length
            for k in range(queue_length):
                keep = queue_length - 1 - k  # the frame that has had k steps, as the queue needs it
                start_queue[keep] = queue[:, :, keep : keep + 1].clone()
                start_schedulers[keep] = copy.deepcopy(schedulers[keep])
                if k == queue_length - 1 or self.interrupt:
                    break
                self._current_timestep = timesteps[k]
                prediction = predict(queue, 0, [k] * queue_length, schedulers)
                queue = step(queue, prediction, 0, [k] * queue_length, schedulers)
                progress_bar.update()
            finished = []
            if not self.interrupt:
                queue, schedulers = torch.cat(start_queue, dim=2), start_schedulers
            steps_done = [queue_length - 1 - i for i in range(queue_length)]

            # 2. the FIFO: each iteration finishes the head frame and takes in a frame of fresh noise at the tail
            for first_frame in range(num_frames):
                if self.interrupt:
                    break
                self._current_timestep = timesteps[-1]
                prediction = predict(queue, first_frame, steps_done, schedulers)
                queue = step(queue, prediction, first_frame, steps_done, schedulers)
                finished.append(queue[:, :, :1])
                entering = first_frame + queue_length
                queue = torch.cat([queue[:, :, 1:], noise[:, :, entering : entering + 1]], dim=2)
                schedulers = schedulers[1:] + [copy.deepcopy(pristine)]
                progress_bar.update()
        self._current_timestep = None
        # the finished frames; after an interrupt, the frames still in the queue (noisy) and the noise of the others
        return torch.cat([*finished, queue, noise[:, :, len(finished) + queue_length :]], dim=2)[:, :, :num_frames]

    def _fifo_window(
        self,
        context: str,
        sample: torch.Tensor,
        frame_timesteps: torch.Tensor,
        frames: range,
        prompt_embeds: torch.Tensor,
        conditioning: torch.Tensor | None,
        fps: float | None,
    ) -> torch.Tensor:
        # one guided U-Net call on a window of frames `frames` (indices in the video), each at its own timestep
        guidance = self.do_classifier_free_guidance and prompt_embeds.shape[0] == 2 * sample.shape[0]
        model_input = torch.cat([sample] * 2) if guidance else sample
        if prompt_embeds.ndim == 4:  # a travelling prompt: the frames' own texts (the last one past the video's end)
            last = prompt_embeds.shape[1] - 1
            encoder_hidden_states = prompt_embeds[:, [min(frame, last) for frame in frames]]
        else:
            encoder_hidden_states = prompt_embeds
        if not guidance:
            encoder_hidden_states = encoder_hidden_states[-sample.shape[0] :]
        unet_kwargs = {}
        if fps is not None:
            unet_kwargs["fps"] = torch.full((model_input.shape[0],), float(fps), device=sample.device)
        if conditioning is not None:
            window_conditioning = conditioning[:, :, frames.start : frames.stop]
            unet_kwargs["conditioning_latents"] = torch.cat([window_conditioning] * (2 if guidance else 1))
        timestep = frame_timesteps.to(sample.device)[None].expand(model_input.shape[0], -1)  # (B, F)
        noise_pred = self._call_unet(
            context,
            model_input,
            timestep,
            encoder_hidden_states,
            cross_attention_kwargs=self.cross_attention_kwargs,
            **unet_kwargs,
        )
        return self._apply_guidance(noise_pred) if guidance else noise_pred
