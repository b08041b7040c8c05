import numpy as np
import pytest
import torch
from scipy import ndimage

from diffusers_videolatent.training.evaluate import (
    analyze_video,
    centroid_path_jitter,
    first_frame_psnr,
    format_comparison_table,
    format_table,
    object_coverage,
    object_size,
    render_evaluation_videos,
    score_videos,
    segment_object,
    temporal_flickering_score,
)
from diffusers_videolatent.training.moving_shapes import (
    ALL_COMBINATIONS,
    HELDOUT_COMBINATIONS,
    OBJECT_HALF_EXTENT_RANGE,
    MovingShapesDataset,
    make_caption,
    render_moving_shape,
    render_physical_moving_shape,
)


def _dataset_samples(split, num_videos, num_frames, size, seed):
    dataset = MovingShapesDataset(split, num_videos, num_frames, size, size, seed=seed)
    samples = []
    for index in range(len(dataset)):
        item = dataset[index]
        frames = ((item["pixel_values"].permute(1, 2, 3, 0) + 1) * 127.5).round().to(torch.uint8).numpy()
        samples.append((item["text"], frames))  # (F, H, W, 3) uint8
    return samples


def test_ground_truth_scores_perfectly_at_64(capsys):
    # every combination once (66 seen, 6 held out), as rendered by the dataset and quantised to uint8
    samples = _dataset_samples("all", len(ALL_COMBINATIONS), num_frames=17, size=64, seed=11)
    scores = score_videos(samples)
    for split, count in (("seen", 66), ("heldout", 6), ("all", 72)):
        assert scores[split]["num_videos"] == count
        for attribute in ("color", "shape", "direction", "all_three", "presence"):
            assert scores[split][attribute] == 1.0, (split, attribute)
        # a rigid object: consecutive masks coincide once aligned, and its area does not change
        assert scores[split]["aligned_iou"] > 0.95
        assert scores[split]["area_variation"] < 0.05
    printed = capsys.readouterr().out
    assert "| seen | 66 | 100.0% | 100.0% | 100.0% | 100.0% |" in printed
    assert "| heldout | 6 | 100.0% | 100.0% | 100.0% | 100.0% |" in printed


def test_ground_truth_at_32_pixels_and_float_input():
    samples = _dataset_samples("all", 2 * len(ALL_COMBINATIONS), num_frames=9, size=32, seed=5)
    samples = [(prompt, frames.astype(np.float32) / 255) for prompt, frames in samples]
    scores = score_videos(samples, print_table=False)
    assert scores["all"]["color"] == 1.0
    assert scores["all"]["direction"] == 1.0
    # small circles pixelise towards squares: 2 of these 144 circles/squares/triangles are misread
    assert scores["all"]["shape"] >= 0.97


def test_wrong_videos_are_scored_wrong():
    generator = np.random.default_rng(0)
    red_circle_right = render_moving_shape("red", "circle", "right", 17, 64, 64, generator=generator)
    scores = score_videos(
        [
            ("a blue circle moving right", red_circle_right),
            ("a red square moving right", red_circle_right),
            ("a red circle moving left", red_circle_right),
            ("a red circle moving right", red_circle_right),
        ],
        print_table=False,
    )
    found = [(record["color"], record["shape"], record["direction"]) for record in scores["videos"]]
    assert found == [(False, True, True), (True, False, True), (True, True, False), (True, True, True)]
    # the record keeps what read the shape: a circle fills about pi / 4 of its bounding box, under the 0.89 of a square
    assert all(0.7 < record["fill_ratio"] < 0.85 for record in scores["videos"])
    assert scores["all"]["all_three"] == 0.25
    assert scores["heldout"]["num_videos"] == 0
    assert "| heldout | 0 | - |" in format_table(scores)


def test_static_dark_and_flickering_videos():
    # a shape that does not move is "static"
    still = np.repeat(render_moving_shape("green", "square", "up", 1, 64, 64), 17, axis=0)
    assert analyze_video(still).direction == "static"
    # an all-black video has no object at all
    black = np.zeros((17, 64, 64, 3), dtype=np.uint8)
    analysis = analyze_video(black)
    assert analysis.color is None and analysis.shape is None and analysis.presence == 0.0
    # an object that vanishes every other frame is unstable
    flicker = render_moving_shape("white", "circle", "down", 17, 64, 64)
    flicker[1::2] = 0
    analysis = analyze_video(flicker)
    assert analysis.presence == pytest.approx(9 / 17)
    assert analysis.aligned_iou == 0.0


def test_segmentation_ignores_small_specks():
    video = render_moving_shape("yellow", "triangle", "left", 5, 64, 64)
    video[:, 0:2, 0:2] = 1.0  # a bright 2x2 speck in a corner
    masks = segment_object(video)
    assert not masks[:, 0:2, 0:2].any()
    assert analyze_video(video).shape == "triangle"


def test_bad_input():
    with pytest.raises(ValueError, match="not of the form"):
        score_videos([("a dog running", np.zeros((3, 8, 8, 3), dtype=np.uint8))], print_table=False)
    with pytest.raises(ValueError, match="frames"):
        analyze_video(np.zeros((8, 8, 3)))
    with pytest.raises(TypeError, match="dtype"):
        analyze_video(np.zeros((2, 8, 8, 3), dtype=np.int64))
    assert make_caption(*HELDOUT_COMBINATIONS[0]) == "a red triangle moving up"


def _white_square_video(top_left: list[tuple[int, int]], side: int = 8, size: int = 64) -> np.ndarray:
    # one white square per frame, its top-left corner at (row, column) whole pixels, so centroids are exact
    video = np.zeros((len(top_left), size, size, 3), dtype=np.uint8)
    for index, (row, column) in enumerate(top_left):
        video[index, row : row + side, column : column + side] = 255
    return video


def test_temporal_flickering_score_known_videos():
    still = np.repeat(render_moving_shape("green", "square", "up", 1, 64, 64), 9, axis=0)
    assert temporal_flickering_score(still) == 1.0
    alternating = np.zeros((6, 16, 16, 3), dtype=np.uint8)
    alternating[1::2] = 255
    assert temporal_flickering_score(alternating) == 0.0
    # black, grey 51, black: both consecutive pairs differ by 51 at every pixel
    grey = np.zeros((3, 16, 16, 3), dtype=np.uint8)
    grey[1] = 51
    assert temporal_flickering_score(grey) == pytest.approx((255 - 51) / 255)
    # float frames are quantised as a saved video is: 0.2 * 255 = 51
    assert temporal_flickering_score(grey.astype(np.float32) / 255) == pytest.approx((255 - 51) / 255)
    # a half-white pair then an identical pair: mean of 127.5 and 0
    half = np.zeros((3, 16, 16, 3), dtype=np.uint8)
    half[1:, :, :8] = 255
    assert temporal_flickering_score(half) == pytest.approx((255 - 127.5 / 2) / 255)
    with pytest.raises(ValueError, match="at least 2 frames"):
        temporal_flickering_score(grey[:1])


def test_centroid_jitter_and_area_cv_known_paths():
    # a straight path at constant speed (3 px right, 1 px down per frame): no jitter, constant area
    straight = _white_square_video([(10 + index, 4 + 3 * index) for index in range(9)])
    analysis = analyze_video(straight)
    assert analysis.centroid_jitter == pytest.approx(0.0, abs=1e-9)
    assert analysis.area_variation == 0.0
    assert analysis.direction == "right"
    # a zig-zag: 2 px right per frame, rows 20, 24, 20, 24, 20. The least-squares line through the rows is flat at
    # 21.6 (the rows are symmetric in time), so the residuals are -1.6, 2.4, -1.6, 2.4, -1.6: RMS 4 * sqrt(6) / 5
    zigzag = _white_square_video([(20 + 4 * (index % 2), 10 + 2 * index) for index in range(5)])
    assert analyze_video(zigzag).centroid_jitter == pytest.approx(4 * np.sqrt(6) / 5)
    assert centroid_path_jitter(np.arange(5), 2.0 * np.arange(5), 20 + 4.0 * (np.arange(5) % 2)) == pytest.approx(
        4 * np.sqrt(6) / 5
    )
    # sides 8 and 6 in turn: areas 64, 36, 64, 36: CV = std / mean = 14 / 50
    growing = np.zeros((4, 64, 64, 3), dtype=np.uint8)
    for index in range(4):
        side = 8 if index % 2 == 0 else 6
        growing[index, 20 : 20 + side, 20 + 4 * index : 20 + 4 * index + side] = 255
    assert analyze_video(growing).area_variation == pytest.approx(14 / 50)
    # white on black: every object pixel is fully covered, so the summed coverage is the area
    assert analyze_video(growing).coverage_variation == pytest.approx(14 / 50)


def _disc_video(radius: float, centres: list[tuple[float, float]], size: int = 32) -> np.ndarray:
    # a yellow disc anti-aliased as the moving-shapes world draws it: each pixel its colour times the fraction of 8x8
    # sample points inside the disc
    offsets = (np.arange(size * 8) + 0.5) / 8
    rows, columns = np.meshgrid(offsets, offsets, indexing="ij")
    coverage = [
        ((rows - y) ** 2 + (columns - x) ** 2 <= radius**2).reshape(size, 8, size, 8).mean((1, 3)) for y, x in centres
    ]
    return np.stack(coverage)[..., None] * np.asarray([1.0, 1.0, 0.0])


def test_coverage_cv_resolves_a_rigid_object_between_pixels_and_sees_it_grow():
    # a disc of radius 3.3 px glides 0.3 px a frame: its half-brightness mask steps between 32 and 36 pixels, while
    # its summed coverage stays at its area (pi * 3.3^2 = 34.2 px, to the 8x8 sampling)
    gliding = _disc_video(3.3, [(16.0, 10 + 0.3 * index) for index in range(12)])
    analysis = analyze_video(gliding)
    assert analysis.area_variation > 0.04
    assert analysis.coverage_variation < 0.003
    coverages = object_coverage(gliding, segment_object(gliding))
    np.testing.assert_allclose(coverages, np.pi * 3.3**2, rtol=0.005)
    assert analysis.coverages == tuple(coverages)
    # the same on a grey background (subtracted) and saved as uint8
    on_grey = ((0.2 + 0.8 * gliding) * 255).round().astype(np.uint8)
    np.testing.assert_allclose(object_coverage(on_grey, segment_object(on_grey)), coverages, rtol=0.01)
    # every other frame blurred (Gaussian, 1 px): the mask loses its edge pixels, the summed coverage barely moves
    blurred = gliding.copy()
    blurred[1::2] = ndimage.gaussian_filter(gliding[1::2], sigma=(0, 1, 1, 0))
    assert analyze_video(blurred).area_variation > 0.06
    assert analyze_video(blurred).coverage_variation < 0.015
    # every other frame 10% wider: areas a and 1.21 a, CV 0.21 / 2.21
    growing = gliding.copy()
    growing[::2] = _disc_video(3.3 * 1.1, [(16.0, 10 + 0.3 * index) for index in range(0, 12, 2)])
    assert analyze_video(growing).coverage_variation == pytest.approx(0.21 / 2.21, rel=0.03)
    # a frame without an object has no coverage; masks must match the frames
    assert object_coverage(gliding, np.zeros(gliding.shape[:3], dtype=bool)).tolist() == [0.0] * 12
    with pytest.raises(ValueError, match="masks"):
        object_coverage(gliding, segment_object(gliding)[:, :16])


def test_first_frame_psnr_and_image_to_video_records():
    video = render_moving_shape("blue", "square", "down", 5, 64, 64, generator=np.random.default_rng(0))
    image = np.clip(video[0] + 0.1, 0.0, 1.0)
    # the video's first frame is 0.1 below the image wherever the image is not clipped at 1
    expected_mse = np.mean((video[0] - image) ** 2)
    assert first_frame_psnr(video, image) == pytest.approx(10 * np.log10(1 / expected_mse))
    assert first_frame_psnr(video, video[0]) == float("inf")
    with pytest.raises(ValueError, match="image"):
        first_frame_psnr(video, video[0, :32])

    samples = [("a blue square moving down", video), ("a blue square moving down", video)]
    scores = score_videos(samples, print_table=False, images=[image, video[0]])
    assert [record["first_frame_psnr"] for record in scores["videos"]] == [first_frame_psnr(video, image), np.inf]
    assert "frame-0 PSNR (dB)" in format_table(scores)
    with pytest.raises(ValueError, match="images"):
        score_videos(samples, print_table=False, images=[image])


def test_ground_truth_temporal_measures_and_comparison_table():
    samples = render_evaluation_videos(videos_per_combination=1, num_frames=17)
    assert len(samples) == len(ALL_COMBINATIONS) and samples[0][1].dtype == np.uint8
    # unseen videos: not those of the training dataset (seed 0)
    training_first = _dataset_samples("all", 1, num_frames=17, size=64, seed=0)[0][1]
    assert not np.array_equal(samples[0][1], training_first)
    scores = score_videos(samples, print_table=False)
    summary = scores["all"]
    assert summary["color"] == summary["direction"] == 1.0
    # rendered objects are rigid, anti-aliased, and glide along a straight line at constant speed
    assert summary["area_variation"] < 0.03
    # and their summed coverage is the same in every frame, to the renderer's 4x4 sampling
    assert max(record["coverage_variation"] for record in scores["videos"]) < 0.015
    assert summary["centroid_jitter"] < 0.15
    # a small object on black moving about 2 px a frame changes few pixels
    assert 0.97 < summary["flicker_score"] < 1.0
    table = format_comparison_table({"ground truth": scores, "again": scores}, split="seen")
    assert table.splitlines()[2].startswith("| ground truth | 66 | 100.0% |")
    assert len(table.splitlines()) == 4
    with_images = score_videos(samples[:2], print_table=False, images=[video[0] for _, video in samples[:2]])
    rows = format_comparison_table({"ground truth": scores, "image-to-video": with_images}).splitlines()
    assert rows[2].endswith("| 0.00 | " + f"{summary['flicker_score']:.4f} | - |")
    assert rows[3].endswith("| inf |")


def test_long_video_analysis_compares_the_first_and_last_seconds():
    from diffusers_videolatent.training.evaluate import analyze_long_video

    steady = render_moving_shape("red", "circle", "right", num_frames=33, generator=np.random.default_rng(0))
    result = analyze_long_video(steady, fps=8)
    assert (result["whole"].color, result["whole"].shape, result["whole"].direction) == ("red", "circle", "right")
    assert result["first_second"].color == result["last_second"].color == "red"
    assert result["speed_first_second"] > 0.5 and abs(result["speed_ratio"] - 1) < 0.01
    # a colour that drifts and an object that stops in the last second
    drifting = steady.copy()
    drifting[-8:] = drifting[-8:][..., [2, 1, 0]]  # red -> blue
    drifting[-8:] = drifting[-8]
    result = analyze_long_video(drifting, fps=8)
    assert result["last_second"].color == "blue" and result["speed_ratio"] < 0.05
    with pytest.raises(ValueError, match="`fps` must be >= 2"):
        analyze_long_video(steady, fps=20)


@pytest.mark.parametrize("shape", ["circle", "square", "triangle"])
@pytest.mark.parametrize("height, width", [(64, 64), (64, 128), (128, 64)])
def test_object_size_reads_back_the_worlds_size_draw(shape, height, width):
    # the physical world's first draw is the half extent, a fraction of the frame's shorter side
    drawn = np.random.default_rng(5).uniform(*OBJECT_HALF_EXTENT_RANGE)
    video = render_physical_moving_shape("red", shape, "right", 9, height, width, 8, np.random.default_rng(5))
    record = score_videos([(f"a red {shape} moving right", video)], print_table=False)["videos"][0]
    assert record["object_size"] == pytest.approx(drawn, rel=0.01)
    assert record["object_size_in_range"]


def test_object_size_outside_the_worlds_range():
    # a disc of radius 3.3 px in a 32 px frame: 0.103 of the shorter side, under the world's 0.12
    disc = _disc_video(3.3, [(16.0, 8 + index) for index in range(9)])
    assert object_size(object_coverage(disc, segment_object(disc)), "circle", 32) == pytest.approx(3.3 / 32, rel=0.005)
    record = score_videos([("a yellow circle moving right", disc)], print_table=False)["videos"][0]
    assert not record["object_size_in_range"]
    # read as a square of the same area it is smaller: sqrt(pi / 4) of the radius
    assert object_size([np.pi * 3.3**2] * 3, "square", 32) == pytest.approx(3.3 * np.sqrt(np.pi / 4) / 32)
    assert object_size([0.0, 0.0], "circle", 32) == 0.0
    with pytest.raises(ValueError, match="shape"):
        object_size([10.0], "star", 32)
