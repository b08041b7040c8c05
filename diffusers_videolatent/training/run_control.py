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
What keeps a training run safe on a shared cluster, for both training scripts: one run per `--output_dir` (a lock
naming the process that holds it), a clean stop on SIGTERM/SIGINT (the current step finishes, a checkpoint is saved, the
run says how to resume and exits non-zero), and a stop with an explanation when the loss or the gradients stop being
finite (no checkpoint of non-finite weights is ever written).
"""

import argparse
import functools
import math
import os
import shlex
import signal
import sys
from collections.abc import Callable, Iterable

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from ..atomic import DestinationInUseError, destination_lock
from .sharding import all_finite, full_tensor


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


_ACTIVE: list["RunControl"] = []


def closes_run_control(main: Callable) -> Callable:
    r"""Decorates a training script's `main`: the [`RunControl`] it started is closed however `main` ends (its
    signal handlers restored, its lock released), also when `main` runs inside another program such as a test."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        finally:
            while _ACTIVE:
                _ACTIVE.pop().close()

    return wrapper


class TrainingDivergedError(RuntimeError):
    r"""The loss, the gradients or the weights of a training run stopped being finite."""


def divergence_message(step: int, what: str, args: argparse.Namespace, precision: str | None) -> str:
    r"""The error of a run that diverged at `step`: what was not finite and what to change."""
    causes = [f"the learning rate is too high (`--learning_rate` {args.learning_rate:g}: try a tenth of it"]
    causes[0] += ", or a warm-up with `--lr_warmup_steps`)" if not getattr(args, "lr_warmup_steps", 0) else ")"
    max_grad_norm = getattr(args, "max_grad_norm", 0.0)
    if not max_grad_norm or max_grad_norm <= 0:
        causes.append("the gradients are not clipped (`--max_grad_norm` is 0: use 1.0)")
    else:
        causes.append(f"the gradient clipping is loose (`--max_grad_norm` {max_grad_norm:g}: try a smaller one)")
    if precision in ("fp16", "bf16"):
        causes.append(f"the {precision} precision overflows (train with `--mixed_precision no`, or bf16 for fp16)")
    else:
        causes.append("the data has non-finite values, or the model's configuration is unstable")
    return (
        f"Training diverged at step {step}: {what} is not finite. No checkpoint of this step was saved and none was "
        "pruned for it. Likely causes: "
        + "; ".join(causes)
        + ". A resumed run keeps its checkpoint's learning rate: start a new run to change it."
    )


def clip_gradients(accelerator: Accelerator, parameters: Iterable[torch.nn.Parameter], max_grad_norm: float):
    r"""
    Clips the gradients to `max_grad_norm` (not at all when it is 0 or less) and returns their total norm before
    clipping, for [`RunControl.check_step`]. Call it where gradients are synchronised.
    """
    # an infinite limit measures the norm and scales every gradient by exactly 1
    limit = max_grad_norm if max_grad_norm and max_grad_norm > 0 else math.inf
    # with `--fsdp` the norm is a sharded tensor: its whole value is the same on every process
    return full_tensor(accelerator.clip_grad_norm_(parameters, limit))


def non_finite_parameters(models: Iterable[torch.nn.Module]) -> list[str]:
    r"""The names of the parameters of `models` that hold a NaN or an infinity (the first few)."""
    named = [(name, parameter.detach()) for model in models for name, parameter in model.named_parameters()]
    # sharded (`--fsdp`) weights are checked on every process together: all of them get the same answer
    finite = all_finite(parameter for _, parameter in named)
    return [name for (name, _), is_finite in zip(named, finite) if not is_finite][:3]


def check_finite_weights(
    accelerator: Accelerator, args: argparse.Namespace, step: int, models: Iterable[torch.nn.Module] | None = None
) -> None:
    r"""Raises a [`TrainingDivergedError`] naming `step` when a weight of `models` (by default the accelerator's
    prepared models) is not finite: what runs before any save, so that no checkpoint of such weights is written."""
    names = non_finite_parameters(accelerator._models if models is None else models)
    if names:
        what = "the weights (" + ", ".join(names) + ")"
        raise TrainingDivergedError(divergence_message(step, what, args, accelerator.mixed_precision))


def resume_command(module: str, argv: list[str] | None) -> str:
    r"""The command that resumes a run of `module` started with `argv`: the same options and
    `--resume_from_checkpoint latest`."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    kept, skip = [], False
    for argument in arguments:
        if skip:
            skip = False
            continue
        if argument == "--resume_from_checkpoint":
            skip = True
            continue
        if argument.startswith("--resume_from_checkpoint="):
            continue
        kept.append(argument)
    launcher = "accelerate launch [your launch options]" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else "python"
    return f"{launcher} -m {module} {shlex.join(kept)} --resume_from_checkpoint latest"


class RunControl:
    r"""
    The guard of one training run: [`start`] it right after the `Accelerator`, in a `main` decorated with
    [`closes_run_control`].

    - **One run per output folder:** the main process locks `--output_dir` (see [`~atomic.destination_lock`]); a second
      run into it is refused with a `DestinationInUseError` naming the process that holds it. The lock of a killed
      run is taken over.
    - **Preemption:** SIGTERM or SIGINT only sets a flag; [`stop_requested`] (called once per optimisation step, on
      every process) lets the step finish, then [`stop`] saves a checkpoint of that step, says on stderr how to
      resume, and exits with 128 + the signal's number. A second signal stops at once (the atomic writes leave
      nothing half-written).
    - **Divergence:** [`check_step`] raises a [`TrainingDivergedError`] naming the step and the likely causes as soon
      as the loss or the gradient norm is not finite (with fp16 loss scaling, non-finite gradients are the scaler's
      business, and only the loss counts); [`check_weights`] refuses to save non-finite weights.

    Args:
        accelerator (`Accelerator`): The run's accelerator.
        args (`argparse.Namespace`): The options of `add_common_arguments`.
        module (`str`): The script's module, for the resume command.
        argv (`list[str]`, *optional*): The script's arguments (`sys.argv[1:]` when not given).
    """

    def __init__(self, accelerator: Accelerator, args: argparse.Namespace, module: str, argv: list[str] | None = None):
        self.accelerator = accelerator
        self.args = args
        self.module = module
        self.argv = argv
        self.signal_number = None
        self._previous_handlers = {}
        self._lock = None

    def start(self) -> "RunControl":
        r"""Locks `--output_dir` and installs the signal handlers; [`closes_run_control`] undoes both."""
        _ACTIVE.append(self)
        self.lock_output_dir()
        for number in STOP_SIGNALS:
            self._previous_handlers[number] = signal.signal(number, self._on_signal)
        return self

    def close(self) -> None:
        r"""Restores the signal handlers and releases the lock."""
        for number, handler in self._previous_handlers.items():
            signal.signal(number, handler)
        self._previous_handlers = {}
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None

    def lock_output_dir(self) -> None:
        r"""Locks `--output_dir` on the main process; every process raises when another run holds it."""
        error = [None]
        if self.accelerator.is_main_process:
            output_dir = os.path.abspath(self.args.output_dir)
            os.makedirs(os.path.dirname(output_dir), exist_ok=True)
            lock = destination_lock(output_dir, what="train into --output_dir")
            try:
                lock.__enter__()
                self._lock = lock
            except DestinationInUseError as exception:
                error = [(str(exception), exception.pid)]
        if self.accelerator.num_processes > 1:
            error = broadcast_object_list(error)
        if error[0] is not None:
            raise DestinationInUseError(*error[0])

    def _on_signal(self, number: int, frame) -> None:
        if self.signal_number is not None:
            # a second signal: stop now (what is being written is a temporary that the next run removes)
            raise SystemExit(128 + number)
        self.signal_number = number
        print(
            f"Received {signal.Signals(number).name}: stopping after the current step to save a checkpoint "
            "(send it again to stop at once).",
            file=sys.stderr,
            flush=True,
        )

    def stop_requested(self) -> bool:
        r"""Whether any process got a stop signal; every process must call it at the same step."""
        if self.accelerator.num_processes == 1:
            return self.signal_number is not None
        flag = torch.tensor([0 if self.signal_number is None else self.signal_number], device=self.accelerator.device)
        flags = self.accelerator.gather(flag)
        if self.signal_number is None and bool(flags.any()):
            self.signal_number = int(flags.max())
        return bool(flags.any())

    def stop(self, global_step: int, save_checkpoint: Callable[[], str]) -> None:
        r"""Saves the checkpoint of `global_step` (unless it was just saved), says how to resume, exits non-zero."""
        path = os.path.join(self.args.output_dir, f"checkpoint-{global_step}")
        # the trainers save every `--checkpointing_steps` steps just before asking whether to stop
        if global_step % self.args.checkpointing_steps != 0:
            path = save_checkpoint()  # refuses non-finite weights
        name = signal.Signals(self.signal_number).name
        if not self.accelerator.is_main_process:
            # each process says where it stopped, so a log shows that all stopped at the same step (said before the
            # main process exits: the launcher then ends the others)
            print(
                f"Process {self.accelerator.process_index} stopped by {name} after step {global_step}.",
                file=sys.stderr,
                flush=True,
            )
        self.accelerator.end_training()
        if self.accelerator.is_main_process:
            print(
                f"Stopped by {name} after step {global_step}; the complete state is in {path}. Resume with the same "
                f"command and `--resume_from_checkpoint latest`:\n  {resume_command(self.module, self.argv)}",
                file=sys.stderr,
                flush=True,
            )
        raise SystemExit(128 + self.signal_number)

    def check_step(self, step: int, loss: float, grad_norm) -> None:
        r"""
        Raises a [`TrainingDivergedError`] when the (logged, gathered) `loss` of `step` or its gradient norm (from
        [`clip_gradients`]) is not finite. Call it before `optimizer.step()`: the weights are then still finite.
        """
        what = None
        if not math.isfinite(float(loss)):
            what = f"the loss ({float(loss)})"
        elif grad_norm is not None and self.accelerator.scaler is None and not math.isfinite(float(grad_norm)):
            what = f"the gradient norm ({float(grad_norm)})"
        if what is not None:
            raise TrainingDivergedError(divergence_message(step, what, self.args, self.accelerator.mixed_precision))

    def check_weights(self, step: int, models: Iterable[torch.nn.Module] | None = None) -> None:
        r"""Raises a [`TrainingDivergedError`] before a save when trained weights (of `models`, by default the
        prepared ones) are not finite."""
        check_finite_weights(self.accelerator, self.args, step, models)
