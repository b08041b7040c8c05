"""conversion_scripts/convert_animatediff.py on a tiny random SD 1.x-like pipeline plus a tiny MotionAdapter."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch
from diffusers import AnimateDiffPipeline, DiffusionPipeline, MotionAdapter
from huggingface_hub import ModelCard
from safetensors import safe_open

from diffusers_videolatent import AutoencoderKLVideo, UNetSpatioTemporalModel, VideoLatentPipeline

from ..testing_utils import REPOSITORY, build_motion_adapter, load_conversion_script, script_error


convert_script = load_conversion_script("convert_animatediff")
SCRIPT = REPOSITORY / "conversion_scripts" / "convert_animatediff.py"
CALL = {"num_frames": 3, "height": 8, "width": 8, "num_inference_steps": 2, "guidance_scale": 7.5, "output_type": "np"}
PROMPT = "a red circle moving right"


def run(pipe) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    return pipe(PROMPT, generator=torch.Generator().manual_seed(0), **CALL).frames


def test_converted_pipeline_equals_animatediff(animatediff_sources, converted_animatediff_folder):
    base, adapter = animatediff_sources
    converted = VideoLatentPipeline.from_pretrained(converted_animatediff_folder)
    assert isinstance(converted.unet, UNetSpatioTemporalModel)
    assert isinstance(converted.vae, AutoencoderKLVideo)
    reference = AnimateDiffPipeline.from_pretrained(base, motion_adapter=MotionAdapter.from_pretrained(adapter))
    expected, actual = run(reference), run(converted)
    assert actual.shape == expected.shape == (1, 3, 8, 8, 3)
    assert np.abs(actual - expected).max() < 1e-4
    assert expected.std() > 1e-3


def test_card_combines_sources(animatediff_sources, converted_animatediff_folder):
    base, adapter = animatediff_sources
    card = ModelCard.load(converted_animatediff_folder / "README.md")
    assert card.data.license == "other"  # the two sources' licenses differ; each is listed
    assert f"- Base model: `{base}` (license `creativeml-openrail-m`)" in card.text
    assert f"- Motion adapter: `{adapter}` (license `apache-2.0`)" in card.text
    assert "animatediff" in card.data.tags
    assert "| `guidance_scale` | 7.5 |" in card.text


def test_subprocess_run(animatediff_sources, tmp_path):
    base, adapter = animatediff_sources
    output = tmp_path / "out"
    argv = ["--base_model_path", str(base), "--motion_adapter_path", str(adapter), "--output_path", str(output)]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *argv, "--dtype", "bf16"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "verified: max abs difference" in result.stdout
    with safe_open(output / "unet" / "diffusion_pytorch_model.safetensors", framework="pt") as weights:
        assert {weights.get_tensor(key).dtype for key in weights.keys()} == {torch.bfloat16}
    assert VideoLatentPipeline.from_pretrained(output, torch_dtype=torch.bfloat16).unet.dtype == torch.bfloat16


def test_bad_inputs(animatediff_sources, tmp_path, capsys):
    base, adapter = animatediff_sources
    output = tmp_path / "out"

    def argv(base_path=base, adapter_path=adapter, *extra):
        return [
            "--base_model_path",
            str(base_path),
            "--motion_adapter_path",
            str(adapter_path),
            "--output_path",
            str(output),
            *extra,
        ]

    assert "`--dtype` must be one of" in script_error(convert_script, argv(base, adapter, "--dtype", "int8"), capsys)
    # adapter block widths that do not match the U-Net
    wide = tmp_path / "wide-adapter"
    build_motion_adapter(block_out_channels=(16, 32)).save_pretrained(wide)
    assert "block widths [16, 32] do not match the U-Net's [8, 16]" in script_error(
        convert_script, argv(base, wide), capsys
    )
    # not a MotionAdapter
    assert "holds a 'UNet2DConditionModel', not a diffusers MotionAdapter" in script_error(
        convert_script, argv(base, base / "unet"), capsys
    )
    # wrong _class_name of the base: a text-to-video pipeline
    t2v = tmp_path / "t2v"
    shutil.copytree(base, t2v)
    index = json.loads((t2v / "model_index.json").read_text())
    (t2v / "model_index.json").write_text(json.dumps({**index, "unet": ["diffusers", "UNet3DConditionModel"]}))
    assert "use convert_text_to_video_sd.py" in script_error(convert_script, argv(t2v, adapter), capsys)
    # missing subfolder
    missing = tmp_path / "missing"
    shutil.copytree(base, missing)
    shutil.rmtree(missing / "text_encoder")
    assert "lacks the 'text_encoder' sub-folder" in script_error(convert_script, argv(missing, adapter), capsys)
    # truncated safetensors
    truncated = tmp_path / "truncated-adapter"
    shutil.copytree(adapter, truncated)
    weights = truncated / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert "cannot load the sources" in script_error(convert_script, argv(base, truncated), capsys)
    assert not output.exists()
    # existing non-empty output without --overwrite
    output.mkdir()
    (output / "keep.txt").write_text("mine")
    assert "exists and is not empty" in script_error(convert_script, argv(), capsys)
    assert os.listdir(output) == ["keep.txt"]


def test_converted_folder_loads_through_diffusers(converted_animatediff_folder):
    # diffusers' own entry point, through the folder's `videolatent_loader.py`
    loaded = DiffusionPipeline.from_pretrained(converted_animatediff_folder, trust_remote_code=True)
    assert type(loaded) is VideoLatentPipeline
    np.testing.assert_array_equal(run(loaded), run(VideoLatentPipeline.from_pretrained(converted_animatediff_folder)))
