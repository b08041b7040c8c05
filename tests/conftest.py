"""Shared builders of tiny, real components (a few thousand parameters each) for the whole test suite.

Nothing here downloads anything: the CLIP tokenizer is written to a temporary folder from a hand-made vocabulary.
Builders are plain functions (seeded, so two calls give identical weights) plus a few fixtures wrapping them.
"""

import contextlib
import json
import string
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import diffusers
import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel, UNet3DConditionModel
from packaging import version
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from diffusers_videolatent import AutoencoderKLVideo, UNetSpatioTemporalModel
from diffusers_videolatent.models.attention import VideoLatentAttention


# The tiny models of this suite run fastest on one thread: on the shared 2-core machine, intra-op parallelism on
# tensors this small costs far more in synchronisation than it gains (measured 90x slower per `linear` under load).
torch.set_num_threads(1)

# diffusers 0.38's hooks cannot run these on the CPU (group offloading to disk: its onload device is None on the
# module's first call; TaylorSeer: its state is read before the cache context is set); tested on 0.42
needs_diffusers_hooks_0_42 = pytest.mark.skipif(
    version.parse(diffusers.__version__) < version.parse("0.42"),
    reason="diffusers < 0.42 cannot run group offloading to disk or TaylorSeer on the CPU",
)

TEXT_HIDDEN_SIZE = 16
TOKENIZER_MAX_LENGTH = 16


def write_tiny_clip_tokenizer(folder: str | Path, model_max_length: int = TOKENIZER_MAX_LENGTH) -> Path:
    """Writes `vocab.json`, `merges.txt` and `tokenizer_config.json` of a character-level CLIP tokenizer."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    characters = string.ascii_lowercase + string.digits + ".,!?'-"
    tokens = ["<|startoftext|>", "<|endoftext|>"]
    tokens += list(characters) + [character + "</w>" for character in characters]
    # a few merges so that byte-pair encoding really runs
    merges = ["t h", "th e</w>", "a n", "an d</w>", "i n", "in g</w>"]
    tokens += [merge.replace(" ", "") for merge in merges]
    (folder / "vocab.json").write_text(json.dumps({token: index for index, token in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": model_max_length, "tokenizer_class": "CLIPTokenizer"})
    )
    return folder


def build_tokenizer(folder: str | Path) -> CLIPTokenizer:
    return CLIPTokenizer.from_pretrained(str(write_tiny_clip_tokenizer(folder)))


def build_text_encoder(vocab_size: int = 100, seed: int = 0, hidden_size: int = TEXT_HIDDEN_SIZE) -> CLIPTextModel:
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_attention_heads=2,
        num_hidden_layers=2,
        max_position_embeddings=TOKENIZER_MAX_LENGTH,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        projection_dim=hidden_size,
    )
    return CLIPTextModel(config).eval()


def build_unet3d(
    in_channels: int = 4, cross_attention_dim: int = TEXT_HIDDEN_SIZE, seed: int = 0
) -> UNet3DConditionModel:
    """A two-level diffusers `UNet3DConditionModel` (spatial downsampling 2)."""
    torch.manual_seed(seed)
    return UNet3DConditionModel(
        sample_size=8,
        in_channels=in_channels,
        out_channels=in_channels,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=4,
    ).eval()


def fill_zero_parameters_(model: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> torch.nn.Module:
    """Replaces the zero-initialised parameters (temporal output projections, motion modules) by small random ones, so
    that the temporal layers change the output and a comparison that involves them can fail."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if not parameter.any():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
    return model


def build_unet2d(seed: int = 0) -> UNet2DConditionModel:
    """A two-level SD 1.x-like image U-Net (spatial downsampling 2)."""
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        cross_attention_dim=TEXT_HIDDEN_SIZE,
        attention_head_dim=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    ).eval()


def build_motion_adapter(block_out_channels=(8, 16), seed: int = 0) -> MotionAdapter:
    """A tiny AnimateDiff `MotionAdapter` for `build_unet2d`, with random (not zero) output projections."""
    torch.manual_seed(seed)
    adapter = MotionAdapter(
        block_out_channels=block_out_channels,
        motion_layers_per_block=1,
        motion_num_attention_heads=2,
        motion_norm_num_groups=4,
        motion_max_seq_length=8,
    )
    return fill_zero_parameters_(adapter, seed + 1)


def build_random_spatio_temporal_unet(seed: int = 0) -> UNetSpatioTemporalModel:
    """`build_spatio_temporal_unet` with its zero-initialised layers random, so temporal layers are not identity."""
    return fill_zero_parameters_(build_spatio_temporal_unet(sample_size=8, seed=seed), seed + 1).eval()


def build_video_vae(seed: int = 0) -> AutoencoderKLVideo:
    """Our two-level causal video VAE (spatial ratio 2, temporal ratio 2), with a mid-block attention."""
    torch.manual_seed(seed)
    return AutoencoderKLVideo(
        block_out_channels=(8, 16), layers_per_block=1, temporal_downsample=(False, True), norm_num_groups=4
    ).eval()


def build_image_vae(latent_channels: int = 4, seed: int = 0) -> AutoencoderKL:
    """A two-level diffusers `AutoencoderKL` (spatial ratio 2)."""
    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 8),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=16,
    ).eval()


def build_wan_vae(seed: int = 0):
    """A tiny diffusers `AutoencoderKLWan` (spatial ratio 4, temporal ratio 2, 4 latent channels)."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    return AutoencoderKLWan(
        base_dim=4,
        z_dim=4,
        dim_mult=[1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.1, -0.2, 0.3, 0.0],
        latents_std=[1.5, 0.5, 2.0, 1.0],
        scale_factor_temporal=2,
        scale_factor_spatial=4,
    ).eval()


def build_cogvideox_vae(seed: int = 0):
    """A tiny diffusers `AutoencoderKLCogVideoX` (spatial ratio 2, temporal ratio 2, 4 latent channels)."""
    from diffusers import AutoencoderKLCogVideoX

    torch.manual_seed(seed)
    return AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D", "CogVideoXDownBlock3D"),
        up_block_types=("CogVideoXUpBlock3D", "CogVideoXUpBlock3D"),
        block_out_channels=(8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=2,
        scaling_factor=0.7,
    ).eval()


def build_scheduler() -> DDIMScheduler:
    return DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False
    )


def build_pipeline_components(tmp_path: str | Path, vae=None, unet=None, scheduler=None) -> dict:
    """The five components of a `VideoLatentPipeline`; defaults are diffusers' U-Net 3D and image VAE."""
    return {
        "vae": vae if vae is not None else build_image_vae(),
        "text_encoder": build_text_encoder(),
        "tokenizer": build_tokenizer(Path(tmp_path) / "tokenizer"),
        "unet": unet if unet is not None else build_unet3d(),
        "scheduler": scheduler if scheduler is not None else build_scheduler(),
    }


@contextlib.contextmanager
def recording_attention_scores() -> Iterator[list[tuple[int, ...]]]:
    """Records the shape of every attention-score tensor our attention layers form under diffusers' classic
    processors (`AttnProcessor`, `SlicedAttnProcessor`, through `get_attention_scores`; the real method still computes
    them): how large the attention maps of a forward pass get, sliced or not."""
    shapes = []
    get_attention_scores = VideoLatentAttention.get_attention_scores

    def recording(self, query, key, attention_mask=None):
        scores = get_attention_scores(self, query, key, attention_mask)
        shapes.append(tuple(scores.shape))
        return scores

    with mock.patch.object(VideoLatentAttention, "get_attention_scores", recording):
        yield shapes


@pytest.fixture
def no_grad() -> Iterator[None]:
    """Runs a test under `torch.no_grad()` (use with `pytest.mark.usefixtures("no_grad")`)."""
    with torch.no_grad():
        yield


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A folder for the tiny tokenizer, shared by the tests of a module."""
    return tmp_path_factory.mktemp("tokenizer")


@pytest.fixture
def tiny_tokenizer(tmp_path) -> CLIPTokenizer:
    return build_tokenizer(tmp_path / "tokenizer")


@pytest.fixture
def tiny_text_encoder() -> CLIPTextModel:
    return build_text_encoder()


@pytest.fixture
def tiny_unet3d() -> UNet3DConditionModel:
    return build_unet3d()


@pytest.fixture
def tiny_image_vae() -> AutoencoderKL:
    return build_image_vae()


@pytest.fixture
def tiny_pipeline_components(tmp_path) -> dict:
    return build_pipeline_components(tmp_path)


def build_spatio_temporal_unet(
    in_channels: int = 4,
    conditioning_channels: int = 0,
    use_fps_conditioning: bool = False,
    temporal_max_frames: int = 8,
    sample_size: int | None = None,
    seed: int = 0,
):
    """A two-level `UNetSpatioTemporalModel` (spatial downsampling 2) with a sinusoidal frame table."""
    from diffusers_videolatent import UNetSpatioTemporalModel

    torch.manual_seed(seed)
    return UNetSpatioTemporalModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=in_channels,
        conditioning_channels=conditioning_channels,
        use_fps_conditioning=use_fps_conditioning,
        block_out_channels=(8, 16),
        layers_per_block=1,
        transformer_layers_per_block=(1, 0),
        num_attention_heads=2,
        temporal_num_attention_heads=2,
        cross_attention_dim=TEXT_HIDDEN_SIZE,
        norm_num_groups=4,
        temporal_max_frames=temporal_max_frames,
    ).eval()


def build_pipeline(tokenizer_dir: str | Path, **overrides):
    """A `VideoLatentPipeline` of the tiny components (`overrides` replace some), its progress bar off."""
    from diffusers_videolatent import VideoLatentPipeline

    components = build_pipeline_components(tokenizer_dir)
    components.update(overrides)
    pipe = VideoLatentPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe
