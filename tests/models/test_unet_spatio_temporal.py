"""Tests of `UNetSpatioTemporalModel` on tiny real models (CPU, no downloads).

The strongest checks are the three conversions: diffusers' `UNet3DConditionModel`, `UNetMotionModel` (AnimateDiff)
and `UNet2DConditionModel` run on the same random weights and inputs must give the same outputs to 1e-4.
"""

import json
import math

import pytest
import torch
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0, SlicedAttnProcessor

from diffusers_videolatent import UNetSpatioTemporalModel, UNetSpatioTemporalOutput
from diffusers_videolatent.models.attention import VideoLatentAttention, VideoLatentAttnProcessor
from diffusers_videolatent.models.unet_spatio_temporal import VideoLatentTemporalTransformer

from ..testing_utils import (
    build_motion_adapter,
    build_unet,
    build_unet2d,
    build_unet3d,
    randomize_weights_,
    recording_attention_scores,
)


CROSS_ATTENTION_DIM = 12
# every part of `build_unet` switched on: temporal convs, the input temporal transformer, a learned frame table
EVERY_PART = {
    "temporal_conv_per_block": True,
    "mid_temporal_conv": True,
    "input_temporal_transformer_layers": 1,
    "input_temporal_num_attention_heads": 2,
    "temporal_position_embedding": "learned",
    "temporal_max_frames": 6,
    "cross_attention_dim": CROSS_ATTENTION_DIM,
}


def build_model(seed: int = 0, **overrides) -> UNetSpatioTemporalModel:
    """`build_unet` with every part on and every weight random, the zero-initialised ones included."""
    return randomize_weights_(build_unet(seed, **{**EVERY_PART, **overrides}), seed, scale=0.2)


def build_image_unet(seed: int = 0) -> UNet2DConditionModel:
    """`build_unet2d` for 12-wide text, every weight random."""
    return randomize_weights_(build_unet2d(seed, cross_attention_dim=CROSS_ATTENTION_DIM), seed + 1, scale=0.2)


def build_random_motion_adapter(seed: int = 7) -> MotionAdapter:
    """`build_motion_adapter` with every weight random (AnimateDiff's zero-initialised projections too)."""
    return randomize_weights_(build_motion_adapter(), seed, scale=0.2)


def make_inputs(num_frames: int = 3, batch_size: int = 2, size: int = 8, channels: int = 4, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch_size, channels, num_frames, size, size, generator=generator)
    timestep = torch.tensor([10, 900])[:batch_size]
    encoder_hidden_states = torch.randn(batch_size, 5, CROSS_ATTENTION_DIM, generator=generator)
    return sample, timestep, encoder_hidden_states


# ---------------------------------------------------------------------------------------------------------------------
# Shapes, determinism, identity initialisation
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_frames", [1, 2, 5])
def test_output_shape(num_frames):
    model = build_model()
    sample, timestep, encoder_hidden_states = make_inputs(num_frames)
    with torch.no_grad():
        output = model(sample, timestep, encoder_hidden_states)
    assert isinstance(output, UNetSpatioTemporalOutput)
    assert output.sample.shape == sample.shape
    assert torch.isfinite(output.sample).all()


def test_timestep_forms_and_rectangular_latents():
    model = build_model()
    sample, _, encoder_hidden_states = make_inputs(2, size=8)
    sample = torch.cat([sample, sample[..., :4]], dim=-1)  # 8 x 12: H and W only need to divide by 2
    with torch.no_grad():
        reference = model(sample, torch.tensor([7, 7]), encoder_hidden_states).sample
        assert reference.shape == sample.shape
        for timestep in (7, torch.tensor(7), torch.tensor([7])):
            torch.testing.assert_close(model(sample, timestep, encoder_hidden_states).sample, reference)


def test_determinism_and_seeded_construction():
    sample, timestep, encoder_hidden_states = make_inputs(3)
    first, second = build_model(seed=3), build_model(seed=3)
    with torch.no_grad():
        out_a = first(sample, timestep, encoder_hidden_states).sample
        out_b = first(sample, timestep, encoder_hidden_states).sample
        out_c = second(sample, timestep, encoder_hidden_states).sample
    assert torch.equal(out_a, out_b)
    assert torch.equal(out_a, out_c)


def test_fresh_temporal_path_is_identity():
    """The central init zero-initialises every temporal output projection: frames are then processed independently."""
    model = build_unet(**EVERY_PART)
    temporal = [m for m in model.modules() if isinstance(m, VideoLatentTemporalTransformer)]
    assert len(temporal) == 1 + 1 + 1 + 1 + 2 + 2  # input, down 0, down 1, mid, up 0 and up 1 (two layers each)
    assert all(m.proj_out.weight.abs().sum() == 0 for m in temporal)
    # make everything but the zero-initialised output projections non-zero, so only the init can explain identity
    randomize_weights_(model, seed=1, scale=0.2, skip=("proj_out", "conv4.3"))
    for m in temporal:
        m.proj_out.weight.data.zero_()
        m.proj_out.bias.data.zero_()

    sample, timestep, encoder_hidden_states = make_inputs(4)
    with torch.no_grad():
        video = model(sample, timestep, encoder_hidden_states).sample
        for frame in range(4):
            single = model(sample[:, :, frame : frame + 1], timestep, encoder_hidden_states).sample
            torch.testing.assert_close(video[:, :, frame : frame + 1], single, atol=1e-5, rtol=1e-5)
        # once a temporal projection is non-zero, frames interact
        temporal[1].proj_out.weight.data.normal_(std=0.5)
        mixed = model(sample, timestep, encoder_hidden_states).sample
    assert (mixed - video).abs().max() > 1e-3


@pytest.mark.parametrize("temporal_cross_attention", [False, True])
def test_temporal_cross_attention_reads_the_text(temporal_cross_attention):
    """With the spatial cross-attentions silenced, the text reaches the output only through temporal ones."""
    model = build_model(temporal_cross_attention=temporal_cross_attention, temporal_conv_dropout=0.0)
    temporal = [m for m in model.modules() if isinstance(m, VideoLatentTemporalTransformer)]
    text_widths = [m.transformer_blocks[0].attn2.to_k.in_features for m in temporal]
    inner_widths = [m.transformer_blocks[0].attn2.to_q.in_features for m in temporal]
    if temporal_cross_attention:  # every temporal transformer but the input one (ModelScope's transformer_in)
        assert text_widths == inner_widths[:1] + [CROSS_ATTENTION_DIM] * (len(temporal) - 1)
    else:
        assert text_widths == inner_widths
    for name, module in model.named_modules():
        if name.endswith("attn2") and ".temporal_attentions." not in name and "transformer_in" not in name:
            module.to_out[0].weight.data.zero_()
            module.to_out[0].bias.data.zero_()

    sample, timestep, encoder_hidden_states = make_inputs(3)
    other_text = make_inputs(3, seed=1)[2]
    with torch.no_grad():
        first = model(sample, timestep, encoder_hidden_states).sample
        second = model(sample, timestep, other_text).sample
    if temporal_cross_attention:
        assert (first - second).abs().max() > 1e-3
    else:
        torch.testing.assert_close(first, second, atol=1e-6, rtol=0)

    # gradient checkpointing recomputes the temporal cross-attention with the same text
    model.train()
    inputs = (sample, timestep, encoder_hidden_states)
    plain_gradients, _ = _gradients_and_activation_bytes(model, inputs, checkpointing=False)
    checkpointed_gradients, _ = _gradients_and_activation_bytes(model, inputs, checkpointing=True)
    for name, gradient in plain_gradients.items():
        torch.testing.assert_close(checkpointed_gradients[name], gradient, atol=1e-5, rtol=1e-4, msg=name)


def test_fps_and_conditioning_latents():
    model = build_model(use_fps_conditioning=True, conditioning_channels=2)
    assert model.conv_in.in_channels == 6
    fresh = build_unet(**EVERY_PART, use_fps_conditioning=True)
    assert fresh.fps_embedding.linear_2.weight.abs().sum() == 0  # inert until trained

    sample, timestep, encoder_hidden_states = make_inputs(2)
    conditioning = torch.randn(2, 2, 2, 8, 8)
    with torch.no_grad():
        out_8 = model(sample, timestep, encoder_hidden_states, fps=8, conditioning_latents=conditioning).sample
        out_8b = model(
            sample, timestep, encoder_hidden_states, fps=torch.tensor([8, 8]), conditioning_latents=conditioning
        )
        out_24 = model(sample, timestep, encoder_hidden_states, fps=24, conditioning_latents=conditioning).sample
        out_other = model(sample, timestep, encoder_hidden_states, fps=8, conditioning_latents=-conditioning).sample
    assert out_8.shape == sample.shape
    torch.testing.assert_close(out_8, out_8b.sample)
    assert (out_8 - out_24).abs().max() > 1e-4
    assert (out_8 - out_other).abs().max() > 1e-4


def test_downsample_factor():
    assert build_model().downsample_factor == 2
    assert (
        build_unet(**EVERY_PART, block_out_channels=(8, 8, 16, 16), transformer_layers_per_block=1).downsample_factor
        == 8
    )


# ---------------------------------------------------------------------------------------------------------------------
# Serialisation and config
# ---------------------------------------------------------------------------------------------------------------------


def test_save_pretrained_round_trip(tmp_path):
    model = build_model()
    sample, timestep, encoder_hidden_states = make_inputs(3)
    model.save_pretrained(tmp_path / "fp32")
    assert (tmp_path / "fp32" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = UNetSpatioTemporalModel.from_pretrained(tmp_path / "fp32").eval()
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(sample, timestep, encoder_hidden_states).sample,
            model(sample, timestep, encoder_hidden_states).sample,
            atol=0,
            rtol=0,
        )


def test_save_pretrained_variant_and_torch_dtype(tmp_path):
    model = build_model().to(torch.float16)
    model.save_pretrained(tmp_path, variant="fp16")
    assert (tmp_path / "diffusion_pytorch_model.fp16.safetensors").is_file()
    with pytest.raises(OSError):
        UNetSpatioTemporalModel.from_pretrained(tmp_path)  # no non-variant weights were written
    loaded = UNetSpatioTemporalModel.from_pretrained(tmp_path, variant="fp16", torch_dtype=torch.float16)
    assert loaded.dtype == torch.float16
    reference = model.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, reference[key]), key


def test_config_round_trip(tmp_path):
    model = build_model()
    model.save_config(tmp_path)
    config = UNetSpatioTemporalModel.load_config(tmp_path)
    rebuilt = UNetSpatioTemporalModel.from_config(config)
    assert json.loads(rebuilt.to_json_string()) == json.loads(model.to_json_string())
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert rebuilt.config.temporal_position_embedding == "learned"
    assert list(rebuilt.config.block_out_channels) == [8, 16]


def test_dict_and_tuple_outputs_match():
    model = build_model()
    sample, timestep, encoder_hidden_states = make_inputs(2)
    with torch.no_grad():
        as_dict = model(sample, timestep, encoder_hidden_states, return_dict=True).sample
        as_tuple = model(sample, timestep, encoder_hidden_states, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 1
    assert torch.equal(as_dict, as_tuple[0])


# ---------------------------------------------------------------------------------------------------------------------
# Training and memory features
# ---------------------------------------------------------------------------------------------------------------------


def _gradients_and_activation_bytes(model, inputs, checkpointing: bool):
    """Runs forward + backward; returns the gradients and the bytes held for backward at the end of forward.

    Held bytes are the tensors autograd saves (seen through `saved_tensors_hooks`) plus the inputs kept by each
    checkpointed call, de-duplicated by storage; parameters are excluded.
    """
    parameter_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    held = {}

    def record(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameter_storages:
            held[storage.data_ptr()] = storage.nbytes()

    def pack(tensor):
        record(tensor)
        return tensor

    def checkpoint(module, *args):
        for argument in args:
            if isinstance(argument, torch.Tensor):
                record(argument)
        return torch.utils.checkpoint.checkpoint(module.__call__, *args, use_reentrant=False)

    if checkpointing:
        model.enable_gradient_checkpointing(gradient_checkpointing_func=checkpoint)
    else:
        model.disable_gradient_checkpointing()
    model.zero_grad()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = model(*inputs).sample
    activation_bytes = sum(held.values())
    output.square().mean().backward()
    gradients = {name: p.grad.clone() for name, p in model.named_parameters()}
    return gradients, activation_bytes


def test_gradient_checkpointing_same_gradients_less_memory():
    model = build_model(temporal_conv_dropout=0.0)
    model.train()
    inputs = make_inputs(3, size=16)

    plain_gradients, plain_bytes = _gradients_and_activation_bytes(model, inputs, checkpointing=False)
    assert not model.is_gradient_checkpointing
    checkpointed_gradients, checkpointed_bytes = _gradients_and_activation_bytes(model, inputs, checkpointing=True)
    assert model.is_gradient_checkpointing
    assert model.down_blocks[0].gradient_checkpointing and model.transformer_in.gradient_checkpointing

    for name, gradient in plain_gradients.items():
        torch.testing.assert_close(checkpointed_gradients[name], gradient, atol=1e-5, rtol=1e-4, msg=name)
    assert checkpointed_bytes < 0.6 * plain_bytes, (checkpointed_bytes, plain_bytes)


def test_attention_processor_swaps():
    model = build_model()
    sample, timestep, encoder_hidden_states = make_inputs(2)
    processors = model.attn_processors
    # attn1 + attn2 of 4 spatial transformers (down 0, mid, up 1 x2) and 8 temporal ones (input, down 0/1, mid, up x4)
    assert len(processors) == 2 * 4 + 2 * (1 + 1 + 1 + 1 + 2 + 2)
    assert all(type(p) is VideoLatentAttnProcessor for p in processors.values())
    layers = [module for module in model.modules() if isinstance(module, VideoLatentAttention)]
    assert len(layers) == len(processors)
    with torch.no_grad():
        reference = model(sample, timestep, encoder_hidden_states).sample

        # diffusers' classic processors still run on our attention layers, with the same result
        model.set_attn_processor(AttnProcessor())
        assert all(isinstance(p, AttnProcessor) for p in model.attn_processors.values())
        torch.testing.assert_close(model(sample, timestep, encoder_hidden_states).sample, reference)

        model.set_attn_processor({name: AttnProcessor2_0() for name in processors})
        assert all(isinstance(p, AttnProcessor2_0) for p in model.attn_processors.values())
        torch.testing.assert_close(model(sample, timestep, encoder_hidden_states).sample, reference)
        model.set_default_attn_processor()
        assert all(type(p) is VideoLatentAttnProcessor for p in model.attn_processors.values())
        torch.testing.assert_close(model(sample, timestep, encoder_hidden_states).sample, reference)

        model.fuse_qkv_projections()
        assert all(layer.fused_projections for layer in layers)
        # self-attention fuses query, key and value; cross-attention to the text fuses key and value
        assert sum(hasattr(layer, "to_qkv") for layer in layers) == sum(
            not layer.is_cross_attention for layer in layers
        )
        assert (
            sum(hasattr(layer, "to_kv") for layer in layers) == sum(layer.is_cross_attention for layer in layers) > 0
        )
        torch.testing.assert_close(model(sample, timestep, encoder_hidden_states).sample, reference)
        model.unfuse_qkv_projections()
        assert not any(layer.fused_projections or hasattr(layer, "to_qkv") for layer in layers)
        assert all(type(p) is VideoLatentAttnProcessor for p in model.attn_processors.values())
        assert set(model.state_dict()) == set(build_model().state_dict())

        model.enable_forward_chunking(chunk_size=1, dim=1)
        torch.testing.assert_close(model(sample, timestep, encoder_hidden_states).sample, reference)
        model.disable_forward_chunking()


def test_layerwise_casting_keeps_norms_and_stays_close():
    model = build_model()
    sample, timestep, encoder_hidden_states = make_inputs(2)
    with torch.no_grad():
        reference = model(sample, timestep, encoder_hidden_states).sample
        model.enable_layerwise_casting(storage_dtype=torch.bfloat16, compute_dtype=torch.float32)
        cast = model(sample, timestep, encoder_hidden_states).sample
    assert model.down_blocks[0].temporal_convs[0].conv1[2].weight.dtype == torch.bfloat16
    assert model.down_blocks[0].temporal_attentions[0].norm.weight.dtype == torch.float32  # skipped pattern "norm"
    assert model.time_embedding.linear_1.weight.dtype == torch.float32  # skipped pattern "time_embedding"
    assert (cast - reference).abs().max() < 0.1 * reference.abs().mean()


def test_lora_adapter_add_save_load(tmp_path):
    pytest.importorskip("peft")
    from peft import LoraConfig

    sample, timestep, encoder_hidden_states = make_inputs(2)
    model = build_model()
    with torch.no_grad():
        base = model(sample, timestep, encoder_hidden_states).sample
    lora_config = LoraConfig(
        r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False
    )
    model.add_adapter(lora_config)
    with torch.no_grad():
        adapted = model(sample, timestep, encoder_hidden_states).sample
    assert (adapted - base).abs().max() > 1e-4
    model.save_lora_adapter(tmp_path)
    assert (tmp_path / "pytorch_lora_weights.safetensors").is_file()

    reloaded = build_model()
    reloaded.load_lora_adapter(
        tmp_path, prefix=None, adapter_name="default", weight_name="pytorch_lora_weights.safetensors"
    )
    with torch.no_grad():
        torch.testing.assert_close(reloaded(sample, timestep, encoder_hidden_states).sample, adapted)
        reloaded.disable_adapters()
        torch.testing.assert_close(reloaded(sample, timestep, encoder_hidden_states).sample, base)


def test_torch_compile_fullgraph():
    model = build_model(temporal_position_embedding="sinusoidal")
    sample, timestep, encoder_hidden_states = make_inputs(2)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="eager")  # a graph break raises with fullgraph=True
    with torch.no_grad():
        torch.testing.assert_close(
            compiled(sample, timestep, encoder_hidden_states).sample,
            model(sample, timestep, encoder_hidden_states).sample,
        )
    torch._dynamo.reset()


# ---------------------------------------------------------------------------------------------------------------------
# Bringing existing U-Nets in: equality with diffusers' models on non-zero temporal weights
# ---------------------------------------------------------------------------------------------------------------------


def test_from_unet3d_matches_diffusers():
    unet = randomize_weights_(build_unet3d(cross_attention_dim=CROSS_ATTENTION_DIM), seed=5, scale=0.2)
    assert all(p.abs().sum() > 0 for p in unet.parameters())  # temporal convs' zero init was overwritten
    model = UNetSpatioTemporalModel.from_unet3d(unet).eval()
    assert model.config.temporal_position_embedding == "none"
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in unet.parameters())
    for num_frames in (1, 2, 5):
        sample, timestep, encoder_hidden_states = make_inputs(num_frames, seed=num_frames)
        with torch.no_grad():
            expected = unet(sample, timestep, encoder_hidden_states).sample
            actual = model(sample, timestep, encoder_hidden_states).sample
        assert expected.abs().mean() > 1e-2
        torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)


def test_from_unet2d_with_motion_adapter_matches_unet_motion_model():
    unet = build_image_unet()
    adapter = build_random_motion_adapter()
    reference = UNetMotionModel.from_unet2d(unet, adapter).eval()
    model = UNetSpatioTemporalModel.from_unet2d(unet, adapter).eval()
    assert model.config.temporal_position_embedding == "sinusoidal"
    for num_frames in (1, 2, 5):
        sample, timestep, encoder_hidden_states = make_inputs(num_frames, seed=num_frames)
        with torch.no_grad():
            # `UNetMotionModel` takes the text once per frame
            expected = reference(sample, timestep, encoder_hidden_states.repeat_interleave(num_frames, 0)).sample
            actual = model(sample, timestep, encoder_hidden_states).sample
        assert expected.abs().mean() > 1e-2
        torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)


def test_from_unet2d_without_mid_motion_module():
    unet = build_image_unet()
    adapter = randomize_weights_(build_motion_adapter(use_motion_mid_block=False), seed=8, scale=0.2)
    reference = UNetMotionModel.from_unet2d(unet, adapter).eval()
    model = UNetSpatioTemporalModel.from_unet2d(unet, adapter).eval()
    assert model.mid_block.temporal_attentions is None
    sample, timestep, encoder_hidden_states = make_inputs(3)
    with torch.no_grad():
        expected = reference(sample, timestep, encoder_hidden_states.repeat_interleave(3, 0)).sample
        torch.testing.assert_close(model(sample, timestep, encoder_hidden_states).sample, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("temporal_conv", [False, True])
def test_from_unet2d_inflation_matches_image_unet_per_frame(temporal_conv):
    unet = build_image_unet()
    model = UNetSpatioTemporalModel.from_unet2d(unet, temporal_num_attention_heads=2, temporal_conv=temporal_conv)
    # every temporal weight but the zero-initialised output projections is made non-zero
    randomize_weights_(model, seed=9, scale=0.2, skip=("down_blocks.0.resnets", "proj_out", "conv4.3"))
    model.load_state_dict({**model.state_dict(), **unet.state_dict()})
    model.eval()
    for num_frames in (1, 3):
        sample, timestep, encoder_hidden_states = make_inputs(num_frames, seed=num_frames)
        batch_size = sample.shape[0]
        frames = sample.permute(0, 2, 1, 3, 4).reshape(batch_size * num_frames, 4, 8, 8)
        with torch.no_grad():
            expected = unet(
                frames, timestep.repeat_interleave(num_frames), encoder_hidden_states.repeat_interleave(num_frames, 0)
            ).sample
            expected = expected.reshape(batch_size, num_frames, 4, 8, 8).permute(0, 2, 1, 3, 4)
            actual = model(sample, timestep, encoder_hidden_states).sample
        assert expected.abs().mean() > 1e-2
        torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)


def test_conversion_refuses_unsupported_configs():
    unet = build_unet2d(cross_attention_dim=CROSS_ATTENTION_DIM, class_embed_type="timestep")
    with pytest.raises(ValueError, match="class_embed_type"):
        UNetSpatioTemporalModel.from_unet2d(unet)
    adapter = build_motion_adapter(motion_layers_per_block=2)
    with pytest.raises(ValueError, match="motion_layers_per_block"):
        UNetSpatioTemporalModel.from_unet2d(build_image_unet(), adapter)


# ---------------------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------------------


BAD_INPUTS = {
    "sample rank": (lambda s, t, e: (s[:, :, 0], t, e), r"`sample` must be a 5D tensor.*\(2, 4, 8, 8\)"),
    "sample channels": (lambda s, t, e: (s[:, :3], t, e), r"`sample` must have `in_channels`=4.*got 3"),
    "sample size": (lambda s, t, e: (s[..., :7], t, e), r"`sample` height and width.*factor 2.*8x7"),
    "text width": (lambda s, t, e: (s, t, e[..., :5]), r"`encoder_hidden_states`.*\[2, L, 12\].*\(2, 5, 5\)"),
    "text batch": (lambda s, t, e: (s, t, e[:1]), r"`encoder_hidden_states`.*\[2, L, 12\].*\(1, 5, 12\)"),
    "text per frame": (lambda s, t, e: (s, t, e[0]), r"`encoder_hidden_states` must be a 3D tensor.*\(5, 12\)"),
    "timestep batch": (lambda s, t, e: (s, torch.tensor([1, 2, 3]), e), r"`timestep`.*\[2\].*got shape \(3,\)"),
    "timestep rank": (lambda s, t, e: (s, torch.ones(2, 1), e), r"`timestep`.*got shape \(2, 1\)"),
    "too many frames": (
        lambda s, t, e: (torch.cat([s] * 3, dim=2), t, e),
        r"`sample` has 9 frames.*learned.*`temporal_max_frames`=6",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_value_error(case):
    model = build_model()
    make_bad, message = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=message):
        model(*make_bad(*make_inputs(3)))


def test_bad_conditioning_inputs_raise_value_error():
    plain = build_model()
    conditioned = build_model(use_fps_conditioning=True, conditioning_channels=2)
    sample, timestep, encoder_hidden_states = make_inputs(2)
    with pytest.raises(ValueError, match=r"`conditioning_latents` must have shape \(2, 2, 2, 8, 8\), got None"):
        conditioned(sample, timestep, encoder_hidden_states, fps=8)
    with pytest.raises(ValueError, match=r"`conditioning_latents` must have shape.*got \(2, 1, 2, 8, 8\)"):
        conditioned(sample, timestep, encoder_hidden_states, fps=8, conditioning_latents=torch.zeros(2, 1, 2, 8, 8))
    with pytest.raises(ValueError, match=r"`fps` is required"):
        conditioned(sample, timestep, encoder_hidden_states, conditioning_latents=torch.zeros(2, 2, 2, 8, 8))
    with pytest.raises(ValueError, match=r"`fps`.*\[2\].*got shape \(3,\)"):
        conditioned(
            sample, timestep, encoder_hidden_states, fps=torch.ones(3), conditioning_latents=torch.zeros(2, 2, 2, 8, 8)
        )
    with pytest.raises(ValueError, match=r"`fps`=8 was given.*`use_fps_conditioning`=False"):
        plain(sample, timestep, encoder_hidden_states, fps=8)
    with pytest.raises(ValueError, match=r"`conditioning_latents` was given.*`conditioning_channels`=0"):
        plain(sample, timestep, encoder_hidden_states, conditioning_latents=torch.zeros(2, 2, 2, 8, 8))


def test_bad_config_raises_value_error():
    with pytest.raises(ValueError, match=r"`temporal_position_embedding` must be one of.*'rope'"):
        build_unet(**{**EVERY_PART, "temporal_position_embedding": "rope"})
    with pytest.raises(ValueError, match=r"`transformer_layers_per_block` must have one entry per level.*got 3"):
        build_unet(**EVERY_PART, transformer_layers_per_block=(1, 1, 1))
    with pytest.raises(
        ValueError, match=r"`block_out_channels\[0\]` \(8\).*`temporal_num_attention_heads\[0\]` \(3\)"
    ):
        build_unet(**EVERY_PART, temporal_num_attention_heads=3)


# ---------------------------------------------------------------------------------------------------------------------
# FreeU and attention slicing, against diffusers' U-Nets
# ---------------------------------------------------------------------------------------------------------------------

FREEU = {"s1": 0.9, "s2": 0.2, "b1": 1.2, "b2": 1.4}


@pytest.mark.parametrize("source", ["unet_motion_model", "unet3d"])
def test_freeu_matches_diffusers_and_disable_restores_bit_for_bit(source):
    if source == "unet_motion_model":
        adapter = build_random_motion_adapter()
        reference = UNetMotionModel.from_unet2d(build_image_unet(), adapter).eval()
        model = UNetSpatioTemporalModel.from_unet2d(build_image_unet(), adapter).eval()
    else:
        reference = randomize_weights_(build_unet3d(cross_attention_dim=CROSS_ATTENTION_DIM), seed=5, scale=0.2)
        model = UNetSpatioTemporalModel.from_unet3d(reference).eval()
    num_frames = 3
    sample, timestep, encoder_hidden_states = make_inputs(num_frames)
    reference_text = encoder_hidden_states
    if source == "unet_motion_model":  # `UNetMotionModel` takes the text once per frame
        reference_text = encoder_hidden_states.repeat_interleave(num_frames, 0)
    with torch.no_grad():
        plain = model(sample, timestep, encoder_hidden_states).sample
        reference.enable_freeu(**FREEU)
        model.enable_freeu(**FREEU)
        expected = reference(sample, timestep, reference_text).sample
        actual = model(sample, timestep, encoder_hidden_states).sample
        model.disable_freeu()
        restored = model(sample, timestep, encoder_hidden_states).sample
    assert (actual - plain).abs().max() > 1e-2  # FreeU really changes the output
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)
    assert torch.equal(restored, plain)
    assert [block.resolution_idx for block in model.up_blocks] == [0, 1]


@pytest.mark.parametrize("value", [0, -1.0, "1.2", None, True])
def test_enable_freeu_rejects_bad_factors(value):
    model = build_model()
    with pytest.raises(ValueError, match="`b2` must be a positive number"):
        model.enable_freeu(s1=0.9, s2=0.2, b1=1.2, b2=value)
    assert all(getattr(block, "b1", None) is None for block in model.up_blocks)


def test_set_attention_slice_slices_every_processor_and_bounds_the_scores():
    model = build_model()
    sample, timestep, encoder_hidden_states = make_inputs(3)
    num_processors = len(model.attn_processors)
    # the unsliced reference forms each layer's full `(batch * heads, queries, keys)` score tensor
    model.set_attn_processor(AttnProcessor())
    with torch.no_grad(), recording_attention_scores() as full_shapes:
        reference = model(sample, timestep, encoder_hidden_states).sample
    assert len(full_shapes) == num_processors

    model.set_attention_slice("max")
    assert [type(p) for p in model.attn_processors.values()] == [SlicedAttnProcessor] * num_processors
    assert {p.slice_size for p in model.attn_processors.values()} == {1}
    with torch.no_grad(), recording_attention_scores() as shapes:
        sliced = model(sample, timestep, encoder_hidden_states).sample
    torch.testing.assert_close(sliced, reference, atol=1e-5, rtol=0)
    assert all(shape[0] == 1 for shape in shapes)  # one (video-frame, head) slice at a time
    largest_full = max(math.prod(shape) for shape in full_shapes)
    largest_sliced = max(math.prod(shape) for shape in shapes)
    # each layer's slice is its full tensor divided by its batch * heads (at least 2 videos x 2 heads here)
    assert largest_sliced * 4 <= largest_full, (largest_sliced, largest_full)

    model.set_attention_slice(None)
    assert all(type(p) is VideoLatentAttnProcessor for p in model.attn_processors.values())
    with pytest.raises(ValueError, match="has to be smaller or equal to 2"):
        model.set_attention_slice(3)
