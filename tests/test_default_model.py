"""The shipped default model: it loads offline, `videolatent generate` uses it without `--model`, with its
recommended settings, and prompts with words outside its vocabulary still give a video, with a warning."""

import json

import imageio.v2 as imageio
import numpy as np
import pytest

from diffusers_videolatent import AutoencoderKLVideo, UNetSpatioTemporalModel, VideoLatentPipeline, cli


SETTINGS = json.loads((cli.DEFAULT_MODEL / "model_index.json").read_text())["generation_defaults"]


pytestmark = pytest.mark.usefixtures("offline")


def centroid(mask: np.ndarray) -> np.ndarray:
    rows, columns = np.nonzero(mask)
    return np.array([columns.mean(), rows.mean()])  # (x, y)


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


def test_generate_from_an_image_keeps_the_object_and_moves_it_as_prompted(tmp_path, capsys):
    # Image-to-video with the shipped U-Net, trained for it (conditioning channels): from the first frame of an unseen
    # ground-truth video, frame 0 reproduces the image and the object keeps its colour and size while it moves the
    # way the prompt says, from where the image has it.
    import PIL.Image

    from diffusers_videolatent.training.evaluate import analyze_video, first_frame_psnr, segment_object
    from diffusers_videolatent.training.moving_shapes import SPEED_RANGE, render_moving_shape

    pipe = VideoLatentPipeline.from_pretrained(cli.DEFAULT_MODEL)
    assert pipe.unet.config.conditioning_channels == pipe.unet.config.in_channels + 1
    truth = render_moving_shape("blue", "square", "down", generator=np.random.default_rng(123))  # (F, H, W, 3)
    truth = np.round(truth * 255).astype(np.uint8)
    image_path = tmp_path / "first.png"
    PIL.Image.fromarray(truth[0]).save(image_path)
    output = tmp_path / "out.gif"
    code = cli.main(
        ["generate", "a blue square moving down", "--image", str(image_path), "--output", str(output), "--seed", "0"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    frames = read_gif(output)
    assert first_frame_psnr(frames, truth[0]) > 28
    generated = analyze_video(frames)
    assert (generated.color, generated.direction) == ("blue", "down")
    assert generated.area_variation < 0.1
    # it goes from where the image has it, down the ground truth's line, at a speed of the world it was fine-tuned
    # on (docs/dials.md: 0.15-0.45 frame sizes per second, so 19-58 px over the 2 s of 17 frames at 8 fps; the speed
    # is the model's to choose, the caption does not give it)
    masks, reference_masks = segment_object(frames), segment_object(truth)
    start = centroid(masks[0])
    assert np.hypot(*(start - centroid(reference_masks[0]))) < 4
    for index in (8, 16):
        assert abs(centroid(masks[index])[0] - centroid(reference_masks[index])[0]) < 4, index
    travel = centroid(masks[16])[1] - start[1]
    seconds = 16 / pipe.resolve_generation_settings()["fps"]
    low, high = (speed * frames.shape[1] * seconds for speed in SPEED_RANGE)
    assert low <= travel <= high, (low, travel, high)
