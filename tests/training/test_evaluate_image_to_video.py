"""The image-to-video evaluation and the evaluation benchmark, run on a tiny pipeline."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusers_videolatent.training.evaluate import (
    IMAGE_TO_VIDEO_DATASET_SEED,
    evaluate_image_to_video,
    first_frame_psnr,
    render_evaluation_videos,
)


COMBINATIONS = [("red", "square", "right"), ("blue", "circle", "down"), ("green", "circle", "left")]
CALL = {"num_inference_steps": 2, "guidance_scale": 1.5}


@torch.no_grad()
def test_image_to_video_evaluation_on_a_tiny_pipeline(image_to_video_pipe):
    pipe = image_to_video_pipe
    images_seen = []
    pipe.unet.register_forward_pre_hook(
        lambda module, args, kwargs: images_seen.append(kwargs["conditioning_latents"][:, :4, 0].clone()),
        with_kwargs=True,
    )
    scores = evaluate_image_to_video(
        pipe, COMBINATIONS, 2, num_frames=5, height=16, width=16, batch_size=4, seed=3, print_table=False, **CALL
    )
    assert scores["all"]["num_videos"] == 6 and scores["heldout"]["num_videos"] == 2  # green circle left
    # the ground truth: unseen videos (dataset seed 1000 + seed), two per combination, in order
    references = render_evaluation_videos(COMBINATIONS, 2, 5, 16, 16, seed=IMAGE_TO_VIDEO_DATASET_SEED + 3)
    assert [record["prompt"] for record in scores["videos"]] == [prompt for prompt, _ in references]
    assert scores["ground_truth"]["all"]["color"] == 1.0

    # the same calls by hand: the same frames, so the same first-frame PSNR against the same images
    images = [video[0] for _, video in references]
    for call, start in enumerate(range(0, 6, 4)):
        frames = pipe(
            [prompt for prompt, _ in references[start : start + 4]],
            image=images[start : start + 4],
            num_frames=5,
            height=16,
            width=16,
            generator=torch.Generator().manual_seed(3 + call),
            output_type="np",
            **CALL,
        ).frames
        for offset, video in enumerate(frames):
            record = scores["videos"][start + offset]
            assert record["first_frame_psnr"] == pytest.approx(first_frame_psnr(video, images[start + offset]))
    # each call conditioned on its own images (both halves of guidance), not on one repeated image
    first_call = images_seen[0]
    assert first_call.shape[0] == 8 and not torch.equal(first_call[0], first_call[1])
    assert torch.equal(first_call[:4], first_call[4:])
    assert all(np.isfinite(record["first_frame_psnr"]) for record in scores["videos"])


def test_evaluation_benchmark_runs_every_evaluation(image_to_video_pipe, tmp_path):
    pipe = image_to_video_pipe
    pipe.register_to_config(
        generation_defaults={
            "num_frames": 5,
            "height": 16,
            "width": 16,
            "num_inference_steps": 1,
            "guidance_scale": 1.0,
        }
    )
    pipe.save_pretrained(tmp_path / "tiny")
    script = Path(__file__).parents[2] / "benchmarks" / "evaluate_default_model.py"
    command = [sys.executable, str(script), "--model", str(tmp_path / "tiny"), "--videos_per_combination", "1"]
    command += ["--reconstruction", "--image_to_video", "--batch_size", "36", "--json", str(tmp_path / "scores.json")]
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[2]))
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    scores = json.loads((tmp_path / "scores.json").read_text())
    for name in ("ground_truth", "reconstruction", "generation", "image_to_video"):
        assert scores[name]["all"]["num_videos"] == 72, name
        assert 0.0 <= scores[name]["all"]["flicker_score"] <= 1.0
    # the reference row: rendered objects keep their area and glide along a straight line
    assert scores["ground_truth"]["all"]["area_variation"] < 0.03
    assert scores["ground_truth"]["all"]["centroid_jitter"] < 0.2
    assert "first_frame_psnr" in scores["image_to_video"]["all"]
    assert "| ground truth | 66 | 100.0% |" in result.stdout
    assert "| image-to-video | 66 |" in result.stdout


def test_grid_evaluation_scores_each_setting_against_the_physical_ground_truth(image_to_video_pipe, tmp_path):
    image_to_video_pipe.save_pretrained(tmp_path / "tiny")
    script = Path(__file__).parents[2] / "benchmarks" / "evaluate_default_model.py"
    command = [sys.executable, str(script), "--model", str(tmp_path / "tiny"), "--grid", "--image_to_video"]
    command += ["--grid_settings", "5x32x32@8,5x32x32@16,9x32x32@16", "--combination_stride", "6"]
    command += ["--videos_per_combination", "1", "--steps", "1", "--json", str(tmp_path / "grid.json")]
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[2]))
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    grid = json.loads((tmp_path / "grid.json").read_text())["grid"]
    assert {"5x32x32 8fps", "5x32x32 16fps", "9x32x32 16fps"} <= grid.keys()
    # every 6th combination prompts circles and squares moving left and up only: the table says what it left out
    assert "12 of 72 combinations (1 held out): colours red, green, blue, yellow, white, purple; " in result.stdout
    assert "shapes circle, square (not triangle); directions left, up (not right, down)" in result.stdout
    assert len(grid["combinations"]) == 12 and grid["combinations"][1] == "a red square moving up"
    for setting in ("5x32x32 8fps", "5x32x32 16fps", "9x32x32 16fps"):
        rows = grid[setting]
        assert rows["ground truth"]["num_videos"] == rows["text-to-video"]["num_videos"] == 12
        assert "first_frame_psnr" in rows["image-to-video"]
        assert rows["ground truth"]["area_variation_max"] >= rows["ground truth"]["area_variation_median"]
        assert f"| {setting} text-to-video | 12 |" in result.stdout
        # seen and held-out apart (the targets are on seen combinations), and one record per clip
        assert (
            rows["text-to-video"]["seen"]["num_videos"] == 11 and rows["text-to-video"]["heldout"]["num_videos"] == 1
        )
        records = rows["image-to-video"]["videos"]
        assert [record["prompt"] for record in records] == grid["combinations"]
        assert [record["split"] for record in records].count("heldout") == 1
        assert {len(record["coverages"]) for record in records} == {rows["settings"]["num_frames"]}
        # the world's objects: every ground-truth clip's size is in its range
        assert rows["ground truth"]["object_size_in_range"] == 1.0
        assert 0.12 <= rows["ground truth"]["object_size_median"] <= 0.17
        for measure in ("area_variation", "coverage_variation"):
            values = sorted(record[measure] for record in records)
            assert rows["image-to-video"][f"{measure}_max"] == values[-1]
            assert rows["image-to-video"][f"{measure}_median"] == pytest.approx((values[5] + values[6]) / 2)
    # the reference rows keep the speed in the scene: half the motion per frame at twice the frame rate, and the
    # same distance over the same duration (9 frames at 16 fps, 5 at 8 fps)
    truth = grid["frame_rate_dial"]["ground truth"]
    assert truth["per_frame_16_over_8"] == pytest.approx(0.5, abs=0.1)
    assert truth["same_duration_distance_16_over_8"] == pytest.approx(1.0, abs=0.1)
    assert set(grid["frame_rate_dial"]) == {"setting", "ground truth", "text-to-video", "image-to-video"}
    assert "frame-rate dial from 5x32x32 at 8 fps, text-to-video: per_frame_16_over_8 " in result.stdout


def test_grid_reconstruction_rows_score_the_vae_round_trip_of_each_setting(image_to_video_pipe, tmp_path):
    # `--reconstruction --skip_text_to_video`: per setting the ground truth and its VAE round trip only, whose
    # frame-0 PSNR is the most image-to-video can keep of the image
    image_to_video_pipe.save_pretrained(tmp_path / "tiny")
    script = Path(__file__).parents[2] / "benchmarks" / "evaluate_default_model.py"
    command = [sys.executable, str(script), "--model", str(tmp_path / "tiny"), "--grid", "--reconstruction"]
    command += ["--skip_text_to_video", "--grid_settings", "5x32x32@8,9x32x32@4", "--combination_stride", "12"]
    command += ["--videos_per_combination", "1", "--json", str(tmp_path / "grid.json")]
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[2]))
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    grid = json.loads((tmp_path / "grid.json").read_text())["grid"]
    for setting in ("5x32x32 8fps", "9x32x32 4fps"):
        assert set(grid[setting]) == {"settings", "ground truth", "VAE reconstruction", "seconds"}
        assert f"| {setting} VAE reconstruction | 6 |" in result.stdout
        assert "text-to-video" not in result.stdout
    # the row's frame-0 PSNR is that of the VAE's round trip of the ground truth's first frames, recomputed here
    from diffusers_videolatent import VideoLatentPipeline
    from diffusers_videolatent.training.evaluate import IMAGE_TO_VIDEO_DATASET_SEED, to_uint8_frames
    from diffusers_videolatent.training.moving_shapes import ALL_COMBINATIONS, render_physical_moving_shape

    pipe = VideoLatentPipeline.from_pretrained(tmp_path / "tiny")
    combination = ALL_COMBINATIONS[12]  # the second of every 12th
    generator = np.random.default_rng((IMAGE_TO_VIDEO_DATASET_SEED, 1))
    video = to_uint8_frames(render_physical_moving_shape(*combination, 9, 32, 32, 4, generator))
    with torch.no_grad():
        latents = pipe.encode_video(torch.from_numpy(video).permute(3, 0, 1, 2)[None].float() / 127.5 - 1)
        decoded = (pipe.decode_latents(latents)[0, :, 0].permute(1, 2, 0) + 1).clamp(0, 2) * 127.5
    error = np.mean((decoded.numpy() - video[0].astype(np.float64)) ** 2)
    record = grid["9x32x32 4fps"]["VAE reconstruction"]["videos"][1]
    assert record["prompt"] == "a " + " ".join(combination[:2]) + " moving " + combination[2]
    assert record["first_frame_psnr"] == pytest.approx(10 * np.log10(255.0**2 / error), abs=0.05)


def test_grid_settings_that_do_not_parse_are_refused_naming_the_option(tmp_path):
    script = Path(__file__).parents[2] / "benchmarks" / "evaluate_default_model.py"
    command = [sys.executable, str(script), "--grid", "--grid_settings", "17x64@8"]
    environment = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "--grid_settings" in result.stderr and "FRAMESxHEIGHTxWIDTH@FPS" in result.stderr
