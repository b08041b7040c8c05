"""Bucketed training: videos of several sizes and lengths in one run, every batch from one bucket.

A bucket is a `(num_frames, height, width)` clip size in frames and pixels. A dataset that trains in buckets exposes
`item_buckets`, one bucket per item, known without decoding anything (`MovingShapesDataset`, `VideoFolderDataset`);
`BucketBatchSampler` then draws each batch's bucket by the bucket weights and fills the batch with items of that
bucket only, so the batch stacks into one tensor.

The budget (the share of steps each bucket gets) is, by default, **equal compute per bucket**: a bucket's weight is
proportional to `1 / (num_frames * height * width)`, so a step's cost times its frequency is the same for all, and
most steps go to the small buckets, as Open-Sora's bucket configs and SVD's staged training do (many cheap low-resolution
short clips, fewer large ones). `--buckets 17x64x64,61x64x64:0.5` overrides a bucket's weight after a colon; weights
are normalised to sum to one.
"""

import re
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler, Subset


_BUCKET_PATTERN = re.compile(r"^\s*(\d+)x(\d+)x(\d+)\s*(?::\s*([0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?))?\s*$")


def parse_buckets(text: str) -> tuple[list[tuple[int, int, int]], list[float]]:
    r"""
    Reads `--buckets`: comma-separated `{num_frames}x{height}x{width}`, each optionally followed by `:{weight}`.

    Args:
        text (`str`):
            For example `"17x64x64,33x64x64,17x128x128:0.1"`.

    Returns:
        `tuple`: `(buckets, weights)`: the buckets in the given order and their normalised weights (the budget of
        `default_bucket_weights` for those without an explicit weight, scaled so that the weights given stay in their
        ratio to them).
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"`--buckets` must be comma-separated FRAMESxHEIGHTxWIDTH[:WEIGHT], but is {text!r}.")
    buckets, given = [], []
    for part in text.split(","):
        match = _BUCKET_PATTERN.match(part)
        if match is None:
            raise ValueError(
                f"`--buckets` has {part!r}; each bucket is FRAMESxHEIGHTxWIDTH with an optional :WEIGHT, e.g. "
                "17x64x64 or 33x64x64:0.25."
            )
        bucket = tuple(int(value) for value in match.groups()[:3])
        if min(bucket) < 1:
            raise ValueError(f"`--buckets` has {part!r}; frames, height and width must be positive.")
        if bucket in buckets:
            raise ValueError(f"`--buckets` lists {part.strip()!r} twice.")
        buckets.append(bucket)
        given.append(None if match.group(4) is None else float(match.group(4)))
    defaults = default_bucket_weights(buckets)
    weights = [default if weight is None else weight for weight, default in zip(given, defaults)]
    if not sum(weights) > 0:
        raise ValueError(f"`--buckets` weights must not all be zero: {text!r}.")
    return buckets, [weight / sum(weights) for weight in weights]


def format_buckets(buckets: Sequence[tuple[int, int, int]], weights: Sequence[float] | None = None) -> str:
    """The `--buckets` text of `buckets` (with `:{weight}` when `weights` are given)."""
    parts = [f"{num_frames}x{height}x{width}" for num_frames, height, width in buckets]
    if weights is not None:
        parts = [f"{part}:{weight:.4g}" for part, weight in zip(parts, weights)]
    return ",".join(parts)


def default_bucket_weights(buckets: Sequence[tuple[int, int, int]]) -> list[float]:
    """Equal compute per bucket: weights proportional to `1 / (num_frames * height * width)`, normalised."""
    inverse_sizes = [1.0 / (num_frames * height * width) for num_frames, height, width in buckets]
    return [weight / sum(inverse_sizes) for weight in inverse_sizes]


class BucketBatchSampler(Sampler[list[int]]):
    r"""
    Batches of dataset indices, every batch from one bucket; each epoch's batches are a function of `(seed, epoch)`
    alone, so a run resumed at any batch of an epoch sees the batches an uninterrupted run sees.

    Each batch's bucket is drawn by `weights`; within a bucket the items come in a shuffled order that is drawn again
    when it runs out, so a bucket with fewer items than its share of the steps repeats them (and one with more sees a
    different part of them every epoch).

    With `num_processes` > 1 the sampler draws global batches of `batch_size * num_processes` items, each from one
    bucket, and gives each as `num_processes` consecutive batches of `batch_size`: accelerate hands process `p` the
    batches `p, p + n, ...`, so at every step all processes train on one bucket, and together on the very batch that
    one process at batch `batch_size * num_processes` draws (same seed).

    Args:
        item_buckets (`Sequence[tuple[int, int, int]]`):
            The bucket of every item of the dataset (its `item_buckets`).
        batch_size (`int`):
            Items per batch.
        buckets (`Sequence[tuple[int, int, int]]`):
            The buckets to draw from; each must hold at least one item.
        weights (`Sequence[float]`, *optional*):
            The share of batches of each bucket; `default_bucket_weights(buckets)` when not given.
        num_batches (`int`, *optional*):
            Global batches per epoch; defaults to `len(item_buckets) // (batch_size * num_processes)` (at least 1).
        seed (`int`, *optional*, defaults to 0):
            Seed of the order.
        num_processes (`int`, *optional*, defaults to 1):
            The processes the batches are sharded between (`accelerator.num_processes`).
    """

    def __init__(
        self,
        item_buckets: Sequence[tuple[int, int, int]],
        batch_size: int,
        buckets: Sequence[tuple[int, int, int]],
        weights: Sequence[float] | None = None,
        num_batches: int | None = None,
        seed: int = 0,
        num_processes: int = 1,
    ):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer, but is {batch_size!r}.")
        if not isinstance(num_processes, int) or num_processes < 1:
            raise ValueError(f"`num_processes` must be a positive integer, but is {num_processes!r}.")
        buckets = [tuple(bucket) for bucket in buckets]
        weights = default_bucket_weights(buckets) if weights is None else list(weights)
        if len(weights) != len(buckets) or any(weight < 0 for weight in weights) or not sum(weights) > 0:
            raise ValueError(
                f"`weights` must be {len(buckets)} non-negative numbers, one per bucket, not all zero; got {weights}."
            )
        self.indices_per_bucket = [
            [index for index, item_bucket in enumerate(item_buckets) if tuple(item_bucket) == bucket]
            for bucket in buckets
        ]
        empty = [bucket for bucket, indices in zip(buckets, self.indices_per_bucket) if not indices]
        if empty:
            raise ValueError(
                f"The dataset has no item in the bucket(s) {format_buckets(empty)}; drop them or add data."
            )
        self.buckets = buckets
        self.weights = [weight / sum(weights) for weight in weights]
        self.batch_size = batch_size
        self.num_processes = num_processes
        global_batch_size = batch_size * num_processes
        self.num_batches = max(1, len(item_buckets) // global_batch_size) if num_batches is None else num_batches
        if not isinstance(self.num_batches, int) or self.num_batches < 1:
            raise ValueError(f"`num_batches` must be a positive integer, but is {num_batches!r}.")
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose batches the next iteration gives."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches * self.num_processes

    def batch_buckets(self) -> list[int]:
        """The bucket (its position in `buckets`) of each global batch of the current epoch."""
        generator = np.random.default_rng((self.seed, self.epoch, 0))
        return generator.choice(len(self.buckets), size=self.num_batches, p=self.weights).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        generator = np.random.default_rng((self.seed, self.epoch, 1))
        orders = [[] for _ in self.buckets]  # what is left of each bucket's shuffled order
        for bucket in self.batch_buckets():
            batch = []
            while len(batch) < self.batch_size * self.num_processes:
                if not orders[bucket]:
                    orders[bucket] = generator.permutation(self.indices_per_bucket[bucket]).tolist()
                batch.append(orders[bucket].pop())
            for start in range(0, len(batch), self.batch_size):
                yield batch[start : start + self.batch_size]


def dataset_item_buckets(dataset) -> list[tuple[int, int, int]]:
    """The `item_buckets` of a dataset, or of the items a `torch.utils.data.Subset` keeps of one."""
    if isinstance(dataset, Subset):
        parent = dataset_item_buckets(dataset.dataset)
        return [parent[index] for index in dataset.indices]
    item_buckets = getattr(dataset, "item_buckets", None)
    if item_buckets is None:
        raise ValueError(f"{type(dataset).__name__} has no `item_buckets`: it cannot be trained in buckets.")
    return [tuple(bucket) for bucket in item_buckets]


def trained_ranges(buckets: Sequence[tuple[int, int, int]], fps: Sequence[float]) -> dict[str, list[float]]:
    """The `trained_ranges` of `generation_defaults` for a model trained on `buckets` at the frame rates `fps`."""
    num_frames, heights, widths = zip(*buckets)
    return {
        "num_frames": [min(num_frames), max(num_frames)],
        "height": [min(heights), max(heights)],
        "width": [min(widths), max(widths)],
        "fps": [min(fps), max(fps)],
    }
