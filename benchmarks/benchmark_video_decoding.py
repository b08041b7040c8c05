"""Items per second of `VideoFolderDataset` (PyAV, seeking to each clip) against the decoder it replaced (imageio's
`imiter`, reading every frame from frame 0 up to the clip's last).

The folder is written once by ffmpeg (imageio-ffmpeg's binary): `--videos` clips of `--seconds` seconds of its
`testsrc2` pattern (moving colours, text and a counter) at `--size` and 30 fps, in H.264 with a key frame every
`--keyint` frames (x264's default, 250). Both decoders load the same items: `--num_frames` consecutive frames at a
seeded random offset (the dataset's own draw for `(seed, epoch, index)`), resized and centre-cropped to 64x64. The
methods are interleaved over `--rounds`; each round loads every video once per method, and the table gives the median
items per second over rounds with their range, and the ratio to imageio.

    python benchmarks/benchmark_video_decoding.py
    python benchmarks/benchmark_video_decoding.py --videos 4 --size 640x360 --rounds 3
    python benchmarks/benchmark_video_decoding.py --keyint 30
"""

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import torch

from diffusers_videolatent.training.video_folder import VideoFolderDataset, resize_and_center_crop


def write_folder(root: Path, videos: int, seconds: float, size: str, keyint: int) -> None:
    for index in range(videos):
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi"]
        command += ["-i", f"testsrc2=size={size}:rate=30:duration={seconds}", "-c:v", "libx264", "-pix_fmt", "yuv420p"]
        command += ["-g", str(keyint)]
        # a different stretch of the pattern per video
        command += ["-vf", f"hue=h={index * 37}", str(root / f"video_{index}.mp4")]
        subprocess.run(command, check=True)
    rows = [json.dumps({"file_name": f"video_{index}.mp4", "text": f"video {index}"}) for index in range(videos)]
    (root / "metadata.jsonl").write_text("\n".join(rows) + "\n")


def load_with_imiter(dataset: VideoFolderDataset, index: int) -> torch.Tensor:
    """The item as the dataset loaded it before: every frame from 0 through the clip's last, via imageio."""
    video = dataset.videos[index]
    num_frames, height, width = dataset.item_buckets[index]
    generator = np.random.default_rng((dataset.seed, dataset.epoch, index))
    start = int(generator.integers(0, video.probe.num_frames - num_frames + 1))
    frames = []
    for frame_index, frame in enumerate(iio.imiter(video.path)):
        if frame_index >= start + num_frames:
            break
        if frame_index >= start:
            frames.append(frame)
    clip = torch.from_numpy(np.stack(frames)[..., :3].astype(np.float32) / 127.5 - 1.0)
    return resize_and_center_crop(clip.permute(0, 3, 1, 2), height, width).permute(1, 0, 2, 3)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--size", default="256x144", help="WIDTHxHEIGHT of the videos.")
    parser.add_argument("--keyint", type=int, default=250, help="Key-frame interval (x264's default: 250).")
    parser.add_argument("--num_frames", type=int, default=17)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_folder(root, args.videos, args.seconds, args.size, args.keyint)
        dataset = VideoFolderDataset(str(root), num_frames=args.num_frames, height=64, width=64, seed=0)
        methods = {
            "imageio imiter from frame 0": lambda index: load_with_imiter(dataset, index),
            f"VideoFolderDataset ({dataset.decoder}, seeking)": lambda index: dataset[index]["pixel_values"],
        }
        # the same clips for both: check once, then time
        for index in range(len(dataset)):
            torch.testing.assert_close(*[load(index) for load in methods.values()], atol=0.05, rtol=0)
        rates = {name: [] for name in methods}
        for round_index in range(args.rounds):
            dataset.set_epoch(round_index)
            for name, load in methods.items():
                begin = time.perf_counter()
                for index in range(len(dataset)):
                    load(index)
                rates[name].append(len(dataset) / (time.perf_counter() - begin))

    print(
        f"{args.videos} videos of {args.seconds:g} s at {args.size}, 30 fps, H.264 (key frame every {args.keyint} "
        f"frames); "
        f"{args.num_frames} frames at 64x64 per item; {args.rounds} rounds"
    )
    print("| decoder | items/s, median | range | ratio to imageio |")
    print("| --- | --- | --- | --- |")
    reference = statistics.median(next(iter(rates.values())))
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} | {min(values):.1f}-{max(values):.1f} | {median / reference:.2f} |")


if __name__ == "__main__":
    main()
