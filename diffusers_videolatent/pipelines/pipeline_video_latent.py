# PLACEHOLDER: replaced by the pipeline work in progress.
from diffusers import DiffusionPipeline


class VideoLatentPipeline(DiffusionPipeline):
    pass
