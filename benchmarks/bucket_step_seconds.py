"""Seconds per training step for each bucket of a bucketed `train_text_to_video` run, read from its jsonl log.

    python benchmarks/bucket_step_seconds.py out/default_model/dials_anneal/logs/text_to_video/metrics.jsonl

A bucketed run logs each step's bucket (`FRAMESxHEIGHTxWIDTH`) and seconds (data, forward, backward and optimizer
step; checkpoints and validation are not counted). Prints, for each bucket, the steps, the median seconds per step
with its range, the share of the steps and the share of the training time. The first step of the log (and of each
resumed run) pays for warm-up, so steps slower than 5x the bucket's median are left out and counted.
"""

import argparse
import json
import statistics
import sys
from collections import defaultdict


def bucket_seconds(lines) -> dict[str, list[float]]:
    """The logged seconds of each bucket's steps, by bucket."""
    seconds = defaultdict(list)
    for line in lines:
        record = json.loads(line)
        if "bucket" in record and "step_seconds" in record:
            seconds[record["bucket"]].append(record["step_seconds"])
    return dict(seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", help="the run's logs/text_to_video/metrics.jsonl")
    args = parser.parse_args(argv)
    with open(args.log) as file:
        seconds = bucket_seconds(file)
    if not seconds:
        sys.exit(f"{args.log}: no step has a bucket and its seconds (not a bucketed run, or logged before they were)")

    def size(bucket: str) -> int:
        frames, height, width = (int(value) for value in bucket.split("x"))
        return frames * height * width

    kept, slow = {}, 0
    for bucket, values in seconds.items():
        median = statistics.median(values)
        kept[bucket] = [value for value in values if value <= 5 * median]
        slow += len(values) - len(kept[bucket])
    steps, total = sum(len(values) for values in kept.values()), sum(sum(values) for values in kept.values())
    print(f"{args.log}: {steps} steps, {total / 60:.1f} minutes of steps; {slow} slower than 5x their median left out")
    print("| bucket | steps | seconds per step, median (min-max) | share of steps | share of time |")
    print("|---|---|---|---|---|")
    for bucket in sorted(kept, key=size):
        values = kept[bucket]
        print(
            f"| {bucket} | {len(values)} | {statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f}) |"
            f" {len(values) / steps:.1%} | {sum(values) / total:.1%} |"
        )


if __name__ == "__main__":
    main()
