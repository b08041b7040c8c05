"""Time of one U-Net training step on the CPU, by precision and attention backend, beside diffusers' UNet3DConditionModel.

The step is the training script's (forward, flow-matching-sized MSE, backward, AdamW step) minus the EMA update and
the data loading, at the default model's training shape: batch 32 of 17-frame 64x64 videos (16 x 5 x 8 x 8 latents)
with 16 text tokens. `ours` is the shipped default model's U-Net (its 17 conditioning channels fed too); `unet3d` is a
diffusers `UNet3DConditionModel` of the same widths (32, 64), the held-out reference that tells a cost of torch's CPU
kernels from a cost of our model. Cases:

- `fp32`: eager float32, torch's default attention kernel (the CPU flash kernel);
- `bf16`: `torch.autocast("cpu", dtype=torch.bfloat16)`, what `--mixed_precision bf16` does on a CPU;
- `bf16-math`: the same with the math attention kernel (`sdpa_kernel(SDPBackend.MATH)`);
- with `--compile`, `bf16-math-compiled`: the same through `torch.compile` (inductor; its compile time is reported).

The cases are interleaved over `--rounds`, and each prints the median of all its timed steps with their range.

    python benchmarks/benchmark_training_step.py
    python benchmarks/benchmark_training_step.py --compile --rounds 2

Random inputs and the models' own (or seeded random) weights are fine: the step's cost does not depend on the values.
"""

import argparse
import contextlib
import statistics
import time

import torch


CASES = ("fp32", "bf16", "bf16-math")


def build(name: str):
    torch.manual_seed(0)
    if name == "ours":
        from diffusers_videolatent import UNetSpatioTemporalModel
        from diffusers_videolatent.cli import DEFAULT_MODEL

        return UNetSpatioTemporalModel.from_pretrained(DEFAULT_MODEL, subfolder="unet")
    from diffusers import UNet3DConditionModel

    return UNet3DConditionModel(
        in_channels=16,
        out_channels=16,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        layers_per_block=1,
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def make_step(name: str, model, case: str, batch_size: int):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(batch_size, 16, 5, 8, 8, generator=generator)
    timestep = torch.rand(batch_size, generator=generator) * 1000
    text = torch.randn(batch_size, 16, 32, generator=generator)
    extra = {}
    if name == "ours" and model.config.conditioning_channels:
        extra["conditioning_latents"] = torch.randn(
            batch_size, model.config.conditioning_channels, 5, 8, 8, generator=generator
        )
    if name == "ours" and model.config.use_fps_conditioning:
        extra["fps"] = 8  # the shipped U-Net is told the frame rate
    forward = torch.compile(model) if case.endswith("compiled") else model

    def step():
        kernel = sdpa_kernel(SDPBackend.MATH) if "math" in case else contextlib.nullcontext()
        with kernel, torch.autocast("cpu", dtype=torch.bfloat16, enabled=case.startswith("bf16")):
            prediction = forward(sample, timestep, encoder_hidden_states=text, **extra).sample
        loss = prediction.float().pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over all cases")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per case and round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="add the bf16-math case through torch.compile")
    args = parser.parse_args(argv)
    for option in ("batch_size", "rounds", "steps", "threads"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be >= 1, got {getattr(args, option)}")
    torch.set_num_threads(args.threads)

    cases = CASES + (("bf16-math-compiled",) if args.compile else ())
    steps, times = {}, {}
    for name in ("ours", "unet3d"):
        for case in cases:
            steps[name, case] = make_step(name, build(name), case, args.batch_size)
            started = time.perf_counter()
            steps[name, case]()  # the first step compiles where it is asked to
            if case.endswith("compiled"):
                print(f"{name} {case}: first step (compilation) {time.perf_counter() - started:.0f} s", flush=True)
            times[name, case] = []
    for _ in range(args.rounds):
        for key, step in steps.items():
            step()  # warm-up after the other cases ran
            for _ in range(args.steps):
                started = time.perf_counter()
                step()
                times[key].append(time.perf_counter() - started)

    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch_size}, {args.rounds} rounds")
    print("| model | case | step (s), median | range | ratio to the model's fp32 |")
    print("|---|---|---|---|---|")
    for (name, case), values in times.items():
        median = statistics.median(values)
        reference = statistics.median(times[name, "fp32"])
        print(f"| {name} | {case} | {median:.3f} | {min(values):.3f}-{max(values):.3f} | {median / reference:.2f} |")


if __name__ == "__main__":
    main()
