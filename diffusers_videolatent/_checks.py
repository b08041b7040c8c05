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
"""The checks of single call arguments that the pipeline, its video processor and the generation defaults share.

Each raises a `TypeError` (wrong kind) or `ValueError` (wrong value) that names the argument, says what it received and
what is allowed.
"""

import inspect
import math
import numbers
from collections.abc import Callable
from typing import Any

import torch


def is_real_number(value: Any) -> bool:
    r"""Whether `value` is a real number (a `bool` is not)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    r"""Whether `value` is an `int` (a `bool` is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_finite_number(name: str, value: Any, minimum: float | None = None, inclusive: bool = True) -> None:
    r"""Checks that `value` is a real number, neither NaN nor infinite, and at least (or above) `minimum` if given."""
    if not is_real_number(value):
        raise TypeError(f"`{name}` must be a number, got {type(value).__name__}: {value!r}.")
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}.")
    if minimum is not None and (value < minimum if inclusive else value <= minimum):
        bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
        raise ValueError(f"`{name}` must be {bound}, got {value!r}.")


def check_integer(name: str, value: Any, minimum: int = 1) -> None:
    r"""Checks that `value` is an integer of at least `minimum`: a `TypeError` for another kind, else a `ValueError`."""
    if not is_integer(value):
        raise TypeError(f"`{name}` must be an integer, got {value!r}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}.")


def check_finite_tensor(name: str, value: torch.Tensor) -> None:
    r"""Checks that `value` is a floating-point tensor without NaN or infinite entries (its shape is the caller's)."""
    if not value.is_floating_point():
        raise TypeError(f"`{name}` must be a floating-point tensor, got dtype {value.dtype}.")
    finite = torch.isfinite(value)
    if not finite.all():
        raise ValueError(
            f"`{name}` holds {int((~finite).sum())} non-finite values (NaN or inf) of {value.numel()}; pass finite"
            " numbers."
        )


def check_schedule(name: str, values: Any) -> None:
    r"""Checks custom `timesteps` or `sigmas`: a non-empty sequence of finite numbers >= 0."""
    if isinstance(values, torch.Tensor) or hasattr(values, "tolist"):
        values = values.tolist()
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"`{name}` must be a list of numbers, got {type(values).__name__}.")
    if len(values) == 0:
        raise ValueError(f"`{name}` is empty; pass at least one value or use `num_inference_steps`.")
    for index, value in enumerate(values):
        check_finite_number(f"{name}[{index}]", value)
        if value < 0:
            raise ValueError(f"`{name}[{index}]` must be >= 0, got {value!r}.")


def check_strings(name: str, value: Any) -> None:
    r"""Checks that `value` is a string or a non-empty list of strings."""
    if not (isinstance(value, str) or (isinstance(value, list) and all(isinstance(entry, str) for entry in value))):
        raise TypeError(f"`{name}` must be a string or a list of strings, got {type(value).__name__}: {value!r}.")
    if isinstance(value, list) and len(value) == 0:
        raise ValueError(f"`{name}` is an empty list; pass at least one {name.replace('_', ' ')}.")


def check_prompt(prompt: Any, prompt_embeds: Any) -> int:
    r"""Checks that exactly one of `prompt` and `prompt_embeds` is given; returns the number of prompts."""
    if prompt is not None and prompt_embeds is not None:
        raise ValueError(
            f"Pass only one of `prompt` and `prompt_embeds`, got `prompt`={prompt!r} and `prompt_embeds` of shape"
            f" {tuple(getattr(prompt_embeds, 'shape', ()))}."
        )
    if prompt is None and prompt_embeds is None:
        raise ValueError("Pass one of `prompt` or `prompt_embeds`; both are None.")
    if prompt is not None:
        check_strings("prompt", prompt)
        return 1 if isinstance(prompt, str) else len(prompt)
    if not isinstance(prompt_embeds, torch.Tensor) or prompt_embeds.ndim != 3:
        raise ValueError(
            "`prompt_embeds` must be a tensor of shape (batch_size, sequence_length, hidden_size), got"
            f" {getattr(prompt_embeds, 'shape', type(prompt_embeds).__name__)}."
        )
    return prompt_embeds.shape[0]


def check_generator(generator: Any, num_videos: int, batch_size: int) -> None:
    r"""Checks `generator`: one `torch.Generator`, or a list of one per generated video (`num_videos` in all)."""
    if generator is not None and not (
        isinstance(generator, torch.Generator)
        or (isinstance(generator, list) and all(isinstance(entry, torch.Generator) for entry in generator))
    ):
        raise TypeError(
            "`generator` must be a `torch.Generator` or a list of them (e.g. `torch.Generator().manual_seed(0)`),"
            f" got {type(generator).__name__}: {generator!r}."
        )
    if isinstance(generator, list) and len(generator) != num_videos:
        raise ValueError(
            f"`generator` is a list of {len(generator)} generators but the batch has {num_videos} videos"
            f" ({batch_size} prompts x {num_videos // batch_size} videos per prompt); pass one generator or one per"
            " video."
        )


def check_latents(latents: Any, expected_shape: tuple[int, ...]) -> None:
    r"""Checks user `latents`: a tensor (type first, then shape) of `expected_shape`, floating-point and finite."""
    if not isinstance(latents, torch.Tensor):
        shape = f" of shape {tuple(latents.shape)}" if hasattr(latents, "shape") else ""
        raise TypeError(f"`latents` must be a torch.Tensor, got {type(latents).__name__}{shape}.")
    if tuple(latents.shape) != tuple(expected_shape):
        raise ValueError(
            f"`latents` must have shape {tuple(expected_shape)} for this call, got {tuple(latents.shape)}."
        )
    check_finite_tensor("latents", latents)


def check_sampling_schedule(
    set_timesteps: Any, num_inference_steps: Any, timesteps: Any, sigmas: Any, strength: float | None = None
) -> None:
    r"""
    Checks the schedule of a call: custom `timesteps` or `sigmas` where the scheduler's `set_timesteps` takes them,
    else a step count; with a video-to-video `strength`, one that keeps at least one step.
    """
    if timesteps is not None and sigmas is not None:
        raise ValueError("Pass only one of `timesteps` and `sigmas`, not both.")
    accepted = inspect.signature(set_timesteps).parameters
    scheduler_name = type(getattr(set_timesteps, "__self__", None)).__name__
    for name, value in (("timesteps", timesteps), ("sigmas", sigmas)):
        if value is None:
            continue
        check_schedule(name, value)
        if name not in accepted:
            raise ValueError(
                f"`{name}` was passed but {scheduler_name}.set_timesteps does not accept custom {name}; use a"
                " scheduler that does or pass `num_inference_steps`."
            )
    if timesteps is not None or sigmas is not None:
        return
    check_integer("num_inference_steps", num_inference_steps)
    if strength and int(num_inference_steps * strength) == 0:
        raise ValueError(
            f"`strength`={strength} keeps none of the {num_inference_steps} steps (`num_inference_steps`); raise one"
            " of them, or pass `strength=0` for the video's reconstruction."
        )


# Classifier-free guidance scales above this are far outside what text-to-video models use (about 1 to 20); named as
# the likely cause when a video comes out non-finite.
LARGE_GUIDANCE_SCALE = 100.0


def warn_if_not_finite(output: torch.Tensor, name: str, cause: Callable[[], str], logger: Any) -> None:
    r"""Warns on `logger` when a generated `output` (`name`: "latents" or "frames") holds non-finite values, naming
    `cause()`."""
    # the inputs were all finite, so a non-finite result comes from an overflow during sampling or decoding
    finite = torch.isfinite(output)
    if finite.all():
        return
    logger.warning(
        f"The generated {name} hold {int((~finite).sum())} non-finite values (NaN or inf) of {output.numel()},"
        f" so the video is not usable. Likely cause: {cause()}."
    )


def likely_cause_of_not_finite(
    guidance_scale: float, unet_dtype: torch.dtype, vae_dtype: torch.dtype, timesteps_given: bool
) -> str:
    r"""Names the likely cause of a non-finite video generated from finite inputs, and what to change."""
    if abs(guidance_scale) > LARGE_GUIDANCE_SCALE:
        return (
            f"`guidance_scale`={guidance_scale:g} is far beyond the usual values (about 1 to 20), so the guided"
            " noise prediction overflowed; use a smaller `guidance_scale`"
        )
    if unet_dtype in (torch.float16, torch.bfloat16) or vae_dtype in (torch.float16, torch.bfloat16):
        return (
            f"the U-Net ({unet_dtype}) or the VAE ({vae_dtype}) overflowed in half precision; load the pipeline with"
            " `torch_dtype=torch.float32`"
        )
    if timesteps_given:
        return "the custom `timesteps` or `sigmas` do not suit the scheduler; try `num_inference_steps` instead"
    return "the model's weights or the scheduler's settings; try another scheduler or `guidance_scale`"
