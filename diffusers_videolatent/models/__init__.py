from .autoencoder_kl_video import AutoencoderKLVideo
from .deep_cache import DeepCacheConfig
from .unet_spatio_temporal import UNetSpatioTemporalModel, UNetSpatioTemporalOutput


__all__ = ["AutoencoderKLVideo", "DeepCacheConfig", "UNetSpatioTemporalModel", "UNetSpatioTemporalOutput"]
