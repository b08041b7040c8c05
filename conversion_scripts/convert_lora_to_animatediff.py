"""Export a temporal LoRA of a pipeline converted from AnimateDiff as a diffusers AnimateDiff motion LoRA.

Example:
    accelerate launch -m diffusers_videolatent.training.train_text_to_video \
        --pretrained_model_name_or_path ./animatediff-videolatent --rank 8 --lora_layers temporal ... \
        --output_dir ./my-motion-lora
    python conversion_scripts/convert_lora_to_animatediff.py --lora_path ./my-motion-lora \
        --output_path ./my-motion-lora-animatediff

The reverse of loading an AnimateDiff motion LoRA into `VideoLatentPipeline`: the LoRA (a folder holding
`pytorch_lora_weights.safetensors`, or the file) must be one of a U-Net made by `convert_animatediff.py`
(`UNetSpatioTemporalModel.from_unet2d(unet, motion_adapter=...)`) and hold layers of its temporal transformers only;
their names `...temporal_attentions...` become the `UNetMotionModel`'s `...motion_modules...` (the weights and the
LoRA's metadata are otherwise unchanged), written by `AnimateDiffPipeline.save_lora_weights`. Then

    pipe = AnimateDiffPipeline.from_pretrained(base, motion_adapter=MotionAdapter.from_pretrained(adapter))
    pipe.load_lora_weights("./my-motion-lora-animatediff")

computes what our pipeline computes with the LoRA. The folder is written atomically.

Exit codes: 0 success, 2 bad input (one line on stderr, nothing written).
"""

import argparse
import os
import sys

from diffusers import AnimateDiffPipeline

from diffusers_videolatent import VideoLatentPipeline
from diffusers_videolatent.conversion import ConversionArgumentParser, first_line, save_atomically
from diffusers_videolatent.models.conversion_unet import (
    convert_to_unet_motion_lora_state_dict,
    convert_unet_motion_lora_config,
    is_unet_motion_lora_state_dict,
)


PROG = "convert_lora_to_animatediff.py"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ConversionArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--lora_path", type=str, required=True, help="A LoRA folder (or file) of a converted AnimateDiff pipeline."
    )
    parser.add_argument("--weight_name", type=str, default=None, help="The LoRA file's name inside --lora_path.")
    parser.add_argument("--output_path", type=str, required=True, help="The folder the motion LoRA is written to.")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing non-empty --output_path.")
    return parser.parse_args(argv)


def convert_lora(lora_path: str, weight_name: str | None = None) -> tuple[dict, dict | None]:
    r"""
    Reads our LoRA and maps it to diffusers' `UNetMotionModel`.

    Returns:
        `tuple`: the U-Net's LoRA layers without their `unet.` prefix, and the adapter's `LoraConfig` arguments (or
        `None` when the file has no metadata), both with motion-module names.
    """
    if os.path.isfile(lora_path):
        lora_path, weight_name = os.path.dirname(lora_path) or ".", os.path.basename(lora_path)
    elif not os.path.isdir(lora_path):
        raise ValueError(f"`--lora_path` {lora_path!r} is neither a folder nor a file.")
    state_dict, _, metadata = VideoLatentPipeline.lora_state_dict(
        lora_path, weight_name=weight_name, return_lora_metadata=True
    )
    if is_unet_motion_lora_state_dict(state_dict):
        raise ValueError(f"`--lora_path` {lora_path!r} already names AnimateDiff motion modules.")
    others = sorted({key.split(".")[0] for key in state_dict if not key.startswith("unet.")})
    if others:
        raise ValueError(
            f"`--lora_path` {lora_path!r} also holds LoRA layers of {others}; a motion LoRA has U-Net ones."
        )
    if not state_dict:
        raise ValueError(f"`--lora_path` {lora_path!r} holds no LoRA layers.")
    layers = convert_to_unet_motion_lora_state_dict(
        {key.removeprefix("unet."): value for key, value in state_dict.items()}
    )
    if metadata:
        # the file's metadata keys carry the component prefix (`unet.target_modules`); `save_lora_weights` adds it
        metadata = {key.removeprefix("unet."): value for key, value in metadata.items() if key.startswith("unet.")}
        metadata = convert_unet_motion_lora_config(metadata, reverse=True)
    return layers, metadata


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as parse_exit:  # a bad option (one line on stderr) or --help
        return parse_exit.code
    try:
        layers, metadata = convert_lora(args.lora_path, args.weight_name)
        save_atomically(
            lambda path: AnimateDiffPipeline.save_lora_weights(
                path, unet_lora_layers=layers, unet_lora_adapter_metadata=metadata
            ),
            args.output_path,
            args.overwrite,
        )
    except (ValueError, TypeError, OSError) as error:
        sys.stderr.write(f"{PROG}: error: {first_line(error)}\n")
        return 2
    print(f"wrote {len(layers)} motion LoRA tensors to {args.output_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
