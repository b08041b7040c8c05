"""An invalid `config.json` value is refused when the folder loads, naming the key."""

import json

import pytest

from diffusers_videolatent import AutoencoderKLVideo, UNetSpatioTemporalModel

from ..testing_utils import build_unet, build_video_vae


def _edit_and_load(model, cls, folder, key, value):
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    return cls.from_pretrained(folder)


UNET_CASES = [
    ("in_channels", 0, "positive integers"),
    ("block_out_channels", [8, -16], "positive integers"),
    ("block_out_channels", [8, 16.5], "positive integers"),
    ("num_attention_heads", 0, "positive integers"),
    ("temporal_max_frames", -1, "positive integers"),
    ("cross_attention_dim", "32", "positive integers"),
    ("conditioning_channels", -4, "integers >= 0"),
    ("layers_per_block", [1, -1], "integers >= 0"),
    ("norm_num_groups", True, "positive integers"),
    ("act_fn", "tanhh", "must be one of"),
    ("temporal_conv_dropout", 1.5, "finite number >= 0.0 and <= 1.0"),
    ("norm_eps", 0, "finite number > 0.0"),
    ("layers_per_block", [1, 1, 1], "one entry per level"),
    ("temporal_position_embedding", "rotary", "must be one of"),
]


@pytest.mark.parametrize("key, value, expected", UNET_CASES)
def test_unet_config_value_refused_naming_the_key(tmp_path, key, value, expected):
    with pytest.raises(ValueError, match=expected) as caught:
        _edit_and_load(build_unet(), UNetSpatioTemporalModel, tmp_path, key, value)
    assert f"`{key}`" in str(caught.value)


VAE_CASES = [
    ("latent_channels", 0, "positive integers"),
    ("block_out_channels", [8, 0], "positive integers"),
    ("layers_per_block", -1, "positive integers"),
    ("act_fn", "gelu_tanh", "must be one of"),
    ("scaling_factor", 0.0, "finite number > 0.0"),
    ("scaling_factor", None, "finite number > 0.0"),
    ("latents_mean", [0.0, 0.0], "one entry per latent channel"),
    ("temporal_downsample", [False], "one entry per level"),
    ("decoder_padding_mode", "reflect", "must be one of"),
]


@pytest.mark.parametrize("key, value, expected", VAE_CASES)
def test_vae_config_value_refused_naming_the_key(tmp_path, key, value, expected):
    with pytest.raises(ValueError, match=expected) as caught:
        _edit_and_load(build_video_vae(), AutoencoderKLVideo, tmp_path, key, value)
    assert f"`{key}`" in str(caught.value)


def test_valid_configs_still_load(tmp_path):
    unet = _edit_and_load(build_unet(), UNetSpatioTemporalModel, tmp_path / "unet", "act_fn", "silu")
    assert unet.config.act_fn == "silu"
    vae = _edit_and_load(build_video_vae(), AutoencoderKLVideo, tmp_path / "vae", "latents_mean", [0.1] * 4)
    assert list(vae.config.latents_mean) == [0.1] * 4
