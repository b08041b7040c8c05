"""Trains or fine-tunes an `AutoencoderKLVideo` with a reconstruction loss, a KL term and an optional temporal loss.

Runs with accelerate on one CPU, one GPU or many nodes (DDP, FSDP, DeepSpeed through `accelerate config`):

    accelerate launch -m diffusers_videolatent.training.train_video_vae \\
        --output_dir out/vae --max_train_steps 3000 --train_batch_size 4 --learning_rate 1e-3 --use_ema

The model is the tiny default (or `--vae_config`) built from scratch, an `AutoencoderKLVideo` to fine-tune
(`--pretrained_vae_name_or_path`), or a diffusers image `AutoencoderKL` inflated with
`AutoencoderKLVideo.from_image_vae` (`--image_vae_name_or_path`, `--temporal_compression_ratio`). At the end the
latent statistics of the training data set the VAE's normalisation (`--latent_normalization`), so the diffusion model
trained on its latents sees unit-variance inputs, and the VAE is saved with `save_pretrained` in `--output_dir`.

`--train_decoder_only` freezes the encoder (as for Stable Diffusion's fine-tuned `sd-vae-ft-mse` decoder): the latent
space and its normalisation stay those of the loaded VAE, so a diffusion model already trained on its latents keeps
working and decodes sharper. `--decoder_padding_mode replicate` gives the loaded decoder edge-copy padding at the
frame's border (the config's `decoder_padding_mode`; zero padding darkens an object that the border cuts), to be
fine-tuned with it.

`--train_encoder_only` freezes the decoder instead and trains the encoder, with `--latent_anchor_weight` keeping its
latents near the loaded encoder's: a diffusion model trained on those latents keeps working, and what the decoder can
draw but the encoder's latent misses (a bright object cut by a corner of the first frame) is learnt where it is.
"""

import argparse
import copy
import math
import os

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from diffusers import AutoencoderKL
from diffusers.training_utils import EMAModel
from diffusers.utils import export_to_gif
from tqdm.auto import tqdm

from ..geometry import check_num_frames, num_latent_frames
from ..models import AutoencoderKLVideo
from ..models.autoencoder_kl_video import (
    DECODER_PADDING_MODES,
    CausalConv3d,
    TemporalDownsample,
    TemporalUpsample,
)
from ..models.video_latents import latents_statistics
from .buckets import format_buckets
from .run_control import RunControl, clip_gradients, closes_run_control
from .sharding import ShardedTraining, shard_model
from .training_utils import (
    add_common_arguments,
    bucket_batch_sampler,
    build_dataset,
    check_common_arguments,
    check_foreground_loss_arguments,
    check_train_fps,
    check_video_size,
    clip_sizes,
    collate_videos,
    common_run_config,
    create_accelerator,
    create_dataloader_and_optimizer,
    dilate_foreground,
    end_training,
    epoch_batches,
    global_sample_indices,
    load_json_option,
    resume_training,
    sample_generators,
    save_checkpoint,
    skipped_data_summary,
)


logger = get_logger(__name__)

# `--frame_border_loss_weight` weights the pixels this close to the frame's border
FRAME_BORDER_PIXELS = 2

# The tiny default VAE: spatial ratio 8 (four levels), temporal ratio 4 (two temporal halvings), 16 latent channels
# (the compression of Wan's and CogVideoX's VAEs; with 4 channels, four moving frames per latent frame were learnt
# far more slowly).
# The full-resolution level is 8 channels wide: it dominates the cost (about 1 s per training step of 4 videos of
# 17 x 64 x 64 on a 2-core CPU, against about 18 s with 16 channels and a 64-channel last level).
TINY_VAE_CONFIG = {
    "block_out_channels": (8, 16, 32, 32),
    "layers_per_block": 1,
    "temporal_downsample": (False, True, True, False),
    "latent_channels": 16,
    # 4 channels per group at full resolution: with one channel per group, the norm before the output convolution
    # would erase each channel's intensity, and with it the colour of a flat object
    "norm_num_groups": 2,
    "mid_block_add_attention": False,
}


class AutoencoderTrainingModule(torch.nn.Module):
    """
    Encodes, samples the posterior and decodes in one `forward`, so that DDP / FSDP / DeepSpeed see every trained
    parameter used inside the wrapped module's `forward` (calling `vae.encode` on a wrapped model would bypass them).
    """

    def __init__(self, vae: AutoencoderKLVideo, sample_posterior: bool = True):
        super().__init__()
        self.vae = vae
        self.sample_posterior = sample_posterior

    def forward(
        self, pixel_values: torch.Tensor, generators: list[torch.Generator]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns the reconstruction `(B, 3, F, H, W)`, the KL `(B,)` and the posterior's mean (`--latent_anchor_weight`)."""
        # all latent frames in one streamed step: the fastest for training clips
        chunk_size = num_latent_frames(pixel_values.shape[2], self.vae.temporal_compression_ratio)
        # a frozen encoder (`--train_decoder_only`) builds no autograd graph: none of its inputs requires grad
        posterior = self.vae.encode(pixel_values, chunk_size=chunk_size).latent_dist
        # each video's posterior sample from its own generator (`training_utils.sample_generators`):
        # (B, C, F_lat, H_lat, W_lat)
        latents = posterior.sample(generators) if self.sample_posterior else posterior.mode()
        reconstruction = self.vae.decode(latents, chunk_size=chunk_size).sample  # (B, 3, F, H, W)
        # KL to the standard normal, summed over the latent (`DiagonalGaussianDistribution.kl` sums 4-D latents only)
        kl = 0.5 * (posterior.mean**2 + posterior.var - 1.0 - posterior.logvar).sum(dim=(1, 2, 3, 4))  # (B,)
        return reconstruction, kl, posterior.mean


TRAINED_PARTS = ("all", "decoder", "encoder")


def trained_parameters(vae: AutoencoderKLVideo, part: str = "all") -> list[torch.nn.Parameter]:
    """
    The parameters to train: all of them (`part="all"`), those of the decoder and `post_quant_conv` (`"decoder"`) or
    those of the encoder and `quant_conv` (`"encoder"`); the rest are frozen.
    """
    if part not in TRAINED_PARTS:
        raise ValueError(f"`part` must be one of {TRAINED_PARTS}, but is {part!r}.")
    if part == "all":
        return list(vae.parameters())
    vae.requires_grad_(False)
    coder, convolution = (vae.decoder, vae.post_quant_conv) if part == "decoder" else (vae.encoder, vae.quant_conv)
    modules = [coder] if convolution is None else [convolution, coder]
    parameters = [parameter for module in modules for parameter in module.parameters()]
    for parameter in parameters:
        parameter.requires_grad_(True)
    return parameters


def trained_part(args: argparse.Namespace) -> str:
    """What `--train_decoder_only` / `--train_encoder_only` leave to train: one of `TRAINED_PARTS`."""
    return "decoder" if args.train_decoder_only else "encoder" if args.train_encoder_only else "all"


class LatentAnchor:
    """
    The loaded VAE's encoder, frozen: `--latent_anchor_weight` weighs the mean squared difference between the trained
    encoder's latent means and its, both normalised as a diffusion model sees them (the loaded `scaling_factor`, or
    per-channel `latents_std`), so a weight means the same for any VAE.
    """

    def __init__(self, vae: AutoencoderKLVideo, device: torch.device):
        self.vae = copy.deepcopy(vae).requires_grad_(False).eval().to(device)
        self.vae.decoder = None  # only the encoder is run
        self.vae.post_quant_conv = None

    def loss(self, pixel_values: torch.Tensor, latent_mean: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            chunk_size = num_latent_frames(pixel_values.shape[2], self.vae.temporal_compression_ratio)
            anchor = self.vae.encode(pixel_values, chunk_size=chunk_size).latent_dist.mean
        scaling_factor, _, _, latents_std = latents_statistics(self.vae, anchor)
        return F.mse_loss(
            latent_mean.float() * scaling_factor / latents_std, anchor.float() * scaling_factor / latents_std
        )


def frame_weights(num_frames: int, position_weights: list[float], first_frame_weight: float = 1.0) -> torch.Tensor:
    """
    The loss weight of each frame: `first_frame_weight` for the image frame, then `position_weights[(f - 1) % r]` for
    frame f > 0 (its place in its latent frame's group of r = `len(position_weights)`), normalised to a mean of 1.
    """
    weights = torch.full((num_frames,), float(first_frame_weight))
    for frame in range(1, num_frames):
        weights[frame] = position_weights[(frame - 1) % len(position_weights)]
    return weights / weights.mean()


def reconstruction_losses(
    reconstruction: torch.Tensor,
    target: torch.Tensor,
    kind: str,
    temporal_weight: float,
    position_weights: list[float] | None = None,
    first_frame_weight: float = 1.0,
    pixel_weights: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """
    The pixel loss (`"l1"` or `"mse"`), its frames weighted by their place in their latent frame's group when
    `position_weights` is given and the first frame by `first_frame_weight` (see `frame_weights`), each frame's pixels
    by `pixel_weights` `(B, F, H, W)` when given (normalised here to a mean of 1 in each frame, so the frames keep
    their weights; see `foreground_pixel_weights`), and, when `temporal_weight` > 0, the L1 loss of frame differences.
    """
    reconstruction, target = reconstruction.float(), target.float()
    losses = {}
    if position_weights is not None or first_frame_weight != 1.0 or pixel_weights is not None:
        errors = (reconstruction - target).abs() if kind == "l1" else (reconstruction - target).square()
        if pixel_weights is not None:
            pixel_weights = pixel_weights.float().to(errors.device)
            errors = errors * (pixel_weights / pixel_weights.mean(dim=(2, 3), keepdim=True)).unsqueeze(1)
        weights = frame_weights(target.shape[2], position_weights or [1.0], first_frame_weight).to(errors.device)
        losses["reconstruction_loss"] = (errors.mean(dim=(0, 1, 3, 4)) * weights).mean()
    elif kind == "l1":
        losses["reconstruction_loss"] = F.l1_loss(reconstruction, target)
    else:
        losses["reconstruction_loss"] = F.mse_loss(reconstruction, target)
    if temporal_weight > 0 and target.shape[2] > 1:
        # motion must be reproduced, not only each frame: compare consecutive-frame differences
        losses["temporal_loss"] = F.l1_loss(torch.diff(reconstruction, dim=2), torch.diff(target, dim=2))
    return losses


def foreground_pixel_weights(foreground: torch.Tensor, weight: float, dilation: int) -> torch.Tensor:
    """
    Each pixel's loss weight `(B, F, H, W)`: 1 + `weight` times the object's coverage `foreground` `(B, F, H, W)`
    grown by `dilation` pixels on every side (`dilate_foreground`).
    """
    return 1.0 + weight * dilate_foreground(foreground.float(), dilation)


def frame_border_weights(height: int, width: int, weight: float) -> torch.Tensor:
    """Each pixel's loss weight `(H, W)`: `weight` within `FRAME_BORDER_PIXELS` of the frame's border, 1 inside."""
    weights = torch.full((height, width), float(weight))
    weights[FRAME_BORDER_PIXELS:-FRAME_BORDER_PIXELS, FRAME_BORDER_PIXELS:-FRAME_BORDER_PIXELS] = 1.0
    return weights


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    models = parser.add_argument_group("model")
    models.add_argument("--pretrained_vae_name_or_path", type=str, default=None, help="An AutoencoderKLVideo to tune.")
    models.add_argument("--vae_subfolder", type=str, default=None)
    models.add_argument(
        "--image_vae_name_or_path", type=str, default=None, help="A diffusers AutoencoderKL to inflate and tune."
    )
    models.add_argument("--image_vae_subfolder", type=str, default=None)
    models.add_argument(
        "--temporal_compression_ratio", type=int, default=4, help="With --image_vae_name_or_path: 1, 2, 4 or 8."
    )
    models.add_argument(
        "--vae_config",
        type=str,
        default=None,
        help="JSON object or file: an AutoencoderKLVideo config to train from scratch (default: the tiny config).",
    )
    models.add_argument("--revision", type=str, default=None)
    models.add_argument(
        "--train_decoder_only",
        action="store_true",
        help="Freeze the encoder (and quant_conv) of the loaded VAE and train its decoder: the latents, and the "
        "normalisation in its config, stay as they are.",
    )
    models.add_argument(
        "--train_encoder_only",
        action="store_true",
        help="Freeze the decoder (and post_quant_conv) of the loaded VAE and train its encoder: the decoder and the "
        "normalisation in its config stay as they are; keep the latents near the loaded encoder's with "
        "--latent_anchor_weight.",
    )
    models.add_argument(
        "--decoder_padding_mode",
        type=str,
        default=None,
        choices=list(DECODER_PADDING_MODES),
        help="How the decoder pads the frame's border (the VAE config's `decoder_padding_mode`; default: the loaded "
        "VAE's, zeros for a new one). A trained decoder switched to another mode needs fine-tuning with it.",
    )

    losses = parser.add_argument_group("losses")
    losses.add_argument("--reconstruction_loss", type=str, default="l1", choices=["l1", "mse"])
    losses.add_argument("--kl_weight", type=float, default=1e-6, help="Weight of the KL divergence per element.")
    losses.add_argument(
        "--decode_posterior",
        type=str,
        default="sample",
        choices=["sample", "mode"],
        help="Decode a sample of the latent distribution, or its mode (faster to learn with a tiny --kl_weight: the "
        "decoder does not have to wait for the encoder to shrink the initial unit variance).",
    )
    losses.add_argument(
        "--temporal_loss_weight", type=float, default=0.0, help="Weight of the L1 loss of frame differences."
    )
    losses.add_argument(
        "--latent_anchor_weight",
        type=float,
        default=0.0,
        help="Weight of the mean squared difference between the trained encoder's latent means and the loaded "
        "encoder's, normalised as a diffusion model sees them: a diffusion model trained on the loaded VAE's latents "
        "keeps its latent space. 0 (the default) leaves the encoder free.",
    )
    losses.add_argument(
        "--travel_fraction_range",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="Moving shapes: draw each clip's travel (a fraction of the frame) from this range, so the VAE sees many "
        "speeds; a VAE trained at one speed decodes others with a flicker of the temporal ratio's period.",
    )
    losses.add_argument(
        "--train_fps",
        type=float,
        nargs="+",
        default=None,
        help="Moving shapes from its physical world (docs/dials.md), one frame rate drawn per clip from these: objects "
        "move at speeds in frame sizes per second, so long clips at slow frame rates cross the whole frame and touch "
        "its edges (57% of 61-frame 64x64 clips at 4-24 fps, 6% of fixed-travel clips); a video folder resamples "
        "every video to this one rate.",
    )
    losses.add_argument(
        "--single_frame_clip_lengths",
        type=int,
        nargs="+",
        default=None,
        metavar="FRAMES",
        help="Moving shapes from its physical world: each 1-frame clip is the first frame of a clip of one of these "
        "frame counts (one drawn per clip) at its frame rate, placed where that clip starts. Long clips start at the "
        "frame's edge, where image-to-video's first frames of long clips lie and a 1-frame clip drawn on its own "
        "seldom does; default: 1-frame clips placed anywhere they fit.",
    )
    losses.add_argument(
        "--alternate_num_frames",
        type=int,
        nargs="+",
        default=None,
        metavar="FRAMES",
        help="Train on clips of these frame counts in turn, one count per optimisation step: each is the "
        "`--num_frames` clip subsampled in time over the same span (so shorter clips move faster per frame), and "
        "`--num_frames` - 1 must be a multiple of each count - 1. A decoder trained on one clip length flickers on "
        "the later latent frames of other lengths.",
    )

    losses.add_argument(
        "--frame_position_weights",
        type=float,
        nargs="+",
        default=None,
        metavar="WEIGHT",
        help="Weights of the pixel loss by a frame's place in its latent frame's group: one per place, for the "
        "frames f with f mod r = 1, ..., r - 1, 0 (r the VAE's temporal compression ratio; the image frame weighs "
        "1), normalised to a mean of 1 over each clip. A weight above 1 on the last place (f mod r = 0) evens out "
        "a decoder whose last frame of each group is the worst.",
    )

    losses.add_argument(
        "--first_frame_weight",
        type=float,
        default=1.0,
        help="Weight of the first frame's pixel loss against 1 for the others (or their --frame_position_weights), "
        "all normalised to a mean of 1 over each clip. "
        "Image-to-video keeps the image's latent at latent frame 0, and a causal decoder draws frame 0 from it alone: "
        "that frame is what the user sees of their image.",
    )

    losses.add_argument(
        "--foreground_loss_weight",
        type=float,
        default=0.0,
        help="Weight each pixel's loss by 1 + this times the object's coverage of it (moving shapes' foreground "
        "masks, grown by --foreground_loss_dilation pixels), each frame's weights normalised to a mean of 1: the "
        "object's edges and corners, a small part of the frame, get a larger share of the loss. 0 (the default) "
        "weights every pixel alike.",
    )
    losses.add_argument(
        "--foreground_loss_dilation",
        type=int,
        default=0,
        help="Grow the object's weighted pixels (`--foreground_loss_weight`) by this many pixels on every side, so "
        "the pixels just outside its edge weigh as much as those just inside and the weight does not pull the "
        "decoder towards larger objects. 0 (the default) weights the covered pixels alone.",
    )

    losses.add_argument(
        "--frame_border_loss_weight",
        type=float,
        default=1.0,
        help=f"Weight the pixels within {FRAME_BORDER_PIXELS} of the frame's border by this, each frame's weights "
        "normalised to a mean of 1 (with --foreground_loss_weight, the two multiply). A convolution's zero padding "
        "darkens a bright object where it touches the frame's border; there the first frame of image-to-video loses "
        "most (docs/dials.md's stage 27). 1 (the default) weights every pixel alike.",
    )

    final = parser.add_argument_group("latent normalisation and validation")
    final.add_argument(
        "--latent_normalization",
        type=str,
        default="scaling",
        choices=["scaling", "per_channel", "none"],
        help="After training, set `scaling_factor` = 1 / std of the latents (scaling), per-channel "
        "`latents_mean`/`latents_std` (per_channel), or keep the config (none).",
    )
    final.add_argument("--latent_statistics_batches", type=int, default=8, help="Batches used for the statistics.")
    final.add_argument("--num_validation_videos", type=int, default=2, help="Reconstructions saved per validation.")
    final.add_argument("--no_validation", action="store_true")
    add_common_arguments(parser)
    parser.set_defaults(learning_rate=1e-3)
    args = parser.parse_args(argv)

    check_common_arguments(args)
    sources = [args.pretrained_vae_name_or_path, args.image_vae_name_or_path, args.vae_config]
    if sum(source is not None for source in sources) > 1:
        raise ValueError(
            "Pass at most one of --pretrained_vae_name_or_path, --image_vae_name_or_path and --vae_config."
        )
    if args.temporal_compression_ratio not in (1, 2, 4, 8):
        raise ValueError(
            f"`--temporal_compression_ratio` must be 1, 2, 4 or 8, but is {args.temporal_compression_ratio}."
        )
    loads_vae = args.pretrained_vae_name_or_path is not None or args.image_vae_name_or_path is not None
    if args.train_decoder_only and args.train_encoder_only:
        raise ValueError("Pass one of `--train_decoder_only` and `--train_encoder_only`.")
    for option, trained, frozen in (
        ("train_decoder_only", "decoder", "encoder"),
        ("train_encoder_only", "encoder", "decoder"),
    ):
        if not getattr(args, option):
            continue
        if not loads_vae:
            raise ValueError(
                f"`--{option}` needs a trained {frozen}: pass --pretrained_vae_name_or_path or "
                "--image_vae_name_or_path."
            )
        if trains_single_frames(args):
            raise ValueError(
                f"`--{option}` needs clips (`--num_frames` > 1): single frames would only train the sums of the "
                f"{trained}'s temporal kernels, and folding them would change the frozen {frozen} as well."
            )
    if not (args.latent_anchor_weight >= 0 and math.isfinite(args.latent_anchor_weight)):
        raise ValueError(f"`--latent_anchor_weight` must be finite and >= 0, but is {args.latent_anchor_weight}.")
    if args.latent_anchor_weight > 0:
        if not loads_vae:
            raise ValueError(
                "`--latent_anchor_weight` keeps the latents near a loaded VAE's: pass --pretrained_vae_name_or_path "
                "or --image_vae_name_or_path."
            )
        if args.train_decoder_only:
            raise ValueError("`--latent_anchor_weight` needs a trained encoder; `--train_decoder_only` freezes it.")
        if args.fsdp:
            raise ValueError(
                "`--latent_anchor_weight` keeps a whole frozen copy of the encoder on every process; it is not "
                "supported with --fsdp (use DDP: the encoder is the VAE's smaller half)."
            )
    if args.travel_fraction_range is not None and args.train_data_dir is not None:
        raise ValueError(
            "`--travel_fraction_range` sets the moving-shapes speeds; it does not apply to --train_data_dir."
        )
    check_train_fps(args.train_fps)
    if args.train_fps is not None and args.travel_fraction_range is not None:
        raise ValueError(
            "Pass one of `--travel_fraction_range` (fixed-travel clips) and `--train_fps` (the physical world, whose "
            "speeds are in frame sizes per second)."
        )
    if args.single_frame_clip_lengths is not None:
        if args.train_data_dir is not None or (args.train_fps is None and args.bucket_list is None):
            raise ValueError(
                "`--single_frame_clip_lengths` places the 1-frame clips of the moving shapes' physical world; it "
                "needs `--train_fps` or `--buckets`, without --train_data_dir."
            )
        if not any(num_frames == 1 for num_frames, _, _ in clip_sizes(args)):
            raise ValueError(
                "`--single_frame_clip_lengths` places 1-frame clips, but the run has none (add a 1-frame bucket)."
            )
        if not all(num_frames >= 1 for num_frames in args.single_frame_clip_lengths):
            raise ValueError(
                f"`--single_frame_clip_lengths` must be frame counts >= 1, but is {args.single_frame_clip_lengths}."
            )
    if args.bucket_list is not None:
        for name in ("travel_fraction_range", "alternate_num_frames"):
            if getattr(args, name) is not None:
                raise ValueError(
                    f"Pass one of `--buckets` (clips of each bucket's size from the physical world, or from a video "
                    f"folder) and `--{name}`."
                )
    if args.alternate_num_frames is not None:
        for num_frames in args.alternate_num_frames:
            if not 1 < num_frames <= args.num_frames or (args.num_frames - 1) % (num_frames - 1) != 0:
                raise ValueError(
                    f"`--alternate_num_frames` takes frame counts n in [2, --num_frames] with --num_frames - 1 a "
                    f"multiple of n - 1 (a subsampling of the --num_frames {args.num_frames} clip), but got "
                    f"{num_frames}."
                )
    for name in ("kl_weight", "temporal_loss_weight"):
        if getattr(args, name) < 0:
            raise ValueError(f"`--{name}` must be >= 0, but is {getattr(args, name)}.")
    if args.frame_position_weights is not None:
        if not all(weight > 0 and math.isfinite(weight) for weight in args.frame_position_weights):
            raise ValueError(
                f"`--frame_position_weights` must all be finite and > 0, but are {args.frame_position_weights}."
            )
        if trains_single_frames(args):
            raise ValueError("`--frame_position_weights` weighs the frames of clips; it needs `--num_frames` > 1.")
    if not (args.first_frame_weight > 0 and math.isfinite(args.first_frame_weight)):
        raise ValueError(f"`--first_frame_weight` must be finite and > 0, but is {args.first_frame_weight}.")
    check_foreground_loss_arguments(args, "pixels")
    if args.foreground_loss_weight > 0 and args.train_data_dir is not None:
        raise ValueError(
            "`--foreground_loss_weight` needs the moving shapes' foreground masks; --train_data_dir has none."
        )
    if not (args.frame_border_loss_weight > 0 and math.isfinite(args.frame_border_loss_weight)):
        raise ValueError(
            f"`--frame_border_loss_weight` must be finite and > 0, but is {args.frame_border_loss_weight}."
        )
    return args


def trains_single_frames(args: argparse.Namespace) -> bool:
    """Whether every training clip is a single frame (`--num_frames 1`, or only 1-frame `--buckets`)."""
    return all(num_frames == 1 for num_frames, _, _ in clip_sizes(args))


def load_vae(args: argparse.Namespace) -> AutoencoderKLVideo:
    """The VAE to train, as the options ask."""
    if args.pretrained_vae_name_or_path is not None:
        vae = AutoencoderKLVideo.from_pretrained(
            args.pretrained_vae_name_or_path, subfolder=args.vae_subfolder, revision=args.revision
        )
    elif args.image_vae_name_or_path is not None:
        image_vae = AutoencoderKL.from_pretrained(
            args.image_vae_name_or_path, subfolder=args.image_vae_subfolder, revision=args.revision
        )
        vae = AutoencoderKLVideo.from_image_vae(image_vae, temporal_compression_ratio=args.temporal_compression_ratio)
    else:
        config = load_json_option(args.vae_config)
        vae = AutoencoderKLVideo.from_config(TINY_VAE_CONFIG if config is None else config)
    if args.decoder_padding_mode is not None and vae.config.decoder_padding_mode != args.decoder_padding_mode:
        # the same weights in a VAE whose decoder pads otherwise (the mode is a config value, not a weight)
        config = {key: value for key, value in vae.config.items() if not key.startswith("_")}
        padded = AutoencoderKLVideo.from_config(config, decoder_padding_mode=args.decoder_padding_mode)
        padded.load_state_dict(vae.state_dict())
        vae = padded
    return vae


@torch.no_grad()
def fold_temporal_kernels(vae: AutoencoderKLVideo) -> None:
    """
    Rewrites the temporal kernels of a VAE trained on single frames so that it processes later frames one by one.

    A 1-frame clip is padded in time with copies of itself, so training on images only determines the sum of each
    kernel's temporal taps; the split between the taps stays where initialisation and equal updates left it, which
    mixes neighbouring frames arbitrarily once frames differ. Folding keeps every sum (the output for a first frame is
    unchanged) and puts it where an image VAE inflated by `AutoencoderKLVideo.from_image_vae` has it: on the current
    frame for the spatial convolutions, averaged over the pair for the temporal downsamplers, and on the current frame,
    repeated, for the temporal upsamplers (whose first copy a 1-frame clip never uses). Fine-tuning on clips then
    starts from a per-frame autoencoder instead of from arbitrary frame mixing.
    """
    resamplers = {}
    for module in vae.modules():
        if isinstance(module, (TemporalDownsample, TemporalUpsample)):
            resamplers[module.conv] = module
    for module in vae.modules():
        if not isinstance(module, CausalConv3d) or module.kernel_size[0] == 1:
            continue
        summed = module.weight.sum(dim=2)  # (C_out, C_in, kH, kW)
        resampler = resamplers.get(module)
        module.weight.zero_()
        if isinstance(resampler, TemporalDownsample):
            module.weight.copy_(0.5 * summed[:, :, None].expand_as(module.weight))
        elif isinstance(resampler, TemporalUpsample):
            channels = summed.shape[0] // 2
            second_copy = summed[channels:]
            module.weight[:channels, :, -1] = second_copy
            module.weight[channels:, :, -1] = second_copy
            module.bias[:channels] = module.bias[channels:]
        else:
            module.weight[:, :, -1] = summed


@torch.no_grad()
def compute_latent_statistics(vae: AutoencoderKLVideo, dataloader, num_batches: int, device) -> tuple:
    """Per-channel mean and standard deviation, and overall standard deviation, of the posterior means."""
    sums, squares, count = 0.0, 0.0, 0
    for index, batch in enumerate(dataloader):
        if index >= num_batches:
            break
        latents = vae.encode(batch["pixel_values"].to(device, dtype=vae.dtype)).latent_dist.mode().float()
        sums = sums + latents.sum(dim=(0, 2, 3, 4))
        squares = squares + (latents**2).sum(dim=(0, 2, 3, 4))
        count += latents[:, 0].numel()
    mean = sums / count
    std = (squares / count - mean**2).clamp_min(1e-12).sqrt()
    overall_std = ((squares.sum() / (count * mean.numel())) - mean.mean() ** 2).clamp_min(1e-12).sqrt()
    return mean, std, overall_std


def run_validation(args, vae: AutoencoderKLVideo, dataset, global_step: int, device) -> dict:
    """Saves original | reconstruction gifs of the first validation videos and returns their PSNR."""
    vae.eval()
    folder = os.path.join(args.output_dir, "validation")
    os.makedirs(folder, exist_ok=True)
    psnrs = []
    with torch.no_grad():
        for index in range(min(args.num_validation_videos, len(dataset))):
            video = dataset[index]["pixel_values"][None].to(device, dtype=vae.dtype)  # (1, 3, F, H, W)
            reconstruction = vae(video).sample.float().clamp(-1, 1)
            mse = F.mse_loss((reconstruction + 1) / 2, (video.float() + 1) / 2).item()
            psnrs.append(10 * math.log10(1.0 / max(mse, 1e-10)))
            side_by_side = torch.cat([video.float(), reconstruction], dim=-1)[0]  # (3, F, H, 2W)
            frames = ((side_by_side.permute(1, 2, 3, 0) + 1) * 127.5).round().byte().cpu().numpy()
            images = [PIL.Image.fromarray(frame) for frame in frames]
            export_to_gif(images, os.path.join(folder, f"step-{global_step:06d}-{index}.gif"), fps=8)
    return {"validation_psnr": float(np.mean(psnrs))}


@closes_run_control
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    project_name = args.tracker_project_name or "video_vae"
    accelerator = create_accelerator(args, project_name)
    run_control = RunControl(accelerator, args, "diffusers_videolatent.training.train_video_vae", argv).start()
    logger.info(accelerator.state, main_process_only=False)

    # 1. model (initialised identically on every process), then the clip size it can take
    set_seed(args.seed)
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
    accelerator.wait_for_everyone()
    vae = load_vae(args)
    for num_frames, height, width in clip_sizes(args):
        check_video_size(num_frames, height, width, vae.temporal_compression_ratio, vae.spatial_compression_ratio)
    check_num_frames(args.alternate_num_frames or (), vae.temporal_compression_ratio, name="--alternate_num_frames")
    if args.frame_position_weights is not None and len(args.frame_position_weights) != vae.temporal_compression_ratio:
        raise ValueError(
            f"`--frame_position_weights` needs one weight per place in a latent frame's group: "
            f"{vae.temporal_compression_ratio} for this VAE, but got {len(args.frame_position_weights)}."
        )
    vae.train()
    if args.gradient_checkpointing:
        vae.enable_gradient_checkpointing()
    training_module = AutoencoderTrainingModule(vae, sample_posterior=args.decode_posterior == "sample")
    if args.fsdp:  # every process keeps its shard of the VAE (and of its gradients, Adam state and EMA)
        shard_model(training_module, accelerator)
    parameters = trained_parameters(vae, trained_part(args))
    # the loaded encoder, frozen, before any step changes it
    anchor = LatentAnchor(vae, accelerator.device) if args.latent_anchor_weight > 0 else None

    ema_vae = None
    if args.use_ema:
        ema_vae = EMAModel(parameters, decay=args.ema_decay, model_cls=AutoencoderKLVideo, model_config=vae.config)
        ema_vae.to(accelerator.device)
        if not args.fsdp:  # a sharded EMA is saved with the sharded state
            accelerator.register_for_checkpointing(ema_vae)

    # 2. data, optimiser, learning-rate schedule
    train_dataset = build_dataset(
        args,
        travel_fraction_range=None if args.travel_fraction_range is None else tuple(args.travel_fraction_range),
        buckets=args.bucket_list,
        fps=None if args.train_fps is None else list(args.train_fps),
        single_frame_clip_lengths=args.single_frame_clip_lengths,
    )
    bucket_sampler = bucket_batch_sampler(args, train_dataset, accelerator.num_processes)
    train_dataloader, optimizer, lr_scheduler, max_train_steps = create_dataloader_and_optimizer(
        args, parameters, train_dataset, collate_videos, accelerator.num_processes, batch_sampler=bucket_sampler
    )
    sharded = None
    if args.fsdp:
        model = training_module
        vae_config = vae.config
        sharded = ShardedTraining(
            accelerator,
            model,
            optimizer,
            build_whole=lambda: AutoencoderKLVideo.from_config(vae_config),
            whole_prefix="vae.",
            ema=ema_vae,
            ema_parameters=parameters,
        )
        optimizer = sharded.prepared_optimizer()
        train_dataloader, lr_scheduler = accelerator.prepare(train_dataloader, lr_scheduler)
    else:
        model, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
            training_module, optimizer, train_dataloader, lr_scheduler
        )
    del training_module  # `model` from here on
    num_update_steps_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
    num_train_epochs = math.ceil(max_train_steps / num_update_steps_per_epoch)

    run_config = {
        "script": "train_video_vae",
        "vae": {key: value for key, value in vae.config.items() if not key.startswith("_")},
        **common_run_config(args, accelerator.num_processes),
        "train_decoder_only": args.train_decoder_only,
    }
    if args.train_encoder_only:
        run_config["train_encoder_only"] = True
    if args.latent_anchor_weight > 0:
        run_config["latent_anchor_weight"] = args.latent_anchor_weight
    if args.travel_fraction_range is not None:
        run_config["travel_fraction_range"] = list(args.travel_fraction_range)
    if args.train_fps is not None:
        run_config["train_fps"] = list(args.train_fps)
    if args.bucket_list is not None:
        run_config["buckets"] = format_buckets(args.bucket_list, args.bucket_weights)
    if args.single_frame_clip_lengths is not None:
        run_config["single_frame_clip_lengths"] = list(args.single_frame_clip_lengths)
    if args.first_frame_weight != 1.0:
        run_config["first_frame_weight"] = args.first_frame_weight
    if args.alternate_num_frames is not None:
        run_config["alternate_num_frames"] = list(args.alternate_num_frames)
    if args.foreground_loss_weight > 0:
        run_config["foreground_loss"] = [args.foreground_loss_weight, args.foreground_loss_dilation]
    if args.frame_border_loss_weight != 1.0:
        run_config["frame_border_loss_weight"] = args.frame_border_loss_weight
    if accelerator.is_main_process:
        accelerator.init_trackers(project_name, config=dict(vars(args)))

    # 3. resume
    global_step, first_epoch, resume_batches = resume_training(
        accelerator, args, run_config, num_update_steps_per_epoch, sharded
    )

    total_batch_size = args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    logger.info(
        f"***** Training: {len(train_dataset)} videos, {num_train_epochs} epochs, batch {args.train_batch_size} per "
        f"device ({total_batch_size} in all), {max_train_steps} steps *****"
    )
    progress_bar = tqdm(
        range(max_train_steps), initial=global_step, desc="Steps", disable=not accelerator.is_local_main_process
    )

    # 4. training loop
    step_logs = {}
    micro_batch = 0  # the batch's place among the accumulated batches of the step
    for epoch in range(first_epoch, num_train_epochs):
        model.train()
        if bucket_sampler is not None:
            bucket_sampler.set_epoch(epoch)  # older accelerate does not pass the epoch on to a batch sampler
        for batch in epoch_batches(accelerator, train_dataloader, train_dataset, epoch, first_epoch, resume_batches):
            # every random draw of a video comes from its own generator, the same on any process at any place in
            # the batch: one process at batch 2b trains as two at batch b (docs/training.md)
            sample_indices = global_sample_indices(
                accelerator, micro_batch, args.train_batch_size, batch["pixel_values"].shape[0]
            )
            generators = sample_generators(args.seed, global_step, sample_indices)
            with accelerator.accumulate(model):
                pixel_values = batch["pixel_values"]  # (B, 3, F, H, W) in [-1, 1]
                pixel_weights = None
                if args.foreground_loss_weight > 0:
                    pixel_weights = foreground_pixel_weights(
                        batch["foreground"], args.foreground_loss_weight, args.foreground_loss_dilation
                    )  # (B, F, H, W)
                if args.frame_border_loss_weight != 1.0:
                    height, width = pixel_values.shape[-2:]
                    border = frame_border_weights(height, width, args.frame_border_loss_weight).to(pixel_values.device)
                    if pixel_weights is None:
                        pixel_weights = border.expand(pixel_values.shape[0], pixel_values.shape[2], height, width)
                    else:
                        pixel_weights = pixel_weights * border
                if args.alternate_num_frames is not None:
                    # chosen by the step, so a resumed run (and every process) picks the same count
                    num_frames = args.alternate_num_frames[global_step % len(args.alternate_num_frames)]
                    stride = (args.num_frames - 1) // (num_frames - 1)
                    pixel_values = pixel_values[:, :, ::stride]  # (B, 3, n, H, W)
                    pixel_weights = None if pixel_weights is None else pixel_weights[:, ::stride]
                reconstruction, kl, latent_mean = model(pixel_values, generators)
                losses = reconstruction_losses(
                    reconstruction,
                    pixel_values,
                    args.reconstruction_loss,
                    args.temporal_loss_weight,
                    args.frame_position_weights,
                    args.first_frame_weight,
                    pixel_weights,
                )
                # KL summed over the latent, averaged per pixel value like the reconstruction loss
                losses["kl_loss"] = kl.mean() / pixel_values[0].numel()
                loss = (
                    losses["reconstruction_loss"]
                    + args.kl_weight * losses["kl_loss"]
                    + args.temporal_loss_weight * losses.get("temporal_loss", 0.0)
                )
                if anchor is not None:
                    losses["latent_anchor_loss"] = anchor.loss(pixel_values, latent_mean)
                    loss = loss + args.latent_anchor_weight * losses["latent_anchor_loss"]
                losses["loss"] = loss

                # means over processes (of equal batches), for logging: the losses of the global batch
                for name, value in losses.items():
                    average = accelerator.gather(value.detach().reshape(1)).mean().item()
                    step_logs[name] = step_logs.get(name, 0.0) + average / args.gradient_accumulation_steps

                accelerator.backward(loss)
                if accelerator.sync_gradients:  # stops a diverged run before its weights change
                    grad_norm = clip_gradients(accelerator, model.parameters(), args.max_grad_norm)
                    run_control.check_step(global_step + 1, step_logs["loss"], grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()

            if not accelerator.sync_gradients:
                micro_batch += 1
                continue
            micro_batch = 0
            if ema_vae is not None:
                ema_vae.step(parameters)
            progress_bar.update(1)
            global_step += 1
            logs = dict(step_logs, lr=lr_scheduler.get_last_lr()[0], num_frames=pixel_values.shape[2])
            if bucket_sampler is not None:
                logs["bucket"] = format_buckets([tuple(pixel_values.shape[2:])])
            progress_bar.set_postfix(loss=step_logs["loss"])
            step_logs = {}

            if global_step % args.checkpointing_steps == 0:
                save_path = save_checkpoint(accelerator, args, run_config, global_step, sharded)
                logger.info(f"Saved state to {save_path}")

            if not args.no_validation and global_step % args.validation_steps == 0:
                if sharded is not None:
                    # the whole VAE (with the EMA weights) gathered from the shards, validated on the main process
                    whole_vae = sharded.whole_model()
                    if accelerator.is_main_process:
                        logs.update(
                            run_validation(args, whole_vae.eval(), train_dataset, global_step, accelerator.device)
                        )
                    del whole_vae
                elif accelerator.is_main_process:
                    if ema_vae is not None:
                        ema_vae.store(parameters)
                        ema_vae.copy_to(parameters)
                    logs.update(run_validation(args, vae, train_dataset, global_step, accelerator.device))
                    if ema_vae is not None:
                        ema_vae.restore(parameters)
                    model.train()
            accelerator.log(logs, step=global_step)
            if run_control.stop_requested():  # SIGTERM/SIGINT: save this step and exit
                run_control.stop(
                    global_step, lambda: save_checkpoint(accelerator, args, run_config, global_step, sharded)
                )
            if global_step >= max_train_steps:
                break
        if global_step >= max_train_steps:
            break

    # 5. latent statistics and save (with the EMA weights when kept)
    accelerator.wait_for_everyone()
    run_control.check_weights(global_step, None if sharded is None else [model])
    if sharded is not None:
        # the whole VAE, with the EMA weights, on the main process (the other processes have nothing to save)
        whole_vae = sharded.whole_model()
    if accelerator.is_main_process:
        if sharded is not None:
            vae = whole_vae
        else:
            vae = accelerator.unwrap_model(model).vae
            if ema_vae is not None:
                ema_vae.copy_to(parameters)
        vae.eval()
        if trains_single_frames(args) and vae.temporal_compression_ratio > 1:
            logger.info("Trained on single frames: folding the temporal kernels onto the current frame.")
            fold_temporal_kernels(vae)
        if args.train_decoder_only or args.train_encoder_only:
            # a frozen encoder keeps its latents; a frozen decoder reads the loaded encoder's latents, whose units a
            # diffusion model trained on them keeps
            logger.info("Half of the VAE was frozen: keeping the latent normalisation of the loaded VAE.")
        elif args.latent_normalization != "none":
            if bucket_sampler is None:
                batching = {"batch_size": args.train_batch_size, "shuffle": False}
            else:  # batches of one bucket each, the buckets in the training budget's shares, on this process alone
                batching = {
                    "batch_sampler": bucket_batch_sampler(
                        args, train_dataset, num_processes=1, num_batches=args.latent_statistics_batches
                    )
                }
            statistics_dataloader = torch.utils.data.DataLoader(train_dataset, collate_fn=collate_videos, **batching)
            mean, std, overall_std = compute_latent_statistics(
                vae, statistics_dataloader, args.latent_statistics_batches, accelerator.device
            )
            if args.latent_normalization == "scaling":
                vae.register_to_config(scaling_factor=float(1.0 / overall_std), shift_factor=None)
            else:
                vae.register_to_config(
                    scaling_factor=1.0, shift_factor=None, latents_mean=mean.tolist(), latents_std=std.tolist()
                )
            accelerator.log({"latent_std": float(overall_std)}, step=global_step)
        vae.save_pretrained(args.output_dir)
        if not args.no_validation:
            accelerator.log(
                run_validation(args, vae, train_dataset, global_step, accelerator.device), step=global_step
            )
    if (summary := skipped_data_summary(train_dataset)) is not None:
        logger.warning(summary)
    del model, optimizer, train_dataloader, lr_scheduler  # the DDP wrapper goes before its process group
    end_training(accelerator)


if __name__ == "__main__":
    main()
