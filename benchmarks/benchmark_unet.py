"""Side-by-side benchmark: `UNetSpatioTemporalModel.from_unet3d(unet)` against diffusers' `UNet3DConditionModel`.

Both models hold the same weights (a mid-size ModelScope-style U-Net: block_out_channels 64/128/256, 2 layers per
block) and run the same inputs (8 frames of 32x32 latents, text once per video). The script prints

- the forward time ratio ours / diffusers (median over `--repeats` interleaved runs),
- the peak-memory ratio ours / diffusers of one forward: CUDA `max_memory_allocated` on GPU; on CPU the growth of the
  peak resident set (VmHWM, reset through /proc/self/clear_refs) of a fresh subprocess per model,
- the largest absolute difference between the two outputs.

Usage:
    python benchmarks/benchmark_unet.py --device cpu --dtype float32 --repeats 5
"""

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from diffusers import UNet3DConditionModel

from diffusers_videolatent import UNetSpatioTemporalModel


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def build_reference(cross_attention_dim: int, seed: int = 0) -> UNet3DConditionModel:
    """A mid-size diffusers `UNet3DConditionModel` with non-zero temporal convolutions (their default is zero)."""
    torch.manual_seed(seed)
    unet = UNet3DConditionModel(
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
        block_out_channels=(64, 128, 256),
        layers_per_block=2,
        norm_num_groups=32,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=32,
    )
    with torch.no_grad():
        for name, parameter in unet.named_parameters():
            if "conv4" in name:
                parameter.normal_(std=0.02)
    return unet.eval()


def make_inputs(args: argparse.Namespace, device: torch.device, dtype: torch.dtype):
    generator = torch.Generator().manual_seed(1)
    sample = torch.randn(args.batch_size, 4, args.num_frames, args.size, args.size, generator=generator)
    encoder_hidden_states = torch.randn(args.batch_size, 77, args.cross_attention_dim, generator=generator)
    timestep = torch.full((args.batch_size,), 500, dtype=torch.int64)
    return sample.to(device, dtype), timestep.to(device), encoder_hidden_states.to(device, dtype)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_forward(model, inputs, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    model(*inputs, return_dict=False)
    synchronize(device)
    return time.perf_counter() - start


def cuda_peak_bytes(model, inputs, device: torch.device) -> int:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    baseline = torch.cuda.memory_allocated(device)
    model(*inputs, return_dict=False)
    synchronize(device)
    return torch.cuda.max_memory_allocated(device) - baseline


def _read_status_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def measure_rss_child(args: argparse.Namespace) -> None:
    """Runs in a fresh subprocess: loads one saved model, runs one forward, prints its peak-RSS growth in bytes."""
    torch.set_num_threads(args.threads)
    dtype = DTYPES[args.dtype]
    model_class = UNetSpatioTemporalModel if args.measure_rss == "ours" else UNet3DConditionModel
    model = model_class.from_pretrained(Path(args.weights_dir) / args.measure_rss, torch_dtype=dtype).eval()
    inputs = make_inputs(args, torch.device("cpu"), dtype)
    with torch.inference_mode():
        baseline = _read_status_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
        model(*inputs, return_dict=False)
        peak = _read_status_kib("VmHWM")
    print(f"PEAK_BYTES={(peak - baseline) * 1024}")


def cpu_peak_bytes(which: str, args: argparse.Namespace, weights_dir: str) -> int:
    command = [sys.executable, __file__, "--measure-rss", which, "--weights-dir", weights_dir]
    for name in ("dtype", "batch_size", "num_frames", "size", "cross_attention_dim", "threads"):
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return int(re.search(r"PEAK_BYTES=(-?\d+)", result.stdout).group(1))


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    reference = build_reference(args.cross_attention_dim)
    ours = UNetSpatioTemporalModel.from_unet3d(reference).eval()
    reference, ours = reference.to(device, dtype), ours.to(device, dtype)
    inputs = make_inputs(args, device, dtype)
    num_parameters = sum(p.numel() for p in ours.parameters())
    print(
        f"device={device} dtype={args.dtype} threads={torch.get_num_threads()} parameters={num_parameters / 1e6:.1f}M "
        f"sample={tuple(inputs[0].shape)} text={tuple(inputs[2].shape)} repeats={args.repeats}"
    )

    with torch.inference_mode():
        # outputs (also the warm-up run of each model)
        expected = reference(*inputs, return_dict=False)[0]
        actual = ours(*inputs, return_dict=False)[0]
        max_difference = (actual.float() - expected.float()).abs().max().item()

        # time, interleaved so that drifting machine load hits both models alike
        times = {"ours": [], "diffusers": []}
        for repeat in range(args.repeats):
            order = [("ours", ours), ("diffusers", reference)]
            for name, model in order if repeat % 2 == 0 else order[::-1]:
                times[name].append(timed_forward(model, inputs, device))

        # peak memory of one forward
        if device.type == "cuda":
            peaks = {"ours": cuda_peak_bytes(ours, inputs, device)}
            peaks["diffusers"] = cuda_peak_bytes(reference, inputs, device)
            memory_method = "CUDA max_memory_allocated growth"
        else:
            with tempfile.TemporaryDirectory() as weights_dir:
                ours.save_pretrained(Path(weights_dir) / "ours")
                reference.save_pretrained(Path(weights_dir) / "diffusers")
                peaks = {name: cpu_peak_bytes(name, args, weights_dir) for name in ("ours", "diffusers")}
            memory_method = "peak RSS growth of a fresh subprocess (VmHWM)"

    median = {name: statistics.median(values) for name, values in times.items()}
    best = {name: min(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"forward times {name:9s} " + " ".join(f"{value * 1e3:.0f}" for value in values) + " ms")
    print(
        f"forward time (median)  ours {median['ours'] * 1e3:9.1f} ms   diffusers {median['diffusers'] * 1e3:9.1f} ms"
    )
    print(
        f"peak memory            ours {peaks['ours'] / 2**20:9.1f} MiB  diffusers {peaks['diffusers'] / 2**20:9.1f} MiB"
    )
    print(f"  ({memory_method})")
    print(
        f"time ratio   ours/diffusers = {median['ours'] / median['diffusers']:.3f} (median), "
        f"{best['ours'] / best['diffusers']:.3f} (best of {args.repeats})"
    )
    print(f"memory ratio ours/diffusers = {peaks['ours'] / max(peaks['diffusers'], 1):.3f}")
    print(f"max |ours - diffusers| = {max_difference:.3e}  (output mean |x| = {expected.float().abs().mean():.3e})")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--repeats", type=int, default=5, help="timed forwards per model (after one warm-up)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--num-frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=32, help="latent height and width")
    parser.add_argument("--cross-attention-dim", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads; 1 keeps timings stable on a busy machine")
    parser.add_argument("--measure-rss", choices=["ours", "diffusers"], help=argparse.SUPPRESS)
    parser.add_argument("--weights-dir", help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.measure_rss:
        measure_rss_child(arguments)
    else:
        main(arguments)
