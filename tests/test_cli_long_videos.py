"""`videolatent generate` with windows (`--context_length`) and a travelling prompt (`--prompt_travel`)."""

from pathlib import Path

import imageio.v2 as imageio
import pytest

from diffusers_videolatent import cli

from .test_cli import assert_one_line_error, run_main


# the tiny model's frame table holds 8 latent frames; its VAE has temporal ratio 2, so it takes at most 15 frames
SMALL = ["--height", "16", "--width", "16", "--steps", "1", "--seed", "0"]


def generate(capsys, windowed_model_dir: Path, output: Path, *extra: str) -> tuple[int, str, str]:
    return run_main(
        capsys, "generate", "a cat", "--model", str(windowed_model_dir), "--output", str(output), *SMALL, *extra
    )


def test_long_travelling_video(windowed_model_dir, tmp_path, capsys):
    output = tmp_path / "long.gif"
    travel = ["--prompt_travel", "8:a dog", "16:a bird"]
    window = ["--context_length", "4", "--context_stride", "3", "--weighting_scheme", "flat", "--split_inference"]
    code, out, err = generate(capsys, windowed_model_dir, output, "--num_frames", "21", *window, *travel)
    assert code == 0, err
    assert "Wrote 21 frames" in out
    assert len(imageio.mimread(output)) == 21


def test_long_video_with_unet_windows(windowed_model_dir, tmp_path, capsys):
    output = tmp_path / "long.gif"
    window = ["--context_length", "4", "--context_stride", "2", "--context_scope", "unet"]
    code, out, err = generate(capsys, windowed_model_dir, output, "--num_frames", "21", *window)
    assert code == 0, err
    assert len(imageio.mimread(output)) == 21


def test_long_travelling_video_with_fifo(windowed_model_dir, tmp_path, capsys):
    output = tmp_path / "long.gif"
    fifo = ["--fifo", "--context_length", "4", "--steps", "3", "--prompt_travel", "8:a dog"]
    code, out, err = generate(capsys, windowed_model_dir, output, "--num_frames", "21", *fifo)
    assert code == 0, err
    assert len(imageio.mimread(output)) == 21


def test_too_many_frames_without_windows_says_how_to_turn_them_on(windowed_model_dir, tmp_path, capsys):
    code, _, err = generate(capsys, windowed_model_dir, tmp_path / "x.gif", "--num_frames", "21")
    fragments = ("--num_frames: ", "the largest `num_frames` it takes is 15", "--context_length 8", "or --fifo")
    assert_one_line_error(code, err, *fragments)


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--context_length", "0"], ["--context_length", "'0'"]),
        (["--context_length", "9"], ["--context_length: ", "holds 8 latent frames"]),
        (["--context_stride", "2"], ["--context_stride", "pass --context_length too"]),
        (["--split_inference"], ["--split_inference", "pass --context_length too"]),
        (["--context_scope", "unet"], ["--context_scope", "pass --context_length too"]),
        (["--context_length", "4", "--context_scope", "clip"], ["--context_scope", "'clip'"]),
        (["--context_length", "4", "--context_stride", "5"], ["--context_stride 5", "--context_length 4"]),
        (["--context_length", "4", "--weighting_scheme", "cosine"], ["--weighting_scheme", "cosine"]),
        (["--fifo", "--context_length", "9"], ["--context_length: ", "holds 8 latent frames"]),
        (["--fifo", "--context_stride", "2"], ["--context_stride applies to FreeNoise windows, not to --fifo"]),
        (["--fifo", "--split_inference"], ["--split_inference applies to FreeNoise windows, not to --fifo"]),
        (["--prompt_travel", "a dog"], ["--prompt_travel", "FRAME:PROMPT", "'a dog'"]),
        (["--prompt_travel", "0:a dog"], ["--prompt_travel", "FRAME an integer >= 1"]),
        (["--prompt_travel", "4:a dog", "4:a bird"], ["--prompt_travel", "frame 4 more than once"]),
        (["--prompt_travel", "30:a dog"], ["--prompt_travel: ", "frame index 30", "9 frames"]),
    ],
    ids=[
        "length-zero",
        "length-past-table",
        "stride-alone",
        "split-alone",
        "scope-alone",
        "scope-choice",
        "stride-past-length",
        "scheme",
        "fifo-length-past-table",
        "fifo-stride",
        "fifo-split",
        "travel-format",
        "travel-frame-0",
        "travel-repeated",
        "travel-past-end",
    ],
)
def test_bad_long_video_input(windowed_model_dir, tmp_path, capsys, extra, fragments):
    output = tmp_path / "out.gif"
    code, out, err = generate(capsys, windowed_model_dir, output, "--num_frames", "9", *extra)
    assert_one_line_error(code, err, *fragments)
    assert out == "" and not output.exists()


def test_help_documents_long_videos(capsys):
    assert cli.main(["generate", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for fragment in (
        "--context_length",
        "--context_stride",
        "--weighting_scheme",
        "--split_inference",
        "--context_scope",
        "--fifo",
    ):
        assert fragment in text
    assert "--prompt_travel FRAME:PROMPT" in text and "PROMPT (frame 0)" in text
