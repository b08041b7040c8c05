"""Text-to-video latent diffusion for Hugging Face Diffusers: a spatio-temporal U-Net, a causal video VAE and a pipeline.

Every module that defines a component is imported here eagerly: diffusers resolves the classes recorded in
`model_index.json` as `("diffusers_videolatent", ClassName)` through this package's namespace.
"""

from .models import AutoencoderKLVideo, UNetSpatioTemporalModel, UNetSpatioTemporalOutput
from .pipelines import VideoLatentPipeline, VideoLatentPipelineOutput


__version__ = "0.1.0"

__all__ = [
    "AutoencoderKLVideo",
    "UNetSpatioTemporalModel",
    "UNetSpatioTemporalOutput",
    "VideoLatentPipeline",
    "VideoLatentPipelineOutput",
]
