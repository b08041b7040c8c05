"""The README's LoRA command, as written, on a tiny ModelScope/Zeroscope pipeline converted by
`convert_text_to_video_sd.py`, trained on a folder of encoded clips; the LoRA loads into the pipeline and unloads."""

import os
import re
import shlex
import subprocess
import sys

import numpy as np
import torch

from diffusers_videolatent import VideoLatentPipeline

from ..testing_utils import REPOSITORY, write_index_video


CALL = {"num_frames": 3, "height": 16, "width": 16, "num_inference_steps": 2, "output_type": "np"}


def readme_lora_command() -> list[str]:
    """The README's first `train_text_to_video` command (the Zeroscope LoRA), split as a shell splits it."""
    readme = (REPOSITORY / "README.md").read_text()
    commands = re.findall(r"^accelerate launch .*?(?<!\\)\n", readme, re.M | re.S)
    command = next(command for command in commands if "--rank" in command and "zeroscope" in command)
    return shlex.split(command.replace("\\\n", " "))


def run(pipe) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    return pipe("a red circle moving right", generator=torch.Generator().manual_seed(0), **CALL).frames


def test_readme_zeroscope_lora_command_trains_a_lora_that_loads_and_unloads(
    converted_text_to_video_sd_folder, tmp_path
):
    command = readme_lora_command()
    assert command[:3] == ["accelerate", "launch", "-m"] and "--gradient_checkpointing" in command
    (tmp_path / "zeroscope-videolatent").symlink_to(converted_text_to_video_sd_folder)
    clips = tmp_path / "my_clips"
    clips.mkdir()
    for index in range(4):  # the default batch of 4, clips longer than the default 17 frames
        write_index_video(clips / f"clip{index}.mp4", num_frames=20 + index, height=64, width=80)
    (clips / "metadata.csv").write_text("file_name,text\n" + "".join(f"clip{i}.mp4,grey ramp {i}\n" for i in range(4)))

    # as written, but 2 steps instead of 300 and a 2-step final validation (the last value of an option wins); no
    # accelerate config of this machine
    arguments = [sys.executable, "-m", "accelerate.commands.launch", *command[2:], "--max_train_steps", "2"]
    arguments += ["--num_validation_inference_steps", "2"]
    environment = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(arguments, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    output = tmp_path / "out" / "lora"
    assert (output / "pytorch_lora_weights.safetensors").is_file()
    assert not (output / "unet").exists()  # the frozen base is never written
    assert len(list((output / "validation").glob("step-000002-*.gif"))) == 3  # made with the LoRA on

    pipe = VideoLatentPipeline.from_pretrained(tmp_path / "zeroscope-videolatent")
    pipe.unet.requires_grad_(False)
    before = run(pipe)
    pipe.load_lora_weights(output)
    with_lora = run(pipe)
    pipe.unload_lora_weights()
    after = run(pipe)
    assert np.abs(with_lora - before).max() > 1e-3  # two steps at 5e-4 change the video
    assert np.array_equal(after, before)
