"""Trains a `UNetSpatioTemporalModel` on the latents of a frozen video VAE, conditioned by a frozen CLIP text encoder.

Runs with accelerate on one CPU, one GPU or many nodes (DDP, FSDP, DeepSpeed through `accelerate config`):

    accelerate launch -m diffusers_videolatent.training.train_text_to_video \\
        --pretrained_vae_name_or_path out/vae --output_dir out/t2v --objective flow_matching \\
        --max_train_steps 4000 --train_batch_size 8 --learning_rate 3e-4 --use_ema --validation_steps 500

With no `--pretrained_model_name_or_path` the text side is built here: a word-level CLIP tokenizer over the
moving-shapes vocabulary and a small randomly initialised (and frozen) CLIP text encoder; with no `--unet_config` the
tiny default U-Net is trained from scratch. With `--cache_latents` the training videos are encoded once before
training and the U-Net trains on these cached latents, so the VAE never runs in the training loop. The result, saved in `--output_dir`, is a full `VideoLatentPipeline`
(vae, text_encoder, tokenizer, unet, scheduler) that `VideoLatentPipeline.from_pretrained` loads.
"""

import argparse
import json
import math
import os
import string
import tempfile
import time
from collections.abc import Callable

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
)
from diffusers.training_utils import EMAModel, compute_snr
from diffusers.utils import export_to_gif
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from ..atomic import atomic_folder, keep_unless_superseded_weights
from ..generation_defaults import load_generation_defaults
from ..geometry import num_pixel_frames, unet_max_latent_frames
from ..models import AutoencoderKLVideo, UNetSpatioTemporalModel
from ..models.unet_spatio_temporal import build_conditioning_latents
from ..pipelines import VideoLatentPipeline
from .buckets import dataset_item_buckets, format_buckets, trained_ranges
from .lora import (
    add_fine_tuning_arguments,
    check_fine_tuning_arguments,
    fine_tuning_run_config,
    register_lora_checkpoint_hooks,
    save_unet_lora,
    setup_fine_tuning,
    trainable_parameters,
)
from .moving_shapes import VOCABULARY, make_caption
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
    sample_integers,
    sample_uniform,
    save_checkpoint,
    skipped_data_summary,
)


logger = get_logger(__name__)

OBJECTIVES = ("epsilon", "v_prediction", "flow_matching")
FOREGROUND_LOSS_SOURCES = ("clean", "prediction")

# The tiny default U-Net: two levels, so 8x8 latents are denoised at 8x8 and 4x4.
TINY_UNET_CONFIG = {
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "transformer_layers_per_block": (1, 1),
    "temporal_transformer_layers_per_block": 1,
    "num_attention_heads": 4,
    "temporal_num_attention_heads": 4,
    "norm_num_groups": 8,
    "temporal_max_frames": 16,
    "temporal_conv_dropout": 0.0,
    # the text also enters the temporal transformers, so it can set the motion (a direction is a text-dependent
    # change over frames, which the frame-blind spatial cross-attentions cannot express alone)
    "temporal_cross_attention": True,
}
# The tiny default CLIP text encoder (about 30k parameters besides its embeddings).
TINY_TEXT_ENCODER_CONFIG = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "max_position_embeddings": 16,
    "projection_dim": 32,
}
SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def _bpe(word_tokens: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's byte-pair encoding of one word: repeatedly merge the adjacent pair of lowest rank."""
    tokens = list(word_tokens)
    while len(tokens) > 1:
        pairs = [
            (ranks.get((left, right), math.inf), index) for index, (left, right) in enumerate(zip(tokens, tokens[1:]))
        ]
        rank, _ = min(pairs)
        if rank == math.inf:
            break
        pair = next((tokens[index], tokens[index + 1]) for pair_rank, index in pairs if pair_rank == rank)
        merged, index = [], 0
        while index < len(tokens):
            if index < len(tokens) - 1 and (tokens[index], tokens[index + 1]) == pair:
                merged.append(tokens[index] + tokens[index + 1])
                index += 2
            else:
                merged.append(tokens[index])
                index += 1
        tokens = merged
    return tokens


def build_word_level_tokenizer(
    words: tuple[str, ...], save_directory: str, model_max_length: int = 16
) -> CLIPTokenizer:
    """
    Writes and loads a CLIP tokenizer in which every word of `words` is one token.

    The vocabulary holds the two CLIP special tokens, lowercase letters, digits and punctuation (alone and word-final,
    so other words still tokenize, letter by letter), and the byte-pair merges that assemble each of `words`.

    Args:
        words (`tuple[str, ...]`):
            Lowercase words made of ASCII letters.
        save_directory (`str`):
            Where `vocab.json`, `merges.txt` and the tokenizer config are written.
        model_max_length (`int`, *optional*, defaults to 16):
            Sequence length the prompts are padded to.
    """
    characters = string.ascii_lowercase + string.digits + ".,!?'-"
    vocabulary = list(SPECIAL_TOKENS) + list(characters) + [character + "</w>" for character in characters]
    merges: list[tuple[str, str]] = []
    for word in words:
        if not word.isascii() or not word.isalpha() or word != word.lower():
            raise ValueError(f"Tokenizer words must be lowercase ASCII letters, but {word!r} is not.")
        # add merges until the word is a single token: each new merge joins the word's first two current tokens
        while True:
            ranks = {pair: rank for rank, pair in enumerate(merges)}
            tokens = _bpe(list(word[:-1]) + [word[-1] + "</w>"], ranks)
            if len(tokens) == 1:
                break
            merges.append((tokens[0], tokens[1]))
            if tokens[0] + tokens[1] not in vocabulary:
                vocabulary.append(tokens[0] + tokens[1])
    os.makedirs(save_directory, exist_ok=True)
    with open(os.path.join(save_directory, "vocab.json"), "w") as file:
        json.dump({token: index for index, token in enumerate(vocabulary)}, file)
    with open(os.path.join(save_directory, "merges.txt"), "w") as file:
        file.write("#version: 0.2\n" + "".join(f"{left} {right}\n" for left, right in merges))
    with open(os.path.join(save_directory, "tokenizer_config.json"), "w") as file:
        json.dump({"model_max_length": model_max_length, "tokenizer_class": "CLIPTokenizer"}, file)
    tokenizer = CLIPTokenizer.from_pretrained(save_directory)
    for word in words:
        if len(tokenizer(word, add_special_tokens=False).input_ids) != 1:
            raise RuntimeError(f"The built tokenizer splits {word!r}; this is a bug of `build_word_level_tokenizer`.")
    return tokenizer


def save_tokenizer_vocabulary(tokenizer: CLIPTokenizer, save_directory: str) -> None:
    """
    Writes `vocab.json` and `merges.txt` beside a saved tokenizer that lacks them: transformers 5 saves
    `tokenizer.json` only, and the slow `CLIPTokenizer` of transformers 4 (the class in `model_index.json`) reads them.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if os.path.isfile(os.path.join(save_directory, "vocab.json")) or backend is None:
        return
    backend.model.save(save_directory)  # the BPE model's own files


def build_text_encoder(tokenizer: CLIPTokenizer, config_overrides: dict | None = None) -> CLIPTextModel:
    """A small, randomly initialised CLIP text encoder for `tokenizer` (seed it with `set_seed` before)."""
    config = dict(TINY_TEXT_ENCODER_CONFIG)
    config.update(config_overrides or {})
    config["max_position_embeddings"] = max(config["max_position_embeddings"], tokenizer.model_max_length)
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **config,
        )
    )


class CachedLatentsDataset(torch.utils.data.Dataset):
    """
    Normalised latents `[C, F_lat, H_lat, W_lat]` of a dataset's videos, encoded once, with their captions (and, for
    a bucketed dataset, each item's frame rate and bucket: `item_buckets`, so the latents train in the same buckets;
    for a dataset with foreground masks, their coverage of each latent cell, `[F_lat, H_lat, W_lat]`).
    """

    def __init__(
        self,
        latents: torch.Tensor | list[torch.Tensor],
        captions: list[str],
        fps: list[float] | None = None,
        item_buckets: list[tuple[int, int, int]] | None = None,
        latent_foreground: torch.Tensor | list[torch.Tensor] | None = None,
    ):
        if len(latents) != len(captions):
            raise ValueError(f"{len(latents)} latents but {len(captions)} captions.")
        self.latents = latents
        self.captions = captions
        self.fps = fps
        self.item_buckets = item_buckets
        self.latent_foreground = latent_foreground

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> dict:
        item = {"latents": self.latents[index], "text": self.captions[index]}
        if self.fps is not None:
            item["fps"] = self.fps[index]
        if self.latent_foreground is not None:
            item["latent_foreground"] = self.latent_foreground[index]
        return item


def latent_foreground(foreground: torch.Tensor, temporal_ratio: int, spatial_ratio: int) -> torch.Tensor:
    """
    The share of each latent cell's pixels that the foreground covers: `(B, F, H, W)` masks in [0, 1] pooled to the
    latent grid `(B, F_lat, H_lat, W_lat)` as a causal video VAE compresses frames (latent frame 0 is frame 0, each
    later one the next `temporal_ratio` frames) and space (`spatial_ratio` x `spatial_ratio` pixels per cell).
    """
    batch_size, num_frames, height, width = foreground.shape
    later_frames = foreground[:, 1:].reshape(batch_size, -1, temporal_ratio, height, width).mean(dim=2)
    frames = torch.cat([foreground[:, :1], later_frames], dim=1)  # (B, F_lat, H, W)
    return F.avg_pool2d(frames, spatial_ratio)  # (B, F_lat, H_lat, W_lat)


@torch.no_grad()
def cache_latents(
    pipeline: VideoLatentPipeline, dataset, batch_size: int, device, dtype, keep_foreground: bool = True
) -> CachedLatentsDataset:
    """
    Encodes every video of `dataset` once with `pipeline.encode_video` (the normalised mode of the VAE's latent
    distribution) and keeps the latents in memory, in float32, on the CPU: one tensor `[N, C, F_lat, H_lat, W_lat]`
    for a dataset of one size, one tensor per item (batches encoded bucket by bucket) for a bucketed one. With
    `keep_foreground`, items with a `foreground` mask keep its `latent_foreground` too (the training script asks for it
    only when `--foreground_loss_weight` uses it).
    """
    try:
        item_buckets = dataset_item_buckets(dataset)
    except ValueError:  # a dataset of one size without `item_buckets`
        item_buckets = None
    # one size (a dataset without buckets, or with one): batches in order, latents stacked; a dataset with one bucket
    # keeps its `item_buckets`, which the bucket sampler asks for
    one_size = item_buckets is None or len(set(item_buckets)) == 1
    if one_size:
        batches = [
            list(range(start, min(start + batch_size, len(dataset)))) for start in range(0, len(dataset), batch_size)
        ]
    else:
        batches = []
        for bucket in dict.fromkeys(item_buckets):
            indices = [index for index, item_bucket in enumerate(item_buckets) if item_bucket == bucket]
            batches += [indices[start : start + batch_size] for start in range(0, len(indices), batch_size)]
    # its own generator: creating the iterator must not draw from the global random state (the training noise)
    dataloader = torch.utils.data.DataLoader(
        dataset, batch_sampler=batches, collate_fn=collate_videos, generator=torch.Generator()
    )
    latents, captions, fps = [None] * len(dataset), [None] * len(dataset), [None] * len(dataset)
    foreground = [None] * len(dataset)
    for indices, batch in zip(batches, tqdm(dataloader, desc="Caching latents")):
        encoded = pipeline.encode_video(batch["pixel_values"].to(device, dtype=dtype)).float().cpu()
        with_foreground = keep_foreground and "foreground" in batch
        if with_foreground:
            batch_foreground = latent_foreground(
                batch["foreground"].float(), pipeline.vae_scale_factor_temporal, pipeline.vae_scale_factor_spatial
            )
        for position, index in enumerate(indices):
            latents[index], captions[index] = encoded[position], batch["text"][position]
            fps[index] = float(batch["fps"][position]) if "fps" in batch else None
            foreground[index] = batch_foreground[position] if with_foreground else None
    fps = None if None in fps else fps
    foreground = None if None in foreground else foreground
    if one_size:
        # latents (N, C, F_lat, H_lat, W_lat), foreground (N, F_lat, H_lat, W_lat)
        foreground = None if foreground is None else torch.stack(foreground)
        return CachedLatentsDataset(torch.stack(latents), captions, fps, item_buckets, foreground)
    return CachedLatentsDataset(latents, captions, fps, item_buckets, foreground)


def collate_latents(examples: list[dict]) -> dict:
    """Stacks cached `latents`, lists the captions and, where the items have them, gathers `fps` and `latent_foreground`."""
    batch = {
        "latents": torch.stack([example["latents"] for example in examples]),
        "text": [example["text"] for example in examples],
    }
    if all("fps" in example for example in examples):
        batch["fps"] = torch.tensor([float(example["fps"]) for example in examples])  # (B,)
    if all("latent_foreground" in example for example in examples):
        batch["latent_foreground"] = torch.stack([example["latent_foreground"] for example in examples])
    return batch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    models = parser.add_argument_group("models")
    models.add_argument(
        "--pretrained_model_name_or_path",
        type=str,
        default=None,
        help="A VideoLatentPipeline folder or Hub id: vae, text_encoder and tokenizer come from it (and the unet, "
        "fine-tuned, unless --unet_config is given).",
    )
    models.add_argument(
        "--pretrained_vae_name_or_path", type=str, default=None, help="An AutoencoderKLVideo (or AutoencoderKL)."
    )
    models.add_argument("--vae_subfolder", type=str, default=None)
    models.add_argument("--text_encoder_name_or_path", type=str, default=None, help="A CLIPTextModel.")
    models.add_argument("--tokenizer_name_or_path", type=str, default=None, help="A CLIPTokenizer.")
    models.add_argument(
        "--text_encoder_config",
        type=str,
        default=None,
        help="JSON object or file overriding the tiny text encoder's CLIPTextConfig (built when none is loaded).",
    )
    models.add_argument(
        "--unet_config",
        type=str,
        default=None,
        help="JSON object or file: UNetSpatioTemporalModel config to train from scratch; `in_channels`, "
        "`out_channels` and `cross_attention_dim` follow the VAE and text encoder. The tiny default when no U-Net is "
        "loaded.",
    )
    models.add_argument(
        "--conditioning_channels",
        type=int,
        default=None,
        help="Image-to-video: channels of the U-Net's `conditioning_latents` (what the pipeline feeds it for "
        "`image=`): the latent channels C (the image's latent at latent frame 0, zeros elsewhere) or C + 1 (plus a "
        "mask channel that marks the given frame); 0 for text-to-video only. Default: the loaded U-Net's, or 0 for a "
        "new one. A loaded U-Net without conditioning channels gets zero-initialised ones (it starts as it was).",
    )
    models.add_argument("--revision", type=str, default=None)

    diffusion = parser.add_argument_group("diffusion")
    diffusion.add_argument("--objective", type=str, default="flow_matching", choices=OBJECTIVES)
    diffusion.add_argument("--num_train_timesteps", type=int, default=1000)
    diffusion.add_argument(
        "--flow_shift", type=float, default=1.0, help="Flow matching: timestep shift (saved in the scheduler)."
    )
    diffusion.add_argument(
        "--training_flow_shifts",
        type=float,
        nargs="+",
        default=None,
        help="Flow matching: draw each training sigma with one of these timestep shifts, chosen at random per video "
        "(an equal mixture; e.g. `20 3`: high-noise steps, where the text sets colour and motion, and low-noise ones, "
        "where shape is drawn). Default: --flow_shift alone. The saved scheduler keeps --flow_shift.",
    )
    diffusion.add_argument(
        "--snr_gamma", type=float, default=None, help="epsilon / v: min-SNR loss weighting (5.0 is common)."
    )
    diffusion.add_argument(
        "--conditioning_dropout_prob",
        type=float,
        default=0.1,
        help="Probability that a caption is replaced by the empty prompt (for classifier-free guidance).",
    )
    diffusion.add_argument(
        "--image_conditioning_prob",
        type=float,
        default=None,
        help="With conditioning channels: probability that a training video is given its first frame as the image "
        "condition; the others get none (text-to-video), so one U-Net learns both. Default 0.5.",
    )
    diffusion.add_argument(
        "--fps",
        type=float,
        default=8.0,
        help="Frame rate of validation, and the one given to an fps-conditioned U-Net for clips without their own "
        "(a dataset of one size without --train_fps).",
    )
    diffusion.add_argument(
        "--use_fps_conditioning",
        action="store_true",
        help="Tell the U-Net each clip's frame rate: a loaded U-Net without fps conditioning gets a zero-initialised "
        "fps embedding (so it starts as it was); a new one is built with it.",
    )
    diffusion.add_argument(
        "--temporal_conv_per_block",
        action="store_true",
        help="Follow every resnet of the down and up blocks with a temporal convolution (ModelScope's; "
        "`temporal_conv_per_block` of the U-Net's config): a loaded U-Net without them gets zero-initialised ones (so "
        "it starts as it was); a new one is built with them.",
    )
    diffusion.add_argument(
        "--mid_temporal_conv",
        action="store_true",
        help="The same for the mid block's resnets (`mid_temporal_conv` of the U-Net's config).",
    )
    diffusion.add_argument(
        "--train_fps",
        type=float,
        nargs="+",
        default=None,
        help="Frame rates of the training clips: moving shapes draws one per item from these (its physical world); "
        "a video folder resamples every video to this one rate. Each clip's rate goes to an fps-conditioned U-Net.",
    )
    diffusion.add_argument(
        "--cache_latents",
        action="store_true",
        help="Encode the training videos once, before training (the seeded dataset: --num_train_videos videos), and "
        "train on these latents: the VAE no longer runs at every step, but every epoch sees the same videos.",
    )

    diffusion.add_argument(
        "--foreground_loss_weight",
        type=float,
        default=0.0,
        help="Weight each latent cell's loss by 1 + this times the share of its pixels that the object covers "
        "(moving shapes' foreground masks), each video's weights normalised to mean 1: the object, a small part of "
        "the frame, gets a larger share of the loss. 0 (the default) weights every cell alike.",
    )
    diffusion.add_argument(
        "--foreground_loss_dilation",
        type=int,
        default=0,
        help="Grow the object's weighted cells (`--foreground_loss_weight`) by this many latent cells on every side "
        "(a max over the neighbourhood, in each latent frame): an edge cell then weighs the same whether the object "
        "covers it or just misses it, so the weight no longer pulls the prediction towards a larger object "
        "(docs/dials.md's stage 25). 0 (the default) weights the covered cells alone.",
    )
    diffusion.add_argument(
        "--foreground_loss_from",
        choices=FOREGROUND_LOSS_SOURCES,
        default="clean",
        help="Where the object's weighted cells (`--foreground_loss_weight`) come from. `clean` (the default): the "
        "moving shapes' foreground masks of the clean video, a weight that pulls the prediction towards the object "
        "wherever the noisy video leaves its place uncertain and so draws objects too large (docs/dials.md's stage "
        "23). `prediction`: the cells where the U-Net's own prediction of the clean latent (detached, flow matching) "
        "stands out from its frame's median latent, as a share of the frame's largest distance. That weight is a "
        "function of the noisy video alone, so it leaves the loss's minimiser where the plain loss has it and still "
        "gives the object's neighbourhood the larger share.",
    )
    diffusion.add_argument(
        "--foreground_loss_clean_above_sigma",
        type=float,
        default=None,
        help="With `--foreground_loss_from prediction`: the videos noised to a flow-matching sigma above this take "
        "the weighted cells from the clean clip's masks instead. There the noisy video hides the object's place, and "
        "the clean weight's bias is what makes the sampler commit to an object rather than lose it; below it the "
        "prediction's unbiased cells leave the object's size as the plain loss draws it (docs/dials.md's stage "
        "31). By default the prediction's cells at every sigma.",
    )
    diffusion.add_argument(
        "--foreground_loss_max_sigma",
        type=float,
        default=None,
        help="Weight the object's cells (`--foreground_loss_weight`) only in videos noised to a flow-matching sigma "
        "at most this, and every cell alike above it. A weight taken from the clean video biases the prediction "
        "towards the object wherever the noisy video leaves its place uncertain, which draws objects too large "
        "(docs/dials.md's stage 23); at low noise the place is known and the bias vanishes. By default every sigma.",
    )
    diffusion.add_argument(
        "--foreground_loss_contrast_reference",
        type=float,
        default=None,
        help="Scale the object's weight (`--foreground_loss_weight`) in each video by (this / the object's latent "
        "contrast)^2, at least 1 and at most `--foreground_loss_contrast_max_scale`. The contrast is the object's rms "
        "distance per channel from its frame's median latent in the clean latents (the object read as "
        "`--foreground_loss_from prediction` reads it). A VAE may encode a dim colour with a small latent signal (the "
        "shipped one: green 0.37, white 3.3): the same latent error then changes its decoded size many times more, "
        "and the scale makes such objects' errors count as much as the others' (docs/dials.md's stage 36). By "
        "default no scale.",
    )
    diffusion.add_argument(
        "--foreground_loss_contrast_max_scale",
        type=float,
        default=8.0,
        help="The largest scale `--foreground_loss_contrast_reference` gives an object's weight (default 8).",
    )
    diffusion.add_argument(
        "--temporal_difference_loss_weight",
        type=float,
        default=0.0,
        help="Add this times the mean squared error of the prediction's change from each latent frame to the next "
        "(against the target's change), weighted as the loss's cells are (a pair of frames takes the larger weight "
        "of its two cells). An error that is the same in every frame costs nothing more, one that changes from frame "
        "to frame costs more: the U-Net is pushed to draw the object alike in every frame, where the plain loss lets "
        "its size wobble (docs/dials.md's stage 32). 0 (the default) adds nothing.",
    )
    diffusion.add_argument(
        "--max_train_minutes",
        type=float,
        default=None,
        help="Stop after the step that exceeds this wall time (then save as usual). With a constant learning rate the "
        "result equals a run of --max_train_steps set to the steps done.",
    )

    validation = parser.add_argument_group("validation")
    validation.add_argument(
        "--validation_prompts",
        type=str,
        nargs="*",
        default=None,
        help="Prompts rendered every --validation_steps (default: two seen and one held-out moving-shapes caption).",
    )
    validation.add_argument("--num_validation_inference_steps", type=int, default=25)
    validation.add_argument("--validation_guidance_scale", type=float, default=4.0)
    validation.add_argument("--no_validation", action="store_true", help="Skip validation (and the final one).")
    add_common_arguments(parser)
    add_fine_tuning_arguments(parser)
    parser.set_defaults(learning_rate=2e-4)
    args = parser.parse_args(argv)

    check_common_arguments(args)
    check_fine_tuning_arguments(args)
    if not 0.0 <= args.conditioning_dropout_prob <= 1.0:
        raise ValueError(f"`--conditioning_dropout_prob` must be in [0, 1], but is {args.conditioning_dropout_prob}.")
    if args.conditioning_channels is not None and args.conditioning_channels < 0:
        raise ValueError(f"`--conditioning_channels` must be >= 0, but is {args.conditioning_channels}.")
    if args.image_conditioning_prob is not None:
        if not 0.0 <= args.image_conditioning_prob <= 1.0:
            raise ValueError(f"`--image_conditioning_prob` must be in [0, 1], but is {args.image_conditioning_prob}.")
        if args.conditioning_channels == 0:
            raise ValueError(
                "`--image_conditioning_prob` needs a U-Net with conditioning channels, but `--conditioning_channels` "
                "is 0."
            )
    if args.training_flow_shifts is not None:
        if args.objective != "flow_matching":
            raise ValueError(
                "`--training_flow_shifts` shifts flow-matching sigmas; use it with --objective flow_matching."
            )
        if any(not shift > 0 for shift in args.training_flow_shifts):
            raise ValueError(f"`--training_flow_shifts` must all be > 0, but are {args.training_flow_shifts}.")
    check_foreground_loss_arguments(args, "cells")
    if args.foreground_loss_max_sigma is not None:
        if not 0 < args.foreground_loss_max_sigma <= 1:
            raise ValueError(
                f"`--foreground_loss_max_sigma` must be in (0, 1], but is {args.foreground_loss_max_sigma}."
            )
        if args.objective != "flow_matching" or not args.foreground_loss_weight > 0:
            raise ValueError(
                "`--foreground_loss_max_sigma` limits `--foreground_loss_weight` to low flow-matching sigmas; use it "
                "with --objective flow_matching and --foreground_loss_weight > 0."
            )
    if args.foreground_loss_from != "clean" and (
        args.objective != "flow_matching" or not args.foreground_loss_weight > 0
    ):
        raise ValueError(
            "`--foreground_loss_from prediction` reads the weighted cells from the flow-matching prediction of the "
            "clean latent; use it with --objective flow_matching and --foreground_loss_weight > 0."
        )
    if args.foreground_loss_clean_above_sigma is not None:
        if not 0 < args.foreground_loss_clean_above_sigma < 1:
            raise ValueError(
                "`--foreground_loss_clean_above_sigma` must be in (0, 1), but is "
                f"{args.foreground_loss_clean_above_sigma}."
            )
        if args.foreground_loss_from != "prediction":
            raise ValueError(
                "`--foreground_loss_clean_above_sigma` splits the weighted cells between the clean masks and the "
                "prediction; use it with --foreground_loss_from prediction."
            )
    if weights_from_masks(args) and args.train_data_dir is not None:
        flag = "--foreground_loss_weight"
        if args.foreground_loss_clean_above_sigma is not None:
            flag = "--foreground_loss_clean_above_sigma"
        raise ValueError(
            f"`{flag}` weights the loss by moving shapes' foreground masks; a video folder (`--train_data_dir`) has "
            "none (`--foreground_loss_from prediction` alone needs none)."
        )
    if args.foreground_loss_contrast_reference is not None:
        reference = args.foreground_loss_contrast_reference
        if not (reference > 0 and math.isfinite(reference)):
            raise ValueError(f"`--foreground_loss_contrast_reference` must be finite and > 0, but is {reference}.")
        if not args.foreground_loss_weight > 0:
            raise ValueError(
                "`--foreground_loss_contrast_reference` scales the object's weight; use it with "
                "--foreground_loss_weight > 0."
            )
    max_scale = args.foreground_loss_contrast_max_scale
    if not (max_scale >= 1 and math.isfinite(max_scale)):
        raise ValueError(f"`--foreground_loss_contrast_max_scale` must be finite and >= 1, but is {max_scale}.")
    if not (args.temporal_difference_loss_weight >= 0 and math.isfinite(args.temporal_difference_loss_weight)):
        raise ValueError(
            "`--temporal_difference_loss_weight` must be finite and >= 0, but is "
            f"{args.temporal_difference_loss_weight}."
        )
    check_train_fps(args.train_fps)
    if not args.fps > 0:
        raise ValueError(f"`--fps` must be > 0, but is {args.fps}.")
    if args.snr_gamma is not None and args.objective == "flow_matching":
        raise ValueError(
            "`--snr_gamma` weights the epsilon / v_prediction objectives; it has no meaning for flow matching."
        )
    if args.pretrained_model_name_or_path is None and args.pretrained_vae_name_or_path is None:
        raise ValueError(
            "A frozen VAE is needed: pass --pretrained_vae_name_or_path (e.g. the output of train_video_vae) or "
            "--pretrained_model_name_or_path (a VideoLatentPipeline)."
        )
    if (args.text_encoder_name_or_path is None) != (args.tokenizer_name_or_path is None):
        raise ValueError("Pass both --text_encoder_name_or_path and --tokenizer_name_or_path, or neither.")
    if args.validation_prompts is None:
        args.validation_prompts = [
            make_caption("red", "circle", "right"),
            make_caption("blue", "triangle", "up"),
            make_caption("green", "circle", "left"),  # held out from training
        ]
    return args


def load_models(args: argparse.Namespace) -> tuple:
    """The frozen VAE, text encoder and tokenizer, and the U-Net to train, as the options ask."""
    pipeline_path = args.pretrained_model_name_or_path
    if args.pretrained_vae_name_or_path is not None:
        vae_path, vae_subfolder = args.pretrained_vae_name_or_path, args.vae_subfolder
    else:
        vae_path, vae_subfolder = pipeline_path, "vae"
    vae_config = AutoencoderKLVideo.load_config(vae_path, subfolder=vae_subfolder, revision=args.revision)
    # an image VAE is applied frame by frame, as the pipeline does
    vae_class = AutoencoderKL if vae_config.get("_class_name") == "AutoencoderKL" else AutoencoderKLVideo
    vae = vae_class.from_pretrained(vae_path, subfolder=vae_subfolder, revision=args.revision)

    if args.text_encoder_name_or_path is not None:
        tokenizer = CLIPTokenizer.from_pretrained(args.tokenizer_name_or_path, revision=args.revision)
        text_encoder = CLIPTextModel.from_pretrained(args.text_encoder_name_or_path, revision=args.revision)
    elif pipeline_path is not None:
        tokenizer = CLIPTokenizer.from_pretrained(pipeline_path, subfolder="tokenizer", revision=args.revision)
        text_encoder = CLIPTextModel.from_pretrained(pipeline_path, subfolder="text_encoder", revision=args.revision)
    else:
        # each process writes its own copy to load it (several writing one folder read each other's half-written
        # files); the saved pipeline holds the tokenizer
        with tempfile.TemporaryDirectory() as folder:
            tokenizer = build_word_level_tokenizer(VOCABULARY, folder)
        text_encoder = build_text_encoder(tokenizer, load_json_option(args.text_encoder_config))

    unet_config = load_json_option(args.unet_config)
    if unet_config is None and pipeline_path is not None:
        unet = UNetSpatioTemporalModel.from_pretrained(pipeline_path, subfolder="unet", revision=args.revision)
        new_conditioning = args.conditioning_channels not in (None, unet.config.conditioning_channels)
        new_fps = args.use_fps_conditioning and not unet.config.use_fps_conditioning
        new_temporal_convs = new_temporal_convolutions(unet, args)
        new_options = {
            "--conditioning_channels": new_conditioning,
            "--use_fps_conditioning": new_fps,
            **{f"--{key}": True for key in new_temporal_convs},
        }
        added = [option for option, is_new in new_options.items() if is_new]
        if args.rank is not None and added:
            raise ValueError(
                f"`{added[0]}` adds zero-initialised layers to the U-Net, but with --rank its base is frozen, so they "
                "would stay zero; add them in a full training first (without --rank)."
            )
        if new_conditioning:
            unet = add_conditioning_channels(unet, args.conditioning_channels)
        if new_fps:
            unet = add_fps_conditioning(unet)
        if new_temporal_convs:
            unet = add_temporal_convolutions(unet, **new_temporal_convs)
    else:
        config = dict(TINY_UNET_CONFIG if unet_config is None else unet_config)
        config.update(
            in_channels=vae.config.latent_channels,
            out_channels=vae.config.latent_channels,
            cross_attention_dim=text_encoder.config.hidden_size,
        )
        if args.conditioning_channels is not None:
            config["conditioning_channels"] = args.conditioning_channels
        if args.use_fps_conditioning:
            config["use_fps_conditioning"] = True
        if args.temporal_conv_per_block:
            config["temporal_conv_per_block"] = True
        if args.mid_temporal_conv:
            config["mid_temporal_conv"] = True
        unet = UNetSpatioTemporalModel.from_config(config)
    latent_channels = unet.config.in_channels
    if unet.config.conditioning_channels not in (0, latent_channels, latent_channels + 1):
        raise ValueError(
            f"`--conditioning_channels` must be 0, the latent channels ({latent_channels}) or the latent channels "
            f"plus a mask ({latent_channels + 1}), as the pipeline feeds them, but is "
            f"{unet.config.conditioning_channels}."
        )
    if args.image_conditioning_prob is not None and unet.config.conditioning_channels == 0:
        raise ValueError(
            "`--image_conditioning_prob` needs a U-Net with conditioning channels; pass --conditioning_channels."
        )
    return vae, text_encoder, tokenizer, unet


def add_conditioning_channels(unet: UNetSpatioTemporalModel, conditioning_channels: int) -> UNetSpatioTemporalModel:
    """
    Gives a U-Net without conditioning channels `conditioning_channels` more input channels in `conv_in`, their
    weights zero-initialised, so the U-Net predicts exactly what it did before until training changes them (as
    diffusers' InstructPix2Pix training widens Stable Diffusion's `conv_in`).
    """
    if unet.config.conditioning_channels != 0:
        raise ValueError(
            f"`--conditioning_channels`={conditioning_channels} differs from the loaded U-Net's "
            f"{unet.config.conditioning_channels}; only a U-Net without conditioning channels can be given some."
        )
    old_conv_in = unet.conv_in
    new_conv_in = torch.nn.Conv2d(
        old_conv_in.in_channels + conditioning_channels,
        old_conv_in.out_channels,
        kernel_size=old_conv_in.kernel_size,
        stride=old_conv_in.stride,
        padding=old_conv_in.padding,
    )
    with torch.no_grad():
        new_conv_in.weight.zero_()
        new_conv_in.weight[:, : old_conv_in.in_channels].copy_(old_conv_in.weight)
        new_conv_in.bias.copy_(old_conv_in.bias)
    unet.conv_in = new_conv_in
    unet.register_to_config(conditioning_channels=conditioning_channels)
    return unet


def add_fps_conditioning(unet: UNetSpatioTemporalModel) -> UNetSpatioTemporalModel:
    """
    Gives a trained U-Net without fps conditioning an fps embedding whose output layer is zero-initialised (the
    model's own `initialize_weights`), so it predicts exactly what it did before, at any `fps`, until training
    changes it. Every other weight is the loaded one.
    """
    if unet.config.use_fps_conditioning:
        raise ValueError("`--use_fps_conditioning`: the loaded U-Net already has fps conditioning.")
    return grow_unet(unet, {"use_fps_conditioning": True}, lambda key: key.startswith(("fps_proj.", "fps_embedding.")))


def new_temporal_convolutions(unet: UNetSpatioTemporalModel, args: argparse.Namespace) -> dict[str, bool]:
    """The temporal convolutions that `--temporal_conv_per_block` and `--mid_temporal_conv` ask of a loaded U-Net
    and that it lacks (a level already with them counts as having them), as `add_temporal_convolutions` arguments."""
    per_block = unet.config.temporal_conv_per_block
    has_per_block = all(per_block) if isinstance(per_block, (list, tuple)) else bool(per_block)
    new = {}
    if args.temporal_conv_per_block and not has_per_block:
        new["temporal_conv_per_block"] = True
    if args.mid_temporal_conv and not unet.config.mid_temporal_conv:
        new["mid_temporal_conv"] = True
    return new


def add_temporal_convolutions(
    unet: UNetSpatioTemporalModel, temporal_conv_per_block: bool = False, mid_temporal_conv: bool = False
) -> UNetSpatioTemporalModel:
    """
    Gives a trained U-Net temporal convolutions after every resnet of its down and up blocks
    (`temporal_conv_per_block`) and of its mid block (`mid_temporal_conv`), each a residual whose last convolution
    is zero-initialised (the model's own `initialize_weights`), so the U-Net predicts exactly what it did before until
    training changes them. The levels that already have them keep their trained weights, as does every other layer.
    """
    if not temporal_conv_per_block and not mid_temporal_conv:
        raise ValueError("`add_temporal_convolutions` needs `temporal_conv_per_block` or `mid_temporal_conv`.")
    updates = {}
    if temporal_conv_per_block:
        updates["temporal_conv_per_block"] = True
    if mid_temporal_conv:
        if unet.config.mid_temporal_conv:
            raise ValueError("`--mid_temporal_conv`: the loaded U-Net already has temporal convolutions there.")
        updates["mid_temporal_conv"] = True
    return grow_unet(unet, updates, lambda key: ".temporal_convs." in key)


def grow_unet(
    unet: UNetSpatioTemporalModel, config_updates: dict, is_new_key: Callable[[str], bool]
) -> UNetSpatioTemporalModel:
    """A U-Net built from `unet`'s config with `config_updates`, holding every weight of `unet`; the weights it lacks
    (only those whose name `is_new_key` accepts) keep the model's initialisation."""
    config = {key: value for key, value in unet.config.items() if not key.startswith("_")}
    new_unet = UNetSpatioTemporalModel.from_config({**config, **config_updates})
    missing, unexpected = new_unet.load_state_dict(unet.state_dict(), strict=False)
    if unexpected or not all(is_new_key(key) for key in missing):
        raise RuntimeError(f"Setting {config_updates} changed more than the new layers: {missing}, {unexpected}.")
    new_unet.to(unet.device)
    if new_unet.dtype != unet.dtype:  # a same-dtype cast makes diffusers warn about its float32 modules
        new_unet.to(dtype=unet.dtype)
    return new_unet


def build_schedulers(args: argparse.Namespace) -> tuple:
    """The training noise scheduler and the scheduler saved with the pipeline for inference."""
    if args.objective == "flow_matching":
        scheduler = FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=args.num_train_timesteps, shift=args.flow_shift
        )
        return scheduler, scheduler
    noise_scheduler = DDPMScheduler(
        num_train_timesteps=args.num_train_timesteps,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type=args.objective,
        clip_sample=False,
    )
    return noise_scheduler, DPMSolverMultistepScheduler.from_config(noise_scheduler.config)


def latent_bucket_name(latent_shape: torch.Size, pipeline: VideoLatentPipeline) -> str:
    """The `--buckets` name (`FRAMESxHEIGHTxWIDTH`, pixels) of a batch of latents `(B, C, F_lat, H_lat, W_lat)`."""
    num_frames = num_pixel_frames(latent_shape[2], pipeline.vae_scale_factor_temporal)
    spatial = pipeline.vae_scale_factor_spatial
    return format_buckets([(num_frames, latent_shape[3] * spatial, latent_shape[4] * spatial)])


def draw_conditioning_latents(
    latents: torch.Tensor,
    conditioning_channels: int,
    image_conditioning_prob: float,
    generators: list[torch.Generator],
) -> torch.Tensor:
    """
    The `conditioning_latents` of one training batch: each video is given its first frame with probability
    `image_conditioning_prob` (one draw from its own generator), as `image=` gives it to the pipeline, and none
    otherwise (text-to-video). The image's latent is the clean latent frame 0 of the video: a causal VAE encodes the
    first frame alone, so it is the latent of the first frame as an image.

    Args:
        latents (`torch.Tensor`): the clean normalised latents `(batch_size, channels, latent_frames, height, width)`.
        conditioning_channels (`int`): the U-Net's `conditioning_channels`.
        image_conditioning_prob (`float`): the probability that a video gets its first frame.
        generators (`list[torch.Generator]`): one per video (`training_utils.sample_generators`).
    """
    image_given = sample_uniform(generators) < image_conditioning_prob  # (B,)
    return build_conditioning_latents(
        latents, conditioning_channels, latents[:, :, :1], image_given.to(latents.device)
    )


def weighted_mse(
    model_pred: torch.Tensor,
    target: torch.Tensor,
    loss_weights: torch.Tensor | None,
    normalizing_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """
    Each video's mean squared error `(B,)`; with `loss_weights` `(B, 1, F, H, W)`, its weighted mean over the latent
    cells (so a video's loss keeps its scale whatever share of it is weighted up), divided by the mean of
    `normalizing_weights` instead where given (`--foreground_loss_contrast_reference`: the scaled object counts more).
    """
    error = F.mse_loss(model_pred.float(), target.float(), reduction="none")  # (B, C, F, H, W)
    if loss_weights is None:
        return error.mean(dim=(1, 2, 3, 4))
    loss_weights = loss_weights.float()
    normalizing_weights = loss_weights if normalizing_weights is None else normalizing_weights.float()
    return (error * loss_weights).mean(dim=(1, 2, 3, 4)) / normalizing_weights.mean(dim=(1, 2, 3, 4))


def object_contrast(clean_latents: torch.Tensor) -> torch.Tensor:
    """
    Each video's object contrast `(B,)` in clean latents `(B, C, F, H, W)`: the rms distance per channel of its
    cells from their frame's median latent, each cell weighted by `predicted_foreground` (the object's cells most).
    """
    distance = _frame_median_distance(clean_latents.float())  # (B, F, H, W), one median for both uses
    weights = _share_of_frame_largest(distance)  # `predicted_foreground`
    squared = distance.pow(2) / clean_latents.shape[1]  # per channel
    return ((weights * squared).sum(dim=(1, 2, 3)) / weights.sum(dim=(1, 2, 3)).clamp_min(1e-12)).sqrt()


def contrast_scales(args, clean_latents: torch.Tensor) -> torch.Tensor:
    """
    The scale `(B,)` of each video's object weight (`--foreground_loss_contrast_reference`): (reference / its
    `object_contrast`)^2 within [1, `--foreground_loss_contrast_max_scale`].
    """
    ratio = args.foreground_loss_contrast_reference / object_contrast(clean_latents).clamp_min(1e-12)
    return ratio.pow(2).clamp(1.0, args.foreground_loss_contrast_max_scale)


def predicted_foreground(clean_latents: torch.Tensor) -> torch.Tensor:
    """
    Where a video's object is, read from latents `(B, C, F, H, W)` alone (`--foreground_loss_from prediction`): each
    cell's distance (over the channels) from its frame's median latent, over the frame's largest distance, `(B, F, H,
    W)` in [0, 1]. The object, a small part of the frame, is far from the median, which is the background's.
    """
    return _share_of_frame_largest(_frame_median_distance(clean_latents))


def _frame_median_distance(latents: torch.Tensor) -> torch.Tensor:
    """Each cell's distance (over the channels) from its frame's median latent, `(B, F, H, W)`."""
    background = latents.flatten(3).median(dim=3).values[..., None, None]  # (B, C, F, 1, 1)
    return (latents - background).norm(dim=1)


def _share_of_frame_largest(distance: torch.Tensor) -> torch.Tensor:
    """Distances `(B, F, H, W)` over their frame's largest, in [0, 1]."""
    return distance / distance.flatten(2).amax(dim=2).clamp_min(1e-12)[..., None, None]


def _frame_pairs(weights: torch.Tensor | None) -> torch.Tensor | None:
    """The weights `(B, 1, F - 1, H, W)` of consecutive latent frames' pairs: the larger of each two; None stays None."""
    return None if weights is None else torch.maximum(weights[:, :, 1:], weights[:, :, :-1])


def weights_from_masks(args) -> bool:
    """
    Whether the loss on the object reads the clean clips' foreground masks (moving shapes'; cached with the latents):
    with `--foreground_loss_from clean`, or for the clips above `--foreground_loss_clean_above_sigma`.
    """
    return args.foreground_loss_weight > 0 and (
        args.foreground_loss_from == "clean" or args.foreground_loss_clean_above_sigma is not None
    )


def foreground_loss_weights(args, coverage: torch.Tensor) -> torch.Tensor:
    """
    The loss weights `(B, 1, F, H, W)` of an object's `coverage` `(B, F, H, W)` of the latent cells, from the clean
    clip's masks or from the prediction (`--foreground_loss_from`): `1 + --foreground_loss_weight` times the coverage
    grown by `--foreground_loss_dilation` cells.
    """
    coverage = dilate_foreground(coverage, args.foreground_loss_dilation)
    return 1.0 + args.foreground_loss_weight * coverage.unsqueeze(1)


def gate_loss_weights(
    loss_weights: torch.Tensor | None, sigmas: torch.Tensor, max_sigma: float | None
) -> torch.Tensor | None:
    """
    `loss_weights` `(B, 1, F, H, W)` kept for the videos whose flow-matching `sigmas` `(B, 1, 1, 1, 1)` are at most
    `max_sigma` and made all ones for the others (`--foreground_loss_max_sigma`); unchanged when either is None.
    """
    if loss_weights is None or max_sigma is None:
        return loss_weights
    return torch.where(sigmas <= max_sigma, loss_weights, torch.ones_like(loss_weights))


def diffusion_loss(
    args,
    noise_scheduler,
    unet,
    latents,
    encoder_hidden_states,
    fps,
    generators,
    conditioning_latents=None,
    loss_weights=None,
) -> torch.Tensor:
    """
    One training loss of the chosen objective on normalised `latents` `[B, C, F, H, W]`; `conditioning_latents`
    (those of `build_conditioning_latents`) go to a U-Net with conditioning channels. Each video's noise, then its
    timestep (or sigma and shift), come from its own generator of `generators` (`training_utils.sample_generators`).
    `loss_weights` `(B, 1, F, H, W)` weight the latent cells of each video (`--foreground_loss_weight` with
    `--foreground_loss_from clean`); with `--foreground_loss_from prediction` they are made here from the detached
    prediction of the clean latents (`predicted_foreground`), but for the videos noised above
    `--foreground_loss_clean_above_sigma`, which keep the `loss_weights` passed in. `--temporal_difference_loss_weight`
    adds the weighted error of the prediction's change between consecutive latent frames.
    """
    batch_size = latents.shape[0]
    noise = randn_tensor(latents.shape, generator=generators, device=latents.device, dtype=latents.dtype)
    unet_kwargs = {"fps": fps} if fps is not None else {}
    if conditioning_latents is not None:
        unet_kwargs["conditioning_latents"] = conditioning_latents
    if args.objective == "flow_matching":
        # x_t = (1 - sigma) x_0 + sigma * noise, target velocity noise - x_0; sigma shifted as the scheduler shifts it
        sigmas = sample_uniform(generators).to(latents.device)
        shift = noise_scheduler.config.shift
        if args.training_flow_shifts is not None:
            shifts = torch.tensor(args.training_flow_shifts, device=latents.device)
            shift = shifts[sample_integers(generators, len(shifts)).to(latents.device)]
        sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
        timesteps = sigmas * noise_scheduler.config.num_train_timesteps
        sigmas = sigmas.view(batch_size, 1, 1, 1, 1)
        noisy_latents = (1.0 - sigmas) * latents + sigmas * noise
        target = noise - latents
    else:
        timesteps = sample_integers(generators, noise_scheduler.config.num_train_timesteps).to(latents.device)
        noisy_latents = noise_scheduler.add_noise(latents, noise, timesteps)
        target = noise if args.objective == "epsilon" else noise_scheduler.get_velocity(latents, noise, timesteps)
    model_pred = unet(noisy_latents, timesteps, encoder_hidden_states, return_dict=False, **unet_kwargs)[0]
    if args.foreground_loss_weight > 0 and args.foreground_loss_from == "prediction":
        # flow matching (`parse_args`): x_0 = x_t - sigma * v; a function of x_t, so the minimiser is E[v | x_t]
        predicted_latents = noisy_latents.float() - sigmas * model_pred.detach().float()
        predicted_weights = foreground_loss_weights(args, predicted_foreground(predicted_latents))
        if args.foreground_loss_clean_above_sigma is None:
            loss_weights = predicted_weights
        else:  # the clean masks' weights, passed in, where the noise hides the object's place
            loss_weights = torch.where(
                sigmas > args.foreground_loss_clean_above_sigma, loss_weights, predicted_weights
            )
    if args.objective == "flow_matching":
        loss_weights = gate_loss_weights(loss_weights, sigmas, args.foreground_loss_max_sigma)

    normalizing_weights = None
    if loss_weights is not None and args.foreground_loss_contrast_reference is not None:
        # the object's part of each video's weights scaled, each video's loss still divided by its unscaled weights
        scales = contrast_scales(args, latents).view(batch_size, 1, 1, 1, 1)
        normalizing_weights = loss_weights
        loss_weights = 1.0 + (loss_weights - 1.0) * scales

    # `--snr_gamma` is refused with flow matching (`parse_args`)
    with_differences = args.temporal_difference_loss_weight > 0 and latents.shape[2] > 1
    if args.snr_gamma is None and loss_weights is None and not with_differences:
        return F.mse_loss(model_pred.float(), target.float())
    loss = weighted_mse(model_pred, target, loss_weights, normalizing_weights)  # (B,)
    if with_differences:
        change = weighted_mse(
            model_pred.float().diff(dim=2),
            target.float().diff(dim=2),
            _frame_pairs(loss_weights),
            _frame_pairs(normalizing_weights),
        )
        loss = loss + args.temporal_difference_loss_weight * change
    if args.snr_gamma is None:
        return loss.mean()
    # min-SNR weighting (Hang et al., 2023)
    snr = compute_snr(noise_scheduler, timesteps)
    weights = torch.stack([snr, args.snr_gamma * torch.ones_like(snr)], dim=1).min(dim=1)[0]
    weights = weights / snr if args.objective == "epsilon" else weights / (snr + 1)
    return (loss * weights).mean()


def _save_validation_gifs(args, prompts: list[str], frames: np.ndarray, global_step: int, tag: str) -> None:
    folder = os.path.join(args.output_dir, "validation")
    os.makedirs(folder, exist_ok=True)
    for index, (prompt, video) in enumerate(zip(prompts, frames)):
        images = [PIL.Image.fromarray((frame * 255).round().astype(np.uint8)) for frame in video]
        name = f"step-{global_step:06d}-{tag}{index}-{prompt.replace(' ', '_')[:60]}.gif"
        export_to_gif(images, os.path.join(folder, name), fps=int(args.fps))


def run_validation(args, accelerator, pipeline, global_step: int) -> dict:
    """
    Renders the validation prompts, saves them as gifs and scores moving-shapes prompts; a U-Net with conditioning
    channels is validated in both modes: text-to-video, and image-to-video from the first frame of an unseen
    ground-truth video of each moving-shapes prompt (`validation_i2v_*`, with the first frame's PSNR).
    """
    from .evaluate import render_evaluation_videos, score_videos
    from .moving_shapes import parse_caption

    call_kwargs = {
        "num_frames": args.num_frames,
        "height": args.height,
        "width": args.width,
        "fps": args.fps,
        "num_inference_steps": args.num_validation_inference_steps,
        "guidance_scale": args.validation_guidance_scale,
        "output_type": "np",
    }
    # the training random state must not depend on whether (or how often) validation ran
    with torch.random.fork_rng(devices=[accelerator.device] if accelerator.device.type == "cuda" else []):
        generator = torch.Generator(device="cpu").manual_seed(args.seed)
        frames = pipeline(args.validation_prompts, generator=generator, **call_kwargs).frames  # (B, F, H, W, 3)
    _save_validation_gifs(args, args.validation_prompts, frames, global_step, "")
    logs = {}
    scored = [(prompt, video) for prompt, video in zip(args.validation_prompts, frames) if parse_caption(prompt)]
    if not scored:
        return logs
    scores = score_videos(scored, print_table=False)["all"]
    logs = {f"validation_{name}": scores[name] for name in ("color", "shape", "direction", "aligned_iou")}
    if pipeline.unet.config.get("conditioning_channels", 0) == 0:
        return logs

    combinations = [parse_caption(prompt) for prompt, _ in scored]
    references = render_evaluation_videos(combinations, 1, args.num_frames, args.height, args.width)
    prompts, images = [prompt for prompt, _ in references], [video[0] for _, video in references]
    with torch.random.fork_rng(devices=[accelerator.device] if accelerator.device.type == "cuda" else []):
        generator = torch.Generator(device="cpu").manual_seed(args.seed)
        frames = pipeline(prompts, image=images, generator=generator, **call_kwargs).frames
    _save_validation_gifs(args, prompts, frames, global_step, "image-")
    scores = score_videos(list(zip(prompts, frames)), print_table=False, images=images)["all"]
    for name in ("color", "shape", "direction", "area_variation", "first_frame_psnr"):
        logs[f"validation_i2v_{name}"] = scores[name]
    return logs


@closes_run_control
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    project_name = args.tracker_project_name or "text_to_video"
    accelerator = create_accelerator(args, project_name)
    run_control = RunControl(accelerator, args, "diffusers_videolatent.training.train_text_to_video", argv).start()
    logger.info(accelerator.state, main_process_only=False)

    # 1. models: frozen VAE and text encoder, trained U-Net (initialised identically on every process)
    set_seed(args.seed)
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
    accelerator.wait_for_everyone()
    vae, text_encoder, tokenizer, unet = load_models(args)
    noise_scheduler, inference_scheduler = build_schedulers(args)
    vae.requires_grad_(False)
    text_encoder.requires_grad_(False)
    vae.eval()
    text_encoder.eval()
    unet.train()

    # 2. the clip size must suit the VAE and the U-Net before any step runs
    helper = VideoLatentPipeline(vae, text_encoder, tokenizer, unet, inference_scheduler)
    for num_frames, height, width in clip_sizes(args):
        check_video_size(
            num_frames,
            height,
            width,
            helper.vae_scale_factor_temporal,
            helper.vae_scale_factor_spatial,
            helper.unet_downsample_factor,
            unet_max_latent_frames(unet.config),
        )
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()

    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    vae_dtype = torch.float32 if vae.config.get("force_upcast", False) else weight_dtype
    # LoRA (--rank) or one part of the U-Net (--trainable_layers): the rest is frozen
    setup_fine_tuning(unet, args, weight_dtype)
    if args.rank is not None:
        register_lora_checkpoint_hooks(accelerator)
    # cast only when needed (a same-dtype `.to(dtype=...)` makes diffusers warn about float32 modules)
    vae.to(accelerator.device)
    text_encoder.to(accelerator.device)
    if vae_dtype != vae.dtype:
        vae.to(dtype=vae_dtype)
    if weight_dtype != text_encoder.dtype:
        text_encoder.to(dtype=weight_dtype)

    if args.fsdp:  # every process keeps its shard of the U-Net (and of its gradients, Adam state and EMA)
        shard_model(unet, accelerator)
    ema_unet = None
    if args.use_ema:
        ema_unet = EMAModel(
            unet.parameters(), decay=args.ema_decay, model_cls=UNetSpatioTemporalModel, model_config=unet.config
        )
        ema_unet.to(accelerator.device)
        if not args.fsdp:  # a sharded EMA is saved with the sharded state
            accelerator.register_for_checkpointing(ema_unet)

    # 3. data, optimiser, learning-rate schedule
    train_fps = None if args.train_fps is None else list(args.train_fps)
    train_dataset = source_dataset = build_dataset(args, buckets=args.bucket_list, fps=train_fps)
    masks_weight_the_loss = weights_from_masks(args)  # the masks then travel with the clips (or their latents)
    collate_fn = collate_videos
    if args.cache_latents:
        # every process encodes the same seeded videos; the sampler then shards them as it shards the videos
        helper = VideoLatentPipeline(vae, text_encoder, tokenizer, unet, inference_scheduler)
        train_dataset = cache_latents(
            helper,
            train_dataset,
            args.train_batch_size,
            accelerator.device,
            vae_dtype,
            keep_foreground=masks_weight_the_loss,
        )
        collate_fn = collate_latents
    bucket_sampler = bucket_batch_sampler(args, train_dataset, accelerator.num_processes)
    train_dataloader, optimizer, lr_scheduler, max_train_steps = create_dataloader_and_optimizer(
        args,
        trainable_parameters(unet),
        train_dataset,
        collate_fn,
        accelerator.num_processes,
        batch_sampler=bucket_sampler,
    )
    sharded = None
    if args.fsdp:
        unet_config = unet.config
        sharded = ShardedTraining(
            accelerator,
            unet,
            optimizer,
            build_whole=lambda: UNetSpatioTemporalModel.from_config(unet_config),
            ema=ema_unet,
            ema_parameters=list(unet.parameters()),
        )
        optimizer = sharded.prepared_optimizer()
        train_dataloader, lr_scheduler = accelerator.prepare(train_dataloader, lr_scheduler)
    else:
        unet, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
            unet, optimizer, train_dataloader, lr_scheduler
        )
    num_update_steps_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
    num_train_epochs = math.ceil(max_train_steps / num_update_steps_per_epoch)

    # image-to-video: a share of the videos get their clean first latent frame as the condition, as `image=` does
    conditioning_channels = accelerator.unwrap_model(unet).config.conditioning_channels
    image_conditioning_prob = 0.0
    if conditioning_channels > 0:
        image_conditioning_prob = 0.5 if args.image_conditioning_prob is None else args.image_conditioning_prob

    # what a checkpoint must share with the run that resumes it
    run_config = {
        "script": "train_text_to_video",
        "unet": {
            key: value for key, value in accelerator.unwrap_model(unet).config.items() if not key.startswith("_")
        },
        "vae": {key: value for key, value in vae.config.items() if not key.startswith("_")},
        "text_encoder_hidden_size": text_encoder.config.hidden_size,
        "objective": args.objective,
        **common_run_config(args, accelerator.num_processes),
        "cache_latents": args.cache_latents,
        "image_conditioning_prob": image_conditioning_prob,
        "training_flow_shifts": args.training_flow_shifts,
        **fine_tuning_run_config(args),
    }
    if args.bucket_list is not None or train_fps is not None:
        run_config["buckets"] = (
            None if args.bucket_list is None else format_buckets(args.bucket_list, args.bucket_weights)
        )
        run_config["train_fps"] = train_fps
    if args.foreground_loss_weight > 0:  # only then, so the checkpoints of runs without it resume as they were
        run_config["foreground_loss_weight"] = args.foreground_loss_weight
    if args.foreground_loss_dilation > 0:
        run_config["foreground_loss_dilation"] = args.foreground_loss_dilation
    if args.foreground_loss_max_sigma is not None:
        run_config["foreground_loss_max_sigma"] = args.foreground_loss_max_sigma
    if args.foreground_loss_from != "clean":
        run_config["foreground_loss_from"] = args.foreground_loss_from
    if args.foreground_loss_clean_above_sigma is not None:
        run_config["foreground_loss_clean_above_sigma"] = args.foreground_loss_clean_above_sigma
    if args.temporal_difference_loss_weight > 0:
        run_config["temporal_difference_loss_weight"] = args.temporal_difference_loss_weight
    if args.foreground_loss_contrast_reference is not None:
        run_config["foreground_loss_contrast_reference"] = args.foreground_loss_contrast_reference
        run_config["foreground_loss_contrast_max_scale"] = args.foreground_loss_contrast_max_scale
    if accelerator.is_main_process:
        tracker_config = {key: value for key, value in vars(args).items() if not isinstance(value, list)}
        accelerator.init_trackers(project_name, config=tracker_config)

    # 4. resume
    global_step, first_epoch, resume_batches = resume_training(
        accelerator, args, run_config, num_update_steps_per_epoch, sharded
    )

    total_batch_size = args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    logger.info(
        f"***** Training: {len(train_dataset)} videos, {num_train_epochs} epochs, batch {args.train_batch_size} per "
        f"device ({total_batch_size} in all), {max_train_steps} steps, objective {args.objective} *****"
    )
    progress_bar = tqdm(
        range(max_train_steps), initial=global_step, desc="Steps", disable=not accelerator.is_local_main_process
    )
    fps = args.fps if accelerator.unwrap_model(unet).config.use_fps_conditioning else None
    # the clips' own frame rates when the data has several sizes or rates (else every clip is at --fps)
    use_clip_fps = fps is not None and (args.bucket_list is not None or train_fps is not None)
    helper = VideoLatentPipeline(vae, text_encoder, tokenizer, accelerator.unwrap_model(unet), inference_scheduler)

    # 5. training loop
    train_loss = 0.0
    micro_batch = 0  # the batch's place among the accumulated batches of the step
    start_time = time.perf_counter()
    step_start = start_time  # a bucketed run logs each step's bucket and seconds, for the budget's cost per bucket
    for epoch in range(first_epoch, num_train_epochs):
        if global_step >= max_train_steps:
            break  # resumed at the last step (or beyond): nothing left to train, only the saving
        unet.train()
        if bucket_sampler is not None:
            bucket_sampler.set_epoch(epoch)  # older accelerate does not pass the epoch on to a batch sampler
        for batch in epoch_batches(accelerator, train_dataloader, train_dataset, epoch, first_epoch, resume_batches):
            # every random draw of a video comes from its own generator, the same on any process at any place in
            # the batch: one process at batch 2b trains as two at batch b (docs/training.md)
            sample_indices = global_sample_indices(accelerator, micro_batch, args.train_batch_size, len(batch["text"]))
            generators = sample_generators(args.seed, global_step, sample_indices)
            with accelerator.accumulate(unet):
                with torch.no_grad():
                    if "latents" in batch:
                        latents = batch["latents"].to(accelerator.device, dtype=torch.float32)
                    else:
                        latents = helper.encode_video(batch["pixel_values"].to(accelerator.device, dtype=vae_dtype))
                    latents = latents.to(torch.float32)  # (B, C, F_lat, H_lat, W_lat)
                    drop = sample_uniform(generators) < args.conditioning_dropout_prob  # (B,)
                    captions = ["" if dropped else caption for caption, dropped in zip(batch["text"], drop.tolist())]
                    encoder_hidden_states, _ = helper.encode_prompt(
                        captions, device=accelerator.device, do_classifier_free_guidance=False, dtype=weight_dtype
                    )  # (B, L, D)
                    conditioning_latents = None
                    if conditioning_channels > 0:
                        conditioning_latents = draw_conditioning_latents(
                            latents, conditioning_channels, image_conditioning_prob, generators
                        )  # (B, C_cond, F_lat, H_lat, W_lat)
                batch_fps = batch["fps"].to(accelerator.device) if use_clip_fps else fps  # (B,) or a number
                loss_weights = None
                if masks_weight_the_loss:
                    coverage = batch.get("latent_foreground")
                    if coverage is None:
                        coverage = latent_foreground(
                            batch["foreground"].float(),
                            helper.vae_scale_factor_temporal,
                            helper.vae_scale_factor_spatial,
                        )
                    # (B, 1, F_lat, H_lat, W_lat)
                    loss_weights = foreground_loss_weights(args, coverage.to(accelerator.device))
                loss = diffusion_loss(
                    args,
                    noise_scheduler,
                    unet,
                    latents,
                    encoder_hidden_states,
                    batch_fps,
                    generators,
                    conditioning_latents,
                    loss_weights=loss_weights,
                )

                # mean over processes (of equal batches), for logging: the loss of the global batch
                average_loss = accelerator.gather(loss.detach().repeat(args.train_batch_size)).mean()
                train_loss += average_loss.item() / args.gradient_accumulation_steps

                accelerator.backward(loss)
                if accelerator.sync_gradients:  # stops a diverged run before its weights change
                    grad_norm = clip_gradients(accelerator, unet.parameters(), args.max_grad_norm)
                    run_control.check_step(global_step + 1, train_loss, grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()

            if not accelerator.sync_gradients:
                micro_batch += 1
                continue
            micro_batch = 0
            if ema_unet is not None:
                ema_unet.step(unet.parameters())
            progress_bar.update(1)
            global_step += 1
            logs = {"train_loss": train_loss, "lr": lr_scheduler.get_last_lr()[0]}
            if bucket_sampler is not None:
                now = time.perf_counter()
                logs["bucket"] = latent_bucket_name(latents.shape, helper)
                logs["step_seconds"] = now - step_start
            progress_bar.set_postfix(loss=train_loss)
            train_loss = 0.0

            if global_step % args.checkpointing_steps == 0:
                save_path = save_checkpoint(accelerator, args, run_config, global_step, sharded)
                logger.info(f"Saved state to {save_path}")

            if not args.no_validation and global_step % args.validation_steps == 0:
                if sharded is not None:
                    # the whole U-Net (with the EMA weights) gathered from the shards, validated on the main process
                    whole_unet = sharded.whole_model()
                    if accelerator.is_main_process:
                        validation_pipeline = VideoLatentPipeline(
                            vae, text_encoder, tokenizer, whole_unet, inference_scheduler
                        )
                        logs.update(run_validation(args, accelerator, validation_pipeline, global_step))
                    del whole_unet
                elif accelerator.is_main_process:
                    if ema_unet is not None:
                        ema_unet.store(unet.parameters())
                        ema_unet.copy_to(unet.parameters())
                    logs.update(run_validation(args, accelerator, helper, global_step))
                    if ema_unet is not None:
                        ema_unet.restore(unet.parameters())
                    unet.train()
            accelerator.log(logs, step=global_step)
            step_start = time.perf_counter()  # checkpoints and validation are not counted as the next step's time
            if run_control.stop_requested():  # SIGTERM/SIGINT: save this step and exit
                run_control.stop(
                    global_step, lambda: save_checkpoint(accelerator, args, run_config, global_step, sharded)
                )
            if args.max_train_minutes is not None:
                # every process must stop at the same step: stop when any of them is out of time
                out_of_time = time.perf_counter() - start_time > 60 * args.max_train_minutes
                if accelerator.gather(torch.tensor([out_of_time], device=accelerator.device)).any():
                    logger.info(f"Stopping after {global_step} steps: --max_train_minutes reached.")
                    max_train_steps = global_step
            if global_step >= max_train_steps:
                break
        if global_step >= max_train_steps:
            break

    # 6. save the LoRA, or the pipeline (with the EMA weights when kept)
    accelerator.wait_for_everyone()
    run_control.check_weights(global_step, None if sharded is None else [unet])
    if sharded is not None:
        # the whole U-Net, with the EMA weights, on the main process (the other processes have nothing to save)
        unet = sharded.whole_model()
        ema_unet = None
    if accelerator.is_main_process and args.rank is not None:
        save_unet_lora(accelerator.unwrap_model(unet), args.output_dir)
        if not args.no_validation:
            accelerator.log(run_validation(args, accelerator, helper, global_step), step=global_step)
    elif accelerator.is_main_process:
        unet = accelerator.unwrap_model(unet)
        if ema_unet is not None:
            ema_unet.copy_to(unet.parameters())
        for model in (vae, text_encoder, unet):
            if model.dtype != torch.float32:
                model.to(dtype=torch.float32)
        # a fine-tuned pipeline keeps the recommended settings of the one it started from
        generation_defaults = None
        if args.pretrained_model_name_or_path is not None and os.path.isdir(args.pretrained_model_name_or_path):
            generation_defaults = load_generation_defaults(args.pretrained_model_name_or_path)
        if args.bucket_list is not None or train_fps is not None:
            # the dials this run trained: a call outside them warns
            generation_defaults = dict(generation_defaults or {})
            generation_defaults["trained_ranges"] = trained_ranges(clip_sizes(args), train_fps or [args.fps])
        pipeline = VideoLatentPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=inference_scheduler,
            generation_defaults=generation_defaults,
        )
        # one atomic save for the pipeline and the slow tokenizer's files: a kill leaves the previous folder or both
        with atomic_folder(
            args.output_dir, overwrite=True, keep_existing=True, keep=keep_unless_superseded_weights
        ) as temporary_dir:
            pipeline.save_pretrained(temporary_dir)
            save_tokenizer_vocabulary(tokenizer, os.path.join(temporary_dir, "tokenizer"))
        if not args.no_validation:
            accelerator.log(run_validation(args, accelerator, pipeline, global_step), step=global_step)
    if (summary := skipped_data_summary(source_dataset)) is not None:
        logger.warning(summary)
    del unet, optimizer, train_dataloader, lr_scheduler  # the DDP wrapper goes before its process group
    end_training(accelerator)


if __name__ == "__main__":
    main()
