import json
import logging

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from diffusers_videolatent.training.video_folder import VideoFolderDataset, resize_and_center_crop

from ..testing_utils import ramp_video


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
    with pytest.raises(ValueError, match="1 a video shorter than `num_frames`=17"):
        VideoFolderDataset(str(tmp_path), num_frames=17)
