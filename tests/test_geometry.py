"""The geometry module: the frame rule, nearest valid counts, spatial multiples and largest frame counts, and the ratios
it reads from configs agree with what the real models (ours and diffusers') do."""

import json
from pathlib import Path

import pytest
import torch

import diffusers_videolatent
from diffusers_videolatent import AutoencoderKLVideo, VideoLatentPipeline
from diffusers_videolatent.geometry import (
    check_frame_sides,
    check_frame_table,
    check_num_frames,
    get_vae_compression_ratios,
    is_valid_num_frames,
    largest_num_frames,
    nearest_multiples,
    nearest_valid_num_frames,
    num_latent_frames,
    num_pixel_frames,
    size_multiple,
    unet_downsample_factor,
    unet_max_latent_frames,
    vae_compression_ratios_from_config,
)
from diffusers_videolatent.model_card import create_model_card
from diffusers_videolatent.pipelines.input_checks import check_pipeline_num_frames
from diffusers_videolatent.training.training_utils import check_video_size

from .testing_utils import (
    build_cogvideox_vae,
    build_image_vae,
    build_pipeline_components,
    build_unet,
    build_unet3d,
    build_video_vae,
    build_wan_vae,
)


DEFAULT_MODEL = Path(diffusers_videolatent.__file__).parent / "default_model"


@pytest.mark.parametrize("ratio", [1, 2, 4, 8])
def test_frame_rule_round_trips(ratio):
    valid = [count for count in range(0, 40) if is_valid_num_frames(count, ratio)]
    assert valid == list(range(1, 40, ratio))
    for count in valid:
        assert num_pixel_frames(num_latent_frames(count, ratio), ratio) == count
    for count in range(0, 40):
        if not is_valid_num_frames(count, ratio):
            lower, upper = nearest_valid_num_frames(count, ratio)
            assert is_valid_num_frames(lower, ratio) and is_valid_num_frames(upper, ratio)
            assert upper - lower == ratio and (lower < count < upper or count < lower == 1)


def test_nearest_counts_multiples_and_largest():
    assert nearest_valid_num_frames(16, 4) == (13, 17)
    assert nearest_valid_num_frames(0, 4) == (1, 5)
    assert nearest_multiples(15, 2) == (14, 16)
    assert nearest_multiples(1, 8) == (8,)
    assert largest_num_frames(16, 4) == 61 and largest_num_frames(8, 1) == 8
    assert size_multiple(8, 2) == 16


def our_vae(ratio: int) -> AutoencoderKLVideo:
    return AutoencoderKLVideo.from_image_vae(build_image_vae(), temporal_compression_ratio=ratio)


VAES = [
    ("AutoencoderKL", build_image_vae, (2, 1, True)),
    ("AutoencoderKLWan", build_wan_vae, (4, 2, False)),
    ("AutoencoderKLCogVideoX", build_cogvideox_vae, (2, 2, False)),
    ("AutoencoderKLVideo-r1", lambda: our_vae(1), (2, 1, False)),
    ("AutoencoderKLVideo-r4", lambda: our_vae(4), (2, 4, False)),
]


@pytest.mark.parametrize("build_vae, ratios", [case[1:] for case in VAES], ids=[case[0] for case in VAES])
def test_ratios_from_config_equal_the_models(build_vae, ratios):
    vae = build_vae()
    assert vae_compression_ratios_from_config(vae.config) == get_vae_compression_ratios(vae) == ratios
    spatial, temporal, single_frames = ratios
    if single_frames:
        return
    # the rule is what the VAE really does: 1 + 2 * r frames encode to 3 latent frames and decode back
    num_frames = num_pixel_frames(3, temporal)
    with torch.no_grad():
        latents = vae.encode(torch.zeros(1, 3, num_frames, 4 * spatial, 4 * spatial)).latent_dist.mode()
        assert latents.shape[2] == num_latent_frames(num_frames, temporal) == 3
        assert latents.shape[3] == 4
        assert vae.decode(latents).sample.shape[2] == num_frames


def test_unet_geometry_from_config():
    unet = build_unet(temporal_max_frames=6)
    assert unet.downsample_factor == unet_downsample_factor(unet.config) == 2
    assert unet.max_num_frames == unet_max_latent_frames(unet.config) == 6
    # diffusers' U-Net 3D has no frame table: any number of frames
    assert unet_max_latent_frames(build_unet3d().config) is None
    assert unet_max_latent_frames({"temporal_position_embedding": "none", "temporal_max_frames": 6}) is None


def test_default_model_geometry_and_card():
    vae_config = json.loads((DEFAULT_MODEL / "vae" / "config.json").read_text())
    unet_config = json.loads((DEFAULT_MODEL / "unet" / "config.json").read_text())
    spatial, temporal, _ = vae_compression_ratios_from_config(vae_config)
    assert (spatial, temporal) == (8, 4)
    assert size_multiple(spatial, unet_downsample_factor(unet_config)) == 16
    assert largest_num_frames(unet_max_latent_frames(unet_config), temporal) == 61

    card = create_model_card(DEFAULT_MODEL)
    assert "holds 16 latent frames, so `num_frames` is at most 61" in card.text
    assert "must be multiples of 16" in card.text


def test_the_frame_rule_reads_the_same_wherever_it_is_broken():
    # the pipeline, the VAE and the model card all raise geometry.check_num_frames' message
    with pytest.raises(ValueError) as expected:
        check_num_frames(6, 2)
    with pytest.raises(ValueError) as from_vae:
        build_video_vae().encode(torch.zeros(1, 3, 6, 8, 8))
    assert str(from_vae.value) == str(expected.value).replace("`num_frames`", "`x.shape[2]`")
    pipe = VideoLatentPipeline(**build_pipeline_components(vae=build_video_vae(), unet=build_unet()))
    with pytest.raises(ValueError) as from_pipeline:
        pipe("a red circle", num_frames=6, num_inference_steps=1, output_type="latent")
    assert str(from_pipeline.value) == str(expected.value)
    assert str(expected.value) == (
        "`num_frames` is 6, which breaks the frame rule; a VAE with temporal compression ratio 2 needs 1 + k * 2"
        " frames: use 5 or 7."
    )


def test_frame_sides_and_frame_table_read_the_same_in_the_pipeline_and_in_training():
    # the pipeline and the training scripts both raise geometry's messages, with the argument as each user spells it
    pipe = VideoLatentPipeline(**build_pipeline_components(vae=build_video_vae(), unet=build_unet()))
    ratios = (pipe.vae_scale_factor_temporal, pipe.vae_scale_factor_spatial, pipe.unet_downsample_factor)
    multiple = ratios[1] * ratios[2]
    with pytest.raises(ValueError) as from_pipeline:
        pipe("a red circle", num_frames=5, height=multiple + 2, width=multiple, num_inference_steps=1)
    with pytest.raises(ValueError) as from_training:
        check_video_size(5, multiple + 2, multiple, *ratios)
    assert str(from_training.value) == str(from_pipeline.value).replace("`height`", "`--height`")
    assert f"`height` is {multiple + 2}, but the VAE's spatial ratio {ratios[1]}" in str(from_pipeline.value)
    assert str(from_pipeline.value).endswith(
        f"needs a positive multiple of {multiple}: use {multiple} or {2 * multiple}."
    )

    with pytest.raises(ValueError, match=r"`--num_frames` is 21, .* holds 4 latent frames .* takes is 13\.$"):
        check_video_size(21, multiple, multiple, 4, ratios[1], ratios[2], max_latent_frames=4)
    with pytest.raises(ValueError, match=r"`num_frames` is 21, .* takes is 13; trim `video` to at most 13 frames\."):
        check_pipeline_num_frames(21, 4, 4, video_length=21)


def test_frame_sides_name_the_value_when_it_is_not_a_positive_integer():
    for size in (0, -8, 16.0, "16", True):
        with pytest.raises(ValueError) as error:
            check_frame_sides(16, size, 8)
        assert (
            str(error.value) == f"`width` is {size!r}, but the VAE's spatial ratio 8 needs a positive multiple of 8."
        )
    check_frame_sides(16, 24, 8)
    check_frame_sides(32, 64, 8, unet_downsample_factor=4)
    with pytest.raises(ValueError, match=r"`--height` is 16, .* times the U-Net's downsampling 4 .* of 32: use 32\."):
        check_frame_sides(16, 32, 8, unet_downsample_factor=4, prefix="--")
    check_frame_table(61, 4, 16)
    check_frame_table(10_001, 4, None)
