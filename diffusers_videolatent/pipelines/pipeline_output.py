from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers.utils import BaseOutput


@dataclass
class VideoLatentPipelineOutput(BaseOutput):
    r"""
    Output class for [`VideoLatentPipeline`].

    Args:
        frames (`torch.Tensor`, `np.ndarray` or `list[list[PIL.Image.Image]]`):
            The generated videos, laid out as [`~video_processor.VideoProcessor.postprocess_video`] lays them out: a
            list of `batch_size` lists of `num_frames` PIL images (`output_type="pil"`), a NumPy array of shape
            `(batch_size, num_frames, height, width, 3)` (`"np"`), a tensor of shape
            `(batch_size, num_frames, 3, height, width)` (`"pt"`), or the denoised latents of shape
            `(batch_size, latent_channels, latent_frames, latent_height, latent_width)` (`"latent"`).
    """

    frames: torch.Tensor | np.ndarray | list[list[PIL.Image.Image]]
