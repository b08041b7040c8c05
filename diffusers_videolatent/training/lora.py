"""LoRA and partial fine-tuning of a [`UNetSpatioTemporalModel`] for `train_text_to_video`.

Two ways to train less than the whole U-Net, with diffusers' conventions:

- `--rank` (with `--lora_alpha`, `--lora_dropout`, `--lora_layers`): PEFT LoRA adapters on the attention projections
  (`to_q`, `to_k`, `to_v`, `to_out.0`) of all, the spatial or the temporal attentions, or of the modules named in a
  comma-separated list, as diffusers' Flux LoRA script takes them. The base weights are frozen (and never written);
  checkpoints hold the LoRA layers only, and the result is `pytorch_lora_weights.safetensors` (keys prefixed `unet.`),
  written by the pipeline's `save_lora_weights`, that `pipe.load_lora_weights(output_dir)` loads.
- `--trainable_layers spatial|temporal`: full training of one part of the U-Net (the temporal layers of an inflated
  image model, as AnimateDiff motion modules are made), the other part frozen and bit-identical after training.

The temporal layers are the modules named `temporal_convs`, `temporal_attentions` and `transformer_in` (ModelScope's
frame attention before the first block); every other layer is spatial (the image model's).
"""

import argparse

import torch
from accelerate import Accelerator
from diffusers.training_utils import cast_training_params
from diffusers.utils import convert_unet_state_dict_to_peft
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

from ..models import UNetSpatioTemporalModel
from ..pipelines import VideoLatentPipeline


LAYER_GROUPS = ("all", "spatial", "temporal")
ATTENTION_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")
TEMPORAL_MODULE_NAMES = ("temporal_convs", "temporal_attentions", "transformer_in")


def is_temporal(name: str) -> bool:
    """Whether the module or parameter `name` of a [`UNetSpatioTemporalModel`] belongs to a temporal layer."""
    return any(part in TEMPORAL_MODULE_NAMES for part in name.split("."))


def _in_group(name: str, group: str) -> bool:
    return group == "all" or is_temporal(name) == (group == "temporal")


def add_fine_tuning_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds `--rank`, `--lora_alpha`, `--lora_dropout`, `--lora_layers` and `--trainable_layers`."""
    group = parser.add_argument_group("LoRA and partial fine-tuning")
    group.add_argument(
        "--rank",
        type=int,
        default=None,
        help="Train a LoRA of this rank instead of the U-Net's weights (frozen); saved as "
        "pytorch_lora_weights.safetensors, which `pipe.load_lora_weights(output_dir)` loads.",
    )
    group.add_argument("--lora_alpha", type=float, default=None, help="LoRA scale numerator (default: --rank).")
    group.add_argument("--lora_dropout", type=float, default=0.0, help="Dropout on the LoRA layers' input.")
    group.add_argument(
        "--lora_layers",
        type=str,
        default="all",
        help='Where the LoRA goes: the attention projections of "all", the "spatial" or the "temporal" attentions, or '
        "a comma-separated list of module names (a name matches every module whose name ends with it, e.g. "
        '"attn1.to_q,attn1.to_v").',
    )
    group.add_argument(
        "--trainable_layers",
        type=str,
        default=None,
        choices=LAYER_GROUPS,
        help='Full training of "spatial" or "temporal" layers only (the temporal ones: temporal convolutions, temporal '
        'attentions, transformer_in); the rest is frozen. Default "all". Not with --rank.',
    )


def check_fine_tuning_arguments(args: argparse.Namespace) -> None:
    """Raises a `ValueError` for LoRA and partial-training options that no training can use."""
    if args.rank is None:
        for name, default in (("lora_alpha", None), ("lora_dropout", 0.0), ("lora_layers", "all")):
            if getattr(args, name) != default:
                raise ValueError(f"`--{name}` configures a LoRA; pass --rank too.")
        return
    if args.rank < 1:
        raise ValueError(f"`--rank` must be a positive integer, but is {args.rank}.")
    if args.lora_alpha is not None and not args.lora_alpha > 0:
        raise ValueError(f"`--lora_alpha` must be > 0, but is {args.lora_alpha}.")
    if not 0.0 <= args.lora_dropout < 1.0:
        raise ValueError(f"`--lora_dropout` must be in [0, 1), but is {args.lora_dropout}.")
    if not [name for name in args.lora_layers.split(",") if name.strip()]:
        raise ValueError(f"`--lora_layers` must name layers, but is {args.lora_layers!r}.")
    if args.trainable_layers is not None:
        raise ValueError(
            "`--trainable_layers` chooses which base weights train, but with --rank the base is frozen; choose where "
            "the LoRA goes with --lora_layers."
        )
    if args.use_ema:
        raise ValueError("`--use_ema` keeps an average of full weights; it is not supported with --rank.")


def lora_target_modules(unet: torch.nn.Module, lora_layers: str) -> list[str]:
    r"""
    The full names of the modules of `unet` that `--lora_layers` puts a LoRA on.

    Args:
        unet (`torch.nn.Module`):
            The U-Net, before any adapter is added.
        lora_layers (`str`):
            `"all"`, `"spatial"` or `"temporal"` (the attention projections `to_q`, `to_k`, `to_v`, `to_out.0` of those
            attentions), or a comma-separated list of module names, each matching the modules whose name is it or ends
            with `"." + name`.

    Returns:
        `list[str]`: The module names, in the U-Net's order.
    """
    names = [name for name, _ in unet.named_modules() if name]
    if lora_layers in LAYER_GROUPS:
        targets = [
            name
            for name in names
            if _in_group(name, lora_layers) and any(name.endswith(f".{suffix}") for suffix in ATTENTION_PROJECTIONS)
        ]
        if not targets:
            raise ValueError(f"`--lora_layers` {lora_layers!r}: the U-Net has no such attention to put a LoRA on.")
        return targets
    requested = [part.strip() for part in lora_layers.split(",") if part.strip()]
    unmatched = [part for part in requested if not any(n == part or n.endswith(f".{part}") for n in names)]
    if unmatched:
        raise ValueError(f"`--lora_layers` names {unmatched} match no module of the U-Net.")
    return [name for name in names if any(name == part or name.endswith(f".{part}") for part in requested)]


def setup_fine_tuning(unet: UNetSpatioTemporalModel, args: argparse.Namespace, weight_dtype: torch.dtype) -> None:
    r"""
    Makes trainable what the options ask, in place: with `--rank`, the base is frozen (cast to `weight_dtype`, as
    diffusers' LoRA scripts do) and a LoRA adapter `"default"` is added, in float32; with `--trainable_layers`, only
    that part of the U-Net keeps `requires_grad`. With neither, the whole U-Net trains.
    """
    if args.rank is not None:
        targets = lora_target_modules(unet, args.lora_layers)
        unet.requires_grad_(False)
        if weight_dtype != unet.dtype:
            unet.to(dtype=weight_dtype)
        unet.add_adapter(
            LoraConfig(
                r=args.rank,
                lora_alpha=args.rank if args.lora_alpha is None else args.lora_alpha,
                lora_dropout=args.lora_dropout,
                init_lora_weights="gaussian",
                target_modules=targets,
            )
        )
        cast_training_params(unet, dtype=torch.float32)
    elif args.trainable_layers not in (None, "all"):
        for name, parameter in unet.named_parameters():
            parameter.requires_grad_(_in_group(name, args.trainable_layers))


def trainable_parameters(unet: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters the optimizer trains (those that require a gradient)."""
    return [parameter for parameter in unet.parameters() if parameter.requires_grad]


def fine_tuning_run_config(args: argparse.Namespace) -> dict:
    """The run-config entries a checkpoint must share with the run that resumes it."""
    return {
        "rank": args.rank,
        "lora_alpha": args.lora_alpha,
        "lora_dropout": args.lora_dropout,
        "lora_layers": args.lora_layers,
        "trainable_layers": args.trainable_layers,
    }


def save_unet_lora(unet: UNetSpatioTemporalModel, save_directory: str, is_main_process: bool = True) -> None:
    """Writes the U-Net's `"default"` adapter with `VideoLatentPipeline.save_lora_weights` (keys prefixed `unet.`,
    its `LoraConfig` in the file's metadata), as `save_directory/pytorch_lora_weights.safetensors`."""
    layers = get_peft_model_state_dict(unet, adapter_name="default")  # peft's layout: `...to_q.lora_A.weight`
    VideoLatentPipeline.save_lora_weights(
        save_directory,
        unet_lora_layers={key: value.detach().float().contiguous() for key, value in layers.items()},
        is_main_process=is_main_process,
        unet_lora_adapter_metadata=unet.peft_config["default"].to_dict(),
    )


def load_unet_lora_(unet: UNetSpatioTemporalModel, input_dir: str) -> None:
    """Loads the `"default"` adapter's weights saved by [`save_unet_lora`] into `unet`, which has the adapter."""
    state_dict, _ = VideoLatentPipeline.lora_state_dict(input_dir)
    unet_state_dict = {
        key.removeprefix("unet."): value for key, value in state_dict.items() if key.startswith("unet.")
    }
    result = set_peft_model_state_dict(unet, convert_unet_state_dict_to_peft(unet_state_dict), adapter_name="default")
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"The LoRA checkpoint {input_dir!r} holds layers this U-Net lacks: {unexpected[:5]}.")
    cast_training_params(unet, dtype=torch.float32)


def register_lora_checkpoint_hooks(accelerator: Accelerator) -> None:
    r"""
    Makes `accelerator.save_state` / `load_state` write and read the U-Net's LoRA layers only (as
    `pytorch_lora_weights.safetensors` in the checkpoint), not the frozen base: the optimizer, scheduler and random
    states are saved as usual, so resuming is exact.
    """

    def is_unet(model) -> bool:
        return isinstance(accelerator.unwrap_model(model), UNetSpatioTemporalModel)

    def save_model_hook(models, weights, output_dir):
        for index in reversed(range(len(models))):
            if is_unet(models[index]):
                save_unet_lora(accelerator.unwrap_model(models[index]), output_dir, accelerator.is_main_process)
                if weights:
                    weights.pop(index)  # accelerate must not write the full U-Net

    def load_model_hook(models, input_dir):
        for index in reversed(range(len(models))):
            if is_unet(models[index]):
                load_unet_lora_(accelerator.unwrap_model(models.pop(index)), input_dir)

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)
