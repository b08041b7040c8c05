"""End-to-end tests of the `videolatent` command on a tiny pipeline saved to a temporary folder."""

import os
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import PIL.Image
import pytest
import torch

from diffusers_videolatent import VideoLatentPipeline, cli
from diffusers_videolatent.atomic import TEMPORARY_MARK

from .testing_utils import REPOSITORY, build_pipeline_components


pytestmark = pytest.mark.usefixtures("no_debug_environment")
SMALL = ["--num_frames", "5", "--height", "32", "--width", "32", "--steps", "2", "--seed", "0"]
# one thread: tiny models on a shared machine run far faster without intra-op parallelism
ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1"}
ENVIRONMENT.pop(cli.DEBUG_ENVIRONMENT_VARIABLE, None)


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if TEMPORARY_MARK in path.name)


def write_gif(path: Path, num_frames: int, size: int = 32) -> Path:
    frames = [PIL.Image.new("RGB", (size, size), (30 * index, 100, 0)) for index in range(num_frames)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    return path


def assert_one_line_error(code: int, err: str, *fragments: str, exit_code: int = 2) -> None:
    assert code == exit_code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("videolatent"), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ----------------------------------------------------------------------------------------------------------------------
# Generation
# ----------------------------------------------------------------------------------------------------------------------


def test_generate_gif(model_dir, tmp_path, capsys):
    output = tmp_path / "clip.gif"
    code, out, err = run_main(
        capsys, "generate", "a red panda", "--model", str(model_dir), "--output", str(output), *SMALL
    )
    assert code == 0, err
    assert err == ""
    assert f"to {output}" in out and " s" in out
    frames = imageio.mimread(output)
    assert len(frames) == 5 and frames[0].shape[:2] == (32, 32)
    assert leftovers(tmp_path) == []


def test_hyphenated_flags_give_the_same_video(model_dir, tmp_path, capsys):
    common = ["generate", "a cat", "--model", str(model_dir), "--height", "32", "--width", "32", "--steps", "2"]
    code, _, err = run_main(
        capsys, *common, "--output", str(tmp_path / "underscores"), "--num_frames", "3", "--seed", "7",
        "--guidance_scale", "3", "--negative_prompt", "a dog",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = run_main(
        capsys, *common, "--output", str(tmp_path / "hyphens"), "--num-frames", "3", "--seed", "7",
        "--guidance-scale", "3", "--negative-prompt", "a dog",
    )  # fmt: skip
    assert code == 0, err
    names = [f"frame_{index:04d}.png" for index in range(3)]
    assert sorted(path.name for path in (tmp_path / "hyphens").iterdir()) == names
    for name in names:
        first = np.asarray(PIL.Image.open(tmp_path / "underscores" / name))
        second = np.asarray(PIL.Image.open(tmp_path / "hyphens" / name))
        np.testing.assert_array_equal(first, second)
    # a different negative prompt changes the video, so the flag really reached the pipeline
    code, _, err = run_main(
        capsys, *common, "--output", str(tmp_path / "other"), "--num-frames", "3", "--seed", "7",
        "--guidance-scale", "3", "--negative-prompt", "a red bird",
    )  # fmt: skip
    assert code == 0, err
    assert not np.array_equal(
        np.asarray(PIL.Image.open(tmp_path / "other" / names[0])),
        np.asarray(PIL.Image.open(tmp_path / "hyphens" / names[0])),
    )


def test_generate_png_folder_with_scheduler_alias(model_dir, tmp_path, capsys):
    output = tmp_path / "frames"
    code, out, err = run_main(
        capsys, "generate", "a cat", "--model", str(model_dir), "--output", str(output), "--scheduler", "dpm++", *SMALL
    )
    assert code == 0, err
    assert sorted(path.name for path in output.iterdir()) == [f"frame_{index:04d}.png" for index in range(5)]
    assert PIL.Image.open(output / "frame_0000.png").size == (32, 32)
    assert leftovers(tmp_path) == []


def test_an_existing_empty_folder_is_filled_without_overwrite(model_dir, tmp_path, capsys):
    output = tmp_path / "empty"
    output.mkdir()
    code, _, err = run_main(capsys, "generate", "a cat", "--model", str(model_dir), "--output", str(output), *SMALL)
    assert code == 0, err
    assert len(list(output.iterdir())) == 5


def test_overwrite_replaces_a_file(model_dir, tmp_path, capsys):
    output = tmp_path / "clip.gif"
    output.write_bytes(b"an older clip")
    code, _, err = run_main(
        capsys, "generate", "a cat", "--model", str(model_dir), "--output", str(output), "--overwrite", *SMALL
    )
    assert code == 0, err
    assert len(imageio.mimread(output)) == 5
    assert leftovers(tmp_path) == []


def test_overwrite_of_a_folder_replaces_only_the_frames(model_dir, tmp_path, capsys):
    output = tmp_path / "shots"
    output.mkdir()
    (output / "notes.txt").write_text("my own notes")
    (output / "frame_best.png").write_bytes(b"my own picture")
    (output / "drafts").mkdir()
    (output / "drafts" / "frame_0000.png").write_bytes(b"a draft")
    for index in range(7):
        (output / f"frame_{index:04d}.png").write_bytes(b"frame of an earlier run")

    code, _, err = run_main(
        capsys, "generate", "a cat", "--model", str(model_dir), "--output", str(output), "--overwrite", *SMALL
    )

    assert code == 0, err
    names = sorted(path.name for path in output.iterdir())
    assert names == ["drafts", "frame_0000.png", "frame_0001.png", "frame_0002.png", "frame_0003.png"] + [
        "frame_0004.png",
        "frame_best.png",
        "notes.txt",
    ]
    assert (output / "notes.txt").read_text() == "my own notes"
    assert (output / "frame_best.png").read_bytes() == b"my own picture"
    assert (output / "drafts" / "frame_0000.png").read_bytes() == b"a draft"
    assert PIL.Image.open(output / "frame_0004.png").size == (32, 32)
    assert leftovers(tmp_path) == []


def test_generate_image_to_video(model_dir, tmp_path, capsys):
    image_path = tmp_path / "first.png"
    # RGBA on purpose: the command converts it to RGB
    PIL.Image.fromarray((np.random.default_rng(0).random((32, 32, 4)) * 255).astype(np.uint8)).save(image_path)
    code, _, err = run_main(
        capsys, "generate", "a cat", "--model", str(model_dir), "--output", str(tmp_path / "i2v.gif"),
        "--image", str(image_path), *SMALL,
    )  # fmt: skip
    assert code == 0, err
    assert len(imageio.mimread(tmp_path / "i2v.gif")) == 5


def test_video_to_video_takes_the_videos_length_or_its_first_frames(model_dir, tmp_path, capsys):
    video = write_gif(tmp_path / "input.gif", num_frames=7)
    common = ["generate", "a cat", "--model", str(model_dir), "--video", str(video), "--strength", "0.5"]
    common += ["--height", "32", "--width", "32", "--steps", "2", "--seed", "0"]

    code, _, err = run_main(capsys, *common, "--output", str(tmp_path / "whole.gif"))
    assert code == 0, err
    assert len(imageio.mimread(tmp_path / "whole.gif")) == 7

    code, _, err = run_main(capsys, *common, "--num-frames", "3", "--output", str(tmp_path / "first3.gif"))
    assert code == 0, err
    assert len(imageio.mimread(tmp_path / "first3.gif")) == 3


def test_video_to_video_with_the_default_model_uses_the_videos_length(tmp_path, capsys):
    # the default model recommends 17 frames; a 9-frame video must give 9 frames, not an error about 17
    video = write_gif(tmp_path / "input.gif", num_frames=9, size=64)
    output = tmp_path / "out.gif"
    code, _, err = run_main(
        capsys, "generate", "a red circle moving right", "--video", str(video), "--output", str(output),
        "--steps", "2", "--seed", "0",
    )  # fmt: skip
    assert code == 0, err
    frames = imageio.mimread(output)
    assert len(frames) == 9 and frames[0].shape[:2] == (64, 64)


def test_mp4_in_a_subprocess_prints_nothing_on_stderr(model_dir, tmp_path):
    output = tmp_path / "clip.mp4"
    command = [sys.executable, "-m", "diffusers_videolatent", "generate", "a red panda"]
    command += ["--model", str(model_dir), "--output", str(output), "--fps", "4", *SMALL]
    result = subprocess.run(command, capture_output=True, text=True, env=ENVIRONMENT, cwd=REPOSITORY, timeout=300)
    assert result.returncode == 0, result.stderr
    # neither ffmpeg, nor diffusers' and transformers' warnings and loading bars reach the terminal
    assert result.stderr == ""
    assert f"to {output}" in result.stdout
    with imageio.get_reader(output) as reader:
        assert reader.get_meta_data()["fps"] == 4
    frames = imageio.mimread(output, memtest=False)
    assert len(frames) == 5 and frames[0].shape[:2] == (32, 32)
    assert leftovers(tmp_path) == []


def test_options_not_given_take_the_pipelines_generation_defaults(tmp_path, capsys):
    defaults = {"num_frames": 3, "height": 16, "width": 24, "fps": 4, "num_inference_steps": 2, "guidance_scale": 1.0}
    components = build_pipeline_components()
    pipe = VideoLatentPipeline(**components, generation_defaults={**defaults, "vocabulary": ["a", "cat"]})
    pipe.save_pretrained(tmp_path / "model")
    capsys.readouterr()

    output = tmp_path / "clip.mp4"
    code, _, err = run_main(capsys, "generate", "a dog", "--model", str(tmp_path / "model"), "--output", str(output))
    assert code == 0, err
    assert err.strip().splitlines() == [
        "videolatent: warning: 'dog' not in the model's vocabulary (a cat); the video may not follow the prompt"
    ]
    frames = imageio.mimread(output, memtest=False)
    assert len(frames) == 3 and frames[0].shape[:2] == (16, 24)
    with imageio.get_reader(output) as reader:
        assert reader.get_meta_data()["fps"] == 4

    # options given override them, the frame rate of the file included
    code, _, err = run_main(
        capsys, "generate", "a cat", "--model", str(tmp_path / "model"), "--output", str(tmp_path / "fast.mp4"),
        "--fps", "12", "--num-frames", "2", "--width", "16",
    )  # fmt: skip
    assert code == 0 and err == "", err
    frames = imageio.mimread(tmp_path / "fast.mp4", memtest=False)
    assert len(frames) == 2 and frames[0].shape[:2] == (16, 16)
    with imageio.get_reader(tmp_path / "fast.mp4") as reader:
        assert reader.get_meta_data()["fps"] == 12


def test_version_help_and_exit_codes_in_a_subprocess(model_dir, tmp_path):
    def run(*argv: str, **environment: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "diffusers_videolatent", *argv]
        env = {**ENVIRONMENT, **environment}
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPOSITORY, timeout=300)

    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"videolatent {cli.__version__}"

    usage = run("generate", "a cat", "--output", str(tmp_path / "x.gif"), "--seed", "-1")
    assert usage.returncode == 2 and len(usage.stderr.strip().splitlines()) == 1 and "--seed" in usage.stderr

    broken = tmp_path / "broken_model"
    broken.mkdir()
    (broken / "model_index.json").write_text("{ not json")
    runtime = run("generate", "a cat", "--model", str(broken), "--output", str(tmp_path / "x.gif"))
    assert runtime.returncode == 1, runtime.stderr
    assert len(runtime.stderr.strip().splitlines()) == 1 and "--model" in runtime.stderr

    debug = run("generate", "a cat", "--model", str(broken), "--output", str(tmp_path / "x.gif"), "--debug")
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("videolatent: error: --model")
    assert run("generate", "a cat", "--model", str(broken), "--output", str(tmp_path / "x.gif"), VIDEOLATENT_DEBUG="1")
    assert leftovers(tmp_path) == [] and not (tmp_path / "x.gif").exists()


def test_help_imports_neither_torch_nor_diffusers():
    code = (
        "import sys\n"
        "from diffusers_videolatent import cli\n"
        "assert cli.main(['--help']) == 0 and cli.main(['generate', '--help']) == 0\n"
        "print(sorted(name for name in ('torch', 'diffusers', 'transformers', 'numpy') if name in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=ENVIRONMENT, cwd=REPOSITORY, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "--num-frames" in result.stdout and "--overwrite" in result.stdout and "Exit codes" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_debug_flag_and_environment_variable_show_the_traceback(tmp_path, capsys, monkeypatch):
    argv = ["generate", "a cat", "--model", str(tmp_path / "missing"), "--output", str(tmp_path / "x.gif")]
    code, _, err = run_main(capsys, *argv)
    assert_one_line_error(code, err, "--model")
    assert "Traceback" not in err

    code, _, err = run_main(capsys, *argv, "--debug")
    assert code == 2 and "Traceback (most recent call last)" in err and "UsageError" in err
    assert err.strip().splitlines()[-1].startswith("videolatent: error: --model")

    monkeypatch.setenv(cli.DEBUG_ENVIRONMENT_VARIABLE, "1")
    code, _, err = run_main(capsys, *argv)
    assert code == 2 and "Traceback (most recent call last)" in err


def test_version_and_help_through_main(capsys):
    code, out, _ = run_main(capsys, "--version")
    assert code == 0 and out.strip() == "videolatent 0.1.0"
    code, out, _ = run_main(capsys, "generate", "--help")
    assert code == 0
    for flag in ("--num_frames", "--num-frames", "--guidance-scale", "--negative-prompt", "--overwrite", "--debug"):
        assert flag in out


# ----------------------------------------------------------------------------------------------------------------------
# Hostile input: one line naming the flag, the right exit code, nothing written, no model loaded for what needs none
# ----------------------------------------------------------------------------------------------------------------------


# (extra arguments, fragments of the error line); `{name}` is replaced by a path prepared in the test
CHECKED_BEFORE_LOADING = {
    "num_frames-zero": (["--num_frames", "0"], ["--num_frames", "'0'"]),
    "num-frames-negative": (["--num-frames", "-3"], ["--num_frames", "'-3'"]),
    "height-zero": (["--height", "0"], ["--height", "positive"]),
    "width-negative": (["--width", "-8"], ["--width", "'-8'"]),
    "height-not-a-number": (["--height", "tall"], ["--height", "'tall'"]),
    "fps-zero": (["--fps", "0"], ["--fps", "positive"]),
    "fps-nan": (["--fps", "nan"], ["--fps", "finite"]),
    "fps-inf": (["--fps", "inf"], ["--fps", "finite"]),
    "steps-zero": (["--steps", "0"], ["--steps", "'0'"]),
    "guidance-nan": (["--guidance_scale", "nan"], ["--guidance_scale", "finite"]),
    "guidance-inf": (["--guidance-scale=-inf"], ["--guidance_scale", "finite"]),
    "strength-above-one": (["--strength", "1.5", "--video", "{video}"], ["--strength", "[0, 1]"]),
    "strength-nan": (["--strength", "nan", "--video", "{video}"], ["--strength", "finite"]),
    "strength-without-video": (["--strength", "0.5"], ["--strength", "--video"]),
    "seed-negative": (["--seed", "-1"], ["--seed", "2**64"]),
    "seed-too-large": (["--seed", str(2**64)], ["--seed", str(2**64)]),
    "seed-not-an-integer": (["--seed", "1.5"], ["--seed", "'1.5'"]),
    "dtype": (["--dtype", "float8"], ["--dtype", "float8"]),
    "offload": (["--offload", "disk"], ["--offload", "disk"]),
    "unknown-flag": (["--frames", "5"], ["--frames"]),
    "extension": (["--output", "{folder}/clip.avi"], ["--output", ".avi"]),
    "output-folder-missing": (["--output", "{folder}/missing/clip.gif"], ["--output", "does not exist"]),
    "output-parent-is-a-file": (["--output", "{user_file}/clip.gif"], ["--output", "not a folder"]),
    "output-is-a-file": (["--output", "{user_file}"], ["--output", "is a file"]),
    "output-is-dot": (["--output", "."], ["--output", "file name"]),
    "output-video-is-a-folder": (["--output", "{folder_named_gif}"], ["--output", "is a folder"]),
    "output-file-exists": (["--output", "{existing_gif}"], ["--output", "exists", "--overwrite"]),
    "output-folder-not-empty": (["--output", "{user_folder}"], ["--output", "not empty", "--overwrite"]),
    "overwrite-keeps-a-file-at-a-folder-output": (["--output", "{user_file}", "--overwrite"], ["--output", "a file"]),
    "image-missing": (["--image", "{folder}/missing.png"], ["--image", "no such file"]),
    "image-broken": (["--image", "{broken}"], ["--image", "cannot read it as an image"]),
    "image-is-a-folder": (["--image", "{folder}"], ["--image", "is not a file"]),
    "video-missing": (["--video", "{folder}/missing.mp4"], ["--video", "no such file"]),
    "video-broken": (["--video", "{broken}"], ["--video", "cannot read it as a video"]),
    "video-too-short": (["--video", "{video}", "--num_frames", "9"], ["--num_frames 9", "5 frames of --video"]),
    "image-and-video": (["--image", "{video}", "--video", "{video}"], ["--image", "--video"]),
    "scheduler": (["--scheduler", "warp-drive"], ["--scheduler", "warp-drive"]),
    "scheduler-not-a-scheduler": (["--scheduler", "AutoencoderKL"], ["--scheduler", "AutoencoderKL"]),
    "model-missing-folder": (["--model", "{folder}/no_model"], ["--model", "no such folder"]),
    "model-relative-missing": (["--model", "./no_model"], ["--model", "no such folder"]),
    "model-without-model-index": (["--model", "{user_folder}"], ["--model", "model_index.json"]),
    "model-is-a-file": (["--model", "{user_file}"], ["--model", "is a file"]),
    "device": (["--device", "warp9"], ["--device", "warp9"]),
}


@pytest.mark.parametrize("case", list(CHECKED_BEFORE_LOADING), ids=list(CHECKED_BEFORE_LOADING))
def test_bad_input_is_refused_before_the_model_loads(model_dir, tmp_path, capsys, no_model_load, case):
    extra, fragments = CHECKED_BEFORE_LOADING[case]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a png")
    user_file = tmp_path / "mine"
    user_file.write_text("my own file")
    user_folder = tmp_path / "my_folder"
    user_folder.mkdir()
    (user_folder / "notes.txt").write_text("my own notes")
    (tmp_path / "folder.gif").mkdir()
    existing_gif = tmp_path / "existing.gif"
    existing_gif.write_bytes(b"my own gif")
    names = {
        "broken": broken,
        "video": write_gif(tmp_path / "input.gif", num_frames=5),
        "folder": tmp_path,
        "user_file": user_file,
        "user_folder": user_folder,
        "folder_named_gif": tmp_path / "folder.gif",
        "existing_gif": existing_gif,
    }
    extra = [value.format(**names) for value in extra]
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    output = tmp_path / "out.gif"
    arguments = ["generate", "a cat", "--model", str(model_dir), "--output", str(output), *SMALL]

    code, out, err = run_main(capsys, *arguments, *extra)

    assert_one_line_error(code, err, *fragments)
    assert out == ""
    assert not output.exists() and leftovers(tmp_path) == [] and leftovers(user_folder) == []
    # nothing of the user's was changed, and nothing was added
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_cuda(model_dir, tmp_path, capsys, no_model_load):
    code, _, err = run_main(
        capsys, "generate", "a cat", "--model", str(model_dir), "--output", str(tmp_path / "x.gif"), "--device", "cuda"
    )
    assert_one_line_error(code, err, "--device", "CUDA")


def test_missing_default_model(tmp_path, capsys, monkeypatch, no_model_load):
    # the package ships a default model; the message is for an install where it is missing
    monkeypatch.setattr(cli, "DEFAULT_MODEL", tmp_path / "missing_default_model")
    code, _, err = run_main(capsys, "generate", "a cat", "--output", str(tmp_path / "x.mp4"))
    assert_one_line_error(code, err, "default model is not installed", "missing_default_model", "--model")
    assert list(tmp_path.iterdir()) == []


def test_missing_output_and_command_are_usage_errors(capsys):
    code, _, err = run_main(capsys, "generate", "a cat")
    assert_one_line_error(code, err, "--output")
    code, _, err = run_main(capsys)
    assert_one_line_error(code, err, "command")


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--height", "30"], ["--height: ", "`height`", "30"]),
        (["--width", "18"], ["--width: ", "`width`", "18"]),
        (["--steps", "5000"], ["--steps: ", "5000"]),
    ],
    ids=["height-not-a-multiple", "width-not-a-multiple", "steps-beyond-the-schedule"],
)
def test_pipeline_input_errors_name_the_flag(model_dir, tmp_path, capsys, extra, fragments):
    output = tmp_path / "out.mp4"
    arguments = ["generate", "a cat", "--model", str(model_dir), "--output", str(output), *SMALL]
    code, _, err = run_main(capsys, *arguments, *extra)
    assert_one_line_error(code, err, *fragments)
    assert list(tmp_path.iterdir()) == []


def test_video_length_breaking_the_frame_rule_names_num_frames(tmp_path, capsys):
    # the default model's VAE takes 1 + 4k frames: a 10-frame video needs --num_frames 9
    video = write_gif(tmp_path / "input.gif", num_frames=10, size=64)
    output = tmp_path / "out.gif"
    code, _, err = run_main(capsys, "generate", "a red circle", "--video", str(video), "--output", str(output))
    assert_one_line_error(code, err, "--num_frames", "10 frames of --video", "`num_frames`")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["input.gif"]


def test_non_finite_frames_write_nothing(model_dir, tmp_path, capsys):
    output = tmp_path / "out.gif"
    code, out, err = run_main(
        capsys, "generate", "a cat", "--model", str(model_dir), "--output", str(output), *SMALL,
        "--guidance_scale", "1e30",
    )  # fmt: skip
    assert_one_line_error(code, err, "NaN", "--guidance_scale", "nothing was written", exit_code=1)
    assert out == "" and list(tmp_path.iterdir()) == []


def test_model_that_does_not_load_is_a_runtime_error(tmp_path, capsys):
    broken = tmp_path / "broken_model"
    broken.mkdir()
    (broken / "model_index.json").write_text('{"_class_name": "VideoLatentPipeline", "unet": ["diffusers", "Nope"]}')
    output = tmp_path / "out.gif"
    code, _, err = run_main(capsys, "generate", "a cat", "--model", str(broken), "--output", str(output))
    assert_one_line_error(code, err, "--model", "cannot load", exit_code=1)
    assert not output.exists() and leftovers(tmp_path) == []


def test_scheduler_names_resolve():
    import diffusers

    for alias, class_name in cli.SCHEDULER_ALIASES.items():
        assert cli._resolve_scheduler_class(alias) is getattr(diffusers, class_name)
    assert cli._resolve_scheduler_class("UniPCMultistepScheduler") is diffusers.UniPCMultistepScheduler
    with pytest.raises(cli.UsageError, match="AutoencoderKL"):
        cli._resolve_scheduler_class("AutoencoderKL")


# ----------------------------------------------------------------------------------------------------------------------
# push
# ----------------------------------------------------------------------------------------------------------------------


def test_push_uploads_folder_with_card(model_dir, tmp_path, capsys, monkeypatch):
    from diffusers_videolatent import hub

    calls = []
    monkeypatch.setattr(hub, "create_repo", lambda repo_id, **kwargs: calls.append(repo_id) or _Repo(repo_id))
    monkeypatch.setattr(hub, "upload_folder", lambda **kwargs: calls.append(kwargs) or _Repo("org/tiny"))
    folder = tmp_path / "to-push"
    VideoLatentPipeline.from_pretrained(model_dir).save_pretrained(folder)

    code, out, err = run_main(capsys, "push", str(folder), "org/tiny", "--private", "--create-pr")

    assert code == 0, err
    assert calls[0] == "org/tiny"
    assert calls[1]["repo_id"] == "org/tiny" and calls[1]["folder_path"] == str(folder)
    assert calls[1]["create_pr"] is True
    card = (folder / "README.md").read_text()
    assert "pipeline_tag: text-to-video" in card and "VideoLatentPipeline.from_pretrained" in card
    assert out.startswith("Uploaded ")


def test_push_refuses_a_folder_that_is_not_ours(tmp_path, capsys):
    code, out, err = run_main(capsys, "push", str(tmp_path / "missing"), "org/tiny")
    assert_one_line_error(code, err, "missing")

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"_class_name": "UNet2DConditionModel"}')
    code, out, err = run_main(capsys, "push", str(tmp_path / "other"), "org/tiny")
    assert_one_line_error(code, err, "UNet2DConditionModel")


class _Repo:
    def __init__(self, repo_id: str):
        self.repo_id = repo_id
        self.commit_url = f"https://huggingface.co/{repo_id}/commit/0123"
