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
"""Reading per-level config values, shared by [`UNetSpatioTemporalModel`] and the conversions into it (a leaf)."""

from typing import Any


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
