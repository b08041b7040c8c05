"""Tests of AutoencoderKLVideo on tiny random models (CPU, offline)."""

import pytest
import torch
from diffusers import AutoencoderKL
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput

from diffusers_videolatent import AutoencoderKLVideo

from ..testing_utils import build_image_vae, build_video_vae, randomize_weights_


TEMPORAL_DOWNSAMPLE = {1: (False, False), 2: (False, True), 4: (True, True)}


def tiny_video_vae(ratio: int = 4, seed: int = 0, **overrides) -> AutoencoderKLVideo:
    """`build_video_vae` of temporal ratio `ratio` with random weights everywhere, the temporal taps and the layers
    that start as identity included, so that a wrong temporal pad, cache or chunk boundary changes the numbers."""
    vae = build_video_vae(seed, **{"temporal_downsample": TEMPORAL_DOWNSAMPLE[ratio], **overrides})
    return randomize_weights_(vae, seed, fan_in=True)


def tiny_image_vae(seed: int = 0, **overrides) -> AutoencoderKL:
    """`build_image_vae` of 8 and 16 channels with a scaling and a shift factor, its weights random too."""
    config = {"block_out_channels": (8, 16), "scaling_factor": 0.5, "shift_factor": 0.1, "force_upcast": False}
    return randomize_weights_(build_image_vae(seed, **{**config, **overrides}), seed, fan_in=True)


def video(num_frames: int, height: int = 16, width: int = 16, batch_size: int = 1, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch_size, 3, num_frames, height, width, generator=generator) * 2 - 1


def latents(num_frames: int, height: int = 8, width: int = 8, batch_size: int = 1, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, 4, num_frames, height, width, generator=generator)


def all_at_once_encode(vae: AutoencoderKLVideo, x: torch.Tensor) -> torch.Tensor:
    # The whole video in one pass, without a cache: the reference the streamed path must reproduce.
    return vae.quant_conv(vae.encoder(x))


def all_at_once_decode(vae: AutoencoderKLVideo, z: torch.Tensor) -> torch.Tensor:
    return vae.decoder(vae.post_quant_conv(z))


# ------------------------------------------------------------------------------------------------------------------
# Shapes, config and the frame rule
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [1, 2, 4])
@pytest.mark.parametrize("num_frames", [1, 5, 9, 17])
@torch.no_grad()
def test_shapes(ratio, num_frames):
    vae = tiny_video_vae(ratio)
    output = vae.encode(video(num_frames, batch_size=2))
    assert isinstance(output, AutoencoderKLOutput)
    assert isinstance(output.latent_dist, DiagonalGaussianDistribution)
    latent = output.latent_dist.sample(generator=torch.Generator().manual_seed(0))
    assert latent.shape == (2, 4, 1 + (num_frames - 1) // ratio, 8, 8)

    decoded = vae.decode(latent)
    assert isinstance(decoded, DecoderOutput)
    assert decoded.sample.shape == (2, 3, num_frames, 16, 16)
    assert vae(video(num_frames)).sample.shape == (1, 3, num_frames, 16, 16)
    assert vae(video(num_frames), return_dict=False)[0].shape == (1, 3, num_frames, 16, 16)


def test_compression_ratios_follow_config():
    assert tiny_video_vae(1).temporal_compression_ratio == 1
    assert tiny_video_vae(4).temporal_compression_ratio == 4
    vae = AutoencoderKLVideo(
        block_out_channels=(8, 8, 8, 8, 8), temporal_downsample=(False, True, True, True, False), norm_num_groups=4
    )
    assert vae.spatial_compression_ratio == 16
    assert vae.temporal_compression_ratio == 8
    assert AutoencoderKLVideo(block_out_channels=(8, 8, 8, 8), norm_num_groups=4).spatial_compression_ratio == 8
    with pytest.raises(AttributeError):
        vae.temporal_compression_ratio = 2


def test_bad_config():
    with pytest.raises(ValueError, match="one entry per level"):
        AutoencoderKLVideo(block_out_channels=(8, 16), temporal_downsample=(True,), norm_num_groups=4)
    with pytest.raises(ValueError, match="allowed are 1, 2, 4 and 8"):
        AutoencoderKLVideo(block_out_channels=(8,) * 4, temporal_downsample=(True,) * 4, norm_num_groups=4)
    with pytest.raises(ValueError, match="norm_num_groups"):
        AutoencoderKLVideo(block_out_channels=(8, 12), temporal_downsample=(False, False), norm_num_groups=8)


@pytest.mark.parametrize("ratio", [2, 4])
@torch.no_grad()
def test_encoder_is_causal_and_groups_frames(ratio):
    # latent frame 0 sees video frame 0 only; latent frame k >= 1 sees video frames up to k * r
    vae = tiny_video_vae(ratio)
    x = video(1 + 3 * ratio)
    reference = vae.encode(x).latent_dist.mean
    for frame in range(x.shape[2]):
        perturbed = x.clone()
        perturbed[:, :, frame] += 1.0
        changed = (vae.encode(perturbed).latent_dist.mean - reference).abs().amax(dim=(0, 1, 3, 4)) > 1e-6
        first_changed = 0 if frame == 0 else (frame - 1) // ratio + 1
        assert not changed[:first_changed].any()
        assert changed[first_changed]


@pytest.mark.parametrize("ratio", [1, 4])
@torch.no_grad()
def test_decoder_is_causal(ratio):
    vae = tiny_video_vae(ratio)
    z = latents(4)
    reference = vae.decode(z).sample
    for latent_frame in range(4):
        perturbed = z.clone()
        perturbed[:, :, latent_frame] += 1.0
        changed = (vae.decode(perturbed).sample - reference).abs().amax(dim=(0, 1, 3, 4)) > 1e-6
        first_changed = 0 if latent_frame == 0 else 1 + (latent_frame - 1) * ratio
        assert not changed[:first_changed].any()
        assert changed[first_changed]


# ------------------------------------------------------------------------------------------------------------------
# Streaming, tiling, slicing
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [1, 2, 4])
@torch.no_grad()
def test_streamed_encode_equals_all_at_once(ratio):
    vae = tiny_video_vae(ratio)
    x = video(1 + 4 * ratio)
    reference = all_at_once_encode(vae, x)
    for chunk_size in (None, 1, 2, 3, 100):
        moments = vae.encode(x, chunk_size=chunk_size).latent_dist.parameters
        assert moments.shape == reference.shape
        assert torch.allclose(moments, reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("ratio", [1, 2, 4])
@torch.no_grad()
def test_streamed_decode_equals_all_at_once(ratio):
    vae = tiny_video_vae(ratio)
    z = latents(5)
    reference = all_at_once_decode(vae, z)
    for chunk_size in (None, 1, 2, 3, 100):
        decoded = vae.decode(z, chunk_size=chunk_size).sample
        assert decoded.shape == reference.shape
        assert torch.allclose(decoded, reference, atol=1e-5, rtol=0)
    # no state is left on the modules: a second call gives the same result
    assert torch.equal(vae.decode(z).sample, vae.decode(z).sample)


@pytest.mark.parametrize("ratio", [1, 4])
@torch.no_grad()
def test_frame_by_frame_full_rate_decode_equals_whole_chunks(ratio):
    # Without autograd, the streamed decoder runs the layers after the last temporal upsampling one frame at a time;
    # with autograd it runs them on whole chunks, as before that change. Same frames, chunk by chunk.
    vae = tiny_video_vae(ratio)
    z = latents(4)
    for chunk_size in (1, 2, 100):
        frame_by_frame = vae.decode(z, chunk_size=chunk_size).sample
        with torch.enable_grad():
            whole_chunks = vae.decode(z, chunk_size=chunk_size).sample.detach()
        torch.testing.assert_close(frame_by_frame, whole_chunks, rtol=0, atol=1e-5)


@torch.no_grad()
def test_decode_and_encode_equal_the_path_before_the_speedups():
    # The reference: no oneDNN (PyTorch's own kernel for these small inputs), whole chunks without a cache.
    vae = tiny_video_vae(4, block_out_channels=(8, 16, 16), temporal_downsample=(False, True, True))
    z = latents(3, height=4, width=4)
    x = video(9, height=16, width=16)
    decoded, moments = vae.decode(z).sample, vae.encode(x).latent_dist.parameters
    with torch.backends.mkldnn.flags(enabled=False):
        reference_decoded = all_at_once_decode(vae, z)
        reference_moments = all_at_once_encode(vae, x)
    assert decoded.abs().max() > 0.1
    torch.testing.assert_close(decoded, reference_decoded, rtol=0, atol=1e-5)
    torch.testing.assert_close(moments, reference_moments, rtol=0, atol=1e-5)


def test_onednn_is_used_only_where_it_is_faster_and_gives_the_same_convolution():
    from diffusers_videolatent.models.autoencoder_kl_video import CausalConv3d

    torch.manual_seed(0)
    spatial = CausalConv3d(8, 8, kernel_size=3)
    temporal = CausalConv3d(8, 16, kernel_size=(3, 1, 1))
    x = torch.randn(1, 8, 3, 8, 8)
    assert spatial._uses_onednn(x)
    # a spatially 1x1 kernel, another dtype or disabled oneDNN keep PyTorch's choice
    assert not temporal._uses_onednn(x)
    assert not spatial._uses_onednn(x.bfloat16())
    with torch.backends.mkldnn.flags(enabled=False):
        assert not spatial._uses_onednn(x)
        reference = spatial(x)
    with torch.no_grad():
        output = spatial(x)
    assert output.shape == (1, 8, 3, 8, 8)
    torch.testing.assert_close(output, reference.detach(), rtol=0, atol=1e-5)
    # gradients flow through the oneDNN path as through PyTorch's
    x.requires_grad_(True)
    spatial(x).square().sum().backward()
    onednn_gradient = x.grad.clone()
    x.grad = None
    with torch.backends.mkldnn.flags(enabled=False):
        spatial(x).square().sum().backward()
    torch.testing.assert_close(onednn_gradient, x.grad, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("padding_mode", ["zeros", "replicate"])
def test_upsample_convolution_equals_upsampling_then_convolving(bias, padding_mode):
    # The spatial upsampler convolves the low-resolution frames with four 2x2 kernels folded from its 3x3 one; the
    # reference upsamples first (nearest neighbour) and convolves with the 3x3 kernel. Odd sizes check the borders.
    import torch.nn.functional as F

    from diffusers_videolatent.models.autoencoder_kl_video import CausalCache, CausalConv3d, CausalUpsampleConv3d

    torch.manual_seed(0)
    upsample = CausalUpsampleConv3d(6)
    upsample.padding_mode = padding_mode  # as `AutoencoderKLVideo` sets it on its decoder
    reference = CausalConv3d(6, 6, kernel_size=3, padding_mode=padding_mode)
    if not bias:
        upsample.bias = reference.bias = None
    reference.load_state_dict(upsample.state_dict())
    x = torch.randn(2, 6, 5, 7, 9, requires_grad=True)

    def upsampled(frames):
        return F.interpolate(frames, scale_factor=(1.0, 2.0, 2.0), mode="nearest")

    output = upsample(x)
    assert output.shape == (2, 6, 5, 14, 18)
    torch.testing.assert_close(output, reference(upsampled(x)), rtol=0, atol=1e-5)
    # the same stream chunk by chunk (the cache keeps low-resolution frames), and the same frames with oneDNN off
    cache, reference_cache = CausalCache(), CausalCache()
    chunks = [upsample(x[:, :, :2], cache), upsample(x[:, :, 2:3], cache), upsample(x[:, :, 3:], cache)]
    reference_chunks = [
        reference(upsampled(part), reference_cache) for part in (x[:, :, :2], x[:, :, 2:3], x[:, :, 3:])
    ]
    torch.testing.assert_close(torch.cat(chunks, 2), torch.cat(reference_chunks, 2), rtol=0, atol=1e-5)
    assert torch.cat(cache.get(upsample), 2).shape == (2, 6, 2, 7, 9)
    with torch.backends.mkldnn.flags(enabled=False):
        torch.testing.assert_close(upsample(x), output, rtol=0, atol=1e-5)
    # and the same gradients, for the input and for the 3x3 kernel (training updates the saved parameters)
    output.square().sum().backward()
    gradients = x.grad.clone(), upsample.weight.grad.clone()
    x.grad = None
    reference(upsampled(x)).square().sum().backward()
    torch.testing.assert_close(gradients[0], x.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gradients[1], reference.weight.grad, rtol=1e-4, atol=1e-3)


@torch.no_grad()
def test_decoder_padding_mode_replicates_the_border_in_the_decoder_only(tmp_path):
    import torch.nn.functional as F

    from diffusers_videolatent.models.autoencoder_kl_video import CausalConv3d

    zeros = tiny_video_vae(4)
    assert zeros.config.decoder_padding_mode == "zeros"
    replicate = tiny_video_vae(4, decoder_padding_mode="replicate")
    assert torch.equal(
        torch.cat([p.flatten() for p in zeros.parameters()]), torch.cat([p.flatten() for p in replicate.parameters()])
    )
    # a spatial convolution of the decoder pads with copies of the edge pixels (after the first frame's copies in
    # time); the encoder's still pads with zeros
    x = torch.randn(1, 8, 3, 5, 6)
    conv = replicate.decoder.conv_out
    padded = F.pad(torch.cat([x[:, :, :1], x[:, :, :1], x], 2), (1, 1, 1, 1, 0, 0), mode="replicate")
    torch.testing.assert_close(conv(x), F.conv3d(padded, conv.weight, conv.bias), rtol=0, atol=1e-5)
    assert all(m.padding_mode == "zeros" for m in replicate.encoder.modules() if isinstance(m, CausalConv3d))

    # a latent that is the same everywhere in space decodes to frames that are the same everywhere with edge copies;
    # zero padding darkens or brightens the border (in float64: the group norms of a flat frame magnify rounding)
    z = latents(2, height=6, width=6)[:, :, :, :1, :1].expand(-1, -1, -1, 6, 6).double()
    spread = {
        mode: tiny_video_vae(4, decoder_padding_mode=mode).double().decode(z).sample.flatten(3).std(dim=3).max().item()
        for mode in ("zeros", "replicate")
    }
    assert spread["replicate"] < 1e-9 and spread["zeros"] > 0.1

    # the encoder is the same model; streaming and saving keep the mode
    clip = video(5)
    assert torch.equal(zeros.encode(clip).latent_dist.parameters, replicate.encode(clip).latent_dist.parameters)
    z = latents(3)
    reference = all_at_once_decode(replicate, z)
    assert not torch.allclose(reference, all_at_once_decode(zeros, z), atol=1e-3)
    for chunk_size in (1, 2):
        torch.testing.assert_close(replicate.decode(z, chunk_size=chunk_size).sample, reference, rtol=0, atol=1e-5)
    replicate.save_pretrained(tmp_path)
    loaded = AutoencoderKLVideo.from_pretrained(tmp_path)
    assert loaded.config.decoder_padding_mode == "replicate"
    assert torch.equal(loaded.decode(z).sample, replicate.decode(z).sample)

    with pytest.raises(ValueError, match="`decoder_padding_mode` must be one of"):
        tiny_video_vae(4, decoder_padding_mode="reflect")


@torch.no_grad()
def test_tiling_equals_image_vae_tiling():
    # An inflated ratio-1 VAE must tile exactly like diffusers' AutoencoderKL does, frame by frame.
    image_vae = tiny_image_vae(sample_size=32)
    image_vae.enable_tiling()  # tiles of `sample_size` pixels, overlap factor 0.25
    vae = AutoencoderKLVideo.from_image_vae(image_vae, temporal_compression_ratio=1)
    vae.enable_tiling(tile_sample_min_height=32, tile_sample_min_width=32)
    x = video(2, 48, 48)
    moments = vae.encode(x).latent_dist.mean
    reference = torch.stack([image_vae.encode(x[:, :, i]).latent_dist.mean for i in range(2)], dim=2)
    assert torch.allclose(moments, reference, atol=1e-4, rtol=0)

    z = latents(2, 24, 24)
    decoded = vae.decode(z).sample
    reference = torch.stack([image_vae.decode(z[:, :, i]).sample for i in range(2)], dim=2)
    assert decoded.shape == (1, 3, 2, 48, 48)
    assert torch.allclose(decoded, reference, atol=1e-4, rtol=0)


@torch.no_grad()
def test_tiling_against_plain_path():
    # Tiles see less context than the whole frame (zero-padded borders, per-tile norm statistics and attention), so
    # tiling is approximate by design; its blending is tested exactly against AutoencoderKL above. Stated tolerance for
    # this tiny random model (2x spatial, 16x16-latent tiles, half-tile overlaps): mean abs difference at most 20% of
    # the mean magnitude (measured about 10%), against about 100% between two unrelated videos.
    vae = tiny_video_vae(2)
    x, other, z = video(5, 48, 48), video(5, 48, 48, seed=7), latents(3, 24, 24)
    plain_moments, plain_decoded = vae.encode(x).latent_dist.mean, vae.decode(z).sample
    other_moments = vae.encode(other).latent_dist.mean
    vae.enable_tiling(tile_sample_min_height=32, tile_sample_min_width=32, tile_overlap_factor_height=0.5)
    vae.enable_tiling(tile_overlap_factor_width=0.5)
    assert (vae.tile_sample_min_height, vae.tile_sample_min_width, vae.tile_overlap_factor_width) == (32, 32, 0.5)
    tiled_moments, tiled_decoded = vae.encode(x).latent_dist.mean, vae.decode(z).sample
    assert tiled_moments.shape == plain_moments.shape and tiled_decoded.shape == plain_decoded.shape

    def relative_difference(a, b):
        return ((a - b).abs().mean() / b.abs().mean()).item()

    assert relative_difference(tiled_moments, plain_moments) < 0.2
    assert relative_difference(tiled_decoded, plain_decoded) < 0.2
    assert relative_difference(other_moments, plain_moments) > 0.5

    # a frame that fits in one tile is not tiled at all
    small = video(5, 32, 32)
    vae.disable_tiling()
    reference = vae.encode(small).latent_dist.mean
    vae.enable_tiling()
    assert torch.equal(vae.encode(small).latent_dist.mean, reference)
    with pytest.raises(ValueError, match="tile_sample_min_height"):
        vae.enable_tiling(tile_sample_min_height=31)
    with pytest.raises(ValueError, match="tile_overlap_factor_width"):
        vae.enable_tiling(tile_overlap_factor_width=1.0)


@torch.no_grad()
def test_slicing_equals_batched():
    vae = tiny_video_vae(2)
    x, z = video(5, batch_size=3), latents(3, batch_size=3)
    moments, decoded = vae.encode(x).latent_dist.parameters, vae.decode(z).sample
    vae.enable_slicing()
    assert torch.allclose(vae.encode(x).latent_dist.parameters, moments, atol=1e-5, rtol=0)
    assert torch.allclose(vae.decode(z).sample, decoded, atol=1e-5, rtol=0)


@torch.no_grad()
def test_bfloat16_decode_is_finite():
    vae = tiny_video_vae(2)
    assert vae.config.force_upcast is True
    z = latents(3)
    reference = vae.decode(z).sample
    decoded = vae.to(torch.bfloat16).decode(z.to(torch.bfloat16)).sample
    assert decoded.dtype == torch.bfloat16
    assert torch.isfinite(decoded).all()
    assert (decoded.float() - reference).abs().max().item() < 0.1 * reference.abs().max().item()


# ------------------------------------------------------------------------------------------------------------------
# Inflation from an image VAE
# ------------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def test_from_image_vae_ratio_1_equals_frame_by_frame():
    image_vae = tiny_image_vae()
    vae = AutoencoderKLVideo.from_image_vae(image_vae, temporal_compression_ratio=1)
    assert vae.config.scaling_factor == 0.5 and vae.config.shift_factor == 0.1
    assert vae.config.force_upcast is False
    x = video(5)
    moments = vae.encode(x).latent_dist.parameters
    reference = torch.stack([image_vae.encode(x[:, :, i]).latent_dist.parameters for i in range(5)], dim=2)
    assert torch.allclose(moments, reference, atol=1e-4, rtol=0)

    z = latents(5)
    decoded = vae.decode(z).sample
    reference = torch.stack([image_vae.decode(z[:, :, i]).sample for i in range(5)], dim=2)
    assert torch.allclose(decoded, reference, atol=1e-4, rtol=0)


@pytest.mark.parametrize("ratio,block_out_channels", [(2, (8, 16)), (4, (8, 16)), (8, (8, 16, 16))])
@torch.no_grad()
def test_from_image_vae_keeps_first_frame_and_static_videos(ratio, block_out_channels):
    image_vae = tiny_image_vae(block_out_channels=block_out_channels)
    vae = AutoencoderKLVideo.from_image_vae(image_vae, temporal_compression_ratio=ratio)
    assert vae.temporal_compression_ratio == ratio
    assert vae.config.temporal_downsample[-1] is True  # the deepest levels compress time
    spatial = vae.spatial_compression_ratio

    # the first frame encodes and decodes exactly as the image VAE does
    x = video(1 + 2 * ratio, 2 * spatial, 2 * spatial)
    moments = vae.encode(x).latent_dist.parameters
    assert moments.shape[2] == 3
    assert torch.allclose(moments[:, :, 0], image_vae.encode(x[:, :, 0]).latent_dist.parameters, atol=1e-4, rtol=0)
    z = latents(3, 2, 2)
    decoded = vae.decode(z).sample
    assert decoded.shape[2] == 1 + 2 * ratio
    assert torch.allclose(decoded[:, :, 0], image_vae.decode(z[:, :, 0]).sample, atol=1e-4, rtol=0)

    # the documented starting point: averaging down, repeating up, so a static video behaves like its image
    static = x[:, :, :1].expand(-1, -1, 1 + 2 * ratio, -1, -1)
    image_moments = image_vae.encode(x[:, :, 0]).latent_dist.parameters
    static_moments = vae.encode(static).latent_dist.parameters
    assert torch.allclose(static_moments, image_moments[:, :, None].expand_as(static_moments), atol=1e-4, rtol=0)
    static_latents = z[:, :, :1].expand(-1, -1, 3, -1, -1)
    image_decoded = image_vae.decode(z[:, :, 0]).sample
    static_decoded = vae.decode(static_latents).sample
    assert torch.allclose(static_decoded, image_decoded[:, :, None].expand_as(static_decoded), atol=1e-4, rtol=0)


def test_from_image_vae_bad_input():
    with pytest.raises(TypeError, match="AutoencoderKL"):
        AutoencoderKLVideo.from_image_vae(tiny_video_vae(1))
    with pytest.raises(ValueError, match="1, 2, 4 or 8"):
        AutoencoderKLVideo.from_image_vae(tiny_image_vae(), temporal_compression_ratio=3)
    with pytest.raises(ValueError, match="needs 3 levels"):
        AutoencoderKLVideo.from_image_vae(tiny_image_vae(), temporal_compression_ratio=8)


# ------------------------------------------------------------------------------------------------------------------
# Saving and training
# ------------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def test_save_load_round_trip(tmp_path):
    vae = tiny_video_vae(4, latents_mean=(0.1, 0.2, 0.3, 0.4), latents_std=(1.0, 2.0, 3.0, 4.0))
    vae.save_pretrained(tmp_path)
    loaded = AutoencoderKLVideo.from_pretrained(tmp_path).eval()
    assert loaded.temporal_compression_ratio == 4 and loaded.spatial_compression_ratio == 2
    assert list(loaded.config.latents_mean) == [0.1, 0.2, 0.3, 0.4]
    x, z = video(5), latents(2)
    assert torch.equal(loaded.encode(x).latent_dist.parameters, vae.encode(x).latent_dist.parameters)
    assert torch.equal(loaded.decode(z).sample, vae.decode(z).sample)


def test_gradient_checkpointing_gives_same_gradients():
    x = video(5)

    def gradients(vae):
        vae.train()
        output = vae(x, sample_posterior=True, generator=torch.Generator().manual_seed(0)).sample
        output.square().mean().backward()
        return {name: parameter.grad.clone() for name, parameter in vae.named_parameters()}

    reference = gradients(tiny_video_vae(2))
    vae = tiny_video_vae(2)
    vae.enable_gradient_checkpointing()
    assert vae.encoder.gradient_checkpointing and vae.decoder.gradient_checkpointing
    checkpointed = gradients(vae)
    assert reference.keys() == checkpointed.keys()
    for name in reference:
        assert torch.allclose(checkpointed[name], reference[name], atol=1e-5, rtol=1e-4), name
    assert any(gradient.abs().sum() > 0 for name, gradient in checkpointed.items() if "temporal" in name)


# ------------------------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "num_frames,message", [(16, "13 or 17"), (2, "1 or 5"), (4, "1 or 5"), (6, "5 or 9"), (0, "0 frames")]
)
def test_bad_frame_count(num_frames, message):
    vae = tiny_video_vae(4)
    with pytest.raises(ValueError, match=message):
        vae.encode(torch.zeros(1, 3, num_frames, 16, 16))


def test_bad_video_input():
    vae = tiny_video_vae(2)
    with pytest.raises(ValueError, match=r"height 15.*multiple of spatial_compression_ratio=2"):
        vae.encode(torch.zeros(1, 3, 5, 15, 16))
    with pytest.raises(ValueError, match="width 17"):
        vae.encode(torch.zeros(1, 3, 5, 16, 17))
    with pytest.raises(ValueError, match="4 channels.*in_channels=3"):
        vae.encode(torch.zeros(1, 4, 5, 16, 16))
    with pytest.raises(ValueError, match="add a frame axis"):
        vae.encode(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="5-D"):
        vae.encode(torch.zeros(3, 16, 16))
    with pytest.raises(TypeError, match="torch.Tensor"):
        vae.encode([[0.0]])
    with pytest.raises(ValueError, match="chunk_size"):
        vae.encode(torch.zeros(1, 3, 5, 16, 16), chunk_size=0)


def test_bad_latent_input():
    vae = tiny_video_vae(2)
    with pytest.raises(ValueError, match="3 channels.*latent_channels=4"):
        vae.decode(torch.zeros(1, 3, 2, 8, 8))
    with pytest.raises(ValueError, match="add a frame axis"):
        vae.decode(torch.zeros(1, 4, 8, 8))
    with pytest.raises(ValueError, match="at least one frame"):
        vae.decode(torch.zeros(1, 4, 0, 8, 8))
    with pytest.raises(ValueError, match="chunk_size"):
        vae.decode(torch.zeros(1, 4, 2, 8, 8), chunk_size=-1)
