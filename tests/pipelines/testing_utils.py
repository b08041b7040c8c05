"""Our pipeline tester mixins: the checks diffusers' `PipelineTesterMixin` and `SDFunctionTesterMixin` make (in its
`tests/pipelines/test_pipelines_common.py`), written once, our own way, for a text-to-video pipeline and driven by a
tester-config class, as diffusers' pipeline tests are (see `tests/pipelines/test_pipeline_video_latent.py`).

The config class gives `pipeline_class`, `params` (the `__call__` arguments, each documented), `batch_params`,
`required_optional_params`, `get_dummy_components()` and `get_dummy_inputs(device, seed)`, and the numbers the checks
expect: `output_shape` (one video, as `output_type="np"` gives it), `latent_shape` (one video's latents),
`prompt_embeds_shape` (one prompt's embeddings) and `num_unet_attention_layers`. The same config class runs diffusers'
own mixins when a diffusers checkout is at hand (`tests/pipelines/test_diffusers_tester_mixins.py`); these run
everywhere, CI included.
"""

import inspect
import math

import numpy as np
import pytest
import torch
from diffusers.callbacks import SDCFGCutoffCallback
from diffusers.models.attention_processor import AttnProcessor, FusedAttnProcessor2_0, SlicedAttnProcessor
from diffusers.utils import BaseOutput

from diffusers_videolatent.models.attention import VideoLatentAttention, VideoLatentAttnProcessor

from ..testing_utils import needs_cuda, needs_diffusers_hooks_0_42, recording_attention_scores, recording_unet_calls


class PipelineTesterMixin:
    """Saving and loading, batching, outputs, prompt encoding, guidance and callbacks, dtypes and offloading."""

    def get_pipeline(self, **components):
        """A pipeline of the dummy components (`components` replace some), its progress bar off."""
        pipe = self.pipeline_class(**{**self.get_dummy_components(), **components})
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def run_pipeline(self, pipe, seed: int = 0, **overrides):
        """`pipe` called with the dummy inputs of generator seed `seed`; `overrides` replace some inputs."""
        return pipe(**{**self.get_dummy_inputs("cpu", seed), **overrides})

    # ------------------------------------------------------------------------------------------------------------------
    # Signature, components, saving and loading
    # ------------------------------------------------------------------------------------------------------------------

    def test_pipeline_call_signature(self):
        parameters = inspect.signature(self.pipeline_class.__call__).parameters
        assert [name for name in sorted(self.params) if name not in parameters] == []
        docstring = self.pipeline_class.__call__.__doc__
        assert [name for name in sorted(self.params) if f"{name} (`" not in docstring] == []
        optional = {name for name, parameter in parameters.items() if parameter.default is not inspect.Parameter.empty}
        assert sorted(self.required_optional_params - optional) == []

    def test_components_function(self):
        components = self.get_dummy_components()
        pipe = self.get_pipeline(**components)
        assert set(pipe.components) == set(components)
        expected = self.run_pipeline(pipe).frames

        rebuilt = self.get_pipeline(**pipe.components)
        assert np.abs(self.run_pipeline(rebuilt).frames - expected).max() == 0

        derived = self.pipeline_class.from_pipe(pipe)
        derived.set_progress_bar_config(disable=True)
        assert derived.unet is pipe.unet and derived.vae is pipe.vae
        assert np.abs(self.run_pipeline(derived).frames - expected).max() == 0

    def test_save_load_local(self, tmp_path):
        pipe = self.get_pipeline()
        expected = self.run_pipeline(pipe).frames
        pipe.save_pretrained(tmp_path / "saved")

        loaded = self.pipeline_class.from_pretrained(tmp_path / "saved")
        loaded.set_progress_bar_config(disable=True)
        assert {name: type(component) for name, component in loaded.components.items()} == {
            name: type(component) for name, component in pipe.components.items()
        }
        assert np.abs(self.run_pipeline(loaded).frames - expected).max() < 1e-6

    def test_save_load_fp16_variant(self, tmp_path):
        pipe = self.get_pipeline()
        expected = self.run_pipeline(pipe).frames
        pipe.save_pretrained(tmp_path / "saved", variant="fp16")
        models = [name for name, component in pipe.components.items() if isinstance(component, torch.nn.Module)]
        for name in models:
            files = [path.name for path in (tmp_path / "saved" / name).iterdir()]
            assert any(".fp16." in file for file in files), files

        loaded = self.pipeline_class.from_pretrained(tmp_path / "saved", variant="fp16")
        loaded.set_progress_bar_config(disable=True)
        assert np.abs(self.run_pipeline(loaded).frames - expected).max() < 1e-6

        half = self.pipeline_class.from_pretrained(tmp_path / "saved", variant="fp16", dtype=torch.float16)
        half.set_progress_bar_config(disable=True)
        assert {getattr(half, name).dtype for name in models} == {torch.float16}
        half_frames = self.run_pipeline(half).frames
        assert half_frames.dtype == np.float32
        assert np.abs(half_frames - expected).max() < 2e-2

    def test_save_load_optional_components(self, tmp_path):
        """Without its optional text encoder and tokenizer, the pipeline takes `prompt_embeds`, and says it needs them."""
        pipe = self.get_pipeline()
        prompt_embeds, negative_prompt_embeds = pipe.encode_prompt("a cat", do_classifier_free_guidance=True)
        embeds = {"prompt": None, "prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_prompt_embeds}
        expected = self.run_pipeline(pipe, **embeds).frames

        for name in pipe._optional_components:
            setattr(pipe, name, None)
        pipe.save_pretrained(tmp_path / "saved")
        loaded = self.pipeline_class.from_pretrained(tmp_path / "saved")
        loaded.set_progress_bar_config(disable=True)
        assert all(getattr(loaded, name) is None for name in pipe._optional_components)
        assert np.abs(self.run_pipeline(loaded, **embeds).frames - expected).max() < 1e-6

        with pytest.raises(ValueError, match="negative_prompt_embeds"):
            self.run_pipeline(loaded, prompt=None, prompt_embeds=prompt_embeds)
        with pytest.raises(ValueError, match="prompt_embeds"):
            self.run_pipeline(loaded)

    def test_to_dtype(self):
        pipe = self.get_pipeline()
        models = [component for component in pipe.components.values() if isinstance(component, torch.nn.Module)]
        pipe.to(torch.float16)
        assert {model.dtype for model in models} == {torch.float16}
        frames = self.run_pipeline(pipe, output_type="pt").frames
        assert frames.dtype == torch.float32 and torch.isfinite(frames).all()
        pipe.to("cpu", torch.float32)
        assert pipe.device.type == "cpu" and {model.dtype for model in models} == {torch.float32}

    # ------------------------------------------------------------------------------------------------------------------
    # Outputs, batching, latents
    # ------------------------------------------------------------------------------------------------------------------

    def test_dict_tuple_outputs_equivalent(self):
        pipe = self.get_pipeline()
        output = self.run_pipeline(pipe)
        assert isinstance(output, BaseOutput)
        (frames,) = self.run_pipeline(pipe, return_dict=False)
        assert np.abs(output.frames - frames).max() == 0

    def test_pt_np_pil_outputs_equivalent(self):
        pipe = self.get_pipeline()
        num_frames, height, width, channels = self.output_shape
        as_np = self.run_pipeline(pipe, output_type="np").frames
        as_pt = self.run_pipeline(pipe, output_type="pt").frames
        as_pil = self.run_pipeline(pipe, output_type="pil").frames
        as_latent = self.run_pipeline(pipe, output_type="latent").frames

        assert as_np.shape == (1, num_frames, height, width, channels)
        assert as_pt.shape == (1, num_frames, channels, height, width)
        assert len(as_pil) == 1 and len(as_pil[0]) == num_frames and as_pil[0][0].size == (width, height)
        assert as_latent.shape == (1, *self.latent_shape)
        assert np.abs(as_pt.permute(0, 1, 3, 4, 2).numpy() - as_np).max() < 1e-6
        pil_array = np.stack([np.asarray(image) for image in as_pil[0]])[None]
        assert np.abs(pil_array.astype(np.float32) - np.round(as_np * 255)).max() <= 1
        decoded = pipe.video_processor.postprocess_video(pipe.decode_latents(as_latent), output_type="np")
        assert np.abs(decoded - as_np).max() < 1e-6

    def test_inference_batch_single_identical(self):
        pipe = self.get_pipeline()
        prompts = ["a cat", "a dog on a boat"]
        generators = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
        batched = self.run_pipeline(pipe, prompt=prompts, generator=generators).frames
        singles = [self.run_pipeline(pipe, seed, prompt=prompt).frames for prompt, seed in zip(prompts, (1, 2))]
        assert batched.shape == (2, *self.output_shape)
        assert np.abs(batched - np.concatenate(singles)).max() < 1e-5

    def test_num_videos_per_prompt(self):
        pipe = self.get_pipeline()
        frames = self.run_pipeline(pipe, prompt=["a cat", "a dog"], num_videos_per_prompt=3).frames
        assert frames.shape == (6, *self.output_shape)
        prompt_embeds, negative_prompt_embeds = pipe.encode_prompt(["a cat", "a dog"], num_videos_per_prompt=3)
        assert prompt_embeds.shape == negative_prompt_embeds.shape == (6, *self.prompt_embeds_shape)
        # the copies of one prompt are next to each other
        assert torch.equal(prompt_embeds[0], prompt_embeds[2]) and not torch.equal(prompt_embeds[2], prompt_embeds[3])

    def test_latents_input(self):
        pipe = self.get_pipeline()
        expected = self.run_pipeline(pipe, seed=5).frames
        latents = torch.randn(1, *self.latent_shape, generator=torch.manual_seed(5))
        frames = self.run_pipeline(pipe, generator=None, latents=latents).frames
        assert np.abs(frames - expected).max() == 0

    # ------------------------------------------------------------------------------------------------------------------
    # Prompt encoding and guidance
    # ------------------------------------------------------------------------------------------------------------------

    def test_encode_prompt_works_in_isolation(self):
        pipe = self.get_pipeline()
        prompt_embeds, negative_prompt_embeds = pipe.encode_prompt(
            "a cat", torch.device("cpu"), 1, True, negative_prompt="blurry"
        )
        assert prompt_embeds.shape == (1, *self.prompt_embeds_shape)
        with_prompt = self.run_pipeline(pipe, negative_prompt="blurry").frames
        with_embeds = self.run_pipeline(
            pipe, prompt=None, prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds
        ).frames
        assert np.abs(with_prompt - with_embeds).max() == 0

        no_guidance_embeds, none = pipe.encode_prompt("a cat", do_classifier_free_guidance=False)
        assert none is None and torch.equal(no_guidance_embeds, prompt_embeds)

        skipped, _ = pipe.encode_prompt("a cat", do_classifier_free_guidance=False, clip_skip=1)
        input_ids = pipe.tokenizer("a cat", padding="max_length", return_tensors="pt").input_ids
        hidden_states = pipe.text_encoder(input_ids, output_hidden_states=True).hidden_states
        text_model = getattr(pipe.text_encoder, "text_model", pipe.text_encoder)
        assert torch.allclose(skipped, text_model.final_layer_norm(hidden_states[-2]))
        assert not torch.allclose(skipped, prompt_embeds)

    def test_cfg(self):
        pipe = self.get_pipeline()
        with recording_unet_calls(pipe) as calls:
            guided = self.run_pipeline(pipe, guidance_scale=7.5).frames
            assert [call["batch"] for call in calls] == [2, 2]
            calls.clear()
            unguided = self.run_pipeline(pipe, guidance_scale=1.0).frames
            assert [call["batch"] for call in calls] == [1, 1]
        assert np.abs(guided - unguided).max() > 1e-3
        assert pipe.guidance_scale == 1.0 and not pipe.do_classifier_free_guidance

        rescaled = self.run_pipeline(pipe, guidance_scale=7.5, guidance_rescale=0.7).frames
        assert np.abs(rescaled - guided).max() > 1e-5

    # ------------------------------------------------------------------------------------------------------------------
    # Callbacks
    # ------------------------------------------------------------------------------------------------------------------

    def test_callback_inputs(self):
        pipe = self.get_pipeline()
        seen = []

        def only_requested(pipeline, step, timestep, callback_kwargs):
            seen.append(sorted(callback_kwargs))
            return callback_kwargs

        self.run_pipeline(pipe, callback_on_step_end=only_requested, callback_on_step_end_tensor_inputs=["latents"])
        assert seen == [["latents"], ["latents"]]

        seen.clear()
        everything = pipe._callback_tensor_inputs
        self.run_pipeline(pipe, callback_on_step_end=only_requested, callback_on_step_end_tensor_inputs=everything)
        assert seen[0] == sorted(pipe._callback_tensor_inputs)

        def zero_last_latents(pipeline, step, timestep, callback_kwargs):
            if step == pipeline.num_timesteps - 1:
                callback_kwargs["latents"] = torch.zeros_like(callback_kwargs["latents"])
            return callback_kwargs

        frames = self.run_pipeline(pipe, callback_on_step_end=zero_last_latents, output_type="pt").frames
        expected = pipe.video_processor.postprocess_video(
            pipe.decode_latents(torch.zeros(1, *self.latent_shape)), output_type="pt"
        )
        assert torch.allclose(frames, expected, atol=1e-6)

    def test_callback_cfg(self):
        pipe = self.get_pipeline()

        def increase_guidance(pipeline, step, timestep, callback_kwargs):
            pipeline._guidance_scale += 1.0
            return callback_kwargs

        self.run_pipeline(pipe, guidance_scale=2.0, callback_on_step_end=increase_guidance)
        assert pipe.guidance_scale == 2.0 + pipe.num_timesteps

        # diffusers' CFG cut-off callback (drops the unconditional embeddings) equals just switching guidance off
        cutoff = self.run_pipeline(
            pipe,
            num_inference_steps=3,
            callback_on_step_end=SDCFGCutoffCallback(cutoff_step_ratio=None, cutoff_step_index=0),
        ).frames

        def guidance_off(pipeline, step, timestep, callback_kwargs):
            if step == 0:
                pipeline._guidance_scale = 0.0
            return callback_kwargs

        switched_off = self.run_pipeline(pipe, num_inference_steps=3, callback_on_step_end=guidance_off).frames
        full = self.run_pipeline(pipe, num_inference_steps=3).frames
        assert np.abs(cutoff - switched_off).max() < 1e-6
        assert np.abs(cutoff - full).max() > 1e-4

    # ------------------------------------------------------------------------------------------------------------------
    # Attention slicing and offloading
    # ------------------------------------------------------------------------------------------------------------------

    def test_attention_slicing_forward_pass(self):
        """Slicing replaces every U-Net processor and bounds the attention scores a pass forms."""
        pipe = self.get_pipeline()
        processors = pipe.unet.attn_processors
        assert len(processors) == self.num_unet_attention_layers
        pipe.unet.set_attn_processor(AttnProcessor())  # forms every full score tensor, the reference for memory
        with recording_attention_scores() as shapes:
            reference = self.run_pipeline(pipe).frames
            full = max(math.prod(shape) for shape in shapes)
            shapes.clear()
            pipe.enable_attention_slicing()
            sliced_processors = pipe.unet.attn_processors
            assert [type(p) for p in sliced_processors.values()] == [SlicedAttnProcessor] * len(processors)
            sliced = self.run_pipeline(pipe).frames
            largest = max(math.prod(shape) for shape in shapes)
        np.testing.assert_allclose(sliced, reference, atol=1e-5, rtol=0)
        # "auto" halves the heads of a slice: 2 heads -> 1 per slice, so every slice holds one (frame, head) pair
        assert all(shape[0] == 1 for shape in shapes)
        assert largest * 4 <= full, (largest, full)

        pipe.disable_attention_slicing()
        assert all(type(p) is VideoLatentAttnProcessor for p in pipe.unet.attn_processors.values())

    @needs_diffusers_hooks_0_42
    def test_group_offloading_to_disk(self, tmp_path):
        """With `offload_to_disk_path`, a group's weights are uninitialised until its hook loads them back, so a layer
        that ran without its group onloaded would give a wrong result, although both devices are the CPU."""
        pipe = self.get_pipeline()
        reference = self.run_pipeline(pipe, output_type="pt").frames
        cpu = torch.device("cpu")
        pipe.enable_group_offload(cpu, cpu, num_blocks_per_group=1, offload_to_disk_path=str(tmp_path))
        assert torch.equal(self.run_pipeline(pipe, output_type="pt").frames, reference)

    @needs_cuda
    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    def test_half_precision_inference_on_cuda(self, dtype):
        pipe = self.get_pipeline()
        reference = self.run_pipeline(pipe, output_type="pt").frames
        pipe.to("cuda", dtype)
        frames = self.run_pipeline(pipe, output_type="pt").frames.float().cpu()
        assert torch.isfinite(frames).all()
        assert (frames - reference).abs().max().item() < 0.05

    @needs_cuda
    @pytest.mark.parametrize("offload", ["model", "sequential", "group_leaf_level", "group_block_level"])
    def test_cpu_offload_forward_pass(self, offload):
        """Each offloading gives the video of the pipeline on the GPU, and that of the pipeline on the CPU."""
        on_cpu = self.run_pipeline(self.get_pipeline(), output_type="pt").frames
        on_gpu = self.run_pipeline(self.get_pipeline().to("cuda"), output_type="pt").frames.cpu()
        pipe = self.get_pipeline()
        if offload == "model":
            pipe.enable_model_cpu_offload(device="cuda")
        elif offload == "sequential":
            pipe.enable_sequential_cpu_offload(device="cuda")
        elif offload == "group_leaf_level":
            for component in (pipe.unet, pipe.vae):
                component.enable_group_offload(torch.device("cuda"), offload_type="leaf_level")
            pipe.text_encoder.to("cuda")
        else:
            pipe.enable_group_offload(torch.device("cuda"), torch.device("cpu"), num_blocks_per_group=1)
        torch.cuda.reset_peak_memory_stats()
        frames = self.run_pipeline(pipe, output_type="pt").frames.cpu()
        assert torch.cuda.max_memory_allocated() > 0
        assert torch.allclose(frames, on_gpu, atol=1e-4)
        assert (frames - on_cpu).abs().max().item() < 1e-3


class SDFunctionTesterMixin:
    """diffusers' Stable Diffusion-family helpers (`StableDiffusionMixin`): each one really changes what runs.

    VAE slicing and tiling are shown by what the VAE's decoder receives (a forward pre-hook), FreeU by the output and
    the U-Net's up blocks, QKV fusion by equality with the unfused pipeline. Use with `PipelineTesterMixin`.
    """

    @staticmethod
    def record_decoder_inputs(vae) -> list[tuple[int, ...]]:
        """The shape of every latent the VAE's decoder is called on."""
        shapes = []
        vae.decoder.register_forward_pre_hook(lambda module, args: shapes.append(tuple(args[0].shape)))
        return shapes

    def test_vae_slicing(self):
        pipe = self.get_pipeline()
        shapes = self.record_decoder_inputs(pipe.vae)
        whole = self.run_pipeline(pipe, num_videos_per_prompt=2).frames
        assert {shape[0] for shape in shapes} == {2}

        pipe.enable_vae_slicing()
        assert pipe.vae.use_slicing
        shapes.clear()
        sliced = self.run_pipeline(pipe, num_videos_per_prompt=2).frames
        assert {shape[0] for shape in shapes} == {1}
        np.testing.assert_allclose(sliced, whole, atol=1e-5, rtol=0)

        pipe.disable_vae_slicing()
        shapes.clear()
        self.run_pipeline(pipe, num_videos_per_prompt=2)
        assert not pipe.vae.use_slicing and {shape[0] for shape in shapes} == {2}

    def test_vae_tiling(self):
        pipe = self.get_pipeline()
        # the VAE's tile size (its own setting, 256 pixels by default) scaled down to the tiny frames of this test
        pipe.vae.tile_sample_min_height = pipe.vae.tile_sample_min_width = 16
        latents = torch.randn(1, *self.latent_shape[:2], 16, 16, generator=torch.Generator().manual_seed(0))
        shapes = self.record_decoder_inputs(pipe.vae)
        whole = pipe.decode_latents(latents)
        assert max(shape[-1] for shape in shapes) == 16

        pipe.enable_vae_tiling()
        assert pipe.vae.use_tiling
        shapes.clear()
        tiled = pipe.decode_latents(latents)
        spatial_ratio = pipe.vae_scale_factor_spatial
        assert max(max(shape[-2:]) for shape in shapes) == 16 // spatial_ratio  # 16-pixel tiles
        assert tiled.shape == whole.shape == (1, 3, self.output_shape[0], 16 * spatial_ratio, 16 * spatial_ratio)
        # how close the blended tiles come to the whole-frame decode is the VAE's own test (tests/models)

        pipe.disable_vae_tiling()
        assert not pipe.vae.use_tiling
        torch.testing.assert_close(pipe.decode_latents(latents), whole)

    def test_freeu(self):
        """FreeU changes the video, and `disable_freeu` restores it bit for bit."""
        pipe = self.get_pipeline()
        plain = self.run_pipeline(pipe).frames
        pipe.enable_freeu(s1=0.9, s2=0.2, b1=1.2, b2=1.4)
        assert all(block.b1 == 1.2 for block in pipe.unet.up_blocks)
        with_freeu = self.run_pipeline(pipe).frames
        assert np.abs(with_freeu - plain).max() > 1e-3
        pipe.disable_freeu()
        assert np.array_equal(self.run_pipeline(pipe).frames, plain)

    def test_fused_qkv_projections(self):
        self.check_fused_qkv_projections()

    def check_fused_qkv_projections(self, **components):
        """Fused projections give the unfused video; diffusers' `AutoencoderKL` fuses its own attention, a VAE without
        `fuse_qkv_projections` (ours) is left as is. `components` replace some of the dummy components."""
        pipe = self.get_pipeline(**components)
        unfused = self.run_pipeline(pipe).frames
        pipe.fuse_qkv_projections()
        layers = [module for module in pipe.unet.modules() if isinstance(module, VideoLatentAttention)]
        assert len(layers) == self.num_unet_attention_layers and all(layer.fused_projections for layer in layers)
        assert all(hasattr(layer, "to_kv" if layer.is_cross_attention else "to_qkv") for layer in layers)
        assert pipe.fusing_vae == hasattr(pipe.vae, "fuse_qkv_projections")
        if pipe.fusing_vae:
            assert all(isinstance(p, FusedAttnProcessor2_0) for p in pipe.vae.attn_processors.values())
        fused = self.run_pipeline(pipe).frames
        np.testing.assert_allclose(fused, unfused, atol=1e-5, rtol=0)

        pipe.unfuse_qkv_projections()
        assert not any(layer.fused_projections or hasattr(layer, "to_qkv") for layer in layers)
        np.testing.assert_allclose(self.run_pipeline(pipe).frames, unfused, atol=1e-5, rtol=0)
