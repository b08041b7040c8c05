"""Diffusers' group offloading on both models, run on the CPU (the pipeline's: `tests/pipelines/testing_utils.py`).

With `offload_to_disk_path`, an offloaded group's weights are replaced by uninitialised tensors until its hook loads
them back from disk, so a layer that runs without its group being onloaded gives a wrong result (in practice NaN or
garbage) even though onload and offload devices are both the CPU.
"""

import pytest
import torch

from diffusers_videolatent import AutoencoderKLVideo

from .testing_utils import build_unet, build_video_vae, needs_diffusers_hooks_0_42


CPU = torch.device("cpu")
OFFLOAD_TYPES = [("block_level", 1), ("leaf_level", None)]
pytestmark = needs_diffusers_hooks_0_42


@pytest.mark.usefixtures("no_grad")
@pytest.mark.parametrize("offload_type, num_blocks_per_group", OFFLOAD_TYPES)
def test_vae_decodes_and_encodes_the_same_with_group_offloading(tmp_path, offload_type, num_blocks_per_group):
    vae = build_video_vae()
    video = torch.rand(1, 3, 5, 8, 8) * 2 - 1
    latents = torch.randn(1, vae.config.latent_channels, 3, 4, 4)
    # chunk_size=1: three streamed chunks, so the causal cache must carry frames across hooked calls
    reference_decoded = vae.decode(latents, chunk_size=1).sample
    reference_moments = vae.encode(video, chunk_size=1).latent_dist.mean

    vae.enable_group_offload(
        CPU, CPU, offload_type=offload_type, num_blocks_per_group=num_blocks_per_group, offload_to_disk_path=tmp_path
    )
    for _ in range(2):
        assert torch.equal(vae.decode(latents, chunk_size=1).sample, reference_decoded)
        assert torch.equal(vae.encode(video, chunk_size=1).latent_dist.mean, reference_moments)
    assert any(tmp_path.iterdir())


def test_vae_declares_its_blocks_and_cache_to_the_hooks():
    assert AutoencoderKLVideo._group_offload_block_modules == ["quant_conv", "post_quant_conv", "encoder", "decoder"]
    assert AutoencoderKLVideo._skip_keys == ["cache"]


@pytest.mark.usefixtures("no_grad")
def test_vae_without_its_block_declaration_is_not_onloaded(tmp_path, monkeypatch):
    """What the declaration is for: `decode` never calls `forward`, so a hook on the whole VAE never onloads it."""
    monkeypatch.setattr(AutoencoderKLVideo, "_group_offload_block_modules", None)
    vae = build_video_vae()
    latents = torch.randn(1, vae.config.latent_channels, 3, 4, 4)
    reference = vae.decode(latents, chunk_size=1).sample
    vae.enable_group_offload(CPU, CPU, num_blocks_per_group=1, offload_to_disk_path=tmp_path)
    assert not torch.allclose(vae.decode(latents, chunk_size=1).sample, reference, equal_nan=False)


@pytest.mark.usefixtures("no_grad")
@pytest.mark.parametrize("offload_type, num_blocks_per_group", OFFLOAD_TYPES)
def test_unet_predicts_the_same_with_group_offloading(tmp_path, offload_type, num_blocks_per_group):
    unet = build_unet(identity_init=False)
    sample, text = torch.randn(2, 4, 3, 8, 8), torch.randn(2, 5, 16)
    reference = unet(sample, 10, text).sample
    unet.enable_group_offload(
        CPU, CPU, offload_type=offload_type, num_blocks_per_group=num_blocks_per_group, offload_to_disk_path=tmp_path
    )
    for _ in range(2):
        assert torch.equal(unet(sample, 10, text).sample, reference)
