"""Tiny real components (a few thousand parameters each) and the helpers the whole test suite shares.

One builder per class: `build_unet` (ours), `build_video_vae` (ours), `build_tokenizer`, `build_text_encoder`,
`build_scheduler`, and diffusers' `build_unet3d`, `build_unet2d`, `build_motion_adapter`, `build_image_vae`,
`build_wan_vae`, `build_cogvideox_vae`. Each is seeded, so two calls give identical weights, and takes keyword
overrides of its config. `randomize_weights_` is the one weight randomizer. Nothing here downloads anything: the CLIP
tokenizer is read from a hand-made vocabulary. Fixtures live in `conftest.py`.
"""

import collections
import contextlib
import importlib.util
import json
import math
import os
import shlex
import signal
import socket
import string
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from unittest import mock

import diffusers
import numpy as np
import pytest
import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLCogVideoX,
    AutoencoderKLWan,
    DDIMScheduler,
    MotionAdapter,
    UNet2DConditionModel,
    UNet3DConditionModel,
)
from packaging import version
from safetensors.torch import load_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from diffusers_videolatent import AutoencoderKLVideo, UNetSpatioTemporalModel, VideoLatentPipeline
from diffusers_videolatent.models.attention import VideoLatentAttention


REPOSITORY = Path(__file__).resolve().parents[1]
TEXT_HIDDEN_SIZE = 16
TOKENIZER_MAX_LENGTH = 16

# diffusers 0.38's hooks cannot run these on the CPU (group offloading to disk: its onload device is None on the
# module's first call; TaylorSeer: its state is read before the cache context is set); tested on 0.42
needs_diffusers_hooks_0_42 = pytest.mark.skipif(
    version.parse(diffusers.__version__) < version.parse("0.42"),
    reason="diffusers < 0.42 cannot run group offloading to disk or TaylorSeer on the CPU",
)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


# ----------------------------------------------------------------------------------------------------------------------
# The one weight randomizer
# ----------------------------------------------------------------------------------------------------------------------


def randomize_weights_(
    model: torch.nn.Module,
    seed: int = 0,
    scale: float = 0.1,
    zero_only: bool = False,
    fan_in: bool = False,
    skip: tuple[str, ...] = (),
) -> torch.nn.Module:
    """Replaces parameters by seeded random values, so that a comparison involving them can fail.

    Norm weights are drawn around 1, every other parameter around 0 with standard deviation `scale`; with
    `fan_in=True` matrices and kernels take `1 / sqrt(fan-in)` instead (a deep model stays well conditioned).
    `zero_only=True` replaces only the zero-initialised parameters (temporal output projections, motion modules: the
    layers that start as identity), leaving the rest as initialised; parameters whose name contains a part of `skip`
    are left alone.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if any(part in name for part in skip) or (zero_only and parameter.any()):
                continue
            noise = torch.randn(parameter.shape, generator=generator)
            if fan_in and parameter.ndim > 1:
                parameter.copy_(noise / math.sqrt(parameter[0].numel()))
            elif not zero_only and "norm" in name and name.endswith("weight"):
                parameter.copy_(1.0 + scale * noise)
            else:
                parameter.copy_(scale * noise)
    return model


# ----------------------------------------------------------------------------------------------------------------------
# Builders, one per class
# ----------------------------------------------------------------------------------------------------------------------


def write_tiny_clip_tokenizer(folder: str | Path, model_max_length: int = TOKENIZER_MAX_LENGTH) -> Path:
    """Writes `vocab.json`, `merges.txt` and `tokenizer_config.json` of a character-level CLIP tokenizer."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    characters = string.ascii_lowercase + string.digits + ".,!?'-"
    tokens = ["<|startoftext|>", "<|endoftext|>"]
    tokens += list(characters) + [character + "</w>" for character in characters]
    # a few merges so that byte-pair encoding really runs
    merges = ["t h", "th e</w>", "a n", "an d</w>", "i n", "in g</w>"]
    tokens += [merge.replace(" ", "") for merge in merges]
    (folder / "vocab.json").write_text(json.dumps({token: index for index, token in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": model_max_length, "tokenizer_class": "CLIPTokenizer"})
    )
    return folder


def build_tokenizer() -> CLIPTokenizer:
    """The tiny character-level CLIP tokenizer (read into memory from a temporary folder)."""
    with tempfile.TemporaryDirectory() as folder:
        return CLIPTokenizer.from_pretrained(str(write_tiny_clip_tokenizer(folder)))


def build_text_encoder(seed: int = 0, hidden_size: int = TEXT_HIDDEN_SIZE) -> CLIPTextModel:
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=100,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_attention_heads=2,
        num_hidden_layers=2,
        max_position_embeddings=TOKENIZER_MAX_LENGTH,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        projection_dim=hidden_size,
    )
    return CLIPTextModel(config).eval()


def build_unet(seed: int = 0, identity_init: bool = True, **overrides) -> UNetSpatioTemporalModel:
    """Our two-level U-Net (spatial downsampling 2) with a sinusoidal frame table of 8 latent frames.

    `identity_init=False` gives the zero-initialised layers small random weights, so that the temporal layers are not
    identity and a comparison that involves them can fail.
    """
    config = {
        "sample_size": None,
        "in_channels": 4,
        "conditioning_channels": 0,
        "use_fps_conditioning": False,
        "block_out_channels": (8, 16),
        "layers_per_block": 1,
        "transformer_layers_per_block": (1, 0),
        "num_attention_heads": 2,
        "temporal_num_attention_heads": 2,
        "cross_attention_dim": TEXT_HIDDEN_SIZE,
        "norm_num_groups": 4,
        "temporal_max_frames": 8,
    }
    config.update(overrides)
    config.setdefault("out_channels", config["in_channels"])
    torch.manual_seed(seed)
    unet = UNetSpatioTemporalModel(**config).eval()
    return unet if identity_init else randomize_weights_(unet, seed + 1, zero_only=True)


def build_video_vae(seed: int = 0, **overrides) -> AutoencoderKLVideo:
    """Our two-level causal video VAE (spatial ratio 2, temporal ratio 2), with a mid-block attention."""
    config = {"block_out_channels": (8, 16), "layers_per_block": 1, "temporal_downsample": (False, True)}
    config.update({"norm_num_groups": 4, **overrides})
    torch.manual_seed(seed)
    return AutoencoderKLVideo(**config).eval()


def build_unet3d(seed: int = 0, **overrides) -> UNet3DConditionModel:
    """A two-level diffusers `UNet3DConditionModel` (spatial downsampling 2)."""
    config = {
        "sample_size": 8,
        "in_channels": 4,
        "down_block_types": ("CrossAttnDownBlock3D", "DownBlock3D"),
        "up_block_types": ("UpBlock3D", "CrossAttnUpBlock3D"),
        "block_out_channels": (8, 16),
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "cross_attention_dim": TEXT_HIDDEN_SIZE,
        "attention_head_dim": 4,
    }
    config.update(overrides)
    config.setdefault("out_channels", config["in_channels"])
    torch.manual_seed(seed)
    return UNet3DConditionModel(**config).eval()


def build_unet2d(seed: int = 0, **overrides) -> UNet2DConditionModel:
    """A two-level SD 1.x-like image U-Net (spatial downsampling 2)."""
    config = {
        "sample_size": 8,
        "block_out_channels": (8, 16),
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "cross_attention_dim": TEXT_HIDDEN_SIZE,
        "attention_head_dim": 2,
        "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    }
    config.update(overrides)
    torch.manual_seed(seed)
    return UNet2DConditionModel(**config).eval()


def build_motion_adapter(seed: int = 0, **overrides) -> MotionAdapter:
    """A tiny AnimateDiff `MotionAdapter` for `build_unet2d`, with random (not zero) output projections."""
    config = {
        "block_out_channels": (8, 16),
        "motion_layers_per_block": 1,
        "motion_num_attention_heads": 2,
        "motion_norm_num_groups": 4,
        "motion_max_seq_length": 8,
    }
    config.update(overrides)
    torch.manual_seed(seed)
    return randomize_weights_(MotionAdapter(**config), seed + 1, zero_only=True)


def build_image_vae(seed: int = 0, **overrides) -> AutoencoderKL:
    """A diffusers `AutoencoderKL`, two levels of 8 channels by default (spatial ratio 2)."""
    config = {
        "block_out_channels": (8, 8),
        "layers_per_block": 1,
        "latent_channels": 4,
        "norm_num_groups": 4,
        "sample_size": 16,
    }
    config.update(overrides)
    levels = len(config["block_out_channels"])
    config.setdefault("down_block_types", ("DownEncoderBlock2D",) * levels)
    config.setdefault("up_block_types", ("UpDecoderBlock2D",) * levels)
    torch.manual_seed(seed)
    return AutoencoderKL(**config).eval()


def build_wan_vae(seed: int = 0) -> AutoencoderKLWan:
    """A tiny diffusers `AutoencoderKLWan` (spatial ratio 4, temporal ratio 2, 4 latent channels)."""
    torch.manual_seed(seed)
    return AutoencoderKLWan(
        base_dim=4,
        z_dim=4,
        dim_mult=[1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.1, -0.2, 0.3, 0.0],
        latents_std=[1.5, 0.5, 2.0, 1.0],
        scale_factor_temporal=2,
        scale_factor_spatial=4,
    ).eval()


def build_cogvideox_vae(seed: int = 0) -> AutoencoderKLCogVideoX:
    """A tiny diffusers `AutoencoderKLCogVideoX` (spatial ratio 2, temporal ratio 2, 4 latent channels)."""
    torch.manual_seed(seed)
    return AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D", "CogVideoXDownBlock3D"),
        up_block_types=("CogVideoXUpBlock3D", "CogVideoXUpBlock3D"),
        block_out_channels=(8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=2,
        scaling_factor=0.7,
    ).eval()


def build_scheduler() -> DDIMScheduler:
    return DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False
    )


def build_pipeline_components(**overrides) -> dict:
    """The five components of a `VideoLatentPipeline` (`overrides` replace some); the defaults are diffusers' U-Net 3D
    and image VAE, on which the pipeline equals diffusers' `TextToVideoSDPipeline`."""
    builders = {
        "vae": build_image_vae,
        "text_encoder": build_text_encoder,
        "tokenizer": build_tokenizer,
        "unet": build_unet3d,
        "scheduler": build_scheduler,
    }
    assert set(overrides) <= set(builders), sorted(set(overrides) - set(builders))
    return {name: overrides[name] if name in overrides else build() for name, build in builders.items()}


def build_pipeline(**overrides) -> VideoLatentPipeline:
    """A `VideoLatentPipeline` of `build_pipeline_components(**overrides)`, its progress bar off."""
    pipe = VideoLatentPipeline(**build_pipeline_components(**overrides))
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ----------------------------------------------------------------------------------------------------------------------
# Recorders and runners
# ----------------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def recording_unet_calls(pipe) -> Iterator[list[dict]]:
    """Records the batch size, input sample, timestep and keyword arguments of every U-Net call of `pipe` (a forward
    pre-hook, no mock), until the block ends."""
    calls = []

    def hook(module, args, kwargs):
        calls.append(
            {"batch": args[0].shape[0], "sample": args[0].clone(), "timestep": args[1], "kwargs": dict(kwargs)}
        )

    handle = pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


def count_deep_and_shallow_calls(unet) -> collections.Counter:
    """Counts the real calls of the mid block (deep: its first resnet, inside the module a cheap step skips) and of the
    last up layer's resnet (shallow branch)."""
    counts = collections.Counter()
    unet.mid_block.resnets[0].register_forward_hook(lambda *_: counts.update(["deep"]))
    unet.up_blocks[-1].resnets[-1].register_forward_hook(lambda *_: counts.update(["shallow"]))
    return counts


@contextlib.contextmanager
def recording_attention_scores() -> Iterator[list[tuple[int, ...]]]:
    """Records the shape of every attention-score tensor our attention layers form under diffusers' classic
    processors (`AttnProcessor`, `SlicedAttnProcessor`, through `get_attention_scores`; the real method still computes
    them): how large the attention maps of a forward pass get, sliced or not."""
    shapes = []
    get_attention_scores = VideoLatentAttention.get_attention_scores

    def recording(self, query, key, attention_mask=None):
        scores = get_attention_scores(self, query, key, attention_mask)
        shapes.append(tuple(scores.shape))
        return scores

    with mock.patch.object(VideoLatentAttention, "get_attention_scores", recording):
        yield shapes


class HubRecorder:
    """Stands in for `create_repo` / `upload_folder`: records the calls and the uploaded README.md."""

    def __init__(self, namespace: str = "me"):
        self.namespace = namespace
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        full_id = repo_id if "/" in repo_id else f"{self.namespace}/{repo_id}"
        return SimpleNamespace(repo_id=full_id)

    def upload_folder(self, **kwargs):
        folder = Path(kwargs["folder_path"])
        readme = folder / "README.md"
        self.calls.append(("upload_folder", kwargs, sorted(p.name for p in folder.iterdir()), readme.read_text()))
        return "https://huggingface.co/commit/0123"


def load_script(folder: str, name: str) -> ModuleType:
    """
    `<folder>/<name>.py` of the repository as a module (its scripts are not part of the package); it imports its
    sibling scripts as it does when run, with its folder first on `sys.path`.
    """
    spec = importlib.util.spec_from_file_location(name, REPOSITORY / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(REPOSITORY / folder))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPOSITORY / folder))
    return module


def load_conversion_script(name: str) -> ModuleType:
    """`conversion_scripts/<name>.py` as a module."""
    return load_script("conversion_scripts", name)


def script_error(script: ModuleType, argv: list[str], capsys) -> str:
    """The error line `script.main(argv)` prints when it refuses its arguments (exit code 2)."""
    assert script.main(argv) == 2
    # diffusers' loading progress bars may precede it; the error itself is one line, and the last one.
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(f"{script.PROG}: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    return errors[0]


# ----------------------------------------------------------------------------------------------------------------------
# Training runs (the scripts' tiny models, as their `--vae_config`, `--unet_config` and `--text_encoder_config`)
# ----------------------------------------------------------------------------------------------------------------------

# spatial ratio 2, temporal ratio 2: 5 frames of 16x16 become 3 latent frames of 8x8
TRAINING_VAE_CONFIG = {
    "block_out_channels": [8, 8],
    "layers_per_block": 1,
    "temporal_downsample": [False, True],
    "latent_channels": 4,
    "norm_num_groups": 4,
    "mid_block_add_attention": False,
}
TRAINING_UNET_CONFIG = {
    "block_out_channels": [8, 16],
    "layers_per_block": 1,
    "transformer_layers_per_block": [1, 1],
    "num_attention_heads": 2,
    "temporal_num_attention_heads": 2,
    "norm_num_groups": 4,
    "temporal_conv_dropout": 0.0,
}
TRAINING_TEXT_ENCODER_CONFIG = {"hidden_size": 16, "intermediate_size": 32, "projection_dim": 16}
# 4 videos, 1 per process and step: 2 steps per epoch, so a checkpoint at an odd step is in the middle of an epoch
TRAINING_ARGUMENTS = ["--num_frames", "5", "--height", "16", "--width", "16", "--train_batch_size", "1"]
TRAINING_ARGUMENTS += ["--max_train_samples", "4", "--seed", "3", "--report_to", "jsonl"]
TOTAL_STEPS, CHECKPOINT_STEP = 12, 5
# `--fsdp` shards with torch's FSDP2 (`torch.distributed.fsdp.fully_shard`, torch 2.6 or newer)
try:
    from torch.distributed.fsdp import fully_shard  # noqa: F401

    HAS_FULLY_SHARD = True
except ImportError:
    HAS_FULLY_SHARD = False


# Two processes on the CPU: `--cpu --num_processes 2` starts ONE process (accelerate 1.1 to 1.16 at least); a
# multi-process launch (`--multi_gpu`) with `ACCELERATE_USE_CPU` gives two, as DistributedType.MULTI_CPU over gloo.
TWO_CPU_PROCESSES_LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
TWO_CPU_PROCESSES_LAUNCH += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
TWO_CPU_PROCESSES_ENVIRONMENT = {
    "ACCELERATE_USE_CPU": "true",
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_with_tracebacks_on_timeout(command: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """
    `subprocess.run(command, capture_output=True, text=True)`, except that a command still running after `timeout`
    seconds fails the test with every Python thread's traceback of each of its processes (faulthandler, on SIGABRT)
    instead of a bare `TimeoutExpired`: what a hang needs to be found.
    """
    environment = dict(kwargs.pop("env", os.environ), PYTHONFAULTHANDLER="1")
    process = subprocess.Popen(
        command,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kwargs,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGABRT)  # every process of the group prints its threads' tracebacks
        try:
            stdout, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
        pytest.fail(f"{shlex.join(command)} still ran after {timeout:g} s:\n{stdout[-3000:]}\n{stderr[-20000:]}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def record_returns(monkeypatch, module: ModuleType, name: str) -> list:
    """What every call of `module.name` returns from now on, in order (the function still runs)."""
    returned = []
    original = getattr(module, name)

    def spy(*args, **kwargs):
        returned.append(original(*args, **kwargs))
        return returned[-1]

    monkeypatch.setattr(module, name, spy)
    return returned


def training_metrics(output_dir, project) -> dict[int, dict]:
    """The values a training run logged to its jsonl tracker, by step."""
    with open(os.path.join(output_dir, "logs", project, "metrics.jsonl")) as file:
        records = [json.loads(line) for line in file]
    steps = {}
    for record in records:
        steps.setdefault(record["step"], {}).update(record)
    return steps


def assert_same_weights(first: str, second: str) -> None:
    """The two safetensors files hold the same tensors, to 1e-6."""
    first_state, second_state = load_file(first), load_file(second)
    assert first_state.keys() == second_state.keys()
    for key in first_state:
        torch.testing.assert_close(first_state[key], second_state[key], rtol=0, atol=1e-6, msg=key)


def assert_resumed_exactly(root: Path, project: str, name: str, weights: str) -> None:
    """`root/resumed`, resumed from `root/full`'s checkpoint at `CHECKPOINT_STEP`, starts at the next step, logs
    `full`'s `name` at every step after it and saves the same weights (`weights`, a path inside the output folder)."""
    full, resumed = training_metrics(root / "full", project), training_metrics(root / "resumed", project)
    assert min(resumed) == CHECKPOINT_STEP + 1
    for step in range(CHECKPOINT_STEP + 1, TOTAL_STEPS + 1):
        assert resumed[step][name] == pytest.approx(full[step][name], rel=1e-5, abs=1e-7), step
    assert_same_weights(str(root / "full" / weights), str(root / "resumed" / weights))


def largest_differences(runs: dict[str, dict[int, dict]], reference: dict[int, dict], names: tuple[str, ...]):
    """The largest absolute and relative differences of the logged `names` of `runs` (by step) to `reference`."""
    absolute, relative = 0.0, 0.0
    for run in runs.values():
        for step, record in run.items():
            for name in names:
                if name in record:
                    difference = abs(record[name] - reference[step][name])
                    absolute = max(absolute, difference)
                    relative = max(relative, difference / abs(reference[step][name]))
    return absolute, relative


def assert_equal_losses(runs: dict[str, dict[int, dict]], reference: dict[int, dict], names: tuple[str, ...]):
    """
    Every logged value of `names` in `runs` equals `reference`'s at its step, to float rounding: 1e-6 at the first
    step (the same weights: the rounding of the batch and gradient reductions alone), 5e-4 after it, where Adam's
    division of every gradient by its own running scale magnifies rounding differences of near-zero gradients (the
    one-process run on 2 threads instead of 1 differs by up to 1.3e-5; unequal random streams by 0.3 to 0.5).
    """
    for label, run in runs.items():
        steps = [step for step in run if names[0] in run[step]]
        assert steps, label
        for step in steps:
            rel = 1e-6 if step == 1 else 5e-4
            for name in names:
                expected = reference[step][name]
                assert run[step][name] == pytest.approx(expected, rel=rel, abs=1e-7), (label, step, name)


def launch_training(module: str, arguments: list[str], cwd) -> None:
    """Runs a training script under `accelerate launch` with two CPU processes (DDP on gloo), one thread each."""
    command = [*TWO_CPU_PROCESSES_LAUNCH, "--main_process_port", str(_free_port()), "-m", module, *arguments]
    environment = dict(os.environ, **TWO_CPU_PROCESSES_ENVIRONMENT)
    result = run_with_tracebacks_on_timeout(command, 300, cwd=cwd, env=environment)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]


def vae_training_arguments() -> list[str]:
    """The options of `run_vae_training` (all but `--output_dir` and `--resume_from_checkpoint`)."""
    arguments = TRAINING_ARGUMENTS + ["--vae_config", json.dumps(TRAINING_VAE_CONFIG), "--learning_rate", "2e-3"]
    arguments += ["--use_ema", "--max_train_steps", str(TOTAL_STEPS), "--checkpointing_steps", str(CHECKPOINT_STEP)]
    arguments += ["--validation_steps", "100", "--temporal_loss_weight", "0.5", "--alternate_num_frames", "3", "5"]
    return arguments + ["--frame_position_weights", "1", "2"]


def run_vae_training(root: Path, extra_arguments: tuple[str, ...] = ()) -> Path:
    """Trains the tiny VAE for `TOTAL_STEPS` steps (`root/full`), then resumes the run from its checkpoint at
    `CHECKPOINT_STEP` (`root/resumed`), both with `extra_arguments` added (e.g. `--fsdp`)."""
    arguments = vae_training_arguments() + list(extra_arguments)
    launch_training(
        "diffusers_videolatent.training.train_video_vae", arguments + ["--output_dir", str(root / "full")], root
    )
    checkpoint = str(root / "full" / f"checkpoint-{CHECKPOINT_STEP}")
    resumed = arguments + ["--output_dir", str(root / "resumed"), "--resume_from_checkpoint", checkpoint]
    launch_training("diffusers_videolatent.training.train_video_vae", resumed, root)
    return root


def text_to_video_losses(output_dir) -> dict[int, float]:
    """The `train_loss` of each step that a `train_text_to_video` run logged (`--report_to jsonl`), by step."""
    with open(os.path.join(output_dir, "logs", "text_to_video", "metrics.jsonl")) as file:
        records = [json.loads(line) for line in file]
    return {record["step"]: record["train_loss"] for record in records if "train_loss" in record}


def text_to_video_model_arguments(vae_folder: Path) -> list[str]:
    """The models `train_text_to_video` trains with: a saved VAE, and the U-Net and text encoder of their configs."""
    arguments = ["--pretrained_vae_name_or_path", str(vae_folder), "--unet_config", json.dumps(TRAINING_UNET_CONFIG)]
    return arguments + ["--text_encoder_config", json.dumps(TRAINING_TEXT_ENCODER_CONFIG)]


def run_text_to_video_training(
    root: Path, vae_folder: Path, extra_arguments: tuple[str, ...] = ()
) -> tuple[Path, list[str]]:
    """Trains the tiny text- and image-to-video U-Net on `vae_folder`'s VAE for `TOTAL_STEPS` steps (`root/full`),
    then resumes the run from its checkpoint at `CHECKPOINT_STEP` (`root/resumed`), both with `extra_arguments`
    added; returns `root` and the arguments (without the extra ones)."""
    arguments = TRAINING_ARGUMENTS + text_to_video_model_arguments(vae_folder) + ["--objective", "v_prediction"]
    arguments += ["--learning_rate", "3e-3", "--use_ema", "--conditioning_dropout_prob", "0.2"]
    # text- and image-to-video: 4 latent channels plus the mask, half of the videos given their first frame
    arguments += ["--conditioning_channels", "5", "--image_conditioning_prob", "0.5"]
    arguments += ["--max_train_steps", str(TOTAL_STEPS), "--checkpointing_steps", str(CHECKPOINT_STEP)]
    arguments += ["--validation_steps", "100", "--no_validation"]
    module = "diffusers_videolatent.training.train_text_to_video"
    launched = arguments + list(extra_arguments)
    launch_training(module, launched + ["--output_dir", str(root / "full")], root)
    checkpoint = str(root / "full" / f"checkpoint-{CHECKPOINT_STEP}")
    launch_training(
        module, launched + ["--output_dir", str(root / "resumed"), "--resume_from_checkpoint", checkpoint], root
    )
    return root, arguments


def ramp_video(num_frames: int, height: int, width: int) -> np.ndarray:
    """Frame t is a flat grey of value 20 * t, so the frames a sample took can be read back."""
    return np.stack([np.full((height, width, 3), 20 * t, dtype=np.uint8) for t in range(num_frames)])


INDEX_GREY_STEP = 8


def write_index_video(
    path: str | Path,
    num_frames: int,
    height: int,
    width: int,
    fps: float | str = 24,
    codec: str = "libx264",
    extra_arguments: tuple[str, ...] = (),
) -> Path:
    """
    Encodes a video with imageio-ffmpeg's ffmpeg binary in which frame `t` is a flat grey of `INDEX_GREY_STEP * t`
    (so the source frame a clip took can be read back from any crop, size or codec; at most 32 frames). `fps` may be a
    fraction string (`"25/2"`); `extra_arguments` go before the output path (e.g. a `setpts` filter for a variable
    rate).
    """
    import imageio_ffmpeg

    if num_frames * INDEX_GREY_STEP > 256:
        raise ValueError(f"`num_frames` must be at most {256 // INDEX_GREY_STEP}, but is {num_frames}.")
    frames = np.stack([np.full((height, width, 3), INDEX_GREY_STEP * t, dtype=np.uint8) for t in range(num_frames)])
    pixel_format = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24"]
    command += ["-s", f"{width}x{height}", "-r", str(fps), "-i", "-", "-c:v", codec, "-pix_fmt", pixel_format]
    command += [*extra_arguments, str(path)]
    subprocess.run(command, input=frames.tobytes(), check=True, capture_output=True)
    return Path(path)


def read_frame_indices(pixel_values: torch.Tensor) -> list[int]:
    """The source frame of each frame of a clip `[3, F, H, W]` in [-1, 1] of a `write_index_video` video."""
    greys = (pixel_values.mean(dim=(0, 2, 3)) + 1) * 127.5
    return [round(grey / INDEX_GREY_STEP) for grey in greys.tolist()]


# ----------------------------------------------------------------------------------------------------------------------
# AnimateDiff motion LoRAs
# ----------------------------------------------------------------------------------------------------------------------

MOTION_LORA_TARGETS = r".*motion_modules.*\.(to_q|to_k|to_v|to_out\.0)"


def to_public_motion_lora_layout(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The key layout of the public `guoyww/animatediff-motion-lora-*` files as diffusers' conversion script writes
    them (`...attn1.processor.to_q_lora.down.weight`), made from peft's layout (`...attn1.to_q.lora_A.weight`)."""
    converted = {}
    for key, value in state_dict.items():
        module, _, tail = key.rpartition(".lora_")
        attention, _, projection = module.rpartition(".")
        if projection == "0":  # `to_out.0`
            attention, projection = attention.rpartition(".")[0], "to_out"
        direction = "down" if tail.startswith("A") else "up"
        converted[f"{attention}.processor.{projection}_lora.{direction}.weight"] = value
    return converted


def write_motion_lora_files(root: Path) -> dict[str, Path]:
    """One motion LoRA made with peft on a tiny `UNetMotionModel`, saved by `AnimateDiffPipeline.save_lora_weights`
    three ways: peft's layout (`peft`), with the adapter's metadata (`metadata`), and the public files' (`public`)."""
    from diffusers import AnimateDiffPipeline, UNetMotionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = UNetMotionModel.from_unet2d(build_unet2d(), build_motion_adapter())
    torch.manual_seed(4)
    # one attention with its own alpha: read from the metadata, its module name must be mapped too, or it would
    # silently load with the default scale
    config = LoraConfig(
        r=2,
        lora_alpha=2,
        alpha_pattern={"down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.to_q": 8},
        target_modules=MOTION_LORA_TARGETS,
        init_lora_weights=False,
    )
    unet.add_adapter(config)
    layers = get_peft_model_state_dict(unet)
    assert layers and all(".motion_modules." in key for key in layers)
    AnimateDiffPipeline.save_lora_weights(root / "peft", unet_lora_layers=layers)
    AnimateDiffPipeline.save_lora_weights(
        root / "metadata", unet_lora_layers=layers, unet_lora_adapter_metadata=config.to_dict()
    )
    public = {f"unet.{key}": value for key, value in to_public_motion_lora_layout(layers).items()}
    AnimateDiffPipeline.save_lora_weights(
        root / "public",
        unet_lora_layers=to_public_motion_lora_layout(layers),
        weight_name="diffusion_pytorch_model.safetensors",
    )
    assert set(load_file(root / "public" / "diffusion_pytorch_model.safetensors")) == set(public)
    return {"peft": root / "peft", "metadata": root / "metadata", "public": root / "public"}


# A script that runs a command (`-m module ...` or `script.py ...`) with a hook: `SIGNAL_ON=module:attribute|needle|nth|
# signal` makes the process send itself `signal` right after the `nth` call of `module.attribute` whose arguments
# mention `needle`.
SIGNAL_RUNNER = textwrap.dedent(
    """
    import importlib, os, runpy, signal, sys

    function, needle, nth, number = os.environ["SIGNAL_ON"].split("|")
    module_name, _, attribute = function.partition(":")
    owner = importlib.import_module(module_name)
    *path, attribute = attribute.split(".")
    for name in path:
        owner = getattr(owner, name)
    original = getattr(owner, attribute)
    calls = 0

    def signalling(*args, **kwargs):
        global calls
        result = original(*args, **kwargs)
        if any(needle in str(argument) for argument in args):
            calls += 1
            if calls == int(nth):
                os.kill(os.getpid(), int(number))
        return result

    setattr(owner, attribute, signalling)
    if sys.argv[1] == "-m":
        sys.argv = sys.argv[2:]
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = sys.argv[1:]
        runpy.run_path(sys.argv[0], run_name="__main__")
    """
)
