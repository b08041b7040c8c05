"""Training for diffusers-videolatent: datasets, the "moving shapes" evaluation and two accelerate scripts.

The scripts run with `accelerate launch -m diffusers_videolatent.training.train_video_vae ...` and
`accelerate launch -m diffusers_videolatent.training.train_text_to_video ...` (or `python -m ...`); they are not
imported here so that importing the datasets stays light.
"""

from .evaluate import VideoAnalysis, analyze_video, format_table, score_videos, segment_object
from .moving_shapes import (
    ALL_COMBINATIONS,
    COLORS,
    DIRECTIONS,
    HELDOUT_COMBINATIONS,
    SHAPES,
    TRAIN_COMBINATIONS,
    VOCABULARY,
    MovingShapesDataset,
    get_combinations,
    make_caption,
    parse_caption,
    render_moving_shape,
)
from .video_folder import VideoFolderDataset


__all__ = [
    "ALL_COMBINATIONS",
    "COLORS",
    "DIRECTIONS",
    "HELDOUT_COMBINATIONS",
    "SHAPES",
    "TRAIN_COMBINATIONS",
    "VOCABULARY",
    "MovingShapesDataset",
    "VideoAnalysis",
    "VideoFolderDataset",
    "analyze_video",
    "format_table",
    "get_combinations",
    "make_caption",
    "parse_caption",
    "render_moving_shape",
    "score_videos",
    "segment_object",
]
