"""DeepCache (`DeepCacheConfig`) on `UNetSpatioTemporalModel`, driven by `VideoLatentPipeline`'s `cache_context`.

The U-Nets are tiny and random (temporal layers not identity); the real computations of the mid block (always in the
deep part) and of the last up layer (always in the shallow branch) are counted with forward hooks on layers inside them.
"""

import pytest
import torch
from diffusers import (
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    HeunDiscreteScheduler,
)

from diffusers_videolatent import DeepCacheConfig, UNetSpatioTemporalModel
from diffusers_videolatent.models.deep_cache import deep_modules, non_uniform_full_steps, num_skip_connections

from ..testing_utils import (
    build_motion_adapter,
    build_pipeline,
    build_unet,
    build_unet2d,
    build_unet3d,
    count_deep_and_shallow_calls,
    randomize_weights_,
)


NUM_STEPS = 8
# a cached output may move by at most this fraction of the largest uncached latent value
RELATIVE_BOUND = 0.25


def generate(counted_pipe, **kwargs) -> torch.Tensor:
    arguments = {
        "prompt": "a red circle",
        "num_frames": 3,
        "height": 16,
        "width": 16,
        "num_inference_steps": NUM_STEPS,
        "guidance_scale": 3.0,
        "generator": torch.Generator().manual_seed(0),
        "output_type": "latent",
    }
    arguments.update(kwargs)
    return counted_pipe(**arguments).frames


def cached(counted_pipe, config: DeepCacheConfig, **kwargs) -> torch.Tensor:
    counted_pipe.unet.enable_cache(config)
    try:
        return generate(counted_pipe, **kwargs)
    finally:
        counted_pipe.unet.disable_cache()


@pytest.mark.usefixtures("no_grad")
def test_cache_interval_one_gives_the_uncached_output_exactly(counted_pipe, counted_pipe_output):
    assert torch.equal(cached(counted_pipe, DeepCacheConfig(cache_interval=1)), counted_pipe_output)


@pytest.mark.usefixtures("no_grad")
@pytest.mark.parametrize("cache_branch_id", [0, 1, 2, 3])
def test_deep_features_computed_on_full_steps_only(counted_pipe, counted_pipe_output, cache_branch_id):
    counted_pipe.calls.clear()
    output = cached(counted_pipe, DeepCacheConfig(cache_interval=3, cache_branch_id=cache_branch_id))
    # full steps 0, 3 and 6 of 8: the mid block runs 3 times, the shallow branch every step
    assert counted_pipe.calls == {"deep": 3, "shallow": NUM_STEPS}
    difference = (output - counted_pipe_output).abs().max().item()
    assert 0 < difference <= RELATIVE_BOUND * counted_pipe_output.abs().max().item()

    # the state is reset between calls, and disabling gives the counted_pipe_output result back, bit for bit
    assert torch.equal(
        cached(counted_pipe, DeepCacheConfig(cache_interval=3, cache_branch_id=cache_branch_id)), output
    )
    assert torch.equal(generate(counted_pipe), counted_pipe_output)


@pytest.mark.usefixtures("no_grad")
def test_a_deeper_branch_is_closer_to_the_uncached_output(counted_pipe, counted_pipe_output):
    differences = [
        (cached(counted_pipe, DeepCacheConfig(cache_branch_id=branch)) - counted_pipe_output).abs().max().item()
        for branch in (0, 3)
    ]
    assert differences[1] < differences[0]


def test_deep_modules_follow_the_skip_connections(counted_pipe):
    # skip connections of the tiny U-Net: 0 conv_in, 1 down level 0's layer, 2 its downsampler, 3 down level 1's layer
    unet = counted_pipe.unet
    assert num_skip_connections(unet) == 4
    names = {branch: [name for name, _ in deep_modules(unet, branch)] for branch in range(4)}
    assert names[0] == ["down_blocks.0", "down_blocks.1", "mid_block", "up_blocks.0"] + [
        f"up_blocks.1.{part}.0" for part in ("resnets", "attentions", "temporal_attentions")
    ]
    assert names[1] == ["down_blocks.0.downsamplers.0", "down_blocks.1", "mid_block", "up_blocks.0"]
    assert names[2] == ["down_blocks.1", "mid_block", "up_blocks.0.resnets.0", "up_blocks.0.temporal_attentions.0"]
    assert names[3] == ["mid_block"]


@pytest.mark.usefixtures("no_grad")
def test_non_uniform_schedule(counted_pipe, counted_pipe_output):
    steps = non_uniform_full_steps(25, 9, center=0.5, power=1.4)
    assert len(steps) == 9 and 0 in steps and max(steps) < 25
    gaps = [later - earlier for earlier, later in zip(sorted(steps), sorted(steps)[1:])]
    # densest around the center step 12, sparsest at the ends
    assert min(gaps) < 25 / 9 < max(gaps) and gaps[0] > gaps[len(gaps) // 2]

    counted_pipe.calls.clear()
    config = DeepCacheConfig(schedule="non_uniform", num_steps_callback=lambda: counted_pipe.num_timesteps)
    output = cached(counted_pipe, config)
    assert counted_pipe.calls == {"deep": len(non_uniform_full_steps(NUM_STEPS, 3, 0.5, 1.4)), "shallow": NUM_STEPS}
    assert not torch.equal(output, counted_pipe_output) and torch.isfinite(output).all()


@pytest.mark.usefixtures("no_grad")
def test_guidance_switched_off_by_a_callback_runs_a_full_step(counted_pipe):
    def stop_guidance(pipeline, step, timestep, callback_kwargs):
        if step == 3:
            # the batch halves: nothing of that shape is cached yet
            callback_kwargs["prompt_embeds"] = callback_kwargs["prompt_embeds"].chunk(2)[1]
        return callback_kwargs

    counted_pipe.calls.clear()
    output = cached(
        counted_pipe,
        DeepCacheConfig(cache_interval=3),
        callback_on_step_end=stop_guidance,
        callback_on_step_end_tensor_inputs=["prompt_embeds"],
    )
    # full steps 0 and 3 (scheduled), 4 (new batch shape), 6
    assert counted_pipe.calls == {"deep": 4, "shallow": NUM_STEPS}
    assert torch.isfinite(output).all()


@pytest.mark.usefixtures("no_grad")
@pytest.mark.parametrize(
    "scheduler_class",
    [EulerDiscreteScheduler, DPMSolverMultistepScheduler, HeunDiscreteScheduler, FlowMatchEulerDiscreteScheduler],
)
def test_every_scheduler(counted_pipe, counted_pipe_output, scheduler_class):
    original = counted_pipe.scheduler
    counted_pipe.scheduler = scheduler_class.from_config(original.config)
    try:
        reference = generate(counted_pipe, num_inference_steps=4)
        assert torch.equal(cached(counted_pipe, DeepCacheConfig(cache_interval=1), num_inference_steps=4), reference)
        counted_pipe.calls.clear()
        output = cached(counted_pipe, DeepCacheConfig(cache_interval=2), num_inference_steps=4)
    finally:
        counted_pipe.scheduler = original
    # one U-Net call per timestep (Heun's second-order steps take two)
    num_calls = counted_pipe.calls["shallow"]
    assert num_calls >= 4 and counted_pipe.calls["deep"] == (num_calls + 1) // 2
    assert torch.isfinite(output).all()


@pytest.mark.usefixtures("no_grad")
def test_image_and_video_to_video():
    unet = randomize_weights_(build_unet(conditioning_channels=5), 1, zero_only=True)
    pipe = build_pipeline(unet=unet)
    for inputs in ({"image": torch.rand(3, 16, 16)}, {"video": torch.rand(3, 3, 16, 16), "strength": 0.6}):
        reference = generate(pipe, **inputs)
        assert torch.equal(cached(pipe, DeepCacheConfig(cache_interval=1), **inputs), reference)
        output = cached(pipe, DeepCacheConfig(), **inputs)
        assert torch.isfinite(output).all() and not torch.equal(output, reference)


@pytest.mark.usefixtures("no_grad")
@pytest.mark.parametrize("source", ["modelscope", "animatediff"])
def test_converted_unets(source):
    if source == "modelscope":
        unet = UNetSpatioTemporalModel.from_unet3d(randomize_weights_(build_unet3d(), 1, zero_only=True))
    else:
        unet = UNetSpatioTemporalModel.from_unet2d(build_unet2d(), build_motion_adapter())
    pipe = build_pipeline(unet=unet.eval())
    calls = count_deep_and_shallow_calls(pipe.unet)
    reference = generate(pipe)
    assert torch.equal(cached(pipe, DeepCacheConfig(cache_interval=1)), reference)
    for branch in range(num_skip_connections(pipe.unet)):
        calls.clear()
        output = cached(pipe, DeepCacheConfig(cache_interval=4, cache_branch_id=branch))
        assert calls == {"deep": 2, "shallow": NUM_STEPS}, branch
        assert torch.isfinite(output).all() and not torch.equal(output, reference)


def test_deep_cache_config_is_exported():
    import diffusers_videolatent

    assert "DeepCacheConfig" in diffusers_videolatent.__all__
    assert diffusers_videolatent.DeepCacheConfig is DeepCacheConfig


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"cache_interval": 0}, "cache_interval"),
        ({"cache_interval": 2.5}, "cache_interval"),
        ({"cache_branch_id": -1}, "cache_branch_id"),
        ({"schedule": "quadratic"}, "schedule"),
        ({"non_uniform_center": 1.5}, "non_uniform_center"),
        ({"non_uniform_power": 1.0}, "non_uniform_power"),
        ({"schedule": "non_uniform"}, "num_steps_callback"),
    ],
)
def test_bad_config_values_raise_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"`{field}`"):
        DeepCacheConfig(**kwargs)


def test_a_step_count_that_is_not_positive_raises():
    config = DeepCacheConfig(schedule="non_uniform", num_steps_callback=lambda: 0)
    with pytest.raises(ValueError, match="`num_steps_callback` must return a positive number"):
        config.full_steps(0)


def test_a_branch_the_unet_does_not_have_raises(counted_pipe):
    with pytest.raises(ValueError, match="`cache_branch_id` must be below the 4 skip connections"):
        counted_pipe.unet.enable_cache(DeepCacheConfig(cache_branch_id=4))
    assert not counted_pipe.unet.is_cache_enabled
    counted_pipe.unet.enable_cache(DeepCacheConfig())
    try:
        with pytest.raises(ValueError, match="already been enabled"):
            counted_pipe.unet.enable_cache(DeepCacheConfig())
    finally:
        counted_pipe.unet.disable_cache()
