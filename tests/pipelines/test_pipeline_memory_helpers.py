"""diffusers' Stable Diffusion-family helpers on `VideoLatentPipeline`: each one really changes what runs.

VAE slicing and tiling are shown by what the VAE's decoder receives (a forward pre-hook), FreeU and attention slicing
by the output and the attention processors, QKV fusion by equality with the unfused pipeline.
"""

import math

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor, FusedAttnProcessor2_0, SlicedAttnProcessor

from diffusers_videolatent import VideoLatentPipeline
from diffusers_videolatent.models.attention import VideoLatentAttention, VideoLatentAttnProcessor

from ..testing_utils import (
    build_image_vae,
    build_pipeline_components,
    build_unet,
    build_video_vae,
    recording_attention_scores,
)


pytestmark = pytest.mark.usefixtures("no_grad")
CALL = {"num_frames": 5, "height": 16, "width": 16, "num_inference_steps": 2, "output_type": "np"}


def make_pipeline(vae=None) -> VideoLatentPipeline:
    vae = vae if vae is not None else build_video_vae()
    components = build_pipeline_components(vae=vae, unet=build_unet(identity_init=False))
    pipe = VideoLatentPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, **kwargs) -> np.ndarray:
    arguments = {"prompt": "a red circle moving right", **CALL, "generator": torch.manual_seed(0), **kwargs}
    return pipe(**arguments).frames


def record_decoder_inputs(vae) -> list[tuple[int, ...]]:
    """The shape of every latent the VAE's decoder is called on."""
    shapes = []
    vae.decoder.register_forward_pre_hook(lambda module, args: shapes.append(tuple(args[0].shape)))
    return shapes


def test_vae_slicing_decodes_one_video_at_a_time():
    pipe = make_pipeline()
    shapes = record_decoder_inputs(pipe.vae)
    whole = run(pipe, num_videos_per_prompt=2)
    assert {shape[0] for shape in shapes} == {2}

    pipe.enable_vae_slicing()
    assert pipe.vae.use_slicing
    shapes.clear()
    sliced = run(pipe, num_videos_per_prompt=2)
    assert {shape[0] for shape in shapes} == {1}
    np.testing.assert_allclose(sliced, whole, atol=1e-5, rtol=0)

    pipe.disable_vae_slicing()
    shapes.clear()
    run(pipe, num_videos_per_prompt=2)
    assert not pipe.vae.use_slicing and {shape[0] for shape in shapes} == {2}


def test_vae_tiling_decodes_tiles_no_larger_than_the_tile_size():
    pipe = make_pipeline()
    # the VAE's tile size (its own setting, 256 pixels by default) scaled down to the tiny frames of this test
    pipe.vae.tile_sample_min_height = pipe.vae.tile_sample_min_width = 16
    latents = torch.randn(1, 4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    shapes = record_decoder_inputs(pipe.vae)
    whole = pipe.decode_latents(latents)
    assert max(shape[-1] for shape in shapes) == 16

    pipe.enable_vae_tiling()
    assert pipe.vae.use_tiling
    shapes.clear()
    tiled = pipe.decode_latents(latents)
    assert max(max(shape[-2:]) for shape in shapes) == 8  # 16-pixel tiles of a spatial-ratio-2 VAE
    assert tiled.shape == whole.shape == (1, 3, 5, 32, 32)
    # how close the blended tiles come to the whole-frame decode is the VAE's own test (tests/models)

    pipe.disable_vae_tiling()
    assert not pipe.vae.use_tiling
    torch.testing.assert_close(pipe.decode_latents(latents), whole)


def test_freeu_changes_the_video_and_disable_restores_it_bit_for_bit():
    pipe = make_pipeline()
    plain = run(pipe)
    pipe.enable_freeu(s1=0.9, s2=0.2, b1=1.2, b2=1.4)
    assert all(block.b1 == 1.2 for block in pipe.unet.up_blocks)
    with_freeu = run(pipe)
    assert np.abs(with_freeu - plain).max() > 1e-3
    pipe.disable_freeu()
    assert np.array_equal(run(pipe), plain)


@pytest.mark.parametrize("vae_kind", ["video", "image"])
def test_fused_qkv_projections_equal_unfused(vae_kind):
    pipe = make_pipeline(vae=build_video_vae() if vae_kind == "video" else build_image_vae())
    unfused = run(pipe)
    pipe.fuse_qkv_projections()
    layers = [module for module in pipe.unet.modules() if isinstance(module, VideoLatentAttention)]
    assert len(layers) == 22 and all(layer.fused_projections for layer in layers)
    assert all(hasattr(layer, "to_kv" if layer.is_cross_attention else "to_qkv") for layer in layers)
    if vae_kind == "image":
        # diffusers' `AutoencoderKL` fuses its own attention; ours has no `fuse_qkv_projections` and is left as is
        assert pipe.fusing_vae and all(isinstance(p, FusedAttnProcessor2_0) for p in pipe.vae.attn_processors.values())
    else:
        assert not pipe.fusing_vae
    fused = run(pipe)
    np.testing.assert_allclose(fused, unfused, atol=1e-5, rtol=0)

    pipe.unfuse_qkv_projections()
    assert not any(layer.fused_projections or hasattr(layer, "to_qkv") for layer in layers)
    np.testing.assert_allclose(run(pipe), unfused, atol=1e-5, rtol=0)


def test_attention_slicing_slices_every_unet_processor_and_bounds_the_scores():
    pipe = make_pipeline()
    processors = pipe.unet.attn_processors
    assert len(processors) == 22  # 4 spatial and 7 temporal transformers, two attentions each
    pipe.unet.set_attn_processor(AttnProcessor())  # forms every full score tensor, the reference for memory
    with recording_attention_scores() as shapes:
        reference = run(pipe)
        full = max(math.prod(shape) for shape in shapes)
        shapes.clear()
        pipe.enable_attention_slicing()
        sliced_processors = pipe.unet.attn_processors
        assert [type(p) for p in sliced_processors.values()] == [SlicedAttnProcessor] * len(processors)
        sliced = run(pipe)
        largest = max(math.prod(shape) for shape in shapes)
    np.testing.assert_allclose(sliced, reference, atol=1e-5, rtol=0)
    # "auto" halves the heads of a slice: 2 heads -> 1 per slice, so every slice holds one (frame, head) pair
    assert all(shape[0] == 1 for shape in shapes)
    assert largest * 4 <= full, (largest, full)

    pipe.disable_attention_slicing()
    assert all(type(p) is VideoLatentAttnProcessor for p in pipe.unet.attn_processors.values())
