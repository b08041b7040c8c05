"""Decode time and peak memory of AutoencoderKLVideo against diffusers' AutoencoderKLCogVideoX and AutoencoderKLWan.

Every case (model x frame count) runs in a fresh Python subprocess, so its peak resident memory (VmHWM) is its own.
All three models are tiny random configs of the same widths, 8x spatial and 4x temporal compression, and decode in
their own memory-saving way: ours streams causal chunks of latent frames (`decode_chunk_size`), CogVideoX decodes
batches of 2 latent frames with a conv cache, Wan decodes one latent frame at a time with a feature cache;
`--tiling` also enables each model's spatial tiling.

    python benchmarks/benchmark_vae.py                       # 17, 65, 129 frames at 256x256, widths 16,32,32,32
    python benchmarks/benchmark_vae.py --frames 17 33 --size 128 --widths 8,16,16,16

Peak RSS is read from /proc/self/status (VmHWM) at the end of each case. By default every case runs with
MALLOC_MMAP_THRESHOLD_=131072 so that glibc's heap fragmentation does not blur what each model holds;
`--default_malloc` measures with glibc's defaults instead.

Random weights are fine here: decode time and memory do not depend on the values.
"""

import argparse
import json
import os
import subprocess
import sys
import time


MODELS = ("ours", "cogvideox", "wan")
TEMPORAL_RATIO = 4


def build_model(name: str, widths: list[int], latent_channels: int, norm_num_groups: int, size: int):
    import torch

    # every case imports the same libraries, so the resident-memory baseline is the same for all models
    import diffusers_videolatent  # noqa: F401

    torch.manual_seed(0)
    if name == "ours":
        from diffusers_videolatent import AutoencoderKLVideo

        return AutoencoderKLVideo(
            block_out_channels=tuple(widths),
            layers_per_block=1,
            temporal_downsample=(False, True, True, False),
            latent_channels=latent_channels,
            norm_num_groups=norm_num_groups,
        )
    if name == "cogvideox":
        from diffusers import AutoencoderKLCogVideoX

        return AutoencoderKLCogVideoX(
            block_out_channels=tuple(widths),
            layers_per_block=1,
            latent_channels=latent_channels,
            norm_num_groups=norm_num_groups,
            temporal_compression_ratio=TEMPORAL_RATIO,
            sample_height=size,
            sample_width=size,
        )
    if name == "wan":
        from diffusers import AutoencoderKLWan

        if any(width % widths[0] for width in widths):
            raise ValueError(f"Wan needs widths that are multiples of the first one, got {widths}.")
        return AutoencoderKLWan(
            base_dim=widths[0],
            dim_mult=[width // widths[0] for width in widths],
            z_dim=latent_channels,
            num_res_blocks=1,
            temperal_downsample=[False, True, True],
            latents_mean=[0.0] * latent_channels,
            latents_std=[1.0] * latent_channels,
        )
    raise ValueError(f"Unknown model {name!r}; choose from {MODELS}.")


def peak_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> None:
    # writing 5 to clear_refs resets VmHWM to the current resident size (Linux)
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def run_case(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    widths = [int(width) for width in args.widths.split(",")]
    model = build_model(args.model, widths, args.latent_channels, args.norm_num_groups, args.size).eval()
    model.to(args.device)
    if args.tiling:
        tile = args.size // 2
        if args.model == "wan":
            model.enable_tiling(tile, tile, tile * 3 // 4, tile * 3 // 4)
        else:
            model.enable_tiling(tile_sample_min_height=tile, tile_sample_min_width=tile)

    num_latent_frames = 1 + (args.num_frames - 1) // TEMPORAL_RATIO
    latent_size = args.size // 8
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, args.latent_channels, num_latent_frames, latent_size, latent_size, generator=generator)
    latents = latents.to(args.device)
    baseline_mib = current_rss_mib()

    # 1. decode
    with torch.no_grad():
        start = time.perf_counter()
        decoded = model.decode(latents).sample
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    result = {
        "model": args.model,
        "frames": args.num_frames,
        "output_frames": decoded.shape[2],
        "seconds": seconds,
        "peak_mib": peak_rss_mib(),
        "baseline_mib": baseline_mib,
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
    }
    if args.device.startswith("cuda"):
        result["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20

    # 2. encode a video of the same size, its peak measured on its own
    if args.case_encode:
        video = decoded.clamp(-1, 1)
        del decoded
        encode_baseline_mib = current_rss_mib()
        reset_peak_rss()
        with torch.no_grad():
            start = time.perf_counter()
            model.encode(video).latent_dist.mode()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            result["encode_seconds"] = time.perf_counter() - start
        result["encode_peak_mib"] = peak_rss_mib()
        result["encode_baseline_mib"] = encode_baseline_mib
    return result


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def spread(values: list[float], scale: float = 1.0, digits: int = 0) -> str:
    """`median [min-max]` of `values` times `scale`."""
    return f"{median(values) * scale:.{digits}f} [{min(values) * scale:.{digits}f}-{max(values) * scale:.{digits}f}]"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[17, 65, 129], help="Video frame counts (1 + 4k).")
    parser.add_argument("--size", type=int, default=256, help="Frame height and width in pixels (multiple of 8).")
    parser.add_argument("--widths", default="16,32,32,32", help="Comma-separated widths of the 4 levels.")
    parser.add_argument("--latent_channels", type=int, default=4)
    parser.add_argument("--norm_num_groups", type=int, default=8)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads per case.")
    parser.add_argument(
        "--tiling", action="store_true", help="Also enable each model's spatial tiling (tile = size/2)."
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="Runs of every case, interleaved (all cases once, then again, ...)."
    )
    parser.add_argument("--no_encode", dest="encode", action="store_false", help="Measure decoding only.")
    parser.add_argument(
        "--default_malloc",
        action="store_true",
        help="Keep glibc's dynamic mmap threshold (peak RSS then also measures heap fragmentation).",
    )
    parser.add_argument("--model", help=argparse.SUPPRESS)  # internal: run one case in this process
    parser.add_argument("--num_frames", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--case_encode", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for num_frames in args.frames:
        if num_frames < 1 or (num_frames - 1) % TEMPORAL_RATIO != 0:
            parser.error(f"--frames must be 1 + 4k, got {num_frames}.")
    if args.size % 8 != 0:
        parser.error(f"--size must be a multiple of 8, got {args.size}.")
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}.")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.model is not None:
        print(json.dumps(run_case(args)))
        return 0

    common = [
        "--size", str(args.size), "--widths", args.widths, "--latent_channels", str(args.latent_channels),
        "--norm_num_groups", str(args.norm_num_groups), "--device", args.device, "--threads", str(args.threads),
    ]  # fmt: skip
    if args.tiling:
        common.append("--tiling")
    if args.encode:
        common.append("--case_encode")
    environment = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false")
    if not args.default_malloc:
        # glibc raises its mmap threshold after large frees, after which freed activations stay in the heap and peak
        # RSS grows with fragmentation rather than with what a model holds; a fixed threshold measures the latter.
        environment["MALLOC_MMAP_THRESHOLD_"] = "131072"

    # every repeat runs all cases once, so a change in the machine's load affects all models alike
    results = {}
    total_start = time.perf_counter()
    for repeat in range(args.repeats):
        for num_frames in args.frames:
            for model in args.models:
                command = [sys.executable, __file__, "--model", model, "--num_frames", str(num_frames)] + common
                completed = subprocess.run(command, capture_output=True, text=True, env=environment)
                if completed.returncode != 0:
                    print(f"{model} {num_frames} frames failed:\n{completed.stderr[-2000:]}", file=sys.stderr)
                    continue
                result = json.loads(completed.stdout.strip().splitlines()[-1])
                results.setdefault((model, num_frames), []).append(result)
                print(
                    f"  repeat {repeat + 1}: {model:<10} {num_frames:>4} frames: decode {result['seconds']:7.1f} s, "
                    f"peak {result['peak_mib']:7.0f} MiB",
                    file=sys.stderr,
                )

    # table: medians over the repeats, [min-max]
    print(
        f"\nDecode of a random latent to {args.size}x{args.size} video (encode: of that video), widths {args.widths}, "
        f"{args.threads} thread(s), device {args.device}{', tiling on' if args.tiling else ''}, "
        f"{'glibc default malloc' if args.default_malloc else 'MALLOC_MMAP_THRESHOLD_=131072'}; median [min-max] "
        f"of {args.repeats} interleaved run(s)"
    )
    columns = "| model | params | frames | decode ms/frame | decode peak RSS MiB | decode-only MiB |"
    separator = "|---|---|---|---|---|---|"
    if args.encode:
        columns += " encode ms/frame | encode peak RSS MiB |"
        separator += "---|---|"
    print(columns)
    print(separator)
    for num_frames in args.frames:
        for model in args.models:
            runs = results.get((model, num_frames))
            if not runs:
                continue
            row = (
                f"| {model} | {runs[0]['parameters'] / 1e6:.2f}M | {num_frames} "
                f"| {spread([run['seconds'] / num_frames for run in runs], 1000)} "
                f"| {spread([run['peak_mib'] for run in runs])} "
                f"| {spread([run['peak_mib'] - run['baseline_mib'] for run in runs])} |"
            )
            if args.encode:
                row += (
                    f" {spread([run['encode_seconds'] / num_frames for run in runs], 1000)} "
                    f"| {spread([run['encode_peak_mib'] for run in runs])} |"
                )
            print(row)

    # memory growth from the fewest to the most frames
    fewest, most = min(args.frames), max(args.frames)
    if fewest != most:
        print(f"\nmedian decode peak RSS ratio {most}/{fewest} frames (decode-only increase ratio in brackets):")
        for model in args.models:
            low, high = results.get((model, fewest)), results.get((model, most))
            if not low or not high:
                continue
            ratio = median([run["peak_mib"] for run in high]) / median([run["peak_mib"] for run in low])
            decode_ratio = median([run["peak_mib"] - run["baseline_mib"] for run in high]) / max(
                median([run["peak_mib"] - run["baseline_mib"] for run in low]), 1
            )
            target = "  (target <= 1.15)" if model == "ours" else ""
            print(f"  {model:<10} {ratio:.2f} [{decode_ratio:.2f}]{target}")
    print(f"\ntotal wall time {time.perf_counter() - total_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
