"""Helpers shared by the scripts in `conversion_scripts/`: dtype parsing, atomic saving and numerical verification."""

import os
import shutil
import tempfile
from collections.abc import Callable

import torch


DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class VerificationError(ValueError):
    r"""Raised when a converted model's output differs from the reference by more than the stated tolerance."""


def parse_dtype(name: str) -> torch.dtype:
    r"""
    Map a `--dtype` value to a torch dtype.

    Args:
        name (`str`):
            One of `"fp32"`, `"fp16"` or `"bf16"`.

    Returns:
        `torch.dtype`: the matching dtype.
    """
    if name not in DTYPES:
        raise ValueError(f"`--dtype` must be one of {', '.join(DTYPES)}, got {name!r}.")
    return DTYPES[name]


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
    output_path = os.path.abspath(output_path)
    parent = os.path.dirname(output_path)
    os.makedirs(parent, exist_ok=True)
    name = os.path.basename(output_path)

    temporary_path = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
    try:
        # mkdtemp creates a private folder; give the result the permissions a plain `mkdir` would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary_path, 0o777 & ~umask)
        save_function(temporary_path)
        previous_path = None
        if os.path.exists(output_path):
            previous_path = tempfile.mkdtemp(prefix=f".{name}.old-", dir=parent)
            os.rmdir(previous_path)
            os.rename(output_path, previous_path)
        os.rename(temporary_path, output_path)
        if previous_path is not None:
            shutil.rmtree(previous_path, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temporary_path, ignore_errors=True)
        raise


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
