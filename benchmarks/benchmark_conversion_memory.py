"""Peak memory and time of converting a text-to-video-ms-1.7b-shaped pipeline, against one float32 copy of its weights.

    python benchmarks/benchmark_conversion_memory.py             # the 1.7B shape (about 8 GB of disk, ~10 GB RAM)
    python benchmarks/benchmark_conversion_memory.py --quick     # the same steps, tiny (a smoke test)

The source is a diffusers `TextToVideoSDPipeline` with random weights (the cost does not depend on the values):
`UNet3DConditionModel` with ali-vilab/text-to-video-ms-1.7b's config, Stable Diffusion's `AutoencoderKL` and an
OpenCLIP ViT-H-sized `CLIPTextModel` (23 layers of width 1024), saved in float16 as the `fp16` variant, as the Hub
repository is. A first process builds and saves it; a second one runs `conversion_scripts/convert_text_to_video_sd.py
--source_variant fp16` (verification included) and reports its peak resident set size (`VmHWM` of
`/proc/self/status`), which is compared with 4 bytes per parameter of the source (one float32 copy, counted from the
saved files' headers). The numbers are in docs/conversion.md.
"""

import argparse
import importlib.util
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from modelscope_shape import MODELSCOPE_UNET_CONFIG
from proc_status import read_status_kib


REPOSITORY = Path(__file__).resolve().parents[1]

# Stable Diffusion's image VAE (the 1.7B pipeline's `vae/config.json`)
SD_VAE_CONFIG = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 512,
}
# the 1.7B pipeline's text encoder (OpenCLIP ViT-H text tower)
TEXT_ENCODER_CONFIG = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 23,
    "projection_dim": 512,
    "hidden_act": "gelu",
    "max_position_embeddings": 77,
    "vocab_size": 49408,
}
# `--quick`: the same layouts, small
QUICK_UNET_CONFIG = {**MODELSCOPE_UNET_CONFIG, "block_out_channels": (32, 32, 32, 32), "norm_num_groups": 8}
QUICK_UNET_CONFIG.update(attention_head_dim=8, cross_attention_dim=32, layers_per_block=1)
QUICK_VAE_CONFIG = {**SD_VAE_CONFIG, "block_out_channels": (8, 8, 16, 16), "norm_num_groups": 4, "layers_per_block": 1}
QUICK_TEXT_ENCODER_CONFIG = {**TEXT_ENCODER_CONFIG, "hidden_size": 32, "intermediate_size": 64}
QUICK_TEXT_ENCODER_CONFIG.update(num_attention_heads=4, num_hidden_layers=2, projection_dim=32)


def build_source(folder: str, quick: bool) -> None:
    """Builds the random-weight float16 source pipeline and saves it as the `fp16` variant."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    sys.path.insert(0, str(REPOSITORY))
    from tests.testing_utils import build_tokenizer

    torch.manual_seed(0)
    unet_config = QUICK_UNET_CONFIG if quick else MODELSCOPE_UNET_CONFIG
    pipe = TextToVideoSDPipeline(
        vae=AutoencoderKL(**(QUICK_VAE_CONFIG if quick else SD_VAE_CONFIG)).half(),
        text_encoder=CLIPTextModel(
            CLIPTextConfig(**(QUICK_TEXT_ENCODER_CONFIG if quick else TEXT_ENCODER_CONFIG))
        ).half(),
        tokenizer=build_tokenizer(),
        unet=UNet3DConditionModel(**unet_config).half(),
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False),
    )
    pipe.save_pretrained(folder, variant="fp16")


def count_parameters(folder: str) -> int:
    """The number of stored values in every `.safetensors` file under `folder`, from their headers."""
    total = 0
    for path in Path(folder).rglob("*.safetensors"):
        with open(path, "rb") as file:
            (length,) = struct.unpack("<Q", file.read(8))
            header = json.loads(file.read(length))
        for name, entry in header.items():
            if name != "__metadata__":
                count = 1
                for size in entry["shape"]:
                    count *= size
                total += count
    return total


def folder_bytes(folder: str) -> int:
    return sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file())


def measure_conversion(source: str, output: str) -> None:
    """Runs the conversion script's `main` in this process and prints its exit code, time and peak RSS as JSON."""
    spec = importlib.util.spec_from_file_location(
        "convert_text_to_video_sd", REPOSITORY / "conversion_scripts" / "convert_text_to_video_sd.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    start = time.perf_counter()
    code = script.main(["--checkpoint_path", source, "--source_variant", "fp16", "--output_path", output])
    seconds = time.perf_counter() - start
    print(json.dumps({"exit_code": code, "seconds": seconds, "peak_rss_kib": read_status_kib("VmHWM")}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Tiny models with the same layout (a smoke test).")
    parser.add_argument("--work_dir", default=None, help="Where the source and output are written (a temporary dir).")
    parser.add_argument("--build", metavar="FOLDER", help=argparse.SUPPRESS)
    parser.add_argument("--measure", nargs=2, metavar=("SOURCE", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        build_source(args.build, args.quick)
        return
    if args.measure:
        measure_conversion(*args.measure)
        return

    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    if args.work_dir is not None:
        os.makedirs(args.work_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work_dir:
        source, output = os.path.join(work_dir, "source"), os.path.join(work_dir, "converted")
        quick = ["--quick"] if args.quick else []
        start = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--build", source, *quick], check=True, env=environment)
        build_seconds = time.perf_counter() - start
        process = subprocess.run(
            [sys.executable, __file__, "--measure", source, output],
            check=True,
            env=environment,
            capture_output=True,
            text=True,
        )
        result = json.loads(process.stdout.strip().splitlines()[-1])
        verified = re.search(r"max abs difference of the pipeline outputs (\S+)", process.stdout)
        parameters = count_parameters(source)
        float32_gib = 4 * parameters / 2**30
        peak_gib = result["peak_rss_kib"] / 2**20
        report = {
            "shape": "quick" if args.quick else "text-to-video-ms-1.7b",
            "parameters": parameters,
            "source_fp16_gib": folder_bytes(source) / 2**30,
            "one_float32_copy_gib": float32_gib,
            "peak_rss_gib": peak_gib,
            "peak_over_float32_copy": peak_gib / float32_gib,
            "conversion_seconds": result["seconds"],
            "exit_code": result["exit_code"],
            "verified_max_abs_difference": verified.group(1) if verified else None,
            "output_gib": folder_bytes(output) / 2**30 if os.path.isdir(output) else None,
            "saved_weight_files": sorted(str(p.relative_to(output)) for p in Path(output).rglob("*.safetensors")),
            "build_seconds": build_seconds,
            "load_average": os.getloadavg(),
        }
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
