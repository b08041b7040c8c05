"""`--fsdp`: both training scripts with the trained model sharded over two CPU processes (FSDP2 on gloo).

As in `test_train_scripts.py`, each script runs twice under `accelerate launch` (all steps with a checkpoint in the
middle of an epoch, then resumed from it), here with `--fsdp`. The tests check that the sharded runs log the losses of
one process at the same global batch, that the checkpoint holds each process's shard of every sharded weight, that the
resumed run logs the same losses and saves the same weights, and that the saved models load and run.
"""

import os

import numpy as np
import pytest
import torch
import torch.distributed.checkpoint as dcp

from diffusers_videolatent.training.sharding import SHARDED_STATE_FOLDER, _unit_names
from diffusers_videolatent.training.training_utils import read_run_config

from ..testing_utils import (
    CHECKPOINT_STEP,
    HAS_FULLY_SHARD,
    TOTAL_STEPS,
    TRAINING_UNET_CONFIG,
    TRAINING_VAE_CONFIG,
    assert_equal_losses,
    assert_resumed_exactly,
    largest_differences,
    training_metrics,
    vae_training_arguments,
)


pytestmark = pytest.mark.skipif(not HAS_FULLY_SHARD, reason="`--fsdp` needs torch's FSDP2 (torch 2.6 or newer)")


def _assert_sharded_checkpoint(run: str, prefix: str) -> None:
    """The checkpoint holds the run's model, Adam state and EMA in two shards, and no whole copy of any of them."""
    checkpoint = os.path.join(run, "full", f"checkpoint-{CHECKPOINT_STEP}")
    saved = set(os.listdir(checkpoint))
    assert {"random_states_0.pkl", "random_states_1.pkl", SHARDED_STATE_FOLDER} <= saved
    assert not saved & {"model.safetensors", "optimizer.bin", "custom_checkpoint_0.pkl"}  # nothing gathered
    assert read_run_config(checkpoint)["run_config"]["fsdp"] is True
    metadata = dcp.FileSystemReader(os.path.join(checkpoint, SHARDED_STATE_FOLDER)).read_metadata()
    entries = metadata.state_dict_metadata
    weights = [key for key in entries if key.startswith(f"model.{prefix}") and key.endswith(".weight")]
    assert weights and all(f"ema.{key[len('model.') :]}" in entries for key in weights)
    for key in weights:
        size = entries[key].size
        chunks = entries[key].chunks
        if size[0] >= 2:  # FSDP2 shards every weight along its first dimension: one chunk from each process
            assert len(chunks) == 2, key
            assert sorted(chunk.offsets[0] for chunk in chunks) == [0, (size[0] + 1) // 2], key
            assert sum(chunk.sizes[0] for chunk in chunks) == size[0], key
    optimizer_keys = [key for key in entries if key.startswith("optimizer.state.") and key.endswith("exp_avg_sq")]
    assert len(optimizer_keys) >= len(weights)


def test_sharded_units_are_the_outermost_blocks():
    from diffusers_videolatent import AutoencoderKLVideo, UNetSpatioTemporalModel
    from diffusers_videolatent.training.train_video_vae import AutoencoderTrainingModule

    unet_units = _unit_names(UNetSpatioTemporalModel(**TRAINING_UNET_CONFIG))
    assert unet_units == ["down_blocks.0", "down_blocks.1", "mid_block", "up_blocks.0", "up_blocks.1"]
    vae_units = _unit_names(AutoencoderTrainingModule(AutoencoderKLVideo(**TRAINING_VAE_CONFIG)))
    assert "vae.encoder.down_blocks.0" in vae_units and "vae.decoder.up_blocks.1" in vae_units
    assert not any(".resnets." in name or ".attentions." in name for name in vae_units)  # no unit inside another


def test_vae_sharded_over_two_processes_trains_as_one_process_and_resumes_exactly(vae_fsdp_runs, tmp_path):
    from diffusers_videolatent import AutoencoderKLVideo
    from diffusers_videolatent.training.train_video_vae import main

    main(vae_training_arguments() + ["--train_batch_size", "2", "--output_dir", str(tmp_path / "one")])
    one = training_metrics(tmp_path / "one", "video_vae")
    sharded = {name: training_metrics(vae_fsdp_runs / name, "video_vae") for name in ("full", "resumed")}
    names = ("loss", "reconstruction_loss", "temporal_loss", "kl_loss")
    absolute, relative = largest_differences(sharded, one, names)
    print(f"VAE, sharded over 2 processes against 1 process: largest difference {absolute:.3g} ({relative:.3g})")
    assert_equal_losses(sharded, one, names)
    assert sharded["full"][TOTAL_STEPS]["loss"] < 0.6 * sharded["full"][1]["loss"]

    _assert_sharded_checkpoint(vae_fsdp_runs, "vae.")
    assert_resumed_exactly(vae_fsdp_runs, "video_vae", "loss", "diffusion_pytorch_model.safetensors")
    # the whole VAE (its EMA weights) was gathered and saved, with its measured latent normalisation
    vae = AutoencoderKLVideo.from_pretrained(str(vae_fsdp_runs / "full"))
    assert vae.config.scaling_factor == pytest.approx(1.0 / sharded["full"][TOTAL_STEPS]["latent_std"], rel=1e-5)
    one_vae = AutoencoderKLVideo.from_pretrained(str(tmp_path / "one"))
    largest = max(
        (one_parameter - parameter).abs().max().item()
        for one_parameter, parameter in zip(one_vae.parameters(), vae.parameters())
    )
    print(f"VAE, largest weight difference to one process after {TOTAL_STEPS} steps: {largest:.3g}")
    assert largest < 1e-3


def test_text_to_video_sharded_over_two_processes_trains_as_one_process_and_resumes_exactly(t2v_fsdp_runs, tmp_path):
    from diffusers_videolatent import VideoLatentPipeline
    from diffusers_videolatent.training.train_text_to_video import main

    root, arguments = t2v_fsdp_runs
    main(arguments + ["--train_batch_size", "2", "--output_dir", str(tmp_path / "one")])
    one = training_metrics(tmp_path / "one", "text_to_video")
    sharded = {name: training_metrics(root / name, "text_to_video") for name in ("full", "resumed")}
    absolute, relative = largest_differences(sharded, one, ("train_loss",))
    print(f"T2V, sharded over 2 processes against 1 process: largest difference {absolute:.3g} ({relative:.3g})")
    assert_equal_losses(sharded, one, ("train_loss",))
    assert len({round(one[step]["train_loss"], 4) for step in one}) == TOTAL_STEPS

    _assert_sharded_checkpoint(root, "")
    assert_resumed_exactly(root, "text_to_video", "train_loss", "unet/diffusion_pytorch_model.safetensors")
    pipeline = VideoLatentPipeline.from_pretrained(str(root / "full"))
    one_pipeline = VideoLatentPipeline.from_pretrained(str(tmp_path / "one"))
    for (name, parameter), one_parameter in zip(pipeline.unet.named_parameters(), one_pipeline.unet.parameters()):
        torch.testing.assert_close(parameter, one_parameter, rtol=0, atol=1e-3, msg=name)
    call = {"num_frames": 5, "height": 16, "width": 16, "num_inference_steps": 2, "output_type": "np"}
    frames = pipeline("a red circle moving right", generator=torch.Generator().manual_seed(0), **call).frames
    assert frames.shape == (1, 5, 16, 16, 3) and np.isfinite(frames).all()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "this run has one"),
        (["--rank", "4"], "`--rank` (LoRA)"),
    ],
)
def test_sharding_that_cannot_run_is_refused(t2v_fsdp_runs, tmp_path, extra, message):
    from diffusers_videolatent.training.train_text_to_video import main

    _, arguments = t2v_fsdp_runs
    arguments = [argument for argument in arguments if argument != "--use_ema"]  # LoRA keeps no EMA
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        main(arguments + ["--fsdp", *extra, "--output_dir", str(tmp_path / "refused")])
    assert "--fsdp" in str(error.value)
    assert not (tmp_path / "refused").exists()  # refused before anything is written
