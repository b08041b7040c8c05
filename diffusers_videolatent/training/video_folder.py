"""A dataset of captioned videos stored in a folder, in the ImageFolder convention of diffusers and datasets.

The folder holds the videos (any format FFmpeg decodes: mp4, webm, mkv, avi, gif, ...) and one `metadata.csv` or
`metadata.jsonl` whose `file_name` column gives each video's path relative to the folder and whose `text` column its
caption. Every video is probed once when the dataset is built, from its container's metadata (size, frame count, frame
rate; nothing is decoded): rows whose caption is missing or empty, whose path leaves the folder (`../`, an absolute
path, a symlink pointing out), whose video cannot be read or is too short for every bucket are skipped, and the number
skipped for each reason is logged and kept in `skipped` (with each row's file name and reason in `skipped_files`). A
folder with nothing usable is a `ValueError`, never an empty training run.

Frames are sampled in time: clip frame `k` is the source frame played at `t0 + k / fps` seconds (`fps` the training
frame rate, or the video's own rate when none is given, which takes consecutive frames), so a 30 fps and a 24 fps
video give clips of the same seconds. Only those frames are decoded: the decoder seeks to the key frame before `t0`
and stops after the clip's last frame. The decoder is torchcodec where it imports and runs (its PyPI wheel needs the
CUDA libraries and a system FFmpeg), PyAV otherwise (its wheels bundle FFmpeg; `pip install av`, part of the
`training` extra).

A video that probed fine but fails to decode while training (a truncated or corrupted file) is skipped: counted in
`skipped["failed_decode"]`, logged, and replaced by the next video of the same bucket, so batch shapes and an exact
resume hold; `skipped_summary()` is what the training scripts log at the end of a run.
"""

import csv
import json
import logging
import math
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


logger = logging.getLogger(__name__)

METADATA_FILE_NAMES = ("metadata.csv", "metadata.jsonl")
DECODERS = ("auto", "torchcodec", "pyav")
# how far past a requested time a frame's timestamp may lie and still count as played at that time: timestamps are
# rounded to the container's time base (WebM and Matroska: 1 ms, so a 30 fps frame 2 is stamped 0.067 s, not 0.0667 s)
TIME_TOLERANCE = 1e-3


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


def _path_inside(root: str, file_name: str) -> str | None:
    """The real path of `file_name` under `root`, or `None` when it leaves the folder (absolute, `../`, or a symlink
    pointing out)."""
    if os.path.isabs(file_name) or os.path.splitdrive(file_name)[0]:
        return None
    real_root = os.path.realpath(root)
    path = os.path.realpath(os.path.join(real_root, file_name))
    if os.path.commonpath([real_root, path]) != real_root:
        return None
    return path


# ----------------------------------------------------------------------------------------------------------------------
# Decoders: `probe` reads the container's metadata, `read` decodes the frames played at given times
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoProbe:
    """What a video's container says about it: frame count, average frame rate, frame size, and the first frame's time
    (seconds)."""

    num_frames: int
    fps: float
    height: int
    width: int
    start: float = 0.0

    @property
    def span(self) -> float:
        """Seconds from the first frame to the last."""
        return (self.num_frames - 1) / self.fps


def _checked_probe(path: str, probe: VideoProbe) -> VideoProbe:
    # a container cut short can list a stream whose size or rate FFmpeg could not find (reported as 0)
    if probe.num_frames < 1 or not probe.fps > 0 or probe.height < 1 or probe.width < 1:
        raise ValueError(f"{path}: the container gives no usable frame count, rate or size ({probe}).")
    return probe


def _probe_pyav(path: str) -> VideoProbe:
    import av

    with av.open(path) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream.")
        stream = container.streams.video[0]
        time_base = stream.time_base
        start = float(stream.start_time * time_base) if stream.start_time is not None and time_base else 0.0
        duration = None
        if stream.duration and time_base:
            duration = float(stream.duration * time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        rate = stream.average_rate or stream.guessed_rate
        num_frames = stream.frames
        if num_frames <= 0 and duration and rate:
            num_frames = round(duration * rate)
        if num_frames <= 0:
            # neither a count nor a duration in the container (raw streams): count the packets, without decoding
            num_frames = sum(1 for packet in container.demux(stream) if packet.size)
        if not rate:
            if not duration:
                raise ValueError(f"{path} gives neither a frame rate nor a duration.")
            rate = num_frames / duration
        return _checked_probe(
            path,
            VideoProbe(
                num_frames=int(num_frames),
                fps=float(rate),
                height=stream.codec_context.height,
                width=stream.codec_context.width,
                start=start,
            ),
        )


def _read_pyav(path: str, probe: VideoProbe, times: list[float]) -> np.ndarray:
    import av

    targets = [probe.start + time + TIME_TOLERANCE for time in times]
    first_time = probe.start + times[0]
    # seek to the key frame at or before the first time; from the video's start, decoding needs no seek
    seek = times[0] > 0.5 / probe.fps
    while True:
        with av.open(path) as container:
            stream = container.streams.video[0]
            if seek:
                container.seek(int(first_time / stream.time_base), stream=stream, backward=True, any_frame=False)
            chosen, previous, missed = [], None, False
            for decoded, frame in enumerate(container.decode(stream)):
                if frame.time is not None:
                    time = frame.time
                elif not seek:
                    time = probe.start + decoded / probe.fps
                else:
                    missed = True  # no timestamps: decode from the start and count frames instead
                    break
                while len(chosen) < len(targets) and time > targets[len(chosen)]:
                    if previous is None:
                        missed = True  # the seek landed after the first time
                        break
                    chosen.append(previous)
                if missed or len(chosen) == len(targets):
                    break
                previous = (time, frame)
            else:
                if previous is None:
                    raise ValueError(f"{path}: no frame decoded from {first_time:.3f} s.")
                last_time = previous[0]
                if targets[-1] > last_time + 1.5 / probe.fps:
                    raise ValueError(
                        f"{path}: the stream ends at {last_time:.3f} s, but its metadata promises {probe.num_frames} "
                        f"frames ({probe.start + probe.span:.3f} s) and the clip needs {targets[-1]:.3f} s."
                    )
                chosen += [previous] * (len(targets) - len(chosen))
        if not missed:
            break
        if not seek:
            raise ValueError(f"{path}: its first frame comes after {first_time:.3f} s.")
        seek = False
    arrays = {}
    for _, frame in chosen:
        if id(frame) not in arrays:
            arrays[id(frame)] = frame.to_ndarray(format="rgb24")
    return np.stack([arrays[id(frame)] for _, frame in chosen])


def _probe_torchcodec(path: str) -> VideoProbe:
    from torchcodec.decoders import VideoDecoder

    metadata = VideoDecoder(path, seek_mode="approximate").metadata
    probe = VideoProbe(
        num_frames=int(metadata.num_frames or 0),
        fps=float(metadata.average_fps or 0),
        height=int(metadata.height or 0),
        width=int(metadata.width or 0),
        start=float(metadata.begin_stream_seconds),
    )
    return _checked_probe(path, probe)


def _read_torchcodec(path: str, probe: VideoProbe, times: list[float]) -> np.ndarray:
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(path, seek_mode="approximate", dimension_order="NHWC")
    batch = decoder.get_frames_played_at(seconds=[probe.start + time + TIME_TOLERANCE for time in times])
    return batch.data.numpy()


_PROBES = {"pyav": _probe_pyav, "torchcodec": _probe_torchcodec}
_READERS = {"pyav": _read_pyav, "torchcodec": _read_torchcodec}


def resolve_decoder(decoder: str = "auto") -> str:
    """
    The video decoder to use: `"torchcodec"` when asked or, for `"auto"`, when it imports and loads its FFmpeg;
    `"pyav"` otherwise.
    """
    if decoder not in DECODERS:
        raise ValueError(f"`decoder` must be one of {list(DECODERS)}, but is {decoder!r}.")
    if decoder in ("auto", "torchcodec"):
        try:
            import torchcodec.decoders  # noqa: F401  (loads torchcodec's FFmpeg libraries, or raises)

            return "torchcodec"
        except Exception as error:  # ImportError, or RuntimeError when the libraries cannot load
            if decoder == "torchcodec":
                raise ImportError(f"`decoder='torchcodec'` was asked, but torchcodec cannot load: {error}") from error
    try:
        import av  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "Reading a video folder needs PyAV (`pip install av`, or `pip install diffusers-videolatent[training]`) "
            "or a working torchcodec."
        ) from error
    return "pyav"


# ----------------------------------------------------------------------------------------------------------------------
# Buckets and frame selection
# ----------------------------------------------------------------------------------------------------------------------


def nearest_bucket(
    probe: VideoProbe, buckets: list[tuple[int, int, int]], fps: float | None = None
) -> tuple[int, int, int] | None:
    """
    The bucket `(num_frames, height, width)` a video trains in: among the buckets whose clip fits in the video
    (`(num_frames - 1) / fps` seconds, `fps` the training frame rate or the video's own), the nearest in aspect ratio
    (log of width / height), then the longest, then the largest that does not upscale the video (else the smallest).
    `None` when the video is shorter than every bucket.
    """
    rate = fps or probe.fps
    fitting = [bucket for bucket in buckets if (bucket[0] - 1) / rate <= probe.span + TIME_TOLERANCE]
    if not fitting:
        return None
    aspect = math.log(probe.width / probe.height)

    def aspect_distance(bucket: tuple[int, int, int]) -> float:
        return abs(math.log(bucket[2] / bucket[1]) - aspect)

    nearest = min(aspect_distance(bucket) for bucket in fitting)
    candidates = [bucket for bucket in fitting if aspect_distance(bucket) <= nearest + 1e-9]
    longest = max(bucket[0] for bucket in candidates)
    candidates = [bucket for bucket in candidates if bucket[0] == longest]
    video_area = probe.height * probe.width
    not_upscaled = [bucket for bucket in candidates if bucket[1] * bucket[2] <= video_area]
    if not_upscaled:
        return max(not_upscaled, key=lambda bucket: bucket[1] * bucket[2])
    return min(candidates, key=lambda bucket: bucket[1] * bucket[2])


def clip_times(
    probe: VideoProbe, num_frames: int, fps: float | None = None, start_frame: int = 0
) -> tuple[list[float], int]:
    """
    The times (seconds from the video's first frame) of a clip of `num_frames` frames at `fps` (the video's own rate
    when `None`) starting at source frame `start_frame`, and the largest start frame the video allows.
    """
    rate = fps or probe.fps
    clip_span = (num_frames - 1) / rate
    max_start = max(0, math.floor((probe.span - clip_span) * probe.fps + 1e-6))
    start = start_frame / probe.fps
    return [start + index / rate for index in range(num_frames)], max_start


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


def _check_buckets(buckets) -> list[tuple[int, int, int]]:
    if not isinstance(buckets, (list, tuple)) or not buckets:
        raise ValueError(f"`buckets` must be a non-empty list of (num_frames, height, width), but is {buckets!r}.")
    checked = []
    for bucket in buckets:
        if (
            not isinstance(bucket, (list, tuple))
            or len(bucket) != 3
            or not all(isinstance(size, int) and not isinstance(size, bool) and size >= 1 for size in bucket)
        ):
            raise ValueError(
                f"`buckets` holds {bucket!r}, which is not a (num_frames, height, width) of positive ints."
            )
        checked.append(tuple(bucket))
    return checked


@dataclass(frozen=True)
class _Video:
    file_name: str
    path: str
    caption: str
    probe: VideoProbe


class VideoFolderDataset(Dataset):
    """
    Captioned videos from a folder with a `metadata.csv` or `metadata.jsonl` (columns `file_name` and `text`), read at
    a training frame rate and sorted into size buckets.

    Args:
        root (`str`):
            The folder.
        num_frames (`int`, *optional*, defaults to 17):
            Frames per clip when `buckets` is `None`.
        height (`int`, *optional*, defaults to 64):
            Output frame height when `buckets` is `None`; frames are resized to cover `height` x `width` and
            centre-cropped.
        width (`int`, *optional*, defaults to 64):
            Output frame width when `buckets` is `None`.
        random_offset (`bool`, *optional*, defaults to `True`):
            Whether the clip starts at a random source frame or always at the video's first frame. The draw comes from
            a generator seeded with `(seed, epoch, index)`, so a resumed training run sees the very same clips.
        video_column (`str`, *optional*, defaults to `"file_name"`):
            Metadata column with the video paths, relative to `root` (paths that leave `root` are skipped).
        caption_column (`str`, *optional*, defaults to `"text"`):
            Metadata column with the captions.
        seed (`int`, *optional*, defaults to 0):
            Seed of the random offsets; `set_epoch` changes them from epoch to epoch.
        buckets (`list[tuple[int, int, int]]`, *optional*):
            Clip sizes `(num_frames, height, width)`; each video trains in its `nearest_bucket` (aspect ratio, then
            duration at `fps`), listed in `item_buckets`. `None` is the single bucket `(num_frames, height, width)`.
        fps (`float`, *optional*):
            Training frame rate: clip frames are `1 / fps` seconds apart whatever the video's own rate (frames are
            repeated or dropped to get there). `None` takes consecutive frames at each video's own rate.
        decoder (`str`, *optional*, defaults to `"auto"`):
            `"torchcodec"`, `"pyav"`, or `"auto"` (torchcodec where it loads, else PyAV); see `resolve_decoder`.

    Items are dictionaries with `pixel_values` (float32 in [-1, 1], `[3, num_frames, height, width]` of the item's
    bucket), `text` and `fps` (the rate the clip's frames are spaced at, as a float).
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
        buckets: list[tuple[int, int, int]] | None = None,
        fps: float | None = None,
        decoder: str = "auto",
    ):
        for name, value in (("num_frames", num_frames), ("height", height), ("width", width)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, but is {value!r}.")
        buckets = [(num_frames, height, width)] if buckets is None else _check_buckets(buckets)
        if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0):
            raise ValueError(f"`fps` must be a positive number or None, but is {fps!r}.")
        if not os.path.isdir(root):
            raise ValueError(f"`root` must be an existing folder, but {root!r} is not one.")
        self.decoder = resolve_decoder(decoder)
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
        self.buckets = buckets
        self.fps = None if fps is None else float(fps)
        self.random_offset = random_offset
        self.seed = seed
        self.epoch = 0
        self.skipped = {
            "unreadable_caption": 0,
            "outside_folder": 0,
            "unreadable_video": 0,
            "too_short": 0,
            "failed_decode": 0,
        }
        # (file name, reason) of every skipped row, and of every video that failed to decode while training
        self.skipped_files: list[tuple[str, str]] = []
        self.videos: list[_Video] = []
        self.item_buckets: list[tuple[int, int, int]] = []
        probe = _PROBES[self.decoder]
        for row in rows:
            file_name = str(row.get(video_column) or "")
            caption = row.get(caption_column)
            if not isinstance(caption, str) or not caption.strip():
                self._skip(file_name, "unreadable_caption", "missing or empty caption")
                continue
            path = _path_inside(root, file_name) if file_name else os.path.join(root, "")
            if path is None:
                self._skip(file_name, "outside_folder", f"the path leaves {root}")
                continue
            try:
                video_probe = probe(path)
            except Exception as error:  # FFmpeg raises many kinds (FileNotFoundError, InvalidDataError, ...)
                self._skip(file_name, "unreadable_video", f"{type(error).__name__}: {error}")
                continue
            bucket = nearest_bucket(video_probe, buckets, self.fps)
            if bucket is None:
                self._skip(file_name, "too_short", f"{video_probe.span:.3f} s is shorter than every bucket")
                continue
            self.videos.append(_Video(file_name, path, caption.strip(), video_probe))
            self.item_buckets.append(bucket)
        # indices of the videos that failed to decode in this process
        self._failed: set[int] = set()

        shortest = min(bucket[0] for bucket in buckets)
        rate = "" if self.fps is None else f" at {self.fps:g} fps"
        if any(self.skipped.values()):
            logger.warning(
                f"{root}: skipped {self.skipped['unreadable_caption']} row(s) with a missing or empty caption, "
                f"{self.skipped['outside_folder']} path(s) leaving the folder, "
                f"{self.skipped['unreadable_video']} video(s) that could not be read and "
                f"{self.skipped['too_short']} video(s) shorter than {shortest} frames{rate}; "
                f"{len(self.videos)} of {len(rows)} remain."
            )
        if not self.videos:
            raise ValueError(
                f"No usable video in {root!r}: of {len(rows)} row(s), {self.skipped['unreadable_caption']} have a "
                f"missing or empty caption, {self.skipped['outside_folder']} a path leaving the folder, "
                f"{self.skipped['unreadable_video']} a video that cannot be read and "
                f"{self.skipped['too_short']} a video shorter than the shortest clip, {shortest} frames{rate}."
            )

    def _skip(self, file_name: str, reason: str, detail: str) -> None:
        self.skipped[reason] += 1
        self.skipped_files.append((file_name, f"{reason}: {detail}"))

    def skipped_summary(self, max_files: int = 20) -> str:
        """What was skipped, counted by reason, with the first `max_files` files and their reasons (one per line)."""
        total = sum(self.skipped.values())
        if not total:
            return f"{self.root}: nothing skipped; {len(self.videos)} video(s)."
        counts = ", ".join(f"{count} {reason}" for reason, count in self.skipped.items() if count)
        lines = [f"{self.root}: skipped {total} ({counts}); {len(self.videos) - len(self._failed)} video(s) used."]
        lines += [f"  {file_name}: {reason}" for file_name, reason in self.skipped_files[:max_files]]
        if len(self.skipped_files) > max_files:
            lines.append(f"  ... and {len(self.skipped_files) - max_files} more.")
        return "\n".join(lines)

    def set_epoch(self, epoch: int) -> None:
        """Selects the random offsets of epoch `epoch`."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> dict:
        if index in self._failed:
            return self._replacement(index)
        try:
            return self._load(index)
        except Exception as error:  # a video that probed fine but does not decode (truncated, corrupted)
            self._record_failure(index, error)
            return self._replacement(index)

    def _record_failure(self, index: int, error: Exception) -> None:
        self._failed.add(index)
        video = self.videos[index]
        self._skip(video.file_name, "failed_decode", f"{type(error).__name__}: {error}")
        logger.warning(f"{video.path} failed to decode and is skipped from now on: {type(error).__name__}: {error}")

    def _replacement(self, index: int) -> dict:
        """The next video of the same bucket that decodes, at its own offset: the same for every process and run."""
        bucket = self.item_buckets[index]
        for step in range(1, len(self.videos)):
            other = (index + step) % len(self.videos)
            if self.item_buckets[other] != bucket or other in self._failed:
                continue
            try:
                return self._load(other)
            except Exception as error:
                self._record_failure(other, error)
        raise RuntimeError(f"No video of bucket {bucket} in {self.root!r} decodes; see the warnings above.")

    def _load(self, index: int) -> dict:
        video = self.videos[index]
        num_frames, height, width = self.item_buckets[index]
        times, max_start = clip_times(video.probe, num_frames, self.fps)
        if self.random_offset and max_start > 0:
            generator = np.random.default_rng((self.seed, self.epoch, index))
            start_frame = int(generator.integers(0, max_start + 1))
            times, _ = clip_times(video.probe, num_frames, self.fps, start_frame)
        frames = _READERS[self.decoder](video.path, video.probe, times)  # (F, h, w, 3) uint8
        clip = torch.from_numpy(frames.astype(np.float32) / 127.5 - 1.0)  # (F, h, w, 3) in [-1, 1]
        clip = resize_and_center_crop(clip.permute(0, 3, 1, 2), height, width)  # (F, 3, H, W)
        return {
            "pixel_values": clip.permute(1, 0, 2, 3).contiguous(),
            "text": video.caption,
            "fps": self.fps or video.probe.fps,
        }
