from .pipeline_output import VideoLatentPipelineOutput
from .pipeline_video_latent import VideoLatentPipeline


__all__ = ["VideoLatentPipeline", "VideoLatentPipelineOutput"]
