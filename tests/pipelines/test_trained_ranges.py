"""A pipeline's `generation_defaults` may record the ranges of the dials it was trained on (`trained_ranges`); a call
outside them warns, naming the range, and still runs."""

import warnings

import pytest

from diffusers_videolatent.generation_defaults import (
    check_generation_defaults,
    resolve_generation_settings,
    warn_outside_trained_ranges,
)
from diffusers_videolatent.training.buckets import trained_ranges

from ..testing_utils import build_pipeline


RANGES = {"num_frames": [5, 9], "height": [16, 32], "width": [16, 32], "fps": [4, 16]}


def test_trained_ranges_of_buckets():
    ranges = trained_ranges([(17, 64, 64), (61, 64, 64), (17, 64, 128)], [4.0, 8.0, 24.0])
    assert ranges == {"num_frames": [17, 61], "height": [64, 64], "width": [64, 128], "fps": [4.0, 24.0]}


def test_resolver_warns_outside_the_trained_range():
    defaults = {"num_frames": 5, "trained_ranges": RANGES}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_generation_settings({"fps": 8}, defaults)["num_frames"] == 5
    with pytest.warns(UserWarning, match=r"`num_frames`=17 is outside the trained range \[5, 9\]") as record:
        resolve_generation_settings({"num_frames": 17, "fps": 8}, defaults)
    assert "fps" not in str(record[0].message)
    with pytest.warns(UserWarning):
        said = warn_outside_trained_ranges({"fps": 24, "height": 64, "width": 16}, RANGES)
    assert said == [
        "`height`=64 is outside the trained range [16, 32]",
        "`fps`=24 is outside the trained range [4, 16]",
    ]


@pytest.mark.parametrize(
    "bad",
    [{"frames": [1, 2]}, {"fps": [8]}, {"fps": [16, 8]}, {"height": ["a", 2]}, [5, 9], {"fps": [1, float("inf")]}],
)
def test_bad_trained_ranges_are_refused(bad):
    with pytest.raises(ValueError, match="trained_ranges"):
        check_generation_defaults({"trained_ranges": bad})


def test_pipeline_call_outside_the_trained_range_warns_and_runs():
    pipe = build_pipeline()
    pipe.register_to_config(generation_defaults={"num_inference_steps": 2, "trained_ranges": RANGES})
    call = {"height": 16, "width": 16, "output_type": "np"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        frames = pipe("a red circle", num_frames=5, fps=8, **call).frames
    with pytest.warns(UserWarning, match=r"`fps`=24 is outside the trained range \[4, 16\]"):
        outside = pipe("a red circle", num_frames=5, fps=24, **call).frames
    assert outside.shape == frames.shape


def test_with_windows_the_window_is_checked_against_the_trained_length():
    # ratio-1 VAE: a window of 4 latent frames is 4 frames, inside [3, 9]; 2 frames are not
    from ..testing_utils import build_unet

    pipe = build_pipeline(unet=build_unet())
    ranges = {**RANGES, "num_frames": [3, 9], "height": [8, 32], "width": [8, 32]}
    pipe.register_to_config(generation_defaults={"num_inference_steps": 1, "trained_ranges": ranges})
    call = {"height": 8, "width": 8, "output_type": "latent", "num_frames": 21}
    with pytest.warns(UserWarning, match=r"`num_frames`=21 is outside the trained range \[3, 9\]"):
        pipe.resolve_generation_settings(num_frames=21)
    pipe.enable_free_noise(context_length=4, context_stride=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert pipe("a red circle", **call).frames.shape[2] == 21
    pipe.enable_free_noise(context_length=2, context_stride=1)
    with pytest.warns(UserWarning, match=r"`num_frames`=2 is outside the trained range \[3, 9\]"):
        pipe.resolve_generation_settings(num_frames=21)
