"""End-to-end tests of the `videolatent` command on a tiny pipeline saved to a temporary folder."""

import os
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import PIL.Image
import pytest

from diffusers_videolatent import VideoLatentPipeline, cli


sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import build_pipeline_components  # noqa: E402


SMALL = ["--num_frames", "5", "--height", "32", "--width", "32", "--steps", "2", "--seed", "0"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    VideoLatentPipeline(**build_pipeline_components(folder / "tokenizer_source")).save_pretrained(folder / "pipeline")
    return folder / "pipeline"


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


def test_generate_gif(model_dir, tmp_path, capsys):
    output = tmp_path / "clip.gif"
    code, out, err = run_main(
        capsys, "generate", "a red panda", "--model", str(model_dir), "--output", str(output), *SMALL
    )
    assert code == 0, err
    assert f"to {output}" in out and " s" in out
    frames = imageio.mimread(output)
    assert len(frames) == 5 and frames[0].shape[:2] == (32, 32)
    assert leftovers(tmp_path) == []


def test_generate_png_folder_with_scheduler_alias(model_dir, tmp_path, capsys):
    output = tmp_path / "frames"
    code, out, err = run_main(
        capsys, "generate", "a cat", "--model", str(model_dir), "--output", str(output), "--scheduler", "dpm++", *SMALL
    )
    assert code == 0, err
    assert sorted(path.name for path in output.iterdir()) == [f"frame_{index:04d}.png" for index in range(5)]
    assert PIL.Image.open(output / "frame_0000.png").size == (32, 32)
    assert leftovers(tmp_path) == []


def test_generate_image_and_video_to_video(model_dir, tmp_path, capsys):
    image_path = tmp_path / "first.png"
    PIL.Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(image_path)
    code, _, err = run_main(
        capsys, "generate", "a cat", "--model", str(model_dir), "--output", str(tmp_path / "i2v.gif"),
        "--image", str(image_path), *SMALL,
    )  # fmt: skip
    assert code == 0, err

    code, _, err = run_main(
        capsys, "generate", "a cat", "--model", str(model_dir), "--output", str(tmp_path / "v2v.gif"),
        "--video", str(tmp_path / "i2v.gif"), "--strength", "0.5", "--height", "32", "--width", "32", "--steps", "2",
    )  # fmt: skip
    assert code == 0, err
    assert len(imageio.mimread(tmp_path / "v2v.gif")) == 5


def test_generate_mp4_in_a_subprocess(model_dir, tmp_path):
    output = tmp_path / "clip.mp4"
    # one thread: tiny models on a shared machine run far faster without intra-op parallelism
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "diffusers_videolatent", "generate", "a red panda"]
    command += ["--model", str(model_dir), "--output", str(output), "--fps", "4", *SMALL]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"to {output}" in result.stdout
    frames = imageio.mimread(output, memtest=False)
    assert len(frames) == 5 and frames[0].shape[:2] == (32, 32)
    assert leftovers(tmp_path) == []


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("videolatent")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_missing_default_model(tmp_path, capsys, monkeypatch):
    # the package ships a default model; the message is for an install where it is missing
    monkeypatch.setattr(cli, "DEFAULT_MODEL", tmp_path / "missing_default_model")
    code, _, err = run_main(capsys, "generate", "a cat", "--output", str(tmp_path / "x.mp4"))
    assert_one_line_error(code, err, "default model is not installed", "missing_default_model", "--model")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--num_frames", "0"], ["`num_frames`", "got 0"]),
        (["--height", "30"], ["`height`", "30"]),
        (["--strength", "1.5", "--video", "{video}"], ["`strength`", "1.5"]),
        (["--image", "{bad_image}"], ["--image", "cannot read it as an image"]),
        (["--video", "{bad_image}"], ["--video", "cannot read it as a video"]),
        (["--image", "{missing}"], ["--image", "cannot read it as an image"]),
        (["--scheduler", "warp-drive"], ["--scheduler", "warp-drive"]),
        (["--image", "{video}", "--video", "{video}"], ["only one of --image"]),
    ],
    ids=[
        "num_frames",
        "height",
        "strength",
        "bad-image",
        "bad-video",
        "missing-image",
        "scheduler",
        "image-and-video",
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(model_dir, tmp_path, capsys, extra, fragments):
    bad_image = tmp_path / "broken.png"
    bad_image.write_bytes(b"this is not a png")
    video = tmp_path / "input.gif"
    frames = [PIL.Image.new("RGB", (32, 32), (40 * index, 0, 0)) for index in range(5)]
    frames[0].save(video, save_all=True, append_images=frames[1:], duration=100)
    names = {"bad_image": bad_image, "video": video, "missing": tmp_path / "missing.png"}
    extra = [value.format(**names) for value in extra]

    output = tmp_path / "out.mp4"
    defaults = {"--num_frames": "5", "--height": "32", "--width": "32", "--steps": "2"}
    for flag in extra[::2]:
        defaults.pop(flag, None)
    arguments = [item for pair in defaults.items() for item in pair]
    code, _, err = run_main(
        capsys, "generate", "a cat", "--model", str(model_dir), "--output", str(output), *arguments, *extra
    )
    assert_one_line_error(code, err, *fragments)
    assert not output.exists() and leftovers(tmp_path) == []


def test_bad_output_extension_and_usage_errors(tmp_path, capsys, model_dir):
    code, _, err = run_main(
        capsys, "generate", "a cat", "--model", str(model_dir), "--output", str(tmp_path / "x.avi")
    )
    assert_one_line_error(code, err, ".avi")

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["generate"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "required" in err


def test_scheduler_names_resolve():
    import diffusers

    for alias, class_name in cli.SCHEDULER_ALIASES.items():
        assert cli._resolve_scheduler_class(alias) is getattr(diffusers, class_name)
    assert cli._resolve_scheduler_class("UniPCMultistepScheduler") is diffusers.UniPCMultistepScheduler
    with pytest.raises(cli.CommandError, match="AutoencoderKL"):
        cli._resolve_scheduler_class("AutoencoderKL")


def test_push_uploads_folder_with_card(model_dir, tmp_path, capsys, monkeypatch):
    from diffusers_videolatent import hub

    calls = []
    monkeypatch.setattr(hub, "create_repo", lambda repo_id, **kwargs: calls.append(repo_id) or _Repo(repo_id))
    monkeypatch.setattr(hub, "upload_folder", lambda **kwargs: calls.append(kwargs) or _Repo("org/tiny"))
    folder = tmp_path / "to-push"
    VideoLatentPipeline.from_pretrained(model_dir).save_pretrained(folder)

    code, out, err = run_main(capsys, "push", str(folder), "org/tiny", "--private")

    assert code == 0, err
    assert calls[0] == "org/tiny"
    assert calls[1]["repo_id"] == "org/tiny" and calls[1]["folder_path"] == str(folder)
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
