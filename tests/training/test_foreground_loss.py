"""`train_text_to_video --foreground_loss_weight`: moving shapes' foreground masks, pooled to the latent grid as the
VAE compresses, weight each latent cell's loss; cached and per-step runs agree, and a run resumes only with the same
weight. `--temporal_difference_loss_weight` adds the (so weighted) error of the change between latent frames."""

import numpy as np
import pytest
import torch

from diffusers_videolatent import AutoencoderKLVideo, VideoLatentPipeline
from diffusers_videolatent.cli import DEFAULT_MODEL
from diffusers_videolatent.models.video_latents import encode_video
from diffusers_videolatent.training import train_text_to_video
from diffusers_videolatent.training.moving_shapes import COLORS, MovingShapesDataset, render_physical_moving_shape

from ..testing_utils import (
    TRAINING_VAE_CONFIG,
    record_returns,
    text_to_video_losses,
    text_to_video_model_arguments,
)


def test_moving_shapes_foreground_is_the_object_coverage():
    dataset = MovingShapesDataset(num_videos=66, buckets=[(9, 32, 32), (5, 32, 64)], fps=[4, 8])
    for index in (0, 23, 55):  # red, blue and purple, whose brightest channel is below 1.0
        item = dataset[index]
        foreground = item["foreground"]
        assert foreground.shape == item["pixel_values"].shape[1:] and foreground.dtype == torch.float32
        assert 0.0 <= foreground.min() and foreground.max() == 1.0  # the object covers whole pixels inside it
        colour = torch.tensor(COLORS[item["color"]]).view(3, 1, 1, 1)
        torch.testing.assert_close((item["pixel_values"] + 1) / 2, colour * foreground, rtol=0, atol=1e-6)
        area = foreground.sum(dim=(1, 2))  # the object stays in the frame: the same area in every frame
        assert area.min() > 0 and (area.max() - area.min()) / area.mean() < 0.05


def test_latent_foreground_pools_as_the_vae_compresses():
    foreground = torch.zeros(1, 5, 4, 4)
    foreground[0, 0] = 1.0  # frame 0: a latent frame of its own
    foreground[0, 1, 0, 0] = 1.0  # frames 1-2 share latent frame 1: one pixel of a 2x2 cell, in one of two frames
    foreground[0, 4, 2:, 2:] = 1.0  # frames 3-4 share latent frame 2: a whole cell in one of two frames
    pooled = train_text_to_video.latent_foreground(foreground, temporal_ratio=2, spatial_ratio=2)
    expected = torch.zeros(1, 3, 2, 2)
    expected[0, 0] = 1.0
    expected[0, 1, 0, 0] = 0.125
    expected[0, 2, 1, 1] = 0.5
    torch.testing.assert_close(pooled, expected, rtol=0, atol=0)

    # the grid is the shipped VAE's latent grid, and the object's cells are where its latents differ from those of
    # the empty frame
    pipeline = VideoLatentPipeline.from_pretrained(DEFAULT_MODEL)
    item = MovingShapesDataset(num_videos=1, buckets=[(9, 64, 96)], fps=8)[0]
    with torch.no_grad():
        latents = pipeline.encode_video(item["pixel_values"][None])  # (1, C, F_lat, H_lat, W_lat)
        background = pipeline.encode_video(-torch.ones_like(item["pixel_values"])[None])
    pooled = train_text_to_video.latent_foreground(
        item["foreground"][None], pipeline.vae_scale_factor_temporal, pipeline.vae_scale_factor_spatial
    )
    assert pooled.shape == (1, *latents.shape[2:])
    changed = (latents - background).abs().amax(dim=1)  # (1, F_lat, H_lat, W_lat)
    assert changed[pooled > 0.5].min() > changed[pooled == 0].median()


def test_weighted_mse_weights_cells_and_keeps_the_scale():
    torch.manual_seed(0)
    prediction, target = torch.randn(2, 3, 2, 4, 4), torch.randn(2, 3, 2, 4, 4)
    unweighted = train_text_to_video.weighted_mse(prediction, target, None)
    torch.testing.assert_close(unweighted, ((prediction - target) ** 2).mean(dim=(1, 2, 3, 4)))
    # equal weights are no weighting, whatever their value
    torch.testing.assert_close(
        train_text_to_video.weighted_mse(prediction, target, torch.full((2, 1, 2, 4, 4), 3.0)), unweighted
    )
    # one cell of weight 5 among 31 of weight 1: its error counts 5 / 36, each other cell's 1 / 36 of the mean
    weights = torch.ones(2, 1, 2, 4, 4)
    weights[:, :, 1, 2, 3] = 5.0
    error = ((prediction - target) ** 2).mean(dim=1)  # (B, F, H, W), over channels
    expected = (error.sum(dim=(1, 2, 3)) + 4 * error[:, 1, 2, 3]) / 36
    torch.testing.assert_close(train_text_to_video.weighted_mse(prediction, target, weights), expected)


def test_foreground_loss_training_cached_equals_encoded_and_resumes_only_with_its_weight(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    AutoencoderKLVideo.from_config(TRAINING_VAE_CONFIG).save_pretrained(tmp_path / "vae")
    arguments = text_to_video_model_arguments(tmp_path / "vae") + ["--buckets", "5x16x16,5x16x32", "--train_fps", "8"]
    arguments += ["--num_train_videos", "8", "--train_batch_size", "2", "--max_train_steps", "3", "--seed", "3"]
    arguments += ["--learning_rate", "1e-3", "--no_validation", "--report_to", "jsonl", "--checkpointing_steps", "2"]
    weights_seen = []
    original = train_text_to_video.diffusion_loss

    def spy(*args, loss_weights=None, **kwargs):
        weights_seen.append(loss_weights)
        return original(*args, loss_weights=loss_weights, **kwargs)

    monkeypatch.setattr(train_text_to_video, "diffusion_loss", spy)
    weighted = arguments + ["--foreground_loss_weight", "4"]
    train_text_to_video.main(weighted + ["--output_dir", str(tmp_path / "encoded")])
    train_text_to_video.main(weighted + ["--output_dir", str(tmp_path / "cached"), "--cache_latents"])
    train_text_to_video.main(arguments + ["--output_dir", str(tmp_path / "unweighted"), "--cache_latents"])

    # every step of the weighted runs got weights from 1 (background) to 5 (cells the object covers), none after
    assert all(weights is not None for weights in weights_seen[:6]) and weights_seen[6:] == [None] * 3
    for weights in weights_seen[:6]:
        assert weights.shape[:3] == (2, 1, 3) and weights.min() == 1.0 and 1.0 < weights.max() <= 5.0
    for step in range(3):  # the cached masks are the per-step ones
        torch.testing.assert_close(weights_seen[3 + step], weights_seen[step], rtol=0, atol=1e-6)
    encoded, cached, unweighted = (
        text_to_video_losses(tmp_path / name) for name in ("encoded", "cached", "unweighted")
    )
    for step in (1, 2, 3):
        assert cached[step] == pytest.approx(encoded[step], rel=1e-4)
    # the same noise and batches: only the weighting differs at step 1
    assert abs(unweighted[1] - cached[1]) > 1e-4 * cached[1]

    # a checkpoint of a weighted run resumes with its weight, and refuses another
    resumed = ["--output_dir", str(tmp_path / "cached"), "--cache_latents", "--max_train_steps", "4"]
    resumed += ["--resume_from_checkpoint", "latest"]
    with pytest.raises(ValueError, match="foreground_loss_weight: checkpoint 4.0, now None"):
        train_text_to_video.main(arguments + resumed)
    train_text_to_video.main(weighted + resumed)
    assert sorted(text_to_video_losses(tmp_path / "cached")) == [1, 2, 3, 4]


def test_foreground_loss_weight_is_checked():
    base = ["--output_dir", "o", "--pretrained_vae_name_or_path", "v"]
    with pytest.raises(ValueError, match="--foreground_loss_weight"):
        train_text_to_video.parse_args(base + ["--foreground_loss_weight", "-1"])
    with pytest.raises(ValueError, match="--foreground_loss_weight.*video folder"):
        train_text_to_video.parse_args(base + ["--foreground_loss_weight", "2", "--train_data_dir", "videos"])
    assert train_text_to_video.parse_args(base).foreground_loss_weight == 0.0


def test_gate_loss_weights_keeps_them_only_at_low_sigma():
    weights = torch.ones(3, 1, 2, 4, 4)
    weights[:, :, 1, 2, 3] = 5.0
    sigmas = torch.tensor([0.1, 0.5, 0.9]).view(3, 1, 1, 1, 1)
    gated = train_text_to_video.gate_loss_weights(weights, sigmas, 0.5)
    torch.testing.assert_close(gated[:2], weights[:2], rtol=0, atol=0)  # sigma 0.1 and 0.5 (the limit) keep them
    torch.testing.assert_close(gated[2], torch.ones_like(weights[2]), rtol=0, atol=0)
    assert train_text_to_video.gate_loss_weights(weights, sigmas, None) is weights
    assert train_text_to_video.gate_loss_weights(None, sigmas, 0.5) is None


def test_foreground_loss_max_sigma_gates_the_training_weights_and_resumes_only_with_its_limit(tmp_path, monkeypatch):
    arguments = _weighted_arguments(tmp_path, "5x16x16", 8) + ["--output_dir", str(tmp_path / "run")]
    calls = _spy_on_loss_weights(monkeypatch)
    train_text_to_video.main(arguments + ["--foreground_loss_max_sigma", "0.6"])
    videos = torch.cat(calls)  # (8, 1, F, H, W): the weights each video's loss used
    gated = [bool((weights == 1).all()) for weights in videos]
    # the training sigmas (shift 1: uniform) fall above 0.6 for 40% of the videos: both kinds are here
    assert any(gated) and not all(gated)
    for weights in videos[[not video for video in gated]]:
        assert weights.min() == 1.0 and 1.0 < weights.max() <= 5.0

    _check_resumes_only_with(
        tmp_path / "run",
        arguments,
        arguments + ["--foreground_loss_max_sigma", "0.6"],
        "foreground_loss_max_sigma: 0.6",
    )


def test_foreground_loss_max_sigma_is_checked():
    base = ["--output_dir", "o", "--pretrained_vae_name_or_path", "v", "--objective", "flow_matching"]
    weighted = base + ["--foreground_loss_weight", "8"]
    for bad in ("0", "1.5", "-0.2"):
        with pytest.raises(ValueError, match="--foreground_loss_max_sigma"):
            train_text_to_video.parse_args(weighted + ["--foreground_loss_max_sigma", bad])
    with pytest.raises(ValueError, match="--foreground_loss_max_sigma.*--foreground_loss_weight > 0"):
        train_text_to_video.parse_args(base + ["--foreground_loss_max_sigma", "0.5"])
    with pytest.raises(ValueError, match="--foreground_loss_max_sigma.*flow_matching"):
        train_text_to_video.parse_args(weighted + ["--foreground_loss_max_sigma", "0.5", "--objective", "epsilon"])
    assert (
        train_text_to_video.parse_args(weighted + ["--foreground_loss_max_sigma", "1"]).foreground_loss_max_sigma == 1
    )


def test_dilate_foreground_grows_each_latent_frame_by_whole_cells():
    coverage = torch.zeros(2, 3, 5, 6)
    coverage[0, 1, 2, 2] = 0.5  # one half-covered cell in latent frame 1
    coverage[1, 0, 0, 5] = 1.0  # a corner cell: the growth stops at the frame's edge
    grown = train_text_to_video.dilate_foreground(coverage, 1)
    expected = torch.zeros(2, 3, 5, 6)
    expected[0, 1, 1:4, 1:4] = 0.5
    expected[1, 0, 0:2, 4:6] = 1.0
    torch.testing.assert_close(grown, expected, rtol=0, atol=0)  # the other latent frames stay empty
    assert train_text_to_video.dilate_foreground(coverage, 0) is coverage
    assert train_text_to_video.dilate_foreground(coverage, 2)[0, 1].count_nonzero() == 25


def test_foreground_loss_dilation_grows_the_training_weights_and_resumes_only_with_it(tmp_path, monkeypatch):
    arguments = _weighted_arguments(tmp_path, "5x32x32", 4)
    calls = _spy_on_loss_weights(monkeypatch)
    train_text_to_video.main(arguments + ["--output_dir", str(tmp_path / "plain")])
    dilated = arguments + ["--foreground_loss_dilation", "1", "--output_dir", str(tmp_path / "dilated")]
    train_text_to_video.main(dilated)
    plain, grown = calls[0], calls[2]  # step 1 of each run: the same videos
    # the grown weights are the plain ones' coverage grown by a cell, over more cells
    coverage = (plain - 1.0) / 4.0  # (B, 1, F, H, W), before each video's normalisation (weighted_mse normalises)
    expected = 1.0 + 4.0 * train_text_to_video.dilate_foreground(coverage[:, 0], 1).unsqueeze(1)
    torch.testing.assert_close(grown, expected, rtol=0, atol=1e-6)
    assert (grown > 1).sum() > (plain > 1).sum() > 0

    undilated = arguments + ["--output_dir", str(tmp_path / "dilated")]
    _check_resumes_only_with(tmp_path / "dilated", undilated, dilated, "foreground_loss_dilation: 1")


def test_foreground_loss_dilation_is_checked():
    base = ["--output_dir", "o", "--pretrained_vae_name_or_path", "v"]
    with pytest.raises(ValueError, match="--foreground_loss_dilation"):
        train_text_to_video.parse_args(base + ["--foreground_loss_weight", "8", "--foreground_loss_dilation", "-1"])
    with pytest.raises(ValueError, match="--foreground_loss_dilation.*--foreground_loss_weight > 0"):
        train_text_to_video.parse_args(base + ["--foreground_loss_dilation", "1"])
    assert train_text_to_video.parse_args(base).foreground_loss_dilation == 0


def test_predicted_foreground_is_where_the_latent_leaves_its_frame_median():
    latents = torch.randn(2, 4, 3, 1, 1).expand(2, 4, 3, 5, 6).clone()  # each frame one latent everywhere
    direction = torch.tensor([0.6, 0.0, 0.8, 0.0]).view(1, 4, 1)
    latents[:, :, 1, 2, 3] += 2 * direction[..., 0]  # frame 1: a cell 2 away from the background ...
    latents[:, :, 1, 0, 0] += direction[..., 0]  # ... and one 1 away
    found = train_text_to_video.predicted_foreground(latents)
    expected = torch.zeros(2, 3, 5, 6)
    expected[:, 1, 2, 3], expected[:, 1, 0, 0] = 1.0, 0.5
    torch.testing.assert_close(found, expected, rtol=0, atol=1e-5)  # frames without an object stay at 0

    # on the shipped VAE's latents of moving shapes it finds the cells the object covers, from the latents alone
    pipeline = VideoLatentPipeline.from_pretrained(DEFAULT_MODEL)
    dataset = MovingShapesDataset(num_videos=3, buckets=[(17, 64, 64), (17, 128, 128), (17, 64, 128)], fps=8, seed=3)
    for item in dataset:
        with torch.no_grad():
            latents = pipeline.encode_video(item["pixel_values"][None])
        covered = train_text_to_video.latent_foreground(
            item["foreground"][None], pipeline.vae_scale_factor_temporal, pipeline.vae_scale_factor_spatial
        )
        found = train_text_to_video.predicted_foreground(latents)
        assert torch.corrcoef(torch.stack([covered.flatten(), found.flatten()]))[0, 1] > 0.8
        assert found[covered > 0.5].mean() > 0.7 and found[covered == 0].mean() < 0.15


def _stub_diffusion_loss(
    arguments: list[str], num_videos: int, loss_weights: torch.Tensor | None, predicted=True, error=None
):
    """`diffusion_loss` with `arguments` (and, if `predicted`, `--foreground_loss_weight 4 --foreground_loss_from
    prediction`), of a stub U-Net on `num_videos` latents `(B, 4, 2, 5, 6)` with an object, flow matching at shift 3:
    the loss, and the noisy latents, sigmas, prediction and target of that step. The stub predicts a fixed function of
    the noisy latents, or, given `error`, the target plus `error`."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from diffusers_videolatent.training.training_utils import sample_generators

    if predicted:
        arguments = ["--foreground_loss_weight", "4", "--foreground_loss_from", "prediction"] + arguments
    args = train_text_to_video.parse_args(["--output_dir", "o", "--pretrained_vae_name_or_path", "v"] + arguments)
    torch.manual_seed(0)
    latents = torch.randn(num_videos, 4, 2, 5, 6)
    latents[:, :, :, 1:3, 2:4] += 3.0  # an object
    seen = []

    def unet(noisy_latents, timesteps, encoder_hidden_states, return_dict=False):
        seen.append((noisy_latents, timesteps))
        if error is None:
            return (torch.tanh(noisy_latents) * 0.7,)  # any prediction of the velocity
        sigmas = (timesteps / 1000).view(-1, 1, 1, 1, 1)
        return ((noisy_latents - latents) / sigmas + error,)  # the target, noise - x_0, off by `error`

    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    generators = sample_generators(0, 0, range(num_videos))
    loss = train_text_to_video.diffusion_loss(
        args, scheduler, unet, latents, None, None, generators, loss_weights=loss_weights
    )
    noisy, timesteps = seen[0]
    sigmas = (timesteps / 1000).view(num_videos, 1, 1, 1, 1)
    target = (noisy - latents) / sigmas  # noise - x_0, from x_t = (1 - sigma) x_0 + sigma * noise
    return loss, noisy, sigmas, unet(noisy, timesteps, None)[0], target


def test_diffusion_loss_weights_from_the_prediction_are_a_function_of_the_noisy_latent():
    loss, noisy, sigmas, prediction, target = _stub_diffusion_loss(
        ["--foreground_loss_dilation", "1"], 3, torch.ones(3)
    )
    # the weights: the object read from x_t - sigma * v of the U-Net's own prediction, grown by one cell; the clean
    # latents (and any weights passed in) play no part
    found = train_text_to_video.predicted_foreground(noisy - sigmas * prediction)
    weights = 1.0 + 4.0 * train_text_to_video.dilate_foreground(found, 1).unsqueeze(1)
    expected = train_text_to_video.weighted_mse(prediction, target, weights).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(loss, torch.nn.functional.mse_loss(prediction, target))


def test_foreground_loss_from_prediction_trains_without_masks_and_resumes_only_with_it(tmp_path, monkeypatch):
    arguments = _weighted_arguments(tmp_path, "5x16x16", 8) + ["--output_dir", str(tmp_path / "run")]
    calls = _spy_on_loss_weights(monkeypatch)
    cached = record_returns(monkeypatch, train_text_to_video, "cache_latents")
    predicted = arguments + ["--foreground_loss_from", "prediction"]
    train_text_to_video.main(predicted)
    assert cached[0].latent_foreground is None  # the masks are not kept: the weights do not read them
    for weights in calls:  # (B, 1, F, H, W) from 1 (the frame's median) to 5 (the farthest cell of each frame)
        assert weights.min() >= 1.0 and torch.allclose(weights.flatten(3).amax(dim=3), torch.tensor(5.0))

    _check_resumes_only_with(tmp_path / "run", arguments, predicted, "foreground_loss_from: 'prediction'")


def test_foreground_loss_from_is_checked():
    base = ["--output_dir", "o", "--pretrained_vae_name_or_path", "v"]
    predicted = base + ["--foreground_loss_from", "prediction"]
    with pytest.raises(ValueError, match="--foreground_loss_from prediction.*--foreground_loss_weight > 0"):
        train_text_to_video.parse_args(predicted)
    with pytest.raises(ValueError, match="--foreground_loss_from prediction.*flow_matching"):
        train_text_to_video.parse_args(predicted + ["--foreground_loss_weight", "8", "--objective", "epsilon"])
    with pytest.raises(SystemExit):
        train_text_to_video.parse_args(base + ["--foreground_loss_weight", "8", "--foreground_loss_from", "mask"])
    assert train_text_to_video.parse_args(base).foreground_loss_from == "clean"
    # it needs no masks, so a video folder may use it
    folder = predicted + ["--foreground_loss_weight", "8", "--train_data_dir", "videos"]
    assert train_text_to_video.parse_args(folder).foreground_loss_from == "prediction"


def test_diffusion_loss_keeps_the_clean_weights_above_the_sigma_and_reads_the_prediction_below():
    # any weights passed in, as the masks give them
    clean_weights = 1.0 + 4.0 * torch.rand(8, 1, 2, 5, 6, generator=torch.Generator().manual_seed(1))
    loss, noisy, sigmas, prediction, target = _stub_diffusion_loss(
        ["--foreground_loss_clean_above_sigma", "0.7"], 8, clean_weights
    )
    above = sigmas.flatten() > 0.7
    assert 0 < above.sum() < 8  # both kinds in the batch
    predicted = 1.0 + 4.0 * train_text_to_video.predicted_foreground(noisy - sigmas * prediction).unsqueeze(1)
    weights = torch.where(above.view(8, 1, 1, 1, 1), clean_weights, predicted)
    expected = train_text_to_video.weighted_mse(prediction, target, weights).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    for other in (clean_weights, predicted):  # neither source alone
        assert not torch.allclose(loss, train_text_to_video.weighted_mse(prediction, target, other).mean())


def test_foreground_loss_clean_above_sigma_keeps_the_masks_and_resumes_only_with_it(tmp_path, monkeypatch):
    arguments = _weighted_arguments(tmp_path, "5x16x16", 8) + ["--output_dir", str(tmp_path / "run")]
    arguments += ["--foreground_loss_from", "prediction"]
    cached = record_returns(monkeypatch, train_text_to_video, "cache_latents")
    split = arguments + ["--foreground_loss_clean_above_sigma", "0.7"]
    train_text_to_video.main(split)
    assert cached[0].latent_foreground is not None  # the masks, for the clips noised above the sigma

    _check_resumes_only_with(tmp_path / "run", arguments, split, "foreground_loss_clean_above_sigma: 0.7")


def test_foreground_loss_clean_above_sigma_is_checked():
    base = ["--output_dir", "o", "--pretrained_vae_name_or_path", "v", "--foreground_loss_weight", "8"]
    predicted = base + ["--foreground_loss_from", "prediction"]
    for bad in ("0", "1", "-0.5"):
        with pytest.raises(ValueError, match="--foreground_loss_clean_above_sigma. must be in"):
            train_text_to_video.parse_args(predicted + ["--foreground_loss_clean_above_sigma", bad])
    with pytest.raises(ValueError, match="--foreground_loss_clean_above_sigma.*--foreground_loss_from prediction"):
        train_text_to_video.parse_args(base + ["--foreground_loss_clean_above_sigma", "0.7"])
    with pytest.raises(ValueError, match="--foreground_loss_clean_above_sigma.*--train_data_dir"):
        train_text_to_video.parse_args(
            predicted + ["--foreground_loss_clean_above_sigma", "0.7", "--train_data_dir", "videos"]
        )
    args = train_text_to_video.parse_args(predicted + ["--foreground_loss_clean_above_sigma", "0.7"])
    assert args.foreground_loss_clean_above_sigma == 0.7
    assert train_text_to_video.parse_args(predicted).foreground_loss_clean_above_sigma is None


def test_diffusion_loss_adds_the_error_of_the_change_between_latent_frames():
    # without weights: the plain error plus twice that of the change from each latent frame to the next
    loss, _, _, prediction, target = _stub_diffusion_loss(["--temporal_difference_loss_weight", "2"], 3, None, False)
    plain = torch.nn.functional.mse_loss(prediction, target)
    change = torch.nn.functional.mse_loss(prediction.diff(dim=2), target.diff(dim=2))
    torch.testing.assert_close(loss, plain + 2 * change, rtol=1e-5, atol=1e-6)
    assert change > 0.1 * plain

    # with the object's weights: a pair of frames weighs a cell as the larger of its two weights
    clean_weights = 1.0 + 4.0 * torch.rand(8, 1, 2, 5, 6, generator=torch.Generator().manual_seed(1))
    differences = ["--foreground_loss_clean_above_sigma", "0.7", "--temporal_difference_loss_weight", "0.5"]
    loss, noisy, sigmas, prediction, target = _stub_diffusion_loss(differences, 8, clean_weights)
    predicted = 1.0 + 4.0 * train_text_to_video.predicted_foreground(noisy - sigmas * prediction).unsqueeze(1)
    weights = torch.where(sigmas > 0.7, clean_weights, predicted)
    pairs = torch.maximum(weights[:, :, 1:], weights[:, :, :-1])
    expected = train_text_to_video.weighted_mse(prediction, target, weights)
    expected = expected + 0.5 * train_text_to_video.weighted_mse(prediction.diff(dim=2), target.diff(dim=2), pairs)
    torch.testing.assert_close(loss, expected.mean(), rtol=1e-5, atol=1e-6)


def test_temporal_difference_loss_leaves_an_error_alike_in_every_frame_as_it_was():
    generator = torch.Generator().manual_seed(2)
    offset = torch.randn(2, 4, 1, 5, 6, generator=generator)  # the same error in both latent frames
    changing = torch.randn(2, 4, 2, 5, 6, generator=generator)  # an error that changes from frame to frame
    losses = {}
    for weight in ("0", "3"):
        for name, error in (("alike", offset), ("changing", changing)):
            arguments = ["--temporal_difference_loss_weight", weight]
            losses[weight, name] = _stub_diffusion_loss(arguments, 2, None, predicted=False, error=error)[0]
    torch.testing.assert_close(losses["3", "alike"], losses["0", "alike"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(losses["0", "alike"], offset.pow(2).mean(), rtol=1e-5, atol=1e-6)
    changes = changing.diff(dim=2).pow(2).mean()
    torch.testing.assert_close(losses["3", "changing"], losses["0", "changing"] + 3 * changes, rtol=1e-5, atol=1e-6)


def test_temporal_difference_loss_trains_and_resumes_only_with_its_weight(tmp_path, monkeypatch):
    arguments = _weighted_arguments(tmp_path, "5x16x16", 8) + ["--output_dir", str(tmp_path / "run")]
    calls = _spy_on_loss_weights(monkeypatch)
    differences = arguments + ["--temporal_difference_loss_weight", "1"]
    train_text_to_video.main(differences)
    # each step: the cells' weights (B, 1, 3, H, W), then the pairs' (B, 1, 2, H, W), the larger of each two frames
    assert len(calls) == 4 and [tuple(weights.shape[1:3]) for weights in calls] == [(1, 3), (1, 2)] * 2
    torch.testing.assert_close(calls[1], torch.maximum(calls[0][:, :, 1:], calls[0][:, :, :-1]), rtol=0, atol=0)

    _check_resumes_only_with(tmp_path / "run", arguments, differences, "temporal_difference_loss_weight: 1.0")


def test_temporal_difference_loss_weight_is_checked():
    base = ["--output_dir", "o", "--pretrained_vae_name_or_path", "v"]
    for bad in ("-1", "nan", "inf"):
        with pytest.raises(ValueError, match="--temporal_difference_loss_weight. must be finite and >= 0"):
            train_text_to_video.parse_args(base + ["--temporal_difference_loss_weight", bad])
    assert train_text_to_video.parse_args(base).temporal_difference_loss_weight == 0.0
    folder = base + ["--temporal_difference_loss_weight", "1", "--train_data_dir", "videos"]  # needs no masks
    assert train_text_to_video.parse_args(folder).temporal_difference_loss_weight == 1.0


def test_object_contrast_is_the_objects_latent_signal_and_the_shipped_vae_gives_green_little():
    # a constant background and an object of amplitude a: the contrast grows with a, the scale falls as its square
    latents = torch.zeros(3, 4, 2, 5, 6)
    latents[:, :, :, 1:3, 2:4] = torch.tensor([0.25, 1.0, 4.0]).view(3, 1, 1, 1, 1)
    contrast = train_text_to_video.object_contrast(latents)
    torch.testing.assert_close(contrast / contrast[1], torch.tensor([0.25, 1.0, 4.0]))
    base = ["--output_dir", "o", "--pretrained_vae_name_or_path", "v", "--foreground_loss_weight", "4"]
    args = train_text_to_video.parse_args(base + ["--foreground_loss_contrast_reference", str(float(contrast[1]))])
    # (reference / contrast)^2 = 16, 1, 1/16, within [1, 8]
    torch.testing.assert_close(train_text_to_video.contrast_scales(args, latents), torch.tensor([8.0, 1.0, 1.0]))

    # the shipped VAE: a green object's latent signal is a small part of a white one's
    vae = AutoencoderKLVideo.from_pretrained(DEFAULT_MODEL, subfolder="vae")
    contrasts = {}
    for color in ("green", "blue", "red", "white"):
        videos = [
            render_physical_moving_shape(color, "circle", "right", 9, 64, 64, 8, np.random.default_rng(seed))
            for seed in (5, 6)
        ]  # (F, H, W, 3) in [0, 1]
        video = torch.from_numpy(np.stack(videos)).permute(0, 4, 1, 2, 3).float() * 2 - 1
        with torch.no_grad():
            contrasts[color] = train_text_to_video.object_contrast(encode_video(vae, video, False))
    assert (contrasts["green"] < 0.4 * contrasts["red"]).all() and (contrasts["red"] < 0.6 * contrasts["white"]).all()
    assert (contrasts["blue"] < contrasts["red"]).all() and (contrasts["green"] < contrasts["blue"]).all()


def test_diffusion_loss_scales_the_objects_weight_by_its_contrast():
    clean_weights = 1.0 + 4.0 * torch.rand(3, 1, 2, 5, 6, generator=torch.Generator().manual_seed(1))
    arguments = ["--foreground_loss_weight", "4", "--temporal_difference_loss_weight", "0.5"]
    plain, _, _, prediction, target = _stub_diffusion_loss(arguments, 3, clean_weights, predicted=False)
    contrast = ["--foreground_loss_contrast_reference", "100", "--foreground_loss_contrast_max_scale", "3"]
    scaled, _, _, prediction, target = _stub_diffusion_loss(arguments + contrast, 3, clean_weights, predicted=False)
    # every video's object far under the reference: its weight's object part three times, the divisor unscaled
    weights = 1.0 + (clean_weights - 1.0) * 3.0
    pairs = torch.maximum(weights[:, :, 1:], weights[:, :, :-1])
    clean_pairs = torch.maximum(clean_weights[:, :, 1:], clean_weights[:, :, :-1])
    expected = train_text_to_video.weighted_mse(prediction, target, weights, clean_weights)
    change = train_text_to_video.weighted_mse(prediction.diff(dim=2), target.diff(dim=2), pairs, clean_pairs)
    torch.testing.assert_close(scaled, (expected + 0.5 * change).mean(), rtol=1e-5, atol=1e-6)
    assert scaled > 1.5 * plain
    # a reference under every contrast: scale 1, the loss as it was
    low = ["--foreground_loss_contrast_reference", "1e-6"]
    torch.testing.assert_close(
        _stub_diffusion_loss(arguments + low, 3, clean_weights, predicted=False)[0], plain, rtol=1e-6, atol=1e-7
    )


def test_foreground_loss_contrast_reference_trains_and_resumes_only_with_it(tmp_path, monkeypatch):
    arguments = _weighted_arguments(tmp_path, "5x16x16", 8) + ["--output_dir", str(tmp_path / "run")]
    calls = _spy_on_loss_weights(monkeypatch)
    train_text_to_video.main(arguments + ["--output_dir", str(tmp_path / "plain")])
    plain = list(calls)
    calls.clear()
    contrast = arguments + ["--foreground_loss_contrast_reference", "50", "--foreground_loss_contrast_max_scale", "2"]
    train_text_to_video.main(contrast)
    # the same batches, each video's object part of its weights doubled
    assert len(calls) == len(plain) == 2
    for weights, unscaled in zip(calls, plain):
        torch.testing.assert_close(weights, 1.0 + 2.0 * (unscaled - 1.0))

    _check_resumes_only_with(tmp_path / "run", arguments, contrast, "foreground_loss_contrast_reference: 50.0")


def test_foreground_loss_contrast_reference_is_checked():
    base = ["--output_dir", "o", "--pretrained_vae_name_or_path", "v"]
    weighted = base + ["--foreground_loss_weight", "8"]
    for bad in ("0", "-1", "nan", "inf"):
        with pytest.raises(ValueError, match="--foreground_loss_contrast_reference. must be finite and > 0"):
            train_text_to_video.parse_args(weighted + ["--foreground_loss_contrast_reference", bad])
    with pytest.raises(ValueError, match="--foreground_loss_contrast_reference.*--foreground_loss_weight > 0"):
        train_text_to_video.parse_args(base + ["--foreground_loss_contrast_reference", "1"])
    for bad in ("0.5", "nan", "inf"):
        with pytest.raises(ValueError, match="--foreground_loss_contrast_max_scale. must be finite and >= 1"):
            train_text_to_video.parse_args(weighted + ["--foreground_loss_contrast_max_scale", bad])
    args = train_text_to_video.parse_args(weighted + ["--foreground_loss_contrast_reference", "1"])
    assert (args.foreground_loss_contrast_reference, args.foreground_loss_contrast_max_scale) == (1.0, 8.0)
    assert train_text_to_video.parse_args(base).foreground_loss_contrast_reference is None


def _weighted_arguments(tmp_path, bucket: str, num_videos: int) -> list[str]:
    """Two steps of a cached run with the loss on the object (weight 4), batches of 4 videos of one `bucket`."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    AutoencoderKLVideo.from_config(TRAINING_VAE_CONFIG).save_pretrained(tmp_path / "vae")
    arguments = text_to_video_model_arguments(tmp_path / "vae") + ["--buckets", bucket, "--train_fps", "8"]
    arguments += ["--num_train_videos", str(num_videos), "--train_batch_size", "4", "--max_train_steps", "2"]
    arguments += ["--seed", "3", "--learning_rate", "1e-3", "--no_validation", "--report_to", "jsonl"]
    return arguments + ["--checkpointing_steps", "2", "--cache_latents", "--foreground_loss_weight", "4"]


def _spy_on_loss_weights(monkeypatch) -> list[torch.Tensor]:
    """The `loss_weights` of every `weighted_mse` call of the training from now on, in order."""
    calls = []
    original = train_text_to_video.weighted_mse

    def spy(prediction, target, loss_weights, normalizing_weights=None):
        calls.append(loss_weights)
        return original(prediction, target, loss_weights, normalizing_weights)

    monkeypatch.setattr(train_text_to_video, "weighted_mse", spy)
    return calls


def _check_resumes_only_with(run_dir, without: list[str], trained: list[str], setting: str) -> None:
    """The two-step run in `run_dir`, trained with the arguments `trained`, refuses to resume with `without`, whose
    error names the checkpoint's `setting` ("name: value") and None now, and resumes with `trained` to step 3."""
    name, value = setting.split(": ")
    resumed = ["--max_train_steps", "3", "--resume_from_checkpoint", "latest"]
    with pytest.raises(ValueError, match=f"{name}: checkpoint {value}, now None"):
        train_text_to_video.main(without + resumed)
    train_text_to_video.main(trained + resumed)
    assert sorted(text_to_video_losses(run_dir)) == [1, 2, 3]
