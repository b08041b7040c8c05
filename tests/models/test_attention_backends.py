"""diffusers' attention backends reach every attention layer of the U-Net and the VAE.

Each layer is a `VideoLatentAttention` whose processor calls `dispatch_attention_fn`. The backend functions in
diffusers' registry are wrapped with counters, and forward hooks on each layer check that the layer itself made exactly
one call, to the selected backend, whether it was chosen with `set_attention_backend` or the `attention_backend`
context manager. Outputs equal the default backend's within 1e-5.
"""

import collections
import contextlib
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
import torch
from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry, attention_backend
from diffusers.models.attention_processor import (
    Attention,
    AttnAddedKVProcessor2_0,
    AttnProcessor2_0,
    FusedAttnProcessor2_0,
    IPAdapterAttnProcessor2_0,
)

from diffusers_videolatent import AutoencoderKLVideo, UNetSpatioTemporalModel
from diffusers_videolatent.models.attention import VideoLatentAttention, VideoLatentAttnProcessor
from diffusers_videolatent.models.unet_spatio_temporal import build_conditioning_latents

from ..testing_utils import build_unet, build_video_vae


pytestmark = pytest.mark.usefixtures("no_grad", "restore_active_backend")

# the backends diffusers' dispatcher can run on a CPU (flash, sage, xformers, cuDNN, ... need CUDA or packages)
CPU_BACKENDS = ("native", "_native_math", "_native_flash", "flex")
DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "diffusers_videolatent" / "default_model"


@contextlib.contextmanager
def counting_backend_calls(model: torch.nn.Module) -> Iterator[tuple[collections.Counter, list[dict[str, int]]]]:
    """Counts the calls of every backend function in diffusers' registry, in total and per attention layer (there
    with the layer's own `"forward"` calls)."""
    totals = collections.Counter()

    def counted(name, function):
        def backend(**kwargs):
            totals[name.value] += 1
            return function(**kwargs)

        return backend

    per_layer = []
    handles = []
    for layer in attention_layers(model):
        calls = collections.Counter()
        per_layer.append(calls)

        def before(module, args, calls=calls):
            calls["forward"] += 1
            calls.subtract(totals)

        def after(module, args, output, calls=calls):
            calls.update(totals)

        handles += [layer.register_forward_pre_hook(before), layer.register_forward_hook(after)]
    backends = {name: counted(name, function) for name, function in _AttentionBackendRegistry._backends.items()}
    try:
        with mock.patch.dict(_AttentionBackendRegistry._backends, backends):
            yield totals, per_layer
    finally:
        for handle in handles:
            handle.remove()


def attention_layers(model: torch.nn.Module) -> list[VideoLatentAttention]:
    return [module for module in model.modules() if isinstance(module, VideoLatentAttention)]


def assert_each_layer_called(per_layer: list[collections.Counter], backend: str) -> None:
    """Every layer ran, and each of its runs made exactly one backend call, to `backend`."""
    for calls in per_layer:
        calls = {name: count for name, count in calls.items() if count}
        assert calls.get("forward", 0) >= 1 and calls == {"forward": calls["forward"], backend: calls["forward"]}, (
            calls
        )


def build(kind: str) -> tuple[torch.nn.Module, callable]:
    """A tiny model and a function running one forward pass of it on fixed inputs."""
    if kind == "unet":
        model = build_unet(identity_init=False)
        generator = torch.Generator().manual_seed(0)
        sample = torch.randn(2, model.config.in_channels, 3, 8, 8, generator=generator)
        text = torch.randn(2, 5, model.config.cross_attention_dim, generator=generator)
        return model, lambda: model(sample, torch.tensor([10, 900]), text).sample
    model = build_video_vae().eval()
    video = torch.rand(1, 3, 5, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return model, lambda: model.decode(model.encode(video).latent_dist.mode()).sample


@pytest.mark.parametrize("kind", ["unet", "vae"])
def test_every_attention_layer_is_a_dispatcher_layer(kind):
    model, _ = build(kind)
    layers = attention_layers(model)
    # 4 spatial and 7 temporal transformers of two attentions each; the VAE's encoder and decoder mid blocks
    assert len(layers) == (22 if kind == "unet" else 2)
    assert not any(isinstance(module, Attention) for module in model.modules())
    assert all(type(layer.processor) is VideoLatentAttnProcessor for layer in layers)
    assert all(layer.processor._attention_backend is None for layer in layers)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("kind", ["unet", "vae"])
def test_set_attention_backend_reaches_every_layer(kind, backend):
    model, forward = build(kind)
    layers = attention_layers(model)
    reference = forward()

    model.set_attention_backend(backend)
    assert [layer.processor._attention_backend for layer in layers] == [AttentionBackendName(backend)] * len(layers)
    # the process-wide default is elsewhere: only the processors' own setting can route the calls
    _AttentionBackendRegistry.set_active_backend(
        AttentionBackendName.NATIVE if backend != "native" else AttentionBackendName._NATIVE_MATH
    )
    with counting_backend_calls(model) as (totals, per_layer):
        output = forward()
    assert set(totals) == {backend} and totals[backend] == sum(calls["forward"] for calls in per_layer)
    assert_each_layer_called(per_layer, backend)
    torch.testing.assert_close(output, reference, atol=1e-5, rtol=0)

    model.reset_attention_backend()
    assert all(layer.processor._attention_backend is None for layer in layers)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("kind", ["unet", "vae"])
def test_attention_backend_context_manager_reaches_every_layer(kind, backend):
    model, forward = build(kind)
    reference = forward()

    with counting_backend_calls(model) as (totals, per_layer):
        with attention_backend(backend):
            output = forward()
        assert set(totals) == {backend} and totals[backend] == sum(calls["forward"] for calls in per_layer)
        assert_each_layer_called(per_layer, backend)
        totals.clear()
        forward()
        assert set(totals) == {_AttentionBackendRegistry._active_backend.value}
    torch.testing.assert_close(output, reference, atol=1e-5, rtol=0)


def test_fused_projections_stay_on_the_selected_backend():
    model, forward = build("unet")
    reference = forward()
    model.fuse_qkv_projections()
    model.set_attention_backend("_native_math")
    with counting_backend_calls(model) as (totals, _):
        output = forward()
    assert dict(totals) == {"_native_math": len(attention_layers(model))}
    torch.testing.assert_close(output, reference, atol=1e-5, rtol=0)


def test_classic_processors_bypass_the_dispatcher_until_the_default_is_restored():
    model, forward = build("unet")
    reference = forward()
    model.set_attn_processor(AttnProcessor2_0())
    model.set_attention_backend("_native_math")
    with counting_backend_calls(model) as (totals, _):
        torch.testing.assert_close(forward(), reference, atol=1e-5, rtol=0)
    assert not totals  # diffusers' `AttnProcessor2_0` calls torch directly and has no backend to set

    model.set_default_attn_processor()
    model.set_attention_backend("_native_math")
    with counting_backend_calls(model) as (totals, _):
        torch.testing.assert_close(forward(), reference, atol=1e-5, rtol=0)
    assert dict(totals) == {"_native_math": len(attention_layers(model))}


@pytest.mark.parametrize("backend", ["_native_math", "_native_flash"])
def test_the_shipped_model_reaches_every_backend_layer(backend):
    unet = UNetSpatioTemporalModel.from_pretrained(DEFAULT_MODEL, subfolder="unet").eval()
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(1, unet.config.in_channels, 3, 8, 8, generator=generator)
    text = torch.randn(1, 4, unet.config.cross_attention_dim, generator=generator)
    # the shipped U-Net also takes an image (image-to-video), as the pipeline feeds it
    image_latents = torch.randn(1, unet.config.in_channels, 1, 8, 8, generator=generator)
    conditioning = build_conditioning_latents(sample, unet.config.conditioning_channels, image_latents)
    fps = torch.tensor([8.0])  # the shipped U-Net is told the frame rate
    reference = unet(sample, 500, text, conditioning_latents=conditioning, fps=fps).sample

    unet.set_attention_backend(backend)
    with counting_backend_calls(unet) as (totals, per_layer):
        output = unet(sample, 500, text, conditioning_latents=conditioning, fps=fps).sample
    # 2 x (2 down + 1 mid + 4 up) spatial and 2 x 7 temporal attentions, each called once
    assert len(per_layer) == 28 and dict(totals) == {backend: 28}
    assert_each_layer_called(per_layer, backend)
    torch.testing.assert_close(output, reference, atol=1e-5, rtol=0)
    # the shipped VAE was trained without mid-block attention (`mid_block_add_attention=False`)
    assert not attention_layers(AutoencoderKLVideo.from_pretrained(DEFAULT_MODEL, subfolder="vae"))


def test_diffusers_fused_processor_runs_on_fused_layers():
    model, forward = build("unet")
    reference = forward()
    model.fuse_qkv_projections()
    model.set_attn_processor(FusedAttnProcessor2_0())
    torch.testing.assert_close(forward(), reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["added_kv", "ip_adapter"])
def test_processors_that_need_other_layers_are_refused(name):
    model, _ = build("unet")
    if name == "added_kv":
        processor = AttnAddedKVProcessor2_0()
    else:
        processor = IPAdapterAttnProcessor2_0(hidden_size=16, cross_attention_dim=16)
    with pytest.raises(
        ValueError, match=rf"`processor` {type(processor).__name__} cannot run on VideoLatentAttention"
    ):
        model.set_attn_processor(processor)
    # refused before any layer changed
    assert all(type(layer.processor) is VideoLatentAttnProcessor for layer in attention_layers(model))
