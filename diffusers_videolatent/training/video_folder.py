"""A dataset of captioned videos stored in a folder, in the ImageFolder convention of diffusers and datasets.

The folder holds the videos (any format imageio can decode: mp4, webm, gif, ...) and one `metadata.csv` or
`metadata.jsonl` whose `file_name` column gives each video's path relative to the folder and whose `text` column its
caption. Every video is probed once when the dataset is built: rows whose video cannot be read, whose caption is
missing or empty, or whose video has fewer frames than asked for are skipped, and the number skipped for each reason
is logged (and kept in `skipped`). A folder with nothing usable is a `ValueError`, never an empty training run.
"""

import csv
import json
import logging
import math
import os

import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


logger = logging.getLogger(__name__)

METADATA_FILE_NAMES = ("metadata.csv", "metadata.jsonl")


def _read_metadata(root: str) -> tuple[str, list[dict]]:
    present = [name for name in METADATA_FILE_NAMES if os.path.isfile(os.path.join(root, name))]
    if not present:
        raise ValueError(
            f"The video folder {root!r} has no metadata file: expected one of {list(METADATA_FILE_NAMES)} with the "
            "columns `file_name` (video path relative to the folder) and `text` (caption)."
        )
    if len(present) > 1:
        raise ValueError(f"The video folder {root!r} has both {present[0]} and {present[1]}; keep only one.")
    path = os.path.join(root, present[0])
    rows = []
    if present[0].endswith(".csv"):
        with open(path, newline="", encoding="utf-8") as file:
            rows = list(csv.DictReader(file))
    else:
        with open(path, encoding="utf-8") as file:
            for line_number, line in enumerate(file, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}, line {line_number}, is not valid JSON: {error}.") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{path}, line {line_number}, is not a JSON object but {row!r}.")
                rows.append(row)
    return path, rows


def _count_frames(path: str) -> int:
    """Number of frames of a video; decodes it when the container does not store the count."""
    num_frames = iio.improps(path).shape[0]
    if math.isfinite(num_frames) and num_frames > 0:
        return int(num_frames)
    return sum(1 for _ in iio.imiter(path))


def resize_and_center_crop(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """
    Scales frames `[F, C, h, w]` so that they cover `height` x `width` (keeping their aspect ratio), then crops the
    centre. Returns `[F, C, height, width]`.
    """
    source_height, source_width = frames.shape[-2:]
    scale = max(height / source_height, width / source_width)
    resized_height = max(height, round(source_height * scale))
    resized_width = max(width, round(source_width * scale))
    if (resized_height, resized_width) != (source_height, source_width):
        frames = F.interpolate(
            frames, size=(resized_height, resized_width), mode="bilinear", align_corners=False, antialias=True
        )
    top = (resized_height - height) // 2
    left = (resized_width - width) // 2
    return frames[..., top : top + height, left : left + width]


class VideoFolderDataset(Dataset):
    """
    Captioned videos from a folder with a `metadata.csv` or `metadata.jsonl` (columns `file_name` and `text`).

    Args:
        root (`str`):
            The folder.
        num_frames (`int`, *optional*, defaults to 17):
            Consecutive frames taken from each video.
        height (`int`, *optional*, defaults to 64):
            Output frame height; frames are resized to cover `height` x `width` and centre-cropped.
        width (`int`, *optional*, defaults to 64):
            Output frame width.
        random_offset (`bool`, *optional*, defaults to `True`):
            Whether the first frame is drawn at random or is always the video's first frame. The draw comes from a
            generator seeded with `(seed, epoch, index)`, so a resumed training run sees the very same clips.
        video_column (`str`, *optional*, defaults to `"file_name"`):
            Metadata column with the video paths, relative to `root`.
        caption_column (`str`, *optional*, defaults to `"text"`):
            Metadata column with the captions.
        seed (`int`, *optional*, defaults to 0):
            Seed of the random offsets; `set_epoch` changes them from epoch to epoch.

    Items are dictionaries with `pixel_values` (float32 in [-1, 1], `[3, num_frames, height, width]`) and `text`.
    """

    def __init__(
        self,
        root: str,
        num_frames: int = 17,
        height: int = 64,
        width: int = 64,
        random_offset: bool = True,
        video_column: str = "file_name",
        caption_column: str = "text",
        seed: int = 0,
    ):
        for name, value in (("num_frames", num_frames), ("height", height), ("width", width)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, but is {value!r}.")
        if not os.path.isdir(root):
            raise ValueError(f"`root` must be an existing folder, but {root!r} is not one.")
        metadata_path, rows = _read_metadata(root)
        if not rows:
            raise ValueError(f"The video folder {root!r} is empty: {metadata_path} lists no videos.")
        missing = [column for column in (video_column, caption_column) if column not in rows[0]]
        if missing:
            raise ValueError(
                f"{metadata_path} has no column {missing} (its columns are {list(rows[0])}); set `video_column` / "
                "`caption_column` to the right names."
            )

        self.root = root
        self.num_frames = num_frames
        self.height = height
        self.width = width
        self.random_offset = random_offset
        self.seed = seed
        self.epoch = 0
        self.skipped = {"unreadable_caption": 0, "unreadable_video": 0, "too_short": 0}
        # (path, caption, number of frames) of every usable row
        self.videos: list[tuple[str, str, int]] = []
        for row in rows:
            caption = row.get(caption_column)
            if not isinstance(caption, str) or not caption.strip():
                self.skipped["unreadable_caption"] += 1
                continue
            path = os.path.join(root, str(row.get(video_column) or ""))
            try:
                video_frames = _count_frames(path)
            except Exception:  # imageio raises OSError, ValueError, RuntimeError, ... depending on the plugin
                self.skipped["unreadable_video"] += 1
                continue
            if video_frames < num_frames:
                self.skipped["too_short"] += 1
                continue
            self.videos.append((path, caption.strip(), video_frames))

        if any(self.skipped.values()):
            logger.warning(
                f"{root}: skipped {self.skipped['unreadable_caption']} row(s) with a missing or empty caption, "
                f"{self.skipped['unreadable_video']} video(s) that could not be read and "
                f"{self.skipped['too_short']} video(s) shorter than {num_frames} frames; "
                f"{len(self.videos)} of {len(rows)} remain."
            )
        if not self.videos:
            raise ValueError(
                f"No usable video in {root!r}: of {len(rows)} row(s), {self.skipped['unreadable_caption']} have a "
                f"missing or empty caption, {self.skipped['unreadable_video']} a video that cannot be read and "
                f"{self.skipped['too_short']} a video shorter than `num_frames`={num_frames}."
            )

    def set_epoch(self, epoch: int) -> None:
        """Selects the random offsets of epoch `epoch`."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> dict:
        path, caption, video_frames = self.videos[index]
        start = 0
        if self.random_offset and video_frames > self.num_frames:
            generator = np.random.default_rng((self.seed, self.epoch, index))
            start = int(generator.integers(0, video_frames - self.num_frames + 1))
        frames = []
        for frame_index, frame in enumerate(iio.imiter(path)):
            if frame_index >= start + self.num_frames:
                break
            if frame_index >= start:
                frames.append(frame)
        if len(frames) < self.num_frames:
            raise ValueError(f"{path} yielded {len(frames)} frames from frame {start}, expected {self.num_frames}.")
        video = np.stack(frames)  # (F, h, w, C)
        if video.ndim == 3:
            video = np.repeat(video[..., None], 3, axis=-1)
        video = torch.from_numpy(video[..., :3].astype(np.float32) / 127.5 - 1.0)  # (F, h, w, 3) in [-1, 1]
        video = resize_and_center_crop(video.permute(0, 3, 1, 2), self.height, self.width)  # (F, 3, H, W)
        return {"pixel_values": video.permute(1, 0, 2, 3).contiguous(), "text": caption}
