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
"""[DeepCache](https://huggingface.co/papers/2312.00858) for [`UNetSpatioTemporalModel`], as diffusers' hooks.

The deep features of a U-Net's up path change slowly from one denoising step to the next. DeepCache runs a full step
every few steps and, in between, a cheap step: only the shallow branch is computed (the down layers up to the skip
connection `cache_branch_id` and the up layers from the one that consumes it), and the layers deeper than that branch
return what they returned at the last full step. A hook on the U-Net decides, once per call, whether the step is full;
a hook on each deep module computes and stores its output on a full step and returns the stored one on a cheap step.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.hooks.hooks import BaseState, StateManager
from torch import nn


_DEEP_CACHE_UNET_HOOK = "deep_cache_unet"
_DEEP_CACHE_BLOCK_HOOK = "deep_cache_block"
DEEP_CACHE_SCHEDULES = ("uniform", "non_uniform")


@dataclass
class DeepCacheConfig:
    r"""
    Configuration for [DeepCache](https://huggingface.co/papers/2312.00858) on [`UNetSpatioTemporalModel`]; enable it
    with `unet.enable_cache(DeepCacheConfig())`. The defaults are the setting recommended for this package's models
    (see `docs/benchmarks.md#deepcache`).

    Args:
        cache_interval (`int`, defaults to 3):
            Every how many U-Net calls a full step runs (with the `"uniform"` schedule), or the mean spacing of the full
            steps (with `"non_uniform"`). 1 runs every step in full: the output is the uncached one.
        cache_branch_id (`int`, defaults to 0):
            The skip connection whose branch cheap steps compute, counted from the shallowest: 0 is the output of
            `conv_in` (and `transformer_in`), then one per down layer and one per downsampler, in down-path order.
            Larger values compute more of the U-Net in cheap steps: slower and closer to the uncached output.
        schedule (`str`, defaults to `"uniform"`):
            `"uniform"`: full steps at calls 0, `cache_interval`, 2 `cache_interval`, ...; `"non_uniform"`: the
            paper's non-uniform 1:N strategy, as many full steps as the uniform schedule but placed densest around
            `non_uniform_center`, spread by `non_uniform_power`.
        non_uniform_center (`float`, defaults to 0.5):
            Where the full steps are densest, as a fraction of the calls of the generation (the paper's center `c`
            divided by the number of steps).
        non_uniform_power (`float`, defaults to 1.4):
            The paper's power `p` (> 1; larger packs the full steps closer to the center). Where full steps would
            coincide, the power is lowered by 0.02 until they are distinct, as the reference implementation does.
        num_steps_callback (`Callable[[], int]`, *optional*):
            Returns the number of U-Net calls of the running generation, e.g. `lambda: pipe.num_timesteps`; required
            by the `"non_uniform"` schedule, which places its full steps over the whole generation.
    """

    cache_interval: int = 3
    cache_branch_id: int = 0
    schedule: str = "uniform"
    non_uniform_center: float = 0.5
    non_uniform_power: float = 1.4
    num_steps_callback: Callable[[], int] | None = None

    def __post_init__(self):
        for field in ("cache_interval", "cache_branch_id"):
            value = getattr(self, field)
            minimum = 1 if field == "cache_interval" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"`{field}` must be an integer >= {minimum}, got {value!r}.")
        if self.schedule not in DEEP_CACHE_SCHEDULES:
            raise ValueError(f"`schedule` must be one of {DEEP_CACHE_SCHEDULES}, got {self.schedule!r}.")
        if not isinstance(self.non_uniform_center, (int, float)) or not 0 <= self.non_uniform_center <= 1:
            raise ValueError(
                f"`non_uniform_center` must be a fraction of the steps in [0, 1], got {self.non_uniform_center!r}."
            )
        if not isinstance(self.non_uniform_power, (int, float)) or not self.non_uniform_power > 1:
            raise ValueError(f"`non_uniform_power` must be a number > 1, got {self.non_uniform_power!r}.")
        if self.schedule == "non_uniform" and self.num_steps_callback is None:
            raise ValueError(
                "`num_steps_callback` is required by `schedule`='non_uniform' (e.g. `lambda: pipe.num_timesteps`)."
            )

    def full_steps(self, num_steps: int | None) -> set[int] | None:
        """The calls (0-based) that run in full; `None` for the uniform schedule, which needs no step count."""
        if self.schedule == "uniform" or self.cache_interval == 1:
            return None
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"`num_steps_callback` must return a positive number of U-Net calls, got {num_steps!r}.")
        return non_uniform_full_steps(
            num_steps, math.ceil(num_steps / self.cache_interval), self.non_uniform_center, self.non_uniform_power
        )


def non_uniform_full_steps(num_steps: int, num_full_steps: int, center: float, power: float) -> set[int]:
    r"""
    The paper's non-uniform 1:N schedule: `num_full_steps` of the steps `0 .. num_steps - 1`, step 0 always among
    them, spaced evenly in `|step - c| ** (1 / power)` on either side of the center step `c = center * num_steps`, so
    that they are densest around `c`. The power is lowered by 0.02 until no two steps coincide (at power 1 the
    spacing is uniform).
    """
    center_step = center * num_steps
    candidates = [power - 0.02 * index for index in range(int((power - 1) / 0.02) + 1)] + [1.0]
    for candidate in candidates:
        # evenly spaced in the warped axis sign(x) |x| ** (1 / p) from step 0 to step `num_steps`
        warped = torch.linspace(
            -(center_step ** (1 / candidate)), (num_steps - center_step) ** (1 / candidate), num_full_steps + 1
        )
        steps = torch.floor(warped.sign() * warped.abs() ** candidate + center_step).long().unique().tolist()
        # the first point is step 0 and the last is `num_steps` (past the end)
        steps = {0} | {step for step in steps[1:-1] if 0 < step < num_steps}
        if len(steps) == num_full_steps:
            return steps
    return set(range(0, num_steps, math.ceil(num_steps / num_full_steps)))


class DeepCacheState(BaseState):
    """Per cache context: the call counter, whether this call is full, and the deep modules' outputs of the last full
    step, by module name."""

    def __init__(self) -> None:
        self.step_index = 0
        self.is_full_step = True
        self.full_steps: set[int] | None = None
        self.sample_shape: torch.Size | None = None
        self.outputs: dict[str, Any] = {}

    def reset(self) -> None:
        self.__init__()


class DeepCacheUNetHook(ModelHook):
    """On the U-Net: decides once per call whether it runs in full, which the block hooks then follow."""

    _is_stateful = True

    def __init__(self, state_manager: StateManager, config: DeepCacheConfig):
        super().__init__()
        self.state_manager = state_manager
        self.config = config

    def new_forward(self, module: nn.Module, *args, **kwargs):
        sample = args[0] if args else kwargs["sample"]
        state: DeepCacheState = self.state_manager.get_state()
        if state.step_index == 0 and self.config.schedule == "non_uniform":
            state.full_steps = self.config.full_steps(self.config.num_steps_callback())
        if state.full_steps is None:
            is_scheduled = state.step_index % self.config.cache_interval == 0
        else:
            is_scheduled = state.step_index in state.full_steps
        # a new batch shape (guidance switched off by a callback, another video) has nothing cached yet
        state.is_full_step = is_scheduled or state.sample_shape != sample.shape
        if state.is_full_step:
            state.sample_shape = sample.shape
        output = self.fn_ref.original_forward(*args, **kwargs)
        state.step_index += 1
        return output

    def reset_state(self, module: nn.Module) -> nn.Module:
        self.state_manager.reset()
        return module


class DeepCacheBlockHook(ModelHook):
    """On a module deeper than the cached branch: computes and stores its output on a full step, returns the stored
    one on a cheap step."""

    def __init__(self, state_manager: StateManager, name: str):
        super().__init__()
        self.state_manager = state_manager
        self.name = name

    def new_forward(self, module: nn.Module, *args, **kwargs):
        state: DeepCacheState = self.state_manager.get_state()
        if not state.is_full_step:
            return state.outputs[self.name]
        output = self.fn_ref.original_forward(*args, **kwargs)
        state.outputs[self.name] = output
        return output


def _layer_modules(block: nn.Module, prefix: str, index: int) -> list[tuple[str, nn.Module]]:
    """The modules of layer `index` of a down or up block (resnet, temporal convolution, spatial and temporal
    transformers), those that exist."""
    modules = []
    for part in ("resnets", "temporal_convs", "attentions", "temporal_attentions"):
        layers = getattr(block, part)
        if layers is not None:
            modules.append((f"{prefix}.{part}.{index}", layers[index]))
    return modules


def num_skip_connections(unet: nn.Module) -> int:
    """The skip connections of the U-Net: `conv_in`'s output, then one per down layer and one per downsampler."""
    return 1 + sum(len(block.resnets) + (block.downsamplers is not None) for block in unet.down_blocks)


def deep_modules(unet: nn.Module, cache_branch_id: int) -> list[tuple[str, nn.Module]]:
    r"""
    The modules a cheap step skips, by name: every down layer and downsampler whose skip connection is deeper than
    `cache_branch_id`, the mid block, and every up layer that consumes such a skip connection. A block that lies
    entirely in the deep part is one module; at the branch, its layers are listed one by one.
    """
    modules = []
    # 1. down: the skip connection each layer and downsampler produces, in order
    skip_index = 0
    for level, block in enumerate(unet.down_blocks):
        prefix = f"down_blocks.{level}"
        if skip_index + 1 > cache_branch_id:
            modules.append((prefix, block))
            skip_index += len(block.resnets) + (block.downsamplers is not None)
            continue
        for index in range(len(block.resnets)):
            skip_index += 1
            if skip_index > cache_branch_id:
                modules.extend(_layer_modules(block, prefix, index))
        if block.downsamplers is not None:
            skip_index += 1
            if skip_index > cache_branch_id:
                modules.extend(
                    (f"{prefix}.downsamplers.{index}", layer) for index, layer in enumerate(block.downsamplers)
                )

    # 2. mid
    modules.append(("mid_block", unet.mid_block))

    # 3. up: layer `index` of a level consumes the skip connections from the deepest, as `forward` hands them out
    skip_indices = list(range(skip_index + 1))
    for level, block in enumerate(unet.up_blocks):
        prefix = f"up_blocks.{level}"
        num_layers = len(block.resnets)
        consumed = skip_indices[-num_layers:][::-1]
        skip_indices = skip_indices[:-num_layers]
        if min(consumed) > cache_branch_id:
            modules.append((prefix, block))
            continue
        for index, consumed_index in enumerate(consumed):
            if consumed_index > cache_branch_id:
                modules.extend(_layer_modules(block, prefix, index))
    return modules


def apply_deep_cache(unet: nn.Module, config: DeepCacheConfig) -> None:
    r"""
    Applies [DeepCache](https://huggingface.co/papers/2312.00858) to a [`UNetSpatioTemporalModel`] (what
    `unet.enable_cache(DeepCacheConfig(...))` calls). Each U-Net call must run inside `unet.cache_context(name)`.

    Args:
        unet (`UNetSpatioTemporalModel`): The U-Net.
        config (`DeepCacheConfig`): The schedule and the branch.
    """
    num_skips = num_skip_connections(unet)
    if config.cache_branch_id >= num_skips:
        raise ValueError(
            f"`cache_branch_id` must be below the {num_skips} skip connections of this U-Net, got "
            f"{config.cache_branch_id}."
        )
    state_manager = StateManager(DeepCacheState, (), {})
    HookRegistry.check_if_exists_or_initialize(unet).register_hook(
        DeepCacheUNetHook(state_manager, config), _DEEP_CACHE_UNET_HOOK
    )
    for name, module in deep_modules(unet, config.cache_branch_id):
        registry = HookRegistry.check_if_exists_or_initialize(module)
        registry.register_hook(DeepCacheBlockHook(state_manager, name), _DEEP_CACHE_BLOCK_HOOK)
    _invalidate_child_registries(unet)


def remove_deep_cache(unet: nn.Module) -> None:
    """Removes the hooks of [`apply_deep_cache`]: the U-Net computes every step in full again."""
    registry = HookRegistry.check_if_exists_or_initialize(unet)
    registry.remove_hook(_DEEP_CACHE_UNET_HOOK, recurse=True)
    registry.remove_hook(_DEEP_CACHE_BLOCK_HOOK, recurse=True)
    _invalidate_child_registries(unet)


def _invalidate_child_registries(unet: nn.Module) -> None:
    registry = HookRegistry.check_if_exists_or_initialize(unet)
    # diffusers >= 0.40 caches the child registries `cache_context` walks; older releases look them up on every call
    if hasattr(registry, "invalidate_child_registries_cache"):
        registry.invalidate_child_registries_cache()
