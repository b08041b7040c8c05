"""The diffusers-release differences of `diffusers_videolatent/compat.py`, checked on the installed release.

CI runs the suite on the newest and the oldest diffusers setup.cfg admits, so each test here runs on both.
"""

import pytest
import torch

from diffusers_videolatent import AutoencoderKLVideo, UNetSpatioTemporalModel, VideoLatentPipeline
from diffusers_videolatent.compat import DIFFUSERS_VERSION, FROM_PRETRAINED_DTYPE, dtype_argument


def test_dtype_argument_renames_to_the_installed_name():
    expected = "dtype" if DIFFUSERS_VERSION.release >= (0, 40) else "torch_dtype"
    assert FROM_PRETRAINED_DTYPE == expected
    for name in ("dtype", "torch_dtype"):
        assert dtype_argument({name: torch.float16, "variant": "fp16"}) == {expected: torch.float16, "variant": "fp16"}
    assert dtype_argument({"subfolder": "unet"}) == {"subfolder": "unet"}
    with pytest.raises(ValueError, match="`dtype` or `torch_dtype`"):
        dtype_argument({"dtype": torch.float16, "torch_dtype": torch.float16})


@pytest.mark.parametrize("name", ["dtype", "torch_dtype"])
def test_from_pretrained_takes_either_dtype_name(tmp_path, name):
    vae = AutoencoderKLVideo(
        block_out_channels=(8, 16), layers_per_block=1, temporal_downsample=(False, True), norm_num_groups=4
    )
    vae.save_pretrained(tmp_path / "vae")
    loaded = AutoencoderKLVideo.from_pretrained(tmp_path / "vae", **{name: torch.float16})
    assert loaded.dtype == torch.float16
    for key, tensor in vae.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], tensor.half(), rtol=0, atol=0)

    pipe = VideoLatentPipeline.from_pretrained("diffusers_videolatent/default_model", **{name: torch.bfloat16})
    assert isinstance(pipe.unet, UNetSpatioTemporalModel)
    assert {pipe.unet.dtype, pipe.vae.dtype, pipe.text_encoder.dtype} == {torch.bfloat16}
