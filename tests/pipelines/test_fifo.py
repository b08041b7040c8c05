"""FIFO-Diffusion's diagonal denoising (`enable_fifo_denoising`): a queue of frames at increasing noise levels, each
frame stepping its own copy of the scheduler. With a U-Net whose frames do not see each other (temporal layers that
are identity), every frame goes through the whole schedule from its own noise, so FIFO must give exactly the usual
loop's video (in float64, to 1e-10; float32 rounding alone differs by up to 2e-5 on latents of up to 50); with
temporal layers it must differ, see at most one window, and lift the frame-table cap."""

import diffusers
import numpy as np
import pytest
import torch

from diffusers_videolatent.pipelines.fifo import fifo_windows

from ..testing_utils import build_pipeline, build_unet, recording_unet_calls


PROMPT = "a red circle moving right"
NUM_FRAMES = 8  # the U-Net's frame table holds 8
CALL = {"num_frames": NUM_FRAMES, "height": 8, "width": 8, "num_inference_steps": 5, "guidance_scale": 4.0}
SCHEDULERS = (
    "DDIMScheduler",
    "EulerDiscreteScheduler",
    "DPMSolverMultistepScheduler",  # a multistep scheduler: each frame keeps its own history
    "FlowMatchEulerDiscreteScheduler",
)


def build_fifo_pipeline(scheduler: str = "DDIMScheduler", identity_init: bool = True, **unet_overrides):
    """A float64 pipeline on our U-Net (frame table 8) with an image VAE (temporal ratio 1: frames are latent
    frames)."""
    pipe = build_pipeline(unet=build_unet(identity_init=identity_init, **unet_overrides))
    pipe.unet.to(torch.float64)
    pipe.vae.to(torch.float64)
    pipe.text_encoder.to(torch.float64)
    if scheduler == "FlowMatchEulerDiscreteScheduler":
        pipe.scheduler = diffusers.FlowMatchEulerDiscreteScheduler()
    else:
        pipe.scheduler = getattr(diffusers, scheduler).from_config(pipe.scheduler.config)
    return pipe


def start_noise(num_frames: int = NUM_FRAMES) -> torch.Tensor:
    return torch.randn((1, 4, num_frames, 4, 4), generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def generate(pipe, prompt=PROMPT, **kwargs) -> torch.Tensor:
    call = {**CALL, "latents": start_noise(kwargs.get("num_frames") or NUM_FRAMES), "output_type": "latent"}
    return pipe(prompt, generator=torch.Generator().manual_seed(2), **{**call, **kwargs}).frames


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("lookahead", [True, False])
def test_fifo_equals_the_usual_loop_when_frames_are_denoised_alone(scheduler, lookahead):
    pipe = build_fifo_pipeline(scheduler)
    expected = generate(pipe)
    pipe.enable_fifo_denoising(context_length=3, lookahead_denoising=lookahead)
    actual = generate(pipe)
    assert actual.shape == expected.shape == (1, 4, NUM_FRAMES, 4, 4)
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-10)


def test_fifo_differs_when_frames_see_each_other():
    # the same comparison fails once the temporal layers act: the frames at other noise levels change each frame
    pipe = build_fifo_pipeline(identity_init=False)
    expected = generate(pipe)
    pipe.enable_fifo_denoising(context_length=3)
    assert (generate(pipe) - expected).abs().max() > 1e-3


@pytest.mark.parametrize("conditioning_channels", [0, 5])
def test_fifo_image_to_video_equals_the_usual_loop_when_frames_are_denoised_alone(conditioning_channels):
    # 0: the first frame is kept on the noised image; 5: the image's latent and a mask are the U-Net's conditioning
    pipe = build_fifo_pipeline(conditioning_channels=conditioning_channels)
    image = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    expected = generate(pipe, image=image)
    pipe.enable_fifo_denoising(context_length=3)
    actual = generate(pipe, image=image)
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-10)
    assert (actual - generate(pipe)).abs().max() > 1e-3  # the image matters


def test_fifo_travelling_prompt_equals_the_usual_loop_when_frames_are_denoised_alone():
    pipe = build_fifo_pipeline()
    travel = {0: "a red circle moving right", 5: "a blue square moving left"}
    expected = generate(pipe, travel, negative_prompt="blurry")
    pipe.enable_fifo_denoising(context_length=3)
    actual = generate(pipe, travel, negative_prompt="blurry")
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-10)
    assert (actual - generate(pipe, negative_prompt="blurry")).abs().max() > 1e-3  # the travel matters


def test_fifo_goes_past_the_frame_table_one_window_at_a_time():
    pipe = build_fifo_pipeline(identity_init=False)
    with pytest.raises(ValueError, match="enable_fifo_denoising"):
        generate(pipe, num_frames=20)
    pipe.enable_fifo_denoising(context_length=4)
    with recording_unet_calls(pipe) as calls:
        first = generate(pipe, num_frames=20, latents=None)
    assert first.shape == (1, 4, 20, 4, 4) and torch.isfinite(first).all()
    # 5 steps: a queue of 5 frames; lookahead windows [0, 4) and [1, 5) per iteration; 4 warm-up steps, 20 iterations
    assert len(calls) == 2 * (4 + 20)
    assert all(call["sample"].shape[2] == 4 for call in calls)
    timesteps = pipe.scheduler.timesteps
    last_window = calls[-1]["timestep"]  # (2B, F): the queue's frames 1-4, one step apart, noisier towards the tail
    assert last_window.shape == (2, 4)
    torch.testing.assert_close(last_window[0], timesteps[[3, 2, 1, 0]])
    assert torch.equal(calls[0]["timestep"], timesteps[:1].expand(2, 4))  # the warm-up: all frames at one level
    # seeded: the same generator gives the same video
    torch.testing.assert_close(generate(pipe, num_frames=20, latents=None), first, rtol=0, atol=0)


def test_fifo_windows_keep_every_frame_once():
    for queue_length, context_length, lookahead in ((25, 16, True), (25, 16, False), (5, 3, True), (4, 8, True)):
        windows = fifo_windows(queue_length, context_length, lookahead)
        kept = [frame for _, _, take_start, take_end in windows for frame in range(take_start, take_end)]
        assert kept == list(range(queue_length))
        for start, end, take_start, take_end in windows:
            assert 0 <= start <= take_start < take_end <= end <= queue_length
            assert end - start == min(context_length, queue_length)
            if lookahead and start > 0:  # kept from the noisier half of its window
                assert take_start >= start + (end - start) // 2
    assert fifo_windows(25, 16, False) == [(0, 16, 0, 16), (9, 25, 16, 25)]
    assert fifo_windows(25, 16, True) == [(0, 16, 0, 16), (8, 24, 16, 24), (9, 25, 24, 25)]


def test_per_frame_timesteps_of_the_unet():
    # float64: the time embedding's layers run on 6 rows instead of 2, whose float32 rounding differs by 4e-7
    unet = build_unet(identity_init=False).to(torch.float64)
    sample = torch.randn(2, 4, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    text = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    one = unet(sample, torch.tensor([10, 500]), text).sample
    per_frame = unet(sample, torch.tensor([[10, 10, 10], [500, 500, 500]]), text).sample
    torch.testing.assert_close(per_frame, one, rtol=0, atol=1e-12)
    assert (unet(sample, torch.tensor([[10, 500, 10], [500, 500, 500]]), text).sample - one)[0].abs().max() > 1e-4
    with pytest.raises(ValueError, match=r"per-frame `timestep` must have shape \[2, 3\]"):
        unet(sample, torch.zeros(2, 4), text)


def test_fifo_refusals():
    pipe = build_fifo_pipeline()
    with pytest.raises(ValueError, match="`context_length` is 9, but the U-Net's frame-position table holds 8"):
        pipe.enable_fifo_denoising(context_length=9)
    with pytest.raises(ValueError, match="`context_length` must be an integer >= 1"):
        pipe.enable_fifo_denoising(context_length=0)
    with pytest.raises(TypeError, match="`lookahead_denoising` must be a bool"):
        pipe.enable_fifo_denoising(lookahead_denoising="yes")
    assert not pipe.fifo_enabled
    pipe.enable_fifo_denoising()
    assert pipe.fifo_enabled and pipe._fifo_context_length == 8  # the frame table by default
    with pytest.raises(ValueError, match="disable_fifo_denoising"):
        pipe.enable_free_noise(context_length=4)
    video = [np.zeros((8, 8, 3), dtype=np.float32)] * NUM_FRAMES
    with pytest.raises(ValueError, match="`video` is not supported with FIFO denoising"):
        generate(pipe, video=video, num_frames=None, latents=None)
    with pytest.raises(ValueError, match="`callback_on_step_end` is not supported with FIFO denoising"):
        generate(pipe, callback_on_step_end=lambda pipe, step, timestep, kwargs: kwargs)
    pipe.disable_fifo_denoising()
    pipe.enable_free_noise(context_length=4)
    with pytest.raises(ValueError, match="disable_free_noise"):
        pipe.enable_fifo_denoising()
    # diffusers' U-Net 3D takes one timestep per video
    with pytest.raises(TypeError, match="from_unet3d"):
        build_pipeline().enable_fifo_denoising(context_length=4)
