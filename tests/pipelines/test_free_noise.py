"""FreeNoise (`enable_free_noise`) and travelling prompts: equal to diffusers' `AnimateDiffPipeline` on converted weights."""

import numpy as np
import pytest
import torch
from diffusers import AnimateDiffPipeline, DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler

from diffusers_videolatent.models.unet_spatio_temporal import VideoLatentFreeNoiseTransformerBlock
from diffusers_videolatent.pipelines.free_noise import FreeNoiseWindows

from ..testing_utils import (
    build_image_vae,
    build_motion_adapter,
    build_pipeline,
    build_scheduler,
    build_text_encoder,
    build_tokenizer,
    build_unet,
    build_unet2d,
    build_unet3d,
    build_video_vae,
    load_conversion_script,
    randomize_weights_,
)


convert_script = load_conversion_script("convert_animatediff")

# 13 frames in windows of 6, 4 apart: [0, 6), [4, 10), then diffusers' last window [7, 13) (the stride misses 13)
NUM_FRAMES = 13
CALL = {"num_frames": NUM_FRAMES, "height": 8, "width": 8, "num_inference_steps": 2, "guidance_scale": 7.5}
PROMPT = "a red circle moving right"
TRAVEL = {0: "a red circle moving right", 6: "a blue square moving left", 10: "a green circle"}


def build_pair() -> tuple[AnimateDiffPipeline, object]:
    """diffusers' `AnimateDiffPipeline` and the `VideoLatentPipeline` converted from it (shared text encoder)."""
    components = {
        "vae": build_image_vae(),
        "text_encoder": build_text_encoder(),
        "tokenizer": build_tokenizer(),
        "unet": build_unet2d(),
        "scheduler": build_scheduler(),
    }
    adapter = build_motion_adapter()  # frame table of 8
    converted = convert_script.convert(components, adapter)
    reference = AnimateDiffPipeline(**components, motion_adapter=adapter)
    for pipe in (reference, converted):
        pipe.set_progress_bar_config(disable=True)
    return reference, converted


def full_latents(num_frames: int = NUM_FRAMES) -> torch.Tensor:
    return torch.randn((1, 4, num_frames, 4, 4), generator=torch.Generator().manual_seed(1))


def run(pipe, prompt=PROMPT, **kwargs) -> np.ndarray:
    return pipe(prompt, output_type="np", **{**CALL, **kwargs}).frames


@pytest.mark.parametrize("weighting_scheme", ["flat", "pyramid", "delayed_reverse_sawtooth"])
def test_free_noise_equals_animatediff(weighting_scheme):
    reference, converted = build_pair()
    for pipe in (reference, converted):
        pipe.enable_free_noise(context_length=6, context_stride=4, weighting_scheme=weighting_scheme)
    expected, actual = run(reference, latents=full_latents()), run(converted, latents=full_latents())
    assert actual.shape == expected.shape == (1, NUM_FRAMES, 8, 8, 3)
    assert np.abs(actual - expected).max() < 1e-4
    # the windows matter: all frames at once (past the table of 8, so without the position table) differ
    converted.disable_free_noise()
    assert converted.unet.max_num_frames == 8


def test_free_noise_split_inference_equals_animatediff():
    reference, converted = build_pair()
    for pipe in (reference, converted):
        pipe.enable_free_noise(context_length=6, context_stride=4)
        pipe.enable_free_noise_split_inference(spatial_split_size=5, temporal_split_size=4)
    expected, actual = run(reference, latents=full_latents()), run(converted, latents=full_latents())
    assert np.abs(actual - expected).max() < 1e-4
    converted.disable_free_noise_split_inference()
    np.testing.assert_allclose(run(converted, latents=full_latents()), actual, atol=1e-5)


@pytest.mark.parametrize("noise_type", ["shuffle_context", "repeat_context", "random"])
def test_free_noise_initial_latents_equal_animatediff(noise_type):
    reference, converted = build_pair()
    for pipe in (reference, converted):
        pipe.enable_free_noise(context_length=6, context_stride=4, noise_type=noise_type)
    expected = reference.prepare_latents(
        1, 4, NUM_FRAMES, 8, 8, torch.float32, "cpu", torch.Generator().manual_seed(3), None
    )
    actual = converted.prepare_latents(1, NUM_FRAMES, 8, 8, torch.float32, "cpu", torch.Generator().manual_seed(3))
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)
    independent = torch.randn(actual.shape, generator=torch.Generator().manual_seed(3))
    if noise_type == "shuffle_context":  # later strides reuse the first window's noise, shuffled
        assert not torch.equal(actual, independent) and torch.equal(actual[:, :, :6], independent[:, :, :6])
        assert sorted(actual[0, 0, 6:10, 0, 0].tolist()) == sorted(independent[0, 0, 0:4, 0, 0].tolist())
    else:  # diffusers 0.42's `repeat_context` draws every frame (it compares `context_length` with the noise type)
        torch.testing.assert_close(actual, independent, rtol=0, atol=0)
    # the whole call draws its noise the same way
    generator = torch.Generator().manual_seed(4)
    expected_video = run(reference, generator=generator)
    actual_video = run(converted, generator=torch.Generator().manual_seed(4))
    assert np.abs(actual_video - expected_video).max() < 1e-4


def test_prompt_travel_equals_animatediff():
    reference, converted = build_pair()
    for pipe in (reference, converted):
        pipe.enable_free_noise(context_length=6, context_stride=4)
    negative = {0: "blurry", 8: "static"}
    expected = run(reference, TRAVEL, negative_prompt=negative, latents=full_latents())
    actual = run(converted, TRAVEL, negative_prompt=negative, latents=full_latents())
    assert np.abs(actual - expected).max() < 1e-4
    # the travelling prompt changes the video
    assert np.abs(actual - run(converted, PROMPT, latents=full_latents())).max() > 1e-3


def test_prompt_interpolation_callback_equals_animatediff():
    def hold(start_index, end_index, start_tensor, end_tensor):
        return torch.cat([start_tensor] * (end_index - start_index) + [end_tensor])

    reference, converted = build_pair()
    for pipe in (reference, converted):
        pipe.enable_free_noise(context_length=6, context_stride=4, prompt_interpolation_callback=hold)
    expected, actual = run(reference, TRAVEL, latents=full_latents()), run(converted, TRAVEL, latents=full_latents())
    assert np.abs(actual - expected).max() < 1e-4


def test_length_cap_lifted_and_error_names_enable_free_noise():
    pipe = build_pipeline(unet=build_unet(), vae=build_video_vae())  # table 8, ratio 2
    with pytest.raises(ValueError, match=r"pipe\.enable_free_noise\(context_length=8\)"):
        pipe("a", num_frames=17, height=8, width=8, num_inference_steps=1, output_type="latent")
    pipe.enable_free_noise(context_length=4, context_stride=2)
    latents = pipe("a", num_frames=21, height=8, width=8, num_inference_steps=1, output_type="latent").frames
    assert latents.shape == (1, 4, 11, 4, 4)
    pipe.disable_free_noise()
    with pytest.raises(ValueError, match="frame-position table holds 8"):
        pipe("a", num_frames=17, height=8, width=8, num_inference_steps=1, output_type="latent")


@pytest.mark.parametrize(
    "scheduler", [DPMSolverMultistepScheduler.from_config(build_scheduler().config), FlowMatchEulerDiscreteScheduler()]
)
def test_windows_with_image_video_and_schedulers(scheduler):
    pipe = build_pipeline(unet=build_unet(), vae=build_video_vae(), scheduler=scheduler)
    pipe.enable_free_noise(context_length=4, context_stride=3, weighting_scheme="flat")
    kwargs = {"height": 8, "width": 8, "num_inference_steps": 2, "output_type": "np"}
    image = np.full((8, 8, 3), 0.5, dtype=np.float32)
    video = np.full((21, 8, 8, 3), 0.25, dtype=np.float32)
    assert pipe(TRAVEL, num_frames=21, image=image, **kwargs).frames.shape == (1, 21, 8, 8, 3)
    assert pipe(PROMPT, video=video, strength=0.5, **kwargs).frames.shape == (1, 21, 8, 8, 3)


def test_windows_inside_the_unet_with_a_one_call_step():
    pipe = build_pipeline(unet=build_unet(), vae=build_video_vae())
    keys = set(pipe.unet.state_dict())
    pipe.enable_free_noise(context_length=4, context_stride=2)
    blocks = [m for m in pipe.unet.modules() if isinstance(m, VideoLatentFreeNoiseTransformerBlock)]
    assert blocks and all(block.context_length == 4 for block in blocks)
    assert set(pipe.unet.state_dict()) == keys
    calls = []
    pipe.unet.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[2]))
    pipe(PROMPT, num_frames=21, height=8, width=8, num_inference_steps=2, output_type="latent")
    assert calls == [11, 11]
    # a clip no longer than a window is attended to whole: the same as without windows
    short = {"num_frames": 5, "height": 8, "width": 8, "num_inference_steps": 2, "output_type": "latent"}
    windowed = pipe(PROMPT, latents=torch.randn(1, 4, 3, 4, 4, generator=torch.Generator().manual_seed(0)), **short)
    pipe.disable_free_noise()
    whole = pipe(PROMPT, latents=torch.randn(1, 4, 3, 4, 4, generator=torch.Generator().manual_seed(0)), **short)
    torch.testing.assert_close(windowed.frames, whole.frames)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"context_length": 0}, ValueError, "`context_length` must be an integer >= 1, got 0"),
        ({"context_length": 9}, ValueError, "`context_length` is 9, but .* holds 8 latent frames"),
        ({"context_length": 4, "context_stride": 5}, ValueError, r"`context_stride` must be an integer in \[1"),
        ({"context_length": 4, "weighting_scheme": "cosine"}, ValueError, "`weighting_scheme` must be one of"),
        ({"context_length": 4, "noise_type": "pink"}, ValueError, "`noise_type` must be one of"),
        ({"context_length": 4, "prompt_interpolation_callback": 3}, TypeError, "`prompt_interpolation_callback`"),
    ],
)
def test_enable_free_noise_bad_input(kwargs, error, match):
    pipe = build_pipeline(unet=build_unet())
    with pytest.raises(error, match=match):
        pipe.enable_free_noise(**kwargs)
    assert not pipe.free_noise_enabled


def test_enable_free_noise_defaults():
    pipe = build_pipeline(unet=build_unet())
    pipe.enable_free_noise(context_length=None)  # the table's 8
    assert pipe.unet.free_noise_context_length == 8 and pipe.free_noise_enabled
    with pytest.raises(ValueError, match="`context_length` is 16"):  # diffusers' default, past the table
        pipe.enable_free_noise()
    with pytest.raises(TypeError, match="convert it with `UNetSpatioTemporalModel.from_unet3d"):
        build_pipeline().enable_free_noise(context_length=4)  # diffusers' UNet3DConditionModel


@pytest.mark.parametrize(
    "prompt, negative_prompt, error, match",
    [
        ({1: "a"}, None, ValueError, "`prompt` must have a prompt for frame 0"),
        ({0: "a", "3": "b"}, None, TypeError, "`prompt` keys must be frame indices"),
        ({0: "a", 3: 4}, None, TypeError, "`prompt` values must be strings"),
        ({0: "a", 17: "b"}, None, ValueError, "`prompt` has frame index 17, but the video has 17 frames"),
        ({0: "a"}, {2: "b"}, ValueError, "`negative_prompt` must have a prompt for frame 0"),
        ({0: "a"}, ["b"], TypeError, "`negative_prompt` must be a string or a dict"),
    ],
)
def test_prompt_travel_bad_input(prompt, negative_prompt, error, match):
    pipe = build_pipeline(unet=build_unet(), vae=build_video_vae())
    with pytest.raises(error, match=match):
        pipe(prompt, negative_prompt=negative_prompt, num_frames=17, height=8, width=8, num_inference_steps=1)


def test_modelscope_unet_windows_and_split_inference():
    # a converted `UNet3DConditionModel`: temporal convolutions, `transformer_in` and no frame table

    from diffusers_videolatent import UNetSpatioTemporalModel

    unet = randomize_weights_(UNetSpatioTemporalModel.from_unet3d(build_unet3d()), 1, zero_only=True).eval()
    pipe = build_pipeline(unet=unet)
    latents = torch.randn((1, 4, 9, 4, 4), generator=torch.Generator().manual_seed(0))
    call = {"num_frames": 9, "height": 8, "width": 8, "num_inference_steps": 2, "output_type": "latent"}
    whole = pipe(PROMPT, latents=latents, **call).frames
    pipe.enable_free_noise(context_length=4, context_stride=2)
    windowed = pipe(PROMPT, latents=latents, **call).frames
    assert (windowed - whole).abs().max() > 1e-4  # each temporal attention saw windows of 4 frames
    pipe.enable_free_noise_split_inference(spatial_split_size=3, temporal_split_size=2)
    torch.testing.assert_close(pipe(PROMPT, latents=latents, **call).frames, windowed, rtol=1e-5, atol=1e-5)
    pipe.disable_free_noise()
    pipe.disable_free_noise_split_inference()
    torch.testing.assert_close(pipe(PROMPT, latents=latents, **call).frames, whole)


def test_travelling_prompt_keys_count_video_frames():
    # temporal ratio 2: video frame 4 lies in latent frame 2; 9 frames are 5 latent frames
    pipe = build_pipeline(unet=build_unet(), vae=build_video_vae())
    embeds, negative = pipe._encode_prompt_free_noise({0: "a cat", 4: "a dog"}, 9, "cpu", 2, True, "blurry")
    cat, dog, blurry = pipe.encode_prompt(["a cat", "a dog", "blurry"], "cpu", do_classifier_free_guidance=False)[0]
    assert embeds.shape == negative.shape == (2, 5, *cat.shape)
    for frame, expected in enumerate([cat, (cat + dog) / 2, dog, dog, dog]):
        torch.testing.assert_close(embeds[:, frame], expected.expand_as(embeds[:, frame]))
    torch.testing.assert_close(negative, blurry.expand_as(negative))


def _latent_model_input(num_frames: int, seed: int = 0) -> torch.Tensor:
    return torch.randn((2, 4, num_frames, 4, 4), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("weighting_scheme", ["flat", "pyramid", "delayed_reverse_sawtooth"])
def test_unet_scope_blends_one_call_per_window(weighting_scheme):
    # 11 latent frames in windows of 4, 3 apart: [0, 4), [3, 7), [6, 10), then the last window [7, 11)
    pipe = build_pipeline(unet=build_unet(identity_init=False), vae=build_video_vae())
    pipe.enable_free_noise(context_length=4, context_stride=3, weighting_scheme=weighting_scheme, context_scope="unet")
    sample = _latent_model_input(11)
    text = torch.randn((2, 11, 3, pipe.unet.config.cross_attention_dim), generator=torch.Generator().manual_seed(1))
    calls = []
    hook = pipe.unet.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[2]))
    prediction = pipe._predict_noise(sample, torch.tensor(500), text)
    hook.remove()
    assert calls == [4, 4, 4, 4]

    # the blend written out: each window is a plain U-Net call on its frames and their text
    weights = torch.tensor(FreeNoiseWindows(4, 3, weighting_scheme).weights()).view(1, 1, -1, 1, 1)
    expected, total = torch.zeros_like(sample), torch.zeros(1, 1, 11, 1, 1)
    for start in (0, 3, 6, 7):
        window = pipe.unet(sample[:, :, start : start + 4], 500, text[:, start : start + 4], return_dict=False)[0]
        expected[:, :, start : start + 4] += window * weights
        total[:, :, start : start + 4] += weights
    torch.testing.assert_close(prediction, expected / total)
    # the U-Net saw windows only: the result is not the windowed attention's over the whole clip
    pipe.enable_free_noise(context_length=4, context_stride=3, weighting_scheme=weighting_scheme)
    assert (pipe._predict_noise(sample, torch.tensor(500), text) - prediction).abs().max() > 1e-4
    # a clip no longer than a window is one call, as without windows
    pipe.enable_free_noise(context_length=4, context_stride=3, context_scope="unet")
    torch.testing.assert_close(
        pipe._predict_noise(sample[:, :, :4], 500, text[:, :4]),
        pipe.unet(sample[:, :, :4], 500, text[:, :4], return_dict=False)[0],
    )


def test_unet_scope_runs_every_path_of_the_pipeline():
    # image conditioning channels, fps, a travelling prompt with CFG, video-to-video, another scheduler
    unet = build_unet(identity_init=False, conditioning_channels=5, use_fps_conditioning=True)
    pipe = build_pipeline(unet=unet, vae=build_video_vae(), scheduler=FlowMatchEulerDiscreteScheduler())
    pipe.enable_free_noise(context_length=4, context_stride=2, context_scope="unet")
    kwargs = {"num_frames": 21, "height": 8, "width": 8, "num_inference_steps": 2, "output_type": "np", "fps": 8}
    image = np.full((8, 8, 3), 0.5, dtype=np.float32)
    video = np.full((21, 8, 8, 3), 0.25, dtype=np.float32)
    frames = pipe(TRAVEL, image=image, guidance_scale=3.0, **kwargs).frames
    assert frames.shape == (1, 21, 8, 8, 3) and np.isfinite(frames).all()
    frames = pipe(PROMPT, video=video, strength=0.5, **kwargs).frames
    assert frames.shape == (1, 21, 8, 8, 3) and np.isfinite(frames).all()
    with pytest.raises(ValueError, match="`context_scope` must be one of"):
        pipe.enable_free_noise(context_length=4, context_scope="clip")


def test_unet_scope_keeps_one_cache_state_per_window():
    # DeepCache's cheap step reuses the deep features of the last full call *of the same window*: changing frames
    # 0-2, which only the first window [0, 4) holds, must not reach frames 4-5, which only the window [3, 7) covers
    # (with one state for all windows, that window's cheap steps would reuse the first window's features)
    from diffusers_videolatent import DeepCacheConfig

    pipe = build_pipeline(unet=build_unet(identity_init=False), vae=build_video_vae())
    pipe.enable_free_noise(context_length=4, context_stride=3, context_scope="unet")
    text = torch.randn((2, 3, pipe.unet.config.cross_attention_dim), generator=torch.Generator().manual_seed(1))

    def two_steps(sample):
        pipe.unet._reset_stateful_cache()
        pipe._predict_noise(sample, torch.tensor(900), text)  # full
        return pipe._predict_noise(sample, torch.tensor(800), text)  # cheap

    sample = _latent_model_input(11)
    changed = sample.clone()
    changed[:, :, :3] = torch.randn((2, 4, 3, 4, 4), generator=torch.Generator().manual_seed(2))
    uncached = pipe._predict_noise(sample, torch.tensor(800), text)
    pipe.unet.enable_cache(DeepCacheConfig(cache_interval=2))
    cached = two_steps(sample)
    assert (cached - uncached).abs().max() > 1e-4  # the second step was cheap
    torch.testing.assert_close(two_steps(changed)[:, :, 4:6], cached[:, :, 4:6])
    pipe.unet.disable_cache()
