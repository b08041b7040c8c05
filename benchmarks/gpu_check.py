"""One run that exercises the speed and memory features on a device, side by side with diffusers' own pipeline.

    python benchmarks/gpu_check.py                                  # on CUDA, writes gpu_check.json
    python benchmarks/gpu_check.py --device cpu --quick --compile_backend eager   # end to end on a CPU, tiny sizes

A small random diffusers `TextToVideoSDPipeline` is built (no download) and converted with
`conversion_scripts/convert_text_to_video_sd.py`'s `convert`; both pipelines then run the same seeded latents in each
case: fp32, fp16 and bf16 generation, `enable_model_cpu_offload`, `enable_sequential_cpu_offload`, group offloading,
every attention backend of `diffusers.models.attention_dispatch` whose requirements are met (Hub-kernel backends are
left out: they download), and `torch.compile` (full, and regional with `compile_repeated_blocks`). Each case reports
the time of a generation, the peak of `torch.cuda.max_memory_allocated` (CUDA only), the largest difference between
our frames and diffusers' frames and, for a backend, how many attention layers of each U-Net and VAE it reached (all
of ours; none of `UNet3DConditionModel`'s, whose classic processors have no backend). A case that cannot
run on the device is recorded as skipped with the reason; an error is recorded as failed, and the run goes on.
"""

import argparse
import importlib.util
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
from diffusers import TextToVideoSDPipeline
from diffusers.models.attention import AttentionModuleMixin
from diffusers.models.attention_dispatch import AttentionBackendName, _check_attention_backend_requirements
from diffusers.models.attention_processor import Attention

from diffusers_videolatent.atomic import atomic_file


REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from benchmark_pipeline import build_components  # noqa: E402


# what diffusers' `set_attention_backend` walks: its legacy `Attention` (whose `AttnProcessor2_0` has no backend to
# set, as in `UNet3DConditionModel`) and the `AttentionModuleMixin` layers of newer models and of ours
ATTENTION_CLASSES = (Attention, AttentionModuleMixin)


def load_convert():
    """The `convert` function of `conversion_scripts/convert_text_to_video_sd.py`."""
    path = REPO_ROOT / "conversion_scripts" / "convert_text_to_video_sd.py"
    spec = importlib.util.spec_from_file_location("convert_text_to_video_sd", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.convert


class Check:
    """Builds fresh pipeline pairs and runs the cases on them."""

    def __init__(self, args: argparse.Namespace, tokenizer_folder: str):
        self.args = args
        self.device = torch.device(args.device)
        self.is_cuda = self.device.type == "cuda"
        self.tokenizer_folder = tokenizer_folder
        self.convert = load_convert()
        self.sizes = argparse.Namespace(
            unet_channels=(32, 64) if args.quick else (64, 128, 256),
            vae_channels=(8, 16) if args.quick else (32, 64, 64),
            text_width=32 if args.quick else 64,
            height=args.height,
        )
        self.call = {
            "num_frames": args.num_frames,
            "height": args.height,
            "width": args.height,
            "num_inference_steps": args.steps,
            "guidance_scale": 7.5,
            "output_type": "pt",
        }
        self.reference = None

    def pipelines(self) -> tuple[TextToVideoSDPipeline, object]:
        """A seeded diffusers pipeline and our conversion of an identical one (no shared components)."""
        source = TextToVideoSDPipeline(**build_components(self.sizes, self.tokenizer_folder))
        ours = self.convert(TextToVideoSDPipeline(**build_components(self.sizes, self.tokenizer_folder)))
        for pipe in (source, ours):
            pipe.set_progress_bar_config(disable=True)
        return source, ours

    def latents(self, pipe, dtype: torch.dtype) -> torch.Tensor:
        config, ratio = pipe.unet.config, 2 ** (len(self.sizes.vae_channels) - 1)
        shape = (1, config.in_channels, self.args.num_frames, self.args.height // ratio, self.args.height // ratio)
        return torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(self.device, dtype)

    def generate(self, pipe, dtype: torch.dtype, device: torch.device | None = None) -> tuple[torch.Tensor, float]:
        """Frames `[F, C, H, W]` (float32, CPU) of one seeded generation and its time in seconds."""
        latents = self.latents(pipe, dtype)
        if device is not None:
            latents = latents.to(device)
        self.synchronize()
        start = time.perf_counter()
        frames = pipe("a red circle moving right", latents=latents, **self.call).frames
        self.synchronize()
        frames = frames[0] if isinstance(frames, (list, tuple)) else frames
        return torch.as_tensor(frames).float().cpu(), time.perf_counter() - start

    def synchronize(self) -> None:
        if self.is_cuda:
            torch.cuda.synchronize()

    def peak_memory(self) -> int | None:
        return torch.cuda.max_memory_allocated() if self.is_cuda else None

    def reset_memory(self) -> None:
        if self.is_cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def side_by_side(self, name: str, prepare, dtype: torch.dtype = torch.float32, runs: int = 2) -> dict:
        """Runs `prepare(pipe)` on both pipelines, then `runs` generations each (the last is timed)."""
        record = {"case": name}
        for label, pipe in zip(("diffusers", "ours"), self.pipelines()):
            self.reset_memory()
            try:
                note = prepare(pipe, label)
                frames = None
                for _ in range(runs):
                    frames, seconds = self.generate(pipe, dtype)
                record[label] = {"seconds": seconds, "peak_memory": self.peak_memory(), "note": note}
                record[f"{label}_frames"] = frames
            except Exception as error:  # noqa: BLE001 - one failing case must not stop the check
                record[label] = {"failed": f"{type(error).__name__}: {error}"[:300]}
                traceback.print_exc()
            finally:
                del pipe
        frames = [record.pop(f"{label}_frames", None) for label in ("diffusers", "ours")]
        if frames[0] is not None and frames[1] is not None:
            record["max_abs_difference"] = (frames[0] - frames[1]).abs().max().item()
            if self.reference is not None:
                record["ours_vs_fp32"] = (frames[1] - self.reference).abs().max().item()
            elif name == "fp32":
                self.reference = frames[1]
        return record

    def skipped(self, name: str, reason: str) -> dict:
        return {"case": name, "skipped": reason}

    # the cases --------------------------------------------------------------------------------------------------

    def on_device(self, dtype: torch.dtype):
        def prepare(pipe, label):
            pipe.to(self.device, dtype)

        return prepare

    def model_cpu_offload(self, pipe, label):
        pipe.enable_model_cpu_offload(device=self.device)

    def sequential_cpu_offload(self, pipe, label):
        pipe.enable_sequential_cpu_offload(device=self.device)

    def group_offload(self, pipe, label):
        pipe.enable_group_offload(
            onload_device=self.device, offload_device=torch.device("cpu"), num_blocks_per_group=1
        )

    def attention_backend(self, backend: str):
        def prepare(pipe, label):
            pipe.to(self.device)
            notes = []
            for name in ("unet", "vae"):
                model = getattr(pipe, name)
                layers = [module for module in model.modules() if isinstance(module, ATTENTION_CLASSES)]
                model.set_attention_backend(backend)
                reached = sum(
                    getattr(module.processor, "_attention_backend", None) == AttentionBackendName(backend)
                    for module in layers
                )
                notes.append(f"{name} {reached} of {len(layers)}")
            return "backend reaches " + ", ".join(notes) + " attention layers"

        return prepare

    def compile_full(self, pipe, label):
        pipe.to(self.device)
        # diffusers' UNet3DConditionModel breaks the graph (its blocks branch in Python), so only ours is fullgraph
        pipe.unet = torch.compile(pipe.unet, fullgraph=label == "ours", backend=self.args.compile_backend)

    def compile_regional(self, pipe, label):
        pipe.to(self.device)
        if not getattr(pipe.unet, "_repeated_blocks", None):
            raise ValueError(f"{type(pipe.unet).__name__} declares no `_repeated_blocks`")
        pipe.unet.compile_repeated_blocks(fullgraph=True, backend=self.args.compile_backend)

    def available_backends(self) -> tuple[list[str], list[dict]]:
        """The attention backends to run here, and the others with the reason they are skipped."""
        usable, skipped = [], []
        for backend in AttentionBackendName:
            name = backend.value
            if name.endswith("_hub"):
                skipped.append(self.skipped(f"backend {name}", "downloads a Hub kernel"))
                continue
            if name in ("_native_npu", "_native_xla"):
                skipped.append(self.skipped(f"backend {name}", "needs an NPU / XLA device"))
                continue
            if not self.is_cuda and name not in ("native", "_native_math", "_native_flash", "flex"):
                skipped.append(self.skipped(f"backend {name}", "needs CUDA"))
                continue
            try:
                _check_attention_backend_requirements(backend)
            except (RuntimeError, ImportError, ValueError) as error:
                skipped.append(self.skipped(f"backend {name}", str(error)[:200]))
                continue
            usable.append(name)
        return usable, skipped

    def run(self) -> list[dict]:
        records = [self.side_by_side("fp32", self.on_device(torch.float32))]
        for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
            if not self.is_cuda and dtype == torch.float16:
                records.append(self.skipped(name, "float16 convolutions are a GPU feature"))
                continue
            records.append(self.side_by_side(name, self.on_device(dtype), dtype=dtype))
        if self.is_cuda:
            records.append(self.side_by_side("enable_model_cpu_offload", self.model_cpu_offload))
            records.append(self.side_by_side("enable_sequential_cpu_offload", self.sequential_cpu_offload))
        else:
            for name in ("enable_model_cpu_offload", "enable_sequential_cpu_offload"):
                records.append(self.skipped(name, "offloads to the CPU from an accelerator"))
        records.append(self.side_by_side("group offload (block level)", self.group_offload))
        usable, skipped = self.available_backends()
        for backend in usable:
            records.append(self.side_by_side(f"backend {backend}", self.attention_backend(backend), runs=1))
        records.extend(skipped)
        if self.args.skip_compile:
            records.append(self.skipped("torch.compile", "--skip_compile"))
        else:
            backend = self.args.compile_backend
            records.append(self.side_by_side(f"torch.compile full ({backend})", self.compile_full))
            records.append(self.side_by_side(f"torch.compile regional ({backend})", self.compile_regional))
        return records


def format_table(records: list[dict]) -> str:
    def cell(entry: dict | None) -> str:
        if entry is None:
            return "-"
        if "failed" in entry:
            return f"failed: {entry['failed'][:60]}"
        memory = "" if entry["peak_memory"] is None else f", {entry['peak_memory'] / 2**20:.0f} MiB"
        note = f" ({entry['note']})" if entry.get("note") else ""
        return f"{1000 * entry['seconds']:.0f} ms{memory}{note}"

    lines = ["| case | diffusers | ours | max abs diff (ours vs diffusers) |", "|---|---|---|---|"]
    for record in records:
        if "skipped" in record:
            lines.append(f"| {record['case']} | skipped: {record['skipped'][:80]} | | |")
            continue
        difference = record.get("max_abs_difference")
        difference = "-" if difference is None else f"{difference:.1e}"
        lines.append(
            f"| {record['case']} | {cell(record.get('diffusers'))} | {cell(record.get('ours'))} | {difference} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny models and sizes (for a CPU)")
    parser.add_argument("--num_frames", type=int, default=None, help="default: 16 (4 with --quick)")
    parser.add_argument("--height", type=int, default=None, help="and width; default: 256 (32 with --quick)")
    parser.add_argument("--steps", type=int, default=None, help="default: 10 (2 with --quick)")
    parser.add_argument("--skip_compile", action="store_true")
    parser.add_argument("--compile_backend", default="inductor", help="torch.compile backend (eager: tracing only)")
    parser.add_argument("--json", default="gpu_check.json", help="where the results are written")
    args = parser.parse_args()
    args.num_frames = args.num_frames or (4 if args.quick else 16)
    args.height = args.height or (32 if args.quick else 256)
    args.steps = args.steps or (2 if args.quick else 10)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("`--device cuda` but CUDA is not available; pass `--device cpu --quick` to check on a CPU.")

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tokenizer_folder:
        records = Check(args, tokenizer_folder).run()
    seconds = time.perf_counter() - start
    print(format_table(records))
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    print(f"{device_name}, torch {torch.__version__}, {seconds:.0f} s in all")
    results = {"device": device_name, "torch": torch.__version__, "seconds": seconds, "settings": vars(args)}
    results["cases"] = records
    with atomic_file(args.json, overwrite=True) as temporary:
        with open(temporary, "w") as file:
            json.dump(results, file, indent=2, default=str)


if __name__ == "__main__":
    main()
