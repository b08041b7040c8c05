"""Diffusers' cache hooks on `UNetSpatioTemporalModel`, driven by `VideoLatentPipeline`'s `cache_context`.

Each cache runs 8 DDIM steps (timesteps 876, 751, 626, 501, 376, 251, 126, 1) with guidance on a tiny random U-Net;
the real computations of every attention layer are counted at its output projection.
"""

import re

import pytest
import torch
from diffusers import (
    FasterCacheConfig,
    FirstBlockCacheConfig,
    MagCacheConfig,
    PyramidAttentionBroadcastConfig,
    TaylorSeerCacheConfig,
)

from diffusers_videolatent.models.attention import VideoLatentAttention
from diffusers_videolatent.models.unet_spatio_temporal import ATTENTION_IDENTIFIERS

from ..testing_utils import needs_diffusers_hooks_0_42


NUM_STEPS = 8
# a cached output may move by at most this fraction of the largest uncached latent value
RELATIVE_BOUND = 0.02


def generate(pipe, attention_calls) -> tuple[torch.Tensor, dict[str, int]]:
    attention_calls.clear()
    frames = pipe(
        "a red circle",
        num_frames=3,
        height=16,
        width=16,
        num_inference_steps=NUM_STEPS,
        guidance_scale=3.0,
        generator=torch.Generator().manual_seed(0),
        output_type="latent",
    ).frames
    return frames, dict(attention_calls)


def kind(name: str) -> str:
    """`spatial`, `spatial_cross` or `temporal` (both attentions of a temporal transformer attend over frames)."""
    if ".temporal_attentions." in name:
        return "temporal"
    return "spatial_cross" if name.endswith("attn2") else "spatial"


def check_cache(pipe, attention_calls, config, expected_calls: dict[str, int]) -> None:
    reference, reference_calls = generate(pipe, attention_calls)
    assert set(reference_calls.values()) == {NUM_STEPS}
    pipe.unet.enable_cache(config)
    try:
        cached, calls = generate(pipe, attention_calls)
    finally:
        pipe.unet.disable_cache()

    # the cache changes the result, but only a little
    difference = (cached - reference).abs().max().item()
    assert 0 < difference <= RELATIVE_BOUND * reference.abs().max().item()
    # every attention layer computed exactly as often as the cache's rule says
    assert calls.keys() == reference_calls.keys()
    for name, count in calls.items():
        assert count == expected_calls[kind(name)], name
    # disabling the cache gives the uncached result back, bit for bit
    restored, restored_calls = generate(pipe, attention_calls)
    assert torch.equal(restored, reference)
    assert restored_calls == reference_calls


@pytest.mark.usefixtures("no_grad")
def test_pyramid_attention_broadcast_skips_and_restores(random_unet_pipe, attention_calls):
    pipe = random_unet_pipe
    config = PyramidAttentionBroadcastConfig(
        spatial_attention_block_skip_range=2,
        temporal_attention_block_skip_range=4,
        cross_attention_block_skip_range=3,
        current_timestep_callback=lambda: pipe.current_timestep,
    )
    # inside (100, 800) spatial self-attention computes every 2nd step, temporal every 4th, cross-attention every 3rd;
    # the first step (876) and the last (1) are outside and compute: 5, 3 and 4 of 8 (the temporal transformers of
    # this U-Net run two self-attentions)
    check_cache(pipe, attention_calls, config, {"spatial": 5, "temporal": 3, "spatial_cross": 4})


@pytest.mark.usefixtures("no_grad")
def test_faster_cache_skips_and_restores(random_unet_pipe, attention_calls):
    pipe = random_unet_pipe
    config = FasterCacheConfig(
        spatial_attention_block_skip_range=2,
        temporal_attention_block_skip_range=2,
        current_timestep_callback=lambda: pipe.current_timestep,
        attention_weight_callback=lambda _: 0.5,
    )
    # below 681 (steps 3 to 8) the unconditional half is skipped except every 5th step, and self-attention is then
    # extrapolated every other step: 6 of 8; FasterCache leaves cross-attention alone
    check_cache(pipe, attention_calls, config, {"spatial": 6, "temporal": 6, "spatial_cross": NUM_STEPS})


@needs_diffusers_hooks_0_42
@pytest.mark.usefixtures("no_grad")
def test_taylorseer_cache_skips_and_restores(random_unet_pipe, attention_calls):
    pipe = random_unet_pipe
    config = TaylorSeerCacheConfig(cache_interval=2, disable_cache_before_step=2, taylor_factors_dtype=torch.float32)
    # steps 0 and 1 warm up, then steps 3, 5 and 7 compute and 2, 4 and 6 are predicted: 5 of 8 everywhere
    check_cache(pipe, attention_calls, config, {"spatial": 5, "temporal": 5, "spatial_cross": 5})


@pytest.mark.usefixtures("no_grad")
def test_identifiers_given_by_the_user_are_kept(random_unet_pipe, attention_calls):
    pipe = random_unet_pipe
    config = PyramidAttentionBroadcastConfig(
        spatial_attention_block_skip_range=2,
        spatial_attention_block_identifiers=(r"^mid_block\.attentions\.",),
        current_timestep_callback=lambda: pipe.current_timestep,
    )
    pipe.unet.enable_cache(config)
    try:
        _, calls = generate(pipe, attention_calls)
    finally:
        pipe.unet.disable_cache()
    assert calls["mid_block.attentions.0.transformer_blocks.0.attn1"] == 5
    assert calls["down_blocks.0.attentions.0.transformer_blocks.0.attn1"] == NUM_STEPS
    assert calls["mid_block.temporal_attentions.0.transformer_blocks.0.attn1"] == NUM_STEPS


def test_default_identifiers_name_every_attention_layer(random_unet_pipe):
    pipe = random_unet_pipe
    names = [name for name, module in pipe.unet.named_modules() if isinstance(module, VideoLatentAttention)]
    assert names
    for name in names:
        assert sum(re.fullmatch(pattern, name) is not None for pattern in ATTENTION_IDENTIFIERS) == 1, name


@pytest.mark.parametrize(
    "config, message",
    [
        (FirstBlockCacheConfig(threshold=0.1), "FirstBlockCacheConfig"),
        (MagCacheConfig(calibrate=True), "MagCacheConfig"),
        (TaylorSeerCacheConfig(use_lite_mode=True), "use_lite_mode"),
    ],
)
def test_caches_that_cannot_apply_raise(random_unet_pipe, config, message):
    pipe = random_unet_pipe
    with pytest.raises(ValueError, match=message):
        pipe.unet.enable_cache(config)
    assert not pipe.unet.is_cache_enabled
