import importlib.util
import json
import logging
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import imageio.v3 as iio
import numpy as np
import pytest
import torch

from diffusers_videolatent.training.video_folder import (
    VideoFolderDataset,
    VideoProbe,
    _probe_pyav,
    _read_pyav,
    clip_times,
    nearest_bucket,
    resize_and_center_crop,
    resolve_decoder,
)

from ..testing_utils import TRAINING_VAE_CONFIG, ramp_video, read_frame_indices, write_index_video


def test_jsonl_folder_skips_bad_rows_with_counts(video_folder, caplog):
    with caplog.at_level(logging.WARNING):
        dataset = VideoFolderDataset(str(video_folder), num_frames=5, height=16, width=16, random_offset=False)
    assert len(dataset) == 2
    assert dataset.skipped == {
        "unreadable_caption": 2,
        "outside_folder": 0,
        "unreadable_video": 2,
        "too_short": 1,
        "failed_decode": 0,
    }
    assert (
        "skipped 2 row(s) with a missing or empty caption, 0 path(s) leaving the folder, 2 video(s) that"
        in caplog.text
    )
    assert "1 video(s) shorter than 5 frames; 2 of 7 remain" in caplog.text

    item = dataset[0]
    assert item["text"] == "a grey ramp"
    assert item["pixel_values"].shape == (3, 5, 16, 16)
    # the first 5 frames, greys 0, 20, ..., 80, mapped to [-1, 1]
    expected = torch.tensor([20.0 * t for t in range(5)]) / 127.5 - 1
    torch.testing.assert_close(item["pixel_values"].mean(dim=(0, 2, 3)), expected, atol=2 / 127.5, rtol=0)
    assert dataset[1]["pixel_values"].shape == (3, 5, 16, 16)
    assert dataset[1]["text"] == "an mp4 clip"


def test_random_offset_takes_consecutive_frames(video_folder):
    dataset = VideoFolderDataset(str(video_folder), num_frames=5, height=8, width=8)
    starts = set()
    for epoch in range(12):
        dataset.set_epoch(epoch)
        levels = (dataset[0]["pixel_values"].mean(dim=(0, 2, 3)) + 1) * 127.5 / 20  # frame indices
        np.testing.assert_allclose(np.diff(levels.numpy()), 1.0, atol=0.1)
        starts.add(round(levels[0].item()))
    assert starts <= {0, 1, 2, 3} and len(starts) > 1
    # the same epoch gives the same clip
    dataset.set_epoch(3)
    assert torch.equal(dataset[0]["pixel_values"], dataset[0]["pixel_values"])


def test_csv_metadata_and_center_crop(tmp_path):
    video = np.zeros((5, 20, 40, 3), dtype=np.uint8)
    for t in range(5):
        video[t, :, 10:30] = 255 - t  # a white band in the middle half of the width (frames differ: GIF merges copies)
    iio.imwrite(tmp_path / "band.gif", video, duration=100, loop=0)
    (tmp_path / "metadata.csv").write_text('file_name,text\nband.gif,"a white band, centred"\n')
    dataset = VideoFolderDataset(str(tmp_path), num_frames=5, height=10, width=10)
    item = dataset[0]
    assert item["text"] == "a white band, centred"
    # 20x40 scaled to 10x20 and centre-cropped to 10x10: only the band (x in 5..15 after scaling) remains
    assert item["pixel_values"].shape == (3, 5, 10, 10)
    # (the outermost columns are blended with the black by the anti-aliased resize)
    assert item["pixel_values"][..., 1:-1].min().item() > 0.9
    assert item["pixel_values"][..., 0].min().item() > 0.5


def test_resize_and_center_crop_shapes():
    frames = torch.arange(2 * 3 * 6 * 4, dtype=torch.float32).reshape(2, 3, 6, 4)
    assert resize_and_center_crop(frames, 6, 4) is frames or torch.equal(resize_and_center_crop(frames, 6, 4), frames)
    assert resize_and_center_crop(frames, 2, 4).shape == (2, 3, 2, 4)
    torch.testing.assert_close(resize_and_center_crop(frames, 2, 4), frames[:, :, 2:4, :])
    assert resize_and_center_crop(frames, 12, 12).shape == (2, 3, 12, 12)


def test_empty_and_unusable_folders(tmp_path):
    with pytest.raises(ValueError, match="no metadata file"):
        VideoFolderDataset(str(tmp_path))
    (tmp_path / "metadata.jsonl").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        VideoFolderDataset(str(tmp_path))
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "nothing.mp4", "text": "x"}) + "\n")
    with pytest.raises(ValueError, match="No usable video.*1 a video that cannot be read"):
        VideoFolderDataset(str(tmp_path))
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"path": "nothing.mp4", "text": "x"}) + "\n")
    with pytest.raises(ValueError, match="no column \\['file_name'\\]"):
        VideoFolderDataset(str(tmp_path))
    with pytest.raises(ValueError, match="num_frames"):
        VideoFolderDataset(str(tmp_path), num_frames=0)
    with pytest.raises(ValueError, match="existing folder"):
        VideoFolderDataset(str(tmp_path / "absent"))


def test_all_videos_too_short(tmp_path):
    iio.imwrite(tmp_path / "short.gif", ramp_video(3, 8, 8), duration=100, loop=0)
    (tmp_path / "metadata.csv").write_text("file_name,text\nshort.gif,short\n")
    with pytest.raises(ValueError, match="1 a video shorter than the shortest clip, 17 frames."):
        VideoFolderDataset(str(tmp_path), num_frames=17)


# ----------------------------------------------------------------------------------------------------------------------
# Real encoded files: codecs, sizes, frame rates, buckets, seeking
# ----------------------------------------------------------------------------------------------------------------------

# (file name, codec, frame rate, extra ffmpeg arguments, height, width)
ENCODED_VIDEOS = [
    ("h264.mp4", "libx264", 24, ("-g", "8"), 48, 64),
    ("mpeg4_tall.avi", "mpeg4", 30, ("-q:v", "2"), 64, 48),
    ("vp9_wide.webm", "libvpx-vp9", 30, (), 32, 96),
    ("mjpeg_odd_rate.mkv", "mjpeg", "25/2", (), 40, 40),
    # frame i at (i + i^2 / 40) / 24 seconds: intervals growing from 1/24 s to 2.5/24 s
    ("h264_variable_rate.mkv", "libx264", 24, ("-vf", "setpts=(N+N*N/40)/(24*TB)", "-fps_mode", "vfr"), 48, 64),
]


def played_at(path, times: list[float]) -> list[int]:
    """Reference: decode every frame from the start and take, for each time, the last frame whose timestamp is at or
    before it (give or take the 1 ms to which WebM and Matroska round timestamps)."""
    with av.open(str(path)) as container:
        stamps = [frame.time for frame in container.decode(video=0)]
    return [max(index for index, stamp in enumerate(stamps) if stamp <= time + 1e-3) for time in times]


def single_video_folder(root, name, codec, fps, extra, height, width, num_frames=30):
    root.mkdir(exist_ok=True)
    write_index_video(root / name, num_frames, height, width, fps, codec, extra)
    (root / "metadata.jsonl").write_text(json.dumps({"file_name": name, "text": name}) + "\n")
    return root


@pytest.mark.parametrize("name, codec, fps, extra, height, width", ENCODED_VIDEOS, ids=[v[0] for v in ENCODED_VIDEOS])
def test_encoded_videos_give_the_frames_played_at_the_training_rate(tmp_path, name, codec, fps, extra, height, width):
    root = single_video_folder(tmp_path / "data", name, codec, fps, extra, height, width)
    native_rate = float(Fraction(str(fps)))

    # no frame rate asked: consecutive native frames, as before
    dataset = VideoFolderDataset(str(root), num_frames=5, height=16, width=16, random_offset=False)
    item = dataset[0]
    assert item["pixel_values"].shape == (3, 5, 16, 16)
    assert read_frame_indices(item["pixel_values"]) == played_at(root / name, [k / native_rate for k in range(5)])
    if "variable" not in name:
        assert read_frame_indices(item["pixel_values"]) == [0, 1, 2, 3, 4]
        assert item["fps"] == pytest.approx(native_rate)

    # at 12 fps: the frames played at k / 12 seconds, whatever the video's own rate
    dataset = VideoFolderDataset(str(root), num_frames=7, height=24, width=16, random_offset=False, fps=12)
    item = dataset[0]
    assert item["fps"] == 12.0
    assert item["pixel_values"].shape == (3, 7, 24, 16)
    expected = played_at(root / name, [k / 12 for k in range(7)])
    assert read_frame_indices(item["pixel_values"]) == expected
    if native_rate == 24:
        assert expected[:3] == [0, 2, 4]  # the 24 fps video at 12 fps: every other frame

    # random offsets start at a source frame, differ between epochs and repeat for the same (seed, epoch, index)
    dataset = VideoFolderDataset(str(root), num_frames=7, height=8, width=8, fps=12, seed=3)
    starts = set()
    for epoch in range(6):
        dataset.set_epoch(epoch)
        indices = read_frame_indices(dataset[0]["pixel_values"])
        if "variable" not in name:
            assert indices == played_at(root / name, [indices[0] / native_rate + k / 12 for k in range(7)])
        starts.add(indices[0])
        resumed = VideoFolderDataset(str(root), num_frames=7, height=8, width=8, fps=12, seed=3)
        resumed.set_epoch(epoch)
        assert torch.equal(resumed[0]["pixel_values"], dataset[0]["pixel_values"])
    assert len(starts) > 1


def test_same_seconds_from_24_and_30_fps(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    write_index_video(root / "at24.mp4", 30, 32, 32, 24)
    write_index_video(root / "at30.mp4", 30, 32, 32, 30)
    rows = [{"file_name": "at24.mp4", "text": "24"}, {"file_name": "at30.mp4", "text": "30"}]
    (root / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    dataset = VideoFolderDataset(str(root), num_frames=5, height=8, width=8, random_offset=False, fps=8)
    # frame k at k / 8 s: source frame 3k at 24 fps, 3.75k (the one played then) at 30 fps
    assert read_frame_indices(dataset[0]["pixel_values"]) == [0, 3, 6, 9, 12]
    assert read_frame_indices(dataset[1]["pixel_values"]) == [0, 3, 7, 11, 15]


def test_videos_go_to_the_nearest_bucket_by_aspect_ratio_then_duration(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    # (name, frames, fps, height, width): seconds spanned = (frames - 1) / fps
    videos = [
        ("square_long.mp4", 30, 24, 32, 32),  # 1.21 s
        ("square_short.mp4", 10, 24, 32, 32),  # 0.375 s
        ("wide.mp4", 30, 30, 32, 64),  # 0.97 s
        ("tall.mp4", 30, 24, 64, 32),  # 1.21 s: no tall bucket, square is nearest
        ("too_short.mp4", 3, 24, 32, 32),  # 0.083 s
    ]
    for name, frames, fps, height, width in videos:
        write_index_video(root / name, frames, height, width, fps)
    (root / "metadata.csv").write_text("file_name,text\n" + "".join(f"{video[0]},x\n" for video in videos))
    buckets = [(3, 16, 16), (9, 16, 16), (5, 16, 32), (9, 16, 32)]
    dataset = VideoFolderDataset(str(root), buckets=buckets, fps=8, random_offset=False)
    # at 8 fps, 9 frames span 1 s, 5 frames 0.5 s and 3 frames 0.25 s
    assert dataset.item_buckets == [(9, 16, 16), (3, 16, 16), (5, 16, 32), (9, 16, 16)]
    assert dataset.skipped["too_short"] == 1
    for index, bucket in enumerate(dataset.item_buckets):
        assert dataset[index]["pixel_values"].shape == (3, *bucket)
    assert read_frame_indices(dataset[2]["pixel_values"]) == [0, 3, 7, 11, 15]  # 30 fps at 8 fps

    # the container's metadata is all it takes; native rates count in frames
    probe = VideoProbe(num_frames=17, fps=30.0, height=720, width=1280)
    assert nearest_bucket(probe, [(17, 64, 64), (17, 64, 112), (33, 64, 112)]) == (17, 64, 112)
    assert nearest_bucket(probe, [(9, 64, 112), (9, 256, 448), (9, 1024, 1792)]) == (9, 256, 448)  # no upscaling
    assert nearest_bucket(probe, [(9, 2048, 2048), (9, 1024, 1024)]) == (9, 1024, 1024)  # else the smallest
    assert nearest_bucket(probe, [(17, 64, 64)], fps=15.0) is None  # 16 / 15 s > 16 / 30 s
    assert nearest_bucket(probe, [(9, 64, 64)], fps=15.0) == (9, 64, 64)


def test_a_clip_late_in_a_video_is_decoded_after_a_seek(tmp_path, monkeypatch):
    path = write_index_video(tmp_path / "gop8.mp4", 30, 32, 32, 24, extra_arguments=("-g", "8", "-bf", "0"))
    decoded = []
    real_open = av.open

    class CountingContainer:
        def __init__(self, container):
            self.container = container

        def __enter__(self):
            self.container.__enter__()
            return self

        def __exit__(self, *exc_info):
            return self.container.__exit__(*exc_info)

        def __getattr__(self, name):
            return getattr(self.container, name)

        def decode(self, *args, **kwargs):
            for frame in self.container.decode(*args, **kwargs):
                decoded.append(frame.pts)
                yield frame

    monkeypatch.setattr(av, "open", lambda *args, **kwargs: CountingContainer(real_open(*args, **kwargs)))
    probe = _probe_pyav(str(path))
    times, max_start = clip_times(probe, 5, start_frame=25)
    assert max_start == 25
    frames = _read_pyav(str(path), probe, times)
    assert [round(frame.mean() / 8) for frame in frames] == [25, 26, 27, 28, 29]
    # from the last key frame at or before frame 25 (every 8 frames or sooner), not from frame 0
    with real_open(str(path)) as container:
        key_frames = [packet.pts for packet in container.demux(video=0) if packet.is_keyframe]
    first = max(pts for pts in key_frames if pts <= 25 * 512)  # 24 fps in a 1/12288 time base
    assert first >= 17 * 512
    assert decoded == list(range(first, 30 * 512, 512))


def test_decoder_choice_and_argument_checks(tmp_path, video_folder):
    assert resolve_decoder("pyav") == "pyav"
    with pytest.raises(ValueError, match="`decoder` must be one of"):
        resolve_decoder("ffmpeg")
    if importlib.util.find_spec("torchcodec") is None:
        assert resolve_decoder("auto") == "pyav"
        with pytest.raises(ImportError, match="torchcodec cannot load"):
            resolve_decoder("torchcodec")
    with pytest.raises(ValueError, match="`buckets` holds \\(17, 64\\)"):
        VideoFolderDataset(str(video_folder), buckets=[(17, 64)])
    with pytest.raises(ValueError, match="`buckets` must be a non-empty list"):
        VideoFolderDataset(str(video_folder), buckets=[])
    with pytest.raises(ValueError, match="`fps` must be a positive number"):
        VideoFolderDataset(str(video_folder), fps=0)


# ----------------------------------------------------------------------------------------------------------------------
# Training data that lies
# ----------------------------------------------------------------------------------------------------------------------


def test_paths_leaving_the_folder_are_skipped(tmp_path, caplog):
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    write_index_video(tmp_path / "outside.mp4", 6, 16, 16)
    write_index_video(root / "inside.mp4", 6, 16, 16)
    (root / "link_out.mp4").symlink_to(tmp_path / "outside.mp4")
    (root / "sub" / "link_in.mp4").symlink_to(root / "inside.mp4")
    names = ["../outside.mp4", str(tmp_path / "outside.mp4"), "link_out.mp4", "sub/../inside.mp4", "sub/link_in.mp4"]
    (root / "metadata.jsonl").write_text(
        "".join(json.dumps({"file_name": name, "text": "x"}) + "\n" for name in names)
    )
    with caplog.at_level(logging.WARNING):
        dataset = VideoFolderDataset(str(root), num_frames=5, height=8, width=8)
    assert len(dataset) == 2
    assert dataset.skipped["outside_folder"] == 3
    assert "3 path(s) leaving the folder" in caplog.text
    assert [name for name, reason in dataset.skipped_files if reason.startswith("outside_folder")] == names[:3]
    assert all(video.path == os.path.realpath(root / "inside.mp4") for video in dataset.videos)


def truncated_video(path, fraction: float = 0.6):
    """An intra-only mp4 with its index first, cut at `fraction` of its bytes: it probes as 30 frames, the first ones
    decode, the later ones are missing."""
    write_index_video(path, 30, 32, 32, 24, "mpeg4", ("-q:v", "1", "-g", "1", "-movflags", "+faststart"))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def zeroed_video(path):
    """An h264 mp4 with its index first and every byte of its frames zeroed: it probes fine (the size is in the
    index), and no frame decodes."""
    write_index_video(path, 30, 32, 32, 24, extra_arguments=("-movflags", "+faststart"))
    data = path.read_bytes()
    payload = data.index(b"mdat") + 4
    path.write_bytes(data[:payload] + bytes(len(data) - payload))
    return path


def test_a_video_failing_to_decode_mid_run_is_replaced_by_the_next_of_its_bucket(tmp_path, caplog):
    root = tmp_path / "data"
    root.mkdir()
    write_index_video(root / "good_a.mp4", 30, 32, 32, 24)
    truncated_video(root / "truncated.mp4")
    write_index_video(root / "wide.mp4", 30, 32, 64, 24)  # another bucket, passed over
    write_index_video(root / "good_b.mp4", 20, 32, 32, 24)
    rows = [(name, name.split(".")[0]) for name in ("good_a.mp4", "truncated.mp4", "wide.mp4", "good_b.mp4")]
    (root / "metadata.csv").write_text("file_name,text\n" + "".join(f"{name},{text}\n" for name, text in rows))
    buckets = [(17, 16, 16), (17, 16, 32)]

    dataset = VideoFolderDataset(str(root), buckets=buckets, seed=1)
    assert len(dataset) == 4 and dataset.skipped["failed_decode"] == 0  # the truncated video probes fine
    assert dataset.item_buckets == [(17, 16, 16), (17, 16, 16), (17, 16, 32), (17, 16, 16)]
    with caplog.at_level(logging.WARNING):
        item = dataset[1]
    assert item["text"] == "good_b" and item["pixel_values"].shape == (3, 17, 16, 16)
    assert torch.equal(item["pixel_values"], dataset[3]["pixel_values"])
    assert "truncated.mp4 failed to decode and is skipped from now on" in caplog.text
    assert dataset.skipped["failed_decode"] == 1
    dataset[1]
    assert dataset.skipped["failed_decode"] == 1  # not retried, not counted twice
    summary = dataset.skipped_summary()
    assert summary.startswith(f"{root}: skipped 1 (1 failed_decode); 3 video(s) used.")
    assert "\n  truncated.mp4: failed_decode: " in summary

    # a resumed run (a fresh process) gives the same replacement
    resumed = VideoFolderDataset(str(root), buckets=buckets, seed=1)
    assert torch.equal(resumed[1]["pixel_values"], item["pixel_values"])

    # a bucket whose every video fails stops the run
    (root / "metadata.csv").write_text("file_name,text\ntruncated.mp4,x\nwide.mp4,y\n")
    dataset = VideoFolderDataset(str(root), buckets=buckets)
    with pytest.raises(RuntimeError, match="No video of bucket \\(17, 16, 16\\)"):
        dataset[0]
    assert dataset[1]["text"] == "y"


def test_a_training_run_goes_on_past_lying_data_and_lists_it_at_the_end(tmp_path):
    """A real `train_video_vae` process on a folder with a path out of it, a symlink out of it and a video that probes
    fine but never decodes: the run finishes and its last log lists all three."""
    root = tmp_path / "data"
    root.mkdir()
    write_index_video(tmp_path / "outside.mp4", 8, 16, 16)
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        write_index_video(root / name, 8, 16, 16)
    zeroed_video(root / "broken.mp4")
    (root / "escape.mp4").symlink_to(tmp_path / "outside.mp4")
    names = ["a.mp4", "broken.mp4", "../outside.mp4", "b.mp4", "escape.mp4", "c.mp4"]
    (root / "metadata.csv").write_text("file_name,text\n" + "".join(f"{name},x\n" for name in names))
    command = [sys.executable, "-m", "diffusers_videolatent.training.train_video_vae", "--train_data_dir", str(root)]
    command += ["--vae_config", json.dumps(TRAINING_VAE_CONFIG), "--num_frames", "5", "--height", "16"]
    command += ["--width", "16", "--train_batch_size", "1", "--max_train_steps", "4", "--no_validation"]
    command += ["--output_dir", str(tmp_path / "out"), "--report_to", "jsonl"]
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    result = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "out" / "config.json").is_file()
    assert "broken.mp4 failed to decode and is skipped from now on" in result.stderr
    summary = result.stderr[result.stderr.index(f"{root}: skipped 3 ") :]
    assert summary.startswith(f"{root}: skipped 3 (2 outside_folder, 1 failed_decode); 3 video(s) used.")
    assert "\n  ../outside.mp4: outside_folder" in summary and "\n  escape.mp4: outside_folder" in summary
    assert "\n  broken.mp4: failed_decode: " in summary
