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
"""
What differs between the diffusers releases setup.cfg admits (0.38 to 0.42), in one place.

- `from_pretrained`'s dtype argument: diffusers 0.40 renamed `torch_dtype` to `dtype` and deprecated the old name;
  0.38 and 0.39 read only `torch_dtype` (a `dtype` there is ignored with a warning, and the weights stay float32).
  Our classes take either name on every release ([`dtype_argument`]).
"""

import diffusers
from packaging import version


DIFFUSERS_VERSION = version.parse(version.parse(diffusers.__version__).base_version)

# the name the installed diffusers' `from_pretrained` reads the dtype from
FROM_PRETRAINED_DTYPE = "dtype" if DIFFUSERS_VERSION >= version.parse("0.40.0") else "torch_dtype"


def dtype_argument(kwargs: dict) -> dict:
    r"""
    Renames a `from_pretrained` call's `dtype` or `torch_dtype` to the name the installed diffusers reads.

    Args:
        kwargs (`dict`):
            The keyword arguments of a `from_pretrained` call; not changed.

    Returns:
        `dict`: The same arguments, with at most one dtype entry, under [`FROM_PRETRAINED_DTYPE`].
    """
    if kwargs.get("dtype") is not None and kwargs.get("torch_dtype") is not None:
        raise ValueError(
            f"Pass the dtype once, as `dtype` or `torch_dtype`; got dtype={kwargs['dtype']!r} and "
            f"torch_dtype={kwargs['torch_dtype']!r}."
        )
    kwargs = dict(kwargs)
    dtype = kwargs.pop("dtype", None)
    torch_dtype = kwargs.pop("torch_dtype", None)
    if dtype is not None or torch_dtype is not None:
        kwargs[FROM_PRETRAINED_DTYPE] = dtype if dtype is not None else torch_dtype
    return kwargs
