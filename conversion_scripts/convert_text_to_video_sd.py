"""Convert a diffusers text-to-video checkpoint (ModelScope, Zeroscope) into a `VideoLatentPipeline` folder.

Example:
    python conversion_scripts/convert_text_to_video_sd.py --checkpoint_path ali-vilab/text-to-video-ms-1.7b \
        --output_path ./text-to-video-ms-1.7b-videolatent --dtype fp16

The source is a diffusers `TextToVideoSDPipeline` (folder or Hub id): its `UNet3DConditionModel` becomes a
`UNetSpatioTemporalModel` (`from_unet3d`, strict key mapping), its image `AutoencoderKL` an `AutoencoderKLVideo` with
temporal ratio 1 (`from_image_vae`, frame by frame as before); text encoder, tokenizer and scheduler are carried over.
Before anything is written both pipelines run on the same latents (a few DDIM steps, fixed seed, `output_type="np"`)
and must agree to `--atol`/`--rtol`. The folder is saved atomically with a model card.

Exit codes: 0 success, 1 verification failed (nothing written), 2 bad input (one line on stderr, nothing written).
"""

import argparse
import json
import os
import shlex
import sys

import torch
from diffusers import DDIMScheduler, TextToVideoSDPipeline
from huggingface_hub import hf_hub_download

from diffusers_videolatent import AutoencoderKLVideo, UNetSpatioTemporalModel, VideoLatentPipeline
from diffusers_videolatent.conversion import (
    VerificationError,
    check_output_path,
    parse_dtype,
    save_atomically,
    verify_close,
)
from diffusers_videolatent.hub import push_folder_to_hub
from diffusers_videolatent.model_card import (
    ConversionProvenance,
    call_defaults,
    is_hub_id,
    load_source_card_data,
    save_model_card,
)


PROG = "convert_text_to_video_sd"
SCRIPT = "conversion_scripts/convert_text_to_video_sd.py"
SOURCE_PIPELINE = "TextToVideoSDPipeline"
SOURCE_COMPONENTS = {
    "unet": ("UNet3DConditionModel",),
    "vae": ("AutoencoderKL",),
    "text_encoder": ("CLIPTextModel",),
    "tokenizer": ("CLIPTokenizer", "CLIPTokenizerFast"),
    "scheduler": None,  # any diffusers scheduler
}
VERIFY_PROMPT = "a panda playing a guitar on a beach"


class _ArgumentParser(argparse.ArgumentParser):
    # argparse prints the usage block on errors; a conversion error is one line on stderr and exit code 2.
    def error(self, message: str):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = _ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint_path", required=True, help="Folder or Hub id of a TextToVideoSDPipeline.")
    parser.add_argument("--revision", default=None, help="Hub revision of the source.")
    parser.add_argument("--local_files_only", action="store_true", help="Only use the local Hub cache.")
    parser.add_argument("--output_path", required=True, help="Folder to save the VideoLatentPipeline to.")
    parser.add_argument("--dtype", default="fp32", help="Saved dtype: fp32, fp16 or bf16.")
    parser.add_argument("--variant", default=None, help="Variant suffix of the saved weights, e.g. `fp16`.")
    parser.add_argument("--safe_serialization", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--atol", type=float, default=1e-4, help="Absolute tolerance of the verification.")
    parser.add_argument("--rtol", type=float, default=1e-4, help="Relative tolerance of the verification.")
    parser.add_argument("--overwrite", action="store_true", help="Replace a non-empty `--output_path`.")
    parser.add_argument("--push_to_hub", action="store_true", help="Also upload the saved folder to `--repo_id`.")
    parser.add_argument("--repo_id", default=None, help="Hub repository for `--push_to_hub`.")
    return parser.parse_args(argv)


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def read_model_index(path: str, revision: str | None = None, local_files_only: bool = False) -> dict:
    r"""
    The `model_index.json` of a local folder or Hub repository, as a dict.

    Args:
        path (`str`):
            Local folder or Hub id.
        revision (`str`, *optional*):
            Hub revision.
        local_files_only (`bool`, *optional*, defaults to `False`):
            Only use the local Hub cache.
    """
    if os.path.isdir(path):
        index_path = os.path.join(path, "model_index.json")
        if not os.path.isfile(index_path):
            raise ValueError(f"{path!r} has no model_index.json; expected a diffusers pipeline folder.")
    elif is_hub_id(path):
        try:
            index_path = hf_hub_download(
                path, "model_index.json", revision=revision, local_files_only=local_files_only
            )
        except Exception as error:
            raise ValueError(f"cannot read model_index.json of {path!r}: {_first_line(error)}") from None
    else:
        raise ValueError(f"{path!r} is neither an existing folder nor a Hub id (`org/name`).")
    try:
        with open(index_path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {index_path!r}: {_first_line(error)}") from None


def check_source_index(path: str, index: dict) -> None:
    r"""
    Refuse a source that is not a diffusers text-to-video pipeline, before any weight is loaded.

    Args:
        path (`str`):
            The source, for messages.
        index (`dict`):
            Its `model_index.json`.
    """
    class_name = index.get("_class_name")
    unet_entry = index.get("unet") or [None, None]
    if unet_entry[1] == "UNet2DConditionModel":
        raise ValueError(
            f"`--checkpoint_path` {path!r} holds an image U-Net (UNet2DConditionModel, pipeline {class_name!r}); this "
            "script converts text-to-video UNet3DConditionModel checkpoints. For Stable Diffusion plus an AnimateDiff "
            "MotionAdapter use convert_animatediff.py."
        )
    if class_name != SOURCE_PIPELINE:
        raise ValueError(f"`--checkpoint_path` {path!r} holds a {class_name!r}, not a {SOURCE_PIPELINE}.")
    for name, allowed in SOURCE_COMPONENTS.items():
        entry = index.get(name)
        if not isinstance(entry, list) or entry[1] is None:
            raise ValueError(f"`--checkpoint_path` {path!r} has no {name!r} component in model_index.json.")
        if allowed is not None and entry[1] not in allowed:
            raise ValueError(f"`--checkpoint_path` {path!r} has a {entry[1]!r} as {name!r}; expected {allowed[0]}.")
        if os.path.isdir(path) and not os.path.isdir(os.path.join(path, name)):
            raise ValueError(f"`--checkpoint_path` {path!r} lacks the {name!r} sub-folder listed in model_index.json.")


def load_source_pipeline(
    checkpoint_path: str, revision: str | None = None, local_files_only: bool = False
) -> TextToVideoSDPipeline:
    r"""
    Load and check a diffusers `TextToVideoSDPipeline` in float32.

    Args:
        checkpoint_path (`str`):
            Local folder or Hub id.
        revision (`str`, *optional*):
            Hub revision.
        local_files_only (`bool`, *optional*, defaults to `False`):
            Only use the local Hub cache.

    Returns:
        [`TextToVideoSDPipeline`]: the source pipeline.
    """
    check_source_index(checkpoint_path, read_model_index(checkpoint_path, revision, local_files_only))
    try:
        return TextToVideoSDPipeline.from_pretrained(
            checkpoint_path, revision=revision, local_files_only=local_files_only, torch_dtype=torch.float32
        )
    except Exception as error:  # unreadable or truncated weights, a missing file on the Hub, ...
        raise ValueError(f"cannot load `--checkpoint_path` {checkpoint_path!r}: {_first_line(error)}") from None


def convert(source: TextToVideoSDPipeline) -> VideoLatentPipeline:
    r"""
    Build the `VideoLatentPipeline` that computes what `source` computes.

    Args:
        source ([`TextToVideoSDPipeline`]):
            The diffusers text-to-video pipeline; it is not modified.

    Returns:
        [`VideoLatentPipeline`]: U-Net from `UNetSpatioTemporalModel.from_unet3d`, VAE from
        `AutoencoderKLVideo.from_image_vae(..., temporal_compression_ratio=1)`, the other components shared.
    """
    return VideoLatentPipeline(
        vae=AutoencoderKLVideo.from_image_vae(source.vae, temporal_compression_ratio=1).eval(),
        text_encoder=source.text_encoder,
        tokenizer=source.tokenizer,
        unet=UNetSpatioTemporalModel.from_unet3d(source.unet).eval(),
        scheduler=source.scheduler,
    )


def verification_size(pipeline) -> int:
    """The smallest frame size both pipelines take with two latent positions at the U-Net's deepest level."""
    spatial_ratio = 2 ** (len(pipeline.vae.config.block_out_channels) - 1)
    return 2 * spatial_ratio * 2 ** (len(pipeline.unet.config.block_out_channels) - 1)


@torch.no_grad()
def run_side_by_side(
    source, converted: VideoLatentPipeline, num_frames: int = 3, num_inference_steps: int = 2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, str]:
    r"""
    Run a diffusers pipeline and its converted `VideoLatentPipeline` on the same latents with DDIM.

    Both get a fresh `DDIMScheduler` built from the source scheduler's config (the registered schedulers are not
    touched), the same prompt, guidance 7.5 and the same initial latents.

    Returns:
        `tuple`: the source's frames, the converted frames (both `[B, F, H, W, 3]` in [0, 1]) and a description.
    """
    size = verification_size(source)
    spatial_ratio = 2 ** (len(source.vae.config.block_out_channels) - 1)
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(
        1,
        source.unet.config.in_channels,
        num_frames,
        size // spatial_ratio,
        size // spatial_ratio,
        generator=generator,
    )
    arguments = {
        "num_frames": num_frames,
        "height": size,
        "width": size,
        "num_inference_steps": num_inference_steps,
        "guidance_scale": 7.5,
        "output_type": "np",
    }
    reference = source.__class__(
        **{**source.components, "scheduler": DDIMScheduler.from_config(source.scheduler.config)}
    )
    ours = VideoLatentPipeline(
        **{**converted.components, "scheduler": DDIMScheduler.from_config(converted.scheduler.config)}
    )
    for pipeline in (reference, ours):
        pipeline.set_progress_bar_config(disable=True)
    expected = reference(VERIFY_PROMPT, latents=latents.clone(), **arguments).frames
    actual = ours(VERIFY_PROMPT, latents=latents.clone(), **arguments).frames
    description = (
        f"{num_inference_steps} DDIM steps, {num_frames} frames of {size}x{size}, guidance 7.5, seed {seed}, "
        'output_type="np"'
    )
    return torch.as_tensor(expected), torch.as_tensor(actual), description


def verify(
    source: TextToVideoSDPipeline, converted: VideoLatentPipeline, atol: float = 1e-4, rtol: float = 1e-4
) -> tuple[float, str]:
    r"""
    Compare full pipeline outputs of the source and the converted pipeline; raise `VerificationError` beyond tolerance.

    Returns:
        `tuple[float, str]`: the largest absolute difference and what was compared.
    """
    expected, actual, description = run_side_by_side(source, converted)
    return verify_close(actual, expected, atol, rtol, name="pipeline output"), description


def write_pipeline(
    pipeline: VideoLatentPipeline,
    path: str,
    provenance: ConversionProvenance,
    card_repo_id: str,
    license: str | None,
    base_model: list[str],
    recommended: dict,
    safe_serialization: bool = True,
    variant: str | None = None,
) -> None:
    """`save_pretrained` plus the model card, into `path` (called on the temporary folder of an atomic save)."""
    pipeline.save_pretrained(path, safe_serialization=safe_serialization, variant=variant)
    save_model_card(
        path,
        card_repo_id,
        license=license,
        base_model=base_model or None,
        recommended=recommended,
        conversion=provenance,
    )


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as parse_exit:
        return parse_exit.code
    command = " ".join(["python", SCRIPT, *map(shlex.quote, sys.argv[1:] if argv is None else argv)])

    try:
        # 1. check everything cheap before loading weights
        dtype = parse_dtype(args.dtype)
        check_output_path(args.output_path, args.overwrite)
        if args.push_to_hub and not args.repo_id:
            raise ValueError("`--push_to_hub` needs `--repo_id`.")

        # 2. load and convert
        source = load_source_pipeline(args.checkpoint_path, args.revision, args.local_files_only)
        converted = convert(source)
    except (ValueError, TypeError) as error:
        sys.stderr.write(f"{PROG}: error: {error}\n")
        return 2

    # 3. verify in float32, before anything is written
    max_abs_diff, description = None, ""
    if args.verify:
        try:
            max_abs_diff, description = verify(source, converted, atol=args.atol, rtol=args.rtol)
        except VerificationError as error:
            sys.stderr.write(f"{PROG}: verification failed, nothing written: {error}\n")
            return 1
        print(f"verified: max abs difference of the pipeline outputs {max_abs_diff:.2e} ({description})")

    # 4. save atomically (weights and card), then optionally upload
    card_data = load_source_card_data(args.checkpoint_path, args.revision, args.local_files_only)
    license = card_data.license if card_data is not None else None
    provenance = ConversionProvenance(
        script=SCRIPT,
        sources=[("Source pipeline (TextToVideoSDPipeline)", args.checkpoint_path)],
        tolerance=f"atol={args.atol:g}, rtol={args.rtol:g}",
        max_abs_diff=max_abs_diff,
        verification=description,
        command=command,
        source_licenses={args.checkpoint_path: license} if license else {},
    )
    recommended = {**call_defaults(TextToVideoSDPipeline), "fps": 8}
    if dtype != torch.float32:
        converted.to(dtype=dtype)
    save_atomically(
        lambda path: write_pipeline(
            converted,
            path,
            provenance,
            card_repo_id=args.repo_id if args.push_to_hub else args.output_path,
            license=license,
            base_model=[args.checkpoint_path] if is_hub_id(args.checkpoint_path) else [],
            recommended=recommended,
            safe_serialization=args.safe_serialization,
            variant=args.variant,
        ),
        args.output_path,
        overwrite=args.overwrite,
    )
    print(f"saved VideoLatentPipeline to {args.output_path}")
    if args.push_to_hub:
        print(f"uploaded: {push_folder_to_hub(args.output_path, args.repo_id)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
