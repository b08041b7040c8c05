"""Components that do not fit together are refused when a pipeline is built, loaded or given a new component, with a
`ValueError` naming both components and both numbers, instead of a shape error deep inside a forward pass."""

import pytest

from diffusers_videolatent import VideoLatentPipeline

from ..testing_utils import (
    build_image_vae,
    build_pipeline_components,
    build_text_encoder,
    build_unet,
    build_unet3d,
    build_video_vae,
    build_wan_vae,
)


def small_embedding_table():
    text_encoder = build_text_encoder()
    text_encoder.resize_token_embeddings(50)
    return text_encoder


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"vae": build_image_vae(latent_channels=8)}, r"AutoencoderKL\) makes latents of 8 channels.*`in_channels`=4"),
        ({"unet": build_unet3d(cross_attention_dim=24)}, r"CLIPTextModel\) gives embeddings of width 16.*=24"),
        ({"text_encoder": small_embedding_table()}, r"tokenizer .* has 92 tokens.*embedding table of 50"),
        ({"unet": build_unet(conditioning_channels=3)}, r"`conditioning_channels`=3 is not supported"),
    ],
    ids=["vae-unet-channels", "text-width", "tokenizer-table", "conditioning-channels"],
)
def test_a_mismatch_is_refused_when_the_pipeline_is_built(overrides, match):
    with pytest.raises(ValueError, match=match):
        VideoLatentPipeline(**build_pipeline_components(**overrides))


def test_recommended_frames_must_suit_the_vae_and_the_frame_table():
    # our VAE has temporal ratio 2, our U-Net's table holds 8 latent frames: 15 frames is the most
    components = build_pipeline_components(vae=build_video_vae(), unet=build_unet())
    VideoLatentPipeline(**components, generation_defaults={"num_frames": 15})
    with pytest.raises(ValueError, match=r"`generation_defaults\['num_frames'\]` is 17: 9 latent frames.*holds 8"):
        VideoLatentPipeline(**components, generation_defaults={"num_frames": 17})
    with pytest.raises(ValueError, match=r"`generation_defaults\['num_frames'\]` is 6, which breaks the frame rule"):
        VideoLatentPipeline(**components, generation_defaults={"num_frames": 6})


def test_a_saved_folder_that_does_not_fit_is_refused_on_loading(tmp_path):
    pipe = VideoLatentPipeline(**build_pipeline_components())
    pipe.save_pretrained(tmp_path / "saved")
    build_image_vae(latent_channels=8).save_pretrained(tmp_path / "saved" / "vae")
    with pytest.raises(ValueError, match="makes latents of 8 channels"):
        VideoLatentPipeline.from_pretrained(tmp_path / "saved")


def test_assigning_a_component_checks_it_and_derives_the_ratios_again():
    pipe = VideoLatentPipeline(**build_pipeline_components())
    assert (pipe.vae_scale_factor_spatial, pipe.vae_scale_factor_temporal) == (2, 1)
    pipe.vae = build_wan_vae()
    # the Wan VAE compresses 4x in space and 2x in time: the size rule and the latents follow it
    assert (pipe.vae_scale_factor_spatial, pipe.vae_scale_factor_temporal) == (4, 2)
    assert pipe.video_processor.config.vae_scale_factor == 4
    assert pipe.latents_shape(1, 5, 16, 16) == (1, 4, 3, 4, 4)
    with pytest.raises(ValueError, match=r"makes latents of 8 channels"):
        pipe.vae = build_image_vae(latent_channels=8)
