"""Side-by-side benchmark: `VideoLatentPipeline` with a ratio-4 `AutoencoderKLVideo` against diffusers'
`TextToVideoSDPipeline` with a frame-by-frame image VAE, on the same U-Net width.

Both pipelines get randomly initialised models built from one diffusers `UNet3DConditionModel` and one `AutoencoderKL`
(ours through `UNetSpatioTemporalModel.from_unet3d` and `AutoencoderKLVideo.from_image_vae(..., 4)`), so the only
differences are the temporally compressed latent (17 frames -> 5 latent frames) and the pipeline code. Printed per
pipeline: time per denoising step (U-Net calls), total time, peak memory, and the pipeline's own overhead (everything
except U-Net, VAE and text-encoder calls) as a share of the call.

Each pipeline runs in its own process so that peak memory (max RSS on CPU, `max_memory_allocated` on CUDA) is its own.

    python benchmarks/benchmark_pipeline.py                      # 17 frames, 256x256, small widths: minutes on CPU
    python benchmarks/benchmark_pipeline.py --device cuda --unet_channels 320,640,1280,1280 --vae_channels 128,256,512,512
"""

import argparse
import multiprocessing
import resource
import sys
import time
from pathlib import Path


def parse_channels(text: str) -> tuple[int, ...]:
    return tuple(int(value) for value in text.split(","))


def build_components(args: argparse.Namespace, tokenizer_folder: str) -> dict:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.testing_utils import build_tokenizer

    torch.manual_seed(0)
    unet_channels, vae_channels = args.unet_channels, args.vae_channels
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=100,
            hidden_size=args.text_width,
            intermediate_size=2 * args.text_width,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=16,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    num_levels = len(unet_channels)
    unet = UNet3DConditionModel(
        sample_size=args.height // 2 ** (len(vae_channels) - 1),
        block_out_channels=unet_channels,
        down_block_types=("CrossAttnDownBlock3D",) * (num_levels - 1) + ("DownBlock3D",),
        up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * (num_levels - 1),
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=args.text_width,
        attention_head_dim=8,
    )
    vae = AutoencoderKL(
        block_out_channels=vae_channels,
        down_block_types=("DownEncoderBlock2D",) * len(vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(vae_channels),
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=4,
    )
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False)
    tokenizer = build_tokenizer()
    return {"vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "unet": unet, "scheduler": scheduler}


class CallTimer:
    """Accumulates the wall time spent inside model calls (forward hooks, or a wrapped method)."""

    def __init__(self, device):
        self.device = device
        self.seconds = 0.0
        self.count = 0
        self._start = None

    def _synchronize(self):
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def start(self, *args, **kwargs):
        self._synchronize()
        self._start = time.perf_counter()

    def stop(self, *args, **kwargs):
        self._synchronize()
        self.seconds += time.perf_counter() - self._start
        self.count += 1

    def hook_module(self, module):
        module.register_forward_pre_hook(self.start)
        module.register_forward_hook(self.stop)

    def wrap_method(self, owner, name: str):
        method = getattr(owner, name)

        def timed(*args, **kwargs):
            self.start()
            try:
                return method(*args, **kwargs)
            finally:
                self.stop()

        setattr(owner, name, timed)


def run_one(kind: str, args: argparse.Namespace, tokenizer_folder: str, results) -> None:
    import torch
    from diffusers import TextToVideoSDPipeline

    from diffusers_videolatent import AutoencoderKLVideo, UNetSpatioTemporalModel, VideoLatentPipeline

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    components = build_components(args, tokenizer_folder)
    if kind == "ours":
        components["unet"] = UNetSpatioTemporalModel.from_unet3d(components["unet"])
        components["vae"] = AutoencoderKLVideo.from_image_vae(components["vae"], temporal_compression_ratio=4)
        pipe = VideoLatentPipeline(**components)
    else:
        pipe = TextToVideoSDPipeline(**components)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)

    unet_timer, vae_timer, text_timer = CallTimer(device), CallTimer(device), CallTimer(device)
    unet_timer.hook_module(pipe.unet)
    text_timer.hook_module(pipe.text_encoder)
    vae_timer.wrap_method(pipe.vae, "decode")
    vae_timer.wrap_method(pipe.vae, "encode")

    call = {
        "prompt": "a red panda",
        "num_frames": args.num_frames,
        "height": args.height,
        "width": args.width,
        "num_inference_steps": args.steps,
        "guidance_scale": 7.5,
        "output_type": "np",
    }
    # warm-up at a tiny size (first-call allocations, lazy initialisation)
    pipe(**{**call, "num_frames": 5, "height": 64, "width": 64, "num_inference_steps": 1})
    for timer in (unet_timer, vae_timer, text_timer):
        timer.seconds, timer.count = 0.0, 0

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        memory_before = torch.cuda.memory_allocated(device)
    else:
        with open("/proc/self/statm") as statm:
            memory_before = int(statm.read().split()[1]) * resource.getpagesize()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    frames = pipe(**call, generator=torch.Generator("cpu").manual_seed(0)).frames
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    total = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - memory_before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - memory_before

    model_seconds = unet_timer.seconds + vae_timer.seconds + text_timer.seconds
    results[kind] = {
        "frames": tuple(frames.shape),
        "latent_frames": (args.num_frames - 1) // (4 if kind == "ours" else 1) + 1,
        "unet_calls": unet_timer.count,
        "step": unet_timer.seconds / unet_timer.count,
        "vae": vae_timer.seconds,
        "text": text_timer.seconds,
        "total": total,
        "peak_mib": peak / 2**20,
        "overhead": total - model_seconds,
        "overhead_share": (total - model_seconds) / total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_frames", type=int, default=17)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--unet_channels", type=parse_channels, default=(32, 64, 64))
    parser.add_argument("--vae_channels", type=parse_channels, default=(8, 16, 16, 16))
    parser.add_argument("--text_width", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()

    import tempfile

    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tokenizer_folder, context.Manager() as manager:
        results = manager.dict()
        for kind in ("ours", "reference"):
            process = context.Process(target=run_one, args=(kind, args, tokenizer_folder, results))
            process.start()
            process.join()
            if process.exitcode != 0:
                raise SystemExit(f"the {kind} run failed with exit code {process.exitcode}")
        results = dict(results)

    ours, reference = results["ours"], results["reference"]
    print(
        f"{args.num_frames} frames at {args.height}x{args.width}, {args.steps} DDIM steps with guidance, device"
        f" {args.device}, U-Net channels {args.unet_channels}, VAE channels {args.vae_channels}"
    )
    header = f"{'':34}{'VideoLatentPipeline':>22}{'TextToVideoSDPipeline':>24}"
    print(header)
    print(f"{'VAE':34}{'AutoencoderKLVideo r=4':>22}{'AutoencoderKL per frame':>24}")
    rows = [
        ("latent frames", "latent_frames", "{:d}"),
        ("U-Net calls", "unet_calls", "{:d}"),
        ("time per denoising step (s)", "step", "{:.3f}"),
        ("VAE time (s)", "vae", "{:.3f}"),
        ("text encoder time (s)", "text", "{:.3f}"),
        ("total time (s)", "total", "{:.3f}"),
        ("peak memory (MiB)", "peak_mib", "{:.0f}"),
        ("pipeline overhead (s)", "overhead", "{:.4f}"),
        ("pipeline overhead (% of call)", "overhead_share", "{:.2%}"),
    ]
    for label, key, spec in rows:
        print(f"{label:34}{spec.format(ours[key]):>22}{spec.format(reference[key]):>24}")
    print(
        f"step speed-up: {reference['step'] / ours['step']:.2f}x, total speed-up: {reference['total'] / ours['total']:.2f}x"
    )


if __name__ == "__main__":
    main()
