"""Hostile inputs to `VideoLatentPipeline.__call__`: each is refused up front with an error naming the argument, or
converted the way diffusers converts it; nothing yields a silently wrong video. Tiny real components, CPU only."""

import logging
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

import diffusers_videolatent
from diffusers_videolatent import AutoencoderKLVideo, VideoLatentPipeline
from diffusers_videolatent.pipelines import pipeline_video_latent

from ..testing_utils import build_image_vae, build_pipeline, build_unet, recording_unet_calls


CALL = {"prompt": "a cat", "num_frames": 5, "height": 16, "width": 16, "num_inference_steps": 2, "output_type": "pt"}
NAN, INF = float("nan"), float("inf")


def call(pipe, **overrides):
    arguments = {**CALL, "generator": torch.manual_seed(0)}
    arguments.update(overrides)
    return pipe(**arguments)


def random_image(mode: str = "RGB", size: int = 16, seed: int = 0) -> PIL.Image.Image:
    channels = {"RGB": 3, "RGBA": 4}[mode]
    values = (np.random.default_rng(seed).random((size, size, channels)) * 255).astype(np.uint8)
    return PIL.Image.fromarray(values, mode)


def nan_at_corner(value):
    value = value.clone() if isinstance(value, torch.Tensor) else value.copy()
    value[(0,) * value.ndim] = NAN
    return value


VIDEO = torch.rand(5, 3, 16, 16)

HOSTILE_INPUTS = [
    # non-finite numbers, for every float argument
    ("guidance_scale-nan", {"guidance_scale": NAN}, ValueError, "guidance_scale"),
    ("guidance_scale-inf", {"guidance_scale": INF}, ValueError, "guidance_scale"),
    ("guidance_scale--inf", {"guidance_scale": -INF}, ValueError, "guidance_scale"),
    ("guidance_rescale-nan", {"guidance_rescale": NAN}, ValueError, "guidance_rescale"),
    ("strength-nan", {"video": VIDEO, "strength": NAN}, ValueError, "strength"),
    ("fps-nan", {"fps": NAN}, ValueError, "fps"),
    ("fps-inf", {"fps": INF}, ValueError, "fps"),
    ("eta-nan", {"eta": NAN}, ValueError, "eta"),
    ("eta-inf", {"eta": INF}, ValueError, "eta"),
    ("eta-negative", {"eta": -0.5}, ValueError, "eta"),
    ("eta-string", {"eta": "0"}, TypeError, "eta"),
    ("sigmas-nan", {"num_inference_steps": None, "sigmas": [14.6, NAN, 0.5]}, ValueError, "sigmas"),
    ("sigmas-negative", {"num_inference_steps": None, "sigmas": [14.6, -1.0]}, ValueError, "sigmas"),
    ("timesteps-inf", {"num_inference_steps": None, "timesteps": [999, INF]}, ValueError, "timesteps"),
    ("timesteps-string", {"num_inference_steps": None, "timesteps": "999"}, TypeError, "timesteps"),
    # empty schedules
    ("sigmas-empty", {"num_inference_steps": None, "sigmas": []}, ValueError, "sigmas"),
    ("timesteps-empty", {"num_inference_steps": None, "timesteps": []}, ValueError, "timesteps"),
    # non-finite tensors
    ("latents-nan", {"latents": nan_at_corner(torch.randn(1, 4, 5, 8, 8))}, ValueError, "latents"),
    ("latents-int", {"latents": torch.zeros(1, 4, 5, 8, 8, dtype=torch.int64)}, TypeError, "latents"),
    (
        "prompt_embeds-nan",
        {"prompt": None, "prompt_embeds": nan_at_corner(torch.randn(1, 16, 16))},
        ValueError,
        "prompt_embeds",
    ),
    (
        "negative_prompt_embeds-inf",
        {
            "prompt": None,
            "prompt_embeds": torch.randn(1, 16, 16),
            "negative_prompt_embeds": torch.full((1, 16, 16), INF),
        },
        ValueError,
        "negative_prompt_embeds",
    ),
    ("image-tensor-nan", {"image": nan_at_corner(torch.rand(3, 16, 16))}, ValueError, "image"),
    ("image-array-inf", {"image": np.full((16, 16, 3), INF, dtype=np.float32)}, ValueError, "image"),
    ("video-tensor-nan", {"video": nan_at_corner(VIDEO)}, ValueError, "video"),
    ("video-array-nan", {"video": nan_at_corner(np.random.rand(5, 16, 16, 3))}, ValueError, "video"),
    # sizes: 0 or negative is an error, never "the default"
    ("height-0", {"height": 0}, ValueError, "height"),
    ("width-0", {"width": 0}, ValueError, "width"),
    ("height-negative", {"height": -16}, ValueError, "height"),
    ("num_frames-negative", {"num_frames": -3}, ValueError, "num_frames"),
    # wrong types and empty or mixed media
    ("generator-int", {"generator": 0}, TypeError, "generator"),
    ("generator-list-of-ints", {"generator": [0]}, TypeError, "generator"),
    ("image-empty-list", {"image": []}, ValueError, "image"),
    ("image-mixed-list", {"image": [random_image(), torch.rand(3, 16, 16)]}, TypeError, "image"),
    ("image-list-of-strings", {"image": ["frame.png"]}, TypeError, "image"),
    ("image-5-channels", {"image": torch.rand(5, 16, 16)}, ValueError, "image"),
    ("image-channels-first-array", {"image": np.random.rand(3, 16, 16)}, ValueError, "image"),
    ("image-int64-array", {"image": np.zeros((16, 16, 3), dtype=np.int64)}, TypeError, "image"),
    ("image-0-255-floats", {"image": torch.rand(3, 16, 16) * 255}, ValueError, "image"),
    ("image-1d", {"image": torch.rand(16)}, ValueError, "image"),
    ("video-list-of-strings", {"video": ["a.png", "b.png"]}, TypeError, "video"),
    ("video-empty-list", {"video": []}, ValueError, "video"),
    ("video-zero-frames", {"video": torch.rand(0, 3, 16, 16)}, ValueError, "video"),
    ("video-mixed-list", {"video": [random_image(), np.random.rand(16, 16, 3)]}, TypeError, "video"),
    ("video-3d-tensor", {"video": torch.rand(3, 16, 16)}, ValueError, "video"),
    ("video-unequal-lengths", {"prompt": ["a", "b"], "video": [VIDEO, VIDEO[:1]]}, ValueError, "video"),
    ("num_videos_per_prompt-float", {"num_videos_per_prompt": 1.0}, TypeError, "num_videos_per_prompt"),
    ("clip_skip-too-deep", {"clip_skip": 100}, ValueError, "clip_skip"),
    ("clip_skip-all-layers", {"clip_skip": 2}, ValueError, "clip_skip"),
    ("clip_skip-negative", {"clip_skip": -1}, ValueError, "clip_skip"),
    ("clip_skip-float", {"clip_skip": 1.0}, ValueError, "clip_skip"),
    ("callback-not-callable", {"callback_on_step_end": 5}, TypeError, "callback_on_step_end"),
    ("cross_attention_kwargs-string", {"cross_attention_kwargs": "scale"}, TypeError, "cross_attention_kwargs"),
    (
        "negative_prompt_embeds-wrong-batch",
        {"prompt": ["a", "b"], "negative_prompt_embeds": torch.zeros(1, 16, 16)},
        ValueError,
        "negative_prompt_embeds",
    ),
    ("strength-keeps-no-step", {"video": VIDEO, "strength": 0.1, "num_inference_steps": 4}, ValueError, "strength"),
]


@pytest.mark.parametrize(
    "overrides, error, name", [case[1:] for case in HOSTILE_INPUTS], ids=[case[0] for case in HOSTILE_INPUTS]
)
def test_hostile_input_is_refused_naming_the_argument(euler_pipe, overrides, error, name):
    with recording_unet_calls(euler_pipe) as calls, pytest.raises(error, match=f"`{name}"):
        call(euler_pipe, **overrides)
    # refused before any denoising step
    assert calls == []


def test_zero_size_is_not_the_default(euler_pipe):
    # the default size is used only for `None`; before, `height=0` silently became the default
    default = call(euler_pipe, height=None, width=None).frames
    assert default.shape[-2:] == (16, 16)
    with pytest.raises(ValueError, match=r"`height` is 0, but .* needs a positive multiple of 4\.$"):
        call(euler_pipe, height=0)


def test_encode_prompt_checks_clip_skip_and_embeddings(euler_pipe):
    with pytest.raises(ValueError, match="`clip_skip` is 100, but the text encoder has 2 layers: skip at most 1"):
        euler_pipe.encode_prompt("a cat", clip_skip=100)
    with pytest.raises(ValueError, match="`prompt_embeds` holds 1 non-finite"):
        euler_pipe.encode_prompt(
            None, prompt_embeds=nan_at_corner(torch.randn(1, 16, 16)), do_classifier_free_guidance=False
        )
    # the deepest valid skip still works and differs from no skip
    skipped, _ = euler_pipe.encode_prompt("a cat", clip_skip=1, do_classifier_free_guidance=False)
    plain, _ = euler_pipe.encode_prompt("a cat", do_classifier_free_guidance=False)
    assert skipped.shape == plain.shape and not torch.allclose(skipped, plain)


# ----------------------------------------------------------------------------------------------------------------------
# Images in other modes are converted to RGB, as diffusers' `load_image` does
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "CMYK"])
def test_pil_image_in_another_mode_equals_its_rgb_conversion(euler_pipe, mode):
    image = random_image("RGBA").convert(mode)
    frames = call(euler_pipe, image=image).frames
    expected = call(euler_pipe, image=image.convert("RGB")).frames
    assert torch.equal(frames, expected)
    assert torch.isfinite(frames).all()


def test_rgba_alpha_is_dropped(euler_pipe):
    # the conversion drops the alpha: a different alpha gives the same video, a different colour does not
    rgba = np.asarray(random_image("RGBA")).copy()
    other_alpha = rgba.copy()
    other_alpha[..., 3] = 255 - other_alpha[..., 3]
    other_colour = rgba.copy()
    other_colour[..., 0] = 255 - other_colour[..., 0]
    frames = call(euler_pipe, image=PIL.Image.fromarray(rgba, "RGBA")).frames
    assert torch.equal(frames, call(euler_pipe, image=PIL.Image.fromarray(other_alpha, "RGBA")).frames)
    assert not torch.allclose(frames, call(euler_pipe, image=PIL.Image.fromarray(other_colour, "RGBA")).frames)


def test_arrays_and_tensors_with_1_2_or_4_channels_are_converted(euler_pipe):
    rgba = torch.rand(4, 16, 16)
    expected = call(euler_pipe, image=rgba[:3]).frames
    assert torch.equal(call(euler_pipe, image=rgba).frames, expected)
    assert torch.equal(call(euler_pipe, image=rgba.permute(1, 2, 0).numpy()).frames, expected)

    gray = torch.rand(1, 16, 16)
    expected_gray = call(euler_pipe, image=gray.expand(3, -1, -1)).frames
    assert torch.equal(call(euler_pipe, image=gray).frames, expected_gray)
    assert torch.equal(call(euler_pipe, image=gray[0]).frames, expected_gray)  # (H, W): no channel axis
    assert torch.equal(call(euler_pipe, image=gray[0].numpy()).frames, expected_gray)
    assert torch.equal(call(euler_pipe, image=torch.cat([gray, torch.rand(1, 16, 16)])).frames, expected_gray)  # LA

    # uint8 arrays hold 0..255, as `np.asarray(pil_image)` gives
    image = random_image()
    from_pil = call(euler_pipe, image=image).frames
    from_uint8 = call(euler_pipe, image=np.asarray(image)).frames
    assert torch.allclose(from_pil, from_uint8, atol=1e-5)


def test_video_frames_in_other_modes_are_converted(euler_pipe):
    frames_rgba = [random_image("RGBA", seed=index) for index in range(5)]
    converted = call(euler_pipe, video=frames_rgba, num_frames=None, strength=0.5).frames
    expected = call(
        euler_pipe, video=[frame.convert("RGB") for frame in frames_rgba], num_frames=None, strength=0.5
    ).frames
    assert torch.equal(converted, expected)

    video_rgba = torch.rand(5, 4, 16, 16)
    assert torch.equal(
        call(euler_pipe, video=video_rgba, strength=0.5).frames,
        call(euler_pipe, video=video_rgba[:, :3], strength=0.5).frames,
    )


# ----------------------------------------------------------------------------------------------------------------------
# The U-Net's frame table: the largest `num_frames` runs, the next valid count is refused naming it
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("temporal_ratio, largest", [(1, 8), (4, 29)])
def test_largest_num_frames_runs_and_the_next_is_refused(temporal_ratio, largest):
    # an 8-latent-frame table: 8 frames frame by frame, 1 + 7 * 4 = 29 frames with a temporal ratio of 4
    vae = AutoencoderKLVideo.from_image_vae(build_image_vae(), temporal_compression_ratio=temporal_ratio)
    pipe = build_pipeline(vae=vae, unet=build_unet(temporal_max_frames=8))
    frames = call(pipe, num_frames=largest, num_inference_steps=1).frames
    assert frames.shape == (1, largest, 3, 16, 16) and torch.isfinite(frames).all()

    next_count = largest + temporal_ratio
    with recording_unet_calls(pipe) as calls:
        with pytest.raises(
            ValueError, match=rf"`num_frames` is {next_count}.*the largest `num_frames` it takes is {largest}"
        ):
            call(pipe, num_frames=next_count)
        with pytest.raises(ValueError, match=rf"largest `num_frames` it takes is {largest}; trim `video`"):
            call(pipe, video=torch.rand(next_count, 3, 16, 16), num_frames=None)
    assert calls == []


def test_default_model_takes_at_most_61_frames():
    pipe = VideoLatentPipeline.from_pretrained(Path(diffusers_videolatent.__file__).parent / "default_model")
    pipe.set_progress_bar_config(disable=True)
    with (
        recording_unet_calls(pipe) as calls,
        pytest.raises(ValueError, match="`num_frames` is 65.*holds 16 latent frames.*it takes is 61"),
    ):
        pipe("a red circle moving right", num_frames=65, num_inference_steps=1)
    assert calls == []


# ----------------------------------------------------------------------------------------------------------------------
# A finite but huge guidance scale: the video comes out non-finite, and the pipeline says why
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("output_type", ["pt", "latent"])
def test_non_finite_output_warns_naming_the_likely_cause(euler_pipe, caplog, output_type):
    logger_name = pipeline_video_latent.logger.name
    with caplog.at_level(logging.WARNING, logger=logger_name):
        frames = call(euler_pipe, guidance_scale=1e30, output_type=output_type).frames
    assert not torch.isfinite(frames).all()
    warnings = [record.getMessage() for record in caplog.records if record.name == logger_name]
    assert len(warnings) == 1
    assert "non-finite values" in warnings[0] and "`guidance_scale`=1e+30" in warnings[0]

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=logger_name):
        frames = call(euler_pipe, guidance_scale=7.5, output_type=output_type).frames
    assert torch.isfinite(frames).all()
    assert [record for record in caplog.records if record.name == logger_name] == []


def test_finite_extremes_are_still_accepted(euler_pipe):
    # the checks refuse only what cannot give a meaningful video: these are unusual but valid
    assert torch.isfinite(call(euler_pipe, guidance_scale=-2.0).frames).all()
    assert torch.isfinite(
        call(euler_pipe, image=torch.rand(3, 16, 16) * 2 - 1).frames
    ).all()  # diffusers' older [-1, 1]
    assert torch.isfinite(call(euler_pipe, num_inference_steps=None, sigmas=[14.6, 3.0, 0.5]).frames).all()
    assert torch.isfinite(call(euler_pipe, eta=1.0, clip_skip=0).frames).all()
