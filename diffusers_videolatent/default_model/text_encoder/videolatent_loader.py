"""
Entry point for diffusers' `trust_remote_code=True` loaders, written by diffusers-videolatent's `save_pretrained`.

It holds no model code: it imports the installed `diffusers-videolatent` package and re-exports its classes.
"""

try:
    from diffusers_videolatent import AutoencoderKLVideo, UNetSpatioTemporalModel, VideoLatentPipeline
    from diffusers_videolatent.remote_code import VideoLatentAutoModel
except ImportError as error:
    raise ImportError(
        "This folder was saved by diffusers-videolatent; install it to load it: `pip install diffusers-videolatent`."
    ) from error


__all__ = ["AutoencoderKLVideo", "UNetSpatioTemporalModel", "VideoLatentAutoModel", "VideoLatentPipeline"]
