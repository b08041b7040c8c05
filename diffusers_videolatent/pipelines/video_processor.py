# Copyright 2026 The diffusers-videolatent authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""The pipeline's `VideoProcessor`: it splits a user's `image` or `video` into items, checks their pixels and turns them
into the VAE's input, with an error that names the argument for anything that is not an image or a video."""

import math
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.video_processor import VideoProcessor


# Image and video values beyond this are not pixels in [0, 1] (nor diffusers' older [-1, 1]): most likely 8-bit values
# passed as floats. The slack above 1 keeps the overshoot of bicubic or Lanczos resampling.
PIXEL_VALUE_LIMIT = 1.5

MediaItem = PIL.Image.Image | np.ndarray | torch.Tensor


def _media_kind(value: Any) -> type | None:
    # the kind of one image or video frame: a PIL image, a NumPy array or a torch tensor
    for kind in (PIL.Image.Image, np.ndarray, torch.Tensor):
        if isinstance(value, kind):
            return kind
    return None


def _describe(value: Any) -> str:
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return f"{type(value).__name__} of shape {tuple(value.shape)}"
    return type(value).__name__


def _same_kind(name: str, entries: list) -> type:
    # the list entries of `image` or `video` must all be of one supported kind
    kinds = {_media_kind(entry) for entry in entries}
    if None in kinds or len(kinds) != 1:
        found = sorted({type(entry).__name__ for entry in entries})
        raise TypeError(
            f"`{name}` must hold PIL images, NumPy arrays or torch tensors, all of one kind, got a list of {found}."
        )
    return kinds.pop()


def _channel_axis(pixels: np.ndarray | torch.Tensor) -> int:
    # diffusers' layouts: arrays are channels-last, tensors channels-first per frame
    return -1 if isinstance(pixels, np.ndarray) else -3


class VideoLatentVideoProcessor(VideoProcessor):
    r"""
    The [`~diffusers.video_processor.VideoProcessor`] of [`VideoLatentPipeline`], for its `image` and `video`
    arguments.

    An image is a PIL image, an array `(height, width[, channels])` or a tensor `([channels, ]height, width)`; a video
    is a list of such frames, an array `(frames, height, width, channels)` or a tensor `(frames, channels, height,
    width)`; a batch is a list of them (or one more leading axis). Arrays and tensors hold floats in [0, 1] or uint8
    values. Every frame is converted to RGB as diffusers' `load_image` does.
    """

    @staticmethod
    def split_images(image: Any) -> list[MediaItem]:
        r"""Splits a user's `image` into one entry per image; a list of entries is returned as it is."""
        if isinstance(image, PIL.Image.Image):
            return [image]
        if isinstance(image, (np.ndarray, torch.Tensor)):
            if image.ndim in (2, 3):
                return [image]
            if image.ndim == 4:
                return list(image)
            raise ValueError(f"`image` must be a 2-, 3- or 4-D array or tensor, got {_describe(image)}.")
        if not isinstance(image, list):
            raise TypeError(f"`image` must be a PIL image, array, tensor or list of them, got {type(image).__name__}.")
        if len(image) == 0:
            raise ValueError("`image` is an empty list; pass at least one image.")
        if _same_kind("image", image) is not PIL.Image.Image and any(entry.ndim not in (2, 3) for entry in image):
            raise ValueError(
                f"`image` as a list must hold single images (2- or 3-D), got {[_describe(entry) for entry in image]}."
            )
        return image

    @staticmethod
    def split_videos(video: Any) -> list[list[MediaItem] | np.ndarray | torch.Tensor]:
        r"""
        Splits a user's `video` into one entry per video (a list of frames, a 4-D array or tensor); a list of entries
        is returned as it is.
        """
        if isinstance(video, (np.ndarray, torch.Tensor)):
            if video.ndim not in (4, 5):
                raise ValueError(
                    f"`video` must be a 4-D (one video) or 5-D (a batch) array or tensor, got {_describe(video)}."
                )
            videos = [video] if video.ndim == 4 else list(video)
        elif isinstance(video, list):
            if len(video) == 0:
                raise ValueError("`video` is an empty list; pass at least one frame.")
            if all(isinstance(entry, list) for entry in video):
                videos = video
            else:
                kind = _same_kind("video", video)
                if kind is PIL.Image.Image or all(entry.ndim in (2, 3) for entry in video):
                    videos = [video]
                elif all(entry.ndim == 4 for entry in video):
                    videos = video
                else:
                    raise ValueError(
                        "`video` as a list must hold frames (2- or 3-D) or videos (4-D), got"
                        f" {[_describe(entry) for entry in video]}."
                    )
        else:
            raise TypeError(
                "`video` must be a list of PIL images, an array, a tensor or a list of them, got"
                f" {type(video).__name__}."
            )
        for index, item in enumerate(videos):
            if isinstance(item, list):
                if len(item) == 0:
                    raise ValueError(f"`video[{index}]` is an empty list; a video needs at least one frame.")
                kind = _same_kind(f"video[{index}]", item)
                if kind is not PIL.Image.Image and any(frame.ndim not in (2, 3) for frame in item):
                    raise ValueError(
                        f"`video[{index}]` must hold frames (2- or 3-D), got {[_describe(frame) for frame in item]}."
                    )
            elif len(item) == 0:
                raise ValueError(f"`video` has 0 frames ({_describe(item)}); a video needs at least one frame.")
        kinds = {_media_kind(item[0]) if isinstance(item, list) else type(item) for item in videos}
        if len(kinds) != 1:
            raise TypeError(f"`video` must hold videos of one kind, got {sorted(kind.__name__ for kind in kinds)}.")
        return videos

    @staticmethod
    def check_pixels(name: str, pixels: MediaItem) -> None:
        r"""Checks one image or frame: floats in [0, 1] or uint8, finite, not empty, 1 to 4 channels."""
        if isinstance(pixels, PIL.Image.Image):
            return
        dtype_name = str(pixels.dtype).replace("torch.", "")
        is_float = (
            pixels.is_floating_point()
            if isinstance(pixels, torch.Tensor)
            else np.issubdtype(pixels.dtype, np.floating)
        )
        if dtype_name != "uint8" and not is_float:
            raise TypeError(f"`{name}` must hold floats in [0, 1] (or uint8 values), got dtype {dtype_name}.")
        if min(pixels.shape) == 0:
            raise ValueError(f"`{name}` is empty ({_describe(pixels)}).")
        if pixels.ndim > 2 and pixels.shape[_channel_axis(pixels)] not in (1, 2, 3, 4):
            layout = "(height, width, channels)" if isinstance(pixels, np.ndarray) else "(channels, height, width)"
            raise ValueError(
                f"`{name}` has {pixels.shape[_channel_axis(pixels)]} channels ({_describe(pixels)}); its frames are"
                f" laid out {layout} with 1 (L), 2 (LA), 3 (RGB) or 4 (RGBA) channels."
            )
        if dtype_name == "uint8":
            return
        values = torch.as_tensor(pixels)
        # one pass: the extremes are NaN or infinite exactly when some value is
        low, high = (float(extreme) for extreme in torch.aminmax(values))
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(
                f"`{name}` holds {int((~torch.isfinite(values)).sum())} non-finite values (NaN or inf) of"
                f" {values.numel()}; pass finite pixel values."
            )
        if low < -PIXEL_VALUE_LIMIT or high > PIXEL_VALUE_LIMIT:
            raise ValueError(
                f"`{name}` holds values in [{low:.4g}, {high:.4g}]; arrays and tensors hold pixels in [0, 1] (divide"
                " 8-bit values by 255)."
            )

    def check_items(self, name: str, items: list, batch_size: int) -> None:
        r"""
        Checks split `image` or `video` items (`name` says which) against a prompt batch of `batch_size`: one item or
        one per prompt, every frame's pixels, and videos of one length.
        """
        if len(items) not in (1, batch_size):
            raise ValueError(
                f"`{name}` holds {len(items)} items but the prompt batch has {batch_size}; pass one {name} or one per"
                " prompt."
            )
        for index, item in enumerate(items):
            item_name = name if len(items) == 1 else f"{name}[{index}]"
            for pixels in item if isinstance(item, list) else [item]:
                self.check_pixels(item_name, pixels)
        if name == "video" and len({len(item) for item in items}) > 1:
            raise ValueError(
                f"`video` holds videos of {sorted({len(item) for item in items})} frames; pass videos of one length."
            )

    @staticmethod
    def to_rgb(pixels: MediaItem) -> MediaItem:
        r"""
        Converts one image or one video's frames to 3 channels, as diffusers' `load_image` does with `convert("RGB")`:
        L is repeated, the alpha of LA and RGBA is dropped; uint8 arrays and tensors become floats in [0, 1].
        """
        if isinstance(pixels, PIL.Image.Image):
            return pixels if pixels.mode == "RGB" else pixels.convert("RGB")
        axis = _channel_axis(pixels)
        if isinstance(pixels, torch.Tensor):
            if pixels.dtype == torch.uint8:
                pixels = pixels.float() / 255.0
            if pixels.ndim == 2:
                pixels = pixels.unsqueeze(axis)
            if pixels.shape[axis] in (1, 2):
                return pixels.narrow(axis, 0, 1).repeat_interleave(3, dim=axis)
            return pixels.narrow(axis, 0, 3)
        if pixels.dtype == np.uint8:
            pixels = pixels.astype(np.float32) / 255.0
        if pixels.ndim == 2:
            pixels = pixels[..., None]
        if pixels.shape[axis] in (1, 2):
            return np.repeat(pixels[..., :1], 3, axis=axis)
        return pixels[..., :3]

    def preprocess_conditioning(
        self, image: Any = None, video: Any = None, height: int | None = None, width: int | None = None
    ) -> torch.Tensor | None:
        r"""
        Turns `image` (image-to-video) or `video` (video-to-video), raw or split, into pixels in [-1, 1] of shape
        `(batch_size, 3, num_frames, height, width)`, an image being a 1-frame video; `None` when neither is given.
        """
        if image is not None:
            images = [self.to_rgb(item) for item in self.split_images(image)]
            return torch.cat([self.preprocess(item, height=height, width=width) for item in images]).unsqueeze(2)
        if video is not None:
            videos = []
            for item in self.split_videos(video):
                frames = [self.to_rgb(frame) for frame in item] if isinstance(item, list) else self.to_rgb(item)
                videos.append(self.preprocess_video(frames, height=height, width=width))
            return torch.cat(videos)
        return None
