"""Peak memory of each process of a two-process training run on the CPU: DDP against `--fsdp`.

Both runs are the same `train_text_to_video` command under `ACCELERATE_USE_CPU=true accelerate launch --multi_gpu
--num_processes 2` (docs/training.md), with and without `--fsdp`: a U-Net large enough that its weights, gradients,
Adam moments and EMA dominate the memory (`--widths`, default 256 and 512: 138M parameters), trained on the shipped
VAE with a tiny text encoder for a few steps of 5-frame 64x64 clips, batch 1 per process, without checkpoints or
validation. While a run goes on, the benchmark reads each training process's peak resident memory (`VmHWM` of
`/proc/PID/status`, every 0.1 s until the process ends). Process 1 only trains; process 0 also saves the pipeline at
the end, which with `--fsdp` first gathers the whole U-Net (with its EMA weights) from the shards.

    python benchmarks/benchmark_fsdp_memory.py
    python benchmarks/benchmark_fsdp_memory.py --widths 128 256 --rounds 2
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from diffusers_videolatent.cli import DEFAULT_MODEL


MODULE = "diffusers_videolatent.training.train_text_to_video"
CASES = {"ddp": [], "fsdp": ["--fsdp"]}


def unet_config(widths: list[int]) -> dict:
    """A two-level U-Net of `widths` channels (the shipped model's layout, wider)."""
    groups = 32 if all(width % 32 == 0 for width in widths) else 4
    heads = 8 if all(width % 64 == 0 for width in widths) else 2
    return {
        "block_out_channels": widths,
        "layers_per_block": 2,
        "transformer_layers_per_block": [1] * len(widths),
        "num_attention_heads": heads,
        "temporal_num_attention_heads": heads,
        "norm_num_groups": groups,
    }


def training_command(output_dir: str, widths: list[int], steps: int, extra: list[str], port: int) -> list[str]:
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["--main_process_port", str(port), "-m", MODULE]
    arguments = ["--pretrained_vae_name_or_path", os.path.join(DEFAULT_MODEL, "vae"), "--output_dir", output_dir]
    arguments += ["--unet_config", json.dumps(unet_config(widths)), "--text_encoder_config"]
    arguments += [json.dumps({"hidden_size": 64, "intermediate_size": 128, "projection_dim": 64})]
    arguments += ["--num_frames", "5", "--height", "64", "--width", "64", "--train_batch_size", "1"]
    arguments += ["--max_train_samples", "4", "--max_train_steps", str(steps), "--checkpointing_steps", "100000"]
    arguments += ["--use_ema", "--no_validation", "--report_to", "jsonl", "--seed", "0"]
    return launch + arguments + extra


def _worker_peak(pid: str, marker: bytes) -> tuple[int, int] | None:
    """`(local rank, VmHWM in KiB)` of a training process of the run marked `marker`, else `None`."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            environ = file.read().split(b"\0")
        if marker not in environ:
            return None
        ranks = [entry.split(b"=", 1)[1] for entry in environ if entry.startswith(b"LOCAL_RANK=")]
        if not ranks:
            return None  # the launcher, not a worker
        with open(f"/proc/{pid}/status") as file:
            peak = next(int(line.split()[1]) for line in file if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return None  # gone meanwhile, or not ours to read
    return int(ranks[0]), peak


def run(command: list[str]) -> dict[int, float]:
    """Runs `command`, returning each worker's peak resident memory in MiB by local rank."""
    marker_value = uuid.uuid4().hex
    environment = dict(os.environ, ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    environment["VIDEOLATENT_BENCHMARK_RUN"] = marker_value
    marker = f"VIDEOLATENT_BENCHMARK_RUN={marker_value}".encode()
    peaks: dict[int, int] = {}
    with tempfile.TemporaryFile("w+") as log:
        launcher = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
        while launcher.poll() is None:
            for pid in os.listdir("/proc"):
                if pid.isdigit() and (found := _worker_peak(pid, marker)) is not None:
                    peaks[found[0]] = max(peaks.get(found[0], 0), found[1])
            time.sleep(0.1)
        if launcher.returncode != 0:
            log.seek(0)
            raise RuntimeError(f"the training run failed ({launcher.returncode}):\n{log.read()[-4000:]}")
    return {rank: peak / 1024 for rank, peak in sorted(peaks.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 512], help="the U-Net's channels per level")
    parser.add_argument("--steps", type=int, default=3, help="training steps per run")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds over both cases")
    parser.add_argument("--port", type=int, default=29731, help="the launch's main process port")
    parser.add_argument("--json", type=str, default=None, help="write the results to this file")
    args = parser.parse_args()
    if len(args.widths) < 2 or any(width < 8 for width in args.widths):
        parser.error("`--widths` needs two or more widths of at least 8.")

    from diffusers_videolatent import UNetSpatioTemporalModel

    config = dict(unet_config(args.widths), in_channels=16, out_channels=16, cross_attention_dim=64)
    parameters = sum(parameter.numel() for parameter in UNetSpatioTemporalModel.from_config(config).parameters())
    results = {name: {} for name in CASES}
    for _ in range(args.rounds):
        for name, extra in CASES.items():
            with tempfile.TemporaryDirectory() as folder:
                command = training_command(os.path.join(folder, "out"), args.widths, args.steps, extra, args.port)
                for rank, peak in run(command).items():
                    results[name].setdefault(rank, []).append(peak)

    fp32_mib = parameters * 4 / 2**20
    print(f"## U-Net of widths {args.widths}: {parameters / 1e6:.1f}M parameters ({fp32_mib:.0f} MiB in float32)")
    print(
        f"{args.steps} steps, 2 CPU processes, {args.rounds} round(s); peak resident memory (VmHWM), median and range"
    )
    print("| run | process 0 (trains, saves) | process 1 (trains) |")
    print("|---|---|---|")
    for name, ranks in results.items():
        cells = [
            f"{statistics.median(ranks[rank]):.0f} MiB ({min(ranks[rank]):.0f}-{max(ranks[rank]):.0f})"
            for rank in (0, 1)
        ]
        print(f"| {name} | {cells[0]} | {cells[1]} |")
    for rank in (0, 1):
        ratio = statistics.median(results["fsdp"][rank]) / statistics.median(results["ddp"][rank])
        print(f"process {rank}: fsdp / ddp = {ratio:.2f}")
    if args.json is not None:
        with open(args.json, "w") as file:
            json.dump({"parameters": parameters, "widths": args.widths, "peaks_mib": results}, file, indent=2)


if __name__ == "__main__":
    main()
