"""Image conditioning in training: the U-Net is trained on the `conditioning_latents` the pipeline feeds it for
`image=`, built by the same function, and a U-Net can be given conditioning channels that start inert."""

import pytest
import torch

from diffusers_videolatent import UNetSpatioTemporalModel
from diffusers_videolatent.models.unet_spatio_temporal import build_conditioning_latents
from diffusers_videolatent.training.train_text_to_video import add_conditioning_channels, draw_conditioning_latents
from diffusers_videolatent.training.training_utils import sample_generators

from ..testing_utils import build_pipeline, build_unet, build_video_vae


LATENT_CHANNELS = 4


def _record_conditioning(pipe) -> list[torch.Tensor]:
    # a forward pre-hook on the real U-Net: what reaches it at inference
    calls = []

    def hook(module, args, kwargs):
        calls.append(kwargs["conditioning_latents"].clone())

    pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)
    return calls


@torch.no_grad()
@pytest.mark.parametrize("conditioning_channels", [LATENT_CHANNELS, LATENT_CHANNELS + 1])
def test_training_conditioning_is_what_the_pipeline_feeds(moving_square_video, conditioning_channels):
    # a causal video VAE (temporal ratio 2), so the image's latent must come from the first frame alone
    video = moving_square_video
    unet = build_unet(in_channels=LATENT_CHANNELS, conditioning_channels=conditioning_channels)
    pipe = build_pipeline(vae=build_video_vae(), unet=unet)
    calls = _record_conditioning(pipe)
    call = {"num_frames": 5, "height": 16, "width": 16, "num_inference_steps": 1, "guidance_scale": 1.0}

    # training: the cached latents of the whole video, every item given its first frame
    latents = pipe.encode_video(video * 2 - 1)  # (1, C, 3, 8, 8)
    assert latents.shape == (1, LATENT_CHANNELS, 3, 8, 8)
    generators = sample_generators(0, 0, range(3))
    training = draw_conditioning_latents(latents.repeat(3, 1, 1, 1, 1), conditioning_channels, 1.0, generators)
    assert training.shape == (3, conditioning_channels, 3, 8, 8)

    # inference: the same first frame as `image=` (a float image in [0, 1], as a user passes it)
    pipe("a red square moving right", image=video[0, :, 0], generator=torch.manual_seed(0), **call)
    torch.testing.assert_close(calls[-1], training[:1], rtol=0, atol=1e-5)
    assert training[:, :LATENT_CHANNELS, :1].abs().amax() > 0.01
    assert training[:, :LATENT_CHANNELS, 1:].abs().amax() == 0
    if conditioning_channels == LATENT_CHANNELS + 1:
        assert training[:, -1, 0].min() == 1 and training[:, -1, 1:].abs().amax() == 0

    # a text-only item is what the pipeline feeds without an image: zeros, the mask too
    text_only = draw_conditioning_latents(latents, conditioning_channels, 0.0, sample_generators(0, 0, range(1)))
    pipe("a red square moving right", generator=torch.manual_seed(0), **call)
    assert torch.equal(calls[-1], text_only) and text_only.abs().amax() == 0


def test_image_conditioning_prob_draws_per_video():
    latents = torch.randn(400, LATENT_CHANNELS, 3, 2, 2)
    conditioning = draw_conditioning_latents(latents, LATENT_CHANNELS + 1, 0.3, sample_generators(0, 0, range(400)))
    given = conditioning[:, -1, 0, 0, 0] == 1
    # 400 draws at 0.3: 120 expected, a standard deviation of about 9
    assert 90 < int(given.sum()) < 150
    assert torch.equal(conditioning[given, :LATENT_CHANNELS, :1], latents[given, :, :1])
    assert conditioning[~given].abs().amax() == 0
    # each video's draw is the first of its own generator, whatever the other videos of the batch: a video at place
    # 7 of the step's global batch draws the same alone (on another process, or at another place in a local batch)
    for index in (0, 7, 399):
        alone = draw_conditioning_latents(
            latents[index : index + 1], LATENT_CHANNELS + 1, 0.3, sample_generators(0, 0, range(index, index + 1))
        )
        assert torch.equal(alone, conditioning[index : index + 1])
    # and another step draws again
    again = draw_conditioning_latents(latents, LATENT_CHANNELS + 1, 0.3, sample_generators(0, 1, range(400)))
    assert not torch.equal(again, conditioning)
    with pytest.raises(ValueError, match="conditioning_channels"):
        build_conditioning_latents(latents, LATENT_CHANNELS + 2, latents[:, :, :1])


@torch.no_grad()
def test_added_conditioning_channels_start_inert_and_round_trip(tmp_path):
    unet = build_unet(in_channels=LATENT_CHANNELS, sample_size=8)
    sample = torch.randn(2, LATENT_CHANNELS, 3, 8, 8)
    timestep = torch.tensor([10.0, 500.0])
    text = torch.randn(2, 6, 16)
    before = unet(sample, timestep, text).sample

    widened = add_conditioning_channels(unet, LATENT_CHANNELS + 1)
    assert widened.config.conditioning_channels == LATENT_CHANNELS + 1
    assert widened.conv_in.in_channels == 2 * LATENT_CHANNELS + 1
    conditioning = torch.randn(2, LATENT_CHANNELS + 1, 3, 8, 8)
    torch.testing.assert_close(widened(sample, timestep, text, conditioning_latents=conditioning).sample, before)

    widened.save_pretrained(tmp_path / "unet")
    loaded = UNetSpatioTemporalModel.from_pretrained(tmp_path / "unet").eval()
    assert loaded.config.conditioning_channels == LATENT_CHANNELS + 1
    torch.testing.assert_close(loaded(sample, timestep, text, conditioning_latents=conditioning).sample, before)
    with pytest.raises(ValueError, match="conditioning_channels"):
        add_conditioning_channels(loaded, LATENT_CHANNELS)
