"""`train_text_to_video --rank ...` (LoRA) and `--trainable_layers ...` (one part of the U-Net), run in-process for a
few steps of a tiny pipeline on CPU: what trains, what stays bit-identical, what is saved, exact resume, and loading
the result with `pipe.load_lora_weights`."""

import os

import numpy as np
import pytest
import torch
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file

from diffusers_videolatent import VideoLatentPipeline
from diffusers_videolatent.training import train_text_to_video
from diffusers_videolatent.training.lora import is_temporal, lora_target_modules

from ..testing_utils import TRAINING_ARGUMENTS, build_unet, text_to_video_losses


WEIGHT_NAME = "pytorch_lora_weights.safetensors"
UNET_WEIGHTS = os.path.join("unet", "diffusion_pytorch_model.safetensors")
ARGUMENTS = TRAINING_ARGUMENTS + ["--no_validation"]
CALL = {"num_frames": 5, "height": 16, "width": 16, "num_inference_steps": 2, "output_type": "np"}
PROMPT = "a red circle moving right"


def train(base, output_dir, *extra) -> None:
    arguments = ARGUMENTS + ["--pretrained_model_name_or_path", str(base), "--output_dir", str(output_dir)]
    train_text_to_video.main(arguments + [str(value) for value in extra])


def frozen_pipeline(folder) -> VideoLatentPipeline:
    pipe = VideoLatentPipeline.from_pretrained(folder)
    # frozen before loading, so that unloading the LoRA gives back the very same matmul kernels (see test_loaders)
    pipe.unet.requires_grad_(False)
    pipe.text_encoder.requires_grad_(False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe) -> np.ndarray:
    return pipe(PROMPT, generator=torch.manual_seed(0), **CALL).frames


@pytest.fixture(scope="module")
def lora_runs(lora_base_folder, tmp_path_factory):
    """A rank-4 LoRA on the temporal attentions trained for 6 steps (checkpoint at 3), and the run resumed at 3."""
    root = tmp_path_factory.mktemp("lora-runs")
    options = ["--rank", 4, "--lora_alpha", 8, "--lora_layers", "temporal", "--learning_rate", 1e-2]
    options += ["--max_train_steps", 6, "--checkpointing_steps", 3]
    base_bytes = (lora_base_folder / UNET_WEIGHTS).read_bytes()
    train(lora_base_folder, root / "full", *options)
    train(lora_base_folder, root / "resumed", *options, "--resume_from_checkpoint", root / "full" / "checkpoint-3")
    assert (lora_base_folder / UNET_WEIGHTS).read_bytes() == base_bytes  # the base is never written
    return root


def test_lora_saves_only_the_adapter_and_resumes_exactly(lora_runs):
    full, resumed = lora_runs / "full", lora_runs / "resumed"
    assert sorted(os.listdir(full)) == ["checkpoint-3", "checkpoint-6", "logs", WEIGHT_NAME]
    # a checkpoint holds the LoRA layers, the optimizer and the random states, not the frozen U-Net
    assert WEIGHT_NAME in os.listdir(full / "checkpoint-3")
    assert not any(name.startswith("model") for name in os.listdir(full / "checkpoint-3"))

    layers = load_file(full / WEIGHT_NAME)
    # 7 temporal transformers (down 0/1, mid, up 0 x2, up 1 x2) x attn1/attn2 x q, k, v, out x A and B
    assert len(layers) == 7 * 2 * 4 * 2
    assert all(key.startswith("unet.") and ".temporal_attentions." in key for key in layers)
    assert all(".lora_A." in key or ".lora_B." in key for key in layers)
    # B starts at zero: the training moved it
    assert all(layers[key].abs().max() > 0 for key in layers if ".lora_B." in key)

    full_losses, resumed_losses = text_to_video_losses(full), text_to_video_losses(resumed)
    assert sorted(resumed_losses) == [4, 5, 6]
    for step in (4, 5, 6):
        assert resumed_losses[step] == pytest.approx(full_losses[step], rel=1e-6), step
    resumed_layers = load_file(resumed / WEIGHT_NAME)
    assert resumed_layers.keys() == layers.keys()
    for key in layers:
        torch.testing.assert_close(resumed_layers[key], layers[key], rtol=0, atol=1e-7, msg=key)


def test_lora_loads_into_the_pipeline_and_unloads_exactly(lora_runs, lora_base_folder):
    pipe = frozen_pipeline(lora_base_folder)
    base_weights = {name: value.clone() for name, value in pipe.unet.state_dict().items()}
    before = run(pipe)
    pipe.load_lora_weights(lora_runs / "full")
    assert sum(isinstance(module, LoraLayer) for module in pipe.unet.modules()) == 7 * 2 * 4
    # the LoRA's scale alpha / rank = 2 was kept in the file's metadata
    assert all(module.scaling["default_0"] == 2.0 for module in pipe.unet.modules() if isinstance(module, LoraLayer))
    with_lora = run(pipe)
    assert np.abs(with_lora - before).max() > 1e-4
    pipe.unload_lora_weights()
    assert all(torch.equal(value, base_weights[name]) for name, value in pipe.unet.state_dict().items())
    assert np.array_equal(run(pipe), before)


def test_lora_on_named_modules(lora_base_folder, tmp_path):
    train(lora_base_folder, tmp_path, "--rank", 2, "--lora_layers", "attn2.to_k, attn2.to_v", "--max_train_steps", 1)
    layers = load_file(tmp_path / WEIGHT_NAME)
    modules = {key.removeprefix("unet.").rsplit(".lora_", 1)[0] for key in layers}
    # 22 attentions (spatial and temporal) have an attn2
    assert len(modules) == 2 * 11 and all(module.endswith(("attn2.to_k", "attn2.to_v")) for module in modules)


@pytest.mark.parametrize("part", ["temporal", "spatial"])
def test_trainable_layers_keep_the_rest_bit_identical(lora_base_folder, tmp_path, part):
    train(lora_base_folder, tmp_path, "--trainable_layers", part, "--learning_rate", 1e-2, "--max_train_steps", 2)
    before, after = load_file(lora_base_folder / UNET_WEIGHTS), load_file(tmp_path / UNET_WEIGHTS)
    assert before.keys() == after.keys()
    trained = [key for key in before if is_temporal(key) == (part == "temporal")]
    frozen = [key for key in before if key not in trained]
    assert trained and frozen
    assert all(torch.equal(before[key], after[key]) for key in frozen)
    changed = [key for key in trained if not torch.equal(before[key], after[key])]
    assert len(changed) > 0.5 * len(trained)
    VideoLatentPipeline.from_pretrained(tmp_path)  # the whole pipeline is saved, as without the option


def test_lora_target_modules():
    unet = build_unet()
    temporal = lora_target_modules(unet, "temporal")
    spatial = lora_target_modules(unet, "spatial")
    assert len(temporal) == 7 * 2 * 4 and all(".temporal_attentions." in name for name in temporal)
    assert len(spatial) == 4 * 2 * 4 and not any(is_temporal(name) for name in spatial)
    assert sorted(lora_target_modules(unet, "all")) == sorted(temporal + spatial)
    assert lora_target_modules(unet, "mid_block.attentions.0.proj_in") == ["mid_block.attentions.0.proj_in"]
    with pytest.raises(ValueError, match=r"`--lora_layers` names \['attn3.to_q'\] match no module"):
        lora_target_modules(unet, "attn1.to_q,attn3.to_q")


def test_bad_options():
    base = ["--output_dir", "o", "--pretrained_model_name_or_path", "p"]
    cases = [
        (["--rank", "0"], "`--rank` must be a positive integer, but is 0."),
        (["--lora_layers", "temporal"], "`--lora_layers` configures a LoRA; pass --rank too."),
        (["--rank", "4", "--lora_alpha", "0"], "`--lora_alpha` must be > 0, but is 0.0."),
        (["--rank", "4", "--lora_dropout", "1"], "`--lora_dropout` must be in [0, 1), but is 1.0."),
        (["--rank", "4", "--lora_layers", " , "], "`--lora_layers` must name layers, but is ' , '."),
        (["--rank", "4", "--trainable_layers", "spatial"], "with --rank the base is frozen"),
        (["--rank", "4", "--use_ema"], "`--use_ema` keeps an average of full weights"),
    ]
    for options, message in cases:
        with pytest.raises(ValueError) as error:
            train_text_to_video.parse_args(base + options)
        assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "option", [["--use_fps_conditioning"], ["--conditioning_channels", 5], ["--temporal_conv_per_block"]]
)
def test_lora_refuses_new_zero_initialised_layers(lora_base_folder, tmp_path, option):
    # a LoRA freezes the base, so an fps embedding or conditioning channels added to it would stay zero
    with pytest.raises(ValueError, match=f"`{option[0]}` adds zero-initialised layers") as error:
        train(lora_base_folder, tmp_path, "--rank", 2, *option, "--max_train_steps", 1)
    assert "\n" not in str(error.value)
    assert not os.path.exists(tmp_path / WEIGHT_NAME)
