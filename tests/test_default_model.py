"""The shipped default model: it loads offline, `videolatent generate` uses it without `--model`, with its
recommended settings, and prompts with words outside its vocabulary still give a video, with a warning."""

import json

import imageio.v2 as imageio
import numpy as np
import pytest

from diffusers_videolatent import AutoencoderKLVideo, UNetSpatioTemporalModel, VideoLatentPipeline, cli


SETTINGS = json.loads((cli.DEFAULT_MODEL / "model_index.json").read_text())["generation_defaults"]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def read_gif(path) -> np.ndarray:
    return np.stack([frame[..., :3] for frame in imageio.mimread(path)])  # (F, H, W, 3)


def test_shipped_folder_loads_offline_and_is_small():
    pipe = VideoLatentPipeline.from_pretrained(cli.DEFAULT_MODEL)
    assert isinstance(pipe.vae, AutoencoderKLVideo) and isinstance(pipe.unet, UNetSpatioTemporalModel)
    assert (pipe.vae.spatial_compression_ratio, pipe.vae.temporal_compression_ratio) == (8, 4)
    weights = sorted(cli.DEFAULT_MODEL.rglob("*.safetensors"))
    assert len(weights) == 3  # vae, unet, text_encoder
    assert sum(path.stat().st_size for path in weights) < 12 * 2**20
    assert (SETTINGS["num_frames"], SETTINGS["height"], SETTINGS["width"]) == (17, 64, 64)
    # every word of the vocabulary is one token of the shipped tokenizer
    for word in SETTINGS["vocabulary"]:
        assert len(pipe.tokenizer(word, add_special_tokens=False).input_ids) == 1, word


def test_generate_without_model_uses_the_default_model(tmp_path, capsys):
    output = tmp_path / "out.gif"
    code = cli.main(["generate", "a red circle moving right", "--output", str(output), "--steps", "4", "--seed", "0"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "warning" not in captured.err
    assert f"Wrote {SETTINGS['num_frames']} frames (gif)" in captured.out
    frames = read_gif(output)
    assert frames.shape == (SETTINGS["num_frames"], SETTINGS["height"], SETTINGS["width"], 3)


def test_words_outside_the_vocabulary_warn_and_still_generate(tmp_path, capsys):
    output = tmp_path / "dog.gif"
    code = cli.main(["generate", "A red dog moving right!", "--output", str(output), "--steps", "2", "--seed", "0"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "'dog' not in the model's vocabulary" in warnings[0], captured.err
    assert read_gif(output).shape == (SETTINGS["num_frames"], SETTINGS["height"], SETTINGS["width"], 3)
