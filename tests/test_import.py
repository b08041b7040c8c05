"""Importing the package is quiet and cheap: no other pipeline family's module, nothing printed.

Each check runs a fresh interpreter (an import already done by the test session would hide what the import pulls in).
"""

import json
import subprocess
import sys
from pathlib import Path


REPOSITORY = Path(__file__).resolve().parents[1]

# the diffusers.pipelines families imported: a sub-package of diffusers.pipelines, or a module inside one
LOADED_FAMILIES = """
import json, sys
from diffusers_videolatent import AutoencoderKLVideo, UNetSpatioTemporalModel, VideoLatentPipeline
families = sorted({
    name.split(".")[2]
    for name, module in list(sys.modules.items())
    if name.startswith("diffusers.pipelines.") and (name.count(".") >= 3 or hasattr(module, "__path__"))
})
print(json.dumps({"families": families, "pipeline_utils": "diffusers.pipelines.pipeline_utils" in sys.modules}))
"""


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPOSITORY, capture_output=True, text=True, timeout=300, check=True
    )


def test_import_loads_no_other_pipeline_family():
    loaded = json.loads(run_python(LOADED_FAMILIES).stdout)
    # diffusers' pipeline base is loaded (VideoLatentPipeline subclasses it), and nothing of Flux, Stable Diffusion, ...
    assert loaded["pipeline_utils"]
    assert loaded["families"] == []


def test_import_prints_nothing():
    result = run_python("from diffusers_videolatent import VideoLatentPipeline")
    assert result.stdout == ""
    assert result.stderr == ""
