"""Writes killed with SIGKILL at chosen moments, then the same command run again.

A small runner (written to a temporary folder) wraps one function (`safetensors.torch.save_file`, `torch.save` or
`os.rename`) so that the process kills itself right after the n-th call whose arguments mention a given string, then
runs the real command. After the kill the destination must hold its previous content, nothing, or the complete
result; after the rerun it must hold the complete result, files the user put there must still be there, and no
temporary sibling may remain.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from diffusers_videolatent import VideoLatentPipeline
from diffusers_videolatent.atomic import TEMPORARY_MARK, atomic_file, atomic_folder, remove_stale_temporaries
from diffusers_videolatent.cli import DEFAULT_MODEL
from diffusers_videolatent.training.training_utils import find_checkpoint

from .testing_utils import SIGNAL_RUNNER, TRAINING_VAE_CONFIG, build_image_vae


REPO = Path(__file__).resolve().parents[1]


def run_killed(tmp_path: Path, kill_on: str, *command: str) -> subprocess.CompletedProcess:
    runner = tmp_path / "kill_runner.py"
    runner.write_text(SIGNAL_RUNNER)
    function, needle, nth = kill_on.split("|")
    module_name, _, attribute = function.rpartition(".")
    os.environ["SIGNAL_ON"] = f"{module_name}:{attribute}|{needle}|{nth}|{int(signal.SIGKILL)}"
    try:
        return run(tmp_path, str(runner), *command)
    finally:
        del os.environ["SIGNAL_ON"]


def run(tmp_path: Path, *command: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    environment["PYTHONPATH"] = os.pathsep.join([str(REPO), environment.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, *command], cwd=tmp_path, env=environment, capture_output=True, text=True)


def debris(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if TEMPORARY_MARK in name)


def saved_steps(folder: Path) -> int | None:
    """The `num_inference_steps` of a saved pipeline that loads completely, `None` when nothing is there."""
    if not folder.exists():
        return None
    pipe = VideoLatentPipeline.from_pretrained(folder)
    return pipe.config.generation_defaults["num_inference_steps"]


SAVE_SCRIPT = """
import sys
from diffusers_videolatent import VideoLatentPipeline

pipe = VideoLatentPipeline.from_pretrained(sys.argv[1])
pipe.register_to_config(generation_defaults={**pipe.config.generation_defaults, "num_inference_steps": 7})
pipe.save_pretrained(sys.argv[2])
"""


@pytest.mark.parametrize(
    "kill_on",
    [
        "safetensors.torch.save_file|diffusion_pytorch_model|1",  # mid-save: one model's weights written
        "os.rename|{target}|1",  # between setting the old folder aside and moving the new one in
        "os.rename|{target}|2",  # after the new folder is in place, before the old one is removed
    ],
)
def test_pipeline_save_pretrained_killed_then_rerun(tmp_path, kill_on):
    target = tmp_path / "saved"
    VideoLatentPipeline.from_pretrained(DEFAULT_MODEL).save_pretrained(target)
    (target / "notes.txt").write_text("the user's own file")
    script = tmp_path / "save.py"
    script.write_text(SAVE_SCRIPT)

    result = run_killed(tmp_path, kill_on.format(target=target), str(script), str(DEFAULT_MODEL), str(target))
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    assert saved_steps(target) in (None, 25, 7)  # nothing, the previous save or the new one: never a mix

    # the rerun of the same save puts a set-aside folder back first, then saves; the user's file survives
    pipe = VideoLatentPipeline.from_pretrained(DEFAULT_MODEL)
    pipe.register_to_config(generation_defaults={**pipe.config.generation_defaults, "num_inference_steps": 7})
    pipe.save_pretrained(target)
    assert saved_steps(target) == 7
    assert (target / "notes.txt").read_text() == "the user's own file"
    assert debris(tmp_path) == []


def modes(folder: Path) -> dict[str, int]:
    """The permission bits of `folder` and of everything in it, by path relative to `folder`."""
    return {str(path.relative_to(folder)): path.stat().st_mode & 0o777 for path in [folder, *folder.rglob("*")]}


def default_modes(folder: Path) -> dict[str, int]:
    """What `modes` reads when every entry has the permissions a plain `open`/`mkdir` gives under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return {
        str(path.relative_to(folder)): (0o777 if path.is_dir() else 0o666) & ~umask
        for path in [folder, *folder.rglob("*")]
    }


def test_save_pretrained_keeps_other_files_and_drops_stale_weights(tmp_path):
    target = tmp_path / "saved"
    pipe = VideoLatentPipeline.from_pretrained(DEFAULT_MODEL)
    pipe.save_pretrained(target)
    (target / "unet" / "diffusion_pytorch_model-00001-of-00002.safetensors").write_text("stale shard")
    (target / "unet" / "diffusion_pytorch_model.fp16.safetensors").write_text("another variant")
    (target / "my_results").mkdir()
    (target / "my_results" / "scores.json").write_text("{}")
    (target / "my_results" / "scores.json").chmod(0o640)
    pipe.save_pretrained(target)
    unet_files = sorted(os.listdir(target / "unet"))
    assert unet_files == [
        "config.json",
        "diffusion_pytorch_model.fp16.safetensors",
        "diffusion_pytorch_model.safetensors",
        "videolatent_loader.py",
    ]
    assert (target / "my_results" / "scores.json").read_text() == "{}"
    # what the save wrote (safetensors writes its files 0600 since 0.8) is readable as a plain write's would be, and
    # the kept file keeps its own mode
    expected = default_modes(target)
    expected["my_results/scores.json"] = 0o640
    assert modes(target) == expected
    assert debris(tmp_path) == []


def test_conversion_killed_then_rerun(tmp_path):
    build_image_vae().save_pretrained(tmp_path / "image_vae")
    output = tmp_path / "video_vae"
    script = REPO / "conversion_scripts" / "convert_image_vae.py"
    arguments = ["--vae_path", str(tmp_path / "image_vae"), "--temporal_compression_ratio", "2"]
    arguments += ["--output_path", str(output)]

    result = run_killed(tmp_path, "safetensors.torch.save_file|diffusion_pytorch_model|1", str(script), *arguments)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    assert not output.exists()
    assert len(debris(tmp_path)) == 1  # the killed run's temporary folder

    rerun = run(tmp_path, str(script), *arguments)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    expected = ["README.md", "config.json", "diffusion_pytorch_model.safetensors", "videolatent_loader.py"]
    assert sorted(os.listdir(output)) == expected
    assert debris(tmp_path) == []


def test_training_checkpoint_killed_then_resumed(tmp_path):
    output = tmp_path / "vae_run"
    arguments = [
        "-m",
        "diffusers_videolatent.training.train_video_vae",
        "--vae_config",
        json.dumps(TRAINING_VAE_CONFIG),
    ]
    arguments += ["--num_frames", "5", "--height", "16", "--width", "16", "--train_batch_size", "1"]
    arguments += ["--max_train_samples", "4", "--seed", "3", "--report_to", "jsonl", "--no_validation"]
    arguments += ["--max_train_steps", "4", "--checkpointing_steps", "2", "--checkpoints_total_limit", "1"]
    arguments += ["--resume_from_checkpoint", "latest", "--output_dir", str(output)]

    # killed while the accelerate state of the second checkpoint is being written
    result = run_killed(tmp_path, "torch.save|checkpoint-4|1", *arguments)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    assert sorted(name for name in os.listdir(output) if name.startswith("checkpoint-")) == ["checkpoint-2"]
    assert len(debris(output)) == 1

    resumed = run(tmp_path, *arguments)  # the same command
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming from {output / 'checkpoint-2'} at step 2" in resumed.stdout + resumed.stderr
    # the limit of 1 is applied once the new checkpoint is in place, never before
    assert sorted(name for name in os.listdir(output) if name.startswith("checkpoint-")) == ["checkpoint-4"]
    assert (output / "diffusion_pytorch_model.safetensors").is_file()
    assert debris(output) == [] and debris(tmp_path) == []
    for saved in output / "checkpoint-4", output / "diffusion_pytorch_model.safetensors":
        assert modes(saved) == default_modes(saved)


def test_latest_skips_incomplete_checkpoints(tmp_path, capsys):
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-2" / "run_config.json").write_text(json.dumps({"global_step": 2, "run_config": {}}))
    (tmp_path / "checkpoint-10").mkdir()  # left by a crash of an older version mid-save
    (tmp_path / "checkpoint-6").mkdir()
    (tmp_path / "checkpoint-6" / "run_config.json").write_text('{"global_step": 6, "run_co')  # truncated
    assert find_checkpoint(str(tmp_path), "latest") == str(tmp_path / "checkpoint-2")
    skipped = capsys.readouterr().err.splitlines()
    assert skipped == [
        f"Skipping the incomplete checkpoint {tmp_path / 'checkpoint-10'} (no readable run_config.json).",
        f"Skipping the incomplete checkpoint {tmp_path / 'checkpoint-6'} (no readable run_config.json).",
    ]


def test_atomic_file_and_folder_leave_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_file(tmp_path / "video.gif") as temporary:
            Path(temporary).write_text("half")
            raise RuntimeError("disk full")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_folder(tmp_path / "frames") as temporary:
            Path(temporary, "frame_0000.png").write_text("half")
            raise RuntimeError("disk full")
    assert os.listdir(tmp_path) == []

    (tmp_path / "video.gif").write_text("the user's video")
    with pytest.raises(FileExistsError, match="exists"):
        with atomic_file(tmp_path / "video.gif"):
            pass
    assert (tmp_path / "video.gif").read_text() == "the user's video"


def test_stale_temporaries_only_of_dead_processes_and_only_of_that_destination(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    (tmp_path / f".out{TEMPORARY_MARK}tmp-{dead_pid}-a").mkdir()  # a dead run's partial folder
    (tmp_path / f".out{TEMPORARY_MARK}tmp-{os.getppid()}-b").mkdir()  # a live process's: not ours to touch
    (tmp_path / f".other{TEMPORARY_MARK}tmp-{dead_pid}-c").mkdir()  # another destination's
    (tmp_path / f".out{TEMPORARY_MARK}old-{dead_pid}-d").mkdir()  # a folder set aside, destination missing
    (tmp_path / f".out{TEMPORARY_MARK}old-{dead_pid}-d" / "weights").write_text("previous")
    removed = remove_stale_temporaries(tmp_path / "out")
    assert removed == [str(tmp_path / f".out{TEMPORARY_MARK}tmp-{dead_pid}-a")]
    assert (tmp_path / "out" / "weights").read_text() == "previous"
    assert debris(tmp_path) == [f".other{TEMPORARY_MARK}tmp-{dead_pid}-c", f".out{TEMPORARY_MARK}tmp-{os.getppid()}-b"]
