"""Convert a diffusers text-to-video checkpoint (ModelScope, Zeroscope) into a `VideoLatentPipeline` folder.

Example:
    python conversion_scripts/convert_text_to_video_sd.py --checkpoint_path ali-vilab/text-to-video-ms-1.7b \
        --output_path ./text-to-video-ms-1.7b-videolatent --dtype fp16

The source is a diffusers `TextToVideoSDPipeline` (folder or Hub id): its `UNet3DConditionModel` becomes a
`UNetSpatioTemporalModel` (`from_unet3d`, strict key mapping), its image `AutoencoderKL` an `AutoencoderKLVideo` with
temporal ratio 1 (`from_image_vae`, frame by frame as before); text encoder, tokenizer and scheduler are carried over.
Before anything is written both pipelines run on the same latents (a few DDIM steps, fixed seed, `output_type="np"`)
and must agree to `--atol`/`--rtol`. The folder is saved atomically with a model card.

The source is read in its stored dtype (`--source_variant fp16` reads `*.fp16.safetensors`) and saved in it unless
`--dtype` says otherwise. Verification runs in float32 one model at a time: the source runs first, is then converted
and freed, and the converted pipeline runs after it, so the peak memory stays near one float32 copy of the source.

Exit codes: 0 success, 1 verification failed (nothing written), 2 bad input (one line on stderr, nothing written).
"""

import argparse
import sys

import torch
from diffusers import TextToVideoSDPipeline

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
    verification_frame_size,
    verification_inputs,
    verify_close,
)
from diffusers_videolatent.generation_defaults import call_defaults


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ConversionArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint_path", required=True, help="Folder or Hub id of a TextToVideoSDPipeline.")
    parser.add_argument("--revision", default=None, help="Hub revision of the source.")
    add_common_arguments(parser, saved="the VideoLatentPipeline", local_files_only=True)
    return parser.parse_args(argv)


def read_model_index(path: str, revision: str | None = None, local_files_only: bool = False) -> dict:
    r"""
    The `model_index.json` of a local folder or Hub repository (`--checkpoint_path`), as a dict.

    Args:
        path (`str`):
            Local folder or Hub id.
        revision (`str`, *optional*):
            Hub revision.
        local_files_only (`bool`, *optional*, defaults to `False`):
            Only use the local Hub cache.
    """
    return read_json(path, "model_index.json", "--checkpoint_path", local_files_only, revision)


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
    check_pipeline_components(path, index, SOURCE_COMPONENTS, "--checkpoint_path")


def load_source_pipeline(
    checkpoint_path: str, revision: str | None = None, local_files_only: bool = False, variant: str | None = None
) -> TextToVideoSDPipeline:
    r"""
    Load and check a diffusers `TextToVideoSDPipeline` in the dtype its U-Net is stored in.

    Args:
        checkpoint_path (`str`):
            Local folder or Hub id.
        revision (`str`, *optional*):
            Hub revision.
        local_files_only (`bool`, *optional*, defaults to `False`):
            Only use the local Hub cache.
        variant (`str`, *optional*):
            Variant of the weight files (`--source_variant`), e.g. `fp16`.

    Returns:
        [`TextToVideoSDPipeline`]: the source pipeline.
    """
    check_source_index(checkpoint_path, read_model_index(checkpoint_path, revision, local_files_only))
    dtype = stored_dtype(checkpoint_path, "unet", variant, "--checkpoint_path", local_files_only, revision)
    try:
        # not memory-mapped: a mapped file stays resident until its last tensor is freed, so casting the mapped U-Net
        # to float32 would hold its float16 file and its float32 copy at once (1.45x one float32 copy at 1.7B)
        return TextToVideoSDPipeline.from_pretrained(
            checkpoint_path,
            revision=revision,
            local_files_only=local_files_only,
            torch_dtype=dtype,
            variant=variant,
            disable_mmap=True,
        )
    except Exception as error:  # unreadable or truncated weights, a missing file on the Hub, ...
        with_variant = f" (`--source_variant` {variant!r})" if variant else ""
        raise ValueError(
            f"cannot load `--checkpoint_path` {checkpoint_path!r}{with_variant}: {first_line(error)}"
        ) from None


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
    return verification_frame_size(pipeline.vae, pipeline.unet)


def run_side_by_side(
    source, converted: VideoLatentPipeline, num_frames: int = 3, num_inference_steps: int = 2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, str]:
    r"""
    Run a diffusers pipeline and its converted `VideoLatentPipeline` on the same latents with DDIM (see
    [`~diffusers_videolatent.conversion.run_pipelines_side_by_side`]).

    Returns:
        `tuple`: the source's frames, the converted frames (both `[B, F, H, W, 3]` in [0, 1]) and a description.
    """
    return run_pipelines_side_by_side(
        source.__class__, source.components, converted, num_frames, num_inference_steps, seed, VERIFY_PROMPT
    )


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


def load_and_convert(args: argparse.Namespace) -> Conversion:
    """Load the pipeline named by `args`, convert it, and say how to verify and describe it (see `run_conversion`)."""
    source = load_source_pipeline(args.checkpoint_path, args.revision, args.local_files_only, args.source_variant)
    dtype = source.unet.dtype
    # the source runs now, before the converted pipeline exists; it is freed after conversion, so the two are never
    # in float32 at the same time
    expected = None
    if args.verify:
        latents, arguments, description = verification_inputs(source.vae, source.unet)
        expected = run_pipeline_in_float32(source.__class__, source.components, latents, arguments, VERIFY_PROMPT)
    converted = convert(source)
    del source

    def verify_and_report(atol: float, rtol: float) -> tuple[float, str]:
        actual = run_pipeline_in_float32(VideoLatentPipeline, converted.components, latents, arguments, VERIFY_PROMPT)
        max_abs_diff = verify_close(actual, expected, atol, rtol, name="pipeline output")
        print(f"verified: max abs difference of the pipeline outputs {max_abs_diff:.2e} ({description})")
        return max_abs_diff, description

    return Conversion(
        converted=converted,
        name="VideoLatentPipeline",
        sources=[("Source pipeline (TextToVideoSDPipeline)", args.checkpoint_path)],
        verify=verify_and_report,
        generation_defaults={**call_defaults(TextToVideoSDPipeline), "fps": 8},
        revision=args.revision,
        local_files_only=args.local_files_only,
        dtype=dtype,
    )


def main(argv: list[str] | None = None) -> int:
    return run_conversion(PROG, SCRIPT, parse_args, load_and_convert, argv)


if __name__ == "__main__":
    sys.exit(main())
