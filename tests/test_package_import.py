"""The package imports its classes lazily: `import diffusers_videolatent` is light, and diffusers still finds them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import diffusers_videolatent


REPOSITORY = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPOSITORY / "diffusers_videolatent" / "default_model"


def run_python(code: str, *argv: str) -> str:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", code, *argv]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=REPOSITORY, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_import_is_light_and_classes_resolve_on_access():
    code = """
import importlib, sys
import diffusers_videolatent
heavy = sorted(name for name in ("torch", "diffusers", "transformers") if name in sys.modules)
listed = all(name in dir(diffusers_videolatent) for name in diffusers_videolatent.__all__)
module = importlib.import_module("diffusers_videolatent")
classes = {name: getattr(module, name) for name in diffusers_videolatent.__all__}
from diffusers_videolatent import VideoLatentPipeline
try:
    diffusers_videolatent.NotAClass
    missing = "no error"
except AttributeError as error:
    missing = str(error)
print(heavy, listed, VideoLatentPipeline is classes["VideoLatentPipeline"], sorted(c.__module__ for c in classes.values()), repr(missing))
"""
    heavy, rest = run_python(code).split("] ", 1)
    assert heavy == "["
    assert rest.startswith("True True ")
    assert "'diffusers_videolatent.models.autoencoder_kl_video'" in rest
    assert "'diffusers_videolatent.pipelines.pipeline_video_latent'" in rest
    assert "has no attribute 'NotAClass'" in rest


def test_diffusers_resolves_our_classes_through_the_package():
    # diffusers resolves `("diffusers_videolatent", ClassName)` with getattr on the imported package
    code = """
import sys
import diffusers
import diffusers_videolatent
from diffusers.pipelines.pipeline_loading_utils import ALL_IMPORTABLE_CLASSES, get_class_obj_and_candidates
loaded_before = "diffusers_videolatent.models.unet_spatio_temporal" in sys.modules
found = [
    get_class_obj_and_candidates("diffusers_videolatent", name, ALL_IMPORTABLE_CLASSES, diffusers.pipelines, False)[0]
    for name in ("UNetSpatioTemporalModel", "AutoencoderKLVideo")
]
print(loaded_before, [cls.__name__ for cls in found])
"""
    assert run_python(code) == "False ['UNetSpatioTemporalModel', 'AutoencoderKLVideo']"


def test_a_saved_pipeline_loads_in_a_fresh_interpreter(tmp_path):
    pipe = diffusers_videolatent.VideoLatentPipeline.from_pretrained(DEFAULT_MODEL)
    pipe.save_pretrained(tmp_path / "saved")
    index_path = tmp_path / "saved" / "model_index.json"
    index = json.loads(index_path.read_text())
    # the remote-code layout (remote_code.py): our components name the folder's videolatent_loader.py, which our own
    # from_pretrained maps back to the installed module without running it
    assert index["unet"] == ["videolatent_loader", "UNetSpatioTemporalModel"]
    code = """
import sys
from diffusers_videolatent import VideoLatentPipeline
pipe = VideoLatentPipeline.from_pretrained(sys.argv[1])
print(type(pipe).__name__, type(pipe.unet).__name__, type(pipe.vae).__name__)
"""
    expected = "VideoLatentPipeline UNetSpatioTemporalModel AutoencoderKLVideo"
    assert run_python(code, str(tmp_path / "saved")) == expected
