# PLACEHOLDER: replaced by the pipeline work in progress.
class VideoLatentPipelineOutput:
    pass
