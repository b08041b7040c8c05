"""Import time of the package against diffusers' own pipeline and model bases, in fresh interpreters.

    python benchmarks/benchmark_import.py --repeats 9

Each repeat runs both commands one after the other (interleaved, so that a change in machine load hits both), each in a
new `python -c` process started from the repository root; the time is the whole process's wall time, start-up
included. Prints the median and the min-max of each, and the ratio of the medians.
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path


REPOSITORY = Path(__file__).resolve().parents[1]

COMMANDS = {
    "diffusers_videolatent": (
        "import diffusers_videolatent; "
        "from diffusers_videolatent import VideoLatentPipeline, UNetSpatioTemporalModel, AutoencoderKLVideo"
    ),
    "diffusers": "import diffusers; from diffusers import DiffusionPipeline, ModelMixin",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9, help="runs of each command (at least 7)")
    args = parser.parse_args(argv)
    if args.repeats < 7:
        parser.error(f"--repeats must be at least 7, got {args.repeats}")
    return args


def time_command(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=REPOSITORY, check=True, capture_output=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # 1. one untimed run each, so that both read their files from a warm page cache
    for code in COMMANDS.values():
        time_command(code)

    # 2. interleaved timed runs
    times = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, code in COMMANDS.items():
            times[name].append(time_command(code))

    # 3. report
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(
            f"{name:>22}: median {medians[name] * 1000:.0f} ms "
            f"(min {min(values) * 1000:.0f}, max {max(values) * 1000:.0f}, {len(values)} runs)"
        )
    print(f"ratio of medians (ours / diffusers): {medians['diffusers_videolatent'] / medians['diffusers']:.3f}")


if __name__ == "__main__":
    main()
