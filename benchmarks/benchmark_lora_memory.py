"""Peak memory and time of one training step at the text-to-video-ms-1.7b shape: LoRA, temporal-only, full.

    python benchmarks/benchmark_lora_memory.py                        # LoRA and temporal-only measured, full estimated
    python benchmarks/benchmark_lora_memory.py --cases lora full      # full fine-tuning measured too (~23 GiB)
    python benchmarks/benchmark_lora_memory.py --quick                # the same layout, tiny (a smoke test)

The U-Net is diffusers' `UNet3DConditionModel` with ali-vilab/text-to-video-ms-1.7b's config (random weights: the cost
does not depend on the values), converted with `UNetSpatioTemporalModel.from_unet3d`, in float32 with gradient
checkpointing, trained as `train_text_to_video` trains it (its `setup_fine_tuning`, AdamW over the trainable
parameters): one video of 8 frames at 128x128 (latents 4 x 8 x 16 x 16), 77 text tokens of width 1024, flow-matching
MSE. Each case runs in its own process, which builds the model, resets its peak resident set size (`VmHWM`, by
writing 5 to `/proc/self/clear_refs`), runs `--steps` steps (the first allocates the optimizer states) and reports the
peak RSS of the steps, the RSS of the model before them, and the time of each step. The children run with
`--threads` threads and `OMP_WAIT_POLICY=PASSIVE` (unless set): on a machine shared with other jobs, OpenMP threads
that spin while they wait make each small operator many times slower.

A case not run (`full`, by default: weights, gradients and two AdamW states of 1.41B float32 parameters are 22.6 GB
before any activation) is estimated from the LoRA case: the model's RSS, plus 3 x 4 bytes per trained parameter, plus
the LoRA step's activation memory (its peak less the model's RSS and the LoRA's own parameters, gradients and states).
"""

import argparse
import gc
import json
import os
import subprocess
import sys
import time

from modelscope_shape import MODELSCOPE_UNET_CONFIG, QUICK_UNET_CONFIG
from proc_status import read_status_kib


CASES = ("lora", "temporal", "full")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_case(case: str, quick: bool, rank: int, steps: int, threads: int) -> dict:
    """Builds the U-Net, makes `case` trainable as the training script does, runs `steps` steps; returns the numbers."""
    import torch  # only in the case's process: the parent stays light and its refusals fast

    start = time.perf_counter()
    from diffusers import UNet3DConditionModel

    from diffusers_videolatent import UNetSpatioTemporalModel
    from diffusers_videolatent.training.lora import setup_fine_tuning, trainable_parameters

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = QUICK_UNET_CONFIG if quick else MODELSCOPE_UNET_CONFIG
    reference = UNet3DConditionModel(**config)
    unet = UNetSpatioTemporalModel.from_unet3d(reference)
    del reference
    gc.collect()
    unet.train()
    unet.enable_gradient_checkpointing()
    options = argparse.Namespace(
        rank=rank if case == "lora" else None,
        lora_alpha=None,
        lora_dropout=0.0,
        lora_layers="all",
        trainable_layers={"lora": None, "temporal": "temporal", "full": None}[case],
    )
    setup_fine_tuning(unet, options, torch.float32)
    log(f"{case}: model built in {time.perf_counter() - start:.0f} s")
    parameters = trainable_parameters(unet)
    optimizer = torch.optim.AdamW(parameters, lr=1e-4)
    latents = torch.randn(1, 4, 8, 16, 16)  # 8 frames of 128x128, the VAE's factor 8
    encoder_hidden_states = torch.randn(1, 77, config["cross_attention_dim"])

    gc.collect()
    model_rss_kib = read_status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as file:
        file.write("5")  # resets VmHWM, the peak RSS, to the current RSS
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        sigmas = torch.rand(1).view(1, 1, 1, 1, 1)
        noise = torch.randn_like(latents)
        noisy = (1 - sigmas) * latents + sigmas * noise
        prediction = unet(noisy, sigmas.flatten() * 1000, encoder_hidden_states, return_dict=False)[0]
        loss = torch.nn.functional.mse_loss(prediction, noise - latents)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seconds.append(time.perf_counter() - start)
        log(f"{case}: step {len(seconds)} in {seconds[-1]:.1f} s, peak RSS {read_status_kib('VmHWM') / 2**20:.2f} GiB")
    return {
        "case": case,
        "total_parameters": sum(parameter.numel() for parameter in unet.parameters()),
        "trained_parameters": sum(parameter.numel() for parameter in parameters),
        "model_rss_gib": model_rss_kib / 2**20,
        "peak_rss_gib": read_status_kib("VmHWM") / 2**20,
        "step_seconds": seconds,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=["lora", "temporal"], choices=CASES)
    parser.add_argument("--rank", type=int, default=16, help="The LoRA's rank (on every attention projection).")
    parser.add_argument("--steps", type=int, default=2, help="Steps per case (the first allocates AdamW's states).")
    parser.add_argument("--threads", type=int, default=2, help="torch's intra-op threads in each case's process.")
    parser.add_argument("--quick", action="store_true", help="The same layout, tiny: checks that the script runs.")
    parser.add_argument("--json", type=str, default=None, help="Also write the results here.")
    parser.add_argument("--child", type=str, default=None, choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not os.path.exists("/proc/self/clear_refs"):
        print(f"{parser.prog}: error: the peak RSS is read from Linux's /proc; this system has none", file=sys.stderr)
        sys.exit(2)
    for name, value in (("--rank", args.rank), ("--steps", args.steps), ("--threads", args.threads)):
        if value < 1:
            print(f"{parser.prog}: error: {name} must be >= 1, got {value}", file=sys.stderr)
            sys.exit(2)
    if args.child is not None:
        print(json.dumps(run_case(args.child, args.quick, args.rank, args.steps, args.threads)))
        return

    results = {}
    environment = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ}
    for case in args.cases:  # one process per case: each peak is its own
        command = [sys.executable, os.path.abspath(__file__), "--child", case, "--rank", str(args.rank)]
        command += ["--steps", str(args.steps), "--threads", str(args.threads)] + (["--quick"] if args.quick else [])
        # the child's progress goes to our stderr as it runs; its last stdout line is the result
        output = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True, env=environment).stdout
        results[case] = json.loads(output.strip().splitlines()[-1])
        print(json.dumps(results[case]))

    if "full" not in results and "lora" in results:
        lora = results["lora"]
        lora_state_gib = 4 * 4 * lora["trained_parameters"] / 2**30  # weights, gradients, two AdamW states
        activations_gib = lora["peak_rss_gib"] - lora["model_rss_gib"] - lora_state_gib
        base_rss_gib = lora["model_rss_gib"] - 4 * lora["trained_parameters"] / 2**30
        training_state_gib = 3 * 4 * (lora["total_parameters"] - lora["trained_parameters"]) / 2**30
        results["full_estimate"] = {
            "peak_rss_gib": base_rss_gib + training_state_gib + activations_gib,
            "model_rss_gib": base_rss_gib,
            "gradients_and_adam_states_gib": training_state_gib,
            "activations_gib": activations_gib,
        }
        print(json.dumps({"full_estimate": results["full_estimate"]}))

    print("\n| case | trained parameters | model RSS (GiB) | peak RSS of a step (GiB) | step time (s) |")
    print("|---|---|---|---|---|")
    for case, result in results.items():
        if case == "full_estimate":
            print(
                f"| full (estimate) | all | {result['model_rss_gib']:.2f} | {result['peak_rss_gib']:.2f} | not run |"
            )
            continue
        trained = f"{result['trained_parameters'] / 1e6:.3g} M of {result['total_parameters'] / 1e6:.4g} M"
        step_times = " / ".join(f"{value:.1f}" for value in result["step_seconds"])
        print(f"| {case} | {trained} | {result['model_rss_gib']:.2f} | {result['peak_rss_gib']:.2f} | {step_times} |")
    if args.json:
        from diffusers_videolatent.atomic import atomic_file

        with atomic_file(args.json, overwrite=True) as temporary:
            with open(temporary, "w") as file:
                json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
