"""Pieces shared by `train_video_vae` and `train_text_to_video`: arguments, datasets, trackers and checkpoints."""

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import sys

import torch
from accelerate import Accelerator
from accelerate.tracking import GeneralTracker
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, broadcast_object_list
from diffusers.optimization import get_scheduler

from ..atomic import (
    atomic_file,
    default_permissions_tree,
    move_into_place,
    remove_stale_temporaries,
    temporary_sibling,
    write_failure_error,
)
from ..geometry import (
    check_frame_sides,
    check_frame_table,
    check_num_frames,
)
from .buckets import BucketBatchSampler, dataset_item_buckets, parse_buckets
from .moving_shapes import MovingShapesDataset
from .run_control import check_finite_weights
from .sharding import ShardedTraining, check_sharded_launch
from .video_folder import VideoFolderDataset


RUN_CONFIG_NAME = "run_config.json"
CHECKPOINT_NAME_PATTERN = r"checkpoint-(\d+)"
CHECKPOINT_NAME = re.compile(rf"^{CHECKPOINT_NAME_PATTERN}$")


class JSONLinesTracker(GeneralTracker):
    """
    An accelerate tracker that appends every logged step as one JSON line to `{logging_dir}/{run_name}/metrics.jsonl`
    (no extra dependency; read it with `pandas.read_json(path, lines=True)` or a loop over `json.loads`).
    """

    name = "jsonl"
    requires_logging_directory = True

    def __init__(self, run_name: str, logging_dir: str):
        super().__init__()
        self.run_name = run_name
        self.path = os.path.join(logging_dir, run_name, "metrics.jsonl")

    @property
    def tracker(self):
        return self.path

    def start(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)

    def store_init_configuration(self, values: dict):
        self.start()
        with atomic_file(os.path.join(os.path.dirname(self.path), "config.json"), overwrite=True) as temporary:
            with open(temporary, "w") as file:
                json.dump(values, file, indent=2, default=str)

    def log(self, values: dict, step: int | None = None, **kwargs):
        self.start()
        with open(self.path, "a") as file:
            file.write(json.dumps({"step": step, **values}, default=float) + "\n")


def resolve_trackers(report_to: str, project_name: str, logging_dir: str) -> list:
    """Turns `--report_to` (`"jsonl"`, `"tensorboard"`, `"wandb"`, `"all"`, comma-separated) into `log_with`."""
    trackers = []
    for name in (name.strip() for name in report_to.split(",")):
        if name == "jsonl":
            trackers.append(JSONLinesTracker(project_name, logging_dir))
        elif name:
            trackers.append(name)
    return trackers


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the data, optimisation, precision, logging and checkpoint options both scripts share."""
    data = parser.add_argument_group("data")
    data.add_argument(
        "--train_data_dir",
        type=str,
        default=None,
        help="A folder of videos with metadata.csv/metadata.jsonl (`file_name`, `text`); the synthetic moving-shapes "
        "dataset when not given.",
    )
    data.add_argument("--video_column", type=str, default="file_name", help="Metadata column with the video paths.")
    data.add_argument("--caption_column", type=str, default="text", help="Metadata column with the captions.")
    data.add_argument("--num_frames", type=int, default=17, help="Frames per training clip (1 + k * temporal ratio).")
    data.add_argument("--height", type=int, default=64, help="Frame height (a multiple of the spatial ratio).")
    data.add_argument("--width", type=int, default=64, help="Frame width (a multiple of the spatial ratio).")
    data.add_argument(
        "--num_train_videos",
        type=int,
        default=None,
        help="Moving shapes: videos per epoch (default 16 per training combination).",
    )
    data.add_argument(
        "--buckets",
        type=str,
        default=None,
        help="Train on clips of several sizes, every batch from one bucket: comma-separated FRAMESxHEIGHTxWIDTH, each "
        "with an optional :WEIGHT (e.g. `17x64x64,33x64x64,17x128x128`); default weights give every bucket equal "
        "compute, so most steps go to small buckets (docs/dials.md). Moving shapes then come from its physical world; "
        "replaces --num_frames, --height and --width.",
    )
    data.add_argument("--dataset_seed", type=int, default=0, help="Seed of the moving-shapes videos.")
    data.add_argument(
        "--max_train_samples",
        type=int,
        default=None,
        help="Keep only the first N samples (for debugging, or to overfit a tiny batch).",
    )
    data.add_argument("--dataloader_num_workers", type=int, default=0, help="DataLoader worker processes.")

    training = parser.add_argument_group("training")
    training.add_argument("--output_dir", type=str, required=True, help="Where checkpoints and the model are saved.")
    training.add_argument("--seed", type=int, default=0, help="Seed of initialisation, noise and data order.")
    training.add_argument("--train_batch_size", type=int, default=4, help="Batch size per device.")
    training.add_argument("--num_train_epochs", type=int, default=1)
    training.add_argument(
        "--max_train_steps", type=int, default=None, help="Total optimisation steps; overrides --num_train_epochs."
    )
    training.add_argument("--gradient_accumulation_steps", type=int, default=1)
    training.add_argument("--gradient_checkpointing", action="store_true", help="Trade compute for memory.")
    training.add_argument("--learning_rate", type=float, default=1e-4)
    training.add_argument(
        "--scale_lr",
        action="store_true",
        help="Multiply the learning rate by processes x batch size x accumulation steps.",
    )
    training.add_argument(
        "--lr_scheduler",
        type=str,
        default="constant",
        help='diffusers `get_scheduler` name: "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", '
        '"constant_with_warmup".',
    )
    training.add_argument("--lr_warmup_steps", type=int, default=0)
    training.add_argument("--adam_beta1", type=float, default=0.9)
    training.add_argument("--adam_beta2", type=float, default=0.999)
    training.add_argument("--adam_weight_decay", type=float, default=1e-2)
    training.add_argument("--adam_epsilon", type=float, default=1e-8)
    training.add_argument("--max_grad_norm", type=float, default=1.0)
    training.add_argument("--use_ema", action="store_true", help="Keep an EMA of the weights (saved as the model).")
    training.add_argument("--ema_decay", type=float, default=0.999)
    training.add_argument(
        "--mixed_precision",
        type=str,
        default=None,
        choices=["no", "fp16", "bf16"],
        help="Overrides the accelerate config; frozen models run in this precision, trained ones stay in float32.",
    )
    training.add_argument(
        "--fsdp",
        action="store_true",
        help="Shard the trained model, its gradients, optimizer state and EMA over the processes (PyTorch FSDP2, on "
        "CPUs too): launch as for DDP; checkpoints keep the shards (docs/training.md).",
    )

    logging_group = parser.add_argument_group("logging and checkpoints")
    logging_group.add_argument(
        "--report_to",
        type=str,
        default="jsonl",
        help='Comma-separated accelerate trackers: "jsonl" (built in), "tensorboard", "wandb", ... or "all".',
    )
    logging_group.add_argument("--logging_dir", type=str, default="logs", help="Relative to --output_dir.")
    logging_group.add_argument("--tracker_project_name", type=str, default=None)
    logging_group.add_argument("--checkpointing_steps", type=int, default=500, help="Save the state every N steps.")
    logging_group.add_argument("--checkpoints_total_limit", type=int, default=None, help="Keep at most N checkpoints.")
    logging_group.add_argument(
        "--resume_from_checkpoint",
        type=str,
        default=None,
        help='A checkpoint folder, or "latest" for the newest one in --output_dir.',
    )
    logging_group.add_argument("--validation_steps", type=int, default=500, help="Validate every N steps.")


def check_train_fps(train_fps: list[float] | None) -> None:
    """Raises a `ValueError` unless `--train_fps` (both training scripts) is unset or all finite rates above 0."""
    if train_fps is not None and any(not (rate > 0 and math.isfinite(rate)) for rate in train_fps):
        raise ValueError(f"`--train_fps` must all be finite and > 0, but are {train_fps}.")


def check_common_arguments(args: argparse.Namespace) -> None:
    """Raises a `ValueError` for option values no training can use."""
    for name in (
        "num_frames",
        "height",
        "width",
        "train_batch_size",
        "gradient_accumulation_steps",
        "num_train_epochs",
    ):
        value = getattr(args, name)
        if value < 1:
            raise ValueError(f"`--{name}` must be a positive integer, but is {value}.")
    for name in ("max_train_steps", "max_train_samples", "num_train_videos", "checkpoints_total_limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"`--{name}` must be a positive integer, but is {value}.")
    for name in ("checkpointing_steps", "validation_steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"`--{name}` must be a positive integer, but is {getattr(args, name)}.")
    if args.buckets is not None:
        args.bucket_list, args.bucket_weights = parse_buckets(args.buckets)
    else:
        args.bucket_list, args.bucket_weights = None, None


def clip_sizes(args: argparse.Namespace) -> list[tuple[int, int, int]]:
    """The `(num_frames, height, width)` sizes a run trains on: its buckets, or the one `--num_frames` x `--height` x
    `--width`."""
    return args.bucket_list or [(args.num_frames, args.height, args.width)]


def bucket_batch_sampler(
    args: argparse.Namespace, dataset, num_processes: int, num_batches: int | None = None
) -> BucketBatchSampler | None:
    """The `BucketBatchSampler` of a `--buckets` run (`None` without buckets): every global batch of a step from one
    bucket, split between the `num_processes` processes; `num_batches` global batches per epoch (default: the
    sampler's, about one pass over the dataset)."""
    if args.bucket_list is None:
        return None
    return BucketBatchSampler(
        dataset_item_buckets(dataset),
        args.train_batch_size,
        args.bucket_list,
        args.bucket_weights,
        num_batches=num_batches,
        seed=args.seed,
        num_processes=num_processes,
    )


def load_json_option(value: str | None) -> dict | None:
    """Reads an option given as a JSON file or as a JSON object in the text itself (`None` stays `None`)."""
    if value is None:
        return None
    if os.path.isfile(value):
        with open(value) as file:
            return json.load(file)
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        raise ValueError(f"{value!r} is neither a JSON file nor a JSON object.") from None


def check_video_size(
    num_frames: int,
    height: int,
    width: int,
    temporal_ratio: int,
    spatial_ratio: int,
    unet_downsample_factor: int = 1,
    max_latent_frames: int | None = None,
) -> None:
    """
    Raises a `ValueError` unless the VAE (and the U-Net, when `unet_downsample_factor` > 1) can take clips of
    `num_frames` x `height` x `width`: `num_frames = 1 + k * temporal_ratio` with at most `max_latent_frames` latent
    frames (the U-Net's frame-position table, when it has one), and height and width multiples of
    `spatial_ratio * unet_downsample_factor`.
    """
    check_num_frames(num_frames, temporal_ratio, name="--num_frames")
    check_frame_table(num_frames, temporal_ratio, max_latent_frames, name="--num_frames")
    check_frame_sides(height, width, spatial_ratio, unet_downsample_factor, prefix="--")


def build_dataset(
    args: argparse.Namespace,
    travel_fraction_range: tuple[float, float] | None = None,
    buckets: list[tuple[int, int, int]] | None = None,
    fps: float | list[float] | None = None,
    single_frame_clip_lengths: list[int] | None = None,
):
    """
    The video-folder dataset of `--train_data_dir`, or the moving-shapes training split (see its
    `travel_fraction_range` and `single_frame_clip_lengths`). With `buckets` (`(num_frames, height, width)` sizes) or
    `fps` (the training frame rate; moving shapes may take several, one drawn per item), items come in several sizes
    (moving shapes: from its physical world) and carry their frame rate; without them the datasets are those of a
    single `--num_frames` x `--height` x `--width`.
    """
    bucket_options = {}
    if buckets is not None:
        bucket_options["buckets"] = buckets
    if fps is not None:
        bucket_options["fps"] = fps
    if args.train_data_dir is not None:
        if isinstance(fps, (list, tuple)):
            if len(fps) != 1:
                raise ValueError(f"A video folder trains at one frame rate, but `--train_fps` is {list(fps)}.")
            bucket_options["fps"] = fps[0]
        dataset = VideoFolderDataset(
            args.train_data_dir,
            num_frames=args.num_frames,
            height=args.height,
            width=args.width,
            video_column=args.video_column,
            caption_column=args.caption_column,
            seed=args.dataset_seed,
            **bucket_options,
        )
    else:
        dataset = MovingShapesDataset(
            "train",
            num_videos=args.num_train_videos,
            num_frames=args.num_frames,
            height=args.height,
            width=args.width,
            seed=args.dataset_seed,
            travel_fraction_range=travel_fraction_range,
            single_frame_clip_lengths=single_frame_clip_lengths,
            **bucket_options,
        )
    if args.max_train_samples is not None and args.max_train_samples < len(dataset):
        from torch.utils.data import Subset

        dataset = Subset(dataset, range(args.max_train_samples))
    return dataset


def skipped_data_summary(dataset) -> str | None:
    """The video-folder dataset's `skipped_summary()` (of a `Subset`'s dataset too), for the end of a run; `None` for
    other datasets. Videos that failed to decode in DataLoader worker processes are logged there, not counted here."""
    dataset = getattr(dataset, "dataset", dataset)
    return dataset.skipped_summary() if isinstance(dataset, VideoFolderDataset) else None


def create_accelerator(args: argparse.Namespace, project_name: str) -> Accelerator:
    r"""
    The `Accelerator` of both training scripts: precision, accumulation, trackers and a seeded data order.

    Args:
        args (`argparse.Namespace`): The options added by `add_common_arguments`.
        project_name (`str`): The trackers' project name.
    """
    # a final save killed halfway through replacing `output_dir` left it aside: put it back before anything writes;
    # and drop the partial checkpoints of killed runs
    remove_stale_temporaries(args.output_dir)
    remove_stale_temporaries(args.output_dir, name_pattern=CHECKPOINT_NAME_PATTERN)
    logging_dir = os.path.join(args.output_dir, args.logging_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=resolve_trackers(args.report_to, project_name, logging_dir),
        project_config=ProjectConfiguration(project_dir=args.output_dir, logging_dir=logging_dir),
        # a seeded sampler makes each epoch's order a function of (seed, epoch): resuming mid-epoch is exact
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
    )
    check_processes_joined(accelerator)
    if args.fsdp:
        check_sharded_launch(accelerator, args)
    return accelerator


def check_processes_joined(accelerator: Accelerator) -> None:
    r"""
    Refuses a launch whose processes did not join one run: `accelerate launch --use_fsdp --num_processes 2` on a
    machine without GPUs starts two processes that each run alone (`DistributedType.NO`, both rank 0), each training
    the whole model and writing the same `output_dir`.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > accelerator.num_processes:
        raise ValueError(
            f"`accelerate launch` started {launched} processes, but accelerate runs each alone"
            f" ({accelerator.distributed_type.value}, {accelerator.num_processes} process): every one would train the"
            " whole model and write the same `output_dir`. accelerate's FSDP needs GPUs; on CPUs, launch with"
            " `ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes N` (DDP), adding the script's"
            " `--fsdp` to shard the model (see docs/training.md)."
        )


def create_dataloader_and_optimizer(
    args: argparse.Namespace, parameters, train_dataset, collate_fn, num_processes: int, batch_sampler=None
) -> tuple:
    r"""
    The training data loader, the AdamW optimizer and the learning-rate schedule shared by both training scripts.

    Args:
        args (`argparse.Namespace`): The options added by `add_common_arguments`.
        parameters (iterable of `torch.nn.Parameter`): What the optimizer trains.
        train_dataset (`torch.utils.data.Dataset`): The training examples.
        collate_fn (`Callable`): Batches the examples.
        num_processes (`int`): `accelerator.num_processes`; scales the learning rate and the schedule.
        batch_sampler (`torch.utils.data.Sampler`, *optional*): Gives the batches (e.g. a `BucketBatchSampler`, every
            batch from one bucket) instead of shuffled batches of `--train_batch_size`.

    Returns:
        `tuple`: `(train_dataloader, optimizer, lr_scheduler, max_train_steps)`, before `accelerator.prepare`.
    """
    if batch_sampler is not None:
        batching = {"batch_sampler": batch_sampler}
        num_batches = len(batch_sampler)
    else:
        batching = {"batch_size": args.train_batch_size, "shuffle": True}
        num_batches = math.ceil(len(train_dataset) / args.train_batch_size)
    train_dataloader = torch.utils.data.DataLoader(
        train_dataset,
        collate_fn=collate_fn,
        num_workers=args.dataloader_num_workers,
        # the loader's own generator: creating an epoch's iterator must not draw from the global random state, which
        # the checkpoints save and restore for the noise (else a mid-epoch resume would draw different noise)
        generator=torch.Generator().manual_seed(args.seed),
        **batching,
    )
    learning_rate = args.learning_rate
    if args.scale_lr:
        learning_rate *= args.gradient_accumulation_steps * args.train_batch_size * num_processes
    optimizer = torch.optim.AdamW(
        parameters,
        lr=learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
    )
    num_update_steps_per_epoch = math.ceil(math.ceil(num_batches / num_processes) / args.gradient_accumulation_steps)
    max_train_steps = args.max_train_steps or args.num_train_epochs * num_update_steps_per_epoch
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * num_processes,
        num_training_steps=max_train_steps * num_processes,
    )
    return train_dataloader, optimizer, lr_scheduler, max_train_steps


def resume_training(
    accelerator: Accelerator,
    args: argparse.Namespace,
    run_config: dict,
    num_update_steps_per_epoch: int,
    sharded: ShardedTraining | None = None,
) -> tuple[int, int, int]:
    r"""
    Restores the newest (or the named) checkpoint of `--resume_from_checkpoint`, refusing one of another configuration;
    with `sharded` (`--fsdp`), its sharded model, optimizer and EMA too.

    Returns:
        `tuple`: `(global_step, first_epoch, resume_batches)`: the step reached, the epoch it is in, and the batches of
        that epoch already seen (to skip with `accelerate.skip_first_batches`); zeros when there is nothing to resume.
    """
    checkpoint = find_checkpoint(args.output_dir, args.resume_from_checkpoint)
    if checkpoint is None:
        return 0, 0, 0
    global_step = load_and_check_run_config(checkpoint, run_config)
    accelerator.print(f"Resuming from {checkpoint} at step {global_step}")
    accelerator.load_state(checkpoint)
    if sharded is not None:
        sharded.load(checkpoint)
    first_epoch = global_step // num_update_steps_per_epoch
    resume_batches = (global_step % num_update_steps_per_epoch) * args.gradient_accumulation_steps
    return global_step, first_epoch, resume_batches


def common_run_config(args: argparse.Namespace, num_processes: int) -> dict:
    r"""
    The entries of a run config (what a checkpoint must share with the run that resumes it) that come from the
    options of `add_common_arguments`: the clip size, the batch, the data and whether an EMA is kept. Each script adds
    its models and its own options.
    """
    return {
        "num_frames": args.num_frames,
        "height": args.height,
        "width": args.width,
        "train_batch_size": args.train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "num_processes": num_processes,
        "use_ema": args.use_ema,
        "dataset": args.train_data_dir or f"moving_shapes(seed={args.dataset_seed}, videos={args.num_train_videos})",
        "max_train_samples": args.max_train_samples,
        # a sharded checkpoint resumes only as a sharded run (and the other way round)
        **({"fsdp": True} if args.fsdp else {}),
    }


def epoch_batches(
    accelerator: Accelerator,
    train_dataloader: torch.utils.data.DataLoader,
    train_dataset: torch.utils.data.Dataset,
    epoch: int,
    first_epoch: int,
    resume_batches: int,
):
    r"""
    Starts `epoch` (the loader's shuffling and, where the dataset has one, its per-epoch sampling) and returns the
    batches to train on: in the epoch a run resumes in, those after the `resume_batches` it had already seen (see
    `resume_training`).
    """
    train_dataloader.set_epoch(epoch)
    if hasattr(train_dataset, "set_epoch"):
        train_dataset.set_epoch(epoch)
    if epoch == first_epoch and resume_batches > 0:
        return accelerator.skip_first_batches(train_dataloader, resume_batches)
    return train_dataloader


def global_sample_indices(accelerator: Accelerator, micro_batch: int, batch_size: int, local_batch_size: int) -> range:
    r"""
    The places of a local batch's samples in the global batch of the step: the `micro_batch`-th batch of the step
    (of `--gradient_accumulation_steps`) on process `p` of `n` holds the samples `(micro_batch * n + p) * batch_size`
    onwards, as the loader shards the batches (process `p` takes batches `p, p + n, ...`, see
    `docs/training.md#one-process-or-several-the-same-numbers`).

    Args:
        accelerator (`Accelerator`): Gives the process index and the number of processes.
        micro_batch (`int`): The local batch's place among the accumulated batches of the step (0 without accumulation).
        batch_size (`int`): `--train_batch_size`, the batch size per process.
        local_batch_size (`int`): The samples in this local batch.
    """
    first = (micro_batch * accelerator.num_processes + accelerator.process_index) * batch_size
    return range(first, first + local_batch_size)


def sample_generators(seed: int, step: int, indices: range) -> list[torch.Generator]:
    r"""
    One CPU generator per sample of a training step, seeded by a hash of `(seed, step, index)` with `index` the
    sample's place in the step's global batch (`global_sample_indices`).

    Every random draw of a step that depends on a sample (its noise, timestep, caption dropout, image conditioning,
    the VAE's posterior sample) comes from that sample's generator, in a fixed order, so a sample draws the same
    numbers whichever process and whichever place in its local batch it lands in: two processes at batch `b` train as
    one process at batch `2b`. The draws depend on the step, not on a random state carried from step to step, so a run
    resumed from a checkpoint draws what the uninterrupted run drew. Drawn on the CPU (and then moved), so they do
    not depend on the device either.

    Args:
        seed (`int`): `--seed`.
        step (`int`): The optimisation step being computed (0 for the first).
        indices (`range`): The samples' places in the step's global batch.
    """
    generators = []
    for index in indices:
        digest = hashlib.blake2b(f"{seed}/{step}/{index}".encode(), digest_size=8).digest()
        generators.append(torch.Generator().manual_seed(int.from_bytes(digest, "little")))
    return generators


def sample_uniform(generators: list[torch.Generator]) -> torch.Tensor:
    """One uniform draw in [0, 1) from each sample's generator, as a CPU tensor of shape `(len(generators),)`."""
    return torch.stack([torch.rand((), generator=generator) for generator in generators])


def sample_integers(generators: list[torch.Generator], high: int) -> torch.Tensor:
    """One integer in [0, `high`) from each sample's generator, as a CPU tensor of shape `(len(generators),)`."""
    return torch.stack([torch.randint(high, (), generator=generator) for generator in generators])


def check_foreground_loss_arguments(args: argparse.Namespace, unit: str) -> None:
    """
    `--foreground_loss_weight` (finite, >= 0) and `--foreground_loss_dilation` (>= 0, in `unit`s: the U-Net trainer's
    latent cells or the VAE trainer's pixels; only with a weight), which both training scripts take.
    """
    if not (args.foreground_loss_weight >= 0 and math.isfinite(args.foreground_loss_weight)):
        raise ValueError(f"`--foreground_loss_weight` must be finite and >= 0, but is {args.foreground_loss_weight}.")
    if args.foreground_loss_dilation < 0:
        raise ValueError(f"`--foreground_loss_dilation` must be >= 0, but is {args.foreground_loss_dilation}.")
    if args.foreground_loss_dilation > 0 and not args.foreground_loss_weight > 0:
        raise ValueError(
            f"`--foreground_loss_dilation` grows the {unit} that `--foreground_loss_weight` weights; use it with "
            "--foreground_loss_weight > 0."
        )


def dilate_foreground(coverage: torch.Tensor, cells: int) -> torch.Tensor:
    """
    A foreground `coverage` `(B, F, H, W)` (the object's share of each latent cell, `latent_foreground`, or of each
    pixel) grown by `cells` cells on every side in each frame: each cell takes the largest coverage within `cells` of
    it. Unchanged for 0.
    """
    if cells == 0:
        return coverage
    batch_size, num_frames, height, width = coverage.shape
    grown = torch.nn.functional.max_pool2d(
        coverage.reshape(batch_size * num_frames, 1, height, width), 2 * cells + 1, stride=1, padding=cells
    )
    return grown.reshape(batch_size, num_frames, height, width)


def collate_videos(examples: list[dict]) -> dict:
    """
    Stacks `pixel_values`, lists the captions and, where the items have them, gathers their `fps` in a tensor and
    stacks their `foreground` masks (moving shapes).
    """
    batch = {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "text": [example["text"] for example in examples],
    }
    if all("fps" in example for example in examples):
        batch["fps"] = torch.tensor([float(example["fps"]) for example in examples])  # (B,)
    if all("foreground" in example for example in examples):
        batch["foreground"] = torch.stack([example["foreground"] for example in examples])  # (B, F, H, W)
    return batch


def find_checkpoint(output_dir: str, resume_from_checkpoint: str | None) -> str | None:
    """
    The checkpoint folder to resume from: `resume_from_checkpoint` itself, or the newest complete `checkpoint-*` of
    `output_dir` for `"latest"` (`None` when there is none yet, so a first run and its restarts share one command).
    Incomplete ones (no readable run configuration, e.g. from a crash of an older version mid-save) are skipped, and
    said so on stderr.
    """
    if resume_from_checkpoint is None:
        return None
    if resume_from_checkpoint != "latest":
        if not os.path.isdir(resume_from_checkpoint):
            raise ValueError(f"`--resume_from_checkpoint` {resume_from_checkpoint!r} is not a folder.")
        return resume_from_checkpoint
    for path in reversed(list_checkpoints(output_dir)):
        if read_run_config(path) is not None:
            return path
        print(f"Skipping the incomplete checkpoint {path} (no readable {RUN_CONFIG_NAME}).", file=sys.stderr)
    return None


def list_checkpoints(output_dir: str) -> list[str]:
    """The `checkpoint-{step}` folders of `output_dir`, oldest step first."""
    if not os.path.isdir(output_dir):
        return []
    steps = sorted(
        int(match.group(1)) for match in map(CHECKPOINT_NAME.match, os.listdir(output_dir)) if match is not None
    )
    return [os.path.join(output_dir, f"checkpoint-{step}") for step in steps]


def read_run_config(checkpoint_dir: str) -> dict | None:
    """The stored run configuration of a checkpoint (written last, so present only when it is complete), or `None`."""
    try:
        with open(os.path.join(checkpoint_dir, RUN_CONFIG_NAME)) as file:
            stored = json.load(file)
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or "global_step" not in stored or "run_config" not in stored:
        return None
    return stored


def prune_checkpoints(output_dir: str, total_limit: int | None) -> None:
    """Removes the oldest `checkpoint-*` folders so that at most `total_limit` remain."""
    if total_limit is None:
        return
    checkpoints = list_checkpoints(output_dir)
    for path in checkpoints[: max(0, len(checkpoints) - total_limit)]:
        shutil.rmtree(path)


def end_training(accelerator: Accelerator) -> None:
    r"""
    Ends a run on every process together: waits for all of them (the main process saves meanwhile), drops the
    accelerator's references to the prepared objects, then destroys the process group (`accelerator.end_training`).
    The caller deletes its own references to the prepared model first, so that no process frees a
    `DistributedDataParallel` wrapper after its process group is gone: one that did (it had finished early, destroyed
    its group, then freed the wrapper when `main` returned) hung in that teardown, in CI, while the other had exited.
    """
    accelerator.wait_for_everyone()
    accelerator.free_memory()
    accelerator.end_training()


def save_run_config(checkpoint_dir: str, run_config: dict, global_step: int) -> None:
    """Stores, next to the accelerate state, what must not change when training resumes."""
    with open(os.path.join(checkpoint_dir, RUN_CONFIG_NAME), "w") as file:
        json.dump({"global_step": global_step, "run_config": run_config}, file, indent=2, sort_keys=True)


def save_checkpoint(
    accelerator: Accelerator,
    args: argparse.Namespace,
    run_config: dict,
    global_step: int,
    sharded: ShardedTraining | None = None,
) -> str:
    """
    Saves the accelerate state (models, optimiser, scheduler, RNGs, registered objects such as EMA), with `sharded`
    (`--fsdp`) the shards of its model, optimizer and EMA, and the run configuration as
    `output_dir/checkpoint-{global_step}`, then prunes old checkpoints; returns its path.

    The state is written into a temporary sibling that becomes `checkpoint-{global_step}` only once complete, so a crash
    at any moment leaves the previous checkpoints as they were and no partial one for `latest` to pick; old
    checkpoints are pruned only after the new one is in place.
    """
    save_path = os.path.join(args.output_dir, f"checkpoint-{global_step}")
    # never a checkpoint of non-finite weights (nor, therefore, the pruning of a good one for it)
    check_finite_weights(accelerator, args, global_step, None if sharded is None else [sharded.model])
    temporary = [None]
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
        remove_stale_temporaries(save_path)
        temporary = [temporary_sibling(save_path, folder=True)]
    # every process writes its own RNG state into the same folder
    temporary = broadcast_object_list(temporary)[0] if accelerator.num_processes > 1 else temporary[0]
    try:
        accelerator.save_state(temporary)
        if sharded is not None:
            sharded.save(temporary)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            save_run_config(temporary, run_config, global_step)
            default_permissions_tree(temporary)
            move_into_place(temporary, save_path)
    except Exception as error:
        # a full disk or a file-size limit: the previous checkpoints stay, the partial one goes, the error says why
        failure = write_failure_error(
            error,
            save_path,
            temporary,
            subject=f"the checkpoint {save_path}",
            outcome="The previous checkpoints are unchanged and no partial one is left; make room and resume with "
            "`--resume_from_checkpoint latest`",
        )
        if accelerator.is_main_process and os.path.lexists(temporary):
            shutil.rmtree(temporary, ignore_errors=True)
        if failure is not None:
            raise failure from error
        raise
    if accelerator.is_main_process:
        prune_checkpoints(args.output_dir, args.checkpoints_total_limit)
    accelerator.wait_for_everyone()
    return save_path


def load_and_check_run_config(checkpoint_dir: str, run_config: dict) -> int:
    """
    Compares the run configuration stored in a checkpoint with the current one, raising a `ValueError` that lists
    every difference; returns the checkpoint's global step.
    """
    stored = read_run_config(checkpoint_dir)
    if stored is None:
        raise ValueError(
            f"{checkpoint_dir!r} is not a complete checkpoint of this script: it has no readable {RUN_CONFIG_NAME} to"
            " check the configuration against."
        )
    # JSON turns tuples into lists: compare both sides after the same round trip
    current = json.loads(json.dumps(run_config, sort_keys=True))
    differences = []
    for key in sorted(set(stored["run_config"]) | set(current)):
        before, now = stored["run_config"].get(key), current.get(key)
        if isinstance(before, dict) and isinstance(now, dict):
            for sub_key in sorted(set(before) | set(now)):
                if before.get(sub_key) != now.get(sub_key):
                    differences.append(
                        f"{key}.{sub_key}: checkpoint {before.get(sub_key)!r}, now {now.get(sub_key)!r}"
                    )
        elif before != now:
            differences.append(f"{key}: checkpoint {before!r}, now {now!r}")
    if differences:
        raise ValueError(
            f"Cannot resume from {checkpoint_dir!r}: it was saved by a run with another configuration ("
            + "; ".join(differences)
            + "). Resume with the same options, or start a new --output_dir."
        )
    return int(stored["global_step"])
