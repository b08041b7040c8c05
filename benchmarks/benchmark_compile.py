"""First-call (compile) and steady-state time of eager, regional and full `torch.compile` of the U-Net.

    python benchmarks/benchmark_compile.py                          # the shipped default model's U-Net, inductor
    python benchmarks/benchmark_compile.py --backend aot_eager --repeats 10 --json compile.json

Each case runs in a fresh subprocess (so no compiled code is shared between them) on the same seeded input: 2 x 5
latent frames (a guided batch of one 17-frame video) at the default model's 16 x 16 latent size. "regional" is
`unet.compile_repeated_blocks(fullgraph=True)` (the blocks named in `_repeated_blocks`), "full" is
`torch.compile(unet, fullgraph=True)`. The first call includes compilation; steady state is the median of the next
`--repeats` calls; the largest difference to the eager output is reported.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

import diffusers_videolatent
from diffusers_videolatent import UNetSpatioTemporalModel
from diffusers_videolatent.atomic import atomic_file
from diffusers_videolatent.cli import DEFAULT_MODEL
from diffusers_videolatent.models.unet_spatio_temporal import build_conditioning_latents


CASES = ("eager", "regional", "full")


def run_case(model: str, case: str, backend: str, repeats: int, device: str) -> dict:
    """Loads the U-Net, compiles it as `case` says and times its calls; returns times and the output."""
    torch.manual_seed(0)
    unet = UNetSpatioTemporalModel.from_pretrained(model).to(device).eval()
    config = unet.config
    sample = torch.randn(2, config.in_channels, 5, 16, 16, device=device)
    text = torch.randn(2, 8, config.cross_attention_dim, device=device)
    timestep = torch.tensor([500, 500], device=device)
    # what the pipeline feeds the shipped U-Net for text-to-video: the frame rate, and empty image conditioning
    extra = {"fps": 8} if config.use_fps_conditioning else {}
    if config.conditioning_channels:
        extra["conditioning_latents"] = build_conditioning_latents(sample, config.conditioning_channels)
    if case == "regional":
        unet.compile_repeated_blocks(fullgraph=True, backend=backend)
    elif case == "full":
        unet = torch.compile(unet, fullgraph=True, backend=backend)

    def call() -> tuple[float, torch.Tensor]:
        start = time.perf_counter()
        with torch.no_grad():
            output = unet(sample, timestep, text, **extra).sample
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start, output

    first, output = call()
    steady = [call()[0] for _ in range(repeats)]
    return {"first_call": first, "steady": steady, "output": output.cpu().flatten().tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL / "unet"), help="a UNetSpatioTemporalModel folder")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend")
    parser.add_argument("--repeats", type=int, default=5, help="steady-state calls after the first")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="write the results to this file")
    parser.add_argument("--case", choices=CASES, default=None, help=argparse.SUPPRESS)  # one subprocess's case
    args = parser.parse_args()
    if args.repeats < 1:
        raise SystemExit("`--repeats` must be >= 1.")

    if args.case is not None:
        print(json.dumps(run_case(args.model, args.case, args.backend, args.repeats, args.device)))
        return

    # the subprocesses import the same package as this process
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(diffusers_videolatent.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    results = {}
    for case in CASES:
        command = [sys.executable, __file__, "--case", case, "--model", args.model, "--backend", args.backend]
        command += ["--repeats", str(args.repeats), "--device", args.device]
        completed = subprocess.run(command, capture_output=True, text=True, env=env)
        if completed.returncode != 0:
            raise SystemExit(f"case {case} failed:\n{completed.stderr[-3000:]}")
        results[case] = json.loads(completed.stdout.strip().splitlines()[-1])

    eager = torch.tensor(results["eager"]["output"])
    eager_steady = statistics.median(results["eager"]["steady"])
    print(f"U-Net {args.model}, backend {args.backend}, device {args.device}, {torch.get_num_threads()} threads")
    print("| case | first call (compile) | steady state (median) | min-max | steady vs eager | max abs diff |")
    print("|---|---|---|---|---|---|")
    for case, result in results.items():
        steady = statistics.median(result["steady"])
        difference = (torch.tensor(result.pop("output")) - eager).abs().max().item()
        result.update(median=steady, max_abs_difference=difference)
        print(
            f"| {case} | {result['first_call']:.2f} s | {1000 * steady:.1f} ms | {1000 * min(result['steady']):.1f}-"
            f"{1000 * max(result['steady']):.1f} ms | {steady / eager_steady:.2f} | {difference:.1e} |"
        )
    if args.json is not None:
        with atomic_file(args.json, overwrite=True) as temporary:
            with open(temporary, "w") as file:
                json.dump({"backend": args.backend, "device": args.device, "cases": results}, file, indent=2)


if __name__ == "__main__":
    main()
