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
"""Reading and checking config values, shared by our models and the conversions into them (a leaf)."""

import math
from typing import Any

from .._checks import is_integer


def per_level(value: Any, name: str, num_levels: int) -> tuple:
    r"""
    Returns a per-level config value as a tuple of one entry per level: a list or tuple as it is (it must have
    `num_levels` entries), anything else repeated for every level.
    """
    if isinstance(value, (list, tuple)):
        if len(value) != num_levels:
            raise ValueError(
                f"`{name}` must have one entry per level ({num_levels} levels, from `block_out_channels`), "
                f"got {len(value)}: {value}."
            )
        return tuple(value)
    return (value,) * num_levels


def _values(value: Any) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def check_config_integers(config: dict[str, Any], minimum: int) -> None:
    r"""
    Raises a `ValueError` naming the key (as in `config.json`) when a value of `config`, or an entry of a per-level
    list, is not an integer of at least `minimum` (`bool` is not taken for an integer).
    """
    for key, value in config.items():
        for entry in _values(value):
            if not is_integer(entry) or entry < minimum:
                kind = "positive integers" if minimum == 1 else f"integers >= {minimum}"
                raise ValueError(f"Config key `{key}` must hold {kind}, got {value!r}.")


def check_config_choice(key: str, value: Any, choices) -> None:
    r"""Raises a `ValueError` naming the config key `key` when `value` is not one of `choices`."""
    if value not in choices:
        raise ValueError(f"Config key `{key}` must be one of {sorted(choices)}, got {value!r}.")


def check_config_number(key: str, value: Any, minimum: float, maximum: float = math.inf, open_minimum=False) -> None:
    r"""Raises a `ValueError` naming the config key `key` unless `value` is a finite number in the range."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not number or value < minimum or value > maximum or (open_minimum and value == minimum):
        bound = f"> {minimum}" if open_minimum else f">= {minimum}"
        if maximum != math.inf:
            bound += f" and <= {maximum}"
        raise ValueError(f"Config key `{key}` must be a finite number {bound}, got {value!r}.")
