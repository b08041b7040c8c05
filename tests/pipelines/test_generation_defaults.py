"""The recommended call settings live in the saved pipeline (`generation_defaults` in `model_index.json`): they are the
defaults of a plain `pipe(prompt)`, explicit arguments override them, and save/load and the model card keep them."""

import json
import shutil

import pytest

from diffusers_videolatent import VideoLatentPipeline
from diffusers_videolatent.cli import DEFAULT_MODEL
from diffusers_videolatent.generation_defaults import load_generation_defaults
from diffusers_videolatent.model_card import create_model_card

from ..testing_utils import build_pipeline_components, build_unet3d


DEFAULTS = {"num_frames": 5, "height": 16, "width": 24, "fps": 4, "num_inference_steps": 3, "guidance_scale": 1.0}


def count_steps(pipe: VideoLatentPipeline, **call) -> tuple[tuple, int]:
    steps = []

    def on_step_end(pipeline, step, timestep, callback_kwargs):
        steps.append(step)
        return callback_kwargs

    frames = pipe("a red circle", output_type="np", callback_on_step_end=on_step_end, **call).frames
    return frames.shape, len(steps)


def build_pipeline_with_defaults() -> VideoLatentPipeline:
    pipe = VideoLatentPipeline(**build_pipeline_components(), generation_defaults=DEFAULTS)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_a_plain_call_uses_the_pipelines_defaults_and_arguments_override_them():
    pipe = build_pipeline_with_defaults()
    assert count_steps(pipe) == ((1, 5, 16, 24, 3), 3)
    assert count_steps(pipe, num_frames=1, height=8, num_inference_steps=2) == ((1, 1, 8, 24, 3), 2)
    assert pipe.resolve_generation_settings(fps=12)["fps"] == 12
    assert pipe.resolve_generation_settings()["guidance_scale"] == 1.0


def test_without_defaults_the_fallbacks_apply():
    pipe = VideoLatentPipeline(**build_pipeline_components())
    assert pipe.config.generation_defaults is None
    # the U-Net's sample_size 8 times the VAE's spatial ratio 2
    assert pipe.resolve_generation_settings() == {
        "num_frames": 17,
        "height": 16,
        "width": 16,
        "fps": 8,
        "num_inference_steps": 50,
        "guidance_scale": 7.5,
    }


def test_save_and_load_keep_the_defaults(tmp_path):
    pipe = build_pipeline_with_defaults()
    pipe.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "model_index.json").read_text())["generation_defaults"] == DEFAULTS
    loaded = VideoLatentPipeline.from_pretrained(tmp_path / "saved")
    assert loaded.config.generation_defaults == DEFAULTS
    # an explicit argument of from_pretrained wins, as for any pipeline config entry
    other = VideoLatentPipeline.from_pretrained(tmp_path / "saved", generation_defaults={"num_frames": 9})
    assert other.config.generation_defaults == {"num_frames": 9}


def test_the_card_shows_the_saved_defaults(tmp_path):
    pipe = build_pipeline_with_defaults()
    pipe.save_pretrained(tmp_path / "saved")
    card = create_model_card(tmp_path / "saved")
    assert "num_frames=5," in card.text and "width=24," in card.text and "num_inference_steps=3," in card.text


def test_the_card_and_the_pipeline_resolve_a_rectangular_sample_size_alike(tmp_path):
    # one resolver: the card recommends what a plain call of the saved pipeline uses, (height, width) sizes included
    pipe = VideoLatentPipeline(**build_pipeline_components(unet=build_unet3d(sample_size=(8, 12))))
    settings = pipe.resolve_generation_settings()
    assert (settings["height"], settings["width"]) == (16, 24)
    pipe.save_pretrained(tmp_path / "saved")
    card = create_model_card(tmp_path / "saved")
    assert "height=16," in card.text and "width=24," in card.text


def test_settings_are_read_from_model_index_json_only(tmp_path):
    # a `videolatent.json` beside `model_index.json` (never shipped in a release) is not read
    folder = tmp_path / "folder"
    shutil.copytree(DEFAULT_MODEL, folder)
    index = json.loads((folder / "model_index.json").read_text())
    settings = index.pop("generation_defaults")
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "videolatent.json").write_text(json.dumps(settings))
    assert load_generation_defaults(folder) is None
    assert VideoLatentPipeline.from_pretrained(folder).config.generation_defaults is None


def test_the_shipped_model_generates_with_its_recommended_settings():
    pipe = VideoLatentPipeline.from_pretrained(DEFAULT_MODEL)
    settings = pipe.resolve_generation_settings()
    assert (settings["num_frames"], settings["height"], settings["width"]) == (17, 64, 64)
    assert (settings["num_inference_steps"], settings["guidance_scale"]) == (25, 1.5)


@pytest.mark.parametrize(
    "generation_defaults, error, match",
    [
        ({"steps": 4}, ValueError, r"unknown key\(s\) \['steps'\]"),
        ({"num_frames": 0}, ValueError, r"generation_defaults\['num_frames'\]"),
        ({"height": 16.0}, ValueError, r"generation_defaults\['height'\]"),
        ({"guidance_scale": float("nan")}, ValueError, r"generation_defaults\['guidance_scale'\]"),
        ({"fps": -1}, ValueError, r"generation_defaults\['fps'\]"),
        ({"vocabulary": "red blue"}, ValueError, r"generation_defaults\['vocabulary'\]"),
        ([("num_frames", 5)], TypeError, "`generation_defaults` must be a dict"),
    ],
)
def test_bad_defaults_are_refused(generation_defaults, error, match):
    with pytest.raises(error, match=match):
        VideoLatentPipeline(**build_pipeline_components(), generation_defaults=generation_defaults)
