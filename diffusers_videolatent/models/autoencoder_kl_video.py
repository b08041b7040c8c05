# PLACEHOLDER: replaced by the VAE work in progress.
from diffusers import ConfigMixin, ModelMixin  # noqa: F401


class AutoencoderKLVideo(ModelMixin, ConfigMixin):
    pass
