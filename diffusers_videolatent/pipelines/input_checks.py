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
"""The checks of `VideoLatentPipeline.check_inputs` that read the pipeline's components.

Each takes the numbers it compares (the U-Net's `cross_attention_dim`, the VAE's ratios, ...) as arguments and raises a
`ValueError` or `TypeError` naming the argument, what it received and what is allowed. The primitives that know nothing
of a pipeline (a finite number, a prompt, a generator) are in `diffusers_videolatent._checks`.
"""

from typing import Any

import torch

from .._checks import check_finite_tensor, check_strings, is_integer
from ..geometry import check_frame_table, check_num_frames, largest_num_frames


OUTPUT_TYPES = ("pil", "np", "pt", "latent")


def check_negative_prompt(negative_prompt: Any, negative_prompt_embeds: Any, batch_size: int) -> None:
    r"""A negative prompt is a string, or one string per prompt, and is not passed twice."""
    if negative_prompt is not None and negative_prompt_embeds is not None:
        raise ValueError("Pass only one of `negative_prompt` and `negative_prompt_embeds`, not both.")
    if negative_prompt is None:
        return
    check_strings("negative_prompt", negative_prompt)
    if isinstance(negative_prompt, list) and len(negative_prompt) != batch_size:
        raise ValueError(
            f"`negative_prompt` has {len(negative_prompt)} entries but the prompt batch has {batch_size};"
            " pass one string or one negative prompt per prompt."
        )


def check_prompt_embeds(
    prompt_embeds: Any,
    negative_prompt_embeds: Any,
    batch_size: int,
    cross_attention_dim: int,
    tokenizer_max_length: int | None,
) -> None:
    r"""
    The embeddings' width is the U-Net's `cross_attention_dim`, and guidance concatenates both halves, so they have one
    shape; negative embeddings given alone match the encoded prompt, `(batch_size, tokenizer_max_length, width)`.
    """
    for name, embeds in (("prompt_embeds", prompt_embeds), ("negative_prompt_embeds", negative_prompt_embeds)):
        if embeds is None:
            continue
        if not isinstance(embeds, torch.Tensor) or embeds.ndim != 3 or embeds.shape[-1] != cross_attention_dim:
            raise ValueError(
                f"`{name}` must have shape (batch_size, sequence_length, {cross_attention_dim}) to match the"
                f" U-Net's `cross_attention_dim`, got {tuple(getattr(embeds, 'shape', ()))}."
            )
        check_finite_tensor(name, embeds)
    if prompt_embeds is not None and negative_prompt_embeds is not None:
        if prompt_embeds.shape != negative_prompt_embeds.shape:
            raise ValueError(
                "`prompt_embeds` and `negative_prompt_embeds` must have the same shape, got"
                f" {tuple(prompt_embeds.shape)} and {tuple(negative_prompt_embeds.shape)}."
            )
    elif negative_prompt_embeds is not None and tokenizer_max_length is not None:
        expected_shape = (batch_size, tokenizer_max_length, cross_attention_dim)
        if tuple(negative_prompt_embeds.shape) != expected_shape:
            raise ValueError(
                f"`negative_prompt_embeds` must have shape {expected_shape} to match the encoded `prompt`, got"
                f" {tuple(negative_prompt_embeds.shape)}."
            )


def check_clip_skip(clip_skip: Any, num_text_encoder_layers: int | None) -> None:
    r"""`clip_skip` layers are skipped from the end, so at least one layer of the text encoder must remain."""
    if clip_skip is None:
        return
    if not is_integer(clip_skip) or clip_skip < 0:
        raise ValueError(f"`clip_skip` must be an integer >= 0 or None, got {clip_skip!r}.")
    if num_text_encoder_layers is not None and clip_skip >= num_text_encoder_layers:
        raise ValueError(
            f"`clip_skip` is {clip_skip}, but the text encoder has {num_text_encoder_layers} layers: skip at most"
            f" {num_text_encoder_layers - 1}."
        )


def check_pipeline_num_frames(
    num_frames: Any, temporal_ratio: int, max_latent_frames: int | None, video_length: int | None
) -> None:
    r"""
    `num_frames` follows the VAE's frame rule, fits the U-Net's frame-position table (`max_latent_frames`, `None` when
    the U-Net has none or a window bounds the frames it sees) and equals the length of the `video` to transform.
    """
    if not is_integer(num_frames) or num_frames < 1:
        raise ValueError(f"`num_frames` must be an integer >= 1, got {num_frames!r}.")
    check_num_frames(num_frames, temporal_ratio)
    advice = (
        f". Longer videos: turn windowing on, `pipe.enable_free_noise(context_length={max_latent_frames})`"
        " (or `pipe.enable_fifo_denoising()`)"
    )
    if video_length is not None and max_latent_frames is not None:
        advice = f"; trim `video` to at most {largest_num_frames(max_latent_frames, temporal_ratio)} frames{advice}"
    check_frame_table(num_frames, temporal_ratio, max_latent_frames, advice=advice)
    if video_length is not None and video_length != num_frames:
        raise ValueError(
            f"`video` has {video_length} frames but `num_frames` is {num_frames}; leave `num_frames` unset in"
            " video-to-video to use the video's length."
        )


def check_outputs(
    output_type: Any,
    callback_on_step_end: Any,
    callback_on_step_end_tensor_inputs: list[str] | None,
    callback_tensor_inputs: list[str],
    decode_chunk_size: Any,
) -> None:
    r"""The output type, the step callback and the tensors it may read, and the decoding chunk."""
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"`output_type` must be one of {list(OUTPUT_TYPES)}, got {output_type!r}.")
    if callback_on_step_end is not None and not callable(callback_on_step_end):
        raise TypeError(
            f"`callback_on_step_end` must be callable (a function or a `PipelineCallback`), got"
            f" {type(callback_on_step_end).__name__}."
        )
    unknown = [name for name in callback_on_step_end_tensor_inputs or [] if name not in callback_tensor_inputs]
    if unknown:
        raise ValueError(
            f"`callback_on_step_end_tensor_inputs` has unknown entries {unknown}; allowed are {callback_tensor_inputs}."
        )
    if decode_chunk_size is not None and (not is_integer(decode_chunk_size) or decode_chunk_size < 1):
        raise ValueError(f"`decode_chunk_size` must be an integer >= 1 or None, got {decode_chunk_size!r}.")
