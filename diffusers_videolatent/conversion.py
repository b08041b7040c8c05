"""What the scripts in `conversion_scripts/` share: their common options, reading the sources' configs, the side by side
verification of two pipelines, atomic saving, and `run_conversion`, the body of every script's `main`.

A script holds only what is its own: its source options, the checks of its sources, `convert` and `verify`. It hands
`run_conversion` a `load_and_convert(args) -> Conversion` function; `run_conversion` checks the common options, converts,
verifies, saves the weights and our model card atomically and pushes. Exit codes: 0 success, 1 verification failed
(nothing written), 2 bad input (one line on stderr, nothing written).
"""

import argparse
import collections
import ctypes
import json
import os
import shlex
import signal
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import DDIMScheduler, DiffusionPipeline, ModelMixin
from huggingface_hub import hf_hub_download

from .atomic import StopRequested, atomic_folder, remove_stale_temporaries, stop_on_signals
from .generation_defaults import check_generation_defaults
from .geometry import size_multiple, unet_downsample_factor, vae_compression_ratios_from_config
from .hub import push_folder_to_hub
from .model_card import ConversionProvenance, combine_licenses, is_hub_id, load_source_card_data, save_model_card


DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DTYPE_ALIASES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
VERIFY_PROMPT = "a panda playing a guitar on a beach"
# glibc's `mallopt` parameter number of M_MMAP_THRESHOLD (malloc.h)
M_MMAP_THRESHOLD = -3


class VerificationError(ValueError):
    r"""Raised when a converted model's output differs from the reference by more than the stated tolerance."""


class ConversionArgumentParser(argparse.ArgumentParser):
    r"""
    An `argparse.ArgumentParser` whose errors are one line on stderr (`<prog>: error: <message>`) and exit code 2,
    like every other bad input of a conversion script; argparse itself would print the usage block first.
    """

    def error(self, message: str):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def add_common_arguments(parser: argparse.ArgumentParser, saved: str, local_files_only: bool = False) -> None:
    r"""
    Add the options every conversion script takes, after the script's own source options.

    Args:
        parser (`argparse.ArgumentParser`):
            The script's parser, usually a [`ConversionArgumentParser`].
        saved (`str`):
            What is saved, for the help of `--output_path`, e.g. `"the VideoLatentPipeline"`.
        local_files_only (`bool`, *optional*, defaults to `False`):
            Whether to add `--local_files_only` (for scripts whose sources may be Hub ids read from the cache).
    """
    if local_files_only:
        parser.add_argument("--local_files_only", action="store_true", help="Only use the local Hub cache.")
    parser.add_argument(
        "--source_variant", default=None, help="Variant of the source's weight files to read, e.g. `fp16`."
    )
    parser.add_argument("--output_path", required=True, help=f"Folder to save {saved} to.")
    parser.add_argument(
        "--dtype", default=None, help="Saved dtype: fp32, fp16 or bf16 (or float32, ...); defaults to the source's."
    )
    parser.add_argument("--variant", default=None, help="Variant suffix of the saved weights, e.g. `fp16`.")
    parser.add_argument("--safe_serialization", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--atol", type=float, default=1e-4, help="Absolute tolerance of the verification.")
    parser.add_argument("--rtol", type=float, default=1e-4, help="Relative tolerance of the verification.")
    parser.add_argument("--overwrite", action="store_true", help="Replace a non-empty `--output_path`.")
    parser.add_argument("--push_to_hub", action="store_true", help="Also upload the saved folder to `--repo_id`.")
    parser.add_argument("--repo_id", default=None, help="Hub repository for `--push_to_hub`.")


def parse_dtype(name: str) -> torch.dtype:
    r"""
    Map a `--dtype` value to a torch dtype.

    Args:
        name (`str`):
            One of `"fp32"`, `"fp16"` or `"bf16"`, or their torch names `"float32"`, `"float16"`, `"bfloat16"`.

    Returns:
        `torch.dtype`: the matching dtype.
    """
    name = DTYPE_ALIASES.get(name, name)
    if name not in DTYPES:
        raise ValueError(f"`--dtype` must be one of {', '.join(DTYPES)}, got {name!r}.")
    return DTYPES[name]


def read_safetensors_dtype(file_path: str) -> torch.dtype | None:
    r"""
    The floating dtype most of a `.safetensors` file's tensors are stored in, read from its header alone.

    Args:
        file_path (`str`):
            The weight file.

    Returns:
        `torch.dtype` or `None`: `None` when the file stores no float32, float16 or bfloat16 tensor.
    """
    with open(file_path, "rb") as file:
        (header_length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(header_length))
    counts = collections.Counter(
        entry["dtype"]
        for name, entry in header.items()
        if name != "__metadata__" and entry["dtype"] in SAFETENSORS_DTYPES
    )
    return SAFETENSORS_DTYPES[counts.most_common(1)[0][0]] if counts else None


def stored_dtype(
    path: str,
    subfolder: str | None,
    variant: str | None,
    argument: str,
    local_files_only: bool = False,
    revision: str | None = None,
) -> torch.dtype:
    r"""
    The dtype a diffusers model's weights are stored in (of its `diffusion_pytorch_model[.variant].safetensors`, or
    of the first shard of a sharded one), so that a source is loaded and saved in its own dtype, not upcast.

    Args:
        path (`str`):
            Local folder or Hub id.
        subfolder (`str`, *optional*):
            The model's sub-folder, e.g. `"unet"`.
        variant (`str`, *optional*):
            The weight files' variant (`--source_variant`), e.g. `"fp16"`.
        argument (`str`):
            The option that named `path`, for error messages.
        local_files_only (`bool`, *optional*, defaults to `False`):
            Only use the local Hub cache.
        revision (`str`, *optional*):
            Hub revision.

    Returns:
        `torch.dtype`: the stored dtype; `torch.float32` for `.bin` weights (their dtype is not known without
        loading them).
    """
    stem = "diffusion_pytorch_model" + (f".{variant}" if variant else "")
    names = [f"{stem}.safetensors", f"{stem}.safetensors.index.json", f"{stem}.bin"]
    where = f"{path!r}" + (f" (subfolder {subfolder!r})" if subfolder else "")
    for name in names:
        if os.path.isdir(path):
            file_path = os.path.join(path, subfolder or "", name)
            if not os.path.isfile(file_path):
                continue
        else:
            try:
                file_path = hf_hub_download(
                    path, name, subfolder=subfolder, revision=revision, local_files_only=local_files_only
                )
            except Exception:  # not on the Hub (or not in the cache): try the next name
                continue
        if name.endswith(".bin"):
            return torch.float32
        if name.endswith(".index.json"):
            shard = sorted(set(read_json(os.path.dirname(file_path), name, argument)["weight_map"].values()))[0]
            if os.path.isdir(path):
                file_path = os.path.join(os.path.dirname(file_path), shard)
            else:
                file_path = hf_hub_download(
                    path, shard, subfolder=subfolder, revision=revision, local_files_only=local_files_only
                )
        try:
            return read_safetensors_dtype(file_path) or torch.float32
        except (OSError, ValueError, KeyError, struct.error) as error:
            raise ValueError(f"cannot read the header of {file_path!r}: {first_line(error)}") from None
    if variant:
        raise ValueError(
            f"`--source_variant` {variant!r}: `{argument}` {where} has no {stem}.safetensors or .bin; check the "
            "variant (diffusers' `variant`, the weight files' middle suffix)."
        )
    return torch.float32


def check_output_path(output_path: str, overwrite: bool = False) -> None:
    r"""
    Refuse an output path that would lose data: an existing file, or an existing non-empty folder unless `overwrite`.

    Args:
        output_path (`str`):
            The folder a converted model will be saved to.
        overwrite (`bool`, *optional*, defaults to `False`):
            Whether an existing non-empty folder may be replaced.
    """
    if os.path.isfile(output_path):
        raise ValueError(f"`--output_path` {output_path!r} is an existing file; give a folder path.")
    if os.path.isdir(output_path) and os.listdir(output_path) and not overwrite:
        raise ValueError(
            f"`--output_path` {output_path!r} exists and is not empty; pass --overwrite to replace it or choose "
            "another path."
        )


def save_atomically(save_function: Callable[[str], None], output_path: str, overwrite: bool = False) -> None:
    r"""
    Save into a temporary folder next to `output_path`, then move it into place, so that a failed or interrupted save
    leaves nothing (or the previous content) at `output_path`.

    Args:
        save_function (`Callable[[str], None]`):
            Writes the model into the folder it is given, e.g. `lambda path: model.save_pretrained(path)`.
        output_path (`str`):
            The final folder.
        overwrite (`bool`, *optional*, defaults to `False`):
            Whether an existing non-empty folder may be replaced.
    """
    check_output_path(output_path, overwrite)
    with atomic_folder(output_path, overwrite=overwrite) as temporary_path:
        save_function(temporary_path)


def verify_close(
    actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-4, rtol: float = 0.0, name: str = "output"
) -> float:
    r"""
    Check `|actual - expected| <= atol + rtol * |expected|` everywhere.

    Args:
        actual (`torch.Tensor`):
            The converted model's output.
        expected (`torch.Tensor`):
            The reference output.
        atol (`float`, *optional*, defaults to 1e-4):
            Absolute tolerance.
        rtol (`float`, *optional*, defaults to 0.0):
            Relative tolerance.
        name (`str`, *optional*, defaults to `"output"`):
            What is compared, for the error message.

    Returns:
        `float`: the maximum absolute difference.
    """
    if actual.shape != expected.shape:
        raise VerificationError(f"{name}: shape {tuple(actual.shape)} differs from reference {tuple(expected.shape)}.")
    actual, expected = actual.detach().float().cpu(), expected.detach().float().cpu()
    difference = (actual - expected).abs()
    max_difference = difference.max().item() if difference.numel() else 0.0
    if not torch.isfinite(difference).all() or (difference > atol + rtol * expected.abs()).any():
        raise VerificationError(
            f"{name}: max abs difference {max_difference:.3e} exceeds the tolerance (atol={atol:g}, rtol={rtol:g})."
        )
    return max_difference


def return_freed_weights_to_the_system(threshold: int = 2**20) -> bool:
    r"""
    Make glibc serve every allocation of `threshold` bytes or more with its own `mmap`, so that a freed weight goes
    back to the system at once. By default glibc raises that threshold (up to 32 MiB) each time such a block is freed,
    after which weights are carved from the heap, and the heap keeps what is freed there: casting a model to float32
    and back then leaves it about as large as the float32 copy, and the next model's float32 pass comes on top
    (measured in docs/conversion.md). A no-op elsewhere than glibc.

    Returns:
        `bool`: whether the setting was applied.
    """
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):  # not glibc
        return False


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its class name when it has none), for one-line error messages."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def read_json(
    path: str, filename: str, argument: str, local_files_only: bool = False, revision: str | None = None
) -> dict:
    r"""
    Read `filename` of a local folder or Hub repository as a dict, refusing anything else with a one-line `ValueError`.

    Args:
        path (`str`):
            Local folder or Hub id.
        filename (`str`):
            The file inside it, e.g. `"model_index.json"` or `"unet/config.json"`.
        argument (`str`):
            The option that named `path`, e.g. `"--checkpoint_path"`, for error messages.
        local_files_only (`bool`, *optional*, defaults to `False`):
            Only use the local Hub cache.
        revision (`str`, *optional*):
            Hub revision.
    """
    if os.path.isdir(path):
        file_path = os.path.join(path, filename)
        if not os.path.isfile(file_path):
            raise ValueError(f"`{argument}` {path!r} has no {filename}.")
    elif is_hub_id(path):
        try:
            file_path = hf_hub_download(path, filename, revision=revision, local_files_only=local_files_only)
        except Exception as error:
            raise ValueError(f"cannot read {filename} of `{argument}` {path!r}: {first_line(error)}") from None
    else:
        raise ValueError(f"`{argument}` {path!r} is neither an existing folder nor a Hub id (`org/name`).")
    try:
        with open(file_path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {file_path!r}: {first_line(error)}") from None


def check_pipeline_components(
    path: str, index: dict, components: dict[str, tuple[str, ...] | None], argument: str
) -> None:
    r"""
    Refuse a diffusers pipeline whose `model_index.json` lacks a component, names a class that is not allowed, or (in a
    local folder) lists a component whose sub-folder is missing.

    Args:
        path (`str`):
            Local folder or Hub id of the pipeline.
        index (`dict`):
            Its `model_index.json`.
        components (`dict[str, tuple[str, ...] | None]`):
            The class names allowed for each needed component, the first one named in messages; `None` allows any.
        argument (`str`):
            The option that named `path`, e.g. `"--checkpoint_path"`, for error messages.
    """
    for name, allowed in components.items():
        entry = index.get(name)
        if not isinstance(entry, list) or entry[1] is None:
            raise ValueError(f"`{argument}` {path!r} has no {name!r} component in model_index.json.")
        if allowed is not None and entry[1] not in allowed:
            raise ValueError(f"`{argument}` {path!r} has a {entry[1]!r} as {name!r}; expected {allowed[0]}.")
        if os.path.isdir(path) and not os.path.isdir(os.path.join(path, name)):
            raise ValueError(f"`{argument}` {path!r} lacks the {name!r} sub-folder listed in model_index.json.")


def verification_frame_size(vae: ModelMixin, unet: ModelMixin) -> int:
    r"""
    The smallest frame size both a source pipeline and its conversion take with two latent positions at the U-Net's
    deepest level.

    Args:
        vae (`ModelMixin`):
            An image VAE (its spatial ratio is read from its config).
        unet (`ModelMixin`):
            A U-Net with `block_out_channels` (spatial downsampling `2 ** (levels - 1)`).
    """
    spatial_ratio = vae_compression_ratios_from_config(vae.config)[0]
    return 2 * size_multiple(spatial_ratio, unet_downsample_factor(unet.config))


def verification_inputs(
    vae: ModelMixin, unet: ModelMixin, num_frames: int = 3, num_inference_steps: int = 2, seed: int = 0
) -> tuple[torch.Tensor, dict[str, Any], str]:
    r"""
    The initial latents and call arguments on which a source pipeline and its conversion are compared.

    Args:
        vae (`ModelMixin`):
            The source's image VAE.
        unet (`ModelMixin`):
            The source's U-Net.
        num_frames (`int`, *optional*, defaults to 3):
            Frames of the generated videos.
        num_inference_steps (`int`, *optional*, defaults to 2):
            DDIM steps.
        seed (`int`, *optional*, defaults to 0):
            Seed of the initial latents.

    Returns:
        `tuple`: float32 latents, the call arguments (size of [`verification_frame_size`], guidance 7.5,
        `output_type="np"`) and a description.
    """
    size = verification_frame_size(vae, unet)
    spatial_ratio = vae_compression_ratios_from_config(vae.config)[0]
    generator = torch.Generator().manual_seed(seed)
    latent_size = size // spatial_ratio
    latents = torch.randn(1, unet.config.in_channels, num_frames, latent_size, latent_size, generator=generator)
    arguments = {
        "num_frames": num_frames,
        "height": size,
        "width": size,
        "num_inference_steps": num_inference_steps,
        "guidance_scale": 7.5,
        "output_type": "np",
    }
    description = (
        f"{num_inference_steps} DDIM steps, {num_frames} frames of {size}x{size}, guidance 7.5, seed {seed}, "
        'output_type="np"'
    )
    return latents, arguments, description


@torch.no_grad()
def run_pipeline_in_float32(
    pipeline_class: type[DiffusionPipeline],
    components: dict[str, Any],
    latents: torch.Tensor,
    arguments: dict[str, Any],
    prompt: str = VERIFY_PROMPT,
) -> torch.Tensor:
    r"""
    Run a pipeline built from `components` in float32 with a fresh `DDIMScheduler` (built from their scheduler's
    config; the registered one is not touched), then put every model back in its own dtype.

    The models are cast in place, one after the other, so a float16 source costs one float32 copy of itself while it
    runs and nothing more afterwards: a conversion runs the source this way, frees it, then runs the converted
    pipeline the same way, and never holds two float32 copies at once. A float16 to float32 to float16 round trip
    is exact.

    Args:
        pipeline_class (`type[DiffusionPipeline]`):
            e.g. `TextToVideoSDPipeline`, `AnimateDiffPipeline` or `VideoLatentPipeline`.
        components (`dict`):
            Its constructor arguments; `scheduler` among them.
        latents (`torch.Tensor`):
            The initial latents (see [`verification_inputs`]).
        arguments (`dict`):
            The other call arguments.
        prompt (`str`, *optional*):
            The prompt.

    Returns:
        `torch.Tensor`: the frames, `[B, F, H, W, 3]` in [0, 1].
    """
    models = {name: value for name, value in components.items() if isinstance(value, torch.nn.Module)}
    dtypes = {name: next(model.parameters()).dtype for name, model in models.items()}
    try:
        for model in models.values():
            model.to(torch.float32)
        pipeline = pipeline_class(
            **{**components, "scheduler": DDIMScheduler.from_config(components["scheduler"].config)}
        )
        pipeline.set_progress_bar_config(disable=True)
        return torch.as_tensor(pipeline(prompt, latents=latents.clone(), **arguments).frames)
    finally:
        for name, model in models.items():
            model.to(dtypes[name])


def run_pipelines_side_by_side(
    reference_class: type[DiffusionPipeline],
    reference_components: dict[str, Any],
    converted: DiffusionPipeline,
    num_frames: int = 3,
    num_inference_steps: int = 2,
    seed: int = 0,
    prompt: str = VERIFY_PROMPT,
) -> tuple[torch.Tensor, torch.Tensor, str]:
    r"""
    Run a diffusers text-to-video pipeline and its converted `VideoLatentPipeline` on the same latents with DDIM, each
    in float32 (see [`run_pipeline_in_float32`]; both stay in memory, so prefer running the source, freeing it and
    converting only then, as `convert_text_to_video_sd.py` does, for models of real size).

    Returns:
        `tuple`: the reference frames, the converted frames (both `[B, F, H, W, 3]` in [0, 1]) and a description.
    """
    latents, arguments, description = verification_inputs(
        reference_components["vae"], reference_components["unet"], num_frames, num_inference_steps, seed
    )
    expected = run_pipeline_in_float32(reference_class, reference_components, latents, arguments, prompt)
    actual = run_pipeline_in_float32(converted.__class__, converted.components, latents, arguments, prompt)
    return expected, actual, description


@dataclass
class Conversion:
    r"""
    What a script's `load_and_convert(args)` hands to [`run_conversion`]: the converted model and how to check it.

    Args:
        converted (`ModelMixin` or `DiffusionPipeline`):
            The converted model or pipeline, in `dtype`; saved with `save_pretrained`.
        name (`str`):
            What was converted, for the `saved <name> to <output_path>` line.
        sources (`list[tuple[str, str]]`):
            `(role, path or Hub id)` of each source, for the model card; their own cards supply the license.
        verify (`Callable[[float, float], tuple[float, str]]`):
            Compares `converted` with its sources in float32 to `(atol, rtol)` and prints a `verified: ...` line;
            returns the largest absolute difference and what was compared, or raises [`VerificationError`].
        generation_defaults (`dict`, *optional*):
            For a converted pipeline: the call settings it recommends (its source pipeline's defaults), saved in its
            `model_index.json` (see [`VideoLatentPipeline`]) and shown on the model card.
        card_kwargs (`dict`, *optional*):
            More arguments of [`~diffusers_videolatent.model_card.save_model_card`] (`tags`, `limitations`, ...).
        revision (`str`, *optional*):
            Hub revision of the sources' cards.
        local_files_only (`bool`, *optional*, defaults to `False`):
            Only look for the sources' cards in the local Hub cache.
        dtype (`torch.dtype`, *optional*, defaults to `torch.float32`):
            The source's stored dtype: what is saved unless `--dtype` says otherwise.
    """

    converted: ModelMixin | DiffusionPipeline
    name: str
    sources: list[tuple[str, str]]
    verify: Callable[[float, float], tuple[float, str]]
    generation_defaults: dict[str, Any] | None = None
    card_kwargs: dict[str, Any] = field(default_factory=dict)
    revision: str | None = None
    local_files_only: bool = False
    dtype: torch.dtype = torch.float32


def source_licenses(
    sources: list[tuple[str, str]], revision: str | None = None, local_files_only: bool = False
) -> dict[str, str]:
    r"""
    The license of each source that states one in its own card, by source id.

    Args:
        sources (`list[tuple[str, str]]`):
            `(role, path or Hub id)` pairs.
        revision (`str`, *optional*):
            Hub revision of the cards.
        local_files_only (`bool`, *optional*, defaults to `False`):
            Only use the local Hub cache.
    """
    licenses = {}
    for _, source in sources:
        card_data = load_source_card_data(source, revision, local_files_only)
        if card_data is not None and card_data.license:
            licenses[source] = card_data.license
    return licenses


def save_with_model_card(
    model: ModelMixin | DiffusionPipeline,
    path: str,
    card_repo_id: str,
    safe_serialization: bool = True,
    variant: str | None = None,
    **card_kwargs,
) -> None:
    r"""
    `save_pretrained` plus our model card, into `path` (the temporary folder of an atomic save, see [`save_atomically`]).

    Args:
        model (`ModelMixin` or `DiffusionPipeline`):
            The converted model or pipeline.
        path (`str`):
            The folder to write.
        card_repo_id (`str`):
            The Hub id (or path) the card's usage snippet loads.
        safe_serialization (`bool`, *optional*, defaults to `True`):
            Save `.safetensors` rather than `.bin` weights.
        variant (`str`, *optional*):
            Variant suffix of the weight files, e.g. `fp16`.
        card_kwargs:
            Passed on to [`~diffusers_videolatent.model_card.save_model_card`] (`license`, `conversion`, ...).
    """
    model.save_pretrained(path, safe_serialization=safe_serialization, variant=variant)
    save_model_card(path, card_repo_id, **card_kwargs)


def run_conversion(
    prog: str,
    script: str,
    parse_args: Callable[[list[str] | None], argparse.Namespace],
    load_and_convert: Callable[[argparse.Namespace], Conversion],
    argv: list[str] | None = None,
) -> int:
    r"""
    Runs a conversion script (see `_run_conversion` for the steps and the arguments). SIGTERM or SIGINT stops it with
    one line on stderr and the exit code 128 + the signal's number, leaving the output complete or absent and no
    temporary behind.

    Returns:
        `int`: the exit code: 0 success, 1 verification failed, 2 bad input (one line on stderr), 128 + a signal's
        number when stopped by it; nothing is written unless it is 0.
    """
    try:
        with stop_on_signals((signal.SIGTERM, signal.SIGINT)):
            return _run_conversion(prog, script, parse_args, load_and_convert, argv)
    except StopRequested as stop:
        sys.stderr.write(f"{prog}: stopped by {stop.signal_name}; nothing half-written is left\n")
        return stop.exit_code


def _run_conversion(
    prog: str,
    script: str,
    parse_args: Callable[[list[str] | None], argparse.Namespace],
    load_and_convert: Callable[[argparse.Namespace], Conversion],
    argv: list[str] | None = None,
) -> int:
    r"""
    The `main` of a conversion script: parse, check, load and convert, verify, save atomically with the model card, push.

    Args:
        prog (`str`):
            The script's name, the first word of its error messages.
        script (`str`):
            The script's path in the repository, e.g. `conversion_scripts/convert_image_vae.py`, for the model card.
        parse_args (`Callable[[list[str] | None], argparse.Namespace]`):
            The script's parser: a [`ConversionArgumentParser`] with its own options and [`add_common_arguments`].
        load_and_convert (`Callable[[argparse.Namespace], Conversion]`):
            Loads and checks the sources (in their stored dtype, reading `--source_variant`) and converts them; raises
            `ValueError` or `TypeError` on bad input.
        argv (`list[str]`, *optional*):
            The command line without the program name; defaults to `sys.argv[1:]`.

    Returns:
        `int`: the exit code: 0 success, 1 verification failed, 2 bad input (one line on stderr); nothing is written
        unless it is 0.
    """
    try:
        args = parse_args(argv)
    except SystemExit as parse_exit:  # a bad option (one line on stderr) or --help
        return parse_exit.code
    command = " ".join(["python", script, *map(shlex.quote, sys.argv[1:] if argv is None else argv)])

    try:
        # 1. check everything cheap before loading weights
        dtype = parse_dtype(args.dtype) if args.dtype is not None else None
        # what a killed earlier run of this command left next to the output goes first (a set-aside folder comes back)
        remove_stale_temporaries(args.output_path)
        check_output_path(args.output_path, args.overwrite)
        if args.push_to_hub and not args.repo_id:
            raise ValueError("`--push_to_hub` needs `--repo_id`.")

        # 2. load and convert
        return_freed_weights_to_the_system()
        conversion = load_and_convert(args)
    except (ValueError, TypeError) as error:
        sys.stderr.write(f"{prog}: error: {error}\n")
        return 2

    # 3. verify in float32 (one model at a time), before anything is written
    max_abs_diff, description = None, ""
    if args.verify:
        try:
            max_abs_diff, description = conversion.verify(args.atol, args.rtol)
        except VerificationError as error:
            sys.stderr.write(f"{prog}: verification failed, nothing written: {error}\n")
            return 1

    # 4. save atomically (weights and card), then optionally upload
    licenses = source_licenses(conversion.sources, conversion.revision, conversion.local_files_only)
    provenance = ConversionProvenance(
        script=script,
        sources=conversion.sources,
        tolerance=f"atol={args.atol:g}, rtol={args.rtol:g}",
        max_abs_diff=max_abs_diff,
        verification=description,
        command=command,
        source_licenses=licenses,
    )
    converted = conversion.converted
    dtype = dtype or conversion.dtype
    if converted.dtype != dtype:
        converted.to(dtype=dtype)
    if conversion.generation_defaults is not None:
        converted.register_to_config(generation_defaults=check_generation_defaults(conversion.generation_defaults))

    save_atomically(
        lambda path: save_with_model_card(
            converted,
            path,
            args.repo_id if args.push_to_hub else args.output_path,
            safe_serialization=args.safe_serialization,
            variant=args.variant,
            license=combine_licenses(list(licenses.values())),
            base_model=[source for _, source in conversion.sources if is_hub_id(source)] or None,
            conversion=provenance,
            **conversion.card_kwargs,
        ),
        args.output_path,
        overwrite=args.overwrite,
    )
    print(f"saved {conversion.name} to {args.output_path}")
    if args.push_to_hub:
        print(f"uploaded: {push_folder_to_hub(args.output_path, args.repo_id)}")
    return 0
