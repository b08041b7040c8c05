"""Tests of `VideoLatentPipeline` with tiny real components (see tests/testing_utils.py); no downloads, CPU only.

`TestVideoLatentPipeline` runs the checks every diffusers pipeline gets (our own `PipelineTesterMixin` and
`SDFunctionTesterMixin` in `tests/pipelines/testing_utils.py`, written after diffusers' mixins of those names) on the
tester config's components: our U-Net and our video VAE. The tests after it are this pipeline's own, on diffusers' U-Net 3D and image VAE (the `pipe`
fixture), where the pipeline equals diffusers' `TextToVideoSDPipeline`, or on the components each test names.
"""

import diffusers
import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import DDIMScheduler, TextToVideoSDPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.pipelines.flux.pipeline_flux import calculate_shift

from diffusers_videolatent import (
    AutoencoderKLVideo,
    UNetSpatioTemporalModel,
    VideoLatentPipeline,
    VideoLatentPipelineOutput,
)

from ..testing_utils import (
    TEXT_HIDDEN_SIZE,
    TOKENIZER_MAX_LENGTH,
    build_cogvideox_vae,
    build_image_vae,
    build_pipeline,
    build_pipeline_components,
    build_unet,
    build_video_vae,
    build_wan_vae,
    randomize_weights_,
    recording_unet_calls,
)
from .testing_utils import PipelineTesterMixin, SDFunctionTesterMixin


pytestmark = pytest.mark.usefixtures("no_grad")
CALL = {"num_frames": 5, "height": 16, "width": 16, "num_inference_steps": 2}


class VideoLatentPipelineTesterConfig:
    """The tiny `VideoLatentPipeline` every shared check runs on: our U-Net (its temporal layers random, not identity)
    and our causal video VAE (spatial ratio 2, temporal ratio 2), a CLIP text encoder and DDIM."""

    pipeline_class = VideoLatentPipeline
    params = frozenset(
        (
            "prompt negative_prompt image video strength num_frames height width fps num_inference_steps timesteps"
            " sigmas guidance_scale guidance_rescale num_videos_per_prompt eta generator latents prompt_embeds"
            " negative_prompt_embeds output_type return_dict callback_on_step_end callback_on_step_end_tensor_inputs"
            " cross_attention_kwargs clip_skip decode_chunk_size"
        ).split()
    )
    batch_params = frozenset(["prompt", "negative_prompt"])
    # a video pipeline: `num_videos_per_prompt`, not the image pipelines' `num_images_per_prompt`
    required_optional_params = frozenset(
        [
            "num_inference_steps",
            "num_videos_per_prompt",
            "generator",
            "latents",
            "output_type",
            "return_dict",
            "callback_on_step_end",
            "callback_on_step_end_tensor_inputs",
        ]
    )
    callback_cfg_params = frozenset(["prompt_embeds", "negative_prompt_embeds"])
    # what `get_dummy_inputs` gives: 5 frames of 16x16, 3 latent frames of 8x8 with 4 channels
    output_shape = (5, 16, 16, 3)
    latent_shape = (4, 3, 8, 8)
    prompt_embeds_shape = (TOKENIZER_MAX_LENGTH, TEXT_HIDDEN_SIZE)
    # 4 spatial and 7 temporal transformers in the U-Net, two attentions each
    num_unet_attention_layers = 22

    def get_dummy_components(self) -> dict:
        return build_pipeline_components(unet=build_unet(identity_init=False), vae=build_video_vae())

    def get_dummy_inputs(self, device, seed: int = 0) -> dict:
        return {
            "prompt": "a cat",
            "generator": torch.Generator().manual_seed(seed),
            "num_inference_steps": 2,
            "num_frames": 5,
            "height": 16,
            "width": 16,
            "output_type": "np",
        }


class TestVideoLatentPipeline(VideoLatentPipelineTesterConfig, PipelineTesterMixin, SDFunctionTesterMixin):
    def test_class_attributes(self):
        assert self.pipeline_class.model_cpu_offload_seq == "text_encoder->unet->vae"
        assert set(self.pipeline_class._callback_tensor_inputs) == {
            "latents",
            "prompt_embeds",
            "negative_prompt_embeds",
        }
        assert set(self.pipeline_class._optional_components) == {"tokenizer", "text_encoder"}

    def test_fused_qkv_projections_with_diffusers_image_vae(self):
        self.check_fused_qkv_projections(vae=build_image_vae())


def call(pipe, seed: int = 0, **kwargs):
    arguments = {"prompt": "a cat", **CALL, "generator": torch.manual_seed(seed)}
    arguments.update(kwargs)
    return pipe(**arguments)


# ----------------------------------------------------------------------------------------------------------------------
# Parity with diffusers' TextToVideoSDPipeline
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("models", ["diffusers", "ours"])
def test_equals_text_to_video_sd_pipeline(models):
    components = build_pipeline_components()
    reference = TextToVideoSDPipeline(**components)
    reference.set_progress_bar_config(disable=True)
    expected = reference(
        "a red panda", guidance_scale=7.5, output_type="np", generator=torch.manual_seed(3), **CALL
    ).frames

    if models == "ours":
        components["unet"] = UNetSpatioTemporalModel.from_unet3d(components["unet"])
        components["vae"] = AutoencoderKLVideo.from_image_vae(components["vae"], temporal_compression_ratio=1)
    pipe = VideoLatentPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    output = pipe("a red panda", guidance_scale=7.5, output_type="np", generator=torch.manual_seed(3), **CALL)
    assert isinstance(output, VideoLatentPipelineOutput)
    frames = output.frames

    assert frames.shape == expected.shape == (1, 5, 16, 16, 3)
    assert np.abs(frames - expected).max() < 1e-4


def test_from_pipe_of_diffusers_text_to_video_pipeline(pipe):
    # diffusers' own text-to-video pipeline has the same components, so it converts too
    expected = call(pipe).frames
    reference = TextToVideoSDPipeline(**build_pipeline_components())
    from_reference = VideoLatentPipeline.from_pipe(reference)
    from_reference.set_progress_bar_config(disable=True)
    assert np.abs(call(from_reference).frames - expected).max() < 1e-6


# ----------------------------------------------------------------------------------------------------------------------
# Callback objects and interrupt
# ----------------------------------------------------------------------------------------------------------------------


def test_pipeline_callback_objects(pipe):
    class RecordStep(PipelineCallback):
        tensor_inputs = ["latents"]

        def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
            steps.append(step_index)
            return callback_kwargs

    steps = []
    call(pipe, callback_on_step_end=MultiPipelineCallbacks([RecordStep(), RecordStep()]))
    assert steps == [0, 0, 1, 1]


def test_interrupt(pipe):
    captured = {}

    def capture(pipeline, step, timestep, callback_kwargs):
        if step == 1:
            captured["latents"] = callback_kwargs["latents"].clone()
        return callback_kwargs

    call(pipe, num_inference_steps=3, callback_on_step_end=capture)

    def interrupt(pipeline, step, timestep, callback_kwargs):
        if step == 1:
            pipeline._interrupt = True
        return callback_kwargs

    with recording_unet_calls(pipe) as calls:
        interrupted = call(pipe, num_inference_steps=3, output_type="latent", callback_on_step_end=interrupt).frames
        assert len(calls) == 2
        assert torch.equal(interrupted, captured["latents"])


# ----------------------------------------------------------------------------------------------------------------------
# Schedulers
# ----------------------------------------------------------------------------------------------------------------------

SCHEDULERS = [
    ("DDIMScheduler", {}),
    ("DDPMScheduler", {}),
    ("PNDMScheduler", {"skip_prk_steps": True}),
    ("LMSDiscreteScheduler", {}),
    ("EulerDiscreteScheduler", {}),
    ("EulerAncestralDiscreteScheduler", {}),
    ("HeunDiscreteScheduler", {}),
    ("DPMSolverMultistepScheduler", {}),
    # its `set_timesteps` itself switches `lower_order_final` on when it is off; start consistent
    ("DPMSolverSinglestepScheduler", {"lower_order_final": True}),
    ("UniPCMultistepScheduler", {}),
    ("DEISMultistepScheduler", {}),
    ("KDPM2DiscreteScheduler", {}),
    ("KDPM2AncestralDiscreteScheduler", {}),
    ("LCMScheduler", {}),
    ("TCDScheduler", {}),
    ("EDMEulerScheduler", {}),
    ("FlowMatchEulerDiscreteScheduler", {}),
]


@pytest.mark.parametrize("name, extra_config", SCHEDULERS, ids=[name for name, _ in SCHEDULERS])
def test_scheduler(pipe, name, extra_config):
    pipe.scheduler = getattr(diffusers, name).from_config({**pipe.scheduler.config, **extra_config})
    config_before = dict(pipe.scheduler.config)
    with recording_unet_calls(pipe) as calls:
        first = call(pipe, output_type="pt").frames
        second = call(pipe, output_type="pt").frames

        assert first.shape == (1, 5, 3, 16, 16)
        assert torch.isfinite(first).all() and 0.0 <= first.min() and first.max() <= 1.0
        assert torch.equal(first, second)
        assert dict(pipe.scheduler.config) == config_before
        # every step is one U-Net call (second-order schedulers make two per step)
        assert len(calls) == 2 * len(pipe.scheduler.timesteps)


def test_flow_scheduler_dynamic_shifting_and_sigmas(pipe):
    pipe.scheduler = diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    with recording_unet_calls(pipe) as calls:
        frames = call(pipe, output_type="pt").frames
        assert torch.isfinite(frames).all() and len(calls) == 2
        # the shift `mu` follows the number of latent tokens (5 x 8 x 8), as in diffusers' flow pipelines
        reference = diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
        reference.set_timesteps(2, mu=calculate_shift(5 * 8 * 8))
        assert torch.allclose(pipe.scheduler.sigmas, reference.sigmas, atol=1e-6)
        reference.set_timesteps(2, mu=calculate_shift(5 * 16 * 16))
        assert not torch.allclose(pipe.scheduler.sigmas, reference.sigmas, rtol=1e-2, atol=0.0)

        pipe.scheduler = diffusers.FlowMatchEulerDiscreteScheduler()
        calls.clear()
        call(pipe, num_inference_steps=None, sigmas=[1.0, 0.6, 0.3])
        assert len(calls) == 3
        assert torch.allclose(pipe.scheduler.sigmas, torch.tensor([1.0, 0.6, 0.3, 0.0]), atol=1e-6)


def test_v_prediction_differs_from_epsilon(pipe):
    epsilon = call(pipe).frames
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, prediction_type="v_prediction")
    v_prediction = call(pipe).frames
    assert np.isfinite(v_prediction).all() and np.abs(epsilon - v_prediction).max() > 1e-3


def test_custom_timesteps(pipe):
    pipe.scheduler = diffusers.DDPMScheduler.from_config(pipe.scheduler.config)
    with recording_unet_calls(pipe) as calls:
        call(pipe, num_inference_steps=None, timesteps=[900, 500, 100])
        assert [int(c["timestep"][0]) for c in calls] == [900, 500, 100]


# ----------------------------------------------------------------------------------------------------------------------
# VAEs
# ----------------------------------------------------------------------------------------------------------------------


def our_vae(ratio: int):
    return AutoencoderKLVideo.from_image_vae(build_image_vae(), temporal_compression_ratio=ratio)


VAES = [
    ("AutoencoderKL", build_image_vae, (2, 1, True), (1, 4, 5, 8, 8)),
    ("AutoencoderKLWan", build_wan_vae, (4, 2, False), (1, 4, 3, 4, 4)),
    ("AutoencoderKLCogVideoX", build_cogvideox_vae, (2, 2, False), (1, 4, 3, 8, 8)),
    ("AutoencoderKLVideo-r1", lambda: our_vae(1), (2, 1, False), (1, 4, 5, 8, 8)),
    ("AutoencoderKLVideo-r4", lambda: our_vae(4), (2, 4, False), (1, 4, 2, 8, 8)),
]


@pytest.mark.parametrize("name, build_vae, ratios, latent_shape", VAES, ids=lambda v: v if isinstance(v, str) else "")
def test_vae_kinds(name, build_vae, ratios, latent_shape):
    pipe = build_pipeline(vae=build_vae())
    assert (pipe.vae_scale_factor_spatial, pipe.vae_scale_factor_temporal, pipe.vae_encodes_single_frames) == ratios

    latents = call(pipe, output_type="latent").frames
    assert latents.shape == latent_shape
    frames = call(pipe, output_type="pt").frames
    assert frames.shape == (1, 5, 3, 16, 16) and torch.isfinite(frames).all()

    # image-to-video and video-to-video go through the same VAE
    image_to_video = call(pipe, image=torch.rand(3, 16, 16), output_type="pt").frames
    video_to_video = call(pipe, video=torch.rand(5, 3, 16, 16), strength=0.5, output_type="pt").frames
    assert image_to_video.shape == video_to_video.shape == (1, 5, 3, 16, 16)
    assert torch.isfinite(image_to_video).all() and torch.isfinite(video_to_video).all()

    # the latents are normalised with the VAE's statistics, exactly inverted before decoding
    pixels = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    normalised = pipe.encode_video(pixels)
    config = pipe.vae.config
    if pipe.vae_encodes_single_frames:
        raw = pipe.vae.encode(pixels[0].permute(1, 0, 2, 3)).latent_dist.mode().permute(1, 0, 2, 3)[None]
    else:
        raw = pipe.vae.encode(pixels).latent_dist.mode()
    if config.get("latents_mean") is not None:
        mean = torch.tensor(config["latents_mean"]).view(1, -1, 1, 1, 1)
        std = torch.tensor(config["latents_std"]).view(1, -1, 1, 1, 1)
        expected = (raw - mean) / std * (config.get("scaling_factor") or 1.0)
    else:
        expected = (raw - (config.get("shift_factor") or 0.0)) * config["scaling_factor"]
    assert torch.allclose(normalised, expected, atol=1e-5)
    decoded = pipe.decode_latents(normalised)
    if pipe.vae_encodes_single_frames:
        reference = pipe.vae.decode(raw[0].permute(1, 0, 2, 3)).sample.permute(1, 0, 2, 3)[None]
    else:
        reference = pipe.vae.decode(raw).sample
    assert torch.allclose(decoded, reference, atol=1e-5)


@pytest.mark.parametrize(
    "build_vae",
    [build_image_vae, lambda: our_vae(4)],
    ids=["AutoencoderKL", "AutoencoderKLVideo-r4"],
)
def test_decode_chunk_size_gives_the_same_video(build_vae):
    pipe = build_pipeline(vae=build_vae())
    latents = call(pipe, num_frames=9, output_type="latent").frames
    full = pipe.decode_latents(latents)
    chunked = pipe.decode_latents(latents, decode_chunk_size=1)
    assert full.shape[2] == 9
    assert torch.allclose(full, chunked, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------------
# Image-to-video, video-to-video, fps
# ----------------------------------------------------------------------------------------------------------------------


def test_image_to_video_replaces_first_latent_frame(pipe):
    image = PIL.Image.fromarray((np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8))
    frames = call(pipe, image=image, output_type="pt").frames

    pixels = pipe.video_processor.preprocess(image, height=16, width=16).unsqueeze(2)
    reconstruction = pipe.video_processor.postprocess_video(pipe.decode_latents(pipe.encode_video(pixels)), "pt")
    # the image VAE decodes frame by frame, so the first frame is exactly the image's reconstruction
    assert torch.allclose(frames[:, 0], reconstruction[:, 0], atol=1e-5)
    assert (frames[:, 1:] - call(pipe, output_type="pt").frames[:, 1:]).abs().max() > 1e-4

    # diffusers' convention: arrays and tensors hold floats in [0, 1]
    as_array = call(pipe, image=np.asarray(image).astype(np.float32) / 255.0, output_type="pt").frames
    as_tensor = call(pipe, image=torch.from_numpy(np.asarray(image)).permute(2, 0, 1) / 255.0, output_type="pt").frames
    assert torch.allclose(frames, as_array, atol=1e-5) and torch.allclose(frames, as_tensor, atol=1e-5)


def test_image_to_video_with_flow_scheduler(pipe):
    pipe.scheduler = diffusers.FlowMatchEulerDiscreteScheduler()
    image = torch.rand(3, 16, 16)
    frames = call(pipe, image=image, output_type="pt").frames
    pixels = pipe.video_processor.preprocess(image, height=16, width=16).unsqueeze(2)
    reconstruction = pipe.video_processor.postprocess_video(pipe.decode_latents(pipe.encode_video(pixels)), "pt")
    assert torch.allclose(frames[:, 0], reconstruction[:, 0], atol=1e-5)


@pytest.mark.parametrize("conditioning_channels", [4, 5])
def test_image_to_video_with_conditioning_channels(conditioning_channels):
    pipe = build_pipeline(unet=build_unet(conditioning_channels=conditioning_channels))
    with recording_unet_calls(pipe) as calls:
        image = torch.rand(3, 16, 16)
        frames = call(pipe, image=image, output_type="pt").frames
        assert torch.isfinite(frames).all()

        image_latents = pipe.encode_video(pipe.video_processor.preprocess(image, height=16, width=16).unsqueeze(2))
        conditioning = calls[0]["kwargs"]["conditioning_latents"]
        assert conditioning.shape == (2, conditioning_channels, 5, 8, 8)
        assert torch.allclose(conditioning[:, :4, :1], image_latents.expand(2, -1, -1, -1, -1), atol=1e-6)
        assert conditioning[:, :4, 1:].abs().max() == 0
        if conditioning_channels == 5:
            assert conditioning[:, 4, 0].min() == 1 and conditioning[:, 4, 1:].abs().max() == 0
        # the result's first latent frame is the image's latent, so frame 0 is the image's VAE reconstruction
        latents = call(pipe, image=image, output_type="latent").frames
        torch.testing.assert_close(latents[:, :, :1], image_latents, rtol=0, atol=1e-6)
        reconstruction = pipe.video_processor.postprocess_video(pipe.decode_latents(image_latents), "pt")
        assert torch.allclose(frames[:, 0], reconstruction[:, 0], atol=1e-5)

        calls.clear()
        call(pipe)
        assert calls[0]["kwargs"]["conditioning_latents"].abs().max() == 0


@pytest.mark.parametrize("scheduler", ["DDIMScheduler", "EulerDiscreteScheduler", "FlowMatchEulerDiscreteScheduler"])
def test_video_to_video_strength(pipe, scheduler):
    pipe.scheduler = getattr(diffusers, scheduler).from_config(pipe.scheduler.config)
    video = [PIL.Image.fromarray(np.full((16, 16, 3), 40 * index, dtype=np.uint8)) for index in range(5)]
    with recording_unet_calls(pipe) as calls:
        half = call(pipe, video=video, num_frames=None, strength=0.5, num_inference_steps=4, output_type="pt").frames
        assert len(calls) == 2 and pipe.num_timesteps == 2 and half.shape == (1, 5, 3, 16, 16)
        assert torch.isfinite(half).all()

        # strength 0 denoises nothing: the output is the video's reconstruction
        calls.clear()
        untouched = call(pipe, video=video, strength=0.0, output_type="pt").frames
        assert len(calls) == 0
        pixels = pipe.video_processor.preprocess_video(video, height=16, width=16)
        reconstruction = pipe.video_processor.postprocess_video(pipe.decode_latents(pipe.encode_video(pixels)), "pt")
        assert torch.allclose(untouched, reconstruction, atol=1e-6)

        # the first step sees the video's latents noised to the first kept timestep of the schedule
        noise = torch.randn(pipe.latents_shape(1, 5, 16, 16), generator=torch.manual_seed(7))
        calls.clear()
        call(pipe, video=video, strength=0.5, num_inference_steps=4, latents=noise)
        video_latents = pipe.encode_video(pixels)
        timestep = calls[0]["timestep"][:1]
        assert torch.equal(timestep, pipe.scheduler.timesteps[2:3])
        if scheduler.startswith("FlowMatch"):
            sigma = pipe.scheduler.sigmas[2]
            expected = sigma * noise + (1.0 - sigma) * video_latents
        elif scheduler.startswith("Euler"):
            sigma = pipe.scheduler.sigmas[2]
            expected = (video_latents + sigma * noise) / (sigma**2 + 1) ** 0.5
        else:
            alpha_cumprod = pipe.scheduler.alphas_cumprod[timestep]
            expected = alpha_cumprod**0.5 * video_latents + (1 - alpha_cumprod) ** 0.5 * noise
        assert torch.allclose(calls[0]["sample"], expected.repeat(2, 1, 1, 1, 1), atol=1e-5)


def test_fps_reaches_the_unet_only_when_enabled():
    unet = build_unet(use_fps_conditioning=True)
    # the fps embedding starts at zero (inert); give it weights so that fps changes the output
    randomize_weights_(unet.fps_embedding, seed=1, scale=0.5)
    pipe = build_pipeline(unet=unet)
    with recording_unet_calls(pipe) as calls:
        call(pipe, fps=12)
    assert calls[0]["kwargs"]["fps"].tolist() == [12.0, 12.0]
    assert not torch.equal(call(pipe, fps=12, output_type="pt").frames, call(pipe, fps=24, output_type="pt").frames)

    plain = build_pipeline(unet=build_unet())
    with recording_unet_calls(plain) as calls:
        call(plain, fps=12)
    assert "fps" not in calls[0]["kwargs"] and "conditioning_latents" not in calls[0]["kwargs"]


# ----------------------------------------------------------------------------------------------------------------------
# Bad inputs
# ----------------------------------------------------------------------------------------------------------------------

BAD_INPUTS = [
    ({"num_frames": 0}, ValueError, "num_frames"),
    ({"num_frames": 2.5}, ValueError, "num_frames"),
    ({"height": 18}, ValueError, "height"),
    ({"width": 22}, ValueError, "width"),
    ({"num_inference_steps": None, "timesteps": [900, 100]}, ValueError, "timesteps"),
    ({"num_inference_steps": 0}, ValueError, "num_inference_steps"),
    ({"prompt": None}, ValueError, "prompt_embeds"),
    ({"prompt_embeds": torch.zeros(1, 16, 16)}, ValueError, "prompt_embeds"),
    ({"prompt": 3}, TypeError, "prompt"),
    ({"prompt": ["a", 3]}, TypeError, "prompt"),
    ({"prompt": ["a", "b"], "negative_prompt": ["x"]}, ValueError, "negative_prompt"),
    ({"negative_prompt": 5}, TypeError, "negative_prompt"),
    ({"prompt": None, "prompt_embeds": torch.zeros(1, 16, 8)}, ValueError, "prompt_embeds"),
    (
        {"prompt": None, "prompt_embeds": torch.zeros(1, 16, 16), "negative_prompt_embeds": torch.zeros(1, 8, 16)},
        ValueError,
        "negative_prompt_embeds",
    ),
    ({"output_type": "gif"}, ValueError, "output_type"),
    ({"generator": [torch.Generator() for _ in range(3)]}, ValueError, "generator"),
    ({"latents": torch.zeros(1, 4, 5, 4, 4)}, ValueError, "latents"),
    ({"callback_on_step_end_tensor_inputs": ["noise_pred"]}, ValueError, "callback_on_step_end_tensor_inputs"),
    ({"num_videos_per_prompt": 0}, ValueError, "num_videos_per_prompt"),
    ({"guidance_scale": "high"}, TypeError, "guidance_scale"),
    ({"guidance_scale": [7.5]}, TypeError, "guidance_scale"),
    ({"guidance_rescale": 1.5}, ValueError, "guidance_rescale"),
    ({"video": torch.rand(5, 3, 16, 16), "strength": 1.5}, ValueError, "strength"),
    ({"video": torch.rand(5, 3, 16, 16), "strength": -0.1}, ValueError, "strength"),
    ({"image": torch.rand(3, 16, 16), "video": torch.rand(5, 3, 16, 16)}, ValueError, "image"),
    ({"image": "frame.png"}, TypeError, "image"),
    ({"image": [torch.rand(3, 16, 16)] * 3}, ValueError, "image"),
    ({"fps": 0}, ValueError, "fps"),
    ({"video": torch.rand(9, 3, 16, 16), "num_frames": 5}, ValueError, "video"),
    ({"video": [torch.rand(5, 3, 16, 16)] * 3}, ValueError, "video"),
    ({"decode_chunk_size": 0}, ValueError, "decode_chunk_size"),
    ({"timesteps": [10], "sigmas": [1.0]}, ValueError, "sigmas"),
]


@pytest.mark.parametrize("overrides, error, name", BAD_INPUTS, ids=[str(i) for i in range(len(BAD_INPUTS))])
def test_bad_input_raises_naming_the_argument(pipe, overrides, error, name):
    with recording_unet_calls(pipe) as calls:
        with pytest.raises(error, match=f"`{name}`"):
            call(pipe, **overrides)
        assert calls == []


def test_num_frames_error_names_nearest_valid_counts():
    pipe = build_pipeline(vae=build_wan_vae())
    with pytest.raises(ValueError, match="`num_frames` is 6, which breaks the frame rule.*use 5 or 7"):
        call(pipe, num_frames=6)
    with pytest.raises(ValueError, match="`height` is .*needs a positive multiple of 8"):
        call(pipe, height=12)
