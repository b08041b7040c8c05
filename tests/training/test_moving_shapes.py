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


def _render_physical(direction="right", num_frames=17, height=64, width=64, fps=8.0, seed=0, **kwargs):
    from diffusers_videolatent.training.moving_shapes import render_physical_moving_shape

    generator = np.random.default_rng(seed)
    return render_physical_moving_shape(
        "white", "square", direction, num_frames, height, width, fps, generator, **kwargs
    )


def test_physical_world_frame_rate_spaces_the_same_path():
    # 2 seconds at 8 fps and at 16 fps: the same path, sampled twice as often, so half the motion per frame
    for seed in range(3):
        slow = _render_physical(num_frames=17, fps=8.0, seed=seed)
        fast = _render_physical(num_frames=33, fps=16.0, seed=seed)
        np.testing.assert_array_equal(slow, fast[::2])
        _, slow_centroids = _mask_and_centroids(slow)
        _, fast_centroids = _mask_and_centroids(fast)
        slow_step = np.diff(slow_centroids[:, 0]).mean()
        assert slow_step > 0
        np.testing.assert_allclose(np.diff(fast_centroids[:, 0]).mean(), slow_step / 2, rtol=0.02)


def test_physical_world_larger_frame_shows_the_same_scene():
    small = _render_physical("down", height=64, width=64, seed=5, supersampling=8)
    large = _render_physical("down", height=128, width=128, seed=5, supersampling=4)
    downsampled = large.reshape(17, 64, 2, 64, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(downsampled, small, atol=1e-5)


def test_physical_world_wide_frame_shows_more_scene():
    square = _render_physical("right", height=64, width=64, seed=2)
    wide = _render_physical("right", height=64, width=128, seed=2)
    _, square_centroids = _mask_and_centroids(square)
    _, wide_centroids = _mask_and_centroids(wide)
    # the object has the same size in pixels (it is the same size in the scene) ...
    np.testing.assert_allclose(wide[0].max(axis=-1).sum(), square[0].max(axis=-1).sum(), rtol=0.03)
    # ... and a wider view leaves room for the speeds a square view caps (the draws are the same)
    assert np.diff(wide_centroids[:, 0]).mean() >= np.diff(square_centroids[:, 0]).mean() - 1e-6


@pytest.mark.parametrize(("num_frames", "fps"), [(9, 24.0), (17, 8.0), (61, 8.0), (61, 4.0)])
@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_physical_world_moves_all_clip_long_inside_the_frame(num_frames, fps, direction):
    from diffusers_videolatent.training.moving_shapes import SPEED_RANGE

    for seed in range(3):
        video = _render_physical(direction, num_frames=num_frames, fps=fps, seed=seed)
        coverage = video.max(axis=-1)  # (F, H, W)
        grid_y, grid_x = np.mgrid[0:64, 0:64]
        centroids = (
            np.stack([(coverage * grid_x).sum(axis=(1, 2)), (coverage * grid_y).sum(axis=(1, 2))], axis=1)
            / coverage.sum(axis=(1, 2))[:, None]
        )  # (F, 2), sub-pixel
        # always whole (never cut by the border): the same covered area on every frame, up to the sampling grid
        areas = coverage.sum(axis=(1, 2))  # (F,)
        assert np.ptp(areas) <= 0.03 * areas.mean()
        step_x, step_y = DIRECTIONS[direction]
        along = centroids[:, 0] * step_x + centroids[:, 1] * step_y  # (F,) increases in the direction of motion
        steps = np.diff(along)
        assert (steps > 0).all()
        speed = steps.mean() * fps / 64  # frame sizes per second
        duration = (num_frames - 1) / fps
        # in the documented range, unless the clip is too long for the range's slowest speed to stay inside
        assert speed <= SPEED_RANGE[1] + 1e-3
        assert speed >= min(SPEED_RANGE[0], (1 - 2 * 0.17) / duration) - 1e-3


def test_physical_dataset_buckets_fps_and_reproducibility():
    buckets = [(9, 32, 32), (17, 32, 64)]
    dataset = MovingShapesDataset(num_videos=140, seed=3, buckets=buckets, fps=[4.0, 8.0, 16.0])
    assert len(dataset.item_buckets) == 140
    assert dataset.item_buckets[0] == (9, 32, 32) and dataset.item_buckets[66] == (17, 32, 64)
    assert dataset.item_buckets[132] == (9, 32, 32)
    for index in (0, 70):
        item = dataset[index]
        num_frames, height, width = dataset.item_buckets[index]
        assert item["pixel_values"].shape == (3, num_frames, height, width)
        assert item["fps"] in (4.0, 8.0, 16.0)
        again = MovingShapesDataset(num_videos=140, seed=3, buckets=buckets, fps=[4.0, 8.0, 16.0])[index]
        assert torch.equal(item["pixel_values"], again["pixel_values"]) and item["fps"] == again["fps"]
    assert {dataset[index]["fps"] for index in range(20)} == {4.0, 8.0, 16.0}
    # without the physical world: today's fixed-travel items, at the nominal frame rate
    legacy = MovingShapesDataset(num_videos=3, num_frames=5, height=32, width=32)
    assert legacy.item_buckets == [(5, 32, 32)] * 3 and legacy[0]["fps"] == 8.0
    expected = render_moving_shape(*TRAIN_COMBINATIONS[1], 5, 32, 32, generator=np.random.default_rng((0, 1)))
    np.testing.assert_array_equal(legacy[1]["pixel_values"].permute(1, 2, 3, 0).numpy(), expected * 2 - 1)
    with pytest.raises(ValueError, match="travel_fraction_range"):
        MovingShapesDataset(fps=8.0, travel_fraction_range=(0.1, 0.5))
    with pytest.raises(ValueError, match="`fps`"):
        MovingShapesDataset(fps=[8.0, -1.0])
    with pytest.raises(ValueError, match="`buckets`"):
        MovingShapesDataset(buckets=[(17, 64)])


def test_physical_world_path_num_frames_renders_the_start_of_the_longer_clip():
    for seed in range(3):
        long = _render_physical("left", num_frames=61, fps=4.0, seed=seed)
        np.testing.assert_array_equal(_render_physical("left", 1, fps=4.0, seed=seed, path_num_frames=61), long[:1])
        np.testing.assert_array_equal(_render_physical("left", 5, fps=4.0, seed=seed, path_num_frames=61), long[:5])
        # the default path is the clip's own
        np.testing.assert_array_equal(
            _render_physical("up", 9, seed=seed, path_num_frames=9), _render_physical("up", 9, seed=seed)
        )
    for bad in (4, 2.0, True):
        with pytest.raises(ValueError, match=r"`path_num_frames` must be an integer >= `num_frames` \(5\)"):
            _render_physical(num_frames=5, path_num_frames=bad)


def _edge_gaps(dataset: MovingShapesDataset, indices) -> np.ndarray:
    """The object's gap to the nearest side of the frame, in pixels, in frame 0 of the items."""
    gaps = []
    for index in indices:
        mask = dataset[index]["foreground"][0].numpy() > 0.5
        ys, xs = np.nonzero(mask)
        height, width = mask.shape
        gaps.append(min(xs.min(), ys.min(), width - 1 - xs.max(), height - 1 - ys.max()))
    return np.array(gaps)


def test_single_frame_clip_lengths_place_stills_where_long_clips_start():
    from diffusers_videolatent.training.moving_shapes import render_physical_moving_shape

    buckets = [(1, 32, 32), (9, 32, 32)]
    options = {"num_videos": 600, "seed": 4, "buckets": buckets, "fps": [4.0, 8.0]}
    placed = MovingShapesDataset(**options, single_frame_clip_lengths=[17, 61])
    anywhere = MovingShapesDataset(**options)
    stills = [index for index in range(0, 600, 3) if placed.item_buckets[index] == (1, 32, 32)]
    lengths = {placed.item_path_num_frames(index) for index in stills}
    assert lengths == {17, 61}
    for index in stills[:6]:
        # a still is the first frame of its clip, drawn from the item's own generator at the item's frame rate
        color, shape, direction = placed.combinations[index % len(placed.combinations)]
        clip = render_physical_moving_shape(
            color,
            shape,
            direction,
            placed.item_path_num_frames(index),
            32,
            32,
            placed.item_fps(index),
            np.random.default_rng((4, index)),
        )
        np.testing.assert_array_equal(placed[index]["pixel_values"].permute(1, 2, 3, 0).numpy(), clip[:1] * 2 - 1)
    # clips of the other buckets are untouched
    clip_index = next(index for index in range(600) if placed.item_buckets[index][0] == 9)
    assert torch.equal(placed[clip_index]["pixel_values"], anywhere[clip_index]["pixel_values"])
    # long clips start at the edge: stills touch the frame's side (within a pixel) far more often
    touching_placed = (_edge_gaps(placed, stills) <= 1).mean()
    touching_anywhere = (_edge_gaps(anywhere, stills) <= 1).mean()
    assert touching_placed > 2 * touching_anywhere and touching_placed > 0.3
    for bad in ([], [0], [True], [17.0]):
        with pytest.raises(ValueError, match="`single_frame_clip_lengths` must be a non-empty list of frame counts"):
            MovingShapesDataset(**options, single_frame_clip_lengths=bad)
    with pytest.raises(ValueError, match="pass `fps`, `speed_range` or `buckets`"):
        MovingShapesDataset(single_frame_clip_lengths=[17])
