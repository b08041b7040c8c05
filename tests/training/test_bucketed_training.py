"""`train_text_to_video --buckets --train_fps --use_fps_conditioning`: every batch from one bucket, the clips' frame
rates given to the U-Net, exact resume in the middle of an epoch, cached latents per bucket, and fps conditioning
added to a trained U-Net leaving its predictions unchanged."""

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffusers_videolatent import AutoencoderKLVideo, UNetSpatioTemporalModel, VideoLatentPipeline
from diffusers_videolatent.training import train_text_to_video
from diffusers_videolatent.training.moving_shapes import MovingShapesDataset

from ..testing_utils import (
    TRAINING_ARGUMENTS,
    TRAINING_UNET_CONFIG,
    TRAINING_VAE_CONFIG,
    read_frame_indices,
    text_to_video_losses,
    text_to_video_model_arguments,
    write_index_video,
)


BUCKETS = "5x16x16,9x16x16,5x16x32:0.5"


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bucket_vae") / "vae"
    torch.manual_seed(0)
    AutoencoderKLVideo.from_config(TRAINING_VAE_CONFIG).save_pretrained(folder)
    return folder


@pytest.fixture
def seen(monkeypatch) -> list[tuple[tuple[int, ...], list[float]]]:
    """The latents' shape and the frame rates of every training batch of the runs in the test."""
    seen = []
    original = train_text_to_video.diffusion_loss

    def spy(args, scheduler, unet, latents, encoder_hidden_states, fps, generators, *conditioning, **weights):
        seen.append((tuple(latents.shape), fps.tolist()))
        return original(
            args, scheduler, unet, latents, encoder_hidden_states, fps, generators, *conditioning, **weights
        )

    monkeypatch.setattr(train_text_to_video, "diffusion_loss", spy)
    return seen


def _arguments(vae_folder, *extra) -> list[str]:
    arguments = text_to_video_model_arguments(vae_folder) + ["--buckets", BUCKETS, "--train_fps", "4", "8", "16"]
    arguments += ["--use_fps_conditioning", "--num_train_videos", "66", "--train_batch_size", "2", "--seed", "3"]
    arguments += ["--learning_rate", "1e-3", "--no_validation", "--report_to", "jsonl", *extra]
    return arguments


@pytest.mark.parametrize("cache", [False, True])
def test_bucketed_training_resumes_exactly(vae_folder, tmp_path, cache):
    torch.set_num_threads(1)
    # 66 videos in batches of 2: 33 steps per epoch, so the checkpoint at step 4 is in the middle of the first one
    arguments = _arguments(vae_folder, "--max_train_steps", "7", "--checkpointing_steps", "4")
    arguments += ["--cache_latents"] if cache else []
    train_text_to_video.main(arguments + ["--output_dir", str(tmp_path / "full")])
    checkpoint = str(tmp_path / "full" / "checkpoint-4")
    train_text_to_video.main(
        arguments + ["--output_dir", str(tmp_path / "resumed"), "--resume_from_checkpoint", checkpoint]
    )
    full, resumed = text_to_video_losses(tmp_path / "full"), text_to_video_losses(tmp_path / "resumed")
    assert sorted(full) == list(range(1, 8)) and sorted(resumed) == [5, 6, 7]
    for step in (5, 6, 7):
        assert resumed[step] == full[step], step  # bit-identical on one thread
    pipeline = VideoLatentPipeline.from_pretrained(tmp_path / "full")
    assert pipeline.unet.config.use_fps_conditioning


def test_batches_hold_one_bucket_and_their_frame_rates(vae_folder, tmp_path, seen):
    arguments = _arguments(vae_folder, "--max_train_steps", "12", "--checkpointing_steps", "100", "--cache_latents")
    train_text_to_video.main(arguments + ["--output_dir", str(tmp_path / "run")])
    assert len(seen) == 12
    shapes = {shape for shape, _ in seen}
    # (B, C, F_lat, H_lat, W_lat) of each bucket: temporal ratio 2, spatial ratio 2
    assert shapes <= {(2, 4, 3, 8, 8), (2, 4, 5, 8, 8), (2, 4, 3, 8, 16)} and len(shapes) >= 2
    assert {rate for _, rates in seen for rate in rates} <= {4.0, 8.0, 16.0}
    assert len({rate for _, rates in seen for rate in rates}) >= 2
    # each step's log names its batch's bucket (the pixel sizes of the latents seen) and its seconds
    with open(tmp_path / "run" / "logs" / "text_to_video" / "metrics.jsonl") as file:
        records = [json.loads(line) for line in file]
    pixel_buckets = {(3, 8, 8): "5x16x16", (5, 8, 8): "9x16x16", (3, 8, 16): "5x16x32"}
    assert [record["bucket"] for record in records] == [pixel_buckets[shape[2:]] for shape, _ in seen]
    assert all(0 < record["step_seconds"] < 60 for record in records)
    # benchmarks/bucket_step_seconds.py reads them: one row per bucket seen, with its steps
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bucket_step_seconds.py"
    log = tmp_path / "run" / "logs" / "text_to_video" / "metrics.jsonl"
    result = subprocess.run([sys.executable, str(script), str(log)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"^\| (\d+x\d+x\d+) \| (\d+) \| [\d.]+ \(", result.stdout, re.M)
    left_out = int(re.search(r"(\d+) slower than 5x", result.stdout).group(1))
    counts = {bucket: [record["bucket"] for record in records].count(bucket) for bucket in pixel_buckets.values()}
    assert {bucket for bucket, _ in rows} == {bucket for bucket, count in counts.items() if count}
    assert sum(int(steps) for _, steps in rows) + left_out == 12
    # the cached latents are those of the dataset's items at their buckets
    dataset = MovingShapesDataset(num_videos=66, buckets=[(5, 16, 16), (9, 16, 16), (5, 16, 32)], fps=[4, 8, 16])
    pipeline = VideoLatentPipeline.from_pretrained(tmp_path / "run")
    cache = train_text_to_video.cache_latents(pipeline, dataset, 4, "cpu", torch.float32)
    assert cache.item_buckets == dataset.item_buckets
    for index in (0, 1, 65):
        expected = pipeline.encode_video(dataset[index]["pixel_values"][None])[0]
        torch.testing.assert_close(cache[index]["latents"], expected, rtol=1e-5, atol=1e-6)
        assert cache[index]["fps"] == dataset[index]["fps"]
    # one bucket: the latents stack, and the items keep their bucket for the bucket sampler
    one_bucket = MovingShapesDataset(num_videos=6, buckets=[(5, 16, 32)], fps=8)
    cache = train_text_to_video.cache_latents(pipeline, one_bucket, 4, "cpu", torch.float32)
    assert isinstance(cache.latents, torch.Tensor) and cache.latents.shape[0] == 6
    assert cache.item_buckets == [(5, 16, 32)] * 6


def test_bucketed_training_on_a_folder_of_real_videos(vae_folder, tmp_path, seen):
    # encoded videos of two aspect ratios and two frame rates, resampled to one training rate
    root = tmp_path / "videos"
    root.mkdir()
    rows = ["file_name,text"]
    for name, frames, height, width, fps in (
        ("square24.mp4", 24, 32, 32, 24),
        ("square30.mp4", 30, 32, 32, 30),
        ("wide24.mp4", 24, 32, 64, 24),
        ("wide30.mp4", 30, 32, 64, 30),
    ):
        write_index_video(root / name, frames, height, width, fps)
        rows.append(f"{name},a red square moving right")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    arguments = text_to_video_model_arguments(vae_folder) + ["--train_data_dir", str(root), "--train_fps", "8"]
    arguments += ["--buckets", "5x16x16,5x16x32", "--use_fps_conditioning", "--train_batch_size", "2"]
    arguments += ["--max_train_steps", "4", "--checkpointing_steps", "100", "--no_validation", "--seed", "0"]
    train_text_to_video.main(arguments + ["--output_dir", str(tmp_path / "run")])
    # each batch holds the two videos of one aspect ratio, 5 frames at 8 fps
    assert {shape for shape, _ in seen} == {(2, 4, 3, 8, 8), (2, 4, 3, 8, 16)}
    assert all(rates == [8.0, 8.0] for _, rates in seen)
    dataset = train_text_to_video.build_dataset(
        train_text_to_video.parse_args(arguments + ["--output_dir", "unused"]),
        buckets=[(5, 16, 16), (5, 16, 32)],
        fps=8,
    )
    assert dataset.item_buckets == [(5, 16, 16), (5, 16, 16), (5, 16, 32), (5, 16, 32)]
    # the same half second from both rates: every third frame at 24 fps, frames 0, 3.75, 7.5, ... at 30 fps
    first_frames = [read_frame_indices(dataset[index]["pixel_values"])[0] for index in range(4)]
    steps = [read_frame_indices(dataset[index]["pixel_values"])[1] - first_frames[index] for index in range(4)]
    assert steps[0] == 3 and steps[2] == 3 and steps[1] in (3, 4) and steps[3] in (3, 4)


def _trained_unet() -> UNetSpatioTemporalModel:
    """A small U-Net standing for a trained one: every weight moved off its initialisation (no zero layers left)."""
    torch.manual_seed(0)
    config = {**TRAINING_UNET_CONFIG, "in_channels": 4, "out_channels": 4, "cross_attention_dim": 16}
    unet = UNetSpatioTemporalModel.from_config(config).eval()
    with torch.no_grad():
        for parameter in unet.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    return unet


def test_added_fps_conditioning_starts_as_the_old_model():
    unet = _trained_unet()
    with_fps = train_text_to_video.add_fps_conditioning(unet).eval()
    assert with_fps.config.use_fps_conditioning and with_fps.fps_embedding is not None
    sample = torch.randn(2, 4, 3, 8, 8)
    timestep = torch.tensor([10.0, 500.0])
    text = torch.randn(2, 6, 16)
    with torch.no_grad():
        before = unet(sample, timestep, text).sample
        for fps in (4.0, torch.tensor([8.0, 24.0])):
            torch.testing.assert_close(with_fps(sample, timestep, text, fps=fps).sample, before, rtol=0, atol=0)
    # the embedding is live: once trained away from zero, the frame rate changes the prediction
    with torch.no_grad():
        with_fps.fps_embedding.linear_2.weight.normal_()
        changed = with_fps(sample, timestep, text, fps=4.0).sample
        assert not torch.allclose(changed, with_fps(sample, timestep, text, fps=16.0).sample)
    with pytest.raises(ValueError, match="already has fps conditioning"):
        train_text_to_video.add_fps_conditioning(with_fps)


@pytest.mark.parametrize(
    "options",
    [
        {"temporal_conv_per_block": True},
        {"mid_temporal_conv": True},
        {"temporal_conv_per_block": True, "mid_temporal_conv": True},
    ],
)
def test_added_temporal_convolutions_start_as_the_old_model(options):
    unet = _trained_unet()
    grown = train_text_to_video.add_temporal_convolutions(unet, **options).eval()
    new_names = {name for name, _ in grown.named_parameters()} - {name for name, _ in unet.named_parameters()}
    assert new_names and all(".temporal_convs." in name for name in new_names)
    in_mid = {name.startswith("mid_block.") for name in new_names}
    assert (True in in_mid, False in in_mid) == ("mid_temporal_conv" in options, "temporal_conv_per_block" in options)
    for key, value in options.items():
        assert grown.config[key] == value
    sample, timestep, text = torch.randn(2, 4, 3, 8, 8), torch.tensor([10.0, 500.0]), torch.randn(2, 6, 16)
    with torch.no_grad():
        before = unet(sample, timestep, text).sample
        torch.testing.assert_close(grown(sample, timestep, text).sample, before, rtol=0, atol=0)
        # live once trained: a last convolution moved off zero mixes neighbouring frames
        convs = [module for name, module in grown.named_modules() if name.endswith("temporal_convs.0")]
        convs[0].conv4[-1].weight.normal_()
        changed = grown(sample, timestep, text).sample
    assert not torch.allclose(changed, before)
    # a model saved and loaded with them is the grown one
    assert UNetSpatioTemporalModel.from_config(grown.config).state_dict().keys() == grown.state_dict().keys()
    if "mid_temporal_conv" in options:
        with pytest.raises(ValueError, match="already has temporal convolutions"):
            train_text_to_video.add_temporal_convolutions(grown, mid_temporal_conv=True)


def test_training_grows_a_saved_model_temporal_convolutions_and_resumes_exactly(lora_base_folder, tmp_path):
    torch.set_num_threads(1)
    arguments = TRAINING_ARGUMENTS + ["--pretrained_model_name_or_path", str(lora_base_folder), "--no_validation"]
    arguments += ["--learning_rate", "1e-3", "--max_train_steps", "3"]
    arguments += ["--checkpointing_steps", "2", "--temporal_conv_per_block", "--mid_temporal_conv"]
    train_text_to_video.main(arguments + ["--output_dir", str(tmp_path / "full")])
    checkpoint = str(tmp_path / "full" / "checkpoint-2")
    train_text_to_video.main(
        arguments + ["--output_dir", str(tmp_path / "resumed"), "--resume_from_checkpoint", checkpoint]
    )
    full, resumed = text_to_video_losses(tmp_path / "full"), text_to_video_losses(tmp_path / "resumed")
    assert resumed[3] == full[3]  # bit-identical on one thread
    unet = VideoLatentPipeline.from_pretrained(tmp_path / "full").unet
    assert unet.config.temporal_conv_per_block is True and unet.config.mid_temporal_conv is True
    # the zero-initialised last convolutions trained, and nothing but the temporal convolutions is new
    base = VideoLatentPipeline.from_pretrained(lora_base_folder).unet
    new = {name: value for name, value in unet.state_dict().items() if name not in base.state_dict()}
    last_weights = [value for name, value in new.items() if ".conv4." in name and value.dim() == 4]
    assert new and all(".temporal_convs." in name for name in new)
    assert last_weights and all(weight.abs().max() > 0 for weight in last_weights)


def test_bucket_options_are_checked():
    base = ["--output_dir", "o", "--pretrained_vae_name_or_path", "v"]
    with pytest.raises(ValueError, match="--buckets"):
        train_text_to_video.parse_args(base + ["--buckets", "17x64"])
    with pytest.raises(ValueError, match="--train_fps"):
        train_text_to_video.parse_args(base + ["--train_fps", "8", "0"])
    args = train_text_to_video.parse_args(base + ["--buckets", "17x64x64:1,33x64x64:1"])
    assert args.bucket_list == [(17, 64, 64), (33, 64, 64)] and args.bucket_weights == [0.5, 0.5]
    assert isinstance(args, argparse.Namespace)
