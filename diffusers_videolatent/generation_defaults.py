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
"""The call settings a saved pipeline recommends (`generation_defaults` in its `model_index.json`) and how a call
resolves what the caller leaves out.

One resolver serves the pipeline, the model card, the conversions, training and the command: a setting is the caller's,
else the pipeline's `generation_defaults`, else a fallback (the U-Net's `sample_size` times the VAE's spatial ratio for
the size). It reads plain configs, so it imports nothing of ours above the leaves.
"""

import inspect
import json
import math
import os
import warnings
from collections.abc import Mapping
from typing import Any

from ._checks import is_integer, is_real_number


# the settings of a call that a pipeline may recommend, and with them the words its text encoder was trained on
GENERATION_SETTING_KEYS = ("num_frames", "height", "width", "fps", "num_inference_steps", "guidance_scale")
GENERATION_DEFAULT_KEYS = GENERATION_SETTING_KEYS + ("vocabulary", "trained_ranges")
# the dials whose trained range a pipeline may record: a call outside it warns
TRAINED_RANGE_KEYS = ("num_frames", "height", "width", "fps")
# what a call uses when neither the caller nor the pipeline gives a value; the size comes from the U-Net's sample size
FALLBACK_GENERATION_SETTINGS = {"num_frames": 17, "fps": 8, "num_inference_steps": 50, "guidance_scale": 7.5}
FALLBACK_SAMPLE_SIZE = 32


def check_generation_defaults(generation_defaults: Mapping[str, Any] | None) -> dict[str, Any] | None:
    r"""
    Checks the recommended call settings of a pipeline and returns them as a plain dict.

    Args:
        generation_defaults (`dict`, *optional*):
            Any of `num_frames`, `height`, `width`, `num_inference_steps` (positive integers), `fps`, `guidance_scale`
            (finite numbers, `fps` positive), `vocabulary` (a list of words) and `trained_ranges` (for any of
            `num_frames`, `height`, `width`, `fps`, the `[low, high]` range the model was trained on; a call outside
            it warns, naming the range).
    """
    if generation_defaults is None:
        return None
    if not isinstance(generation_defaults, Mapping):
        raise TypeError(
            f"`generation_defaults` must be a dict or None, got {type(generation_defaults).__name__}: "
            f"{generation_defaults!r}."
        )
    unknown = sorted(set(generation_defaults) - set(GENERATION_DEFAULT_KEYS))
    if unknown:
        raise ValueError(
            f"`generation_defaults` has unknown key(s) {unknown}; allowed are {list(GENERATION_DEFAULT_KEYS)}."
        )
    for key, value in generation_defaults.items():
        if key == "vocabulary":
            valid = isinstance(value, list) and all(isinstance(word, str) for word in value)
        elif key == "trained_ranges":
            valid = isinstance(value, Mapping) and all(
                name in TRAINED_RANGE_KEYS
                and isinstance(bounds, (list, tuple))
                and len(bounds) == 2
                and all(is_real_number(bound) and math.isfinite(bound) for bound in bounds)
                and bounds[0] <= bounds[1]
                for name, bounds in value.items()
            )
        elif key in ("fps", "guidance_scale"):
            valid = is_real_number(value) and math.isfinite(value) and (key != "fps" or value > 0)
        else:
            valid = is_integer(value) and value >= 1
        if not valid:
            raise ValueError(f"`generation_defaults['{key}']` is not a valid value: {value!r}.")
    return dict(generation_defaults)


def load_generation_defaults(folder: str | os.PathLike) -> dict[str, Any] | None:
    r"""Reads and checks `generation_defaults` of a saved pipeline folder's `model_index.json`; `None` when absent."""
    path = os.path.join(folder, "model_index.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as file:
            content = json.load(file)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: cannot read it as JSON ({error}).") from error
    return check_generation_defaults(content.get("generation_defaults"))


def resolve_generation_settings(
    settings: Mapping[str, Any],
    generation_defaults: Mapping[str, Any] | None = None,
    unet_config: Mapping[str, Any] | None = None,
    vae_spatial_ratio: int | None = None,
    window_frames: int | None = None,
) -> dict[str, Any]:
    r"""
    Fills the call settings left `None` from a pipeline's `generation_defaults`, then from the fallbacks.

    Args:
        settings (`Mapping[str, Any]`):
            Any of `num_frames`, `height`, `width`, `fps`, `num_inference_steps`, `guidance_scale`, as given to the
            pipeline's `__call__` (`None` for not given).
        generation_defaults (`Mapping[str, Any]`, *optional*):
            The pipeline's recommended settings.
        unet_config (`Mapping[str, Any]`, *optional*):
            The U-Net's config: its `sample_size` (an int or `(height, width)`, in latent pixels) gives the fallback
            size, 32 when it has none.
        vae_spatial_ratio (`int`, *optional*):
            The VAE's spatial compression ratio, which turns the sample size into pixels; without it (no VAE) the
            size has no fallback and is left out unless given.
        window_frames (`int`, *optional*):
            With windows of frames (FreeNoise), the most frames the model sees at once: that, not `num_frames`, is
            checked against the trained range of `num_frames`.

    Returns:
        `dict`: Every one of those settings (`height`/`width` only when they could be resolved). A setting outside the
        `trained_ranges` of `generation_defaults` gives a `UserWarning` naming the range (the call still runs).
    """
    unknown = sorted(set(settings) - set(GENERATION_SETTING_KEYS))
    if unknown:
        raise TypeError(f"Unknown generation setting(s) {unknown}; allowed are {list(GENERATION_SETTING_KEYS)}.")
    defaults = dict(FALLBACK_GENERATION_SETTINGS)
    if vae_spatial_ratio is not None:
        sample_size = (unet_config or {}).get("sample_size") or FALLBACK_SAMPLE_SIZE
        sample_height, sample_width = (sample_size, sample_size) if is_integer(sample_size) else sample_size
        defaults["height"] = sample_height * vae_spatial_ratio
        defaults["width"] = sample_width * vae_spatial_ratio
    defaults.update(generation_defaults or {})
    resolved = {}
    for key in GENERATION_SETTING_KEYS:
        value = settings.get(key)
        if value is None:
            value = defaults.get(key)
        if value is not None:
            resolved[key] = value
    checked = dict(resolved)
    if window_frames is not None and "num_frames" in checked:
        checked["num_frames"] = min(checked["num_frames"], window_frames)
    warn_outside_trained_ranges(checked, (generation_defaults or {}).get("trained_ranges"))
    return resolved


def warn_outside_trained_ranges(settings: Mapping[str, Any], trained_ranges: Mapping[str, Any] | None) -> list[str]:
    r"""
    Warns (one `UserWarning`) when a setting lies outside the range the model was trained on.

    Args:
        settings (`Mapping[str, Any]`): Resolved call settings (`num_frames`, `height`, `width`, `fps`, ...).
        trained_ranges (`Mapping[str, Any]`, *optional*): `[low, high]` per dial, from `generation_defaults`.

    Returns:
        `list[str]`: what was said, one sentence per setting outside its range (empty when none).
    """
    outside = []
    for key, (low, high) in (trained_ranges or {}).items():
        value = settings.get(key)
        if value is not None and not low <= value <= high:
            outside.append(f"`{key}`={value} is outside the trained range [{low}, {high}]")
    if outside:
        warnings.warn(
            "; ".join(outside) + ": the model has not learnt these settings, expect worse videos.", UserWarning, 3
        )
    return outside


def call_defaults(pipeline_class: type) -> dict[str, Any]:
    r"""The defaults of a pipeline class's `__call__` (diffusers' own pipelines) for the settings above."""
    try:
        parameters = inspect.signature(pipeline_class.__call__).parameters
    except (TypeError, ValueError):
        return {}
    return {
        key: parameters[key].default
        for key in GENERATION_SETTING_KEYS
        if key in parameters and parameters[key].default not in (None, inspect.Parameter.empty)
    }
