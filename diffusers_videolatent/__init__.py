"""Text-to-video latent diffusion for Hugging Face Diffusers: a spatio-temporal U-Net, a causal video VAE and a pipeline.

The public classes are imported lazily (PEP 562), on first access: `import diffusers_videolatent` and the
`videolatent` command's `--help` stay free of torch and diffusers. diffusers resolves the classes recorded in
`model_index.json` as `("diffusers_videolatent", ClassName)` with `getattr` on this package, which imports them.
"""

import importlib
from typing import TYPE_CHECKING, Any


__version__ = "0.1.0"

# the public class names and the subpackage that defines each
_LAZY_IMPORTS = {
    "AutoencoderKLVideo": "models",
    "DeepCacheConfig": "models",
    "UNetSpatioTemporalModel": "models",
    "UNetSpatioTemporalOutput": "models",
    "VideoLatentPipeline": "pipelines",
    "VideoLatentPipelineOutput": "pipelines",
}

__all__ = [
    "AutoencoderKLVideo",
    "DeepCacheConfig",
    "UNetSpatioTemporalModel",
    "UNetSpatioTemporalOutput",
    "VideoLatentPipeline",
    "VideoLatentPipelineOutput",
]

if TYPE_CHECKING:
    from .models import AutoencoderKLVideo, DeepCacheConfig, UNetSpatioTemporalModel, UNetSpatioTemporalOutput
    from .pipelines import VideoLatentPipeline, VideoLatentPipelineOutput


def __getattr__(name: str) -> Any:
    if name not in _LAZY_IMPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY_IMPORTS[name]}", __name__), name)
    # later lookups find the class directly, without calling this function again
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
