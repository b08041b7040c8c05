"""Publishing and loading through the Hub, without the network.

The two huggingface_hub calls that reach the network (`create_repo`, `upload_folder`) are replaced by recorders that
check the arguments and the folder as it is at upload time; loading by Hub id runs against a snapshot laid out as the
Hub cache lays it out, with `HF_HUB_OFFLINE=1`.
"""

import json
import shutil

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard

from diffusers_videolatent import VideoLatentPipeline
from diffusers_videolatent.hub import push_folder_to_hub

from .testing_utils import build_video_vae


def test_push_folder_writes_card_and_uploads(pipeline_folder, hub_recorder):
    result = push_folder_to_hub(
        pipeline_folder, "tiny-video", private=True, token="hf_x", card_kwargs={"license": "mit"}
    )
    assert result == "https://huggingface.co/commit/0123"
    (name, repo_id, kwargs), upload = hub_recorder.calls
    assert (name, repo_id) == ("create_repo", "tiny-video")
    assert kwargs == {"token": "hf_x", "private": True, "exist_ok": True, "repo_type": "model"}
    _, upload_kwargs, files, readme = upload
    assert upload_kwargs == {
        "repo_id": "me/tiny-video",
        "folder_path": str(pipeline_folder),
        "repo_type": "model",
        "token": "hf_x",
        "revision": None,
        "commit_message": "Upload pipeline with diffusers-videolatent",
        "create_pr": False,
    }
    expected = ["README.md", "model_index.json", "scheduler", "text_encoder", "tokenizer", "unet", "vae"]
    assert files == sorted([*expected, "videolatent_loader.py"])
    card = ModelCard(readme)
    assert card.data.license == "mit"
    assert card.data.library_name == "diffusers-videolatent"
    # The snippet names the id create_repo returned (with the namespace), not the bare name given.
    assert 'VideoLatentPipeline.from_pretrained("me/tiny-video"' in card.text


def test_push_folder_keeps_existing_card(pipeline_folder, hub_recorder):
    (pipeline_folder / "README.md").write_text("---\nlicense: mit\n---\n# My own card\n")
    push_folder_to_hub(pipeline_folder, "org/tiny", revision="dev", commit_message="v1", create_pr=True)
    _, upload_kwargs, _, readme = hub_recorder.calls[1]
    assert readme == "---\nlicense: mit\n---\n# My own card\n"
    assert (upload_kwargs["revision"], upload_kwargs["commit_message"], upload_kwargs["create_pr"]) == (
        "dev",
        "v1",
        True,
    )


def test_push_single_model_folder(tmp_path, hub_recorder):
    folder = tmp_path / "vae"
    build_video_vae().save_pretrained(folder)
    push_folder_to_hub(folder, "org/vae")
    _, upload_kwargs, files, readme = hub_recorder.calls[1]
    assert upload_kwargs["commit_message"] == "Upload AutoencoderKLVideo with diffusers-videolatent"
    assert "README.md" in files and 'AutoencoderKLVideo.from_pretrained("org/vae")' in readme


def test_push_refuses_bad_folders_before_any_hub_call(tmp_path, pipeline_folder, hub_recorder):
    with pytest.raises(ValueError, match="should be an existing directory"):
        push_folder_to_hub(tmp_path / "missing", "org/x")
    with pytest.raises(ValueError, match="`repo_id` should be a non-empty string"):
        push_folder_to_hub(pipeline_folder, "  ")
    index = json.loads((pipeline_folder / "model_index.json").read_text())
    (pipeline_folder / "model_index.json").write_text(json.dumps({**index, "_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ValueError, match="'StableDiffusionPipeline'; expected 'VideoLatentPipeline'"):
        push_folder_to_hub(pipeline_folder, "org/x")
    (pipeline_folder / "model_index.json").write_text(json.dumps(index))
    shutil.rmtree(pipeline_folder / "vae")
    with pytest.raises(ValueError, match=r"lacks the component sub-folder\(s\) \['vae'\]"):
        push_folder_to_hub(pipeline_folder, "org/x")
    assert hub_recorder.calls == []
    assert not (pipeline_folder / "README.md").exists()


def test_pipeline_push_to_hub_uploads_our_card(pipeline_folder, diffusers_hub_recorder):
    VideoLatentPipeline.from_pretrained(pipeline_folder).push_to_hub("org/tiny")
    _, upload_kwargs, files, readme = diffusers_hub_recorder.calls[1]
    assert upload_kwargs["repo_id"] == "org/tiny"
    assert "model_index.json" in files
    assert ModelCard(readme).data.library_name == "diffusers-videolatent"
    assert 'VideoLatentPipeline.from_pretrained("org/tiny"' in readme


def test_model_push_to_hub_uploads_our_card(diffusers_hub_recorder):
    build_video_vae().push_to_hub("org/tiny-vae")
    _, upload_kwargs, files, readme = diffusers_hub_recorder.calls[1]
    assert upload_kwargs["repo_id"] == "org/tiny-vae"
    assert "config.json" in files and "diffusion_pytorch_model.safetensors" in files
    assert ModelCard(readme).data.library_name == "diffusers-videolatent"
    assert 'AutoencoderKLVideo.from_pretrained("org/tiny-vae")' in readme


def test_load_by_hub_id_from_offline_cache(tmp_path, pipeline_folder, monkeypatch):
    # Lay the saved pipeline out as the Hub cache does: blobs, a snapshot per revision, refs/main.
    cache = tmp_path / "hub-cache"
    repo = cache / "models--org--tiny-video"
    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / revision
    shutil.copytree(pipeline_folder, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads HF_HUB_OFFLINE at import time; patch the constant it already read as well.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    loaded = VideoLatentPipeline.from_pretrained(
        "org/tiny-video", cache_dir=str(cache), local_files_only=True, torch_dtype=torch.float32
    )
    local = VideoLatentPipeline.from_pretrained(pipeline_folder)
    by_revision = VideoLatentPipeline.from_pretrained(
        "org/tiny-video", cache_dir=str(cache), revision=revision, local_files_only=True
    )
    arguments = {"num_frames": 3, "height": 8, "width": 8, "num_inference_steps": 2, "output_type": "np"}
    outputs = [
        pipe("a red circle", generator=torch.Generator().manual_seed(0), **arguments).frames
        for pipe in (loaded, local, by_revision)
    ]
    assert outputs[0].shape == (1, 3, 8, 8, 3)
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_array_equal(outputs[2], outputs[1])

    # Offline, a repository that is not in the cache fails with huggingface_hub's own error, not a download attempt.
    with pytest.raises(Exception, match="(?i)offline|local_files_only|cannot find|not found|connect"):
        VideoLatentPipeline.from_pretrained("org/not-cached", cache_dir=str(cache), local_files_only=True)
