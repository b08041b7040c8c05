"""`train_video_vae --train_encoder_only` and `--latent_anchor_weight`: the encoder trained under a frozen decoder,
its latents kept near the loaded encoder's (the latent space a diffusion model was trained on)."""

import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from diffusers_videolatent.training.training_utils import read_run_config

from ..testing_utils import TRAINING_ARGUMENTS, TRAINING_VAE_CONFIG, record_returns, training_metrics


@pytest.fixture(scope="module")
def source_vae(tmp_path_factory) -> str:
    """A tiny VAE saved as a pretrained folder, with a scaling factor other than 1."""
    from diffusers_videolatent import AutoencoderKLVideo

    torch.manual_seed(0)
    folder = str(tmp_path_factory.mktemp("source") / "vae")
    AutoencoderKLVideo(**TRAINING_VAE_CONFIG, scaling_factor=0.5).save_pretrained(folder)
    return folder


def _encoder_arguments(source: str, anchor: float) -> list[str]:
    arguments = TRAINING_ARGUMENTS + ["--pretrained_vae_name_or_path", source, "--train_encoder_only"]
    arguments += ["--learning_rate", "5e-3", "--max_train_steps", "6", "--checkpointing_steps", "3", "--no_validation"]
    return arguments + ["--decode_posterior", "mode", "--latent_anchor_weight", str(anchor)]


def _normalised_means(folder: str, clips: torch.Tensor) -> torch.Tensor:
    from diffusers_videolatent import AutoencoderKLVideo

    vae = AutoencoderKLVideo.from_pretrained(folder)
    with torch.no_grad():
        return vae.encode(clips).latent_dist.mean * vae.config.scaling_factor


def test_encoder_only_trains_the_encoder_alone_and_keeps_the_normalisation(source_vae, tmp_path):
    from diffusers_videolatent import AutoencoderKLVideo
    from diffusers_videolatent.training.train_video_vae import main

    output = tmp_path / "encoder"
    main(_encoder_arguments(source_vae, 0.5) + ["--use_ema", "--ema_decay", "0.5", "--output_dir", str(output)])
    before = load_file(os.path.join(source_vae, "diffusion_pytorch_model.safetensors"))
    after = load_file(str(output / "diffusion_pytorch_model.safetensors"))
    changed = [key for key in before if not torch.equal(before[key], after[key])]
    assert changed and all(key.startswith(("encoder.", "quant_conv.")) for key in changed)
    assert any(key.startswith("encoder.") for key in changed)
    # the decoder reads the loaded encoder's latent space: its normalisation is kept, not measured again
    assert AutoencoderKLVideo.from_pretrained(str(output)).config.scaling_factor == 0.5

    # the anchor is the loaded encoder: nothing to pay before the first step changes it, then a positive cost
    metrics = training_metrics(output, "video_vae")
    anchor_losses = [metrics[step]["latent_anchor_loss"] for step in range(1, 7)]
    print(f"latent anchor loss per step: {anchor_losses}")
    assert anchor_losses[0] == 0.0 and all(loss > 0 for loss in anchor_losses[1:])
    assert metrics[1]["loss"] == pytest.approx(metrics[1]["reconstruction_loss"] + 1e-6 * metrics[1]["kl_loss"])
    later = metrics[6]["reconstruction_loss"] + 1e-6 * metrics[6]["kl_loss"] + 0.5 * anchor_losses[5]
    assert metrics[6]["loss"] == pytest.approx(later, rel=1e-5)

    # both options are part of the run: a resume with another anchor weight, or training the whole VAE, is refused
    run_config = read_run_config(str(output / "checkpoint-6"))["run_config"]
    assert run_config["train_encoder_only"] is True and run_config["latent_anchor_weight"] == 0.5
    checkpoint = ["--resume_from_checkpoint", str(output / "checkpoint-3"), "--output_dir", str(tmp_path / "refused")]
    with pytest.raises(ValueError, match=r"another configuration.*latent_anchor_weight"):
        main(_encoder_arguments(source_vae, 2.0) + checkpoint)
    whole = [argument for argument in _encoder_arguments(source_vae, 0.0) if argument != "--train_encoder_only"]
    with pytest.raises(ValueError, match=r"another configuration.*train_encoder_only"):
        main(whole + checkpoint)


def test_latent_anchor_keeps_the_latents_near_the_loaded_encoders(source_vae, tmp_path):
    from diffusers_videolatent.training.moving_shapes import MovingShapesDataset
    from diffusers_videolatent.training.train_video_vae import main

    main(_encoder_arguments(source_vae, 0.0) + ["--output_dir", str(tmp_path / "free")])
    main(_encoder_arguments(source_vae, 100.0) + ["--output_dir", str(tmp_path / "anchored")])
    # clips the runs did not train on, at the training size
    dataset = MovingShapesDataset(num_videos=4, num_frames=5, height=16, width=16, seed=123)
    clips = torch.stack([dataset[index]["pixel_values"] for index in range(4)])
    source = _normalised_means(source_vae, clips)
    drift = {
        name: F.mse_loss(_normalised_means(str(tmp_path / name), clips), source).item()
        for name in ("free", "anchored")
    }
    print(f"mean squared latent drift from the loaded encoder: {drift}")
    assert 0 < drift["anchored"] < 0.2 * drift["free"]
    reconstruction = {name: training_metrics(tmp_path / name, "video_vae") for name in ("free", "anchored")}
    assert all(np.isfinite(metrics[6]["reconstruction_loss"]) for metrics in reconstruction.values())


def test_latent_anchor_loss_is_the_mean_square_of_the_normalised_difference(source_vae):
    from diffusers_videolatent import AutoencoderKLVideo
    from diffusers_videolatent.training.train_video_vae import LatentAnchor

    vae = AutoencoderKLVideo.from_pretrained(source_vae)
    clips = torch.rand(2, 3, 5, 16, 16) * 2 - 1
    anchor = LatentAnchor(vae, torch.device("cpu"))
    with torch.no_grad():
        mean = vae.encode(clips).latent_dist.mean
    assert anchor.loss(clips, mean).item() == 0.0
    # in the units a diffusion model sees: the scaling factor 0.5 quarters the squared difference
    assert anchor.loss(clips, mean + 0.2).item() == pytest.approx(0.2**2 * 0.25, rel=1e-5)
    # the copy is frozen and left as it was when the trained VAE changes; it runs no decoder
    with torch.no_grad():
        for parameter in vae.encoder.parameters():
            parameter.add_(0.1)
    assert anchor.loss(clips, mean).item() == 0.0
    assert anchor.vae.decoder is None and not any(p.requires_grad for p in anchor.vae.parameters())

    # per-channel statistics: the difference divided by each channel's `latents_std`
    stds = [1.0, 2.0, 4.0, 0.5]
    per_channel = AutoencoderKLVideo.from_pretrained(
        source_vae, scaling_factor=1.0, latents_mean=[0.0] * 4, latents_std=stds
    )
    offset = torch.tensor([0.1, 0.2, 0.4, 0.05]).view(1, 4, 1, 1, 1)
    expected = float(np.mean([(0.1 / 1.0) ** 2, (0.2 / 2.0) ** 2, (0.4 / 4.0) ** 2, (0.05 / 0.5) ** 2]))
    assert LatentAnchor(per_channel, torch.device("cpu")).loss(clips, mean + offset).item() == pytest.approx(
        expected, rel=1e-5
    )


def test_encoder_only_and_latent_anchor_arguments_are_checked():
    from diffusers_videolatent.training import train_video_vae

    loaded = ["--output_dir", "o", "--pretrained_vae_name_or_path", "v"]
    for bad, message in (
        (["--train_encoder_only", "--train_decoder_only"], "Pass one of `--train_decoder_only` and `--train_encoder"),
        (["--train_encoder_only", "--num_frames", "1"], r"`--train_encoder_only` needs clips \(`--num_frames` > 1\)"),
        (["--train_encoder_only", "--buckets", "1x64x64,1x64x128"], r"`--train_encoder_only` needs clips"),
        (["--latent_anchor_weight", "-1"], "`--latent_anchor_weight` must be finite and >= 0, but is -1.0"),
        (["--latent_anchor_weight", "nan"], "`--latent_anchor_weight` must be finite and >= 0, but is nan"),
        (["--latent_anchor_weight", "1", "--train_decoder_only"], "`--train_decoder_only` freezes it"),
        (["--latent_anchor_weight", "1", "--fsdp"], "not supported with --fsdp"),
    ):
        with pytest.raises(ValueError, match=message):
            train_video_vae.parse_args(loaded + bad)
    with pytest.raises(ValueError, match="`--train_encoder_only` needs a trained decoder"):
        train_video_vae.parse_args(["--output_dir", "o", "--train_encoder_only"])
    with pytest.raises(ValueError, match="`--latent_anchor_weight` keeps the latents near a loaded VAE's"):
        train_video_vae.parse_args(
            ["--output_dir", "o", "--vae_config", json.dumps({}), "--latent_anchor_weight", "1"]
        )
    # first frames alone (1-frame buckets) beside clips are fine: a causal encoder draws frame 0 from it alone
    options = train_video_vae.parse_args(loaded + ["--train_encoder_only", "--buckets", "1x64x64,5x64x64"])
    assert options.bucket_list == [(1, 64, 64), (5, 64, 64)] and options.latent_anchor_weight == 0.0


def test_single_frame_clip_lengths_reach_the_dataset_and_the_run_configuration(source_vae, tmp_path, monkeypatch):
    from diffusers_videolatent.training import train_video_vae

    datasets = record_returns(monkeypatch, train_video_vae, "build_dataset")
    output_dir = str(tmp_path / "run")
    arguments = _encoder_arguments(source_vae, 0.1) + ["--output_dir", output_dir, "--train_fps", "4", "8"]
    arguments += ["--buckets", "1x16x16,5x16x16", "--single_frame_clip_lengths", "33", "61"]
    train_video_vae.main(arguments)
    dataset = datasets[0].dataset  # the `--max_train_samples` subset's
    assert dataset.single_frame_clip_lengths == (33, 61)
    stored = read_run_config(os.path.join(output_dir, "checkpoint-6"))["run_config"]
    assert stored["single_frame_clip_lengths"] == [33, 61]
    # a resume with other lengths is refused: its stills would come from other places
    other = [value if value != "61" else "17" for value in arguments] + ["--resume_from_checkpoint", "latest"]
    with pytest.raises(ValueError, match="single_frame_clip_lengths"):
        train_video_vae.main(other)


def test_single_frame_clip_lengths_arguments_are_checked():
    from diffusers_videolatent.training import train_video_vae

    base = ["--output_dir", "o", "--train_fps", "8", "--buckets", "1x64x64,17x64x64"]
    for bad, message in (
        (["--single_frame_clip_lengths", "0"], r"must be frame counts >= 1, but is \[0\]"),
        (["--buckets", "17x64x64", "--single_frame_clip_lengths", "33"], "the run has none"),
        (["--train_data_dir", "d", "--single_frame_clip_lengths", "33"], "without --train_data_dir"),
    ):
        with pytest.raises(ValueError, match=message):
            train_video_vae.parse_args(base + bad)
    with pytest.raises(ValueError, match="needs `--train_fps` or `--buckets`"):
        train_video_vae.parse_args(["--output_dir", "o", "--num_frames", "1", "--single_frame_clip_lengths", "33"])
