"""A training run on a shared cluster, with real processes and real signals: preemption (SIGTERM, SIGINT) and an exact
resume, one run per `--output_dir`, and a diverging run stopped without a checkpoint of non-finite weights."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ..testing_utils import (
    HAS_FULLY_SHARD,
    TRAINING_ARGUMENTS,
    TRAINING_VAE_CONFIG,
    TWO_CPU_PROCESSES_ENVIRONMENT,
    TWO_CPU_PROCESSES_LAUNCH,
    _free_port,
    run_with_tracebacks_on_timeout,
)


REPOSITORY = Path(__file__).resolve().parents[2]
MODULE = "diffusers_videolatent.training.train_video_vae"


def _command(output: Path, *extra: str) -> list[str]:
    arguments = [sys.executable, "-m", MODULE, "--vae_config", json.dumps(TRAINING_VAE_CONFIG), *TRAINING_ARGUMENTS]
    arguments += ["--no_validation", "--learning_rate", "2e-3", "--use_ema", "--checkpointing_steps", "1000"]
    return arguments + ["--resume_from_checkpoint", "latest", "--output_dir", str(output), *extra]


def _environment() -> dict:
    # one thread: a resumed run's losses are then bit-identical to an uninterrupted one's
    return dict(os.environ, **TWO_CPU_PROCESSES_ENVIRONMENT, PYTHONPATH=str(REPOSITORY))


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return run_with_tracebacks_on_timeout(command, 300, env=_environment())


def _losses(output: Path) -> dict[int, float]:
    path = output / "logs" / "video_vae" / "metrics.jsonl"
    if not path.exists():
        return {}
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {record["step"]: record["loss"] for record in records if "loss" in record}


def _error_line(stderr: str, error: str) -> str:
    lines = [line for line in stderr.splitlines() if f"{error}: " in line]
    assert lines, stderr[-3000:]
    return lines[-1]


def _start_and_wait_for_step(command: list[str], output: Path, step: int) -> subprocess.Popen:
    process = subprocess.Popen(command, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while max(_losses(output), default=0) < step:
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the run did not reach its first steps"
        time.sleep(0.02)
    return process


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_run_saves_its_step_and_resumes_bit_identically(tmp_path, signal_number):
    total = 40
    reference = _run(_command(tmp_path / "reference", "--max_train_steps", str(total)))
    assert reference.returncode == 0, reference.stderr[-3000:]
    expected = _losses(tmp_path / "reference")
    assert sorted(expected) == list(range(1, total + 1))

    output = tmp_path / "preempted"
    command = _command(output, "--max_train_steps", str(total))
    process = _start_and_wait_for_step(command, output, 2)
    sent = time.monotonic()
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=60)
    seconds = time.monotonic() - sent
    print(f"{signal_number.name}: exited {process.returncode} {seconds:.2f} s after the signal")
    assert process.returncode == 128 + signal_number, stderr[-3000:]
    assert seconds < 20
    stopped = max(_losses(output))
    assert 2 <= stopped < total
    assert f"Stopped by {signal_number.name} after step {stopped}" in stderr
    assert f"-m {MODULE} " in stderr and "--resume_from_checkpoint latest" in stderr
    checkpoints = sorted(name for name in os.listdir(output) if name.startswith("checkpoint-"))
    assert checkpoints == [f"checkpoint-{stopped}"]
    assert json.loads((output / checkpoints[0] / "run_config.json").read_text())["global_step"] == stopped
    assert [name for name in os.listdir(tmp_path) if ".videolatent-" in name] == []  # no temporaries, no lock
    assert not (output / "diffusion_pytorch_model.safetensors").exists()  # stopped, not finished

    resumed = _run(command)  # the same command
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming from {output / checkpoints[0]} at step {stopped}" in resumed.stdout + resumed.stderr
    assert _losses(output) == expected  # every step's loss, bit for bit
    first = load_file(str(tmp_path / "reference" / "diffusion_pytorch_model.safetensors"))
    second = load_file(str(output / "diffusion_pytorch_model.safetensors"))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)


def _launch_command(output: Path, total: int, *extra: str) -> list[str]:
    """`_command` under `accelerate launch` with two CPU processes (DDP on gloo), one video per process and step."""
    launch = [*TWO_CPU_PROCESSES_LAUNCH, "--main_process_port", str(_free_port())]
    return launch + _command(output, "--max_train_steps", str(total), *extra)[1:]


@pytest.mark.parametrize(
    "sharding",
    [
        pytest.param((), id="ddp"),
        pytest.param(("--fsdp",), id="fsdp", marks=pytest.mark.skipif(not HAS_FULLY_SHARD, reason="torch < 2.6")),
    ],
)
def test_a_stopped_two_process_run_stops_every_process_at_one_step_and_resumes_exactly(tmp_path, sharding):
    total = 16
    reference = _run(_launch_command(tmp_path / "reference", total, *sharding))
    assert reference.returncode == 0, reference.stderr[-3000:]
    expected = _losses(tmp_path / "reference")
    assert sorted(expected) == list(range(1, total + 1))

    # the scheduler signals the launcher (as Kubernetes signals a pod's first process); torch's launcher forwards it
    output = tmp_path / "preempted"
    command = _launch_command(output, total, *sharding)
    process = _start_and_wait_for_step(command, output, 2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0, stderr[-3000:]
    stopped = max(_losses(output))
    assert 2 <= stopped < total
    assert f"Stopped by SIGTERM after step {stopped}" in stderr, stderr[-3000:]
    assert f"Process 1 stopped by SIGTERM after step {stopped}." in stderr, stderr[-3000:]
    checkpoints = sorted(name for name in os.listdir(output) if name.startswith("checkpoint-"))
    assert checkpoints == [f"checkpoint-{stopped}"]
    saved = os.listdir(output / checkpoints[0])
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= set(saved)  # both processes' state, one step
    if sharding:  # and both processes' shards of the VAE, Adam's moments and the EMA
        assert {"__0_0.distcp", "__1_0.distcp"} <= set(os.listdir(output / checkpoints[0] / "fsdp"))
    assert not (output / "diffusion_pytorch_model.safetensors").exists()

    resumed = _run(_launch_command(output, total, *sharding))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at step {stopped}" in resumed.stdout + resumed.stderr
    assert _losses(output) == expected  # every step's (gathered) loss, bit for bit


def test_a_second_run_into_an_output_dir_in_use_is_refused_and_a_dead_runs_lock_is_taken_over(tmp_path):
    output = tmp_path / "run"
    command = _command(output, "--max_train_steps", "100000")
    first = _start_and_wait_for_step(command, output, 1)
    try:
        second = _run(_command(output, "--max_train_steps", "2"))
        assert second.returncode != 0
        last_line = _error_line(second.stderr, "DestinationInUseError")
        assert f"it is in use by process {first.pid} on " in last_line, second.stderr[-3000:]
        assert "train into --output_dir" in last_line and str(output) in last_line
        assert first.poll() is None  # the first run goes on
    finally:
        first.send_signal(signal.SIGKILL)  # dies holding the lock
        first.communicate(timeout=60)
    lock = tmp_path / ".run.videolatent-lock"
    assert lock.read_text().split()[0] == str(first.pid)  # the dead run's lock file is left...

    taken_over = _run(_command(output, "--max_train_steps", "2", "--checkpointing_steps", "1"))
    assert taken_over.returncode == 0, taken_over.stderr[-3000:]  # ... and taken over
    assert not lock.exists()
    assert (output / "diffusion_pytorch_model.safetensors").is_file()


def _checkpoints(output: Path) -> dict[str, dict[str, torch.Tensor]]:
    names = [name for name in os.listdir(output) if name.startswith("checkpoint-")]
    return {name: load_file(str(output / name / "model.safetensors")) for name in sorted(names)}


@pytest.mark.parametrize("max_grad_norm", ["1.0", "0"])
def test_a_diverging_run_stops_within_steps_naming_the_step_and_the_causes(tmp_path, max_grad_norm):
    output = tmp_path / "run"
    # Adam moves every weight by ~1e30 at step 1: step 2's loss or gradients overflow
    command = _command(output, "--max_train_steps", "50", "--checkpointing_steps", "1", "--checkpoints_total_limit")
    command += ["2", "--learning_rate", "1e30", "--max_grad_norm", max_grad_norm]
    diverged = _run(command)
    assert diverged.returncode == 1
    message = _error_line(diverged.stderr, "TrainingDivergedError")
    print(message)
    assert message.startswith("diffusers_videolatent.training.run_control.TrainingDivergedError: Training diverged at")
    step = int(message.split("diverged at step ")[1].split(":")[0])
    assert 2 <= step <= 4, message
    assert "is not finite" in message and "`--learning_rate` 1e+30" in message and "--max_grad_norm" in message
    assert ("the gradients are not clipped" in message) == (max_grad_norm == "0")
    # the checkpoints written before are all there (the limit of 2 applies), and all finite
    checkpoints = _checkpoints(output)
    assert list(checkpoints) == [f"checkpoint-{index}" for index in range(max(1, step - 2), step)]
    for name, weights in checkpoints.items():
        assert all(torch.isfinite(value).all() for value in weights.values()), name
    assert [name for name in os.listdir(tmp_path) if ".videolatent-" in name] == []


def test_non_finite_weights_are_never_saved_over_good_checkpoints(tmp_path):
    output = tmp_path / "run"
    good = _run(_command(output, "--max_train_steps", "2", "--checkpointing_steps", "1"))
    assert good.returncode == 0, good.stderr[-3000:]
    before = _checkpoints(output)
    assert list(before) == ["checkpoint-1", "checkpoint-2"]

    # a new run (not resumed) into the same folder, whose first update makes every weight infinite: its checkpoint 1
    # would replace the good one, and with a limit of 1 prune checkpoint-2
    command = _command(output, "--max_train_steps", "4", "--checkpointing_steps", "1", "--checkpoints_total_limit")
    command = [argument for argument in command if argument not in ("--resume_from_checkpoint", "latest")]
    diverged = _run(command + ["1", "--learning_rate", "inf"])
    assert diverged.returncode == 1
    message = _error_line(diverged.stderr, "TrainingDivergedError")
    assert "Training diverged at step 1: the weights (" in message, diverged.stderr[-3000:]
    after = _checkpoints(output)
    assert after.keys() == before.keys()
    for name in before:
        assert all(torch.equal(before[name][key], after[name][key]) for key in before[name]), name
    assert [name for name in os.listdir(tmp_path) if ".videolatent-" in name] == []
