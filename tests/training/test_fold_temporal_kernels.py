"""Folding the temporal kernels of a VAE trained on single frames (`train_video_vae` does it when `--num_frames 1`)."""

import pytest
import torch

from diffusers_videolatent import AutoencoderKLVideo
from diffusers_videolatent.models.autoencoder_kl_video import CausalConv3d
from diffusers_videolatent.training import train_video_vae
from diffusers_videolatent.training.train_video_vae import fold_temporal_kernels

from ..testing_utils import build_video_vae, randomize_weights_


def _random_vae(temporal_downsample) -> AutoencoderKLVideo:
    vae = build_video_vae(
        block_out_channels=(8, 8, 8), temporal_downsample=temporal_downsample, mid_block_add_attention=False
    )
    # every tap random, as after training, so that frames are mixed arbitrarily before folding
    return randomize_weights_(vae, scale=0.2)


def _video(num_frames: int) -> torch.Tensor:
    return torch.rand(1, 3, num_frames, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.mark.parametrize("temporal_downsample", [(False, False, False), (False, True, True)])
def test_folding_keeps_the_output_of_a_single_frame(temporal_downsample):
    vae, image = _random_vae(temporal_downsample), _video(1)
    with torch.no_grad():
        before = vae(image).sample
        fold_temporal_kernels(vae)
        after = vae(image).sample
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_folded_vae_without_temporal_compression_works_frame_by_frame():
    vae, video = _random_vae((False, False, False)), _video(5)
    with torch.no_grad():
        mixed = vae(video).sample
        fold_temporal_kernels(vae)
        folded = vae(video).sample
        frame_by_frame = torch.cat([vae(video[:, :, index : index + 1]).sample for index in range(5)], dim=2)
    torch.testing.assert_close(folded, frame_by_frame, rtol=1e-4, atol=1e-4)
    assert (mixed[:, :, 1:] - frame_by_frame[:, :, 1:]).abs().max() > 1e-2  # the random taps did mix frames


def test_folded_vae_repeats_a_still_frame():
    vae, image = _random_vae((False, True, True)), _video(1)
    still = image.expand(-1, -1, 9, -1, -1)
    with torch.no_grad():
        fold_temporal_kernels(vae)
        reconstruction = vae(still).sample  # (1, 3, 9, 16, 16)
        first = vae(image).sample
    torch.testing.assert_close(reconstruction, first.expand_as(reconstruction), rtol=1e-4, atol=1e-4)


def test_training_on_single_frames_saves_folded_kernels(tmp_path):
    config = '{"block_out_channels": [8, 8], "layers_per_block": 1, "temporal_downsample": [false, true], '
    config += '"latent_channels": 4, "norm_num_groups": 4, "mid_block_add_attention": false}'
    arguments = ["--vae_config", config, "--num_frames", "1", "--height", "16", "--width", "16"]
    arguments += ["--train_batch_size", "2", "--max_train_samples", "4", "--max_train_steps", "2", "--no_validation"]
    train_video_vae.main(arguments + ["--output_dir", str(tmp_path), "--report_to", "jsonl"])
    vae = AutoencoderKLVideo.from_pretrained(tmp_path)
    spatial = [
        module
        for name, module in vae.named_modules()
        if isinstance(module, CausalConv3d) and module.kernel_size[0] == 3 and "temporal" not in name
    ]
    assert spatial
    for module in spatial:
        assert module.weight[:, :, :-1].abs().max() == 0
        assert module.weight[:, :, -1].abs().max() > 0
