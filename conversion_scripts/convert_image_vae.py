"""Inflate a diffusers `AutoencoderKL` image VAE into an `AutoencoderKLVideo` causal video VAE.

Example:
    python conversion_scripts/convert_image_vae.py --vae_path stabilityai/sd-vae-ft-mse \
        --temporal_compression_ratio 4 --output_path ./video-vae --dtype fp16

The converted model is verified before it is written: with ratio 1 the video VAE must equal the image VAE applied
frame by frame, with a larger ratio it must encode and decode the first frame exactly as the image VAE does (on a
random input, to `--atol`/`--rtol`, both in float32). It is saved atomically with `save_pretrained` and a model card,
in the image VAE's stored dtype (`--source_variant fp16` reads its `fp16` variant) unless `--dtype` says otherwise.

Exit codes: 0 success, 1 verification failed (nothing written), 2 bad input (one line on stderr, nothing written).
"""

import argparse
import os
import sys

import torch
from diffusers import AutoencoderKL

from diffusers_videolatent import AutoencoderKLVideo
from diffusers_videolatent.conversion import (
    Conversion,
    ConversionArgumentParser,
    add_common_arguments,
    first_line,
    run_conversion,
    stored_dtype,
    verify_close,
)
from diffusers_videolatent.geometry import num_pixel_frames


PROG = "convert_image_vae"
SCRIPT = "conversion_scripts/convert_image_vae.py"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ConversionArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--vae_path", required=True, help="Folder or Hub id of a diffusers AutoencoderKL.")
    parser.add_argument("--subfolder", default=None, help="Subfolder holding the VAE, e.g. `vae` in a pipeline repo.")
    parser.add_argument("--temporal_compression_ratio", type=int, default=1, help="1, 2, 4 or 8.")
    add_common_arguments(parser, saved="the video VAE")
    return parser.parse_args(argv)


def load_image_vae(vae_path: str, subfolder: str | None = None, variant: str | None = None) -> AutoencoderKL:
    r"""
    Load a diffusers `AutoencoderKL` in its stored dtype, refusing folders that hold another class.

    Args:
        vae_path (`str`):
            Local folder or Hub id.
        subfolder (`str`, *optional*):
            Subfolder inside `vae_path`.
        variant (`str`, *optional*):
            Variant of the weight files (`--source_variant`), e.g. `fp16`.

    Returns:
        [`AutoencoderKL`]: the image VAE in eval mode.
    """
    # diffusers falls back to the parent folder's config when a local subfolder is missing; refuse that instead
    if subfolder and os.path.isdir(vae_path) and not os.path.isdir(os.path.join(vae_path, subfolder)):
        raise ValueError(f"`--subfolder` {subfolder!r} does not exist in `--vae_path` {vae_path!r}.")
    try:
        config = AutoencoderKL.load_config(vae_path, subfolder=subfolder)
    except (OSError, ValueError) as error:
        where = f"{vae_path!r}" + (f" (subfolder {subfolder!r})" if subfolder else "")
        raise ValueError(f"`--vae_path` {where} has no readable diffusers config: {error}".splitlines()[0]) from None
    class_name = config.get("_class_name")
    if class_name != "AutoencoderKL":
        raise ValueError(f"`--vae_path` {vae_path!r} holds a {class_name!r}, not an AutoencoderKL.")
    dtype = stored_dtype(vae_path, subfolder, variant, "--vae_path")
    try:
        return AutoencoderKL.from_pretrained(vae_path, subfolder=subfolder, variant=variant, torch_dtype=dtype).eval()
    except Exception as error:  # unreadable or truncated weights, a missing file on the Hub, ...
        with_variant = f" (`--source_variant` {variant!r})" if variant else ""
        raise ValueError(f"cannot load `--vae_path` {vae_path!r}{with_variant}: {first_line(error)}") from None


def convert(vae: AutoencoderKL, temporal_compression_ratio: int = 1) -> AutoencoderKLVideo:
    r"""
    Inflate `vae` into an [`AutoencoderKLVideo`] (see [`AutoencoderKLVideo.from_image_vae`]).

    Args:
        vae ([`AutoencoderKL`]):
            The image VAE.
        temporal_compression_ratio (`int`, *optional*, defaults to 1):
            1, 2, 4 or 8.

    Returns:
        [`AutoencoderKLVideo`]: the video VAE, in float32.
    """
    return AutoencoderKLVideo.from_image_vae(vae, temporal_compression_ratio=temporal_compression_ratio)


@torch.no_grad()
def verify(
    vae: AutoencoderKL, video_vae: AutoencoderKLVideo, atol: float = 1e-4, rtol: float = 1e-4, seed: int = 0
) -> dict[str, float]:
    r"""
    Compare the video VAE with the image VAE on a random video; raise `VerificationError` beyond tolerance.

    With temporal compression ratio 1 every frame is compared (encoder means and decoded frames); with a larger ratio
    the first frame is.

    Returns:
        `dict[str, float]`: the maximum absolute differences of `encode` and `decode`.
    """
    generator = torch.Generator().manual_seed(seed)
    ratio = video_vae.temporal_compression_ratio
    size = 4 * video_vae.spatial_compression_ratio
    # three latent frames at ratio 1 (every frame is compared), else two: the image frame and one group of `ratio`
    latent_frames = 3 if ratio == 1 else 2
    num_frames = num_pixel_frames(latent_frames, ratio)
    video = torch.rand(1, vae.config.in_channels, num_frames, size, size, generator=generator) * 2 - 1
    latents = torch.randn(1, vae.config.latent_channels, latent_frames, 4, 4, generator=generator)
    compared = num_frames if ratio == 1 else 1

    video_means = video_vae.encode(video).latent_dist.mean
    video_decoded = video_vae.decode(latents).sample
    image_means = torch.stack([vae.encode(video[:, :, i]).latent_dist.mean for i in range(compared)], dim=2)
    image_decoded = torch.stack([vae.decode(latents[:, :, i]).sample for i in range(compared)], dim=2)
    return {
        "encode": verify_close(video_means[:, :, :compared], image_means, atol, rtol, name="encode"),
        "decode": verify_close(video_decoded[:, :, :compared], image_decoded, atol, rtol, name="decode"),
    }


def load_and_convert(args: argparse.Namespace) -> Conversion:
    """Load the image VAE named by `args`, inflate it, and say how to verify and describe it (see `run_conversion`)."""
    vae = load_image_vae(args.vae_path, args.subfolder, args.source_variant)
    dtype = vae.dtype
    video_vae = convert(vae, args.temporal_compression_ratio)

    def verify_and_report(atol: float, rtol: float) -> tuple[float, str]:
        # both in float32 at once: an image VAE is small (83M parameters for Stable Diffusion's)
        differences = verify(vae.to(torch.float32), video_vae.to(torch.float32), atol=atol, rtol=rtol)
        print(f"verified: max abs difference encode {differences['encode']:.2e}, decode {differences['decode']:.2e}")
        compared = "every frame" if video_vae.temporal_compression_ratio == 1 else "the first frame"
        return max(differences.values()), f"encode and decode of a random video, {compared} against the image VAE"

    subfolder = f", subfolder `{args.subfolder}`" if args.subfolder else ""
    return Conversion(
        converted=video_vae,
        name=f"AutoencoderKLVideo (temporal ratio {args.temporal_compression_ratio})",
        sources=[(f"Image VAE (AutoencoderKL{subfolder})", args.vae_path)],
        verify=verify_and_report,
        dtype=dtype,
    )


def main(argv: list[str] | None = None) -> int:
    return run_conversion(PROG, SCRIPT, parse_args, load_and_convert, argv)


if __name__ == "__main__":
    sys.exit(main())
