"""conversion_scripts/convert_lora_to_animatediff.py: a temporal LoRA trained by `train_text_to_video --rank` on a
pipeline converted from a tiny AnimateDiff, exported and loaded by diffusers' `AnimateDiffPipeline.load_lora_weights`,
gives the video our pipeline gives with the LoRA."""

import json

import numpy as np
import pytest
import torch
from diffusers import AnimateDiffPipeline, MotionAdapter
from peft.tuners.lora import LoraLayer
from safetensors import safe_open

from diffusers_videolatent import VideoLatentPipeline
from diffusers_videolatent.training import train_text_to_video

from ..testing_utils import load_conversion_script, script_error


export_script = load_conversion_script("convert_lora_to_animatediff")
CALL = {"num_frames": 3, "height": 8, "width": 8, "num_inference_steps": 2, "guidance_scale": 7.5, "output_type": "np"}
PROMPT = "a red circle moving right"
WEIGHT_NAME = "pytorch_lora_weights.safetensors"


def train_lora(base, output_dir, lora_layers: str) -> None:
    arguments = ["--pretrained_model_name_or_path", str(base), "--output_dir", str(output_dir), "--rank", "4"]
    arguments += ["--lora_layers", lora_layers, "--learning_rate", "5e-2", "--max_train_steps", "3", "--seed", "0"]
    arguments += ["--num_frames", "3", "--height", "16", "--width", "16", "--train_batch_size", "1"]
    arguments += ["--max_train_samples", "2", "--no_validation", "--report_to", ""]
    train_text_to_video.main(arguments)


def run(pipe) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    return pipe(PROMPT, generator=torch.Generator().manual_seed(0), **CALL).frames


@pytest.fixture(scope="module")
def motion_lora(converted_animatediff_folder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("motion-lora") / "lora"
    train_lora(converted_animatediff_folder, folder, "temporal")
    return folder


def test_exported_lora_in_animatediff_equals_ours(
    animatediff_sources, converted_animatediff_folder, motion_lora, tmp_path
):
    output = tmp_path / "export"
    assert export_script.main(["--lora_path", str(motion_lora), "--output_path", str(output)]) == 0
    with safe_open(output / WEIGHT_NAME, framework="pt") as weights:
        keys = list(weights.keys())
        metadata = json.loads(weights.metadata()["lora_adapter_metadata"])
    assert keys and all(key.startswith("unet.") and ".motion_modules." in key for key in keys)
    assert metadata["unet.r"] == 4 and all("motion_modules." in name for name in metadata["unet.target_modules"])

    ours = VideoLatentPipeline.from_pretrained(converted_animatediff_folder)
    ours.unet.requires_grad_(False)
    without_lora = run(ours)
    ours.load_lora_weights(motion_lora)
    expected = run(ours)

    base, adapter = animatediff_sources
    reference = AnimateDiffPipeline.from_pretrained(base, motion_adapter=MotionAdapter.from_pretrained(adapter))
    reference.unet.requires_grad_(False)
    reference.load_lora_weights(output)
    lora_modules = [name for name, module in reference.unet.named_modules() if isinstance(module, LoraLayer)]
    # the motion modules' attentions (down 0/1, mid, up 0 x2... as in test_loaders: 7 of them) x attn1/attn2 x q,k,v,out
    assert len(lora_modules) == 7 * 2 * 4 and all(".motion_modules." in name for name in lora_modules)
    actual = run(reference)
    assert np.abs(expected - without_lora).max() > 1e-3  # the trained LoRA really changes the video
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=0)


def test_bad_inputs(converted_animatediff_folder, motion_lora, tmp_path, capsys):
    spatial = tmp_path / "spatial"
    train_lora(converted_animatediff_folder, spatial, "all")
    output = tmp_path / "out"
    error = script_error(export_script, ["--lora_path", str(spatial), "--output_path", str(output)], capsys)
    assert "a motion LoRA holds the temporal transformers' layers only" in error.replace("An AnimateDiff", "a")
    assert "--lora_layers temporal" in error
    error = script_error(export_script, ["--lora_path", str(tmp_path / "none"), "--output_path", str(output)], capsys)
    assert "is neither a folder nor a file" in error
    assert not output.exists()

    # a file path works as well as its folder; an existing folder is kept unless --overwrite
    argv = ["--lora_path", str(motion_lora / WEIGHT_NAME), "--output_path", str(output)]
    assert export_script.main(argv) == 0
    assert "exists and is not empty" in script_error(export_script, argv, capsys)
    assert export_script.main(argv + ["--overwrite"]) == 0
