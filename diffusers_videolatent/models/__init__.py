from .autoencoder_kl_video import AutoencoderKLVideo
from .unet_spatio_temporal import UNetSpatioTemporalModel, UNetSpatioTemporalOutput


__all__ = ["AutoencoderKLVideo", "UNetSpatioTemporalModel", "UNetSpatioTemporalOutput"]
