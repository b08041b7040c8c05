"""Side-by-side benchmark of long videos: `VideoLatentPipeline.enable_free_noise` against diffusers'
`AnimateDiffPipeline.enable_free_noise`, on the same weights (one random AnimateDiff source, converted for ours with
`conversion_scripts/convert_animatediff.py`'s `convert`), both with split inference. Ours runs twice: with
`context_scope="attention"` (diffusers' FreeNoise: windows inside each temporal attention, one U-Net call per step on
the whole clip) and with `context_scope="unet"` (one U-Net call per window, the predictions blended), and a third time
with FIFO's diagonal denoising (`enable_fifo_denoising(context_length)`, lookahead on), whose queue holds
`--context_length` frames, so it runs that many steps (one U-Net call per iteration on the whole queue); its "time per
step" is the call's time divided by its steps, as it has no step over the whole clip.

For each pipeline and each length: the time per denoising step and the peak memory of the call (the prompt and the
denoising steps, no decoding), over the memory before it. Each measurement runs in its own process (spawned), the
pipelines and lengths interleaved round after round; the median and range over the rounds are printed, then the ratio
of the longest to the shortest length. Memory is `max_memory_allocated` on CUDA; on the CPU, the resident set size
sampled every half millisecond by a thread (so a spike shorter than that can be missed), after glibc's `malloc_trim`
returned the memory the warm-up freed.

    python benchmarks/benchmark_long_video.py                           # 61 and 241 frames at 128x128 on the CPU
    python benchmarks/benchmark_long_video.py --device cuda --height 512 --width 512 --unet_channels 320,640,1280,1280
"""

import argparse
import ctypes
import importlib.util
import multiprocessing
import resource
import statistics
import sys
import threading
import time
from pathlib import Path


REPOSITORY = Path(__file__).resolve().parents[1]
# this checkout's package and test builders, also in the spawned processes (which import this file again)
sys.path[:0] = [str(REPOSITORY)]
# (pipeline, context scope); diffusers' FreeNoise windows the temporal attentions only
CASES = (
    ("VideoLatentPipeline", "attention"),
    ("VideoLatentPipeline", "unet"),
    ("VideoLatentPipeline", "fifo"),
    ("AnimateDiffPipeline", "attention"),
)


def parse_channels(text: str) -> tuple[int, ...]:
    return tuple(int(value) for value in text.split(","))


def build_pipeline(kind: str, args: argparse.Namespace, tokenizer_folder: str):
    """The AnimateDiff source (seeded, so every process builds the same weights), as `kind`."""
    import torch
    from diffusers import AnimateDiffPipeline, AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel

    from tests.testing_utils import build_text_encoder, build_tokenizer, randomize_weights_

    text_encoder = build_text_encoder(hidden_size=args.text_width)
    torch.manual_seed(0)
    channels, levels = args.unet_channels, len(args.unet_channels)
    unet = UNet2DConditionModel(
        sample_size=args.height // 8,
        block_out_channels=channels,
        down_block_types=("CrossAttnDownBlock2D",) * (levels - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (levels - 1),
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=args.text_width,
        attention_head_dim=8,
    )
    # the motion modules' output projections start at zero; random ones make the temporal attention count
    adapter = randomize_weights_(
        MotionAdapter(
            block_out_channels=channels,
            motion_layers_per_block=1,
            motion_num_attention_heads=4,
            motion_norm_num_groups=8,
            motion_max_seq_length=32,
        ),
        zero_only=True,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=4,
    )
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False)
    components = {
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": build_tokenizer(),
        "unet": unet,
        "scheduler": scheduler,
    }
    if kind == "AnimateDiffPipeline":
        return AnimateDiffPipeline(**components, motion_adapter=adapter)
    spec = importlib.util.spec_from_file_location(
        "convert_animatediff", REPOSITORY / "conversion_scripts" / "convert_animatediff.py"
    )
    convert_animatediff = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(convert_animatediff)
    return convert_animatediff.convert(components, adapter)


class ResidentSetPeak:
    """The peak resident set size of this process while in the `with` block, sampled by a thread.

    On entry glibc's `malloc_trim(0)` hands the heap's free memory back to the system, so that what the warm-up call
    freed is not silently reused by the measured call (the resident size would then miss it).
    """

    def __init__(self, interval: float = 0.0005):
        self.interval = interval
        self.peak = 0
        self._running = False

    @staticmethod
    def current() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()

    def _sample(self) -> None:
        while self._running:
            self.peak = max(self.peak, self.current())
            time.sleep(self.interval)

    def __enter__(self):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:  # not glibc: the free memory stays and the peak may be underestimated
            pass
        self.peak = self.current()
        self._running = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._running = False
        self._thread.join()
        self.peak = max(self.peak, self.current())


def run_one(case: tuple[str, str], num_frames: int, args: argparse.Namespace, tokenizer_folder: str, results) -> None:
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    kind, scope = case
    pipe = build_pipeline(kind, args, tokenizer_folder).to(device)
    pipe.set_progress_bar_config(disable=True)
    fifo = scope == "fifo"
    if fifo:
        pipe.enable_fifo_denoising(context_length=args.context_length)
    else:
        scope_kwargs = {"context_scope": scope} if kind == "VideoLatentPipeline" else {}
        pipe.enable_free_noise(context_length=args.context_length, context_stride=args.context_stride, **scope_kwargs)
    pipe.enable_free_noise_split_inference(args.spatial_split_size, args.temporal_split_size)

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step_ends = []

    def on_step_end(pipe, step, timestep, callback_kwargs):
        synchronize()
        step_ends.append(time.perf_counter())
        return callback_kwargs

    call = {
        "prompt": "a red circle",
        "height": args.height,
        "width": args.width,
        "num_inference_steps": args.context_length if fifo else args.steps,
        "guidance_scale": 7.5,
        "output_type": "latent",
    }
    if not fifo:
        call["callback_on_step_end"] = on_step_end
    pipe(**call, num_frames=args.context_length, generator=torch.Generator("cpu").manual_seed(0))  # warm-up
    step_ends.clear()
    step_ends.append(time.perf_counter())

    if device.type == "cuda":
        synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        pipe(**call, num_frames=num_frames, generator=torch.Generator("cpu").manual_seed(0))
        peak = torch.cuda.max_memory_allocated(device) - before
    else:
        with ResidentSetPeak() as resident:
            before = resident.peak
            pipe(**call, num_frames=num_frames, generator=torch.Generator("cpu").manual_seed(0))
        peak = resident.peak - before
    if fifo:  # the call's time per step
        synchronize()
        step_times = [(time.perf_counter() - step_ends[0]) / call["num_inference_steps"]]
    else:  # the first step pays for the scheduler's first call; later steps are the steady state
        step_times = [end - start for start, end in zip(step_ends[1:-1], step_ends[2:])]
    results[(case, num_frames, len(results))] = {"step": statistics.median(step_times), "peak": peak}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[61, 241], help="video lengths (latent frames)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every measurement")
    parser.add_argument("--steps", type=int, default=3, help="denoising steps per call (at least 2)")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--unet_channels", type=parse_channels, default=(32, 64, 64))
    parser.add_argument("--text_width", type=int, default=32)
    parser.add_argument("--context_length", type=int, default=16)
    parser.add_argument("--context_stride", type=int, default=4)
    parser.add_argument("--spatial_split_size", type=int, default=256)
    parser.add_argument("--temporal_split_size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    for name in ("rounds", "threads", "context_length", "context_stride"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.steps < 2:
        parser.error(f"--steps must be >= 2 (the first step is not timed), got {args.steps}")

    import tempfile

    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tokenizer_folder, context.Manager() as manager:
        results = manager.dict()
        for _ in range(args.rounds):
            for num_frames in args.frames:
                for case in CASES:
                    process = context.Process(target=run_one, args=(case, num_frames, args, tokenizer_folder, results))
                    process.start()
                    process.join()
                    if process.exitcode != 0:
                        raise SystemExit(
                            f"the {case[0]} run ({case[1]} windows) at {num_frames} frames failed"
                            f" (exit code {process.exitcode})"
                        )
        results = dict(results)

    def values(case: tuple[str, str], num_frames: int, key: str) -> list[float]:
        return [result[key] for (c, f, _), result in results.items() if (c, f) == (case, num_frames)]

    print(
        f"FreeNoise (context_length {args.context_length}, stride {args.context_stride}) with split inference"
        f" (spatial {args.spatial_split_size}, temporal {args.temporal_split_size}); {args.height}x{args.width},"
        f" DDIM with guidance, device {args.device}, {args.threads} threads, U-Net channels {args.unet_channels};"
        f" median (min-max) of {args.rounds} interleaved rounds"
    )
    print("| pipeline | context scope | frames | time per step (s) | peak memory of the call (MiB) |")
    print("|---|---|---|---|---|")
    for case in CASES:
        for num_frames in args.frames:
            steps = values(case, num_frames, "step")
            peaks = [peak / 2**20 for peak in values(case, num_frames, "peak")]
            print(
                f"| {case[0]} | {case[1]} | {num_frames} |"
                f" {statistics.median(steps):.3f} ({min(steps):.3f}-{max(steps):.3f}) |"
                f" {statistics.median(peaks):.1f} ({min(peaks):.1f}-{max(peaks):.1f}) |"
            )
    shortest, longest = min(args.frames), max(args.frames)
    print(f"| pipeline | context scope | time ratio {longest}/{shortest} | peak memory ratio {longest}/{shortest} |")
    print("|---|---|---|---|")
    for case in CASES:
        ratios = []
        for key in ("step", "peak"):
            long, short = statistics.median(values(case, longest, key)), statistics.median(values(case, shortest, key))
            ratios.append(f"{long / short:.2f}" if short > 0 else "n/a")
        print(f"| {case[0]} | {case[1]} | {ratios[0]} | {ratios[1]} |")


if __name__ == "__main__":
    main()
