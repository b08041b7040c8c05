"""Convert a Stable Diffusion 1.x pipeline plus an AnimateDiff `MotionAdapter` into a `VideoLatentPipeline` folder.

Example:
    python conversion_scripts/convert_animatediff.py --base_model_path stable-diffusion-v1-5/stable-diffusion-v1-5 \
        --motion_adapter_path guoyww/animatediff-motion-adapter-v1-5-2 --output_path ./animatediff-videolatent

The image `UNet2DConditionModel` and the diffusers `MotionAdapter` (folders or Hub ids) become one
`UNetSpatioTemporalModel` (`from_unet2d(unet, motion_adapter=...)`, strict key mapping), the image `AutoencoderKL`
an `AutoencoderKLVideo` with temporal ratio 1; text encoder, tokenizer and scheduler are carried over. Before anything
is written, diffusers' `AnimateDiffPipeline` and the converted pipeline run on the same latents (a few DDIM steps, fixed
seed, `output_type="np"`) and must agree to `--atol`/`--rtol`. The folder is saved atomically with a model card.

Exit codes: 0 success, 1 verification failed (nothing written), 2 bad input (one line on stderr, nothing written).
"""

import argparse
import json
import os
import shlex
import sys

import diffusers
import torch
from diffusers import AnimateDiffPipeline, AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel
from huggingface_hub import hf_hub_download
from transformers import CLIPTextModel, CLIPTokenizer

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
    combine_licenses,
    is_hub_id,
    load_source_card_data,
    save_model_card,
)


PROG = "convert_animatediff"
SCRIPT = "conversion_scripts/convert_animatediff.py"
BASE_COMPONENTS = {
    "unet": ("UNet2DConditionModel",),
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
    parser.add_argument(
        "--base_model_path", required=True, help="Folder or Hub id of a Stable Diffusion 1.x pipeline."
    )
    parser.add_argument("--motion_adapter_path", required=True, help="Folder or Hub id of a diffusers MotionAdapter.")
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


def _read_json(path: str, filename: str, argument: str, local_files_only: bool) -> dict:
    """`filename` of a local folder or Hub repository, as a dict."""
    if os.path.isdir(path):
        file_path = os.path.join(path, filename)
        if not os.path.isfile(file_path):
            raise ValueError(f"`{argument}` {path!r} has no {filename}.")
    elif is_hub_id(path):
        try:
            file_path = hf_hub_download(path, filename, local_files_only=local_files_only)
        except Exception as error:
            raise ValueError(f"cannot read {filename} of `{argument}` {path!r}: {_first_line(error)}") from None
    else:
        raise ValueError(f"`{argument}` {path!r} is neither an existing folder nor a Hub id (`org/name`).")
    try:
        with open(file_path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {file_path!r}: {_first_line(error)}") from None


def check_sources(base_model_path: str, motion_adapter_path: str, local_files_only: bool = False) -> dict:
    r"""
    Refuse sources of the wrong kind from their configs alone, before any weight is loaded.

    Returns:
        `dict`: the base pipeline's `model_index.json`.
    """
    index = _read_json(base_model_path, "model_index.json", "--base_model_path", local_files_only)
    unet_entry = index.get("unet") or [None, None]
    if unet_entry[1] == "UNet3DConditionModel":
        raise ValueError(
            f"`--base_model_path` {base_model_path!r} holds a text-to-video UNet3DConditionModel; use "
            "convert_text_to_video_sd.py for it."
        )
    for name, allowed in BASE_COMPONENTS.items():
        entry = index.get(name)
        if not isinstance(entry, list) or entry[1] is None:
            raise ValueError(f"`--base_model_path` {base_model_path!r} has no {name!r} component in model_index.json.")
        if allowed is not None and entry[1] not in allowed:
            raise ValueError(
                f"`--base_model_path` {base_model_path!r} has a {entry[1]!r} as {name!r}; expected {allowed[0]}."
            )
        if os.path.isdir(base_model_path) and not os.path.isdir(os.path.join(base_model_path, name)):
            raise ValueError(
                f"`--base_model_path` {base_model_path!r} lacks the {name!r} sub-folder listed in model_index.json."
            )

    adapter_config = _read_json(motion_adapter_path, "config.json", "--motion_adapter_path", local_files_only)
    if adapter_config.get("_class_name") != "MotionAdapter":
        raise ValueError(
            f"`--motion_adapter_path` {motion_adapter_path!r} holds a {adapter_config.get('_class_name')!r}, not a "
            "diffusers MotionAdapter."
        )
    if os.path.isdir(base_model_path):
        unet_config = _read_json(os.path.join(base_model_path, "unet"), "config.json", "--base_model_path", False)
    else:
        unet_config = _read_json(base_model_path, "unet/config.json", "--base_model_path", local_files_only)
    if list(adapter_config["block_out_channels"]) != list(unet_config["block_out_channels"]):
        raise ValueError(
            f"the MotionAdapter's block widths {list(adapter_config['block_out_channels'])} do not match the U-Net's "
            f"{list(unet_config['block_out_channels'])}; the adapter was made for another base model."
        )
    return index


def load_sources(
    base_model_path: str, motion_adapter_path: str, local_files_only: bool = False
) -> tuple[dict, MotionAdapter]:
    r"""
    Load the base pipeline's components and the motion adapter in float32.

    Returns:
        `tuple`: the components (`vae`, `text_encoder`, `tokenizer`, `unet`, `scheduler`) and the `MotionAdapter`.
    """
    index = check_sources(base_model_path, motion_adapter_path, local_files_only)
    common = {"local_files_only": local_files_only}
    try:
        scheduler_class = getattr(diffusers, index["scheduler"][1])
        components = {
            "vae": AutoencoderKL.from_pretrained(
                base_model_path, subfolder="vae", torch_dtype=torch.float32, **common
            ),
            "text_encoder": CLIPTextModel.from_pretrained(base_model_path, subfolder="text_encoder", **common),
            "tokenizer": CLIPTokenizer.from_pretrained(base_model_path, subfolder="tokenizer", **common),
            "unet": UNet2DConditionModel.from_pretrained(
                base_model_path, subfolder="unet", torch_dtype=torch.float32, **common
            ),
            "scheduler": scheduler_class.from_pretrained(base_model_path, subfolder="scheduler", **common),
        }
        adapter = MotionAdapter.from_pretrained(motion_adapter_path, torch_dtype=torch.float32, **common)
    except Exception as error:  # unreadable or truncated weights, a missing file on the Hub, ...
        raise ValueError(f"cannot load the sources: {_first_line(error)}") from None
    components["text_encoder"] = components["text_encoder"].to(torch.float32).eval()
    return components, adapter


def convert(components: dict, motion_adapter: MotionAdapter) -> VideoLatentPipeline:
    r"""
    Build the `VideoLatentPipeline` that computes what diffusers' `AnimateDiffPipeline` computes.

    Args:
        components (`dict`):
            `vae` (`AutoencoderKL`), `text_encoder`, `tokenizer`, `unet` (`UNet2DConditionModel`) and `scheduler`.
        motion_adapter ([`MotionAdapter`]):
            The AnimateDiff motion modules.

    Returns:
        [`VideoLatentPipeline`]: U-Net from `UNetSpatioTemporalModel.from_unet2d(unet, motion_adapter=...)`, VAE from
        `AutoencoderKLVideo.from_image_vae(..., temporal_compression_ratio=1)`, the other components shared.
    """
    return VideoLatentPipeline(
        vae=AutoencoderKLVideo.from_image_vae(components["vae"], temporal_compression_ratio=1).eval(),
        text_encoder=components["text_encoder"],
        tokenizer=components["tokenizer"],
        unet=UNetSpatioTemporalModel.from_unet2d(components["unet"], motion_adapter=motion_adapter).eval(),
        scheduler=components["scheduler"],
    )


@torch.no_grad()
def verify(
    components: dict,
    motion_adapter: MotionAdapter,
    converted: VideoLatentPipeline,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    num_frames: int = 3,
    num_inference_steps: int = 2,
    seed: int = 0,
) -> tuple[float, str]:
    r"""
    Run `AnimateDiffPipeline` and the converted pipeline on the same latents with DDIM (fresh schedulers built from the
    source scheduler's config); raise `VerificationError` beyond tolerance.

    Returns:
        `tuple[float, str]`: the largest absolute difference of the `output_type="np"` frames and what was compared.
    """
    spatial_ratio = 2 ** (len(components["vae"].config.block_out_channels) - 1)
    size = 2 * spatial_ratio * 2 ** (len(components["unet"].config.block_out_channels) - 1)
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(
        1,
        components["unet"].config.in_channels,
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
    reference = AnimateDiffPipeline(
        **{**components, "scheduler": DDIMScheduler.from_config(components["scheduler"].config)},
        motion_adapter=motion_adapter,
    )
    ours = VideoLatentPipeline(
        **{**converted.components, "scheduler": DDIMScheduler.from_config(converted.scheduler.config)}
    )
    for pipeline in (reference, ours):
        pipeline.set_progress_bar_config(disable=True)
    expected = torch.as_tensor(reference(VERIFY_PROMPT, latents=latents.clone(), **arguments).frames)
    actual = torch.as_tensor(ours(VERIFY_PROMPT, latents=latents.clone(), **arguments).frames)
    description = (
        f"AnimateDiffPipeline, {num_inference_steps} DDIM steps, {num_frames} frames of {size}x{size}, guidance 7.5, "
        f'seed {seed}, output_type="np"'
    )
    return verify_close(actual, expected, atol, rtol, name="pipeline output"), description


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
        components, adapter = load_sources(args.base_model_path, args.motion_adapter_path, args.local_files_only)
        converted = convert(components, adapter)
    except (ValueError, TypeError) as error:
        sys.stderr.write(f"{PROG}: error: {error}\n")
        return 2

    # 3. verify in float32, before anything is written
    max_abs_diff, description = None, ""
    if args.verify:
        try:
            max_abs_diff, description = verify(components, adapter, converted, atol=args.atol, rtol=args.rtol)
        except VerificationError as error:
            sys.stderr.write(f"{PROG}: verification failed, nothing written: {error}\n")
            return 1
        print(f"verified: max abs difference of the pipeline outputs {max_abs_diff:.2e} ({description})")

    # 4. save atomically (weights and card), then optionally upload
    sources = [("Base model", args.base_model_path), ("Motion adapter", args.motion_adapter_path)]
    licenses = {}
    for _, source in sources:
        card_data = load_source_card_data(source, local_files_only=args.local_files_only)
        if card_data is not None and card_data.license:
            licenses[source] = card_data.license
    provenance = ConversionProvenance(
        script=SCRIPT,
        sources=sources,
        tolerance=f"atol={args.atol:g}, rtol={args.rtol:g}",
        max_abs_diff=max_abs_diff,
        verification=description,
        command=command,
        source_licenses=licenses,
    )
    if dtype != torch.float32:
        converted.to(dtype=dtype)

    def write(path: str) -> None:
        converted.save_pretrained(path, safe_serialization=args.safe_serialization, variant=args.variant)
        save_model_card(
            path,
            args.repo_id if args.push_to_hub else args.output_path,
            license=combine_licenses(list(licenses.values())),
            base_model=[source for _, source in sources if is_hub_id(source)] or None,
            tags=["animatediff"],
            recommended={**call_defaults(AnimateDiffPipeline), "fps": 8},
            conversion=provenance,
        )

    save_atomically(write, args.output_path, overwrite=args.overwrite)
    print(f"saved VideoLatentPipeline to {args.output_path}")
    if args.push_to_hub:
        print(f"uploaded: {push_folder_to_hub(args.output_path, args.repo_id)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
