"""DeepCache against diffusers' caches: on the shipped default model and on a U-Net of ModelScope's real size.

    python benchmarks/benchmark_deepcache.py --part shipped --repeats 5 --videos_per_combination 1
    python benchmarks/benchmark_deepcache.py --part modelscope --repeats 3 --threads 2
    python benchmarks/benchmark_deepcache.py --quick            # tiny sizes: checks that every case runs

The cases, side by side: no cache, DeepCache at the recommended setting (`DeepCacheConfig()`) and at a second one, and
diffusers' Pyramid Attention Broadcast, FasterCache and TaylorSeer as `benchmarks/benchmark_cache.py` configures them.
Timings are interleaved (`benchmark_cache.time_interleaved`); the median and the min-max of the repeats are printed
with the ratio of medians to the uncached case.

1. `shipped`: end-to-end generation of the default model at its recommended settings, and the evaluator's scores on
   the same seeded prompts for every case (`diffusers_videolatent.training.evaluate`): whether colour, shape and
   direction stay within one video of the uncached run on the seen and on the held-out combinations, and the area CV.
2. `modelscope`: diffusers' `UNet3DConditionModel` with the text-to-video-ms-1.7b config (random weights) converted with
   `UNetSpatioTemporalModel.from_unet3d`; the denoising loop alone (10 DDIM steps with classifier-free guidance, 8
   frames of 16x16 latents, 128x128 pixels), and the PSNR of each cached output against the uncached one.

For both models the time of each U-Net part (`conv_in`, each down level, the mid block, each up level, `conv_out`)
over one generation is printed uncached and with DeepCache: it shows where the time goes when a target is missed.
"""

import argparse
import collections
import math
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from benchmark_cache import (
    cache_configs,
    enabled,
    generation,
    load_pipeline,
    report,
    time_and_score,
    time_interleaved,
    write_json,
)
from diffusers import DDIMScheduler, UNet3DConditionModel
from modelscope_shape import MODELSCOPE_UNET_CONFIG, QUICK_UNET_CONFIG

from diffusers_videolatent import DeepCacheConfig, UNetSpatioTemporalModel
from diffusers_videolatent.cli import DEFAULT_MODEL
from diffusers_videolatent.training.evaluate import ALL_COMBINATIONS, HELDOUT_COMBINATIONS


# the second DeepCache setting compared: more full steps and a deeper branch than the recommended one
DEEPCACHE_SECOND = DeepCacheConfig(cache_interval=2, cache_branch_id=1)


CASES = ("none", "deepcache", "deepcache_second", "pab", "fastercache", "taylorseer")


def all_configs(
    current_timestep: Callable[[], torch.Tensor],
    cases: Sequence[str] = CASES,
    sweep: Sequence[tuple[int, int]] = (),
) -> dict:
    """The cases compared, in the order of `CASES`, those named in `cases`; then the DeepCache settings of `sweep`
    (`(cache_interval, cache_branch_id)` pairs)."""
    configs = cache_configs(current_timestep)
    configs.update(deepcache=DeepCacheConfig(), deepcache_second=DEEPCACHE_SECOND)
    chosen = {name: configs[name] for name in CASES if name in cases}
    for interval, branch in sweep:
        chosen[f"deepcache_i{interval}_b{branch}"] = DeepCacheConfig(cache_interval=interval, cache_branch_id=branch)
    return chosen


def sweep_setting(text: str) -> tuple[int, int]:
    """A `--sweep` value `INTERVAL:BRANCH`, a DeepCache setting (uniform schedule) added to the cases."""
    parts = text.split(":")
    if len(parts) != 2 or not all(part.isdigit() for part in parts) or int(parts[0]) < 1:
        raise argparse.ArgumentTypeError(f"expected INTERVAL:BRANCH (integers, interval >= 1), got {text!r}")
    return int(parts[0]), int(parts[1])


def time_per_part(unet: UNetSpatioTemporalModel, run: Callable[[], object]) -> tuple[dict[str, float], object]:
    """Seconds spent in each top-level part of `unet` (and in the whole U-Net) during `run()`, and its result."""
    parts = [("unet", unet), ("conv_in", unet.conv_in)]
    if unet.transformer_in is not None:
        parts.append(("transformer_in", unet.transformer_in))
    parts += [(f"down_blocks.{index}", block) for index, block in enumerate(unet.down_blocks)]
    parts.append(("mid_block", unet.mid_block))
    parts += [(f"up_blocks.{index}", block) for index, block in enumerate(unet.up_blocks)]
    parts.append(("conv_out", unet.conv_out))
    seconds, starts, handles = collections.defaultdict(float), {}, []
    for name, module in parts:

        def start(*_, name=name):
            starts[name] = time.perf_counter()

        def stop(*_, name=name):
            seconds[name] += time.perf_counter() - starts[name]

        handles += [module.register_forward_pre_hook(start), module.register_forward_hook(stop)]
    try:
        result = run()
    finally:
        for handle in handles:
            handle.remove()
    return {name: seconds[name] for name, _ in parts}, result


def print_parts(rows: dict[str, dict[str, float]], total: str) -> None:
    """The time of each U-Net part, uncached and with `DeepCacheConfig()` (`rows["none"]`, `rows["deepcache"]`)."""
    print(f"| part | none | deepcache | share of none's {total} |")
    print("|---|---|---|---|")
    for part in rows["none"]:
        none, cached = rows["none"][part], rows["deepcache"][part]
        print(f"| {part} | {none:.3f} s | {cached:.3f} s | {100 * none / rows['none'][total]:.0f}% |")


def quality_check(scores: dict) -> dict[str, bool]:
    """Per case: colour, shape and direction each within one video of the uncached run, on the seen and the held-out
    combinations, and a mean area CV <= 0.05."""

    def count(score: dict, split: str, key: str) -> int:
        return round(score[split][key] * score[split]["num_videos"])

    checks = {}
    for name, score in scores.items():
        within = all(
            abs(count(score, split, key) - count(scores["none"], split, key)) <= 1
            for split in ("seen", "heldout")
            for key in ("color", "shape", "direction")
        )
        checks[name] = within and score["all"]["area_variation"] <= 0.05
    return checks


def benchmark_shipped(args: argparse.Namespace) -> dict:
    pipeline, call_kwargs = load_pipeline(args.model)
    # `--quick`: a short small video, one seen and one held-out combination scored
    combinations = {}
    if args.quick:
        call_kwargs.update(num_frames=5, height=32, width=32, num_inference_steps=4)
        combinations = {"combinations": [ALL_COMBINATIONS[0], HELDOUT_COMBINATIONS[0]]}
    configs = all_configs(lambda: pipeline.current_timestep, args.cases, args.sweep)
    print(f"## shipped model {args.model}, {call_kwargs}, {torch.get_num_threads()} threads")
    seconds, scores = time_and_score(pipeline, configs, call_kwargs, args, **combinations)
    rows = report(seconds, scores)
    checks = quality_check(scores) if scores else {}
    for name, passed in checks.items():
        print(
            f"{name}: colour, shape, direction within one video of none (seen and held out), area CV <= 0.05: {passed}"
        )
    # where the time goes, over one more generation each (the hooks that time the parts stay out of the table above)
    parts = {}
    for name in ("none", "deepcache"):
        enabled(pipeline.unet, configs[name])
        start = time.perf_counter()
        parts[name], _ = time_per_part(pipeline.unet, generation(pipeline, call_kwargs, args.seed))
        parts[name]["generation"] = time.perf_counter() - start
    enabled(pipeline.unet, None)
    print_parts(parts, total="generation")
    return {"settings": call_kwargs, "cases": rows, "quality_check": checks, "parts": parts}


def build_modelscope_unet(config: dict, seed: int = 0) -> UNetSpatioTemporalModel:
    """The converted U-Net, random weights. Built through float16 so that two float32 copies never coexist."""
    torch.manual_seed(seed)
    reference = UNet3DConditionModel(**config).half()
    unet = UNetSpatioTemporalModel.from_unet3d(reference)
    del reference
    return unet.float().eval()


def psnr(output: torch.Tensor, reference: torch.Tensor) -> float:
    """PSNR in dB of `output` against `reference`, the peak being the reference's range."""
    mean_squared_error = (output - reference).pow(2).mean().item()
    peak = (reference.max() - reference.min()).item()
    return math.inf if mean_squared_error == 0 else 10 * math.log10(peak**2 / mean_squared_error)


def benchmark_modelscope(args: argparse.Namespace) -> dict:
    config = QUICK_UNET_CONFIG if args.quick else MODELSCOPE_UNET_CONFIG
    num_frames, size, num_steps, guidance_scale = (2, 8, 3, 9.0) if args.quick else (8, 16, 10, 9.0)
    unet = build_modelscope_unet(config)
    num_parameters = sum(parameter.numel() for parameter in unet.parameters())
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False
    )
    generator = torch.Generator().manual_seed(args.seed)
    initial_latents = torch.randn(1, 4, num_frames, size, size, generator=generator)  # (B, C, F, H, W)
    text = torch.randn(2, 77, config["cross_attention_dim"], generator=generator)  # (unconditional, conditional)
    current = {"timestep": None}
    configs = all_configs(lambda: current["timestep"], args.cases, args.sweep)
    print(
        f"## ModelScope-sized U-Net: {num_parameters / 1e6:.1f}M parameters, latents {tuple(initial_latents.shape)}, "
        f"{num_steps} DDIM steps, guidance {guidance_scale}, {torch.get_num_threads()} threads"
    )

    def denoise() -> torch.Tensor:
        scheduler.set_timesteps(num_steps)
        latents = initial_latents
        with torch.no_grad():
            for timestep in scheduler.timesteps:
                current["timestep"] = timestep
                # called as the pipeline calls it (FasterCache finds the guidance batch in the keyword inputs)
                with unet.cache_context("cond_uncond"):
                    noise_pred = unet(
                        torch.cat([latents] * 2), timestep.expand(2), encoder_hidden_states=text, return_dict=False
                    )[0]
                noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
                noise_pred = noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond)
                latents = scheduler.step(noise_pred, timestep, latents).prev_sample
        # what the pipeline's `maybe_free_model_hooks` does at the end of a call
        unet._reset_stateful_cache()
        return latents

    def warmup() -> None:
        with torch.no_grad(), unet.cache_context("cond_uncond"):
            unet(torch.cat([initial_latents] * 2), scheduler.timesteps[:1].expand(2), encoder_hidden_states=text)

    # a loop of this size takes minutes on a CPU: one forward warms up, and the U-Net parts are timed in the timed
    # loops themselves (their hooks cost microseconds against seconds per part)
    scheduler.set_timesteps(num_steps)
    seconds, results = time_interleaved(unet, configs, lambda: time_per_part(unet, denoise), args.repeats, warmup)
    parts = {name: results[name][0] for name in ("none", "deepcache") if name in results}
    outputs = {name: result[1] for name, result in results.items()}
    print("| cache | loop time (median) | min-max | ratio to none | PSNR to none |")
    print("|---|---|---|---|---|")
    reference = statistics.median(seconds["none"])
    rows = {}
    for name, values in seconds.items():
        median = statistics.median(values)
        rows[name] = {"seconds": values, "median": median, "ratio": median / reference}
        rows[name]["psnr"] = psnr(outputs[name], outputs["none"])
        print(
            f"| {name} | {median:.2f} s | {min(values):.2f}-{max(values):.2f} s | {median / reference:.2f} | "
            f"{rows[name]['psnr']:.1f} dB |"
        )
    if len(parts) == 2:
        for name in parts:
            parts[name]["loop"] = seconds[name][-1]
        print_parts(parts, total="loop")
    return {"parameters": num_parameters, "steps": num_steps, "cases": rows, "parts": parts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("shipped", "modelscope", "both"), default="both")
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="pipeline folder (default: the shipped model)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case")
    parser.add_argument("--videos_per_combination", type=int, default=1, help="for the scores (72 combinations)")
    parser.add_argument("--batch_size", type=int, default=24, help="prompts per pipeline call when scoring")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads; 1 keeps timings steadier when shared")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=CASES, help="the cases to run (none always runs)")
    parser.add_argument(
        "--sweep",
        nargs="+",
        type=sweep_setting,
        default=[],
        metavar="INTERVAL:BRANCH",
        help="more DeepCache settings to compare, e.g. 3:1 4:1 (named deepcache_i3_b1, ...)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes and 2 scored prompts: a smoke test")
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args()
    for option in ("repeats", "batch_size", "threads"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be >= 1, got {getattr(args, option)}")
    if args.videos_per_combination < 0:
        parser.error(f"--videos_per_combination must be >= 0, got {args.videos_per_combination}")
    args.cases = ["none", *args.cases]
    torch.set_num_threads(args.threads)

    results = {"repeats": args.repeats, "threads": args.threads}
    if args.part in ("shipped", "both"):
        results["shipped"] = benchmark_shipped(args)
    if args.part in ("modelscope", "both"):
        results["modelscope"] = benchmark_modelscope(args)
    if args.json is not None:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
