"""Measures, with plain image processing, whether generated "moving shapes" videos show what their prompt asks for.

For each video the object is segmented per frame (brightness above half of the video's peak brightness, then the
largest 4-connected region) and then:
- colour: the mean colour of the object pixels, divided by its largest channel (so a dim red is still red), is
  matched to the nearest colour of `COLORS` normalised the same way;
- shape: two features of the mask, medians over frames: the taper (mean row width of the top half of the object over
  that of its bottom half: 1/3 for the upright triangle, 1 for circle and square) and the fill ratio of the bounding
  box (circle pi / 4 ~ 0.785, square 1). A taper below 0.6 is a triangle; otherwise a fill ratio from 0.89 up is a
  square and below it a circle. (The fill ratio alone, 0.5 for the triangle, separates triangles less well at small
  sizes, where pixelisation fills their slanted edges);
- direction: a least-squares line through the per-frame centroids gives the displacement over the clip; the larger
  of its horizontal and vertical components gives the direction, or `"static"` when the object moves less than
  `min_travel` (a fraction of the frame size) while the dataset's objects travel half the frame;
- stability: the IoU of the masks of consecutive frames after moving one onto the other by the difference of their
  centroids (1 for a rigid object), the fraction of frames where an object is found, and four temporal measures:
  - object-area CV (`area_variation`): the standard deviation of the object's area over the frames divided by its
    mean (0 for an object of constant size);
  - object-coverage CV (`coverage_variation`): the same for the object's sub-pixel area, the sum over the mask grown
    by `COVERAGE_MARGIN` pixels of each pixel's coverage (its brightness above the frame's background, over the
    video's peak above it, clipped to [0, 1]). The mask's pixel count steps as an anti-aliased edge crosses half
    brightness, so a rigid object gliding across the pixel grid has an area CV of up to 0.06 at 64x64 (the ground
    truth of `benchmarks/evaluate_default_model.py --grid`); its summed coverage by about 0.015 at most. Blur keeps
    the summed coverage too, so this measures size and brightness, not edge sharpness;
  - centroid-path jitter (`centroid_jitter`): the root mean square, in pixels, of the distance of each frame's
    centroid from the least-squares line through the centroids (the same line that gives the direction): 0 for a
    straight path at constant speed, however fast;
  - VBench's temporal-flickering score (`flicker_score`, see `temporal_flickering_score`): 1 minus the mean absolute
    difference of consecutive uint8 frames over 255 (1 for a still video).

`score_videos` also gives each video's object size (`object_size`): the half extent of the prompt's shape whose area is
the object's median summed coverage, over the frame's shorter side. The moving-shapes worlds draw it from
`OBJECT_HALF_EXTENT_RANGE` (0.12 to 0.17 at every frame size and aspect ratio), and this reads their videos to within
a percent; `object_size_in_range` says whether it is in that range, widened by half a pixel each way.

`score_videos(..., images=...)` adds, for image-to-video, the PSNR of the generated first frame against the given
image.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .moving_shapes import (
    ALL_COMBINATIONS,
    COLORS,
    DIRECTIONS,
    HELDOUT_COMBINATIONS,
    OBJECT_HALF_EXTENT_RANGE,
    make_caption,
    parse_caption,
    render_moving_shape,
)


# Taper below which an object is a triangle (1/3) rather than a circle or a square (1), and fill ratio (object area
# over bounding-box area) boundary between circle (pi / 4) and square (1).
TRIANGLE_TAPER_BOUNDARY = 0.6
CIRCLE_SQUARE_FILL_BOUNDARY = 0.89
# pixels the object's mask is grown by (4-neighbour steps) to take in its anti-aliased or blurred edge for
# `coverage_variation`
COVERAGE_MARGIN = 2
ATTRIBUTES = ("color", "shape", "direction")
# per-video measures averaged over a split; `first_frame_psnr` only for image-to-video
MEASURES = ("aligned_iou", "area_variation", "coverage_variation", "centroid_jitter", "flicker_score", "presence")
# area of each shape in units of its half extent squared (`moving_shapes._rasterize`: the triangle's base and height
# are the bounding square's side)
SHAPE_AREAS = {"circle": np.pi, "square": 4.0, "triangle": 2.0}
# dataset seed of the first frames `evaluate_image_to_video` conditions on: training uses seed 0 (`--dataset_seed`)
IMAGE_TO_VIDEO_DATASET_SEED = 1000


@dataclass
class VideoAnalysis:
    """
    What the image processing found in one video.

    Args:
        color (`str` or `None`): the nearest colour of `COLORS`, `None` when no object was found.
        shape (`str` or `None`): `"circle"`, `"square"` or `"triangle"`, `None` when no object was found.
        direction (`str`): one of `DIRECTIONS`, or `"static"` when the object (or none) barely moves.
        fill_ratio (`float`): median over frames of the object's area over its bounding box's area.
        taper (`float`): median over frames of the object's mean row width in its top half over its bottom half.
        displacement (`tuple[float, float]`): fitted centroid motion `(dx, dy)` over the clip, in pixels.
        presence (`float`): fraction of frames in which an object was found.
        aligned_iou (`float`): mean IoU of consecutive masks after centroid alignment.
        area_variation (`float`): object-area CV, the standard deviation of the object's area over its mean.
        centroid_jitter (`float`): RMS distance in pixels of the centroids from their least-squares line.
        flicker_score (`float`): VBench's temporal-flickering score, see `temporal_flickering_score`.
        coverage_variation (`float`): object-coverage CV, the same for the object's summed sub-pixel coverage (see
            `object_coverage`).
        coverages (`tuple[float, ...]`): that coverage in each frame, in pixels (0 where no object was found).
    """

    color: str | None
    shape: str | None
    direction: str
    fill_ratio: float
    taper: float
    displacement: tuple[float, float]
    presence: float
    aligned_iou: float
    area_variation: float
    centroid_jitter: float
    flicker_score: float
    coverage_variation: float
    coverages: tuple[float, ...]


def _to_float_frames(frames) -> np.ndarray:
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().float().numpy()
    elif isinstance(frames, (list, tuple)):
        frames = np.stack([np.asarray(frame) for frame in frames])
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"`frames` must be laid out [num_frames, height, width, 3], but has shape {frames.shape}.")
    if frames.dtype == np.uint8:
        return frames.astype(np.float32) / 255.0
    if not np.issubdtype(frames.dtype, np.floating):
        raise TypeError(f"`frames` must be uint8 in [0, 255] or float in [0, 1], but has dtype {frames.dtype}.")
    return np.clip(frames.astype(np.float32), 0.0, 1.0)


def _largest_components(masks: np.ndarray) -> np.ndarray:
    """Keeps, in each frame of `masks` `[F, H, W]`, only the largest 4-connected region."""
    num_frames, height, width = masks.shape
    # every pixel starts with its own label; labels spread to 4-neighbours by max until they settle, so each region
    # ends up labelled with the largest label it contains
    labels = np.where(masks, np.arange(1, masks.size + 1).reshape(masks.shape), 0)
    while True:
        spread = labels.copy()
        spread[:, 1:, :] = np.maximum(spread[:, 1:, :], labels[:, :-1, :])
        spread[:, :-1, :] = np.maximum(spread[:, :-1, :], labels[:, 1:, :])
        spread[:, :, 1:] = np.maximum(spread[:, :, 1:], labels[:, :, :-1])
        spread[:, :, :-1] = np.maximum(spread[:, :, :-1], labels[:, :, 1:])
        spread = np.where(masks, spread, 0)
        if np.array_equal(spread, labels):
            break
        labels = spread
    largest = np.zeros_like(masks)
    for frame_index in range(num_frames):
        frame_labels = labels[frame_index][masks[frame_index]]
        if frame_labels.size == 0:
            continue
        values, counts = np.unique(frame_labels, return_counts=True)
        largest[frame_index] = labels[frame_index] == values[np.argmax(counts)]
    return largest


def segment_object(frames, min_brightness: float = 0.15) -> np.ndarray:
    """
    Returns the per-frame object masks `[F, H, W]` (bool) of a video.

    Args:
        frames (`np.ndarray`, `torch.Tensor` or list of images):
            The video `[F, H, W, 3]`, uint8 in [0, 255] or float in [0, 1].
        min_brightness (`float`, *optional*, defaults to 0.15):
            The brightness threshold is half of the video's peak brightness, but never below this value, so an
            all-dark video has no object rather than a noise object.
    """
    frames = _to_float_frames(frames)
    brightness = frames.max(axis=-1)  # (F, H, W)
    peak = float(np.quantile(brightness, 0.999))
    threshold = max(min_brightness, 0.5 * peak)
    return _largest_components(brightness >= threshold)


def _classify_color(frames: np.ndarray, masks: np.ndarray) -> str | None:
    if not masks.any():
        return None
    mean_color = frames[masks].mean(axis=0)  # (3,)
    chromaticity = mean_color / max(float(mean_color.max()), 1e-6)
    names = list(COLORS)
    prototypes = np.asarray([COLORS[name] for name in names])
    prototypes = prototypes / prototypes.max(axis=1, keepdims=True)
    return names[int(np.argmin(((prototypes - chromaticity) ** 2).sum(axis=1)))]


def to_uint8_frames(frames) -> np.ndarray:
    """The video `[F, H, W, 3]` as uint8: float frames in [0, 1] are scaled by 255 and rounded, as videos are saved."""
    if isinstance(frames, np.ndarray) and frames.dtype == np.uint8:
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(
                f"`frames` must be laid out [num_frames, height, width, 3], but has shape {frames.shape}."
            )
        return frames
    return (_to_float_frames(frames) * 255.0).round().astype(np.uint8)


def temporal_flickering_score(frames) -> float:
    """
    VBench's temporal-flickering score of one video, computed as VBench's `temporal_flickering.py` does: the mean
    absolute difference of each pair of consecutive frames (over all pixels and channels, uint8 values taken as
    floats), averaged over all pairs of the clip, as `(255 - mean) / 255`. 1 for a still video, 0 for one that
    alternates between black and white. (VBench reads the frames back from an mp4 file; here they are the frames themselves.)

    Args:
        frames (`np.ndarray`, `torch.Tensor` or list of images):
            The video `[F, H, W, 3]` with at least 2 frames, uint8 in [0, 255] or float in [0, 1] (converted with
            `to_uint8_frames`).
    """
    frames = to_uint8_frames(frames).astype(np.float32)
    if frames.shape[0] < 2:
        raise ValueError(f"`frames` must hold at least 2 frames for a flickering score, but holds {frames.shape[0]}.")
    differences = np.abs(frames[1:] - frames[:-1]).mean(axis=(1, 2, 3))  # (F - 1,)
    return float((255.0 - differences.mean()) / 255.0)


def centroid_path_jitter(frame_indices: np.ndarray, centroids_x: np.ndarray, centroids_y: np.ndarray) -> float:
    """
    Root mean square, in pixels, of the distance between each centroid and the least-squares line fitted through the
    centroids against the frame index (one line per axis): 0 for a straight path at constant speed; for a path that
    steps `a` pixels sideways every other frame it is about `a / 2`.

    Args:
        frame_indices (`np.ndarray`): the frames `[N]` where an object was found.
        centroids_x (`np.ndarray`): the object's centroid column `[N]` in those frames, in pixels.
        centroids_y (`np.ndarray`): the object's centroid row `[N]` in those frames, in pixels.
    """
    if len(frame_indices) < 3:
        return 0.0  # a line passes through any two points
    residuals = []
    for centroids in (centroids_x, centroids_y):
        line = np.polyval(np.polyfit(frame_indices, centroids, 1), frame_indices)
        residuals.append(centroids - line)
    return float(np.sqrt(np.mean(residuals[0] ** 2 + residuals[1] ** 2)))


def first_frame_psnr(frames, image) -> float:
    """
    PSNR in dB of a video's first frame against an image, both scaled to [0, 1] (uint8 divided by 255).

    Args:
        frames (`np.ndarray`, `torch.Tensor` or list of images): the video `[F, H, W, 3]`.
        image (`np.ndarray`): the image `[H, W, 3]`, uint8 in [0, 255] or float in [0, 1].
    """
    first = _to_float_frames(frames)[0]
    reference = _to_float_frames(np.asarray(image)[None])[0]
    if first.shape != reference.shape:
        raise ValueError(f"`image` has shape {reference.shape}, but the video's frames have shape {first.shape}.")
    mse = float(np.mean((first.astype(np.float64) - reference) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))


def _fill_ratio(mask: np.ndarray) -> float:
    rows = np.flatnonzero(mask.any(axis=1))
    columns = np.flatnonzero(mask.any(axis=0))
    box_area = (rows[-1] - rows[0] + 1) * (columns[-1] - columns[0] + 1)
    return float(mask.sum() / box_area)


def _taper(mask: np.ndarray) -> float:
    """Mean row width of the top half of the object over that of its bottom half (upright triangle 1/3, else 1)."""
    rows = np.flatnonzero(mask.any(axis=1))
    widths = mask[rows[0] : rows[-1] + 1].sum(axis=1).astype(np.float64)
    half = widths.size / 2
    top = widths[: int(np.floor(half))]
    bottom = widths[int(np.ceil(half)) :]
    if top.size == 0 or bottom.size == 0:
        return 1.0
    return float(top.mean() / bottom.mean())


def _shift_mask(mask: np.ndarray, shift_y: int, shift_x: int) -> np.ndarray:
    """Translates a mask by whole pixels, filling with False (no wrap-around)."""
    height, width = mask.shape
    shifted = np.zeros_like(mask)
    source_y = slice(max(0, -shift_y), min(height, height - shift_y))
    source_x = slice(max(0, -shift_x), min(width, width - shift_x))
    target_y = slice(max(0, shift_y), min(height, height + shift_y))
    target_x = slice(max(0, shift_x), min(width, width + shift_x))
    shifted[target_y, target_x] = mask[source_y, source_x]
    return shifted


def _grow_masks(masks: np.ndarray, steps: int) -> np.ndarray:
    """Grows masks `[F, H, W]` by `steps` 4-neighbour steps (a diamond of radius `steps`), without wrap-around."""
    grown = masks.copy()
    for _ in range(steps):
        previous = grown.copy()
        grown[:, 1:, :] |= previous[:, :-1, :]
        grown[:, :-1, :] |= previous[:, 1:, :]
        grown[:, :, 1:] |= previous[:, :, :-1]
        grown[:, :, :-1] |= previous[:, :, 1:]
    return grown


def object_coverage(frames, masks: np.ndarray, margin: int = COVERAGE_MARGIN) -> np.ndarray:
    """
    The object's sub-pixel area in each frame `[F]`, in pixels: the sum, over its mask grown by `margin` pixels, of
    each pixel's coverage `(brightness - background) / (peak - background)` clipped to [0, 1]. Brightness is the
    largest channel, the peak is that of `segment_object` (the video's 99.9th percentile) and the background is the
    frame's median brightness outside the grown mask. An anti-aliased object on a plain background (each pixel its
    colour times the fraction of it the object covers) gets its exact area, wherever it sits on the pixel grid.

    Args:
        frames (`np.ndarray`, `torch.Tensor` or list of images):
            The video `[F, H, W, 3]`, uint8 in [0, 255] or float in [0, 1].
        masks (`np.ndarray`): the object masks `[F, H, W]` of `segment_object`; a frame without one has coverage 0.
        margin (`int`, *optional*, defaults to `COVERAGE_MARGIN`): pixels the mask is grown by.
    """
    brightness = _to_float_frames(frames).max(axis=-1)  # (F, H, W)
    if masks.shape != brightness.shape:
        raise ValueError(f"`masks` has shape {masks.shape}, but the frames are {brightness.shape[:3]}.")
    peak = float(np.quantile(brightness, 0.999))
    grown = _grow_masks(masks.astype(bool), margin)
    coverages = np.zeros(len(brightness))
    for index, (frame, region) in enumerate(zip(brightness, grown)):
        if not masks[index].any():
            continue
        background = float(np.median(frame[~region])) if (~region).any() else 0.0
        if peak <= background:
            continue
        coverages[index] = np.clip((frame[region] - background) / (peak - background), 0.0, 1.0).sum()
    return coverages


def object_size(coverages, shape: str, shorter_side: int) -> float:
    """
    The half extent, over the frame's shorter side, of the `shape` whose area is the median of the object's per-frame
    summed `coverages` (frames without an object left out; 0 when there is none): the moving-shapes worlds' size
    draw, read back.

    Args:
        coverages (sequence of `float`): the object's coverage in each frame (`VideoAnalysis.coverages`), in pixels.
        shape (`str`): one of `SHAPE_AREAS`, the shape the prompt asks for.
        shorter_side (`int`): the frame's shorter side in pixels.
    """
    if shape not in SHAPE_AREAS:
        raise ValueError(f"`shape` must be one of {list(SHAPE_AREAS)}, but is {shape!r}.")
    present = [coverage for coverage in coverages if coverage > 0]
    if not present:
        return 0.0
    return float(np.sqrt(np.median(present) / SHAPE_AREAS[shape]) / shorter_side)


def analyze_video(frames, min_travel: float = 0.1, min_brightness: float = 0.15) -> VideoAnalysis:
    """
    Finds the colour, shape, direction and frame-to-frame stability of the object in a video.

    Args:
        frames (`np.ndarray`, `torch.Tensor` or list of images):
            The video `[F, H, W, 3]`, uint8 in [0, 255] or float in [0, 1].
        min_travel (`float`, *optional*, defaults to 0.1):
            Smallest fitted displacement, as a fraction of the frame's extent along it, that counts as motion.
        min_brightness (`float`, *optional*, defaults to 0.15):
            See `segment_object`.
    """
    frames = _to_float_frames(frames)
    num_frames, height, width, _ = frames.shape
    masks = segment_object(frames, min_brightness=min_brightness)  # (F, H, W)
    areas = masks.sum(axis=(1, 2))  # (F,)
    present = np.flatnonzero(areas > 0)
    flicker_score = temporal_flickering_score(frames) if num_frames >= 2 else 1.0
    if present.size == 0:
        return VideoAnalysis(
            None, None, "static", 0.0, 0.0, (0.0, 0.0), 0.0, 0.0, 0.0, 0.0, flicker_score, 0.0, (0.0,) * num_frames
        )

    # 1. colour and shape
    color = _classify_color(frames, masks)
    fill_ratio = float(np.median([_fill_ratio(masks[index]) for index in present]))
    taper = float(np.median([_taper(masks[index]) for index in present]))
    if taper < TRIANGLE_TAPER_BOUNDARY:
        shape = "triangle"
    elif fill_ratio < CIRCLE_SQUARE_FILL_BOUNDARY:
        shape = "circle"
    else:
        shape = "square"

    # 2. direction: least-squares line through the centroids
    grid_y, grid_x = np.mgrid[0:height, 0:width]
    centroids_x = np.asarray([grid_x[masks[index]].mean() for index in present])
    centroids_y = np.asarray([grid_y[masks[index]].mean() for index in present])
    if present.size >= 2:
        slope_x = np.polyfit(present, centroids_x, 1)[0]
        slope_y = np.polyfit(present, centroids_y, 1)[0]
    else:
        slope_x = slope_y = 0.0
    displacement = (float(slope_x * (num_frames - 1)), float(slope_y * (num_frames - 1)))
    travel_x, travel_y = abs(displacement[0]) / width, abs(displacement[1]) / height
    if max(travel_x, travel_y) < min_travel:
        direction = "static"
    elif travel_x >= travel_y:
        direction = "right" if displacement[0] > 0 else "left"
    else:
        direction = "down" if displacement[1] > 0 else "up"

    # 3. stability: centroid-aligned IoU of consecutive masks, area CV, centroid-path jitter, presence
    ious = []
    for index in range(num_frames - 1):
        if areas[index] == 0 or areas[index + 1] == 0:
            ious.append(0.0)
            continue
        shift_y = int(round(grid_y[masks[index]].mean() - grid_y[masks[index + 1]].mean()))
        shift_x = int(round(grid_x[masks[index]].mean() - grid_x[masks[index + 1]].mean()))
        aligned = _shift_mask(masks[index + 1], shift_y, shift_x)
        union = np.logical_or(masks[index], aligned).sum()
        ious.append(float(np.logical_and(masks[index], aligned).sum() / union))
    aligned_iou = float(np.mean(ious)) if ious else 1.0
    area_variation = float(areas.std() / areas.mean())
    coverages = object_coverage(frames, masks)
    coverage_variation = float(coverages.std() / coverages.mean()) if coverages.mean() > 0 else 0.0
    centroid_jitter = centroid_path_jitter(present, centroids_x, centroids_y)
    presence = float(present.size / num_frames)
    return VideoAnalysis(
        color,
        shape,
        direction,
        fill_ratio,
        taper,
        displacement,
        presence,
        aligned_iou,
        area_variation,
        centroid_jitter,
        flicker_score,
        coverage_variation,
        tuple(float(coverage) for coverage in coverages),
    )


def analyze_long_video(frames, fps: int, min_travel: float = 0.1) -> dict:
    """
    Measures whether a long video keeps its prompt: `analyze_video` of the whole video, of its first second and of
    its last second (`fps` frames each), and the object's speed in each of those seconds.

    Args:
        frames (`np.ndarray`, `torch.Tensor` or list of images): The video `[F, H, W, 3]`, at least `2 * fps` frames.
        fps (`int`): Frames per second: the length of the first and last seconds, at least 2.
        min_travel (`float`, *optional*, defaults to 0.1): See `analyze_video` (for the whole video).

    Returns:
        `dict`: `whole`, `first_second` and `last_second` (`VideoAnalysis`), the speeds in pixels per frame
        `speed_first_second` and `speed_last_second` (the length of each second's fitted displacement over its
        frames), and `speed_ratio` (last over first; `nan` when the first second is still).
    """
    frames = _to_float_frames(frames)
    if fps < 2 or len(frames) < 2 * fps:
        raise ValueError(
            f"`fps` must be >= 2 and the video at least `2 * fps` frames long, got {fps} and {len(frames)}."
        )
    # a second is short: any motion counts (the speed says how much)
    first, last = (analyze_video(part, min_travel=0.0) for part in (frames[:fps], frames[-fps:]))
    speeds = [float(np.hypot(*analysis.displacement)) / (fps - 1) for analysis in (first, last)]
    return {
        "whole": analyze_video(frames, min_travel=min_travel),
        "first_second": first,
        "last_second": last,
        "speed_first_second": speeds[0],
        "speed_last_second": speeds[1],
        "speed_ratio": speeds[1] / speeds[0] if speeds[0] > 0 else float("nan"),
    }


def _summarise(records: list[dict]) -> dict:
    if not records:
        return {"num_videos": 0}
    summary = {"num_videos": len(records)}
    for attribute in ATTRIBUTES:
        summary[attribute] = float(np.mean([record[attribute] for record in records]))
    summary["all_three"] = float(np.mean([all(record[attribute] for attribute in ATTRIBUTES) for record in records]))
    for measure in MEASURES + ("first_frame_psnr",):
        if measure in records[0]:
            summary[measure] = float(np.mean([record[measure] for record in records]))
    return summary


def _table_row(name: str, summary: dict, with_psnr: bool) -> str:
    if summary["num_videos"] == 0:
        return f"| {name} | 0 |" + " - |" * (10 if with_psnr else 9)
    row = (
        f"| {name} | {summary['num_videos']} | {100 * summary['color']:.1f}% | {100 * summary['shape']:.1f}% "
        f"| {100 * summary['direction']:.1f}% | {100 * summary['all_three']:.1f}% "
        f"| {summary['aligned_iou']:.3f} | {summary['area_variation']:.3f} | {summary['centroid_jitter']:.2f} "
        f"| {summary['flicker_score']:.4f} |"
    )
    if with_psnr:
        psnr = summary.get("first_frame_psnr")
        row += " - |" if psnr is None else f" {psnr:.1f} |"
    return row


def _table_header(first_column: str, with_psnr: bool) -> list[str]:
    header = (
        f"| {first_column} | videos | colour | shape | direction | all three | aligned IoU | area CV "
        "| centroid jitter (px) | flicker score |"
    )
    if with_psnr:
        header += " frame-0 PSNR (dB) |"
    return [header, "|---" * header.count(" |") + "|"]


def format_table(scores: dict) -> str:
    """
    Formats the result of `score_videos` (with `images`: and the first-frame PSNR) as a Markdown table:
    accuracies in percent, the means of the stability measures, one row per split.
    """
    with_psnr = "first_frame_psnr" in scores["all"]
    lines = _table_header("combinations", with_psnr)
    for split in ("seen", "heldout", "all"):
        lines.append(_table_row(split, scores[split], with_psnr))
    return "\n".join(lines)


def format_comparison_table(results: dict[str, dict], split: str = "all") -> str:
    """
    One Markdown table of several scored sets of videos, one row each, for one split: for instance
    `{"ground truth": ..., "VAE reconstruction": ..., "generated": ...}`, each a result of `score_videos`.
    """
    if split not in ("seen", "heldout", "all"):
        raise ValueError(f"`split` must be 'seen', 'heldout' or 'all', but is {split!r}.")
    with_psnr = any("first_frame_psnr" in scores[split] for scores in results.values())
    lines = _table_header(f"videos ({split} combinations)", with_psnr)
    for name, scores in results.items():
        lines.append(_table_row(name, scores[split], with_psnr))
    return "\n".join(lines)


def score_videos(
    samples: Iterable[tuple[str, object]],
    heldout_combinations: Sequence[tuple[str, str, str]] = HELDOUT_COMBINATIONS,
    print_table: bool = True,
    min_travel: float = 0.1,
    images: Sequence | None = None,
) -> dict:
    """
    Scores generated videos against their prompts.

    Args:
        samples (iterable of `(str, frames)`):
            Pairs of a prompt `a {color} {shape} moving {direction}` and the video generated for it, `[F, H, W, 3]`
            uint8 in [0, 255] or float in [0, 1].
        heldout_combinations (sequence of `(color, shape, direction)`, *optional*, defaults to `HELDOUT_COMBINATIONS`):
            Combinations reported apart as "heldout"; every other one counts as "seen".
        print_table (`bool`, *optional*, defaults to `True`):
            Whether to print `format_table` of the scores.
        min_travel (`float`, *optional*, defaults to 0.1):
            See `analyze_video`.
        images (sequence of `np.ndarray`, *optional*):
            Image-to-video: the image `[H, W, 3]` each video was generated from, in the order of `samples`; each
            record then has the `first_frame_psnr` of its video against it.

    Returns:
        `dict`: for each of `"seen"`, `"heldout"` and `"all"`: `num_videos`, the accuracies (in [0, 1]) `color`,
        `shape`, `direction` and `all_three`, and the means of `MEASURES` (`aligned_iou`, `area_variation`,
        `coverage_variation`, `centroid_jitter`, `flicker_score`, `presence`, and `first_frame_psnr` with
        `images`); plus `"videos"`, the per-video records (prompt, split, what was found and whether each attribute
        matches, the measures and the `travel` in pixels, the `fill_ratio` that read the shape, the per-frame
        `coverages`, and `object_size` and `object_size_in_range`).
    """
    heldout = {tuple(combination) for combination in heldout_combinations}
    samples = list(samples)
    if images is not None and len(images) != len(samples):
        raise ValueError(f"`images` holds {len(images)} images, but there are {len(samples)} videos.")
    records = []
    for index, (prompt, frames) in enumerate(samples):
        expected = parse_caption(prompt)
        if expected is None:
            raise ValueError(
                f"Prompt {prompt!r} is not of the form 'a {{color}} {{shape}} moving {{direction}}' with color in "
                f"{list(COLORS)}, shape in circle/square/triangle and direction in {list(DIRECTIONS)}."
            )
        analysis = analyze_video(frames, min_travel=min_travel)
        found = (analysis.color, analysis.shape, analysis.direction)
        record = {"prompt": prompt, "split": "heldout" if expected in heldout else "seen"}
        for attribute, expected_value, found_value in zip(ATTRIBUTES, expected, found):
            record[f"found_{attribute}"] = found_value
            record[attribute] = expected_value == found_value
        for measure in MEASURES:
            record[measure] = getattr(analysis, measure)
        record["travel"] = float(np.hypot(*analysis.displacement))  # of the fitted path over the clip, in pixels
        record["fill_ratio"] = analysis.fill_ratio  # a square from CIRCLE_SQUARE_FILL_BOUNDARY up, else a circle
        record["coverages"] = list(analysis.coverages)  # per frame: how the size changes, not only how much
        shorter_side = min(np.shape(frames)[1:3])
        record["object_size"] = object_size(analysis.coverages, expected[1], shorter_side)
        low, high = OBJECT_HALF_EXTENT_RANGE
        slack = 0.5 / shorter_side  # half a pixel either way
        record["object_size_in_range"] = bool(low - slack <= record["object_size"] <= high + slack)
        if images is not None:
            record["first_frame_psnr"] = first_frame_psnr(frames, images[index])
        records.append(record)

    scores = {
        "seen": _summarise([record for record in records if record["split"] == "seen"]),
        "heldout": _summarise([record for record in records if record["split"] == "heldout"]),
        "all": _summarise(records),
        "videos": records,
    }
    if print_table:
        print(format_table(scores))
    return scores


def evaluate_pipeline(
    pipeline,
    combinations: Sequence[tuple[str, str, str]] | None = None,
    videos_per_combination: int = 2,
    batch_size: int = 16,
    seed: int = 0,
    print_table: bool = True,
    **call_kwargs,
) -> dict:
    """
    Generates videos of moving-shapes prompts with a text-to-video pipeline and scores them with `score_videos`.

    Args:
        pipeline (`VideoLatentPipeline` or any pipeline with the same call):
            Called with a list of prompts, `generator` and `output_type="np"`; it returns `.frames` `[B, F, H, W, 3]`.
        combinations (sequence of `(color, shape, direction)`, *optional*):
            The combinations to prompt; all 72 (seen and held-out) when not given.
        videos_per_combination (`int`, *optional*, defaults to 2):
            Videos generated per combination, each from its own noise.
        batch_size (`int`, *optional*, defaults to 16):
            Prompts per pipeline call.
        seed (`int`, *optional*, defaults to 0):
            Seed of the generator of the first call; call `i` uses `seed + i`, so results do not depend on the order
            of earlier calls.
        print_table (`bool`, *optional*, defaults to `True`):
            Whether to print the table of `format_table`.
        call_kwargs:
            Passed to the pipeline (`num_inference_steps`, `guidance_scale`, `num_frames`, `height`, `width`, ...).

    Returns:
        `dict`: what `score_videos` returns.
    """
    if videos_per_combination < 1 or batch_size < 1:
        raise ValueError(
            f"`videos_per_combination` and `batch_size` must be >= 1, got {videos_per_combination} and {batch_size}."
        )
    combinations = ALL_COMBINATIONS if combinations is None else combinations
    prompts = [make_caption(*combination) for combination in combinations for _ in range(videos_per_combination)]
    samples = []
    for call, start in enumerate(range(0, len(prompts), batch_size)):
        batch = prompts[start : start + batch_size]
        generator = torch.Generator("cpu").manual_seed(seed + call)
        frames = pipeline(batch, generator=generator, output_type="np", **call_kwargs).frames  # (B, F, H, W, 3)
        samples.extend(zip(batch, frames))
    return score_videos(samples, print_table=print_table)


def render_evaluation_videos(
    combinations: Sequence[tuple[str, str, str]] | None = None,
    videos_per_combination: int = 1,
    num_frames: int = 17,
    height: int = 64,
    width: int = 64,
    seed: int = IMAGE_TO_VIDEO_DATASET_SEED,
) -> list[tuple[str, np.ndarray]]:
    """
    Ground-truth moving-shapes videos, rendered as the dataset renders its items but with a dataset seed that training
    does not use (`IMAGE_TO_VIDEO_DATASET_SEED`; training's is 0): video `i` shows combination
    `combinations[i // videos_per_combination]` with a size and path drawn from `np.random.default_rng((seed, i))`.

    Returns:
        `list[tuple[str, np.ndarray]]`: pairs of a caption and its video `[F, H, W, 3]`, uint8 (as a saved video).
    """
    if videos_per_combination < 1:
        raise ValueError(f"`videos_per_combination` must be >= 1, but is {videos_per_combination}.")
    combinations = ALL_COMBINATIONS if combinations is None else combinations
    samples = []
    for index, combination in enumerate(c for c in combinations for _ in range(videos_per_combination)):
        generator = np.random.default_rng((seed, index))
        video = render_moving_shape(*combination, num_frames, height, width, generator=generator)
        samples.append((make_caption(*combination), to_uint8_frames(video)))
    return samples


def evaluate_image_to_video(
    pipeline,
    combinations: Sequence[tuple[str, str, str]] | None = None,
    videos_per_combination: int = 1,
    num_frames: int = 17,
    height: int = 64,
    width: int = 64,
    batch_size: int = 16,
    seed: int = 0,
    print_table: bool = True,
    **call_kwargs,
) -> dict:
    """
    Image-to-video evaluation: each prompt is generated from the first frame of a ground-truth video of its combination
    (`render_evaluation_videos`: frames training never saw), given as `image=`; `score_videos` scores the videos with
    these images: colour, shape, direction as the prompt says, the stability measures, and the PSNR of the generated
    first frame against the given image.

    Args:
        pipeline (`VideoLatentPipeline` or any pipeline with the same call):
            Called with a list of prompts, `image` (a list of uint8 arrays `[H, W, 3]`, one per prompt), `generator`
            and `output_type="np"`; it returns `.frames` `[B, F, H, W, 3]`.
        combinations (sequence of `(color, shape, direction)`, *optional*):
            The combinations to prompt; all 72 (seen and held-out) when not given.
        videos_per_combination (`int`, *optional*, defaults to 1):
            Videos per combination, each from the first frame of another ground-truth video.
        num_frames (`int`, *optional*, defaults to 17):
            Frames of the ground-truth and generated videos.
        height (`int`, *optional*, defaults to 64):
            Frame height of both.
        width (`int`, *optional*, defaults to 64):
            Frame width of both.
        batch_size (`int`, *optional*, defaults to 16):
            Prompts per pipeline call.
        seed (`int`, *optional*, defaults to 0):
            Seed of the generator of the first call (call `i` uses `seed + i`); the ground-truth videos use the
            dataset seed `IMAGE_TO_VIDEO_DATASET_SEED + seed`.
        print_table (`bool`, *optional*, defaults to `True`):
            Whether to print the table of `format_table`.
        call_kwargs:
            Passed to the pipeline (`num_inference_steps`, `guidance_scale`, ...).

    Returns:
        `dict`: what `score_videos` returns with `images`, plus `"ground_truth"`: the scores of the ground-truth
        videos themselves (the reference row).
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, but is {batch_size}.")
    references = render_evaluation_videos(
        combinations, videos_per_combination, num_frames, height, width, IMAGE_TO_VIDEO_DATASET_SEED + seed
    )
    images = [video[0] for _, video in references]  # (H, W, 3) uint8
    samples = []
    for call, start in enumerate(range(0, len(references), batch_size)):
        prompts = [prompt for prompt, _ in references[start : start + batch_size]]
        generator = torch.Generator("cpu").manual_seed(seed + call)
        frames = pipeline(
            prompts,
            image=images[start : start + batch_size],
            num_frames=num_frames,
            height=height,
            width=width,
            generator=generator,
            output_type="np",
            **call_kwargs,
        ).frames  # (B, F, H, W, 3)
        samples.extend(zip(prompts, frames))
    scores = score_videos(samples, print_table=print_table, images=images)
    scores["ground_truth"] = score_videos(references, print_table=False)
    return scores
