"""The synthetic "moving shapes" dataset: one coloured shape gliding over a black background, generated on the fly.

Every video shows one `shape` (circle, square or upright triangle) of one `color` that moves in a straight line,
at constant speed, in one `direction` (left, right, up or down), covering half of the frame along that axis over the
clip. Its caption is `a {color} {shape} moving {direction}`. The object's size, its start position and the position
across the direction of motion are drawn from a generator seeded with `(seed, index)`, so a dataset item is the same
video on every call, in every process and on every machine.

Of the 6 x 3 x 4 = 72 combinations, the 6 in `HELDOUT_COMBINATIONS` are never shown in training (`split="train"`):
each color, each shape and each direction still appears in training, and so does every pair of them (for instance
"red triangle" is trained moving left, right and down, but never up), so a model that generates the held-out
combinations correctly has learnt to compose the attributes rather than to recall whole captions.

The physical world (`render_physical_moving_shape`, and the dataset with `fps`, `speed_range` or `buckets`) gives the
three dials of a video a meaning. Lengths are in scene units, one unit being the frame's shorter side; times are in
seconds, frame `i` being at `i / fps`:
- the object's half-extent is drawn from `OBJECT_HALF_EXTENT_RANGE` (0.12 to 0.17 units) and its speed from
  `SPEED_RANGE` (0.15 to 0.45 units per second), so at a higher frame rate it moves less per frame;
- a clip of `num_frames` frames lasts `(num_frames - 1) / fps` seconds: a longer clip is a longer stretch of time;
  the object moves at its speed for all of it and stays inside the frame, so a speed that would leave the frame is
  lowered to the fastest that does not (with the largest object, 0.66 units over the clip along a square frame);
- a larger frame shows the same scene with more pixels (a unit is `min(height, width)` pixels), and a non-square
  frame shows more of the scene along its longer side (a 64 x 128 frame is 1 x 2 units);
- the frame rates `FPS_CHOICES` (4, 8, 12, 16 and 24) are those the dataset draws from when given several.
Every draw comes from the item's seeded generators, so an item is the same video on every call.
"""

import re
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset


# Pure, saturated colours (RGB in [0, 1]); purple is the X11 "purple" (160, 32, 240).
COLORS = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "white": (1.0, 1.0, 1.0),
    "purple": (160 / 255, 32 / 255, 240 / 255),
}
SHAPES = ("circle", "square", "triangle")
# Unit motion in image coordinates (x to the right, y downwards).
DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}

ALL_COMBINATIONS = tuple((color, shape, direction) for color in COLORS for shape in SHAPES for direction in DIRECTIONS)
# One combination per color; every shape twice; every (color, shape), (color, direction) and (shape, direction) pair
# of a held-out combination still occurs in the training split.
HELDOUT_COMBINATIONS = (
    ("red", "triangle", "up"),
    ("green", "circle", "left"),
    ("blue", "square", "down"),
    ("yellow", "triangle", "right"),
    ("white", "circle", "down"),
    ("purple", "square", "left"),
)
TRAIN_COMBINATIONS = tuple(combination for combination in ALL_COMBINATIONS if combination not in HELDOUT_COMBINATIONS)

# Every word a caption can contain, in a fixed order (used to build the default model's tokenizer).
VOCABULARY = ("a", "an", "moving", *COLORS, *SHAPES, *DIRECTIONS)

# The object's half-extent as a fraction of the frame's shorter side, and the distance it travels over the clip as a
# fraction of the frame's extent along the direction of motion.
OBJECT_HALF_EXTENT_RANGE = (0.12, 0.17)
TRAVEL_FRACTION = 0.5
# The physical world: speeds in scene units (frame's shorter sides) per second, and the frame rates it is shown at.
SPEED_RANGE = (0.15, 0.45)
FPS_CHOICES = (4.0, 8.0, 12.0, 16.0, 24.0)
# The frame rate the fixed-travel items stand for (the shipped model's 17-frame clips travel half the frame in 2 s).
DEFAULT_FPS = 8.0

_CAPTION_PATTERN = re.compile(r"^\s*an?\s+(\w+)\s+(\w+)\s+moving\s+(\w+)\s*[.!]?\s*$", re.IGNORECASE)


def make_caption(color: str, shape: str, direction: str) -> str:
    """Returns the caption `a {color} {shape} moving {direction}` of a combination."""
    return f"a {color} {shape} moving {direction}"


def parse_caption(caption: str) -> tuple[str, str, str] | None:
    """
    Reads `(color, shape, direction)` back from a caption of the form `a {color} {shape} moving {direction}` (case,
    surrounding spaces, "an" and a final period are tolerated); returns `None` when the caption does not have this form
    or names an unknown color, shape or direction.
    """
    match = _CAPTION_PATTERN.match(caption)
    if match is None:
        return None
    color, shape, direction = (word.lower() for word in match.groups())
    if color not in COLORS or shape not in SHAPES or direction not in DIRECTIONS:
        return None
    return color, shape, direction


def get_combinations(split: str = "train") -> tuple[tuple[str, str, str], ...]:
    """
    Returns the `(color, shape, direction)` combinations of a split.

    Args:
        split (`str`, *optional*, defaults to `"train"`):
            `"train"` (the 66 combinations used for training), `"heldout"` (the 6 in `HELDOUT_COMBINATIONS`) or `"all"`.
    """
    if split == "train":
        return TRAIN_COMBINATIONS
    if split == "heldout":
        return HELDOUT_COMBINATIONS
    if split == "all":
        return ALL_COMBINATIONS
    raise ValueError(f"`split` must be one of 'train', 'heldout' or 'all', but is {split!r}.")


def _check_attribute(name: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {list(allowed)}, but is {value!r}.")


def _rasterize(
    color: str,
    shape: str,
    center_x: np.ndarray,
    center_y: np.ndarray,
    half_extent: float,
    height: int,
    width: int,
    supersampling: int,
) -> np.ndarray:
    """Draws the object at the pixel centres `center_x`, `center_y` (one per frame); `[F, H, W, 3]` in [0, 1]."""
    num_frames = center_x.shape[0]
    # 1. inside-test on a supersampled grid of sample points (pixel i covers [i, i + 1))
    offsets = (np.arange(supersampling) + 0.5) / supersampling
    sample_y = (np.arange(height)[:, None] + offsets[None, :]).reshape(-1)  # (H * s,)
    sample_x = (np.arange(width)[:, None] + offsets[None, :]).reshape(-1)  # (W * s,)
    relative_x = sample_x[None, None, :] - center_x[:, None, None]  # (F, 1, W * s)
    relative_y = sample_y[None, :, None] - center_y[:, None, None]  # (F, H * s, 1)
    if shape == "circle":
        inside = relative_x**2 + relative_y**2 <= half_extent**2
    elif shape == "square":
        inside = (np.abs(relative_x) <= half_extent) & (np.abs(relative_y) <= half_extent)
    else:
        # upright isosceles triangle: apex at the top centre, base along the bottom edge of the bounding square
        depth_below_apex = relative_y + half_extent
        inside = (depth_below_apex >= 0) & (relative_y <= half_extent) & (np.abs(relative_x) <= depth_below_apex / 2)
    inside = np.broadcast_to(inside, (num_frames, height * supersampling, width * supersampling))

    # 2. box-filter down to pixel coverage, then colour
    coverage = inside.reshape(num_frames, height, supersampling, width, supersampling).mean(axis=(2, 4))  # (F, H, W)
    video = coverage[..., None] * np.asarray(COLORS[color])[None, None, None, :]  # (F, H, W, 3)
    return video.astype(np.float32)


def render_moving_shape(
    color: str,
    shape: str,
    direction: str,
    num_frames: int = 17,
    height: int = 64,
    width: int = 64,
    generator: np.random.Generator | None = None,
    supersampling: int = 4,
    travel_fraction: float = TRAVEL_FRACTION,
) -> np.ndarray:
    """
    Renders one video of a shape moving over a black background.

    Args:
        color (`str`):
            One of `COLORS`.
        shape (`str`):
            One of `SHAPES`.
        direction (`str`):
            One of `DIRECTIONS`.
        num_frames (`int`, *optional*, defaults to 17):
            Number of frames; the object moves by the same amount between any two consecutive frames.
        height (`int`, *optional*, defaults to 64):
            Frame height in pixels.
        width (`int`, *optional*, defaults to 64):
            Frame width in pixels.
        generator (`np.random.Generator`, *optional*):
            Draws the object's size and start position; a fresh unseeded generator when not given.
        supersampling (`int`, *optional*, defaults to 4):
            Samples per pixel along each axis, for anti-aliased edges and sub-pixel motion.
        travel_fraction (`float`, *optional*, defaults to `TRAVEL_FRACTION`):
            Distance travelled over the clip, as a fraction of the frame's extent along the direction of motion; at
            most `1 - 2 * 0.17` (the largest object must stay inside the frame).

    Returns:
        `np.ndarray`: the video, float32 in [0, 1], laid out `[num_frames, height, width, 3]`.
    """
    _check_attribute("color", color, COLORS)
    _check_attribute("shape", shape, SHAPES)
    _check_attribute("direction", direction, DIRECTIONS)
    _check_size(num_frames, height, width)
    max_travel_fraction = 1.0 - 2.0 * OBJECT_HALF_EXTENT_RANGE[1]
    if not 0.0 <= travel_fraction <= max_travel_fraction:
        raise ValueError(f"`travel_fraction` must be in [0, {max_travel_fraction:.2f}], but is {travel_fraction!r}.")
    generator = generator if generator is not None else np.random.default_rng()

    # 1. draw the size, the path along the direction of motion and the position across it
    half_extent = generator.uniform(*OBJECT_HALF_EXTENT_RANGE) * min(height, width)
    step_x, step_y = DIRECTIONS[direction]
    along_extent = width if step_x != 0 else height
    across_extent = height if step_x != 0 else width
    travel = travel_fraction * along_extent
    path_start = generator.uniform(half_extent, along_extent - half_extent - travel)
    across = generator.uniform(half_extent, across_extent - half_extent)
    progress = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
    along = path_start + travel * progress
    # moving left or up runs the path backwards
    if step_x + step_y < 0:
        along = along_extent - along
    center_x = along if step_x != 0 else np.full(num_frames, across)
    center_y = np.full(num_frames, across) if step_x != 0 else along

    return _rasterize(color, shape, center_x, center_y, half_extent, height, width, supersampling)


def render_physical_moving_shape(
    color: str,
    shape: str,
    direction: str,
    num_frames: int = 17,
    height: int = 64,
    width: int = 64,
    fps: float = DEFAULT_FPS,
    generator: np.random.Generator | None = None,
    speed_range: tuple[float, float] = SPEED_RANGE,
    supersampling: int = 4,
    path_num_frames: int | None = None,
) -> np.ndarray:
    """
    Renders one video of the physical world (see the module's docstring): the object moves at a speed in scene units
    (frame's shorter sides) per second, frame `i` shows it at time `i / fps`, and the frame shows `height / min(height,
    width)` x `width / min(height, width)` units of the scene.

    The same generator state gives the same scene at every frame size of one aspect ratio (only sampled with more
    pixels), and, for one clip duration `(num_frames - 1) / fps`, the same path at every frame rate.

    Args:
        color (`str`):
            One of `COLORS`.
        shape (`str`):
            One of `SHAPES`.
        direction (`str`):
            One of `DIRECTIONS`.
        num_frames (`int`, *optional*, defaults to 17):
            Number of frames.
        height (`int`, *optional*, defaults to 64):
            Frame height in pixels.
        width (`int`, *optional*, defaults to 64):
            Frame width in pixels.
        fps (`float`, *optional*, defaults to `DEFAULT_FPS`):
            Frames per second: frame `i` is at `i / fps` seconds.
        generator (`np.random.Generator`, *optional*):
            Draws the object's size, speed and position (four uniform draws); a fresh unseeded one when not given.
        speed_range (`tuple[float, float]`, *optional*, defaults to `SPEED_RANGE`):
            Range of the speed in units per second; its top is lowered to the fastest speed that keeps the object
            inside the frame for the whole clip (and the bottom with it when the top falls below it).
        supersampling (`int`, *optional*, defaults to 4):
            Samples per pixel along each axis, for anti-aliased edges and sub-pixel motion.
        path_num_frames (`int`, *optional*):
            Draws the path of a clip of this many frames (at least `num_frames`) and renders its first `num_frames`:
            the same frames as the longer clip's, from the same generator state. A long clip at a slow frame rate
            starts near the frame's edge (its path crosses most of the frame), so its first frame is a still placed
            as image-to-video's long clips place theirs. Defaults to `num_frames`.

    Returns:
        `np.ndarray`: the video, float32 in [0, 1], laid out `[num_frames, height, width, 3]`.
    """
    _check_attribute("color", color, COLORS)
    _check_attribute("shape", shape, SHAPES)
    _check_attribute("direction", direction, DIRECTIONS)
    _check_size(num_frames, height, width)
    if not isinstance(fps, (int, float)) or not fps > 0:
        raise ValueError(f"`fps` must be a positive number, but is {fps!r}.")
    _check_speed_range(speed_range)
    if path_num_frames is None:
        path_num_frames = num_frames
    elif isinstance(path_num_frames, bool) or not isinstance(path_num_frames, int) or path_num_frames < num_frames:
        raise ValueError(
            f"`path_num_frames` must be an integer >= `num_frames` ({num_frames}), but is {path_num_frames!r}."
        )
    generator = generator if generator is not None else np.random.default_rng()

    # 1. the scene in units (the frame's shorter side is one unit) and seconds
    pixels_per_unit = min(height, width)
    step_x, step_y = DIRECTIONS[direction]
    along_extent = (width if step_x != 0 else height) / pixels_per_unit
    across_extent = (height if step_x != 0 else width) / pixels_per_unit
    half_extent = generator.uniform(*OBJECT_HALF_EXTENT_RANGE)
    duration = (path_num_frames - 1) / fps
    room = along_extent - 2 * half_extent
    fastest = speed_range[1] if duration == 0 else min(speed_range[1], room / duration)
    speed = min(speed_range[0], fastest) + generator.uniform() * (fastest - min(speed_range[0], fastest))
    travel = speed * duration
    path_start = half_extent + generator.uniform() * (room - travel)
    across = half_extent + generator.uniform() * (across_extent - 2 * half_extent)
    along = path_start + speed * np.arange(num_frames) / fps  # (F,)
    # moving left or up runs the path backwards
    if step_x + step_y < 0:
        along = along_extent - along

    # 2. to pixels
    along, across, half_extent = along * pixels_per_unit, across * pixels_per_unit, half_extent * pixels_per_unit
    center_x = along if step_x != 0 else np.full(num_frames, across)
    center_y = np.full(num_frames, across) if step_x != 0 else along
    return _rasterize(color, shape, center_x, center_y, half_extent, height, width, supersampling)


def _check_size(num_frames: int, height: int, width: int) -> None:
    for name, value, minimum in (("num_frames", num_frames, 1), ("height", height, 8), ("width", width, 8)):
        if not isinstance(value, int) or value < minimum:
            raise ValueError(f"`{name}` must be an integer >= {minimum}, but is {value!r}.")


def _check_speed_range(speed_range: tuple[float, float]) -> None:
    if len(speed_range) != 2 or not 0 <= speed_range[0] <= speed_range[1]:
        raise ValueError(f"`speed_range` must be (low, high) with 0 <= low <= high, but is {speed_range!r}.")


class MovingShapesDataset(Dataset):
    """
    Seeded, generated-on-the-fly videos of one coloured shape moving over a black background, with captions.

    Item `index` shows the combination `combinations[index % len(combinations)]` of its split (so every combination
    is equally frequent) with a size and path drawn from `np.random.default_rng((seed, index))`.

    By default every item is a fixed-travel clip of `num_frames` x `height` x `width` (it crosses `TRAVEL_FRACTION` of
    the frame, whatever its length). With `fps`, `speed_range` or `buckets`, items come from the physical world of
    `render_physical_moving_shape` instead: each is rendered at its bucket's size and at its frame rate.

    Args:
        split (`str`, *optional*, defaults to `"train"`):
            `"train"`, `"heldout"` or `"all"`, see `get_combinations`.
        num_videos (`int`, *optional*):
            Length of the dataset; defaults to 16 videos per combination of the split.
        num_frames (`int`, *optional*, defaults to 17):
            Frames per video (without `buckets`).
        height (`int`, *optional*, defaults to 64):
            Frame height in pixels (without `buckets`).
        width (`int`, *optional*, defaults to 64):
            Frame width in pixels (without `buckets`).
        seed (`int`, *optional*, defaults to 0):
            Seed of the per-item generators.
        travel_fraction_range (`tuple[float, float]`, *optional*):
            Fixed-travel clips only: each item's travel over the clip (so its speed) is drawn uniformly from this
            range, with a generator of its own, so the item's other random draws stay those of the fixed-travel
            dataset; the default travel is `TRAVEL_FRACTION`.
        buckets (`list[tuple[int, int, int]]`, *optional*):
            Physical world: the `(num_frames, height, width)` sizes the items are rendered at; item `index`, of combination `c`
            and round `k` (`index = k * len(combinations) + c`), has bucket `buckets[(c + k) % len(buckets)]`: every
            bucket gets items from the first ones on, and shows every combination equally often over
            `len(buckets)` rounds. Default: the one size `(num_frames, height, width)`.
        fps (`float` or `Sequence[float]`, *optional*):
            Physical world: the frame rate of the items, or several, one drawn per item with a generator of its own.
            Defaults to `DEFAULT_FPS` when the physical world is asked for by `speed_range` or `buckets`.
        speed_range (`tuple[float, float]`, *optional*):
            Physical world: the speeds in frame's shorter sides per second; defaults to `SPEED_RANGE`.
        single_frame_clip_lengths (`Sequence[int]`, *optional*):
            Physical world: each 1-frame item is the first frame of a clip of one of these frame counts (one drawn per
            item, with a generator of its own) at the item's frame rate, placed where that clip starts (see
            `render_physical_moving_shape`'s `path_num_frames`): long clips start at the frame's edge, where a 1-frame
            item drawn on its own seldom lies. Default: 1-frame items are stills placed anywhere they fit.

    Items are dictionaries with `pixel_values` (float32 in [-1, 1], `[3, num_frames, height, width]` at the item's
    bucket), `text` (the caption), `fps` (the frame rate the frames are spaced at; `DEFAULT_FPS` for fixed-travel
    clips), `foreground` (the object's coverage of each pixel, float32 in [0, 1], `[num_frames, height, width]`) and the
    `color`, `shape` and `direction` it shows. `item_buckets` lists each item's bucket.
    """

    def __init__(
        self,
        split: str = "train",
        num_videos: int | None = None,
        num_frames: int = 17,
        height: int = 64,
        width: int = 64,
        seed: int = 0,
        travel_fraction_range: tuple[float, float] | None = None,
        buckets: list[tuple[int, int, int]] | None = None,
        fps: float | Sequence[float] | None = None,
        speed_range: tuple[float, float] | None = None,
        single_frame_clip_lengths: Sequence[int] | None = None,
    ):
        self.combinations = get_combinations(split)
        if num_videos is None:
            num_videos = 16 * len(self.combinations)
        if not isinstance(num_videos, int) or num_videos < 1:
            raise ValueError(f"`num_videos` must be a positive integer, but is {num_videos!r}.")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"`seed` must be a non-negative integer, but is {seed!r}.")
        # validates num_frames / height / width once, up front
        _check_size(num_frames, height, width)
        self.split = split
        self.num_videos = num_videos
        self.num_frames = num_frames
        self.height = height
        self.width = width
        self.seed = seed
        self.physical = fps is not None or speed_range is not None or buckets is not None
        if single_frame_clip_lengths is not None:
            if not self.physical:
                raise ValueError(
                    "`single_frame_clip_lengths` places 1-frame items of the physical world; pass `fps`, "
                    "`speed_range` or `buckets` with it."
                )
            single_frame_clip_lengths = tuple(single_frame_clip_lengths)
            if not single_frame_clip_lengths or not all(
                isinstance(length, int) and not isinstance(length, bool) and length >= 1
                for length in single_frame_clip_lengths
            ):
                raise ValueError(
                    f"`single_frame_clip_lengths` must be a non-empty list of frame counts >= 1, but is "
                    f"{single_frame_clip_lengths!r}."
                )
        self.single_frame_clip_lengths = single_frame_clip_lengths
        if travel_fraction_range is not None:
            if self.physical:
                raise ValueError(
                    "`travel_fraction_range` sets the travel of fixed-travel clips; the physical world (`fps`, "
                    "`speed_range`, `buckets`) draws speeds from `speed_range` instead."
                )
            low, high = travel_fraction_range
            if not low <= high:
                raise ValueError(
                    f"`travel_fraction_range` must be (low, high) with low <= high, got {travel_fraction_range}."
                )
            # validates the range's ends up front
            for travel_fraction in (low, high):
                render_moving_shape(*self.combinations[0], num_frames=2, travel_fraction=travel_fraction)
        self.travel_fraction_range = travel_fraction_range

        # the physical world
        if buckets is None:
            buckets = [(num_frames, height, width)]
        buckets = [tuple(bucket) for bucket in buckets]
        if not buckets:
            raise ValueError("`buckets` must hold at least one (num_frames, height, width) bucket, but is empty.")
        for bucket in buckets:
            if len(bucket) != 3:
                raise ValueError(f"`buckets` must hold (num_frames, height, width) triples, but holds {bucket!r}.")
            _check_size(*bucket)
        fps = DEFAULT_FPS if fps is None else fps
        fps_choices = (fps,) if isinstance(fps, (int, float)) else tuple(fps)
        if not fps_choices or not all(isinstance(rate, (int, float)) and rate > 0 for rate in fps_choices):
            raise ValueError(f"`fps` must be a positive number or a non-empty list of them, but is {fps!r}.")
        self.fps_choices = tuple(float(rate) for rate in fps_choices)
        self.speed_range = SPEED_RANGE if speed_range is None else tuple(speed_range)
        _check_speed_range(self.speed_range)
        self.buckets = buckets
        self.item_buckets = [
            buckets[(index % len(self.combinations) + index // len(self.combinations)) % len(buckets)]
            for index in range(self.num_videos)
        ]

    def __len__(self) -> int:
        return self.num_videos

    def item_fps(self, index: int) -> float:
        """The frame rate of item `index` (drawn from `fps_choices` with a generator of its own)."""
        if len(self.fps_choices) == 1:
            return self.fps_choices[0]
        return self.fps_choices[int(np.random.default_rng((self.seed, index, 2)).integers(len(self.fps_choices)))]

    def item_path_num_frames(self, index: int) -> int:
        """The frame count of the clip whose path item `index` follows: its own, or for a 1-frame item with
        `single_frame_clip_lengths`, one of them drawn with a generator of its own."""
        num_frames = self.item_buckets[index][0]
        lengths = self.single_frame_clip_lengths
        if num_frames != 1 or lengths is None:
            return num_frames
        return lengths[int(np.random.default_rng((self.seed, index, 3)).integers(len(lengths)))]

    def __getitem__(self, index: int) -> dict:
        if not -self.num_videos <= index < self.num_videos:
            raise IndexError(f"index {index} is out of range for a dataset of {self.num_videos} videos.")
        index = index % self.num_videos
        color, shape, direction = self.combinations[index % len(self.combinations)]
        generator = np.random.default_rng((self.seed, index))
        if self.physical:
            fps = self.item_fps(index)
            num_frames, height, width = self.item_buckets[index]
            video = render_physical_moving_shape(
                color,
                shape,
                direction,
                num_frames,
                height,
                width,
                fps,
                generator,
                self.speed_range,
                path_num_frames=self.item_path_num_frames(index),
            )  # (F, H, W, 3) in [0, 1]
        else:
            fps = DEFAULT_FPS
            travel_fraction = TRAVEL_FRACTION
            if self.travel_fraction_range is not None:
                travel_fraction = float(
                    np.random.default_rng((self.seed, index, 1)).uniform(*self.travel_fraction_range)
                )
            video = render_moving_shape(
                color,
                shape,
                direction,
                self.num_frames,
                self.height,
                self.width,
                generator=generator,
                travel_fraction=travel_fraction,
            )  # (F, H, W, 3) in [0, 1]
        pixel_values = torch.from_numpy(video).permute(3, 0, 1, 2) * 2.0 - 1.0  # (3, F, H, W) in [-1, 1]
        # the object's pixel coverage: the frame is its colour times the coverage on a black background
        foreground = torch.from_numpy(video.max(axis=-1) / max(COLORS[color]))  # (F, H, W) in [0, 1]
        return {
            "pixel_values": pixel_values.contiguous(),
            "foreground": foreground,
            "text": make_caption(color, shape, direction),
            "fps": fps,
            "color": color,
            "shape": shape,
            "direction": direction,
        }
