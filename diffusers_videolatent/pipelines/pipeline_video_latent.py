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

import inspect
import json
import math
import numbers
import os
from contextlib import nullcontext
from typing import Any, Callable

import numpy as np
import PIL.Image
import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLCogVideoX,
    AutoencoderKLWan,
    DiffusionPipeline,
    UNet3DConditionModel,
)
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.models.cache_utils import CacheMixin
from diffusers.pipelines.pipeline_utils import StableDiffusionMixin
from diffusers.schedulers import SchedulerMixin
from diffusers.utils import logging, replace_example_docstring
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor
from transformers import CLIPTextModel, CLIPTokenizer

from ..geometry import (
    _is_property,
    get_vae_compression_ratios,
    is_valid_num_frames,
    largest_num_frames,
    nearest_valid_num_frames,
    num_latent_frames,
    size_multiple,
    unet_downsample_factor,
    unet_max_latent_frames,
)
from ..hub import ModelCardHubMixin
from ..loaders import VideoLatentLoraLoaderMixin
from ..models import AutoencoderKLVideo, UNetSpatioTemporalModel
from .pipeline_output import VideoLatentPipelineOutput


logger = logging.get_logger(__name__)  # pylint: disable=invalid-name

OUTPUT_TYPES = ("pil", "np", "pt", "latent")

# The call settings a saved pipeline may recommend (`generation_defaults` in its `model_index.json`), plus the words its
# text encoder was trained on; what a call uses when neither the caller nor the pipeline gives a value.
GENERATION_SETTING_KEYS = ("num_frames", "height", "width", "fps", "num_inference_steps", "guidance_scale")
GENERATION_DEFAULT_KEYS = GENERATION_SETTING_KEYS + ("vocabulary",)
FALLBACK_GENERATION_SETTINGS = {"num_frames": 17, "fps": 8, "num_inference_steps": 50, "guidance_scale": 7.5}
# older folders kept the recommended settings in this file beside `model_index.json`
LEGACY_SETTINGS_NAME = "videolatent.json"

# Image and video values beyond this are not pixels in [0, 1] (nor diffusers' older [-1, 1]): most likely 8-bit values
# passed as floats. The slack above 1 keeps the overshoot of bicubic or Lanczos resampling.
PIXEL_VALUE_LIMIT = 1.5

# Classifier-free guidance scales above this are far outside what text-to-video models use (about 1 to 20); named as
# the likely cause when a video comes out non-finite.
LARGE_GUIDANCE_SCALE = 100.0

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import torch
        >>> from diffusers import DPMSolverMultistepScheduler
        >>> from diffusers.utils import export_to_video
        >>> from diffusers_videolatent import VideoLatentPipeline

        >>> pipe = VideoLatentPipeline.from_pretrained("path/to/videolatent-model", torch_dtype=torch.float16)
        >>> pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
        >>> pipe.enable_model_cpu_offload()

        >>> frames = pipe("a red panda climbing a tree", num_frames=17, num_inference_steps=25).frames[0]
        >>> export_to_video(frames, "red_panda.mp4", fps=8)
        ```
"""


def _is_real_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_finite_number(name: str, value: Any) -> None:
    # a real number that is neither NaN nor infinite; the callers check its range
    if not _is_real_number(value):
        raise TypeError(f"`{name}` must be a number, got {type(value).__name__}: {value!r}.")
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}.")


def timestep_shift_for_tokens(
    num_tokens: int,
    base_num_tokens: int = 256,
    max_num_tokens: int = 4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
) -> float:
    r"""
    The `mu` of a flow-matching schedule with `use_dynamic_shifting`: linear in the number of latent tokens, `base_shift`
    at `base_num_tokens` and `max_shift` at `max_num_tokens` (the scheduler config's `base_image_seq_len`, ...).
    """
    slope = (max_shift - base_shift) / (max_num_tokens - base_num_tokens)
    return num_tokens * slope + (base_shift - slope * base_num_tokens)


def set_scheduler_timesteps(
    scheduler: SchedulerMixin,
    num_inference_steps: int | None,
    device: torch.device,
    timesteps: list[int] | None = None,
    sigmas: list[float] | None = None,
    **kwargs,
) -> tuple[torch.Tensor, int]:
    r"""
    Sets the scheduler's schedule from a step count, or from explicit `timesteps` or `sigmas` where its
    `set_timesteps` takes them; returns the scheduler's timesteps and their number. `kwargs` go to `set_timesteps`.
    """
    accepted = inspect.signature(scheduler.set_timesteps).parameters
    for name, schedule in (("timesteps", timesteps), ("sigmas", sigmas)):
        if schedule is None:
            continue
        if name not in accepted:
            raise ValueError(
                f"`{name}` cannot be used with {type(scheduler).__name__}, whose `set_timesteps` takes no `{name}`;"
                " pass `num_inference_steps` instead."
            )
        scheduler.set_timesteps(**{name: schedule}, device=device, **kwargs)
        return scheduler.timesteps, len(scheduler.timesteps)
    scheduler.set_timesteps(num_inference_steps, device=device, **kwargs)
    return scheduler.timesteps, num_inference_steps


def rescale_guidance(noise_pred: torch.Tensor, noise_pred_text: torch.Tensor, guidance_rescale: float) -> torch.Tensor:
    r"""
    Guidance rescale of [Common Diffusion Noise Schedules and Sample Steps are
    Flawed](https://huggingface.co/papers/2305.08891) (section 3.4): the guided prediction is scaled to the standard
    deviation of the text-conditioned one, then blended with the unscaled prediction by `guidance_rescale`.
    """
    sample_dims = list(range(1, noise_pred_text.ndim))
    ratio = noise_pred_text.std(dim=sample_dims, keepdim=True) / noise_pred.std(dim=sample_dims, keepdim=True)
    return guidance_rescale * (noise_pred * ratio) + (1 - guidance_rescale) * noise_pred


def build_conditioning_latents(
    latents: torch.Tensor,
    conditioning_channels: int,
    image_latents: torch.Tensor | None = None,
    image_given: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""
    The `conditioning_latents` of a U-Net with `conditioning_channels > 0`, as the pipeline feeds them and as
    training builds them: the image's latent at latent frame 0 and zeros at the other frames, followed, when
    `conditioning_channels` is the latent channels plus one, by a mask channel that is 1 at latent frame 0 where an
    image is given and 0 elsewhere.

    Args:
        latents (`torch.Tensor`):
            The latents `(batch_size, channels, latent_frames, height, width)` the U-Net denoises (only their shape,
            dtype and device are used).
        conditioning_channels (`int`):
            The U-Net's `conditioning_channels`: `channels` (no mask) or `channels + 1` (with the mask).
        image_latents (`torch.Tensor`, *optional*):
            Normalised latents `(batch_size, channels, 1, height, width)` of the images; `None` for text-to-video.
        image_given (`torch.Tensor`, *optional*):
            Booleans `(batch_size,)`: which items get their image (the others get zeros, as without an image);
            every item when not given.

    Returns:
        `torch.Tensor`: Conditioning latents of shape `(batch_size, conditioning_channels, latent_frames, height,
        width)`.
    """
    batch_size, num_channels = latents.shape[:2]
    if conditioning_channels not in (num_channels, num_channels + 1):
        raise ValueError(
            f"`conditioning_channels` must be the latent channels ({num_channels}) or one more (with a mask), but is"
            f" {conditioning_channels}."
        )
    conditioning_latents = torch.zeros_like(latents)  # (B, C, F, H, W)
    mask = torch.zeros_like(latents[:, :1])  # (B, 1, F, H, W)
    if image_latents is not None:
        if image_given is None:
            image_given = torch.ones(batch_size, dtype=torch.bool, device=latents.device)
        weight = image_given.to(device=latents.device, dtype=latents.dtype).view(batch_size, 1, 1, 1, 1)
        conditioning_latents[:, :, :1] = image_latents.to(latents.dtype) * weight
        mask[:, :, :1] = weight
    if conditioning_channels == num_channels + 1:
        conditioning_latents = torch.cat([conditioning_latents, mask], dim=1)  # (B, C + 1, F, H, W)
    return conditioning_latents


def latent_distribution_mode(encoder_output: Any) -> torch.Tensor:
    r"""The latents of a VAE's `encode` output: the mode of its `latent_dist`, or its `latents` for a deterministic VAE."""
    if hasattr(encoder_output, "latent_dist"):
        return encoder_output.latent_dist.mode()
    if hasattr(encoder_output, "latents"):
        return encoder_output.latents
    raise AttributeError(f"The VAE's `encode` returned {type(encoder_output).__name__}, with no latents to read.")


def _check_finite_tensor(name: str, value: torch.Tensor) -> None:
    # a floating-point tensor without NaN or infinite entries; the callers check its shape
    if not value.is_floating_point():
        raise TypeError(f"`{name}` must be a floating-point tensor, got dtype {value.dtype}.")
    finite = torch.isfinite(value)
    if not finite.all():
        raise ValueError(
            f"`{name}` holds {int((~finite).sum())} non-finite values (NaN or inf) of {value.numel()}; pass finite"
            " numbers."
        )


def _check_schedule(name: str, values: Any) -> None:
    # custom `timesteps` or `sigmas`: a non-empty sequence of finite numbers >= 0
    if isinstance(values, (torch.Tensor, np.ndarray)):
        values = values.tolist()
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"`{name}` must be a list of numbers, got {type(values).__name__}.")
    if len(values) == 0:
        raise ValueError(f"`{name}` is empty; pass at least one value or use `num_inference_steps`.")
    for index, value in enumerate(values):
        _check_finite_number(f"{name}[{index}]", value)
        if value < 0:
            raise ValueError(f"`{name}[{index}]` must be >= 0, got {value!r}.")


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


def _image_items(image: Any) -> list:
    r"""
    Splits a user's `image` into one entry per image: a PIL image, an array `(height, width[, channels])` or a tensor
    `([channels, ]height, width)`, raising a `TypeError`/`ValueError` that names `image` for anything else.
    """
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


def _video_items(video: Any) -> list:
    r"""
    Splits a user's `video` into one entry per video: a list of frames (PIL images, arrays or tensors of one image
    each), an array `(frames, height, width, channels)` or a tensor `(frames, channels, height, width)`, raising a
    `TypeError`/`ValueError` that names `video` for anything else.
    """
    if isinstance(video, (np.ndarray, torch.Tensor)):
        if video.ndim == 4:
            videos = [video]
        elif video.ndim == 5:
            videos = list(video)
        else:
            raise ValueError(
                f"`video` must be a 4-D (one video) or 5-D (a batch) array or tensor, got {_describe(video)}."
            )
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
            f"`video` must be a list of PIL images, an array, a tensor or a list of them, got {type(video).__name__}."
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


def check_generation_defaults(generation_defaults: dict[str, Any] | None) -> dict[str, Any] | None:
    r"""
    Checks the recommended call settings of a pipeline and returns them as a plain dict.

    Args:
        generation_defaults (`dict`, *optional*):
            Any of `num_frames`, `height`, `width`, `num_inference_steps` (positive integers), `fps`, `guidance_scale`
            (finite numbers, `fps` positive) and `vocabulary` (a list of words).
    """
    if generation_defaults is None:
        return None
    if not isinstance(generation_defaults, dict):
        raise TypeError(
            f"`generation_defaults` must be a dict or None, got {type(generation_defaults).__name__}: "
            f"{generation_defaults!r}."
        )
    unknown = sorted(set(generation_defaults) - set(GENERATION_DEFAULT_KEYS))
    if unknown:
        raise ValueError(
            f"`generation_defaults` has unknown key(s) {unknown}; allowed are {list(GENERATION_DEFAULT_KEYS)}."
        )
    for key, value in generation_defaults.items():
        if key == "vocabulary":
            valid = isinstance(value, list) and all(isinstance(word, str) for word in value)
        elif key in ("fps", "guidance_scale"):
            valid = _is_real_number(value) and math.isfinite(value)
            valid = valid and (key != "fps" or value > 0)
        else:
            valid = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        if not valid:
            raise ValueError(f"`generation_defaults['{key}']` is not a valid value: {value!r}.")
    return dict(generation_defaults)


def load_generation_defaults(folder: str | os.PathLike) -> dict[str, Any] | None:
    r"""
    Reads the recommended settings of a saved pipeline folder: `generation_defaults` of its `model_index.json`, else
    (a folder saved by an older version) its `videolatent.json`; `None` when it has neither.
    """
    index_path = os.path.join(folder, "model_index.json")
    legacy_path = os.path.join(folder, LEGACY_SETTINGS_NAME)
    for path in (index_path, legacy_path):
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as file:
                content = json.load(file)
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: cannot read it as JSON ({error}).") from error
        settings = content.get("generation_defaults") if path == index_path else content
        if settings is not None:
            return check_generation_defaults(settings)
    return None


def _video_length(video: Any) -> int | None:
    # the number of frames of the first video of a user input, or None when `video` is not a valid video
    try:
        return len(_video_items(video)[0])
    except (TypeError, ValueError):
        return None


def _channel_axis(pixels: np.ndarray | torch.Tensor) -> int:
    # diffusers' layouts: arrays are channels-last, tensors channels-first per frame
    return -1 if isinstance(pixels, np.ndarray) else -3


def _check_pixels(name: str, pixels: Any) -> None:
    # the values of an image or video given as an array or tensor: floats in [0, 1] or uint8, finite, 1 to 4 channels
    if isinstance(pixels, PIL.Image.Image):
        return
    dtype_name = str(pixels.dtype).replace("torch.", "")
    is_float = (
        pixels.is_floating_point() if isinstance(pixels, torch.Tensor) else np.issubdtype(pixels.dtype, np.floating)
    )
    if dtype_name != "uint8" and not is_float:
        raise TypeError(f"`{name}` must hold floats in [0, 1] (or uint8 values), got dtype {dtype_name}.")
    if min(pixels.shape) == 0:
        raise ValueError(f"`{name}` is empty ({_describe(pixels)}).")
    if pixels.ndim > 2 and pixels.shape[_channel_axis(pixels)] not in (1, 2, 3, 4):
        layout = "(height, width, channels)" if isinstance(pixels, np.ndarray) else "(channels, height, width)"
        raise ValueError(
            f"`{name}` has {pixels.shape[_channel_axis(pixels)]} channels ({_describe(pixels)}); its frames are laid"
            f" out {layout} with 1 (L), 2 (LA), 3 (RGB) or 4 (RGBA) channels."
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


def _to_rgb(pixels: Any) -> Any:
    r"""
    Converts one image or one video's frames to 3 channels, as diffusers' `load_image` does with `convert("RGB")`: L is
    repeated, the alpha of LA and RGBA is dropped; uint8 arrays and tensors become floats in [0, 1].
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


class VideoLatentPipeline(ModelCardHubMixin, DiffusionPipeline, StableDiffusionMixin, VideoLatentLoraLoaderMixin):
    r"""
    Pipeline for text-to-video, image-to-video and video-to-video generation in the latent space of a video VAE.

    This model inherits from [`DiffusionPipeline`]. Check the superclass documentation for the generic methods
    implemented for all pipelines (downloading, saving, running on a particular device, offloading, etc.).

    The pipeline also inherits the following loading and memory methods:
        - [`~VideoLatentLoraLoaderMixin.load_lora_weights`] for loading LoRA weights (AnimateDiff motion LoRAs too)
        - [`~VideoLatentLoraLoaderMixin.save_lora_weights`] for saving LoRA weights
        - [`~StableDiffusionMixin.enable_freeu`] and [`~DiffusionPipeline.enable_attention_slicing`] for the U-Net

    Args:
        vae ([`AutoencoderKLVideo`], [`~diffusers.AutoencoderKL`], [`~diffusers.AutoencoderKLWan`] or [`~diffusers.AutoencoderKLCogVideoX`]):
            Variational auto-encoder that encodes videos to latents and decodes them back. An image VAE is applied to
            each frame on its own (temporal ratio 1); video VAEs use their own spatial and temporal ratios and latent
            normalisation (`scaling_factor`, `shift_factor`, `latents_mean`, `latents_std`).
        text_encoder ([`~transformers.CLIPTextModel`], *optional*):
            Frozen CLIP text encoder. Optional when `prompt_embeds` are passed.
        tokenizer ([`~transformers.CLIPTokenizer`], *optional*):
            Tokenizer of the text encoder. Optional when `prompt_embeds` are passed.
        unet ([`UNetSpatioTemporalModel`] or [`~diffusers.UNet3DConditionModel`]):
            Spatio-temporal U-Net that denoises the video latents.
        scheduler ([`~schedulers.SchedulerMixin`]):
            Any diffusers scheduler (noise-prediction, v-prediction or flow-matching).
        generation_defaults (`dict`, *optional*):
            The call settings this model recommends (`num_frames`, `height`, `width`, `fps`, `num_inference_steps`,
            `guidance_scale`) and the words its text encoder knows (`vocabulary`). Saved in `model_index.json`, they are
            the defaults of `__call__` wherever the caller passes no value.
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["tokenizer", "text_encoder"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(
        self,
        vae: AutoencoderKLVideo | AutoencoderKL | AutoencoderKLWan | AutoencoderKLCogVideoX,
        text_encoder: CLIPTextModel | None,
        tokenizer: CLIPTokenizer | None,
        unet: UNetSpatioTemporalModel | UNet3DConditionModel,
        scheduler: SchedulerMixin,
        generation_defaults: dict[str, Any] | None = None,
    ):
        super().__init__()

        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
        )
        self.register_to_config(generation_defaults=check_generation_defaults(generation_defaults))
        if getattr(self, "vae", None) is not None:
            ratios = get_vae_compression_ratios(self.vae)
        else:
            ratios = (8, 4, False)
        self.vae_scale_factor_spatial, self.vae_scale_factor_temporal, self.vae_encodes_single_frames = ratios

        if getattr(self, "unet", None) is None:
            self.unet_downsample_factor = 8
        elif _is_property(self.unet, "downsample_factor"):
            self.unet_downsample_factor = self.unet.downsample_factor
        else:
            self.unet_downsample_factor = unet_downsample_factor(self.unet.config)

        self.video_processor = VideoProcessor(vae_scale_factor=self.vae_scale_factor_spatial)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> "VideoLatentPipeline":
        r"""
        Loads a saved pipeline like [`~DiffusionPipeline.from_pretrained`]. A local folder saved by an older version,
        with its recommended settings in `videolatent.json` rather than in `model_index.json`, gets them as
        `generation_defaults` (so `save_pretrained` then keeps them in `model_index.json`).
        """
        folder = os.fspath(pretrained_model_name_or_path)
        if "generation_defaults" not in kwargs and os.path.isdir(folder):
            kwargs["generation_defaults"] = load_generation_defaults(folder)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    def resolve_generation_settings(self, **settings: Any) -> dict[str, Any]:
        r"""
        Fills the call settings left `None` from the pipeline's `generation_defaults`, then from the fallbacks.

        Args:
            settings:
                Any of `num_frames`, `height`, `width`, `fps`, `num_inference_steps`, `guidance_scale`, as given to
                `__call__` (`None` for not given).

        Returns:
            `dict`: Every one of those settings. `height`/`width` fall back to the U-Net's `sample_size` times the
            VAE's spatial ratio; `num_frames` to 17.
        """
        unknown = sorted(set(settings) - set(GENERATION_SETTING_KEYS))
        if unknown:
            raise TypeError(f"Unknown generation setting(s) {unknown}; allowed are {list(GENERATION_SETTING_KEYS)}.")
        defaults = dict(FALLBACK_GENERATION_SETTINGS)
        sample_size = 32
        if getattr(self, "unet", None) is not None:
            sample_size = self.unet.config.get("sample_size") or sample_size
        sample_height, sample_width = (sample_size, sample_size) if isinstance(sample_size, int) else sample_size
        defaults["height"] = sample_height * self.vae_scale_factor_spatial
        defaults["width"] = sample_width * self.vae_scale_factor_spatial
        defaults.update(self.config.get("generation_defaults") or {})
        resolved = {}
        for key in GENERATION_SETTING_KEYS:
            value = settings.get(key)
            resolved[key] = value if value is not None else defaults[key]
        return resolved

    def enable_vae_slicing(self) -> None:
        r"""
        Decode (and encode) a batch one video at a time, which bounds the VAE's memory to one video. The same as
        `pipe.vae.enable_slicing()`, which diffusers' own pipelines now ask for instead.
        """
        self.vae.enable_slicing()

    def disable_vae_slicing(self) -> None:
        r"""Decode the whole batch at once again (undoes [`~VideoLatentPipeline.enable_vae_slicing`])."""
        self.vae.disable_slicing()

    def enable_vae_tiling(self) -> None:
        r"""
        Decode (and encode) large frames in overlapping spatial tiles, which bounds the VAE's memory to one tile. The
        same as `pipe.vae.enable_tiling()`, which diffusers' own pipelines now ask for instead (and which also takes
        the tile size).
        """
        self.vae.enable_tiling()

    def disable_vae_tiling(self) -> None:
        r"""Decode whole frames again (undoes [`~VideoLatentPipeline.enable_vae_tiling`])."""
        self.vae.disable_tiling()

    def fuse_qkv_projections(self, unet: bool = True, vae: bool = True) -> None:
        r"""
        Fuses the query, key and value projections of every self-attention (key and value of cross-attention) into
        one matrix each, as [`~StableDiffusionMixin.fuse_qkv_projections`] does; a VAE without
        `fuse_qkv_projections` (ours, Wan's, CogVideoX's) is left as it is instead of raising. The U-Net keeps its
        attention processors (they read the fused projections and stay on the selected attention backend), where
        diffusers' mixin would set `FusedAttnProcessor2_0`, which no attention backend reaches.

        Args:
            unet (`bool`, *optional*, defaults to `True`): Whether to fuse the U-Net's projections.
            vae (`bool`, *optional*, defaults to `True`): Whether to fuse the VAE's projections, where it can.
        """
        super().fuse_qkv_projections(unet=False, vae=vae and hasattr(self.vae, "fuse_qkv_projections"))
        if unet:
            self.unet.fuse_qkv_projections()
            self.fusing_unet = True

    def unfuse_qkv_projections(self, unet: bool = True, vae: bool = True) -> None:
        r"""
        Restores the separate projections (and, for an `AutoencoderKL`, the attention processors) used before
        [`~VideoLatentPipeline.fuse_qkv_projections`].

        Args:
            unet (`bool`, *optional*, defaults to `True`): Whether to unfuse the U-Net.
            vae (`bool`, *optional*, defaults to `True`): Whether to unfuse the VAE, where it was fused.
        """
        super().unfuse_qkv_projections(unet=unet, vae=vae and getattr(self, "fusing_vae", False))

    def _get_clip_prompt_embeds(
        self, prompt: list[str], device: torch.device, max_length: int, clip_skip: int | None
    ) -> torch.Tensor:
        text_inputs = self.tokenizer(
            prompt, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
        )
        text_input_ids = text_inputs.input_ids
        untruncated_ids = self.tokenizer(prompt, padding="longest", return_tensors="pt").input_ids
        if untruncated_ids.shape[-1] > text_input_ids.shape[-1]:
            removed_text = self.tokenizer.batch_decode(untruncated_ids[:, max_length - 1 : -1])
            logger.warning(f"The prompt was truncated to {max_length} tokens; this part was dropped: {removed_text}")

        if getattr(self.text_encoder.config, "use_attention_mask", False):
            attention_mask = text_inputs.attention_mask.to(device)
        else:
            attention_mask = None

        if clip_skip is None:
            prompt_embeds = self.text_encoder(text_input_ids.to(device), attention_mask=attention_mask)[0]
        else:
            hidden_states = self.text_encoder(
                text_input_ids.to(device), attention_mask=attention_mask, output_hidden_states=True
            ).hidden_states
            # the final layer norm is part of the last hidden state, so it is applied to the earlier layer too;
            # transformers 5 dropped the `text_model` wrapper of `CLIPTextModel`
            text_model = getattr(self.text_encoder, "text_model", self.text_encoder)
            prompt_embeds = text_model.final_layer_norm(hidden_states[-(clip_skip + 1)])
        return prompt_embeds

    def encode_prompt(
        self,
        prompt: str | list[str] | None,
        device: torch.device | None = None,
        num_videos_per_prompt: int = 1,
        do_classifier_free_guidance: bool = True,
        negative_prompt: str | list[str] | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        clip_skip: int | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        r"""
        Encodes the prompt into text encoder hidden states.

        Args:
            prompt (`str` or `list[str]`, *optional*):
                The prompt or prompts to encode. If not defined, `prompt_embeds` must be passed.
            device (`torch.device`, *optional*):
                The device to place the embeddings on; defaults to the pipeline's execution device.
            num_videos_per_prompt (`int`, *optional*, defaults to 1):
                The number of videos generated per prompt; each embedding is repeated that many times.
            do_classifier_free_guidance (`bool`, *optional*, defaults to `True`):
                Whether the negative embeddings are needed (they are returned as `None` otherwise).
            negative_prompt (`str` or `list[str]`, *optional*):
                The prompt or prompts to guide away from; the empty prompt when not given.
            prompt_embeds (`torch.Tensor`, *optional*):
                Pre-computed text embeddings of shape `(batch_size, sequence_length, hidden_size)`.
            negative_prompt_embeds (`torch.Tensor`, *optional*):
                Pre-computed negative text embeddings, of the same shape as `prompt_embeds`.
            clip_skip (`int`, *optional*):
                The number of final CLIP layers to skip (1 uses the pre-final layer), for prompt and negative prompt.
            dtype (`torch.dtype`, *optional*):
                The dtype of the returned embeddings; defaults to the text encoder's (or the U-Net's) dtype.

        Returns:
            `tuple[torch.Tensor, torch.Tensor | None]`: The prompt embeddings and the negative prompt embeddings, each
            of shape `(batch_size * num_videos_per_prompt, sequence_length, hidden_size)`.
        """
        device = device or self._execution_device
        if dtype is None:
            dtype = self.text_encoder.dtype if self.text_encoder is not None else self.unet.dtype
        self._check_clip_skip(clip_skip)
        for name, embeds in (("prompt_embeds", prompt_embeds), ("negative_prompt_embeds", negative_prompt_embeds)):
            if isinstance(embeds, torch.Tensor):
                _check_finite_tensor(name, embeds)

        if prompt_embeds is None:
            if self.text_encoder is None or self.tokenizer is None:
                raise ValueError("`prompt_embeds` must be passed when the pipeline has no `text_encoder`/`tokenizer`.")
            prompt = [prompt] if isinstance(prompt, str) else prompt
            prompt_embeds = self._get_clip_prompt_embeds(prompt, device, self.tokenizer.model_max_length, clip_skip)
        batch_size, seq_len, _ = prompt_embeds.shape

        if do_classifier_free_guidance and negative_prompt_embeds is None:
            if self.text_encoder is None or self.tokenizer is None:
                raise ValueError(
                    "`negative_prompt_embeds` must be passed for classifier-free guidance (`guidance_scale` > 1) when"
                    " the pipeline has no `text_encoder`/`tokenizer`."
                )
            negative_prompt = negative_prompt if negative_prompt is not None else ""
            negative_prompt = batch_size * [negative_prompt] if isinstance(negative_prompt, str) else negative_prompt
            negative_prompt_embeds = self._get_clip_prompt_embeds(negative_prompt, device, seq_len, clip_skip)

        # one copy per generated video, keeping the copies of one prompt next to each other
        prompt_embeds = prompt_embeds.to(dtype=dtype, device=device)
        prompt_embeds = prompt_embeds.repeat_interleave(num_videos_per_prompt, dim=0)
        if do_classifier_free_guidance:
            negative_prompt_embeds = negative_prompt_embeds.to(dtype=dtype, device=device)
            negative_prompt_embeds = negative_prompt_embeds.repeat_interleave(num_videos_per_prompt, dim=0)
        else:
            negative_prompt_embeds = None
        return prompt_embeds, negative_prompt_embeds

    def check_inputs(
        self,
        prompt: str | list[str] | None,
        negative_prompt: str | list[str] | None,
        image: Any,
        video: Any,
        strength: float,
        num_frames: int,
        height: int,
        width: int,
        fps: float,
        num_inference_steps: int,
        timesteps: list[int] | None,
        sigmas: list[float] | None,
        guidance_scale: float,
        guidance_rescale: float,
        num_videos_per_prompt: int,
        generator: torch.Generator | list[torch.Generator] | None,
        latents: torch.Tensor | None,
        prompt_embeds: torch.Tensor | None,
        negative_prompt_embeds: torch.Tensor | None,
        output_type: str,
        callback_on_step_end_tensor_inputs: list[str] | None,
        decode_chunk_size: int | None,
        eta: float = 0.0,
        clip_skip: int | None = None,
        callback_on_step_end: Callable | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
    ) -> None:
        r"""Raises a `ValueError` or `TypeError` naming the first invalid argument; see `__call__` for their meaning."""
        # 1. prompt and its embeddings
        if prompt is not None and prompt_embeds is not None:
            raise ValueError(
                f"Pass only one of `prompt` and `prompt_embeds`, got `prompt`={prompt!r} and `prompt_embeds` of shape"
                f" {tuple(getattr(prompt_embeds, 'shape', ()))}."
            )
        if prompt is None and prompt_embeds is None:
            raise ValueError("Pass one of `prompt` or `prompt_embeds`; both are None.")
        if prompt is not None and not (
            isinstance(prompt, str) or (isinstance(prompt, list) and all(isinstance(p, str) for p in prompt))
        ):
            raise TypeError(
                f"`prompt` must be a string or a list of strings, got {type(prompt).__name__}: {prompt!r}."
            )
        if isinstance(prompt, list) and len(prompt) == 0:
            raise ValueError("`prompt` is an empty list; pass at least one prompt.")
        if prompt is not None:
            batch_size = 1 if isinstance(prompt, str) else len(prompt)
        else:
            if not isinstance(prompt_embeds, torch.Tensor) or prompt_embeds.ndim != 3:
                raise ValueError(
                    "`prompt_embeds` must be a tensor of shape (batch_size, sequence_length, hidden_size), got"
                    f" {getattr(prompt_embeds, 'shape', type(prompt_embeds).__name__)}."
                )
            batch_size = prompt_embeds.shape[0]

        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise ValueError("Pass only one of `negative_prompt` and `negative_prompt_embeds`, not both.")
        if negative_prompt is not None:
            if not (
                isinstance(negative_prompt, str)
                or (isinstance(negative_prompt, list) and all(isinstance(p, str) for p in negative_prompt))
            ):
                raise TypeError(
                    "`negative_prompt` must be a string or a list of strings, got"
                    f" {type(negative_prompt).__name__}: {negative_prompt!r}."
                )
            if isinstance(negative_prompt, list) and len(negative_prompt) != batch_size:
                raise ValueError(
                    f"`negative_prompt` has {len(negative_prompt)} entries but the prompt batch has {batch_size};"
                    " pass one string or one negative prompt per prompt."
                )

        cross_attention_dim = self.unet.config.cross_attention_dim
        for name, embeds in (("prompt_embeds", prompt_embeds), ("negative_prompt_embeds", negative_prompt_embeds)):
            if embeds is None:
                continue
            if not isinstance(embeds, torch.Tensor) or embeds.ndim != 3 or embeds.shape[-1] != cross_attention_dim:
                raise ValueError(
                    f"`{name}` must have shape (batch_size, sequence_length, {cross_attention_dim}) to match the"
                    f" U-Net's `cross_attention_dim`, got {tuple(getattr(embeds, 'shape', ()))}."
                )
            _check_finite_tensor(name, embeds)
        if prompt_embeds is not None and negative_prompt_embeds is not None:
            if prompt_embeds.shape != negative_prompt_embeds.shape:
                raise ValueError(
                    "`prompt_embeds` and `negative_prompt_embeds` must have the same shape, got"
                    f" {tuple(prompt_embeds.shape)} and {tuple(negative_prompt_embeds.shape)}."
                )
        elif negative_prompt_embeds is not None and self.tokenizer is not None:
            # the prompt is encoded to (batch_size, model_max_length, hidden_size); guidance concatenates both
            expected_shape = (batch_size, getattr(self.tokenizer, "model_max_length", None), cross_attention_dim)
            if tuple(negative_prompt_embeds.shape) != expected_shape:
                raise ValueError(
                    f"`negative_prompt_embeds` must have shape {expected_shape} to match the encoded `prompt`, got"
                    f" {tuple(negative_prompt_embeds.shape)}."
                )
        self._check_clip_skip(clip_skip)

        # 2. conditioning inputs
        if image is not None and video is not None:
            raise ValueError("Pass only one of `image` (image-to-video) and `video` (video-to-video), not both.")
        for name, items in (
            ("image", _image_items(image) if image is not None else None),
            ("video", _video_items(video) if video is not None else None),
        ):
            if items is None:
                continue
            if len(items) not in (1, batch_size):
                raise ValueError(
                    f"`{name}` holds {len(items)} items but the prompt batch has {batch_size}; pass one {name} or one"
                    " per prompt."
                )
            for index, item in enumerate(items):
                item_name = name if len(items) == 1 else f"{name}[{index}]"
                for pixels in item if isinstance(item, list) else [item]:
                    _check_pixels(item_name, pixels)
            if name == "video" and len({len(item) for item in items}) > 1:
                raise ValueError(
                    f"`video` holds videos of {sorted({len(item) for item in items})} frames; pass videos of one length."
                )
        if not _is_real_number(strength) or not 0.0 <= strength <= 1.0:
            raise ValueError(f"`strength` must be a number in [0.0, 1.0], got {strength!r}.")

        # 3. sizes
        temporal_ratio = self.vae_scale_factor_temporal
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"`num_frames` must be an integer >= 1, got {num_frames!r}.")
        if not is_valid_num_frames(num_frames, temporal_ratio):
            lower, upper = nearest_valid_num_frames(num_frames, temporal_ratio)
            raise ValueError(
                f"`num_frames` must be 1 + k * {temporal_ratio} for the VAE's temporal ratio {temporal_ratio}, got"
                f" {num_frames}; the nearest valid counts are {lower} and {upper}."
            )
        max_latent_frames = unet_max_latent_frames(self.unet.config)
        if max_latent_frames is not None and num_latent_frames(num_frames, temporal_ratio) > max_latent_frames:
            largest = largest_num_frames(max_latent_frames, temporal_ratio)
            raise ValueError(
                f"`num_frames` is {num_frames}, but the U-Net's frame-position table holds {max_latent_frames} latent"
                f" frames (`temporal_max_frames`): the largest `num_frames` it takes is {largest}"
                + (f"; trim `video` to at most {largest} frames." if video is not None else ".")
            )
        if video is not None and _video_length(video) != num_frames:
            raise ValueError(
                f"`video` has {_video_length(video)} frames but `num_frames` is {num_frames}; leave `num_frames` unset"
                " in video-to-video to use the video's length."
            )
        multiple = size_multiple(self.vae_scale_factor_spatial, self.unet_downsample_factor)
        for name, size in (("height", height), ("width", width)):
            if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % multiple != 0:
                raise ValueError(
                    f"`{name}` must be a positive multiple of {multiple} (the VAE's spatial ratio"
                    f" {self.vae_scale_factor_spatial} times the U-Net's downsampling {self.unet_downsample_factor}),"
                    f" got {size!r}."
                )
        _check_finite_number("fps", fps)
        if fps <= 0:
            raise ValueError(f"`fps` must be a positive number, got {fps!r}.")

        # 4. sampling
        if timesteps is not None and sigmas is not None:
            raise ValueError("Pass only one of `timesteps` and `sigmas`, not both.")
        set_timesteps_parameters = inspect.signature(self.scheduler.set_timesteps).parameters
        for name, value in (("timesteps", timesteps), ("sigmas", sigmas)):
            if value is None:
                continue
            _check_schedule(name, value)
            if name not in set_timesteps_parameters:
                raise ValueError(
                    f"`{name}` was passed but {type(self.scheduler).__name__}.set_timesteps does not accept custom"
                    f" {name}; use a scheduler that does or pass `num_inference_steps`."
                )
        if timesteps is None and sigmas is None:
            if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int):
                raise TypeError(f"`num_inference_steps` must be an integer, got {num_inference_steps!r}.")
            if num_inference_steps < 1:
                raise ValueError(f"`num_inference_steps` must be >= 1, got {num_inference_steps}.")
            if video is not None and strength > 0 and int(num_inference_steps * strength) == 0:
                raise ValueError(
                    f"`strength`={strength} keeps none of the {num_inference_steps} steps (`num_inference_steps`);"
                    " raise one of them, or pass `strength=0` for the video's reconstruction."
                )
        for name, value in (("guidance_scale", guidance_scale), ("guidance_rescale", guidance_rescale)):
            _check_finite_number(name, value)
        if not 0.0 <= guidance_rescale <= 1.0:
            raise ValueError(f"`guidance_rescale` must be in [0.0, 1.0], got {guidance_rescale}.")
        _check_finite_number("eta", eta)
        if eta < 0:
            raise ValueError(f"`eta` must be >= 0, got {eta!r}.")
        if isinstance(num_videos_per_prompt, bool) or not isinstance(num_videos_per_prompt, int):
            raise TypeError(f"`num_videos_per_prompt` must be an integer, got {num_videos_per_prompt!r}.")
        if num_videos_per_prompt < 1:
            raise ValueError(f"`num_videos_per_prompt` must be >= 1, got {num_videos_per_prompt}.")
        total_batch_size = batch_size * num_videos_per_prompt
        if generator is not None and not (
            isinstance(generator, torch.Generator)
            or (isinstance(generator, list) and all(isinstance(g, torch.Generator) for g in generator))
        ):
            raise TypeError(
                "`generator` must be a `torch.Generator` or a list of them (e.g. `torch.Generator().manual_seed(0)`),"
                f" got {type(generator).__name__}: {generator!r}."
            )
        if isinstance(generator, list) and len(generator) != total_batch_size:
            raise ValueError(
                f"`generator` is a list of {len(generator)} generators but the batch has {total_batch_size} videos"
                f" ({batch_size} prompts x {num_videos_per_prompt} videos per prompt); pass one generator or one per"
                " video."
            )
        if latents is not None:
            expected_shape = self.latents_shape(total_batch_size, num_frames, height, width)
            if not isinstance(latents, torch.Tensor) or tuple(latents.shape) != expected_shape:
                raise ValueError(
                    f"`latents` must have shape {expected_shape} for this call, got"
                    f" {tuple(getattr(latents, 'shape', ()))}."
                )
            _check_finite_tensor("latents", latents)
        if cross_attention_kwargs is not None and not isinstance(cross_attention_kwargs, dict):
            raise TypeError(
                f"`cross_attention_kwargs` must be a dict or None, got {type(cross_attention_kwargs).__name__}."
            )

        # 5. outputs
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {list(OUTPUT_TYPES)}, got {output_type!r}.")
        if callback_on_step_end is not None and not callable(callback_on_step_end):
            raise TypeError(
                f"`callback_on_step_end` must be callable (a function or a `PipelineCallback`), got"
                f" {type(callback_on_step_end).__name__}."
            )
        if callback_on_step_end_tensor_inputs is not None:
            unknown = [k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]
            if unknown:
                raise ValueError(
                    f"`callback_on_step_end_tensor_inputs` has unknown entries {unknown}; allowed are"
                    f" {self._callback_tensor_inputs}."
                )
        if decode_chunk_size is not None and (
            isinstance(decode_chunk_size, bool) or not isinstance(decode_chunk_size, int) or decode_chunk_size < 1
        ):
            raise ValueError(f"`decode_chunk_size` must be an integer >= 1 or None, got {decode_chunk_size!r}.")

        # 6. the U-Net's extra conditioning input
        conditioning_channels = self.unet.config.get("conditioning_channels", 0) or 0
        num_channels_latents = self.unet.config.in_channels
        if conditioning_channels not in (0, num_channels_latents, num_channels_latents + 1):
            raise ValueError(
                f"The U-Net's `conditioning_channels`={conditioning_channels} is not supported: use 0, the latent"
                f" channels ({num_channels_latents}) or the latent channels plus a mask ({num_channels_latents + 1})."
            )

    def _check_clip_skip(self, clip_skip: int | None) -> None:
        # `clip_skip` layers are skipped from the end, so at least one layer of the text encoder must remain
        if clip_skip is None:
            return
        if isinstance(clip_skip, bool) or not isinstance(clip_skip, int) or clip_skip < 0:
            raise ValueError(f"`clip_skip` must be an integer >= 0 or None, got {clip_skip!r}.")
        num_layers = getattr(getattr(self.text_encoder, "config", None), "num_hidden_layers", None)
        if num_layers is not None and clip_skip >= num_layers:
            raise ValueError(
                f"`clip_skip` is {clip_skip}, but the text encoder has {num_layers} layers: skip at most"
                f" {num_layers - 1}."
            )

    def latents_shape(self, batch_size: int, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        r"""Returns the shape `(batch_size, channels, latent_frames, latent_height, latent_width)` of the latents."""
        return (
            batch_size,
            self.unet.config.in_channels,
            num_latent_frames(num_frames, self.vae_scale_factor_temporal),
            height // self.vae_scale_factor_spatial,
            width // self.vae_scale_factor_spatial,
        )

    def _latents_statistics(self, latents: torch.Tensor) -> tuple[torch.Tensor | float, ...]:
        # the VAE's normalisation: `(z - shift - mean) * scaling / std`, each part optional in its config
        config = self.vae.config
        scaling_factor = config.get("scaling_factor") or 1.0
        shift_factor = config.get("shift_factor") or 0.0
        latents_mean, latents_std = config.get("latents_mean"), config.get("latents_std")
        stats_shape = (1, latents.shape[1], 1, 1, 1)
        if latents_mean is not None:
            latents_mean = torch.tensor(latents_mean, device=latents.device, dtype=latents.dtype).view(stats_shape)
        else:
            latents_mean = 0.0
        if latents_std is not None:
            latents_std = torch.tensor(latents_std, device=latents.device, dtype=latents.dtype).view(stats_shape)
        else:
            latents_std = 1.0
        return scaling_factor, shift_factor, latents_mean, latents_std

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        r"""
        Encodes pixels to normalised latents (the mode of the VAE's latent distribution).

        Args:
            video (`torch.Tensor`):
                Pixels in [-1, 1] of shape `(batch_size, 3, num_frames, height, width)`; an image is a 1-frame video.

        Returns:
            `torch.Tensor`: Latents of shape `(batch_size, channels, latent_frames, latent_height, latent_width)`.
        """
        video = video.to(device=self.vae.device, dtype=self.vae.dtype)
        batch_size, _, num_frames, height, width = video.shape
        if self.vae_encodes_single_frames:
            frames = video.permute(0, 2, 1, 3, 4).reshape(batch_size * num_frames, -1, height, width)
            latents = latent_distribution_mode(self.vae.encode(frames))
            latents = latents.reshape(batch_size, num_frames, *latents.shape[1:]).permute(0, 2, 1, 3, 4)
        else:
            latents = latent_distribution_mode(self.vae.encode(video))

        scaling_factor, shift_factor, latents_mean, latents_std = self._latents_statistics(latents)
        return (latents - shift_factor - latents_mean) * scaling_factor / latents_std

    def decode_latents(self, latents: torch.Tensor, decode_chunk_size: int | None = None) -> torch.Tensor:
        r"""
        Decodes normalised latents to pixels.

        Args:
            latents (`torch.Tensor`):
                Latents of shape `(batch_size, channels, latent_frames, latent_height, latent_width)`.
            decode_chunk_size (`int`, *optional*):
                The number of latent frames decoded at once (all by default). Passed as `chunk_size` to VAEs whose
                `decode` accepts it; diffusers' video VAEs stream their decode on their own.

        Returns:
            `torch.Tensor`: Float32 pixels in [-1, 1] of shape `(batch_size, 3, num_frames, height, width)`.
        """
        latents = latents.to(self.vae.dtype)
        scaling_factor, shift_factor, latents_mean, latents_std = self._latents_statistics(latents)
        latents = latents * latents_std / scaling_factor + latents_mean + shift_factor

        batch_size, _, latent_frames, latent_height, latent_width = latents.shape
        if self.vae_encodes_single_frames:
            frames = latents.permute(0, 2, 1, 3, 4).reshape(
                batch_size * latent_frames, -1, latent_height, latent_width
            )
            chunk_size = decode_chunk_size or frames.shape[0]
            decoded = [
                self.vae.decode(frames[start : start + chunk_size], return_dict=False)[0]
                for start in range(0, frames.shape[0], chunk_size)
            ]
            video = torch.cat(decoded)
            video = video.reshape(batch_size, latent_frames, *video.shape[1:]).permute(0, 2, 1, 3, 4)
        elif "chunk_size" in inspect.signature(self.vae.decode).parameters:
            video = self.vae.decode(latents, return_dict=False, chunk_size=decode_chunk_size)[0]
        else:
            video = self.vae.decode(latents, return_dict=False)[0]
        # float32 output works for every output type and costs little next to the decode
        return video.float()

    def preprocess_conditioning(self, image: Any, video: Any, height: int, width: int) -> torch.Tensor | None:
        r"""
        Turns `image` or `video` into pixels of shape `(batch, 3, frames, height, width)` in [-1, 1].

        Images and frames are converted to RGB first, as diffusers' `load_image` does: PIL images with
        `convert("RGB")`, arrays and tensors with 1 (L) or 2 (LA) channels by repeating the first, with 4 (RGBA) by
        dropping the alpha; uint8 arrays and tensors are divided by 255.
        """
        if image is not None:
            images = [_to_rgb(item) for item in _image_items(image)]
            pixels = torch.cat([self.video_processor.preprocess(item, height=height, width=width) for item in images])
            return pixels.unsqueeze(2)
        if video is not None:
            videos = []
            for item in _video_items(video):
                frames = [_to_rgb(frame) for frame in item] if isinstance(item, list) else _to_rgb(item)
                videos.append(self.video_processor.preprocess_video(frames, height=height, width=width))
            return torch.cat(videos)
        return None

    def _warn_if_not_finite(
        self, output: torch.Tensor, name: str, guidance_scale: float, timesteps_given: bool
    ) -> None:
        # the inputs were all finite, so a non-finite result comes from an overflow during sampling or decoding
        finite = torch.isfinite(output)
        if finite.all():
            return
        if abs(guidance_scale) > LARGE_GUIDANCE_SCALE:
            cause = (
                f"`guidance_scale`={guidance_scale:g} is far beyond the usual values (about 1 to 20), so the guided"
                " noise prediction overflowed; use a smaller `guidance_scale`"
            )
        elif self.unet.dtype in (torch.float16, torch.bfloat16) or self.vae.dtype in (torch.float16, torch.bfloat16):
            cause = (
                f"the U-Net ({self.unet.dtype}) or the VAE ({self.vae.dtype}) overflowed in half precision; load the"
                " pipeline with `torch_dtype=torch.float32`"
            )
        elif timesteps_given:
            cause = "the custom `timesteps` or `sigmas` do not suit the scheduler; try `num_inference_steps` instead"
        else:
            cause = "the model's weights or the scheduler's settings; try another scheduler or `guidance_scale`"
        logger.warning(
            f"The generated {name} hold {int((~finite).sum())} non-finite values (NaN or inf) of {output.numel()},"
            f" so the video is not usable. Likely cause: {cause}."
        )

    def prepare_latents(
        self,
        batch_size: int,
        num_frames: int,
        height: int,
        width: int,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | list[torch.Generator] | None,
        latents: torch.Tensor | None = None,
        video_latents: torch.Tensor | None = None,
        timestep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""
        Returns the starting latents: scaled noise, or (video-to-video) `video_latents` noised to `timestep`.

        `latents`, when given, is used as the noise.
        """
        shape = self.latents_shape(batch_size, num_frames, height, width)
        if latents is None:
            noise = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        else:
            noise = latents.to(device=device, dtype=dtype)

        if video_latents is None:
            # flow-matching schedulers start from unit noise and have no `init_noise_sigma`
            return noise * getattr(self.scheduler, "init_noise_sigma", 1.0)
        if timestep is None:
            # strength 0: nothing to denoise, the video's latents are the result
            return video_latents.to(device=device, dtype=dtype)
        return self.add_noise(video_latents.to(device=device, dtype=dtype), noise, timestep)

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        r"""Noises clean `latents` to `timestep` with the scheduler (`scale_noise` for flow-matching schedulers)."""
        timestep = timestep.reshape(-1)[:1].expand(latents.shape[0])
        if hasattr(self.scheduler, "scale_noise"):
            return self.scheduler.scale_noise(latents, timestep, noise)
        return self.scheduler.add_noise(latents, noise, timestep)

    def get_timesteps(self, num_inference_steps: int, strength: float) -> tuple[torch.Tensor, int]:
        r"""Keeps the last `strength` fraction of the schedule, as diffusers' image-to-image pipelines do."""
        init_timestep = min(int(num_inference_steps * strength), num_inference_steps)
        t_start = max(num_inference_steps - init_timestep, 0)
        timesteps = self.scheduler.timesteps[t_start * self.scheduler.order :]
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(t_start * self.scheduler.order)
        return timesteps, num_inference_steps - t_start

    def prepare_extra_step_kwargs(
        self, generator: torch.Generator | list[torch.Generator] | None, eta: float
    ) -> dict[str, Any]:
        r"""Returns the `eta` and `generator` arguments that the scheduler's `step` accepts."""
        step_parameters = set(inspect.signature(self.scheduler.step).parameters.keys())
        extra_step_kwargs = {}
        if "eta" in step_parameters:
            extra_step_kwargs["eta"] = eta
        if "generator" in step_parameters:
            extra_step_kwargs["generator"] = generator
        return extra_step_kwargs

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def guidance_rescale(self) -> float:
        return self._guidance_rescale

    # `guidance_scale` is the weight `w` of equation (2) of the Imagen paper (https://huggingface.co/papers/2205.11487);
    # `guidance_scale = 1` means no classifier-free guidance.
    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1.0

    @property
    def cross_attention_kwargs(self) -> dict[str, Any] | None:
        return self._cross_attention_kwargs

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    # the timestep of the running denoising step, for diffusers' cache hooks (`current_timestep_callback`)
    @property
    def current_timestep(self) -> torch.Tensor | None:
        return self._current_timestep

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        image: PIL.Image.Image | np.ndarray | torch.Tensor | list | None = None,
        video: list[PIL.Image.Image] | np.ndarray | torch.Tensor | list | None = None,
        strength: float = 0.8,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        fps: float | None = None,
        num_inference_steps: int | None = None,
        timesteps: list[int] | None = None,
        sigmas: list[float] | None = None,
        guidance_scale: float | None = None,
        guidance_rescale: float = 0.0,
        num_videos_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable[[Any, int, int, dict], dict]
        | PipelineCallback
        | MultiPipelineCallbacks
        | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        clip_skip: int | None = None,
        decode_chunk_size: int | None = None,
    ) -> VideoLatentPipelineOutput | tuple:
        r"""
        The call function to the pipeline for generation.

        Args:
            prompt (`str` or `list[str]`, *optional*):
                The prompt or prompts to guide the video generation. If not defined, pass `prompt_embeds`.
            negative_prompt (`str` or `list[str]`, *optional*):
                The prompt or prompts to guide away from. Ignored when not using guidance (`guidance_scale <= 1`).
            image (`PIL.Image.Image`, `np.ndarray`, `torch.Tensor` or a list of them, *optional*):
                Image-to-video: the first frame, one for all prompts or one per prompt (arrays `(height, width,
                channels)` and tensors `(channels, height, width)` hold floats in [0, 1], as everywhere in diffusers,
                or uint8 values). Images are converted to RGB as diffusers' `load_image` does (L, LA, P, RGBA, CMYK;
                1, 2 or 4 channels for arrays and tensors, the alpha dropped). It is encoded as a 1-frame video; a
                U-Net with `conditioning_channels > 0` receives it as extra input channels at every step and the
                result's first latent frame is the image's latent; otherwise the first latent frame is replaced by it
                (noised to the current timestep) at every step.
            video (`list[PIL.Image.Image]`, `np.ndarray`, `torch.Tensor` or a list of them, *optional*):
                Video-to-video: the video to transform, one for all prompts or one per prompt (arrays `(frames,
                height, width, channels)`, tensors `(frames, channels, height, width)`), converted to RGB as `image`.
            strength (`float`, *optional*, defaults to 0.8):
                Video-to-video only: how much of `video` is replaced, in [0, 1]. 1 starts from pure noise, 0 returns
                the video's reconstruction; only the last `strength` fraction of the schedule is run.
            num_frames (`int`, *optional*):
                The number of frames to generate, `1 + k * r` for the VAE's temporal ratio `r`. Defaults to the length
                of `video` in video-to-video, else to `generation_defaults["num_frames"]`, else 17. A U-Net with a
                frame-position table takes at most `1 + (temporal_max_frames - 1) * r` frames.
            height (`int`, *optional*):
                The height in pixels of the generated video. Defaults to `generation_defaults["height"]`, else
                `unet.config.sample_size * vae_scale_factor_spatial`.
            width (`int`, *optional*):
                The width in pixels of the generated video. Defaults like `height`.
            fps (`float`, *optional*):
                Frames per second; passed to the U-Net when its config has `use_fps_conditioning`, otherwise only
                meaningful for exporting. Defaults to `generation_defaults["fps"]`, else 8.
            num_inference_steps (`int`, *optional*):
                The number of denoising steps. Defaults to `generation_defaults["num_inference_steps"]`, else 50.
            timesteps (`list[int]`, *optional*):
                Custom timesteps for schedulers whose `set_timesteps` accepts them.
            sigmas (`list[float]`, *optional*):
                Custom sigmas for schedulers whose `set_timesteps` accepts them.
            guidance_scale (`float`, *optional*):
                Classifier-free guidance scale; guidance is on when `guidance_scale > 1`. Defaults to
                `generation_defaults["guidance_scale"]`, else 7.5.
            guidance_rescale (`float`, *optional*, defaults to 0.0):
                Guidance rescale factor from [Common Diffusion Noise Schedules and Sample Steps are
                Flawed](https://huggingface.co/papers/2305.08891), in [0, 1].
            num_videos_per_prompt (`int`, *optional*, defaults to 1):
                The number of videos to generate per prompt.
            eta (`float`, *optional*, defaults to 0.0):
                The η of the [DDIM](https://huggingface.co/papers/2010.02502) paper, for schedulers whose `step`
                accepts `eta`.
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*):
                One generator, or one per generated video, to make generation deterministic.
            latents (`torch.Tensor`, *optional*):
                Pre-generated Gaussian noise of shape `(batch_size * num_videos_per_prompt, channels, latent_frames,
                latent_height, latent_width)`, used instead of sampling it from `generator`.
            prompt_embeds (`torch.Tensor`, *optional*):
                Pre-generated text embeddings, used instead of encoding `prompt`.
            negative_prompt_embeds (`torch.Tensor`, *optional*):
                Pre-generated negative text embeddings, used instead of encoding `negative_prompt`.
            output_type (`str`, *optional*, defaults to `"np"`):
                One of `"pil"`, `"np"`, `"pt"` or `"latent"`.
            return_dict (`bool`, *optional*, defaults to `True`):
                Whether to return a [`VideoLatentPipelineOutput`] instead of a plain tuple.
            callback_on_step_end (`Callable`, `PipelineCallback` or `MultiPipelineCallbacks`, *optional*):
                Called at the end of each denoising step as `callback_on_step_end(self, step, timestep,
                callback_kwargs)`; it returns a dict whose entries replace the named tensors.
            callback_on_step_end_tensor_inputs (`list[str]`, *optional*, defaults to `["latents"]`):
                The tensors passed in `callback_kwargs`, a subset of `._callback_tensor_inputs`.
            cross_attention_kwargs (`dict`, *optional*):
                Keyword arguments passed to the U-Net's attention processors.
            clip_skip (`int`, *optional*):
                The number of final CLIP layers to skip when encoding the prompts, fewer than the text encoder's layers.
            decode_chunk_size (`int`, *optional*):
                The number of latent frames decoded at once; lower values use less memory. All frames by default.

        Examples:

        Returns:
            [`VideoLatentPipelineOutput`] or `tuple`:
                A [`VideoLatentPipelineOutput`] if `return_dict` is `True`, otherwise a tuple whose first element is
                the generated frames.
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        if callback_on_step_end_tensor_inputs is None:
            callback_on_step_end_tensor_inputs = ["latents"]

        # 0. Default settings: the caller's, else the video's length, else the pipeline's `generation_defaults`
        if num_frames is None:
            num_frames = _video_length(video)
        settings = self.resolve_generation_settings(
            num_frames=num_frames,
            height=height,
            width=width,
            fps=fps,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
        )
        num_frames, height, width = settings["num_frames"], settings["height"], settings["width"]
        fps, num_inference_steps, guidance_scale = (
            settings["fps"],
            settings["num_inference_steps"],
            settings["guidance_scale"],
        )

        # 1. Check inputs. Raise error if not correct
        self.check_inputs(
            prompt=prompt,
            negative_prompt=negative_prompt,
            image=image,
            video=video,
            strength=strength,
            num_frames=num_frames,
            height=height,
            width=width,
            fps=fps,
            num_inference_steps=num_inference_steps,
            timesteps=timesteps,
            sigmas=sigmas,
            guidance_scale=guidance_scale,
            guidance_rescale=guidance_rescale,
            num_videos_per_prompt=num_videos_per_prompt,
            generator=generator,
            latents=latents,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            output_type=output_type,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            decode_chunk_size=decode_chunk_size,
            eta=eta,
            clip_skip=clip_skip,
            callback_on_step_end=callback_on_step_end,
            cross_attention_kwargs=cross_attention_kwargs,
        )
        self._guidance_scale = guidance_scale
        self._guidance_rescale = guidance_rescale
        self._cross_attention_kwargs = cross_attention_kwargs
        self._num_timesteps = 0
        self._current_timestep = None
        self._interrupt = False

        # 2. Define call parameters
        if prompt is not None:
            batch_size = 1 if isinstance(prompt, str) else len(prompt)
        else:
            batch_size = prompt_embeds.shape[0]
        num_videos = batch_size * num_videos_per_prompt
        device = self._execution_device
        dtype = self.unet.dtype

        # 3. Encode input prompt
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt,
            device=device,
            num_videos_per_prompt=num_videos_per_prompt,
            do_classifier_free_guidance=self.do_classifier_free_guidance,
            negative_prompt=negative_prompt,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            clip_skip=clip_skip,
            dtype=dtype,
        )
        # one U-Net call per step for both halves of classifier-free guidance: [uncond, cond]
        if self.do_classifier_free_guidance:
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])

        # 4. Encode the image or video conditioning
        conditioning_pixels = self.preprocess_conditioning(image, video, height, width)
        condition_latents = None
        if conditioning_pixels is not None:
            condition_latents = self.encode_video(conditioning_pixels).to(device=device, dtype=dtype)
            # one item for all prompts, or one per prompt; then one copy per generated video
            condition_latents = condition_latents.expand(batch_size, *condition_latents.shape[1:])
            condition_latents = condition_latents.repeat_interleave(num_videos_per_prompt, dim=0)

        # 5. Prepare timesteps
        latents_shape = self.latents_shape(num_videos, num_frames, height, width)
        scheduler_kwargs = {}
        if self.scheduler.config.get("use_dynamic_shifting", False):
            # resolution-dependent shift of flow-matching schedules, from the number of latent tokens
            image_seq_len = latents_shape[2] * latents_shape[3] * latents_shape[4]
            scheduler_kwargs["mu"] = timestep_shift_for_tokens(
                image_seq_len,
                self.scheduler.config.get("base_image_seq_len", 256),
                self.scheduler.config.get("max_image_seq_len", 4096),
                self.scheduler.config.get("base_shift", 0.5),
                self.scheduler.config.get("max_shift", 1.15),
            )
        timesteps_given = timesteps is not None or sigmas is not None
        if timesteps_given:
            num_inference_steps = None
        timesteps, num_inference_steps = set_scheduler_timesteps(
            self.scheduler, num_inference_steps, device, timesteps, sigmas, **scheduler_kwargs
        )
        video_latents = None
        latent_timestep = None
        if video is not None:
            timesteps, num_inference_steps = self.get_timesteps(num_inference_steps, strength)
            video_latents = condition_latents
            latent_timestep = timesteps[:1] if len(timesteps) > 0 else None
        self._num_timesteps = len(timesteps)

        # 6. Prepare latent variables
        latents = self.prepare_latents(
            num_videos,
            num_frames,
            height,
            width,
            dtype,
            device,
            generator,
            latents,
            video_latents=video_latents,
            timestep=latent_timestep,
        )

        conditioning_channels = self.unet.config.get("conditioning_channels", 0) or 0
        conditioning_latents = None
        image_latents = None
        image_noise = None
        if conditioning_channels > 0:
            conditioning_latents = build_conditioning_latents(
                latents, conditioning_channels, condition_latents if image is not None else None
            )
        elif image is not None:
            image_latents = condition_latents
            image_noise = randn_tensor(image_latents.shape, generator=generator, device=device, dtype=dtype)
            if len(timesteps) > 0:
                first_frame = self.add_noise(image_latents, image_noise, timesteps[:1])
            else:
                first_frame = image_latents
            latents = torch.cat([first_frame, latents[:, :, 1:]], dim=2)

        # 7. Prepare extra step kwargs
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)
        use_fps_conditioning = self.unet.config.get("use_fps_conditioning", False)

        # 8. Denoising loop
        num_warmup_steps = len(timesteps) - num_inference_steps * self.scheduler.order
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue

                # a callback may switch guidance off (and may or may not drop the unconditional embeddings)
                do_classifier_free_guidance = (
                    self.do_classifier_free_guidance and prompt_embeds.shape[0] == 2 * latents.shape[0]
                )
                if do_classifier_free_guidance:
                    encoder_hidden_states = prompt_embeds
                    latent_model_input = torch.cat([latents] * 2)
                else:
                    encoder_hidden_states = prompt_embeds[-latents.shape[0] :]
                    latent_model_input = latents
                if hasattr(self.scheduler, "scale_model_input"):
                    latent_model_input = self.scheduler.scale_model_input(latent_model_input, t)
                timestep = t.expand(latent_model_input.shape[0])

                unet_kwargs = {}
                if use_fps_conditioning:
                    unet_kwargs["fps"] = torch.full((latent_model_input.shape[0],), float(fps), device=device)
                if conditioning_latents is not None:
                    repeats = 2 if do_classifier_free_guidance else 1
                    unet_kwargs["conditioning_latents"] = torch.cat([conditioning_latents] * repeats)

                # one named call per step for diffusers' cache hooks; a U-Net without `CacheMixin` runs as is
                self._current_timestep = t
                cache_context = (
                    self.unet.cache_context("cond_uncond") if isinstance(self.unet, CacheMixin) else nullcontext()
                )
                with cache_context:
                    noise_pred = self.unet(
                        latent_model_input,
                        timestep,
                        encoder_hidden_states=encoder_hidden_states,
                        cross_attention_kwargs=self.cross_attention_kwargs,
                        return_dict=False,
                        **unet_kwargs,
                    )[0]

                if do_classifier_free_guidance:
                    noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
                    noise_pred = noise_pred_uncond + self.guidance_scale * (noise_pred_text - noise_pred_uncond)
                    if self.guidance_rescale > 0.0:
                        noise_pred = rescale_guidance(noise_pred, noise_pred_text, self.guidance_rescale)

                # compute the previous noisy sample x_t -> x_t-1
                latents_dtype = latents.dtype
                latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]
                if latents.dtype != latents_dtype:
                    latents = latents.to(latents_dtype)

                if image_latents is not None:
                    # keep the first frame on the image, noised to the level the next step expects
                    if i < len(timesteps) - 1:
                        first_frame = self.add_noise(image_latents, image_noise, timesteps[i + 1 : i + 2])
                    else:
                        first_frame = image_latents
                    latents = torch.cat([first_frame, latents[:, :, 1:]], dim=2)

                if callback_on_step_end is not None:
                    callback_kwargs = {}
                    for k in callback_on_step_end_tensor_inputs:
                        callback_kwargs[k] = locals()[k]
                    callback_outputs = callback_on_step_end(self, i, t, callback_kwargs)

                    latents = callback_outputs.pop("latents", latents)
                    prompt_embeds = callback_outputs.pop("prompt_embeds", prompt_embeds)
                    negative_prompt_embeds = callback_outputs.pop("negative_prompt_embeds", negative_prompt_embeds)

                if i == len(timesteps) - 1 or ((i + 1) > num_warmup_steps and (i + 1) % self.scheduler.order == 0):
                    progress_bar.update()

        self._current_timestep = None
        if conditioning_latents is not None and image is not None:
            # the U-Net drew the other frames from the image's exact latent: frame 0 is that latent, not a redraw
            latents = torch.cat([condition_latents.to(latents.dtype), latents[:, :, 1:]], dim=2)

        # 9. Decode
        if output_type == "latent":
            frames = latents
            self._warn_if_not_finite(frames, "latents", self.guidance_scale, timesteps_given)
        else:
            frames = self.decode_latents(latents, decode_chunk_size=decode_chunk_size)
            self._warn_if_not_finite(frames, "frames", self.guidance_scale, timesteps_given)
            frames = self.video_processor.postprocess_video(video=frames, output_type=output_type)

        # 10. Offload all models
        self.maybe_free_model_hooks()

        if not return_dict:
            return (frames,)
        return VideoLatentPipelineOutput(frames=frames)
