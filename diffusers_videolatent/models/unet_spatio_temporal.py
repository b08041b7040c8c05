# PLACEHOLDER: replaced by the UNet work in progress.
from diffusers import ConfigMixin, ModelMixin  # noqa: F401


class UNetSpatioTemporalOutput:
    pass


class UNetSpatioTemporalModel(ModelMixin, ConfigMixin):
    pass
