"""Tests of conversion_scripts/convert_image_vae.py and the shared helpers in diffusers_videolatent.conversion."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, AutoModel
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from diffusers_videolatent import AutoencoderKLVideo
from diffusers_videolatent.conversion import (
    VerificationError,
    check_output_path,
    parse_dtype,
    read_safetensors_dtype,
    save_atomically,
    verify_close,
)

from ..testing_utils import REPOSITORY, build_image_vae, load_conversion_script, script_error


convert_image_vae = load_conversion_script("convert_image_vae")
SCRIPT = REPOSITORY / "conversion_scripts" / "convert_image_vae.py"


def listing(path: Path) -> list[str]:
    return sorted(os.listdir(path))


# ------------------------------------------------------------------------------------------------------------------
# Shared helpers
# ------------------------------------------------------------------------------------------------------------------


def test_parse_dtype():
    assert parse_dtype("fp32") is torch.float32
    assert parse_dtype("fp16") is torch.float16
    assert parse_dtype("bf16") is torch.bfloat16
    assert parse_dtype("float32") is torch.float32 and parse_dtype("bfloat16") is torch.bfloat16
    with pytest.raises(ValueError, match="fp32, fp16, bf16.*'float64'"):
        parse_dtype("float64")


def test_save_atomically(tmp_path):
    output = tmp_path / "model"

    def write(text):
        return lambda path: Path(path, "weights.txt").write_text(text)

    save_atomically(write("first"), str(output))
    assert Path(output, "weights.txt").read_text() == "first"
    umask = os.umask(0)
    os.umask(umask)
    assert output.stat().st_mode & 0o777 == 0o777 & ~umask  # not the private mode of a temporary folder

    # an existing non-empty folder is kept unless overwrite
    with pytest.raises(ValueError, match="not empty.*--overwrite"):
        save_atomically(write("second"), str(output))
    assert Path(output, "weights.txt").read_text() == "first"
    save_atomically(write("second"), str(output), overwrite=True)
    assert Path(output, "weights.txt").read_text() == "second"

    # a failing save leaves nothing behind, not even the temporary folder
    def failing(path):
        Path(path, "partial.txt").write_text("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_atomically(failing, str(tmp_path / "other"))
    assert listing(tmp_path) == ["model"]

    # an empty folder may be filled; a file is refused
    (tmp_path / "empty").mkdir()
    save_atomically(write("third"), str(tmp_path / "empty"))
    assert Path(tmp_path, "empty", "weights.txt").read_text() == "third"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="existing file"):
        check_output_path(str(tmp_path / "file"))


def test_verify_close():
    reference = torch.zeros(2, 3)
    assert verify_close(reference + 1e-5, reference, atol=1e-4) == pytest.approx(1e-5)
    with pytest.raises(VerificationError, match=r"decode: max abs difference 1\.000e-03 exceeds"):
        verify_close(reference + 1e-3, reference, atol=1e-4, name="decode")
    with pytest.raises(VerificationError, match="shape"):
        verify_close(torch.zeros(3, 2), reference)
    with pytest.raises(VerificationError):
        verify_close(torch.full((2, 3), float("nan")), reference, atol=1.0)
    assert verify_close(torch.ones(2, 3) * 1.001, torch.ones(2, 3), atol=0.0, rtol=1e-2) == pytest.approx(
        1e-3, rel=1e-3
    )


# ------------------------------------------------------------------------------------------------------------------
# The script
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [1, 4])
def test_main_converts_and_verifies(image_vae_path, tmp_path, capsys, ratio):
    output = tmp_path / f"video_vae_{ratio}"
    code = convert_image_vae.main(
        [
            "--vae_path",
            str(image_vae_path),
            "--subfolder",
            "vae",
            "--temporal_compression_ratio",
            str(ratio),
            "--output_path",
            str(output),
        ]
    )
    assert code == 0
    assert "verified" in capsys.readouterr().out
    assert "diffusion_pytorch_model.safetensors" in listing(output)

    loaded = AutoencoderKLVideo.from_pretrained(output).eval()
    # diffusers' own entry point loads the same model, through the folder's `videolatent_loader.py`
    through_diffusers = AutoModel.from_pretrained(str(output), trust_remote_code=True)
    assert type(through_diffusers) is AutoencoderKLVideo
    image_vae = AutoencoderKL.from_pretrained(image_vae_path, subfolder="vae").eval()
    expected = AutoencoderKLVideo.from_image_vae(image_vae, temporal_compression_ratio=ratio)
    assert loaded.temporal_compression_ratio == ratio
    assert loaded.config.scaling_factor == 0.3
    loaded_state, expected_state = loaded.state_dict(), expected.state_dict()
    assert loaded_state.keys() == expected_state.keys()
    assert all(torch.equal(loaded_state[key], expected_state[key]) for key in expected_state)
    assert all(torch.equal(through_diffusers.state_dict()[key], expected_state[key]) for key in expected_state)


def test_main_writes_the_model_card(image_vae_path, tmp_path, capsys):
    (image_vae_path / "README.md").write_text("---\nlicense: mit\n---\n# A tiny image VAE\n")
    output = tmp_path / "video_vae"
    argv = ["--vae_path", str(image_vae_path), "--subfolder", "vae", "--temporal_compression_ratio", "2"]
    try:
        assert convert_image_vae.main([*argv, "--output_path", str(output), "--atol", "1e-3"]) == 0
    finally:
        (image_vae_path / "README.md").unlink()
    assert "saved AutoencoderKLVideo (temporal ratio 2) to" in capsys.readouterr().out
    card = ModelCard.load(output / "README.md")
    assert card.data.library_name == "diffusers-videolatent"
    assert card.data.pipeline_tag is None  # a VAE, not a text-to-video pipeline
    assert card.data.license == "mit"  # carried over from the source's card
    assert card.data.base_model is None  # a local source is no Hub id
    assert f"- Image VAE (AutoencoderKL, subfolder `vae`): `{image_vae_path}` (license `mit`)" in card.text
    assert "- Script: `conversion_scripts/convert_image_vae.py`" in card.text
    assert f"--vae_path {image_vae_path} --subfolder vae --temporal_compression_ratio 2" in card.text
    assert "(encode and decode of a random video, the first frame against the image VAE)" in card.text
    assert "within the stated tolerance of atol=0.001, rtol=0.0001." in card.text
    assert f'AutoencoderKLVideo.from_pretrained("{output}")' in card.text


def test_main_push_to_hub_uploads_the_folder_with_its_card(image_vae_path, tmp_path, monkeypatch, capsys):
    import diffusers_videolatent.hub as hub

    calls = []
    monkeypatch.setattr(
        hub, "create_repo", lambda repo_id, **kwargs: calls.append(repo_id) or type("R", (), {"repo_id": repo_id})
    )
    monkeypatch.setattr(hub, "upload_folder", lambda **kwargs: calls.append(kwargs) or "commit-url")
    output = tmp_path / "pushed"
    argv = ["--vae_path", str(image_vae_path), "--subfolder", "vae", "--output_path", str(output), "--no-verify"]
    assert convert_image_vae.main([*argv, "--push_to_hub", "--repo_id", "org/tiny-video-vae"]) == 0
    assert "uploaded: commit-url" in capsys.readouterr().out
    assert calls[0] == "org/tiny-video-vae"
    assert calls[1]["folder_path"] == str(output) and calls[1]["repo_id"] == "org/tiny-video-vae"
    card = (output / "README.md").read_text()
    assert 'AutoencoderKLVideo.from_pretrained("org/tiny-video-vae")' in card
    assert "Not verified" in card


def test_main_dtype_variant_and_bin(image_vae_path, tmp_path):
    output = tmp_path / "half"
    arguments = ["--vae_path", str(image_vae_path), "--subfolder", "vae", "--output_path", str(output)]
    code = convert_image_vae.main(
        arguments + ["--dtype", "fp16", "--variant", "fp16", "--no-safe_serialization", "--no-verify"]
    )
    assert code == 0
    assert "diffusion_pytorch_model.fp16.bin" in listing(output)
    weights = torch.load(output / "diffusion_pytorch_model.fp16.bin", weights_only=True)
    assert {tensor.dtype for tensor in weights.values()} == {torch.float16}
    loaded = AutoencoderKLVideo.from_pretrained(
        output, variant="fp16", use_safetensors=False, torch_dtype=torch.float16
    )
    assert loaded.temporal_compression_ratio == 1

    # --overwrite replaces the folder
    assert convert_image_vae.main(arguments + ["--overwrite", "--dtype", "bf16"]) == 0
    assert listing(output) == [
        "README.md",
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "videolatent_loader.py",
    ]
    weights = load_file(output / "diffusion_pytorch_model.safetensors")
    assert {tensor.dtype for tensor in weights.values()} == {torch.bfloat16}


def test_main_bad_input(image_vae_path, tmp_path, capsys):
    video_vae_path = tmp_path / "not_an_image_vae"
    AutoencoderKLVideo(
        block_out_channels=(8, 16), temporal_downsample=(False, False), norm_num_groups=4
    ).save_pretrained(video_vae_path)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("keep")
    source = ["--vae_path", str(image_vae_path), "--subfolder", "vae"]
    output = str(tmp_path / "out")
    cases = [
        (["--vae_path", str(video_vae_path), "--output_path", output], "holds a 'AutoencoderKLVideo'"),
        (["--vae_path", str(image_vae_path), "--subfolder", "unet", "--output_path", output], "'unet' does not exist"),
        (["--vae_path", str(tmp_path / "missing"), "--output_path", output], "no readable diffusers config"),
        (source + ["--output_path", output, "--dtype", "fp64"], "`--dtype` must be one of"),
        (source + ["--output_path", str(occupied)], "not empty"),
        (source + ["--output_path", output, "--temporal_compression_ratio", "3"], "1, 2, 4 or 8"),
        (source + ["--output_path", output, "--push_to_hub"], "--repo_id"),
        (source + ["--output_path", output, "--temporal_compression_ratio", "four"], "invalid int value"),
        (source, "--output_path"),
    ]
    for arguments, message in cases:
        assert convert_image_vae.main(arguments) == 2, arguments
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and message in error[0], (arguments, error)
        assert error[0].startswith("convert_image_vae: error:")
        assert not os.path.exists(output)
    assert listing(occupied) == ["keep.txt"]


def test_main_refuses_to_write_a_failed_verification(image_vae_path, tmp_path, capsys):
    # A corrupted checkpoint (a NaN weight) cannot match within any tolerance: exit code 1, nothing written.
    vae = AutoencoderKL.from_pretrained(image_vae_path, subfolder="vae")
    with torch.no_grad():
        vae.decoder.conv_out.weight[0, 0, 0, 0] = float("nan")
    vae.save_pretrained(tmp_path / "corrupt")
    output = tmp_path / "out"
    code = convert_image_vae.main(["--vae_path", str(tmp_path / "corrupt"), "--output_path", str(output)])
    assert code == 1
    assert "verification failed, nothing written" in capsys.readouterr().err
    assert listing(tmp_path) == ["corrupt"]


def test_verify_detects_a_wrong_conversion(image_vae_path):
    vae = AutoencoderKL.from_pretrained(image_vae_path, subfolder="vae").eval()
    video_vae = convert_image_vae.convert(vae, temporal_compression_ratio=2)
    assert max(convert_image_vae.verify(vae, video_vae).values()) < 1e-4
    with torch.no_grad():
        video_vae.encoder.conv_in.weight[:, :, -1].add_(0.01)
    with pytest.raises(VerificationError, match="encode: max abs difference"):
        convert_image_vae.verify(vae, video_vae)


def test_script_runs_as_a_subprocess(image_vae_path, tmp_path):
    output = tmp_path / "video_vae"
    environment = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    command = [sys.executable, str(SCRIPT), "--vae_path", str(image_vae_path / "vae"), "--output_path", str(output)]
    result = subprocess.run(
        command + ["--temporal_compression_ratio", "2"], capture_output=True, text=True, env=environment, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "verified" in result.stdout
    assert AutoencoderKLVideo.from_pretrained(output).temporal_compression_ratio == 2

    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 2
    assert "convert_image_vae: error: `--output_path`" in result.stderr
    assert "Traceback" not in result.stderr


def test_fp16_variant_source_keeps_its_dtype(tmp_path, capsys):
    source = tmp_path / "vae_fp16"
    build_image_vae().half().save_pretrained(source, variant="fp16")
    output = tmp_path / "video_vae"
    argv = ["--vae_path", str(source), "--source_variant", "fp16", "--output_path", str(output)]
    assert convert_image_vae.main(argv) == 0
    assert "verified: max abs difference" in capsys.readouterr().out
    assert read_safetensors_dtype(str(output / "diffusion_pytorch_model.safetensors")) == torch.float16
    upcast = tmp_path / "upcast"
    argv = ["--vae_path", str(source), "--source_variant", "fp16", "--output_path", str(upcast), "--dtype", "float32"]
    assert convert_image_vae.main(argv) == 0
    assert read_safetensors_dtype(str(upcast / "diffusion_pytorch_model.safetensors")) == torch.float32

    error = script_error(convert_image_vae, ["--vae_path", str(source), "--output_path", str(tmp_path / "x")], capsys)
    assert f"cannot load `--vae_path` {str(source)!r}" in error
    argv = ["--vae_path", str(source), "--source_variant", "fp8", "--output_path", str(tmp_path / "x")]
    error = script_error(convert_image_vae, argv, capsys)
    assert "`--source_variant` 'fp8'" in error and "diffusion_pytorch_model.fp8.safetensors" in error
    assert not (tmp_path / "x").exists()
