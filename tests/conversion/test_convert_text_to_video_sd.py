"""conversion_scripts/convert_text_to_video_sd.py on a tiny random diffusers TextToVideoSDPipeline."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, DiffusionPipeline, TextToVideoSDPipeline
from huggingface_hub import ModelCard

from diffusers_videolatent import AutoencoderKLVideo, UNetSpatioTemporalModel, VideoLatentPipeline
from diffusers_videolatent.conversion import read_safetensors_dtype

from ..testing_utils import REPOSITORY, build_unet2d, load_conversion_script, script_error


convert_script = load_conversion_script("convert_text_to_video_sd")
SCRIPT = REPOSITORY / "conversion_scripts" / "convert_text_to_video_sd.py"
CALL = {"num_frames": 3, "height": 8, "width": 8, "num_inference_steps": 2, "guidance_scale": 7.5, "output_type": "np"}
PROMPT = "a red circle moving right"


def run(pipe, generator_seed: int = 0) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    return pipe(PROMPT, generator=torch.Generator().manual_seed(generator_seed), **CALL).frames


def test_converted_pipeline_equals_source(text_to_video_sd_folder, converted_text_to_video_sd_folder):
    converted = VideoLatentPipeline.from_pretrained(converted_text_to_video_sd_folder)
    assert isinstance(converted.unet, UNetSpatioTemporalModel)
    assert isinstance(converted.vae, AutoencoderKLVideo)
    assert converted.vae.temporal_compression_ratio == 1
    assert isinstance(converted.scheduler, DDIMScheduler)
    source = TextToVideoSDPipeline.from_pretrained(text_to_video_sd_folder)
    expected, actual = run(source), run(converted)
    assert actual.shape == expected.shape == (1, 3, 8, 8, 3)
    assert np.abs(actual - expected).max() < 1e-4
    assert expected.std() > 1e-3  # a real video, not a constant


def test_card_written_with_provenance(text_to_video_sd_folder, converted_text_to_video_sd_folder):
    card = ModelCard.load(converted_text_to_video_sd_folder / "README.md")
    assert card.data.library_name == "diffusers-videolatent"
    assert card.data.pipeline_tag == "text-to-video"
    assert card.data.license == "cc-by-nc-4.0"  # carried over from the source's card
    assert card.data.base_model is None  # a local source is no Hub id
    assert f"`{text_to_video_sd_folder}` (license `cc-by-nc-4.0`)" in card.text
    assert "Verified: the converted and the source model were run on the same input" in card.text
    assert "temporal compression ratio: **1x**" in card.text
    assert "| `num_frames` | 16 |" in card.text and "| `guidance_scale` | 9.0 |" in card.text
    # the source's call defaults live in the converted pipeline itself, so a plain call uses them
    pipe = VideoLatentPipeline.from_pretrained(converted_text_to_video_sd_folder)
    assert pipe.config.generation_defaults == {
        "num_frames": 16,
        "num_inference_steps": 50,
        "guidance_scale": 9.0,
        "fps": 8,
    }


def test_fp16_variant_and_subprocess(text_to_video_sd_folder, tmp_path):
    output = tmp_path / "fp16"
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--checkpoint_path",
            str(text_to_video_sd_folder),
            "--output_path",
            str(output),
            "--dtype",
            "fp16",
            "--variant",
            "fp16",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "verified: max abs difference" in result.stdout
    assert (output / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    pipe = VideoLatentPipeline.from_pretrained(output, variant="fp16", torch_dtype=torch.float16)
    assert pipe.unet.dtype == torch.float16 and pipe.vae.dtype == torch.float16
    assert not any(name.startswith(".") for name in os.listdir(tmp_path))  # no temporary folder left


def test_fp16_variant_source_keeps_its_dtype(text_to_video_sd_folder, text_to_video_sd_fp16_folder, tmp_path, capsys):
    source = text_to_video_sd_fp16_folder
    assert not (source / "unet" / "diffusion_pytorch_model.safetensors").exists()  # the variant files only
    output = tmp_path / "kept"
    argv = ["--checkpoint_path", str(source), "--source_variant", "fp16", "--output_path", str(output)]
    assert convert_script.main(argv) == 0
    verified = float(capsys.readouterr().out.split("pipeline outputs ")[1].split()[0])
    assert verified < 1e-4
    # saved in the source's float16 (no variant suffix unless --variant asks for one)
    for weights in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"):
        assert read_safetensors_dtype(str(output / weights)) == torch.float16
    assert read_safetensors_dtype(str(output / "text_encoder" / "model.safetensors")) == torch.float16
    # the float16 conversion computes what the float16 source does, both run in float32
    converted = VideoLatentPipeline.from_pretrained(output, torch_dtype=torch.float32)
    reference = TextToVideoSDPipeline.from_pretrained(source, variant="fp16", torch_dtype=torch.float32)
    assert np.abs(run(converted) - run(reference)).max() < 1e-4
    # and it differs from the float32 original only by the float16 rounding of the weights
    original = TextToVideoSDPipeline.from_pretrained(text_to_video_sd_folder)
    assert 0 < np.abs(run(converted) - run(original)).max() < 1e-2

    # --dtype float32 overrides the source's dtype
    upcast = tmp_path / "upcast"
    argv = ["--checkpoint_path", str(source), "--source_variant", "fp16", "--output_path", str(upcast)]
    assert convert_script.main([*argv, "--dtype", "float32", "--no-verify"]) == 0
    assert read_safetensors_dtype(str(upcast / "unet" / "diffusion_pytorch_model.safetensors")) == torch.float32
    assert read_safetensors_dtype(str(upcast / "text_encoder" / "model.safetensors")) == torch.float32


def test_wrong_or_missing_source_variant_is_one_line(text_to_video_sd_fp16_folder, tmp_path, capsys):
    source = str(text_to_video_sd_fp16_folder)
    output = tmp_path / "out"
    wrong = script_error(
        convert_script,
        ["--checkpoint_path", source, "--source_variant", "bf16", "--output_path", str(output)],
        capsys,
    )
    assert "`--source_variant` 'bf16'" in wrong and "diffusion_pytorch_model.bf16.safetensors" in wrong
    # a variant-only source read without --source_variant: the loader's own message, naming the source
    missing = script_error(convert_script, ["--checkpoint_path", source, "--output_path", str(output)], capsys)
    assert f"cannot load `--checkpoint_path` {source!r}" in missing
    assert not output.exists()


def test_push_to_hub_hands_the_folder_to_huggingface_hub(text_to_video_sd_folder, tmp_path, monkeypatch):
    import diffusers_videolatent.hub as hub

    calls = []
    monkeypatch.setattr(
        hub, "create_repo", lambda repo_id, **kwargs: calls.append(repo_id) or type("R", (), {"repo_id": repo_id})
    )
    monkeypatch.setattr(hub, "upload_folder", lambda **kwargs: calls.append(kwargs) or "commit-url")
    output = tmp_path / "pushed"
    argv = ["--checkpoint_path", str(text_to_video_sd_folder), "--output_path", str(output), "--no-verify"]
    assert convert_script.main([*argv, "--push_to_hub", "--repo_id", "org/tiny-t2v"]) == 0
    assert calls[0] == "org/tiny-t2v"
    assert calls[1]["folder_path"] == str(output) and calls[1]["repo_id"] == "org/tiny-t2v"
    card = (output / "README.md").read_text()
    assert 'VideoLatentPipeline.from_pretrained("org/tiny-t2v"' in card
    assert "Not verified" in card


def copy_source(source: Path, destination: Path) -> Path:
    import shutil

    shutil.copytree(source, destination)
    return destination


def test_bad_inputs(text_to_video_sd_folder, tmp_path, capsys):
    output = tmp_path / "out"
    base = ["--output_path", str(output)]

    # unknown dtype
    assert "`--dtype` must be one of fp32, fp16, bf16, got 'fp64'" in script_error(
        convert_script, ["--checkpoint_path", str(text_to_video_sd_folder), *base, "--dtype", "fp64"], capsys
    )
    # wrong _class_name
    wrong_class = copy_source(text_to_video_sd_folder, tmp_path / "wrong-class")
    index = json.loads((wrong_class / "model_index.json").read_text())
    (wrong_class / "model_index.json").write_text(json.dumps({**index, "_class_name": "StableDiffusionPipeline"}))
    assert "holds a 'StableDiffusionPipeline', not a TextToVideoSDPipeline" in script_error(
        convert_script, ["--checkpoint_path", str(wrong_class), *base], capsys
    )
    # missing subfolder
    missing = copy_source(text_to_video_sd_folder, tmp_path / "missing")
    import shutil

    shutil.rmtree(missing / "vae")
    assert "lacks the 'vae' sub-folder" in script_error(
        convert_script, ["--checkpoint_path", str(missing), *base], capsys
    )
    # an image U-Net handed to the text-to-video script
    image_unet = copy_source(text_to_video_sd_folder, tmp_path / "image-unet")
    shutil.rmtree(image_unet / "unet")
    build_unet2d().save_pretrained(image_unet / "unet")
    index = json.loads((image_unet / "model_index.json").read_text())
    index["unet"] = ["diffusers", "UNet2DConditionModel"]
    (image_unet / "model_index.json").write_text(json.dumps(index))
    assert "use convert_animatediff.py" in script_error(
        convert_script, ["--checkpoint_path", str(image_unet), *base], capsys
    )
    # truncated safetensors
    truncated = copy_source(text_to_video_sd_folder, tmp_path / "truncated")
    weights = truncated / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert "cannot load `--checkpoint_path`" in script_error(
        convert_script, ["--checkpoint_path", str(truncated), *base], capsys
    )
    # not a folder, not a Hub id
    assert "neither an existing folder nor a Hub id" in script_error(
        convert_script, ["--checkpoint_path", str(tmp_path / "nope" / "x" / "y"), *base], capsys
    )
    # --push_to_hub without --repo_id
    assert "`--push_to_hub` needs `--repo_id`" in script_error(
        convert_script, ["--checkpoint_path", str(text_to_video_sd_folder), *base, "--push_to_hub"], capsys
    )
    # a missing required argument is one line too
    assert "--checkpoint_path" in script_error(convert_script, base, capsys)
    assert not output.exists()

    # an existing non-empty output folder without --overwrite
    output.mkdir()
    (output / "keep.txt").write_text("mine")
    assert "exists and is not empty; pass --overwrite" in script_error(
        convert_script, ["--checkpoint_path", str(text_to_video_sd_folder), *base], capsys
    )
    assert os.listdir(output) == ["keep.txt"]
    assert (
        convert_script.main(["--checkpoint_path", str(text_to_video_sd_folder), *base, "--overwrite", "--no-verify"])
        == 0
    )
    assert (output / "model_index.json").is_file() and not (output / "keep.txt").exists()


def test_verification_failure_writes_nothing(text_to_video_sd_folder, tmp_path, capsys):
    output = tmp_path / "out"
    # A negative tolerance cannot be met: the script must stop with exit code 1 and leave nothing behind.
    assert (
        convert_script.main(
            [
                "--checkpoint_path",
                str(text_to_video_sd_folder),
                "--output_path",
                str(output),
                "--atol",
                "-1",
                "--rtol",
                "0",
            ]
        )
        == 1
    )
    assert "verification failed, nothing written" in capsys.readouterr().err
    assert not output.exists()


def test_converted_folder_loads_through_diffusers(converted_text_to_video_sd_folder):
    # diffusers' own entry point, through the folder's `videolatent_loader.py`
    loaded = DiffusionPipeline.from_pretrained(converted_text_to_video_sd_folder, trust_remote_code=True)
    assert type(loaded) is VideoLatentPipeline
    np.testing.assert_array_equal(
        run(loaded), run(VideoLatentPipeline.from_pretrained(converted_text_to_video_sd_folder))
    )
