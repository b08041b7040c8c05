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
"""

import re

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
    for name, value, minimum in (("num_frames", num_frames, 1), ("height", height, 8), ("width", width, 8)):
        if not isinstance(value, int) or value < minimum:
            raise ValueError(f"`{name}` must be an integer >= {minimum}, but is {value!r}.")
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

    # 2. inside-test on a supersampled grid of sample points (pixel i covers [i, i + 1))
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

    # 3. box-filter down to pixel coverage, then colour
    coverage = inside.reshape(num_frames, height, supersampling, width, supersampling).mean(axis=(2, 4))  # (F, H, W)
    video = coverage[..., None] * np.asarray(COLORS[color])[None, None, None, :]  # (F, H, W, 3)
    return video.astype(np.float32)


class MovingShapesDataset(Dataset):
    """
    Seeded, generated-on-the-fly videos of one coloured shape moving over a black background, with captions.

    Item `index` shows the combination `combinations[index % len(combinations)]` of its split (so every combination
    is equally frequent) with a size and path drawn from `np.random.default_rng((seed, index))`.

    Args:
        split (`str`, *optional*, defaults to `"train"`):
            `"train"`, `"heldout"` or `"all"`, see `get_combinations`.
        num_videos (`int`, *optional*):
            Length of the dataset; defaults to 16 videos per combination of the split.
        num_frames (`int`, *optional*, defaults to 17):
            Frames per video.
        height (`int`, *optional*, defaults to 64):
            Frame height in pixels.
        width (`int`, *optional*, defaults to 64):
            Frame width in pixels.
        seed (`int`, *optional*, defaults to 0):
            Seed of the per-item generators.
        travel_fraction_range (`tuple[float, float]`, *optional*):
            When given, each item's travel over the clip (so its speed) is drawn uniformly from this range, with a
            generator of its own, so the item's other random draws stay those of the fixed-travel dataset; the
            default travel is `TRAVEL_FRACTION`.

    Items are dictionaries with `pixel_values` (float32 in [-1, 1], `[3, num_frames, height, width]`), `text` (the
    caption) and the `color`, `shape` and `direction` it shows.
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
    ):
        self.combinations = get_combinations(split)
        if num_videos is None:
            num_videos = 16 * len(self.combinations)
        if not isinstance(num_videos, int) or num_videos < 1:
            raise ValueError(f"`num_videos` must be a positive integer, but is {num_videos!r}.")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"`seed` must be a non-negative integer, but is {seed!r}.")
        # validates num_frames / height / width once, up front
        render_moving_shape(*self.combinations[0], num_frames=num_frames, height=height, width=width)
        self.split = split
        self.num_videos = num_videos
        self.num_frames = num_frames
        self.height = height
        self.width = width
        self.seed = seed
        if travel_fraction_range is not None:
            low, high = travel_fraction_range
            if not low <= high:
                raise ValueError(
                    f"`travel_fraction_range` must be (low, high) with low <= high, got {travel_fraction_range}."
                )
            # validates the range's ends up front
            for travel_fraction in (low, high):
                render_moving_shape(*self.combinations[0], num_frames=2, travel_fraction=travel_fraction)
        self.travel_fraction_range = travel_fraction_range

    def __len__(self) -> int:
        return self.num_videos

    def __getitem__(self, index: int) -> dict:
        if not -self.num_videos <= index < self.num_videos:
            raise IndexError(f"index {index} is out of range for a dataset of {self.num_videos} videos.")
        index = index % self.num_videos
        color, shape, direction = self.combinations[index % len(self.combinations)]
        generator = np.random.default_rng((self.seed, index))
        travel_fraction = TRAVEL_FRACTION
        if self.travel_fraction_range is not None:
            travel_fraction = float(np.random.default_rng((self.seed, index, 1)).uniform(*self.travel_fraction_range))
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
        return {
            "pixel_values": pixel_values.contiguous(),
            "text": make_caption(color, shape, direction),
            "color": color,
            "shape": shape,
            "direction": direction,
        }
