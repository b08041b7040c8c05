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
"""Windows of a long video shared out over the processes of a `torch.distributed` group."""

from typing import Any

import torch
import torch.distributed as dist


class VideoLatentParallelWindowsMixin:
    r"""
    Splits the U-Net calls of windowed generation (FreeNoise with `context_scope="unet"`, and FIFO denoising) over the
    processes of a `torch.distributed` process group: each process runs every `world_size`-th window and the
    predictions are summed over the processes, so every process steps the same latents and returns the same video.
    Every process must load the same pipeline and call it with the same arguments and generator seed.
    """

    def enable_parallel_windows(self, process_group: Any = None) -> None:
        r"""
        Shares the windows of each denoising step over the processes of `process_group` (the default group when
        `None`; `torch.distributed` must be initialised, e.g. by `torchrun` or `accelerate launch`).

        Args:
            process_group (`torch.distributed.ProcessGroup`, *optional*):
                The processes that share the windows; all of them must make the same call.
        """
        if not dist.is_available() or not dist.is_initialized():
            raise ValueError(
                "`enable_parallel_windows` needs an initialised torch.distributed process group: launch the processes"
                " with `torchrun` or `accelerate launch`, or call `torch.distributed.init_process_group` first."
            )
        self._parallel_windows_group = process_group
        self._parallel_windows = True

    def disable_parallel_windows(self) -> None:
        r"""Runs every window in this process again."""
        self._parallel_windows = False

    def _window_process_share(self) -> tuple[int, int]:
        # (this process's rank, number of processes) that share the windows; (0, 1) without parallel windows
        if not getattr(self, "_parallel_windows", False):
            return 0, 1
        group = self._parallel_windows_group
        return dist.get_rank(group), dist.get_world_size(group)

    def _sum_over_window_processes(self, *tensors: torch.Tensor) -> None:
        # in place: the sum over the processes of each process's share of the windows
        if not getattr(self, "_parallel_windows", False):
            return
        for tensor in tensors:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=self._parallel_windows_group)
