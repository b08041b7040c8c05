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
"""Setting a scheduler's schedule for a call: a step count or custom `timesteps`/`sigmas`, and the shift that
flow-matching schedules with `use_dynamic_shifting` take from the size of the latents.

`retrieve_timesteps` is the one of diffusers' Stable Diffusion pipelines, less the checks that `check_inputs` has done;
importing it from there would load the image pipelines and their image processors (which warn without torchvision).
"""

from typing import Any

import torch
from diffusers.schedulers import SchedulerMixin


def timestep_shift_for_tokens(
    num_tokens: int,
    base_num_tokens: int = 256,
    max_num_tokens: int = 4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
) -> float:
    r"""
    The `mu` of a flow-matching schedule with `use_dynamic_shifting`: linear in the number of latent tokens, `base_shift`
    at `base_num_tokens` and `max_shift` at `max_num_tokens` (the scheduler config's `base_image_seq_len`, ...).
    """
    slope = (max_shift - base_shift) / (max_num_tokens - base_num_tokens)
    return num_tokens * slope + (base_shift - slope * base_num_tokens)


def retrieve_timesteps(
    scheduler: SchedulerMixin,
    num_inference_steps: int | None,
    device: torch.device,
    timesteps: list[int] | None = None,
    sigmas: list[float] | None = None,
    **kwargs,
) -> tuple[torch.Tensor, int]:
    r"""
    Sets the scheduler's schedule from a step count, or from explicit `timesteps` or `sigmas` (which `check_inputs`
    has checked its `set_timesteps` accepts); returns the scheduler's timesteps and their number.
    """
    if timesteps is not None or sigmas is not None:
        schedule = {"timesteps": timesteps} if timesteps is not None else {"sigmas": sigmas}
        scheduler.set_timesteps(**schedule, device=device, **kwargs)
        return scheduler.timesteps, len(scheduler.timesteps)
    scheduler.set_timesteps(num_inference_steps, device=device, **kwargs)
    return scheduler.timesteps, num_inference_steps


def dynamic_shift_kwargs(scheduler: SchedulerMixin, num_tokens: int) -> dict[str, Any]:
    r"""
    The extra `set_timesteps` arguments of `scheduler` for latents of `num_tokens` tokens (frames x height x width):
    `{"mu": ...}` from its config (`base_image_seq_len`, `max_image_seq_len`, `base_shift`, `max_shift`) when it has
    `use_dynamic_shifting`, else none.
    """
    config = scheduler.config
    if not config.get("use_dynamic_shifting", False):
        return {}
    mu = timestep_shift_for_tokens(
        num_tokens,
        config.get("base_image_seq_len", 256),
        config.get("max_image_seq_len", 4096),
        config.get("base_shift", 0.5),
        config.get("max_shift", 1.15),
    )
    return {"mu": mu}
