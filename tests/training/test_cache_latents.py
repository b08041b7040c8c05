"""`train_text_to_video --cache_latents`: the cached latents are the VAE's, and training on them equals training on
the videos encoded at every step (a single epoch, so that both runs see the same videos in the same order)."""

import torch
from safetensors.torch import load_file

from diffusers_videolatent import AutoencoderKLVideo, VideoLatentPipeline
from diffusers_videolatent.training import train_text_to_video
from diffusers_videolatent.training.moving_shapes import MovingShapesDataset

from ..testing_utils import TRAINING_VAE_CONFIG, text_to_video_model_arguments


def test_cached_latents_equal_per_step_encoding(tmp_path):
    torch.manual_seed(0)
    AutoencoderKLVideo.from_config(TRAINING_VAE_CONFIG).save_pretrained(tmp_path / "vae")
    arguments = text_to_video_model_arguments(tmp_path / "vae") + ["--num_frames", "5", "--height", "16"]
    arguments += ["--width", "16", "--train_batch_size", "2", "--max_train_samples", "4", "--max_train_steps", "2"]
    arguments += ["--learning_rate", "1e-3", "--seed", "3", "--no_validation", "--report_to", ""]
    train_text_to_video.main(arguments + ["--output_dir", str(tmp_path / "encoded")])
    train_text_to_video.main(arguments + ["--output_dir", str(tmp_path / "cached"), "--cache_latents"])

    encoded = load_file(tmp_path / "encoded" / "unet" / "diffusion_pytorch_model.safetensors")
    cached = load_file(tmp_path / "cached" / "unet" / "diffusion_pytorch_model.safetensors")
    assert encoded.keys() == cached.keys()
    for name in encoded:
        torch.testing.assert_close(cached[name], encoded[name], rtol=1e-4, atol=1e-5)
    pipeline = VideoLatentPipeline.from_pretrained(tmp_path / "cached")

    # the cache holds `encode_video` of the dataset's videos, in order, with their captions
    dataset = MovingShapesDataset("train", num_videos=3, num_frames=5, height=16, width=16, seed=0)
    cache = train_text_to_video.cache_latents(pipeline, dataset, batch_size=2, device="cpu", dtype=torch.float32)
    assert len(cache) == 3 and cache.latents.shape == (3, 4, 3, 8, 8)
    # encoded without autograd, even by a VAE whose weights take gradients: the cache holds no graph
    assert pipeline.vae.encoder.conv_in.weight.requires_grad and not cache.latents.requires_grad
    for index in range(3):
        expected = pipeline.encode_video(dataset[index]["pixel_values"][None])[0]
        torch.testing.assert_close(cache[index]["latents"], expected, rtol=1e-5, atol=1e-6)
        assert cache[index]["text"] == dataset[index]["text"]
    # the pooled foreground masks come along, unless the run does not weight its loss with them
    assert cache.latent_foreground.shape == (3, 3, 8, 8)
    without = train_text_to_video.cache_latents(pipeline, dataset, 2, "cpu", torch.float32, keep_foreground=False)
    assert without.latent_foreground is None and "latent_foreground" not in without[0]
    torch.testing.assert_close(without.latents, cache.latents)
