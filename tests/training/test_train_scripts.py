"""The two accelerate training scripts, run for a few steps of tiny models on CPU.

Each script runs twice under `accelerate launch` with two CPU processes (DDP on gloo; both write their random state):
once for all steps with a checkpoint in the middle of an epoch, once resumed from that checkpoint. The tests check that
the loss of a tiny overfitted batch drops, that the resumed run logs the same losses and ends with the same weights,
that one process at the same global batch (run here, in-process) logs the same losses as both, and that the output
loads.
"""

import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from diffusers_videolatent.training.training_utils import read_run_config

from ..testing_utils import (
    CHECKPOINT_STEP,
    TOTAL_STEPS,
    TRAINING_ARGUMENTS,
    TRAINING_UNET_CONFIG,
    TRAINING_VAE_CONFIG,
    TWO_CPU_PROCESSES_ENVIRONMENT,
    assert_equal_losses,
    assert_resumed_exactly,
    assert_same_weights,
    largest_differences,
    launch_training,
    run_with_tracebacks_on_timeout,
    text_to_video_model_arguments,
    training_metrics,
    vae_training_arguments,
)


def test_vae_overfits_resumes_exactly_and_saves(vae_runs):
    from diffusers_videolatent import AutoencoderKLVideo

    full = training_metrics(vae_runs / "full", "video_vae")
    first = np.mean([full[step]["reconstruction_loss"] for step in (1, 2)])
    last = np.mean([full[step]["reconstruction_loss"] for step in (TOTAL_STEPS - 1, TOTAL_STEPS)])
    print(f"VAE reconstruction loss: steps 1-2 {first:.4f}, steps {TOTAL_STEPS - 1}-{TOTAL_STEPS} {last:.4f}")
    assert last < 0.6 * first
    assert "temporal_loss" in full[1] and "kl_loss" in full[1]
    # `--alternate_num_frames 3 5`: the 5-frame clips and every other frame of them, in turn
    assert [full[step]["num_frames"] for step in range(1, TOTAL_STEPS + 1)] == [3, 5] * (TOTAL_STEPS // 2)

    # the resumed run continues at step 6 with the same batches, clip lengths, noise and state
    assert_resumed_exactly(vae_runs, "video_vae", "loss", "diffusion_pytorch_model.safetensors")

    # two processes ran: each wrote its random state into the checkpoint
    saved = os.listdir(vae_runs / "full" / f"checkpoint-{CHECKPOINT_STEP}")
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= set(saved)

    vae = AutoencoderKLVideo.from_pretrained(str(vae_runs / "full"))
    assert vae.temporal_compression_ratio == 2 and vae.spatial_compression_ratio == 2
    # the latent normalisation was measured: scaling_factor = 1 / std of the latents
    assert vae.config.scaling_factor == pytest.approx(1.0 / full[TOTAL_STEPS]["latent_std"], rel=1e-5)


def test_vae_two_processes_train_as_one_process_at_the_same_global_batch(vae_runs, tmp_path):
    # the two-process runs take batches of 1: one process at batch 2 sees the same global batches and, with the
    # per-sample random streams, draws the same posterior samples, so it logs the same losses at every step
    from diffusers_videolatent.training.train_video_vae import main

    main(vae_training_arguments() + ["--train_batch_size", "2", "--output_dir", str(tmp_path / "one")])
    one = training_metrics(tmp_path / "one", "video_vae")
    two = {
        "full": training_metrics(vae_runs / "full", "video_vae"),
        "resumed": training_metrics(vae_runs / "resumed", "video_vae"),
    }
    names = ("loss", "reconstruction_loss", "temporal_loss", "kl_loss")
    assert sorted(step for step in one if "loss" in one[step]) == list(range(1, TOTAL_STEPS + 1))
    absolute, relative = largest_differences(two, one, names)
    print(f"VAE, 2 processes at batch 1 against 1 at batch 2: largest difference {absolute:.3g} ({relative:.3g})")
    assert_equal_losses(two, one, names)
    assert len({round(one[step]["loss"], 4) for step in one if "loss" in one[step]}) == TOTAL_STEPS  # no constant


@pytest.mark.skipif(torch.cuda.is_available(), reason="on GPUs accelerate runs FSDP for real")
def test_processes_that_do_not_join_one_run_are_refused(tmp_path):
    # without GPUs, accelerate 1.16 turns `--use_fsdp --num_processes 2` into two processes that each run alone (both
    # rank 0): both would train the whole model and write the same output_dir
    import sys

    launch = [sys.executable, "-m", "accelerate.commands.launch", "--use_fsdp", "--num_processes", "2"]
    launch += ["--fsdp_sync_module_states", "false", "--fsdp_cpu_ram_efficient_loading", "false"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    output = tmp_path / "out"
    command = [*launch, "-m", "diffusers_videolatent.training.train_video_vae", *vae_training_arguments()]
    environment = {**os.environ, **TWO_CPU_PROCESSES_ENVIRONMENT}
    environment.pop("ACCELERATE_USE_CPU")
    result = run_with_tracebacks_on_timeout(
        [*command, "--output_dir", str(output)], 300, cwd=tmp_path, env=environment
    )
    if result.returncode == 0:
        # accelerate 1.1 makes such a launch DDP on gloo instead: the processes join one run, which is fine
        checkpoint = read_run_config(str(output / f"checkpoint-{CHECKPOINT_STEP}"))
        assert checkpoint["run_config"]["num_processes"] == 2
        return
    assert "`accelerate launch` started 2 processes, but accelerate runs each alone" in result.stderr
    assert not (output / f"checkpoint-{CHECKPOINT_STEP}").exists() and not (output / "config.json").exists()


def test_vae_decoder_only_keeps_the_encoder_and_its_normalisation(vae_runs, tmp_path):
    from diffusers_videolatent import AutoencoderKLVideo
    from diffusers_videolatent.training.train_video_vae import main

    source = str(vae_runs / "full")
    arguments = TRAINING_ARGUMENTS + [
        "--pretrained_vae_name_or_path",
        source,
        "--train_decoder_only",
        "--learning_rate",
        "5e-3",
    ]
    arguments += ["--max_train_steps", "4", "--no_validation", "--use_ema", "--ema_decay", "0.5"]
    main(arguments + ["--output_dir", str(tmp_path / "decoder")])

    before = load_file(os.path.join(source, "diffusion_pytorch_model.safetensors"))
    after = load_file(str(tmp_path / "decoder" / "diffusion_pytorch_model.safetensors"))
    for key in before:
        if key.startswith(("encoder.", "quant_conv.")):
            assert torch.equal(before[key], after[key]), key
    changed = [key for key in before if not torch.equal(before[key], after[key])]
    assert changed and all(key.startswith(("decoder.", "post_quant_conv.")) for key in changed)
    # the latents are those of the source VAE, so is their normalisation
    scaling_factor = AutoencoderKLVideo.from_pretrained(source).config.scaling_factor
    assert AutoencoderKLVideo.from_pretrained(str(tmp_path / "decoder")).config.scaling_factor == scaling_factor


def test_vae_decoder_padding_mode_is_trained_saved_and_kept_on_resume(vae_runs, tmp_path):
    from diffusers_videolatent import AutoencoderKLVideo
    from diffusers_videolatent.training.train_video_vae import load_vae, main, parse_args

    source = str(vae_runs / "full")
    arguments = TRAINING_ARGUMENTS + ["--pretrained_vae_name_or_path", source, "--train_decoder_only"]
    arguments += ["--max_train_steps", "2", "--checkpointing_steps", "1", "--no_validation"]
    # the loaded weights in a VAE whose decoder pads with edge copies
    options = parse_args(arguments + ["--output_dir", "o", "--decoder_padding_mode", "replicate"])
    padded, plain = load_vae(options), AutoencoderKLVideo.from_pretrained(source)
    assert plain.config.decoder_padding_mode == "zeros" and padded.config.decoder_padding_mode == "replicate"
    state = plain.state_dict()
    assert all(torch.equal(state[key], value) for key, value in padded.state_dict().items())
    assert load_vae(parse_args(arguments + ["--output_dir", "o"])).config.decoder_padding_mode == "zeros"

    output = tmp_path / "replicate"
    main(arguments + ["--decoder_padding_mode", "replicate", "--output_dir", str(output)])
    assert AutoencoderKLVideo.from_pretrained(str(output)).config.decoder_padding_mode == "replicate"
    # a resume that would pad otherwise is another run; the trained VAE, loaded without the option, keeps its mode
    with pytest.raises(ValueError, match=r"another configuration.*decoder_padding_mode"):
        main(
            arguments
            + ["--output_dir", str(tmp_path / "refused"), "--resume_from_checkpoint", str(output / "checkpoint-1")]
        )
    further = parse_args(TRAINING_ARGUMENTS + ["--pretrained_vae_name_or_path", str(output), "--output_dir", "o"])
    assert load_vae(further).config.decoder_padding_mode == "replicate"
    with pytest.raises(SystemExit):
        parse_args(arguments + ["--output_dir", "o", "--decoder_padding_mode", "reflect"])


def test_vae_decoder_trains_on_the_physical_world(vae_runs, tmp_path):
    # `--train_fps`: clips of the physical world at one of these frame rates, whose long slow clips cross the frame
    # from edge to edge; the run records the rates and refuses to resume without them
    from diffusers_videolatent.training.moving_shapes import MovingShapesDataset
    from diffusers_videolatent.training.train_video_vae import main

    arguments = TRAINING_ARGUMENTS + ["--pretrained_vae_name_or_path", str(vae_runs / "full"), "--train_decoder_only"]
    arguments += ["--max_train_steps", "2", "--checkpointing_steps", "1", "--no_validation"]
    output = tmp_path / "physical"
    main(arguments + ["--train_fps", "2", "8", "--output_dir", str(output)])
    assert read_run_config(str(output / "checkpoint-2"))["run_config"]["train_fps"] == [2.0, 8.0]
    assert (output / "diffusion_pytorch_model.safetensors").exists()
    checkpoint = str(output / "checkpoint-1")
    with pytest.raises(ValueError, match=r"another configuration.*train_fps"):
        main(arguments + ["--output_dir", str(tmp_path / "refused"), "--resume_from_checkpoint", checkpoint])

    # what those 4 clips are: frames 5 x 16 x 16 of the physical world, at 2 or 8 fps, some touching an edge
    dataset = MovingShapesDataset(num_videos=4, num_frames=5, height=16, width=16, fps=[2.0, 8.0])
    rates = {dataset[index]["fps"] for index in range(4)}
    touching = [
        bool(
            (dataset[index]["foreground"][:, [0, -1], :] > 0.5).any()
            or (dataset[index]["foreground"][:, :, [0, -1]] > 0.5).any()
        )
        for index in range(4)
    ]
    print(f"frame rates {sorted(rates)}, clips touching an edge {sum(touching)} of 4")
    assert rates <= {2.0, 8.0} and any(touching)


def test_vae_trains_in_buckets_resumes_exactly_and_measures_every_bucket(tmp_path, monkeypatch):
    # `--buckets`: every batch of one size, drawn by the bucket weights, the bucket logged per step; a resume in the
    # middle of the epoch sees the same batches; the latent statistics come from batches of every bucket
    from diffusers_videolatent import AutoencoderKLVideo
    from diffusers_videolatent.training import train_video_vae

    torch.set_num_threads(1)
    seen = []
    statistics_shapes = []
    forward = train_video_vae.AutoencoderTrainingModule.forward
    statistics = train_video_vae.compute_latent_statistics

    def spy_forward(module, pixel_values, generators):
        seen.append(tuple(pixel_values.shape))
        return forward(module, pixel_values, generators)

    def spy_statistics(vae, dataloader, num_batches, device):
        statistics_shapes.extend(tuple(batch["pixel_values"].shape) for batch in dataloader)
        return statistics(vae, dataloader, num_batches, device)

    monkeypatch.setattr(train_video_vae.AutoencoderTrainingModule, "forward", spy_forward)
    monkeypatch.setattr(train_video_vae, "compute_latent_statistics", spy_statistics)
    arguments = ["--vae_config", json.dumps(TRAINING_VAE_CONFIG), "--buckets", "5x16x16:3,9x16x16:3,5x16x32:4"]
    arguments += ["--train_fps", "4", "8", "--num_train_videos", "24", "--train_batch_size", "2", "--seed", "3"]
    arguments += ["--learning_rate", "2e-3", "--max_train_steps", "8", "--checkpointing_steps", "5", "--no_validation"]
    arguments += ["--latent_statistics_batches", "6", "--report_to", "jsonl"]
    train_video_vae.main(arguments + ["--output_dir", str(tmp_path / "full")])
    # (B, 3, F, H, W) of each step, and the bucket it logged
    assert len(seen) == 8 and {shape[0] for shape in seen} == {2}
    assert {shape[2:] for shape in seen} <= {(5, 16, 16), (9, 16, 16), (5, 16, 32)}
    assert len({shape[2:] for shape in seen}) >= 2
    full = training_metrics(tmp_path / "full", "video_vae")
    assert [full[step]["bucket"] for step in range(1, 9)] == ["{}x{}x{}".format(*shape[2:]) for shape in seen]
    # 6 statistics batches, each of one bucket, drawn as the training batches are
    assert len(statistics_shapes) == 6 and len({shape[2:] for shape in statistics_shapes}) >= 2
    config = read_run_config(str(tmp_path / "full" / "checkpoint-5"))["run_config"]
    assert config["buckets"] == "5x16x16:0.3,9x16x16:0.3,5x16x32:0.4" and config["train_fps"] == [4.0, 8.0]

    seen.clear()
    checkpoint = str(tmp_path / "full" / "checkpoint-5")
    train_video_vae.main(
        arguments + ["--output_dir", str(tmp_path / "resumed"), "--resume_from_checkpoint", checkpoint]
    )
    resumed = training_metrics(tmp_path / "resumed", "video_vae")
    assert sorted(step for step in resumed if "loss" in resumed[step]) == [6, 7, 8]
    for step in (6, 7, 8):
        assert resumed[step]["bucket"] == full[step]["bucket"]
        assert resumed[step]["loss"] == full[step]["loss"], step  # bit-identical on one thread
    assert_same_weights(
        str(tmp_path / "full" / "diffusion_pytorch_model.safetensors"),
        str(tmp_path / "resumed" / "diffusion_pytorch_model.safetensors"),
    )
    vae = AutoencoderKLVideo.from_pretrained(str(tmp_path / "full"))
    assert vae.config.scaling_factor == pytest.approx(1.0 / full[8]["latent_std"], rel=1e-5)
    with pytest.raises(ValueError, match=r"another configuration.*buckets"):
        train_video_vae.main(
            arguments[:3]
            + ["5x16x16,9x16x16"]
            + arguments[4:]
            + ["--output_dir", str(tmp_path / "refused"), "--resume_from_checkpoint", checkpoint]
        )


def test_text_to_video_trains_resumes_exactly_and_loads(t2v_runs):
    from diffusers_videolatent import VideoLatentPipeline

    root, _ = t2v_runs
    full = training_metrics(root / "full", "text_to_video")
    first = np.mean([full[step]["train_loss"] for step in (1, 2, 3)])
    last = np.mean([full[step]["train_loss"] for step in (TOTAL_STEPS - 2, TOTAL_STEPS - 1, TOTAL_STEPS)])
    print(f"T2V v-prediction loss: steps 1-3 {first:.4f}, last 3 steps {last:.4f}")
    assert last < 0.8 * first

    assert_resumed_exactly(root, "text_to_video", "train_loss", "unet/diffusion_pytorch_model.safetensors")

    saved = os.listdir(root / "full" / f"checkpoint-{CHECKPOINT_STEP}")
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= set(saved)  # two processes ran

    pipeline = VideoLatentPipeline.from_pretrained(str(root / "full"))
    assert type(pipeline.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert pipeline.scheduler.config.prediction_type == "v_prediction"
    # every caption word is one token of the tokenizer built by the script
    assert len(pipeline.tokenizer("a purple triangle moving left").input_ids) == 7
    call = {"num_frames": 5, "height": 16, "width": 16, "num_inference_steps": 2}
    frames = pipeline("a red circle moving right", generator=torch.Generator().manual_seed(0), **call).frames
    assert frames.shape == (1, 5, 16, 16, 3)
    assert np.isfinite(frames).all()
    # the conditioning channels round-trip through save and load, and image-to-video runs on them
    assert pipeline.unet.config.conditioning_channels == 5
    assert pipeline.unet.conv_in.in_channels == 4 + 5
    image = frames[0, 0]
    frames = pipeline("a red circle moving right", image=image, generator=torch.Generator().manual_seed(0), **call)
    assert frames.frames.shape == (1, 5, 16, 16, 3) and np.isfinite(frames.frames).all()


def test_text_to_video_two_processes_train_as_one_process_at_the_same_global_batch(t2v_runs, tmp_path):
    # as for the VAE: the same noise, timesteps, caption dropout and image conditioning per video, so the same losses
    from diffusers_videolatent.training.train_text_to_video import main

    root, arguments = t2v_runs
    main(arguments + ["--train_batch_size", "2", "--output_dir", str(tmp_path / "one")])
    one = training_metrics(tmp_path / "one", "text_to_video")
    two = {
        "full": training_metrics(root / "full", "text_to_video"),
        "resumed": training_metrics(root / "resumed", "text_to_video"),
    }
    assert sorted(one) == list(range(1, TOTAL_STEPS + 1))
    absolute, relative = largest_differences(two, one, ("train_loss",))
    print(f"T2V, 2 processes at batch 1 against 1 at batch 2: largest difference {absolute:.3g} ({relative:.3g})")
    assert_equal_losses(two, one, ("train_loss",))
    assert len({round(one[step]["train_loss"], 4) for step in one}) == TOTAL_STEPS


def test_text_to_video_fine_tunes_a_pipeline(t2v_runs, tmp_path):
    from diffusers_videolatent import VideoLatentPipeline
    from diffusers_videolatent.training.train_text_to_video import main

    root, _ = t2v_runs
    source = root / "full"
    arguments = TRAINING_ARGUMENTS + ["--pretrained_model_name_or_path", str(source), "--objective", "v_prediction"]
    arguments += ["--max_train_steps", "2", "--no_validation", "--output_dir", str(tmp_path / "tuned")]
    main(arguments)

    # the vocabulary files travel with the tokenizer (transformers 5 alone would save tokenizer.json only)
    def read(folder, name):
        with open(folder / "tokenizer" / name) as file:
            return file.read()

    assert json.loads(read(tmp_path / "tuned", "vocab.json")) == json.loads(read(source, "vocab.json"))
    assert read(tmp_path / "tuned", "merges.txt") == read(source, "merges.txt")
    # the U-Net went on from the source's weights; the frozen parts are the source's
    before = load_file(str(source / "unet" / "diffusion_pytorch_model.safetensors"))
    after = load_file(str(tmp_path / "tuned" / "unet" / "diffusion_pytorch_model.safetensors"))
    assert before.keys() == after.keys()
    assert max((before[key] - after[key]).abs().max().item() for key in before) < 0.1
    assert any(not torch.equal(before[key], after[key]) for key in before)
    assert_same_weights(
        str(source / "vae" / "diffusion_pytorch_model.safetensors"),
        str(tmp_path / "tuned" / "vae" / "diffusion_pytorch_model.safetensors"),
    )
    pipeline = VideoLatentPipeline.from_pretrained(str(tmp_path / "tuned"))
    assert len(pipeline.tokenizer("a purple triangle moving left").input_ids) == 7


def test_flow_matching_with_mixed_shifts_validates_both_modes(t2v_runs, tmp_path):
    from diffusers_videolatent import VideoLatentPipeline
    from diffusers_videolatent.training.train_text_to_video import main

    root, _ = t2v_runs
    arguments = TRAINING_ARGUMENTS + [
        "--pretrained_model_name_or_path",
        str(root / "full"),
        "--objective",
        "flow_matching",
    ]
    arguments += ["--flow_shift", "3", "--training_flow_shifts", "20", "3", "--max_train_steps", "2"]
    arguments += [
        "--validation_steps",
        "2",
        "--num_validation_inference_steps",
        "2",
        "--validation_guidance_scale",
        "1",
    ]
    arguments += ["--validation_prompts", "a red circle moving right", "--output_dir", str(tmp_path / "flow")]
    main(arguments)

    logged = training_metrics(tmp_path / "flow", "text_to_video")[2]
    for name in ("validation_color", "validation_direction", "validation_i2v_color", "validation_i2v_area_variation"):
        assert 0.0 <= logged[name] <= 1.0 or name.endswith("variation"), name
    # the first frame of an image-to-video validation video against the given image, in dB
    assert 0.0 < logged["validation_i2v_first_frame_psnr"] < 100.0
    gifs = sorted(os.listdir(tmp_path / "flow" / "validation"))
    assert any("-image-0-" in name for name in gifs) and any("-0-a_red" in name for name in gifs)
    # the saved scheduler keeps --flow_shift, not the training mixture
    pipeline = VideoLatentPipeline.from_pretrained(str(tmp_path / "flow"))
    assert pipeline.scheduler.config.shift == 3.0
    assert pipeline.unet.config.conditioning_channels == 5


def test_resume_at_the_last_step_saves_that_step(t2v_runs, tmp_path):
    # a run stopped at a checkpoint is finished by resuming it with --max_train_steps set to that step
    from diffusers_videolatent import UNetSpatioTemporalModel

    root, arguments = t2v_runs
    checkpoint = str(root / "full" / f"checkpoint-{CHECKPOINT_STEP}")
    arguments = [argument if argument != str(TOTAL_STEPS) else str(CHECKPOINT_STEP) for argument in arguments]
    arguments += ["--output_dir", str(tmp_path / "stopped"), "--resume_from_checkpoint", checkpoint]
    # the checkpoint is of two processes: so is the run that resumes it
    launch_training("diffusers_videolatent.training.train_text_to_video", arguments, tmp_path)
    metrics = tmp_path / "stopped" / "logs" / "text_to_video" / "metrics.jsonl"
    assert not metrics.exists() or "train_loss" not in metrics.read_text()
    # the saved U-Net holds the checkpoint's EMA weights, not those of one more step
    unet = UNetSpatioTemporalModel.from_pretrained(str(tmp_path / "stopped" / "unet"))
    ema = torch.load(os.path.join(checkpoint, "custom_checkpoint_0.pkl"), weights_only=False)
    for parameter, shadow in zip(unet.parameters(), ema["shadow_params"], strict=True):
        assert torch.equal(parameter.detach(), shadow)


def test_resume_with_another_configuration_is_refused(t2v_runs):
    from diffusers_videolatent.training.train_text_to_video import main

    root, arguments = t2v_runs
    other_unet = json.dumps(dict(TRAINING_UNET_CONFIG, block_out_channels=[8, 8]))
    changed = [other_unet if argument == json.dumps(TRAINING_UNET_CONFIG) else argument for argument in arguments]
    checkpoint = str(root / "full" / f"checkpoint-{CHECKPOINT_STEP}")
    output_dir = root / "refused"
    with pytest.raises(ValueError, match=r"another configuration.*unet\.block_out_channels: checkpoint \[8, 16\]"):
        main(changed + ["--output_dir", str(output_dir), "--resume_from_checkpoint", checkpoint])
    assert not any(name.startswith("checkpoint-") for name in os.listdir(output_dir))


def test_frame_count_and_size_the_vae_cannot_take(vae_runs, tmp_path):
    from diffusers_videolatent.training import train_text_to_video, train_video_vae

    vae_arguments = ["--vae_config", json.dumps(TRAINING_VAE_CONFIG), "--output_dir", str(tmp_path / "vae")]
    with pytest.raises(ValueError, match=r"`--num_frames` is 6.*1 \+ k \* 2 frames: use 5 or 7"):
        train_video_vae.main(vae_arguments + ["--num_frames", "6", "--height", "16", "--width", "16"])
    with pytest.raises(ValueError, match=r"`--height` is 15.*multiple of 2: use 14 or 16"):
        train_video_vae.main(vae_arguments + ["--num_frames", "5", "--height", "15", "--width", "16"])
    # 7 frames subsample to 4 (every other one), but the VAE's temporal ratio 2 needs 1 + 2k frames
    with pytest.raises(ValueError, match=r"`--alternate_num_frames` holds 4.*ratio 2 needs 1 \+ k \* 2 frames"):
        train_video_vae.main(
            vae_arguments + ["--num_frames", "7", "--alternate_num_frames", "4", "--height", "16", "--width", "16"]
        )

    # one weight per place in a latent frame's group: 2 for temporal ratio 2
    with pytest.raises(ValueError, match=r"`--frame_position_weights` needs one weight .* 2 for this VAE, but got 3"):
        train_video_vae.main(
            vae_arguments + ["--num_frames", "5", "--frame_position_weights", "1", "1", "2", "--height", "16"]
        )

    t2v_arguments = text_to_video_model_arguments(vae_runs / "full") + ["--output_dir", str(tmp_path / "t2v")]
    # 18 pixels: a multiple of the VAE's 2, but the latent (9) is not divisible by the U-Net's downsampling 2
    with pytest.raises(ValueError, match=r"`--width` is 18.*VAE's spatial ratio 2 times the U-Net's downsampling 2"):
        train_text_to_video.main(t2v_arguments + ["--num_frames", "5", "--height", "16", "--width", "18"])
    # the pipeline feeds 0, C or C + 1 conditioning channels (C = 4 latent channels here)
    with pytest.raises(ValueError, match=r"`--conditioning_channels` must be 0, the latent channels \(4\)"):
        train_text_to_video.main(t2v_arguments + ["--num_frames", "5", "--conditioning_channels", "7"])


def test_bad_options():
    from diffusers_videolatent.training import train_text_to_video, train_video_vae

    with pytest.raises(ValueError, match="A frozen VAE is needed"):
        train_text_to_video.parse_args(["--output_dir", "out"])
    with pytest.raises(ValueError, match="conditioning_dropout_prob"):
        train_text_to_video.parse_args(
            ["--output_dir", "o", "--pretrained_vae_name_or_path", "v", "--conditioning_dropout_prob", "2"]
        )
    vae = ["--output_dir", "o", "--pretrained_vae_name_or_path", "v"]
    with pytest.raises(ValueError, match="image_conditioning_prob"):
        train_text_to_video.parse_args(vae + ["--image_conditioning_prob", "1.5"])
    with pytest.raises(ValueError, match="needs a U-Net with conditioning channels"):
        train_text_to_video.parse_args(vae + ["--conditioning_channels", "0", "--image_conditioning_prob", "0.5"])
    with pytest.raises(ValueError, match="conditioning_channels"):
        train_text_to_video.parse_args(vae + ["--conditioning_channels", "-1"])
    with pytest.raises(ValueError, match="training_flow_shifts"):
        train_text_to_video.parse_args(vae + ["--objective", "epsilon", "--training_flow_shifts", "3"])
    with pytest.raises(ValueError, match="training_flow_shifts"):
        train_text_to_video.parse_args(vae + ["--training_flow_shifts", "3", "0"])
    with pytest.raises(ValueError, match="at most one of"):
        train_video_vae.parse_args(["--output_dir", "o", "--vae_config", "{}", "--pretrained_vae_name_or_path", "v"])
    with pytest.raises(ValueError, match="`--num_frames` must be a positive integer"):
        train_video_vae.parse_args(["--output_dir", "o", "--num_frames", "0"])
    with pytest.raises(ValueError, match="`--train_decoder_only` needs a trained encoder"):
        train_video_vae.parse_args(["--output_dir", "o", "--train_decoder_only"])
    with pytest.raises(ValueError, match=r"`--train_decoder_only` needs clips \(`--num_frames` > 1\)"):
        train_video_vae.parse_args(
            ["--output_dir", "o", "--train_decoder_only", "--pretrained_vae_name_or_path", "v", "--num_frames", "1"]
        )
    with pytest.raises(ValueError, match="`--travel_fraction_range` sets the moving-shapes speeds"):
        train_video_vae.parse_args(
            ["--output_dir", "o", "--train_data_dir", "d", "--travel_fraction_range", "0.0", "0.6"]
        )
    assert train_video_vae.parse_args(
        ["--output_dir", "o", "--travel_fraction_range", "0", "0.6"]
    ).travel_fraction_range == [
        0.0,
        0.6,
    ]
    with pytest.raises(ValueError, match=r"Pass one of `--travel_fraction_range` .* and `--train_fps`"):
        train_video_vae.parse_args(["--output_dir", "o", "--travel_fraction_range", "0", "0.6", "--train_fps", "8"])
    for bad in ("0", "-4", "inf"):
        with pytest.raises(ValueError, match="`--train_fps` must all be finite and > 0"):
            train_video_vae.parse_args(["--output_dir", "o", "--train_fps", "8", bad])
        with pytest.raises(ValueError, match="`--train_fps` must all be finite and > 0"):
            train_text_to_video.parse_args(vae + ["--train_fps", "8", bad])
    for counts in (["4"], ["3", "1"], ["19"]):
        with pytest.raises(ValueError, match=f"`--alternate_num_frames` takes .* but got {counts[-1]}"):
            train_video_vae.parse_args(["--output_dir", "o", "--num_frames", "17", "--alternate_num_frames", *counts])
    for bad, shown in ((["1", "0"], "1.0, 0.0"), (["1", "inf"], "1.0, inf"), (["nan", "1"], "nan, 1.0")):
        with pytest.raises(
            ValueError, match=rf"`--frame_position_weights` must all be finite and > 0, but are \[{shown}\]"
        ):
            train_video_vae.parse_args(["--output_dir", "o", "--num_frames", "5", "--frame_position_weights", *bad])
    with pytest.raises(ValueError, match=r"`--frame_position_weights` weighs the frames of clips"):
        train_video_vae.parse_args(["--output_dir", "o", "--num_frames", "1", "--frame_position_weights", "1", "2"])
    for extra in (["--alternate_num_frames", "9"], ["--travel_fraction_range", "0", "0.6"]):
        with pytest.raises(ValueError, match=rf"Pass one of `--buckets` .* and `{extra[0]}`"):
            train_video_vae.parse_args(["--output_dir", "o", "--buckets", "17x64x64,9x64x64", *extra])
    with pytest.raises(ValueError, match="`--buckets` has '17x64'"):
        train_video_vae.parse_args(["--output_dir", "o", "--buckets", "17x64"])
    decoder_only = ["--output_dir", "o", "--train_decoder_only", "--pretrained_vae_name_or_path", "v"]
    with pytest.raises(ValueError, match=r"`--train_decoder_only` needs clips"):
        train_video_vae.parse_args(decoder_only + ["--buckets", "1x64x64,1x64x128"])
    assert train_video_vae.parse_args(decoder_only + ["--buckets", "1x64x64,5x64x64"]).bucket_list == [
        (1, 64, 64),
        (5, 64, 64),
    ]
    with pytest.raises(ValueError, match="neither a JSON file nor a JSON object"):
        train_video_vae.load_vae(train_video_vae.parse_args(["--output_dir", "o", "--vae_config", "{bad"]))


def test_frame_position_weights_weigh_each_frame_by_its_place_in_its_group():
    from diffusers_videolatent.training import train_video_vae
    from diffusers_videolatent.training.train_video_vae import frame_weights, reconstruction_losses

    # temporal ratio 2, 5 frames: the image frame, then places 1, 2 (= mod 0), 1, 2; normalised to a mean of 1
    torch.testing.assert_close(frame_weights(5, [1.0, 3.0]), torch.tensor([1.0, 1.0, 3.0, 1.0, 3.0]) / 1.8)
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 5, 4, 4, generator=generator) * 2 - 1
    reconstruction = target.clone()
    reconstruction[:, :, 4] += 0.5  # only the last frame (place 2) is wrong
    for kind, error in (("mse", 0.25), ("l1", 0.5)):
        plain = reconstruction_losses(reconstruction, target, kind, 0.0)["reconstruction_loss"]
        weighted = reconstruction_losses(reconstruction, target, kind, 0.0, [1.0, 3.0])["reconstruction_loss"]
        assert plain.item() == pytest.approx(error / 5, rel=1e-5)
        assert weighted.item() == pytest.approx(error * (3 / 1.8) / 5, rel=1e-5)
    # weights of 1 (those of the image frame) are the plain mean
    noisy = target + 0.1 * torch.randn(target.shape, generator=generator)
    torch.testing.assert_close(
        reconstruction_losses(noisy, target, "mse", 0.0, [1.0, 1.0])["reconstruction_loss"],
        reconstruction_losses(noisy, target, "mse", 0.0)["reconstruction_loss"],
    )
    # `--first_frame_weight`: the image frame's weight, with or without position weights
    torch.testing.assert_close(frame_weights(5, [1.0, 3.0], 4.0), torch.tensor([4.0, 1.0, 3.0, 1.0, 3.0]) / 2.4)
    first_wrong = target.clone()
    first_wrong[:, :, 0] += 0.5
    weighted = reconstruction_losses(first_wrong, target, "mse", 0.0, None, 4.0)["reconstruction_loss"]
    assert weighted.item() == pytest.approx(0.25 * (4 / 1.6) / 5, rel=1e-5)
    with pytest.raises(ValueError, match="`--first_frame_weight` must be finite and > 0, but is 0.0"):
        train_video_vae.parse_args(["--output_dir", "o", "--first_frame_weight", "0"])


def test_foreground_and_frame_border_losses_weigh_their_pixels(vae_runs, tmp_path):
    from diffusers_videolatent.training import train_video_vae
    from diffusers_videolatent.training.train_video_vae import foreground_pixel_weights, main, reconstruction_losses

    # a 2x2 object in an 8x8 frame, grown by one pixel: a 4x4 band of weight 1 + 3, the rest 1
    foreground = torch.zeros(1, 2, 8, 8)
    foreground[:, :, 3:5, 3:5] = 1.0
    weights = foreground_pixel_weights(foreground, 3.0, 1)
    assert weights.shape == (1, 2, 8, 8)
    assert weights[0, 0, 2:6, 2:6].eq(4.0).all() and weights.eq(4.0).sum().item() == 2 * 16
    assert weights.eq(1.0).sum().item() == 2 * (64 - 16)
    assert foreground_pixel_weights(foreground, 3.0, 0).eq(4.0).sum().item() == 2 * 4

    # normalised in each frame to a mean of 1: an error on the object counts 4 / 1.75 times, one far from it 1 / 1.75
    target = torch.zeros(1, 3, 2, 8, 8)
    mean_weight = (16 * 4.0 + 48 * 1.0) / 64
    for pixel, factor in (((3, 3), 4.0 / mean_weight), ((0, 7), 1.0 / mean_weight)):
        reconstruction = target.clone()
        reconstruction[:, :, :, pixel[0], pixel[1]] = 0.5
        plain = reconstruction_losses(reconstruction, target, "mse", 0.0)["reconstruction_loss"]
        weighted = reconstruction_losses(reconstruction, target, "mse", 0.0, None, 1.0, weights)
        assert weighted["reconstruction_loss"].item() == pytest.approx(plain.item() * factor, rel=1e-5)
    # an error spread evenly over a frame costs what it costs without the pixel weights: the frames keep theirs
    uniform = target + 0.1
    torch.testing.assert_close(
        reconstruction_losses(uniform, target, "mse", 0.0, None, 4.0, weights)["reconstruction_loss"],
        reconstruction_losses(uniform, target, "mse", 0.0, None, 4.0)["reconstruction_loss"],
    )

    # a run with it records it, so a resume without it is refused
    arguments = TRAINING_ARGUMENTS + ["--pretrained_vae_name_or_path", str(vae_runs / "full"), "--train_decoder_only"]
    arguments += ["--max_train_steps", "2", "--checkpointing_steps", "1", "--no_validation", "--train_fps", "2", "8"]
    output = tmp_path / "foreground"
    weighted = ["--foreground_loss_weight", "8", "--foreground_loss_dilation", "2", "--frame_border_loss_weight", "2"]
    main(arguments + weighted + ["--output_dir", str(output)])
    run_config = read_run_config(str(output / "checkpoint-2"))["run_config"]
    assert run_config["foreground_loss"] == [8.0, 2] and run_config["frame_border_loss_weight"] == 2.0
    assert all(np.isfinite(training_metrics(output, "video_vae")[step]["loss"]) for step in (1, 2))
    with pytest.raises(ValueError, match=r"another configuration.*foreground_loss"):
        main(
            arguments
            + ["--output_dir", str(tmp_path / "refused"), "--resume_from_checkpoint", str(output / "checkpoint-1")]
        )

    # `--frame_border_loss_weight`: the pixels within 2 of the frame's border, alone or times the object's weights
    border = train_video_vae.frame_border_weights(8, 8, 3.0)
    assert border.eq(3.0).sum().item() == 64 - 16 and border[2:6, 2:6].eq(1.0).all()
    reconstruction = target.clone()
    reconstruction[:, :, :, 0, 7] = 0.5  # an error in the corner, where the object's band does not reach
    plain = reconstruction_losses(reconstruction, target, "mse", 0.0)["reconstruction_loss"]
    weighted = reconstruction_losses(reconstruction, target, "mse", 0.0, None, 1.0, border.expand(1, 2, 8, 8))
    assert weighted["reconstruction_loss"].item() == pytest.approx(plain.item() * 3.0 / (48 * 3.0 + 16) * 64, rel=1e-5)

    for bad, message in (
        (["--frame_border_loss_weight", "0"], "`--frame_border_loss_weight` must be finite and > 0, but is 0.0"),
        (["--foreground_loss_weight", "-1"], "`--foreground_loss_weight` must be finite and >= 0, but is -1.0"),
        (["--foreground_loss_dilation", "2"], "`--foreground_loss_dilation` grows the pixels"),
        (["--foreground_loss_weight", "2", "--foreground_loss_dilation", "-1"], "`--foreground_loss_dilation` must"),
        (["--foreground_loss_weight", "2", "--train_data_dir", "videos"], "needs the moving shapes' foreground"),
    ):
        with pytest.raises(ValueError, match=message):
            train_video_vae.parse_args(["--output_dir", "o", *bad])


def test_word_level_tokenizer(tmp_path):
    from diffusers_videolatent.training.moving_shapes import VOCABULARY
    from diffusers_videolatent.training.train_text_to_video import build_text_encoder, build_word_level_tokenizer

    tokenizer = build_word_level_tokenizer(VOCABULARY, str(tmp_path / "tokenizer"))
    ids = tokenizer("a green triangle moving up").input_ids
    assert tokenizer.convert_ids_to_tokens(ids) == [
        "<|startoftext|>",
        "a</w>",
        "green</w>",
        "triangle</w>",
        "moving</w>",
        "up</w>",
        "<|endoftext|>",
    ]
    # words outside the vocabulary still tokenize, into pieces of known words and letters (no unknown token)
    pieces = tokenizer.convert_ids_to_tokens(tokenizer("dog", add_special_tokens=False).input_ids)
    assert "".join(pieces) == "dog</w>" and len(pieces) > 1
    text_encoder = build_text_encoder(tokenizer, {"hidden_size": 16, "intermediate_size": 32, "projection_dim": 16})
    padded = tokenizer(["a red circle moving left"], padding="max_length", max_length=16, return_tensors="pt")
    assert text_encoder(padded.input_ids)[0].shape == (1, 16, 16)
