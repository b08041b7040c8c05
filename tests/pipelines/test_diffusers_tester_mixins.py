"""diffusers' own tester mixins, run against our pipeline and our two models.

    DIFFUSERS_TESTS=/path/to/diffusers/tests python -m pytest tests/pipelines/test_diffusers_tester_mixins.py -q

`DIFFUSERS_TESTS` names the `tests/` folder of a diffusers checkout (its test dependencies installed: `parameterized`
and `requests-mock` at least); without it every test here skips. The pipeline runs `PipelineTesterMixin`,
`SDFunctionTesterMixin` and `PipelineFromPipeTesterMixin` (`tests/pipelines/test_pipelines_common.py`) with the
tester config of `test_pipeline_video_latent.py`; `UNetSpatioTemporalModel` runs `ModelTesterMixin`,
`TrainingTesterMixin`, `MemoryTesterMixin`, `AttentionTesterMixin` and `LoraTesterMixin` (`tests/models/testing_utils`)
and `AutoencoderKLVideo` the first three and `AutoencoderTesterMixin` (`tests/models/autoencoders/testing_utils.py`),
on `build_unet` and `build_video_vae`.

Tests that cannot apply to these classes are skipped here, each with its reason:

- `test_save_load_optional_components`: it sets every optional component to `None` and calls the pipeline with the
  dummy prompt; our optional components are the text encoder and tokenizer, which that prompt needs (the pipeline
  raises a `ValueError` asking for `prompt_embeds`; our own mixin checks the pipeline without them, given embeddings);
- `test_from_pipe_consistent_config`, `test_from_pipe_consistent_forward_pass` (and its CPU-offload variant): they
  build Stable Diffusion pipelines (one downloaded from the Hub) and move their components to ours; an SD U-Net and
  image VAE are not our components;
- `test_StableDiffusionMixin_component`: it asserts the VAE is an `AutoencoderKL` or `AutoencoderTiny` and the U-Net
  one of diffusers' own U-Net classes;
- `test_vae_tiling`: its first half (tiled and plain decoding give the same video) passes, then it decodes 4-D image
  latents, which our video VAE refuses with a `ValueError` (it takes `[B, C, F, H, W]`).

One runs with a change to the harness only: `test_encode_prompt_works_in_isolation`, with our class exposed as
`diffusers.pipelines.VideoLatentPipeline` (the harness reads `encode_prompt`'s source from there).
`test_attention_slicing_forward_pass` runs unchanged, its mean-pixel check included (it compares the first frames).

Last run (CPU, diffusers 0.42.1 installed; the `tests/` folder of diffusers' `main` at commit 58eb52c of 2026-08-23,
the mirror at hand having no v0.42.1 tag): 147 tests, 81 passed, 1 xpassed (`test_lora_fuse_nan`, which diffusers
marks as failing on CPU), 0 failed, 65 skipped. Passed: the pipeline 23; `UNetSpatioTemporalModel` 13 (model), 6
(training, gradient checkpointing included), 4 (attention processors, QKV fusion), 13 (LoRA); `AutoencoderKLVideo` 13
(model), 6 (training), 3 (slicing, tiling, norm groups). Skipped: 51 need an accelerator (CUDA, xFormers, fp16
inference, several devices; the memory mixins run nothing on a CPU), 8 test `_keep_in_fp32_modules`, which our models
do not declare (they keep no layer in float32), and the 6 above (the from_pipe CPU-offload test needs an accelerator
too).
"""

import importlib
import importlib.util
import os
import sys
import unittest
from types import ModuleType
from unittest import mock

import diffusers
import pytest
import torch

from diffusers_videolatent import AutoencoderKLVideo, UNetSpatioTemporalModel

from ..testing_utils import TEXT_HIDDEN_SIZE, build_unet, build_video_vae
from .test_pipeline_video_latent import VideoLatentPipelineTesterConfig


DIFFUSERS_TESTS = os.environ.get("DIFFUSERS_TESTS")
if not DIFFUSERS_TESTS:
    pytest.skip("set DIFFUSERS_TESTS to a diffusers checkout's tests/ folder", allow_module_level=True)


def import_diffusers_tests(name: str) -> ModuleType:
    """`tests.<name>` of the diffusers checkout, imported as `diffusers_tests.<name>`: diffusers' tests are a package
    named `tests`, as ours are, and their modules import each other relatively."""
    if "diffusers_tests" not in sys.modules:
        folder = os.path.abspath(DIFFUSERS_TESTS)
        spec = importlib.util.spec_from_file_location(
            "diffusers_tests", os.path.join(folder, "__init__.py"), submodule_search_locations=[folder]
        )
        package = importlib.util.module_from_spec(spec)
        sys.modules["diffusers_tests"] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"diffusers_tests.{name}")


torch_device = import_diffusers_tests("testing_utils").torch_device
pipeline_testers = import_diffusers_tests("pipelines.test_pipelines_common")
model_testers = import_diffusers_tests("models.testing_utils")
autoencoder_testers = import_diffusers_tests("models.autoencoders.testing_utils")


def init_dict(model: torch.nn.Module) -> dict:
    """The constructor arguments of one of our models, read back from its config."""
    return {key: value for key, value in model.config.items() if not key.startswith("_")}


# ----------------------------------------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------------------------------------


class TestVideoLatentPipelineWithDiffusersMixins(
    VideoLatentPipelineTesterConfig,
    pipeline_testers.PipelineTesterMixin,
    pipeline_testers.SDFunctionTesterMixin,
    pipeline_testers.PipelineFromPipeTesterMixin,
    unittest.TestCase,
):
    def test_encode_prompt_works_in_isolation(self):
        # the harness reads `encode_prompt`'s source from `diffusers.pipelines.<class name>`
        name = self.pipeline_class.__name__
        with mock.patch.object(diffusers.pipelines, name, self.pipeline_class, create=True):
            super().test_encode_prompt_works_in_isolation()

    @unittest.skip("our optional components (text encoder, tokenizer) are what the dummy prompt needs")
    def test_save_load_optional_components(self):
        pass

    @unittest.skip("it moves a Stable Diffusion pipeline's components (an SD U-Net and image VAE) into ours")
    def test_from_pipe_consistent_config(self):
        pass

    @unittest.skip("it moves a Stable Diffusion pipeline's components (an SD U-Net and image VAE) into ours")
    def test_from_pipe_consistent_forward_pass(self):
        pass

    @unittest.skip("it moves a Stable Diffusion pipeline's components (an SD U-Net and image VAE) into ours")
    def test_from_pipe_consistent_forward_pass_cpu_offload(self):
        pass

    @unittest.skip("it asserts diffusers' own VAE and U-Net classes")
    def test_StableDiffusionMixin_component(self):
        pass

    @unittest.skip("its second half decodes 4-D image latents, which a video VAE refuses (it takes [B, C, F, H, W])")
    def test_vae_tiling(self):
        pass


# ----------------------------------------------------------------------------------------------------------------------
# UNetSpatioTemporalModel
# ----------------------------------------------------------------------------------------------------------------------


class UNetSpatioTemporalModelTesterConfig(model_testers.BaseModelTesterConfig):
    model_class = UNetSpatioTemporalModel
    main_input_name = "sample"
    output_shape = (4, 3, 8, 8)

    def get_init_dict(self) -> dict:
        return init_dict(build_unet())

    def get_dummy_inputs(self) -> dict:
        generator = torch.Generator().manual_seed(0)
        return {
            "sample": torch.randn(2, 4, 3, 8, 8, generator=generator).to(torch_device),
            "timestep": torch.tensor([10, 900], device=torch_device),
            "encoder_hidden_states": torch.randn(2, 5, TEXT_HIDDEN_SIZE, generator=generator).to(torch_device),
        }


class TestUNetSpatioTemporalModel(UNetSpatioTemporalModelTesterConfig, model_testers.ModelTesterMixin):
    pass


class TestUNetSpatioTemporalModelTraining(UNetSpatioTemporalModelTesterConfig, model_testers.TrainingTesterMixin):
    def test_gradient_checkpointing_is_applied(self):
        blocks = {"VideoLatentDownBlock", "VideoLatentMidBlock", "VideoLatentUpBlock"}
        transformers = {"VideoLatentSpatialTransformer", "VideoLatentTemporalTransformer"}
        super().test_gradient_checkpointing_is_applied(expected_set=blocks | transformers)


class TestUNetSpatioTemporalModelMemory(UNetSpatioTemporalModelTesterConfig, model_testers.MemoryTesterMixin):
    pass


class TestUNetSpatioTemporalModelAttention(UNetSpatioTemporalModelTesterConfig, model_testers.AttentionTesterMixin):
    pass


class TestUNetSpatioTemporalModelLora(UNetSpatioTemporalModelTesterConfig, model_testers.LoraTesterMixin):
    pass


# ----------------------------------------------------------------------------------------------------------------------
# AutoencoderKLVideo
# ----------------------------------------------------------------------------------------------------------------------


class AutoencoderKLVideoTesterConfig(model_testers.BaseModelTesterConfig):
    model_class = AutoencoderKLVideo
    main_input_name = "sample"
    output_shape = (3, 5, 16, 16)

    def get_init_dict(self) -> dict:
        return init_dict(build_video_vae())

    def get_dummy_inputs(self) -> dict:
        video = torch.rand(2, 3, 5, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
        return {"sample": video.to(torch_device)}


class TestAutoencoderKLVideo(AutoencoderKLVideoTesterConfig, model_testers.ModelTesterMixin):
    pass


class TestAutoencoderKLVideoTraining(AutoencoderKLVideoTesterConfig, model_testers.TrainingTesterMixin):
    def test_gradient_checkpointing_is_applied(self):
        super().test_gradient_checkpointing_is_applied(expected_set={"CausalEncoder3D", "CausalDecoder3D"})


class TestAutoencoderKLVideoMemory(AutoencoderKLVideoTesterConfig, model_testers.MemoryTesterMixin):
    pass


class TestAutoencoderKLVideoSlicingTiling(AutoencoderKLVideoTesterConfig, autoencoder_testers.AutoencoderTesterMixin):
    pass
