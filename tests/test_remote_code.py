"""Loading our folders with diffusers' own entry points: `DiffusionPipeline` and `AutoModel` with `trust_remote_code`.

Every folder kind is covered: `save_pretrained` of the pipeline and of each model, the folder `push_to_hub` uploads, a
Hub-cache snapshot loaded by repo id offline, a folder saved before the remote-code layout, and the shipped default
model (the conversion scripts' folders are tested beside their scripts, in tests/conversion).
"""

import json
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoModel, DiffusionPipeline
from huggingface_hub import ModelCard
from transformers import CLIPTextModel

from diffusers_videolatent import AutoencoderKLVideo, UNetSpatioTemporalModel, VideoLatentPipeline
from diffusers_videolatent.remote_code import REMOTE_MODULE_FILE, REMOTE_MODULE_SOURCE, write_remote_code

from .testing_utils import HubRecorder


ARGUMENTS = {"num_frames": 5, "height": 8, "width": 8, "num_inference_steps": 2, "output_type": "np"}


def generate(pipe) -> np.ndarray:
    return pipe("a red circle", generator=torch.Generator().manual_seed(0), **ARGUMENTS).frames


def public_config(model) -> dict:
    # as saved (tuples become lists), without the private keys loading adds (`_name_or_path`, ...)
    return {
        key: value
        for key, value in json.loads(json.dumps(dict(model.config), default=str)).items()
        if not key.startswith("_")
    }


def assert_same_model(loaded, reference) -> None:
    assert type(loaded) is type(reference)
    assert public_config(loaded) == public_config(reference)
    reference_state = reference.state_dict()
    loaded_state = loaded.state_dict()
    assert loaded_state.keys() == reference_state.keys()
    for name, tensor in reference_state.items():
        torch.testing.assert_close(loaded_state[name], tensor, rtol=0, atol=0, msg=name)


def hub_cache_snapshot(folder: Path, cache: Path, repo_id: str) -> str:
    # The Hub cache's layout: models--org--name/snapshots/<commit>/... and refs/main naming the commit.
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / revision)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    return revision


def test_saved_layout_names_the_remote_module(saved_pipeline):
    _, folder = saved_pipeline
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == ["videolatent_loader", "VideoLatentPipeline"]
    assert index["auto_map"] == {"AutoModel": "videolatent_loader.VideoLatentAutoModel"}
    assert index["unet"] == ["videolatent_loader", "UNetSpatioTemporalModel"]
    assert index["vae"] == ["videolatent_loader", "AutoencoderKLVideo"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    for subfolder, class_name in (("unet", "UNetSpatioTemporalModel"), ("vae", "AutoencoderKLVideo")):
        config = json.loads((folder / subfolder / "config.json").read_text())
        assert config["auto_map"] == {"AutoModel": f"videolatent_loader.{class_name}"}
    for module in (
        folder / REMOTE_MODULE_FILE,
        folder / "unet" / REMOTE_MODULE_FILE,
        folder / "vae" / REMOTE_MODULE_FILE,
    ):
        assert module.read_text() == REMOTE_MODULE_SOURCE
    assert (folder / "text_encoder" / REMOTE_MODULE_FILE).read_text() == REMOTE_MODULE_SOURCE
    assert not (folder / "scheduler" / REMOTE_MODULE_FILE).exists()
    # idempotent: a second pass changes no byte
    before = {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    assert write_remote_code(folder) == "pipeline"
    assert {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()} == before


def test_pipeline_save_passes_variant_and_format_to_our_models(saved_pipeline, tmp_path):
    # a pipeline hands `variant`/`safe_serialization` only to components whose `save_pretrained` names them
    pipe, _ = saved_pipeline
    pipe.save_pretrained(tmp_path / "saved", variant="fp16", safe_serialization=False)
    for subfolder in ("unet", "vae"):
        names = sorted(path.name for path in (tmp_path / "saved" / subfolder).iterdir())
        assert names == ["config.json", "diffusion_pytorch_model.fp16.bin", REMOTE_MODULE_FILE]
    loaded = DiffusionPipeline.from_pretrained(tmp_path / "saved", variant="fp16", trust_remote_code=True)
    assert_same_model(loaded.unet, pipe.unet)


def test_diffusion_pipeline_loads_the_saved_folder(saved_pipeline):
    pipe, folder = saved_pipeline
    expected = generate(pipe)
    loaded = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    assert type(loaded) is VideoLatentPipeline
    assert_same_model(loaded.unet, pipe.unet)
    assert_same_model(loaded.vae, pipe.vae)
    np.testing.assert_array_equal(generate(loaded), expected)

    # diffusers' own rule: a folder with code is not run without the caller's consent
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        DiffusionPipeline.from_pretrained(folder)


def test_auto_model_loads_each_component(saved_pipeline, tmp_path):
    pipe, folder = saved_pipeline
    assert_same_model(AutoModel.from_pretrained(str(folder), subfolder="unet", trust_remote_code=True), pipe.unet)
    assert_same_model(AutoModel.from_pretrained(str(folder), subfolder="vae", trust_remote_code=True), pipe.vae)
    text_encoder = AutoModel.from_pretrained(str(folder), subfolder="text_encoder", trust_remote_code=True)
    assert isinstance(text_encoder, CLIPTextModel)
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        AutoModel.from_pretrained(str(folder), subfolder="unet")

    # single models saved on their own: config.json's auto_map names the class
    for model in (pipe.unet, pipe.vae):
        model_folder = tmp_path / type(model).__name__
        model.save_pretrained(model_folder)
        assert (model_folder / REMOTE_MODULE_FILE).read_text() == REMOTE_MODULE_SOURCE
        assert_same_model(AutoModel.from_pretrained(str(model_folder), trust_remote_code=True), model)
        assert_same_model(type(model).from_pretrained(model_folder), model)


def test_our_classes_load_without_running_the_folder_code(saved_pipeline, tmp_path):
    pipe, folder = saved_pipeline
    expected = generate(pipe)
    tampered = tmp_path / "tampered"
    shutil.copytree(folder, tampered)
    for module in tampered.rglob(REMOTE_MODULE_FILE):
        module.write_text('raise RuntimeError("the folder code ran")\n')

    loaded = VideoLatentPipeline.from_pretrained(tampered)
    np.testing.assert_array_equal(generate(loaded), expected)
    assert_same_model(UNetSpatioTemporalModel.from_pretrained(tampered, subfolder="unet"), pipe.unet)
    assert_same_model(AutoencoderKLVideo.from_pretrained(tampered, subfolder="vae"), pipe.vae)
    # diffusers' loader does run it (so the check above can fail)
    with pytest.raises(RuntimeError, match="the folder code ran"):
        DiffusionPipeline.from_pretrained(tampered, trust_remote_code=True)


def test_folder_of_the_older_layout(saved_pipeline, tmp_path):
    pipe, folder = saved_pipeline
    expected = generate(pipe)
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    # what save_pretrained wrote before the remote-code layout
    for module in old.rglob(REMOTE_MODULE_FILE):
        module.unlink()
    index = json.loads((old / "model_index.json").read_text())
    index.pop("auto_map")
    index["_class_name"] = "VideoLatentPipeline"
    index["unet"] = ["diffusers_videolatent.models.unet_spatio_temporal", "UNetSpatioTemporalModel"]
    index["vae"] = ["diffusers_videolatent.models.autoencoder_kl_video", "AutoencoderKLVideo"]
    (old / "model_index.json").write_text(json.dumps(index))
    for subfolder in ("unet", "vae"):
        config = json.loads((old / subfolder / "config.json").read_text())
        config.pop("auto_map")
        (old / subfolder / "config.json").write_text(json.dumps(config))

    np.testing.assert_array_equal(generate(VideoLatentPipeline.from_pretrained(old)), expected)
    with pytest.raises(AttributeError, match="VideoLatentPipeline"):
        DiffusionPipeline.from_pretrained(old, trust_remote_code=True)

    # upgraded in place, it loads through diffusers too
    assert write_remote_code(old) == "pipeline"
    np.testing.assert_array_equal(generate(DiffusionPipeline.from_pretrained(old, trust_remote_code=True)), expected)


def test_hub_cache_snapshot_by_repo_id_offline(saved_pipeline, tmp_path, monkeypatch):
    pipe, folder = saved_pipeline
    expected = generate(pipe)
    cache = tmp_path / "hub-cache"
    revision = hub_cache_snapshot(folder, cache, "org/tiny-video")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    loaded = DiffusionPipeline.from_pretrained("org/tiny-video", cache_dir=str(cache), trust_remote_code=True)
    assert type(loaded) is VideoLatentPipeline
    np.testing.assert_array_equal(generate(loaded), expected)
    ours = VideoLatentPipeline.from_pretrained("org/tiny-video", cache_dir=str(cache))
    np.testing.assert_array_equal(generate(ours), expected)

    snapshot = cache / "models--org--tiny-video" / "snapshots" / revision
    assert_same_model(AutoModel.from_pretrained(str(snapshot), subfolder="unet", trust_remote_code=True), pipe.unet)


def test_folder_uploaded_by_push_to_hub(saved_pipeline, tmp_path, monkeypatch):
    import diffusers.utils.hub_utils as hub_utils

    uploaded = tmp_path / "uploaded"

    class CopyingRecorder(HubRecorder):
        def upload_folder(self, **kwargs):
            shutil.copytree(kwargs["folder_path"], uploaded)
            return super().upload_folder(**kwargs)

    recorder = CopyingRecorder()
    monkeypatch.setattr(hub_utils, "create_repo", recorder.create_repo)
    monkeypatch.setattr(hub_utils, "upload_folder", recorder.upload_folder)
    # what diffusers' `load_or_create_model_card` returns for a repository without a card (it asks the Hub first)
    monkeypatch.setattr(hub_utils, "load_or_create_model_card", lambda *args, **kwargs: ModelCard("---\n---\n"))
    pipe, _ = saved_pipeline
    pipe.push_to_hub("org/tiny")

    assert (uploaded / REMOTE_MODULE_FILE).is_file() and (uploaded / "unet" / REMOTE_MODULE_FILE).is_file()
    loaded = DiffusionPipeline.from_pretrained(uploaded, trust_remote_code=True)
    np.testing.assert_array_equal(generate(loaded), generate(pipe))


def test_shipped_default_model():
    default_model = Path(str(resources.files("diffusers_videolatent") / "default_model"))
    ours = VideoLatentPipeline.from_pretrained(default_model)
    theirs = DiffusionPipeline.from_pretrained(default_model, trust_remote_code=True)
    assert type(theirs) is VideoLatentPipeline
    arguments = {"num_frames": 5, "height": 64, "width": 64, "num_inference_steps": 2, "output_type": "np"}
    frames = [
        pipe("a red circle moving right", generator=torch.Generator().manual_seed(0), **arguments).frames
        for pipe in (ours, theirs)
    ]
    np.testing.assert_array_equal(frames[0], frames[1])
    assert_same_model(
        AutoModel.from_pretrained(str(default_model), subfolder="unet", trust_remote_code=True), ours.unet
    )
    assert_same_model(AutoModel.from_pretrained(str(default_model), subfolder="vae", trust_remote_code=True), ours.vae)


def test_write_remote_code_refuses_other_folders(tmp_path):
    with pytest.raises(ValueError, match="`folder`"):
        write_remote_code(tmp_path / "missing")
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ValueError, match="'StableDiffusionPipeline'"):
        write_remote_code(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model_index.json"]
