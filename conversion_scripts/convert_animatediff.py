"""Convert a Stable Diffusion 1.x pipeline plus an AnimateDiff `MotionAdapter` into a `VideoLatentPipeline` folder.

Example:
    python conversion_scripts/convert_animatediff.py --base_model_path stable-diffusion-v1-5/stable-diffusion-v1-5 \
        --motion_adapter_path guoyww/animatediff-motion-adapter-v1-5-2 --output_path ./animatediff-videolatent

The image `UNet2DConditionModel` and the diffusers `MotionAdapter` (folders or Hub ids) become one
`UNetSpatioTemporalModel` (`from_unet2d(unet, motion_adapter=...)`, strict key mapping), the image `AutoencoderKL`
an `AutoencoderKLVideo` with temporal ratio 1; text encoder, tokenizer and scheduler are carried over. Before anything
is written, diffusers' `AnimateDiffPipeline` and the converted pipeline run on the same latents (a few DDIM steps, fixed
seed, `output_type="np"`) and must agree to `--atol`/`--rtol`. The folder is saved atomically with a model card.

The sources are read in the base U-Net's stored dtype (`--source_variant fp16` reads the `fp16` variant files of both)
and saved in it unless `--dtype` says otherwise. Verification runs in float32 one pipeline at a time: the sources run
first, are then converted and freed, and the converted pipeline runs after them.

Exit codes: 0 success, 1 verification failed (nothing written), 2 bad input (one line on stderr, nothing written).
"""

import argparse
import os
import sys

import diffusers
from diffusers import AnimateDiffPipeline, AutoencoderKL, MotionAdapter, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from diffusers_videolatent import AutoencoderKLVideo, UNetSpatioTemporalModel, VideoLatentPipeline
from diffusers_videolatent.conversion import (
    VERIFY_PROMPT,
    Conversion,
    ConversionArgumentParser,
    add_common_arguments,
    check_pipeline_components,
    first_line,
    read_json,
    run_conversion,
    run_pipeline_in_float32,
    run_pipelines_side_by_side,
    stored_dtype,
    verification_inputs,
    verify_close,
)
from diffusers_videolatent.generation_defaults import call_defaults


PROG = "convert_animatediff"
SCRIPT = "conversion_scripts/convert_animatediff.py"
BASE_COMPONENTS = {
    "unet": ("UNet2DConditionModel",),
    "vae": ("AutoencoderKL",),
    "text_encoder": ("CLIPTextModel",),
    "tokenizer": ("CLIPTokenizer", "CLIPTokenizerFast"),
    "scheduler": None,  # any diffusers scheduler
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ConversionArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base_model_path", required=True, help="Folder or Hub id of a Stable Diffusion 1.x pipeline."
    )
    parser.add_argument("--motion_adapter_path", required=True, help="Folder or Hub id of a diffusers MotionAdapter.")
    add_common_arguments(parser, saved="the VideoLatentPipeline", local_files_only=True)
    return parser.parse_args(argv)


def check_sources(base_model_path: str, motion_adapter_path: str, local_files_only: bool = False) -> dict:
    r"""
    Refuse sources of the wrong kind from their configs alone, before any weight is loaded.

    Returns:
        `dict`: the base pipeline's `model_index.json`.
    """
    index = read_json(base_model_path, "model_index.json", "--base_model_path", local_files_only)
    unet_entry = index.get("unet") or [None, None]
    if unet_entry[1] == "UNet3DConditionModel":
        raise ValueError(
            f"`--base_model_path` {base_model_path!r} holds a text-to-video UNet3DConditionModel; use "
            "convert_text_to_video_sd.py for it."
        )
    check_pipeline_components(base_model_path, index, BASE_COMPONENTS, "--base_model_path")

    adapter_config = read_json(motion_adapter_path, "config.json", "--motion_adapter_path", local_files_only)
    if adapter_config.get("_class_name") != "MotionAdapter":
        raise ValueError(
            f"`--motion_adapter_path` {motion_adapter_path!r} holds a {adapter_config.get('_class_name')!r}, not a "
            "diffusers MotionAdapter."
        )
    if os.path.isdir(base_model_path):
        unet_config = read_json(os.path.join(base_model_path, "unet"), "config.json", "--base_model_path", False)
    else:
        unet_config = read_json(base_model_path, "unet/config.json", "--base_model_path", local_files_only)
    if list(adapter_config["block_out_channels"]) != list(unet_config["block_out_channels"]):
        raise ValueError(
            f"the MotionAdapter's block widths {list(adapter_config['block_out_channels'])} do not match the U-Net's "
            f"{list(unet_config['block_out_channels'])}; the adapter was made for another base model."
        )
    return index


def load_sources(
    base_model_path: str, motion_adapter_path: str, local_files_only: bool = False, variant: str | None = None
) -> tuple[dict, MotionAdapter]:
    r"""
    Load the base pipeline's components and the motion adapter in the dtype the base U-Net is stored in.

    Returns:
        `tuple`: the components (`vae`, `text_encoder`, `tokenizer`, `unet`, `scheduler`) and the `MotionAdapter`.
    """
    index = check_sources(base_model_path, motion_adapter_path, local_files_only)
    dtype = stored_dtype(base_model_path, "unet", variant, "--base_model_path", local_files_only)
    common = {"local_files_only": local_files_only}
    weights = {**common, "variant": variant, "torch_dtype": dtype}
    try:
        scheduler_class = getattr(diffusers, index["scheduler"][1])
        components = {
            "vae": AutoencoderKL.from_pretrained(base_model_path, subfolder="vae", **weights),
            "text_encoder": CLIPTextModel.from_pretrained(base_model_path, subfolder="text_encoder", **weights),
            "tokenizer": CLIPTokenizer.from_pretrained(base_model_path, subfolder="tokenizer", **common),
            "unet": UNet2DConditionModel.from_pretrained(base_model_path, subfolder="unet", **weights),
            "scheduler": scheduler_class.from_pretrained(base_model_path, subfolder="scheduler", **common),
        }
        adapter = MotionAdapter.from_pretrained(motion_adapter_path, **weights)
    except Exception as error:  # unreadable or truncated weights, a missing file on the Hub, ...
        with_variant = f" (`--source_variant` {variant!r})" if variant else ""
        raise ValueError(f"cannot load the sources{with_variant}: {first_line(error)}") from None
    components["text_encoder"] = components["text_encoder"].to(dtype).eval()
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
    expected, actual, description = run_pipelines_side_by_side(
        AnimateDiffPipeline,
        {**components, "motion_adapter": motion_adapter},
        converted,
        num_frames,
        num_inference_steps,
        seed,
        VERIFY_PROMPT,
    )
    return verify_close(actual, expected, atol, rtol, name="pipeline output"), f"AnimateDiffPipeline, {description}"


def load_and_convert(args: argparse.Namespace) -> Conversion:
    """Load the sources named by `args`, convert them, and say how to verify and describe them (see `run_conversion`)."""
    components, adapter = load_sources(
        args.base_model_path, args.motion_adapter_path, args.local_files_only, args.source_variant
    )
    dtype = components["unet"].dtype
    # the sources run now, before the converted pipeline exists, and are freed after conversion (see
    # `run_pipeline_in_float32`)
    expected = None
    if args.verify:
        latents, arguments, description = verification_inputs(components["vae"], components["unet"])
        reference_components = {**components, "motion_adapter": adapter}
        expected = run_pipeline_in_float32(
            AnimateDiffPipeline, reference_components, latents, arguments, VERIFY_PROMPT
        )
        description = f"AnimateDiffPipeline, {description}"
        del reference_components
    converted = convert(components, adapter)
    del components, adapter

    def verify_and_report(atol: float, rtol: float) -> tuple[float, str]:
        actual = run_pipeline_in_float32(VideoLatentPipeline, converted.components, latents, arguments, VERIFY_PROMPT)
        max_abs_diff = verify_close(actual, expected, atol, rtol, name="pipeline output")
        print(f"verified: max abs difference of the pipeline outputs {max_abs_diff:.2e} ({description})")
        return max_abs_diff, description

    # AnimateDiff's defaults, with at most the frames its motion modules' position table holds (the image VAE keeps
    # every frame, so frames are latent frames)
    generation_defaults = {**call_defaults(AnimateDiffPipeline), "fps": 8}
    if converted.unet.max_num_frames is not None:
        generation_defaults["num_frames"] = min(generation_defaults["num_frames"], converted.unet.max_num_frames)
    return Conversion(
        converted=converted,
        name="VideoLatentPipeline",
        sources=[("Base model", args.base_model_path), ("Motion adapter", args.motion_adapter_path)],
        verify=verify_and_report,
        generation_defaults=generation_defaults,
        card_kwargs={"tags": ["animatediff"]},
        local_files_only=args.local_files_only,
        dtype=dtype,
    )


def main(argv: list[str] | None = None) -> int:
    return run_conversion(PROG, SCRIPT, parse_args, load_and_convert, argv)


if __name__ == "__main__":
    sys.exit(main())
