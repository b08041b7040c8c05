"""Diffusers' caches on the shipped default model: generation time and evaluation scores, cached and uncached.

    python benchmarks/benchmark_cache.py                                  # 5 timed runs each, 1 video per combination
    python benchmarks/benchmark_cache.py --repeats 7 --videos_per_combination 2 --json cache.json

Each cache is enabled with `pipe.unet.enable_cache(config)`. Timing: one prompt at the model's recommended settings,
the cases interleaved (none, PAB, FasterCache, TaylorSeer, none, PAB, ...) so that load on a shared machine spreads
over all of them; the median and the min-max of the repeats are printed with the ratio of medians to the uncached run.
Scores: `diffusers_videolatent.training.evaluate.evaluate_pipeline` on the same seeded prompts for every case (colour,
shape, direction and all three on the seen combinations, all three on the held-out ones).
"""

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
from diffusers import FasterCacheConfig, PyramidAttentionBroadcastConfig, TaylorSeerCacheConfig

from diffusers_videolatent import VideoLatentPipeline
from diffusers_videolatent.atomic import atomic_file
from diffusers_videolatent.cli import DEFAULT_MODEL
from diffusers_videolatent.training.evaluate import evaluate_pipeline


def cache_configs(current_timestep: Callable[[], torch.Tensor]) -> dict:
    """The caches compared, by name (`None`: no cache), given the running step's timestep (`pipe.current_timestep`).
    Timesteps of the flow-matching schedule run from 1000 to 0."""
    return {
        "none": None,
        "pab": PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=2,
            temporal_attention_block_skip_range=2,
            cross_attention_block_skip_range=2,
            spatial_attention_timestep_skip_range=(100, 800),
            temporal_attention_timestep_skip_range=(100, 800),
            cross_attention_timestep_skip_range=(100, 800),
            current_timestep_callback=current_timestep,
        ),
        "fastercache": FasterCacheConfig(
            spatial_attention_block_skip_range=2,
            temporal_attention_block_skip_range=2,
            attention_weight_callback=lambda _: 0.5,
            current_timestep_callback=current_timestep,
        ),
        "taylorseer": TaylorSeerCacheConfig(
            cache_interval=2, disable_cache_before_step=3, max_order=1, taylor_factors_dtype=torch.float32
        ),
    }


def enabled(unet, config) -> None:
    """Leaves `unet` with `config` as its only cache (`None`: none)."""
    if unet.is_cache_enabled:
        unet.disable_cache()
    if config is not None:
        unet.enable_cache(config)


def time_interleaved(
    unet, configs: dict, run: Callable[[], object], repeats: int, warmup: Callable[[], object] | None = None
) -> tuple[dict, dict]:
    """Seconds of `run()` under each cache: one uncached warm-up call (`warmup`, or `run`), then `repeats` rounds of
    every case in turn (none, PAB, ..., none, PAB, ...), so that load from other jobs on a shared machine spreads over
    all of them. Returns the seconds and the last result of `run()`, by case."""
    enabled(unet, None)
    (warmup or run)()
    seconds, results = {name: [] for name in configs}, {}
    for _ in range(repeats):
        for name, config in configs.items():
            enabled(unet, config)
            start = time.perf_counter()
            results[name] = run()
            seconds[name].append(time.perf_counter() - start)
    enabled(unet, None)
    return seconds, results


def score_cases(pipeline: VideoLatentPipeline, configs: dict, **evaluate_kwargs) -> dict:
    """`evaluate_pipeline` under each cache, on the same seeded prompts."""
    scores = {}
    for name, config in configs.items():
        enabled(pipeline.unet, config)
        scores[name] = evaluate_pipeline(pipeline, print_table=False, **evaluate_kwargs)
    enabled(pipeline.unet, None)
    return scores


def load_pipeline(model: str) -> tuple[VideoLatentPipeline, dict]:
    """The pipeline in folder `model` (progress bar off) and its recommended call settings."""
    pipeline = VideoLatentPipeline.from_pretrained(model)
    pipeline.set_progress_bar_config(disable=True)
    settings = pipeline.resolve_generation_settings()
    keys = ("num_frames", "height", "width", "num_inference_steps", "guidance_scale")
    return pipeline, {key: settings[key] for key in keys}


def generation(pipeline: VideoLatentPipeline, call_kwargs: dict, seed: int) -> Callable[[], None]:
    """One seeded generation of the timed prompt."""

    def generate() -> None:
        with torch.no_grad():
            pipeline("a red circle moving right", generator=torch.Generator().manual_seed(seed), **call_kwargs)

    return generate


def time_and_score(
    pipeline: VideoLatentPipeline, configs: dict, call_kwargs: dict, args: argparse.Namespace, **evaluate_kwargs
) -> tuple[dict, dict]:
    """1. the generation time under each cache, interleaved; 2. the scores, on the same seeded prompts for every case
    (none when `args.videos_per_combination` is 0)."""
    seconds, _ = time_interleaved(pipeline.unet, configs, generation(pipeline, call_kwargs, args.seed), args.repeats)
    scores = {}
    if args.videos_per_combination > 0:
        scores = score_cases(
            pipeline,
            configs,
            videos_per_combination=args.videos_per_combination,
            batch_size=args.batch_size,
            seed=args.seed,
            **evaluate_kwargs,
            **call_kwargs,
        )
    return seconds, scores


def report(seconds: dict[str, list[float]], scores: dict) -> dict:
    """Prints the table (times; scores where given) and returns its rows, by case."""
    reference = statistics.median(seconds["none"])
    print(
        "| cache | time (median) | min-max | ratio to none | colour | shape | direction | all three | held out "
        "| area CV |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = {}
    for name, values in seconds.items():
        median = statistics.median(values)
        row = {"seconds": values, "median": median, "ratio": median / reference}
        cells = [""] * 6
        if name in scores:
            seen, heldout = scores[name]["seen"], scores[name]["heldout"]
            row["scores"] = {split: scores[name][split] for split in ("seen", "heldout", "all")}
            cells = [f"{100 * seen[key]:.1f}%" for key in ("color", "shape", "direction", "all_three")]
            cells += [f"{100 * heldout['all_three']:.1f}%", f"{scores[name]['all']['area_variation']:.3f}"]
        rows[name] = row
        print(
            f"| {name} | {median:.2f} s | {min(values):.2f}-{max(values):.2f} s | {median / reference:.2f} | "
            + " | ".join(cells)
            + " |"
        )
    return rows


def write_json(path: str, results: dict) -> None:
    with atomic_file(path, overwrite=True) as temporary:
        with open(temporary, "w") as file:
            json.dump(results, file, indent=2, default=str)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="pipeline folder (default: the shipped model)")
    parser.add_argument("--repeats", type=int, default=5, help="timed generations per case")
    parser.add_argument("--videos_per_combination", type=int, default=1, help="for the scores (72 combinations)")
    parser.add_argument("--batch_size", type=int, default=24, help="prompts per pipeline call when scoring")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args()
    if args.repeats < 1 or args.videos_per_combination < 0:
        raise SystemExit("`--repeats` must be >= 1 and `--videos_per_combination` >= 0.")

    pipeline, call_kwargs = load_pipeline(args.model)
    configs = cache_configs(lambda: pipeline.current_timestep)
    print(f"model {args.model}, {call_kwargs}, {torch.get_num_threads()} threads")
    seconds, scores = time_and_score(pipeline, configs, call_kwargs, args)

    # 3. report
    rows = report(seconds, scores)
    if args.json is not None:
        results = {"settings": call_kwargs, "configs": {name: repr(config) for name, config in configs.items()}}
        results.update(cases=rows, repeats=args.repeats, videos_per_combination=args.videos_per_combination)
        write_json(args.json, results)


if __name__ == "__main__":
    main()
