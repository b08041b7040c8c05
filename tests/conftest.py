"""The fixtures of the test suite, all of them; the tiny models and helpers they use are in `testing_utils.py`."""

import json
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from diffusers import (
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    StableDiffusionPipeline,
    TextToVideoSDPipeline,
)
from diffusers.models.attention_dispatch import _AttentionBackendRegistry
from diffusers.utils import hub_utils
from huggingface_hub import ModelCard, ModelCardData

import diffusers_videolatent.hub as hub
from diffusers_videolatent import VideoLatentPipeline, cli
from diffusers_videolatent.models.attention import VideoLatentAttention
from diffusers_videolatent.training.moving_shapes import render_moving_shape

from .testing_utils import (
    HubRecorder,
    build_image_vae,
    build_motion_adapter,
    build_pipeline,
    build_pipeline_components,
    build_scheduler,
    build_text_encoder,
    build_tokenizer,
    build_unet,
    build_unet2d,
    build_unet3d,
    build_video_vae,
    count_deep_and_shallow_calls,
    load_conversion_script,
    ramp_video,
    randomize_weights_,
    run_text_to_video_training,
    run_vae_training,
    write_motion_lora_files,
)


# ----------------------------------------------------------------------------------------------------------------------
# Every test
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="session")
def single_thread() -> Iterator[None]:
    """The tiny models of this suite run fastest on one thread: on the shared 2-core machine, intra-op parallelism on
    tensors this small costs far more in synchronisation than it gains (measured 90x slower per `linear` under load)."""
    num_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(num_threads)


@pytest.fixture
def no_grad() -> Iterator[None]:
    """Runs a test under `torch.no_grad()` (use with `pytest.mark.usefixtures("no_grad")`)."""
    with torch.no_grad():
        yield


@pytest.fixture
def offline(monkeypatch) -> None:
    """No Hub access: what loads must load from local files."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def restore_active_backend() -> Iterator[None]:
    """`ModelMixin.set_attention_backend` also sets diffusers' process-wide active backend; put it back."""
    active = _AttentionBackendRegistry._active_backend
    yield
    _AttentionBackendRegistry.set_active_backend(active)


# ----------------------------------------------------------------------------------------------------------------------
# Pipelines
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def pipe() -> VideoLatentPipeline:
    """The tiny pipeline on diffusers' U-Net 3D and image VAE (`build_pipeline()`)."""
    return build_pipeline()


@pytest.fixture(scope="module")
def euler_pipe() -> VideoLatentPipeline:
    """The tiny pipeline with an Euler scheduler (it takes custom `sigmas` and `timesteps`), shared by a module."""
    return build_pipeline(scheduler=EulerDiscreteScheduler(beta_schedule="scaled_linear"))


@pytest.fixture(scope="module")
def random_unet_pipe() -> VideoLatentPipeline:
    """The tiny pipeline with our U-Net, its temporal layers random (not identity), shared by a module."""
    return build_pipeline(unet=build_unet(identity_init=False))


@pytest.fixture(scope="module")
def attention_calls(random_unet_pipe) -> Counter:
    """How often each attention layer of `random_unet_pipe`'s U-Net ran, by name (clear it before a run)."""
    counts = Counter()
    for name, module in random_unet_pipe.unet.named_modules():
        if isinstance(module, VideoLatentAttention):
            module.to_out[0].register_forward_hook(lambda *_, name=name: counts.update([name]))
    return counts


@pytest.fixture
def image_to_video_pipe() -> VideoLatentPipeline:
    """A flow-matching pipeline on our U-Net with 4 + 1 conditioning channels and our video VAE."""
    unet = build_unet(conditioning_channels=5, sample_size=8)
    return build_pipeline(vae=build_video_vae(), unet=unet, scheduler=FlowMatchEulerDiscreteScheduler())


@pytest.fixture
def moving_square_video() -> torch.Tensor:
    """5 frames of 16x16 of a red square moving right, in [0, 1], laid out (1, 3, F, H, W)."""
    frames = render_moving_shape("red", "square", "right", 5, 16, 16, generator=np.random.default_rng(0))
    return torch.from_numpy(frames).permute(3, 0, 1, 2)[None]


# ----------------------------------------------------------------------------------------------------------------------
# Saved folders
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """The default tiny pipeline saved to a folder, for the command line."""
    folder = tmp_path_factory.mktemp("model") / "pipeline"
    VideoLatentPipeline(**build_pipeline_components()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def counted_pipe() -> VideoLatentPipeline:
    """`random_unet_pipe`'s pipeline, its real mid-block (deep) and last up-layer (shallow) calls counted in `.calls`."""
    pipe = build_pipeline(unet=build_unet(identity_init=False))
    pipe.calls = count_deep_and_shallow_calls(pipe.unet)
    return pipe


@pytest.fixture(scope="module")
def counted_pipe_output(counted_pipe, request) -> torch.Tensor:
    """The uncached output of `counted_pipe`, made by the requesting module's `generate(pipe)`."""
    with torch.no_grad():
        return request.module.generate(counted_pipe)


@pytest.fixture(scope="module")
def windowed_model_dir(tmp_path_factory) -> Path:
    """Our U-Net (a frame table of 8 latent frames) and video VAE (temporal ratio 2) saved, for long videos."""
    folder = tmp_path_factory.mktemp("model") / "pipeline"
    VideoLatentPipeline(**build_pipeline_components(unet=build_unet(), vae=build_video_vae())).save_pretrained(folder)
    return folder


@pytest.fixture
def vae_folder(tmp_path) -> Path:
    folder = tmp_path / "vae"
    build_video_vae().save_pretrained(folder)
    return folder


@pytest.fixture
def unet_folder(tmp_path) -> Path:
    folder = tmp_path / "unet"
    build_unet(temporal_max_frames=32, sample_size=8).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def saved_pipeline(tmp_path_factory) -> tuple[VideoLatentPipeline, Path]:
    """A pipeline of our models (a 32-frame table, sample size 8) and the folder it was saved to, shared by a module
    (do not change either)."""
    folder = tmp_path_factory.mktemp("saved") / "pipeline"
    pipe = build_pipeline(vae=build_video_vae(), unet=build_unet(temporal_max_frames=32, sample_size=8))
    pipe.save_pretrained(folder)
    return pipe, folder


@pytest.fixture(scope="module")
def lora_base_folder(tmp_path_factory) -> Path:
    """A pipeline of our video VAE and a random (not identity-initialised) U-Net, saved: a base to fine-tune."""
    folder = tmp_path_factory.mktemp("lora-base") / "pipeline"
    build_pipeline(vae=build_video_vae(), unet=build_unet(identity_init=False)).save_pretrained(folder)
    return folder


@pytest.fixture
def pipeline_folder(saved_pipeline, tmp_path) -> Path:
    """A copy of `saved_pipeline`'s folder, for a test to change."""
    return Path(shutil.copytree(saved_pipeline[1], tmp_path / "pipeline"))


@pytest.fixture
def video_folder(tmp_path) -> Path:
    """A folder of grey-ramp videos (a gif too short, a broken mp4, a missing one) with `metadata.jsonl`."""
    iio.imwrite(tmp_path / "long.gif", ramp_video(8, 24, 32), duration=100, loop=0)
    iio.imwrite(tmp_path / "short.gif", ramp_video(3, 24, 32), duration=100, loop=0)
    iio.imwrite(tmp_path / "clip.mp4", ramp_video(6, 32, 48), fps=8, macro_block_size=1)
    (tmp_path / "broken.mp4").write_bytes(b"this is not a video")
    rows = [
        {"file_name": "long.gif", "text": "a grey ramp"},
        {"file_name": "short.gif", "text": "too short"},
        {"file_name": "clip.mp4", "text": "an mp4 clip"},
        {"file_name": "broken.mp4", "text": "cannot be decoded"},
        {"file_name": "missing.mp4", "text": "no such file"},
        {"file_name": "long.gif", "text": ""},
        {"file_name": "long.gif"},
    ]
    with open(tmp_path / "metadata.jsonl", "w") as file:
        file.writelines(json.dumps(row) + "\n" for row in rows)
    return tmp_path


# ----------------------------------------------------------------------------------------------------------------------
# The command line and the Hub
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def no_debug_environment(monkeypatch) -> None:
    monkeypatch.delenv(cli.DEBUG_ENVIRONMENT_VARIABLE, raising=False)


@pytest.fixture
def no_model_load(monkeypatch) -> None:
    """Fails the test if the command line loads a model."""

    def fail(model, dtype):
        pytest.fail(f"the model {model} was loaded for an error that needs no model")

    monkeypatch.setattr(cli, "_load_pipeline", fail)


@pytest.fixture
def hub_recorder(monkeypatch) -> HubRecorder:
    """`diffusers_videolatent.hub`'s `create_repo` and `upload_folder`, recorded instead of run."""
    recorder = HubRecorder()
    monkeypatch.setattr(hub, "create_repo", recorder.create_repo)
    monkeypatch.setattr(hub, "upload_folder", recorder.upload_folder)
    return recorder


@pytest.fixture
def diffusers_hub_recorder(monkeypatch) -> HubRecorder:
    """diffusers' own `push_to_hub` without the network: `create_repo` and `upload_folder` recorded, and
    `load_or_create_model_card` giving what it gives for a repository without a card (it asks the Hub first)."""
    recorder = HubRecorder()
    monkeypatch.setattr(hub_utils, "create_repo", recorder.create_repo)
    monkeypatch.setattr(hub_utils, "upload_folder", recorder.upload_folder)

    def generic_card(repo_id_or_path, token=None, is_pipeline=False, **kwargs) -> ModelCard:
        kind = "pipeline" if is_pipeline else "model"
        description = (
            f"This is the model card of a 🧨 diffusers {kind} that has been pushed on the Hub. This model card has"
            " been automatically generated."
        )
        return ModelCard.from_template(ModelCardData(), model_description=description)

    monkeypatch.setattr(hub_utils, "load_or_create_model_card", generic_card)
    return recorder


# ----------------------------------------------------------------------------------------------------------------------
# Conversion scripts and LoRA files
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def text_to_video_sd_folder(tmp_path_factory) -> Path:
    """A tiny diffusers `TextToVideoSDPipeline`, its temporal layers random, saved with a model card."""
    unet = randomize_weights_(build_unet3d(), seed=1, zero_only=True)
    pipe = TextToVideoSDPipeline(
        vae=build_image_vae(),
        text_encoder=build_text_encoder(),
        tokenizer=build_tokenizer(),
        unet=unet,
        scheduler=build_scheduler(),
    )
    folder = tmp_path_factory.mktemp("t2v") / "source"
    pipe.save_pretrained(folder)
    (folder / "README.md").write_text("---\nlicense: cc-by-nc-4.0\n---\n# A tiny source\n")
    return folder


@pytest.fixture(scope="module")
def text_to_video_sd_fp16_folder(text_to_video_sd_folder, tmp_path_factory) -> Path:
    """`text_to_video_sd_folder` in float16, saved as the `fp16` variant only (as the 1.7B Hub repository is)."""
    folder = tmp_path_factory.mktemp("t2v_fp16") / "source"
    pipe = TextToVideoSDPipeline.from_pretrained(text_to_video_sd_folder, torch_dtype=torch.float16)
    pipe.save_pretrained(folder, variant="fp16")
    return folder


@pytest.fixture(scope="module")
def converted_text_to_video_sd_folder(text_to_video_sd_folder, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("converted") / "pipeline"
    argv = ["--checkpoint_path", str(text_to_video_sd_folder), "--output_path", str(output)]
    assert load_conversion_script("convert_text_to_video_sd").main(argv) == 0
    return output


@pytest.fixture(scope="module")
def animatediff_sources(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny SD 1.x-like pipeline and a tiny motion adapter, each saved with a model card."""
    root = tmp_path_factory.mktemp("animatediff")
    base = StableDiffusionPipeline(
        vae=build_image_vae(),
        text_encoder=build_text_encoder(),
        tokenizer=build_tokenizer(),
        unet=build_unet2d(),
        scheduler=build_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    base.save_pretrained(root / "base")
    (root / "base" / "README.md").write_text("---\nlicense: creativeml-openrail-m\n---\n")
    build_motion_adapter().save_pretrained(root / "adapter")
    (root / "adapter" / "README.md").write_text("---\nlicense: apache-2.0\n---\n")
    return root / "base", root / "adapter"


@pytest.fixture(scope="module")
def converted_animatediff_folder(animatediff_sources, tmp_path_factory) -> Path:
    base, adapter = animatediff_sources
    output = tmp_path_factory.mktemp("converted") / "pipeline"
    argv = ["--base_model_path", str(base), "--motion_adapter_path", str(adapter), "--output_path", str(output)]
    assert load_conversion_script("convert_animatediff").main(argv) == 0
    return output


@pytest.fixture(scope="module")
def image_vae_path(tmp_path_factory) -> Path:
    """A folder holding a random tiny `AutoencoderKL` in `vae/`."""
    path = tmp_path_factory.mktemp("image_vae")
    vae = build_image_vae(block_out_channels=(8, 16), scaling_factor=0.3)
    randomize_weights_(vae, fan_in=True).save_pretrained(path / "vae")
    return path


@pytest.fixture(scope="module")
def motion_lora_files(tmp_path_factory) -> dict[str, Path]:
    """One motion LoRA made on a tiny `UNetMotionModel`, saved by diffusers three ways."""
    return write_motion_lora_files(tmp_path_factory.mktemp("motion-lora"))


# ----------------------------------------------------------------------------------------------------------------------
# Training runs
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vae_runs(tmp_path_factory) -> Path:
    """A tiny VAE trained with two processes (`full/`), and the same run resumed from a checkpoint (`resumed/`)."""
    return run_vae_training(tmp_path_factory.mktemp("vae"))


@pytest.fixture(scope="module")
def t2v_runs(vae_runs, tmp_path_factory) -> tuple[Path, list[str]]:
    """A tiny text-to-video U-Net trained on `vae_runs`' VAE (`full/`), the run resumed (`resumed/`), its arguments."""
    return run_text_to_video_training(tmp_path_factory.mktemp("t2v"), vae_runs / "full")


@pytest.fixture(scope="module")
def vae_fsdp_runs(tmp_path_factory) -> Path:
    """`vae_runs` with `--fsdp`: the tiny VAE sharded over the two processes (`full/`, `resumed/`)."""
    return run_vae_training(tmp_path_factory.mktemp("vae-fsdp"), ("--fsdp",))


@pytest.fixture(scope="module")
def t2v_fsdp_runs(vae_fsdp_runs, tmp_path_factory) -> tuple[Path, list[str]]:
    """`t2v_runs` with `--fsdp`, on `vae_fsdp_runs`' VAE; the arguments returned are without `--fsdp`."""
    return run_text_to_video_training(tmp_path_factory.mktemp("t2v-fsdp"), vae_fsdp_runs / "full", ("--fsdp",))
