"""Stores the default model's recommended settings in a trained pipeline folder (its model_index.json).

    python scripts/set_generation_defaults.py FOLDER NUM_INFERENCE_STEPS GUIDANCE_SCALE

`pipe(prompt)` and `videolatent generate` then use them; the save is atomic, like every `save_pretrained` here.
"""

import sys

from diffusers_videolatent import VideoLatentPipeline
from diffusers_videolatent.training.moving_shapes import VOCABULARY


def main(folder: str, num_inference_steps: int, guidance_scale: float) -> None:
    pipe = VideoLatentPipeline.from_pretrained(folder)
    pipe.register_to_config(
        generation_defaults={
            "num_frames": 17,
            "height": 64,
            "width": 64,
            "fps": 8,
            "num_inference_steps": num_inference_steps,
            "guidance_scale": guidance_scale,
            "vocabulary": list(VOCABULARY),
        }
    )
    pipe.save_pretrained(folder)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python scripts/set_generation_defaults.py FOLDER NUM_INFERENCE_STEPS GUIDANCE_SCALE")
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
