import numpy as np
import pytest
import torch

from diffusers_videolatent.training.moving_shapes import (
    ALL_COMBINATIONS,
    COLORS,
    DIRECTIONS,
    HELDOUT_COMBINATIONS,
    SHAPES,
    TRAIN_COMBINATIONS,
    MovingShapesDataset,
    get_combinations,
    make_caption,
    parse_caption,
    render_moving_shape,
)


def _mask_and_centroids(video):
    mask = video.max(axis=-1) > 0.5  # (F, H, W)
    grid_y, grid_x = np.mgrid[0 : video.shape[1], 0 : video.shape[2]]
    centroids = np.asarray([(grid_x[frame].mean(), grid_y[frame].mean()) for frame in mask])  # (F, 2)
    return mask, centroids


def test_item_layout_range_and_caption():
    dataset = MovingShapesDataset(split="train", num_videos=10, num_frames=17, height=64, width=64, seed=0)
    item = dataset[3]
    assert item["pixel_values"].shape == (3, 17, 64, 64)
    assert item["pixel_values"].dtype == torch.float32
    assert item["pixel_values"].min().item() == -1.0
    assert item["pixel_values"].max().item() == 1.0
    color, shape, direction = TRAIN_COMBINATIONS[3]
    assert item["text"] == f"a {color} {shape} moving {direction}"
    assert (item["color"], item["shape"], item["direction"]) == (color, shape, direction)
    # the object is drawn in its colour: the channels of its brightest pixel are the colour's channels
    video = (item["pixel_values"].permute(1, 2, 3, 0).numpy() + 1) / 2
    brightest = video.reshape(-1, 3)[video.reshape(-1, 3).sum(axis=1).argmax()]
    np.testing.assert_allclose(brightest, COLORS[color], atol=1e-6)


def test_seeded_and_deterministic():
    first = MovingShapesDataset(num_videos=5, num_frames=5, height=32, width=32, seed=7)
    second = MovingShapesDataset(num_videos=5, num_frames=5, height=32, width=32, seed=7)
    other = MovingShapesDataset(num_videos=5, num_frames=5, height=32, width=32, seed=8)
    assert torch.equal(first[2]["pixel_values"], second[2]["pixel_values"])
    assert torch.equal(first[2]["pixel_values"], first[2]["pixel_values"])
    assert not torch.equal(first[2]["pixel_values"], other[2]["pixel_values"])
    assert torch.equal(first[-1]["pixel_values"], first[4]["pixel_values"])
    with pytest.raises(IndexError):
        first[5]


@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_motion_crosses_half_the_frame_and_stays_inside(direction):
    for seed in range(4):
        video = render_moving_shape(
            "white", "square", direction, num_frames=17, height=64, width=64, generator=np.random.default_rng(seed)
        )
        mask, centroids = _mask_and_centroids(video)
        assert mask.any(axis=(1, 2)).all()
        # never touches the border: the whole object is in every frame
        assert not mask[:, 0, :].any() and not mask[:, -1, :].any()
        assert not mask[:, :, 0].any() and not mask[:, :, -1].any()
        displacement = centroids[-1] - centroids[0]
        np.testing.assert_allclose(displacement, np.asarray(DIRECTIONS[direction]) * 32.0, atol=0.5)
        # constant speed
        steps = np.diff(centroids, axis=0)  # (F - 1, 2)
        np.testing.assert_allclose(
            steps, np.broadcast_to(np.asarray(DIRECTIONS[direction]) * 2.0, steps.shape), atol=0.5
        )


def test_shapes_fill_their_bounding_box_as_expected():
    expected = {"circle": np.pi / 4, "square": 1.0, "triangle": 0.5}
    for shape in SHAPES:
        # seeded sizes and positions: the ratio depends on where the edges fall within their pixels
        for seed in range(20):
            generator = np.random.default_rng(seed)
            video = render_moving_shape(
                "red", shape, "right", num_frames=3, height=128, width=128, generator=generator
            )
            coverage = video[0, ..., 0]  # (H, W), exact area coverage thanks to supersampling
            # the box measured with sub-pixel accuracy: its width is the widest row's coverage, its height the
            # tallest column's (a thresholded mask's box is off by up to a pixel per side, ~7% of this box's area)
            box_area = coverage.sum(axis=1).max() * coverage.sum(axis=0).max()
            assert abs(coverage.sum() / box_area - expected[shape]) < 0.04, (shape, seed)


def test_splits_and_heldout_design():
    assert len(ALL_COMBINATIONS) == 72
    assert len(HELDOUT_COMBINATIONS) == 6
    assert len(TRAIN_COMBINATIONS) == 66
    assert set(TRAIN_COMBINATIONS) | set(HELDOUT_COMBINATIONS) == set(ALL_COMBINATIONS)
    assert not set(TRAIN_COMBINATIONS) & set(HELDOUT_COMBINATIONS)
    assert get_combinations("all") == ALL_COMBINATIONS
    # every attribute and every pair of attributes of a held-out combination is seen in training
    for color, shape, direction in HELDOUT_COMBINATIONS:
        assert any(c == color and s == shape for c, s, _ in TRAIN_COMBINATIONS)
        assert any(c == color and d == direction for c, _, d in TRAIN_COMBINATIONS)
        assert any(s == shape and d == direction for _, s, d in TRAIN_COMBINATIONS)
    heldout = MovingShapesDataset(split="heldout", num_videos=12, num_frames=3, height=16, width=16)
    assert {(heldout[i]["color"], heldout[i]["shape"], heldout[i]["direction"]) for i in range(12)} == set(
        HELDOUT_COMBINATIONS
    )
    train = MovingShapesDataset(split="train", num_frames=3, height=16, width=16)
    assert len(train) == 16 * 66
    assert all(
        tuple(train[i][key] for key in ("color", "shape", "direction")) in TRAIN_COMBINATIONS for i in range(66)
    )


def test_caption_round_trip():
    for combination in ALL_COMBINATIONS:
        assert parse_caption(make_caption(*combination)) == combination
    assert parse_caption("  A Red circle moving LEFT. ") == ("red", "circle", "left")
    assert parse_caption("an orange circle moving left") is None
    assert parse_caption("a red circle") is None


def test_travel_fraction_sets_the_speed():
    generator_seed = 3
    for travel_fraction, speed in ((0.0, 0.0), (0.25, 1.0), (0.6, 2.4)):
        video = render_moving_shape(
            "white",
            "circle",
            "right",
            num_frames=17,
            height=64,
            width=64,
            generator=np.random.default_rng(generator_seed),
            travel_fraction=travel_fraction,
        )
        _, centroids = _mask_and_centroids(video)
        np.testing.assert_allclose(np.diff(centroids[:, 0]), speed, atol=0.5)
        np.testing.assert_allclose(np.diff(centroids[:, 1]), 0.0, atol=0.1)
    # the default travel is the dataset's usual one
    default = render_moving_shape("red", "square", "up", generator=np.random.default_rng(1))
    explicit = render_moving_shape("red", "square", "up", generator=np.random.default_rng(1), travel_fraction=0.5)
    np.testing.assert_array_equal(default, explicit)


def test_dataset_travel_fraction_range_draws_many_speeds():
    fixed = MovingShapesDataset(num_videos=12, num_frames=9, height=32, width=32, seed=0)
    varied = MovingShapesDataset(
        num_videos=12, num_frames=9, height=32, width=32, seed=0, travel_fraction_range=(0.0, 0.6)
    )
    again = MovingShapesDataset(
        num_videos=12, num_frames=9, height=32, width=32, seed=0, travel_fraction_range=(0.0, 0.6)
    )
    travels = []
    for index in range(12):
        assert varied[index]["text"] == fixed[index]["text"]
        assert torch.equal(varied[index]["pixel_values"], again[index]["pixel_values"])
        video = (varied[index]["pixel_values"].permute(1, 2, 3, 0).numpy() + 1) / 2
        _, centroids = _mask_and_centroids(video)
        travels.append(np.abs(centroids[-1] - centroids[0]).max() / 32)
    assert 0.0 <= min(travels) and max(travels) <= 0.6 + 0.05
    assert max(travels) - min(travels) > 0.2
    # a range of a single value is the fixed travel
    single = MovingShapesDataset(num_videos=3, num_frames=9, height=32, width=32, travel_fraction_range=(0.5, 0.5))
    assert torch.equal(single[2]["pixel_values"], fixed[2]["pixel_values"])


def test_a_subsampled_clip_is_the_clip_rendered_at_that_length():
    # what `train_video_vae --alternate_num_frames` relies on: every k-th frame of a (1 + m * k)-frame clip is the
    # same object on the same path, rendered at 1 + m frames (so k times faster per frame)
    long_clips = MovingShapesDataset(num_videos=6, num_frames=25, height=32, width=32, travel_fraction_range=(0, 0.6))
    for num_frames in (5, 7, 9, 13):
        clips = MovingShapesDataset(
            num_videos=6, num_frames=num_frames, height=32, width=32, travel_fraction_range=(0, 0.6)
        )
        for index in range(6):
            subsampled = long_clips[index]["pixel_values"][:, :: 24 // (num_frames - 1)]
            torch.testing.assert_close(subsampled, clips[index]["pixel_values"], rtol=0, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="travel_fraction"):
        render_moving_shape("red", "circle", "left", travel_fraction=0.9)
    with pytest.raises(ValueError, match="travel_fraction_range"):
        MovingShapesDataset(travel_fraction_range=(0.5, 0.1))
    with pytest.raises(ValueError, match="travel_fraction"):
        MovingShapesDataset(travel_fraction_range=(-0.1, 0.5))
    with pytest.raises(ValueError, match="split"):
        MovingShapesDataset(split="test")
    with pytest.raises(ValueError, match="num_videos"):
        MovingShapesDataset(num_videos=0)
    with pytest.raises(ValueError, match="num_frames"):
        MovingShapesDataset(num_frames=0)
    with pytest.raises(ValueError, match="height"):
        MovingShapesDataset(height=4)
    with pytest.raises(ValueError, match="color"):
        render_moving_shape("orange", "circle", "left")
