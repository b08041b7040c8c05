"""Our writers under a cluster's conditions, with real processes, signals and limits: SIGTERM in the middle of a
conversion or a generation, two writers aimed at one destination, and a save that does not fit (`ulimit -f`)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffusers_videolatent.atomic import TEMPORARY_MARK, DestinationInUseError, destination_lock, lock_path

from .testing_utils import SIGNAL_RUNNER, build_image_vae


REPO = Path(__file__).resolve().parents[1]


def _environment(**extra: str) -> dict:
    environment = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", **extra)
    environment["PYTHONPATH"] = os.pathsep.join([str(REPO), environment.get("PYTHONPATH", "")])
    return environment


def _run_signalled(tmp_path: Path, signal_on: str, *command: str) -> subprocess.CompletedProcess:
    runner = tmp_path / "signal_runner.py"
    runner.write_text(SIGNAL_RUNNER)
    return subprocess.run(
        [sys.executable, str(runner), *command],
        cwd=tmp_path,
        env=_environment(SIGNAL_ON=signal_on),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _debris(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if TEMPORARY_MARK in name)


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_conversions_write_leaves_nothing(tmp_path, signal_number):
    build_image_vae().save_pretrained(tmp_path / "image_vae")
    output = tmp_path / "video_vae"
    script = REPO / "conversion_scripts" / "convert_image_vae.py"
    arguments = ["--vae_path", str(tmp_path / "image_vae"), "--temporal_compression_ratio", "2"]
    arguments += ["--output_path", str(output)]
    # the weights are written into the temporary folder, the signal comes before it is moved into place
    hook = f"safetensors.torch:save_file|diffusion_pytorch_model|1|{int(signal_number)}"
    result = _run_signalled(tmp_path, hook, str(script), *arguments)
    assert result.returncode == 128 + signal_number, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"convert_image_vae: stopped by {signal_number.name}; nothing half-written is left"
    )
    assert not output.exists()
    assert _debris(tmp_path) == []


def test_sigterm_during_a_generation_leaves_nothing(model_dir, tmp_path):
    output = tmp_path / "clip.gif"
    arguments = [
        "-m",
        "diffusers_videolatent",
        "generate",
        "a cat",
        "--model",
        str(model_dir),
        "--output",
        str(output),
    ]
    arguments += ["--num_frames", "5", "--height", "32", "--width", "32", "--steps", "2", "--seed", "0"]
    # after the denoising loop, once the latents are decoded (the first argument is the pipeline)
    hook = "diffusers_videolatent.pipelines.pipeline_video_latent:VideoLatentPipeline.decode_latents"
    hook += f"|VideoLatentPipeline|1|{int(signal.SIGTERM)}"
    result = _run_signalled(tmp_path, hook, *arguments)
    assert result.returncode == 143, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == "videolatent: stopped by SIGTERM; nothing half-written is left"
    assert not output.exists()
    assert _debris(tmp_path) == []


WRITER = textwrap.dedent(
    """
    import sys, time
    import torch
    from tests.testing_utils import build_video_vae

    destination, value, start = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    vae = build_video_vae()
    with torch.no_grad():
        for parameter in vae.parameters():
            parameter.fill_(value)
    vae.register_to_config(scaling_factor=value)  # the config says which writer the weights are from
    while time.time() < start:
        pass
    for _ in range(int(sys.argv[4])):
        vae.save_pretrained(destination)
    """
)


def test_concurrent_save_pretrained_into_one_folder_gives_one_complete_result(tmp_path):
    writer = tmp_path / "writer.py"
    writer.write_text(WRITER)
    destination = tmp_path / "vae"
    start = time.time() + 8  # all start saving at once, after their imports
    processes = [
        subprocess.Popen(
            [sys.executable, str(writer), str(destination), str(value), str(start), "3"],
            cwd=REPO,
            env=_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for value in (1.0, 2.0, 3.0)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-3000:]
    assert {"config.json", "diffusion_pytorch_model.safetensors"} <= set(os.listdir(destination))
    scaling_factor = json.loads((destination / "config.json").read_text())["scaling_factor"]
    weights = load_file(str(destination / "diffusion_pytorch_model.safetensors"))
    assert scaling_factor in (1.0, 2.0, 3.0)
    # the weights are those of the writer whose config is there: one result, not a mix
    assert all(torch.all(value == scaling_factor) for value in weights.values())
    assert _debris(tmp_path) == [] and not os.path.exists(lock_path(destination))


HOLDER = textwrap.dedent(
    """
    import sys, time
    from diffusers_videolatent.atomic import destination_lock

    with destination_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


def test_destination_lock_names_its_holder_is_reentrant_and_outlives_no_one(tmp_path):
    destination = tmp_path / "out"
    holder = tmp_path / "holder.py"
    holder.write_text(HOLDER)
    process = subprocess.Popen(
        [sys.executable, str(holder), str(destination), "60"], env=_environment(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline() == "locked\n"
        started = time.monotonic()
        with pytest.raises(DestinationInUseError, match=f"in use by process {process.pid} on ") as caught:
            with destination_lock(destination, timeout=0.3):
                pass
        assert caught.value.pid == process.pid and 0.3 <= time.monotonic() - started < 5
    finally:
        process.kill()  # dies holding it
        process.wait()
    assert os.path.exists(lock_path(destination))  # its file is left, naming a dead process...
    with destination_lock(destination):  # ... and the lock is taken over at once
        with destination_lock(destination):  # re-entrant in one process
            assert open(lock_path(destination)).read().split()[0] == str(os.getpid())
        assert os.path.exists(lock_path(destination))
    assert not os.path.exists(lock_path(destination))


LIMITED_SAVE = textwrap.dedent(
    """
    import resource, signal, sys
    import torch
    from tests.testing_utils import build_video_vae

    vae = build_video_vae(block_out_channels=(64, 64), norm_num_groups=8)  # about 3 MB of weights
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write over the limit then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
    vae.save_pretrained(sys.argv[1])
    """
)


def test_a_save_over_the_file_size_limit_keeps_the_previous_folder_and_says_why(tmp_path):
    from tests.testing_utils import build_video_vae

    destination = tmp_path / "vae"
    build_video_vae().save_pretrained(destination)
    before = {name: (destination / name).read_bytes() for name in os.listdir(destination)}
    script = tmp_path / "limited_save.py"
    script.write_text(LIMITED_SAVE)
    result = subprocess.run(
        [sys.executable, str(script), str(destination)], cwd=REPO, env=_environment(), capture_output=True, text=True
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    print(last)
    assert last.startswith(f"OSError: [Errno 27] Could not write {destination}: a file would exceed the file-size")
    assert "(`ulimit -f`: 1048576 bytes)" in last and "previous content (if any) is unchanged" in last
    assert {name: (destination / name).read_bytes() for name in os.listdir(destination)} == before
    assert _debris(tmp_path) == [] and not os.path.exists(lock_path(destination))


LIMITED_CHECKPOINT = textwrap.dedent(
    """
    import resource, signal, sys
    from types import SimpleNamespace
    import torch
    from accelerate import Accelerator
    from diffusers_videolatent.training.training_utils import save_checkpoint
    from tests.testing_utils import build_video_vae

    accelerator = Accelerator(cpu=True)
    vae = build_video_vae(block_out_channels=(64, 64), norm_num_groups=8)  # about 3 MB of weights
    model, optimizer = accelerator.prepare(vae, torch.optim.AdamW(vae.parameters()))
    args = SimpleNamespace(output_dir=sys.argv[1], checkpoints_total_limit=1, checkpointing_steps=1)
    save_checkpoint(accelerator, args, {"script": "test"}, 1)
    print("saved 1", flush=True)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write over the limit then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
    save_checkpoint(accelerator, args, {"script": "test"}, 2)
    """
)


def test_a_checkpoint_over_the_file_size_limit_keeps_the_previous_one_and_says_how_to_resume(tmp_path):
    # with --checkpoints_total_limit 1 the failed save must not prune the only good checkpoint
    output = tmp_path / "run"
    script = tmp_path / "limited_checkpoint.py"
    script.write_text(LIMITED_CHECKPOINT)
    result = subprocess.run(
        [sys.executable, str(script), str(output)], cwd=REPO, env=_environment(), capture_output=True, text=True
    )
    assert result.returncode == 1 and "saved 1" in result.stdout, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"OSError: [Errno 27] Could not write the checkpoint {output / 'checkpoint-2'}: "), last
    assert "(`ulimit -f`: 1048576 bytes)" in last and "The previous checkpoints are unchanged" in last
    assert "`--resume_from_checkpoint latest`" in last
    assert sorted(os.listdir(output)) == ["checkpoint-1"]  # no partial checkpoint-2, no temporary
    assert (output / "checkpoint-1" / "run_config.json").exists()
    assert json.loads((output / "checkpoint-1" / "run_config.json").read_text())["global_step"] == 1


@pytest.mark.parametrize("overwrite", [False, True])
def test_two_generations_into_one_output_give_one_complete_video(model_dir, tmp_path, overwrite):
    output = tmp_path / "clip.gif"
    processes = []
    for seed in ("0", "1"):
        arguments = [sys.executable, "-m", "diffusers_videolatent", "generate", "a cat", "--model", str(model_dir)]
        arguments += ["--output", str(output), "--num_frames", "5", "--height", "32", "--width", "32"]
        arguments += ["--steps", "2", "--seed", seed] + (["--overwrite"] if overwrite else [])
        processes.append(
            subprocess.Popen(
                arguments, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
            )
        )
    results = [(process.wait(timeout=300), *process.communicate()) for process in processes]
    codes = sorted(code for code, _, _ in results)
    if overwrite:
        assert codes == [0, 0], [stderr[-2000:] for _, _, stderr in results]
    else:
        # the later one finds the output there, at the start (before any model loads) or when it writes its own:
        # a usage error, one line, the other's video kept
        assert codes == [0, 2], [stderr[-2000:] for _, _, stderr in results]
        lines = [stderr.strip().splitlines() for code, _, stderr in results if code != 0][0]
        assert len(lines) == 1 and str(output) in lines[0], lines
        assert "exists; pass --overwrite" in lines[0] or "written by another process while this one" in lines[0], lines
    import imageio.v2 as imageio

    frames = imageio.mimread(output)
    assert len(frames) == 5 and frames[0].shape[:2] == (32, 32)
    assert _debris(tmp_path) == [] and not os.path.exists(lock_path(output))


def test_an_output_written_by_another_process_during_the_write_is_kept_and_named(tmp_path, monkeypatch):
    import diffusers.utils
    import PIL.Image

    from diffusers_videolatent import cli

    output = tmp_path / "clip.gif"

    def export_while_another_writes(frames, path, fps):
        output.write_bytes(b"the other process's video")  # lands while this one writes its temporary
        Path(path).write_bytes(b"ours")

    monkeypatch.setattr(diffusers.utils, "export_to_gif", export_while_another_writes)
    frames = [PIL.Image.new("RGB", (8, 8))] * 2
    with pytest.raises(cli.UsageError, match="written by another process while this one generated; it is kept"):
        cli._write_frames(frames, output, fps=8, overwrite=False)
    assert output.read_bytes() == b"the other process's video"
    assert _debris(tmp_path) == []
