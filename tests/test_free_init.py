"""FreeInit through diffusers' pipeline hooks: extra sampling passes, changed clips, exact detach."""

from __future__ import annotations

import numpy as np
import pytest

from vboost.backbones.animatediff import AnimateDiffBackbone
from vboost.methods.base import UnsupportedModelError
from vboost.methods.free_init import FreeInit

STEPS = 3


@pytest.fixture(scope="module")
def backbone() -> AnimateDiffBackbone:
    return AnimateDiffBackbone.tiny(seed=0)


def generate_counting_denoiser_calls(backbone: AnimateDiffBackbone) -> tuple[np.ndarray, int]:
    calls = []
    hook = backbone.pipe.unet.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        frames = backbone.generate("a dog runs on a beach", 5, num_frames=4, height=32, width=32, steps=STEPS).frames
    finally:
        hook.remove()
    return frames, len(calls)


@pytest.fixture(scope="module")
def plain(backbone) -> np.ndarray:
    frames, calls = generate_counting_denoiser_calls(backbone)
    assert calls == STEPS
    return frames


def test_runs_num_iters_passes_changes_the_clip_and_detach_restores(backbone, plain):
    with FreeInit(num_iters=3).attached(backbone.pipe):
        frames, calls = generate_counting_denoiser_calls(backbone)
    assert calls == 3 * STEPS
    assert not np.array_equal(frames, plain)
    frames, calls = generate_counting_denoiser_calls(backbone)
    assert calls == STEPS
    np.testing.assert_array_equal(frames, plain)


def test_fast_sampling_grows_the_step_count_per_pass(backbone):
    with FreeInit(num_iters=3, use_fast_sampling=True).attached(backbone.pipe):
        _, calls = generate_counting_denoiser_calls(backbone)
    # Pass i runs max(1, int(steps / iters * (i + 1))) steps.
    assert calls == sum(max(1, int(STEPS / 3 * (i + 1))) for i in range(3))


def test_detach_restores_a_setting_the_user_had_enabled(backbone, plain):
    backbone.pipe.enable_free_init(num_iters=2, method="gaussian")
    try:
        with FreeInit(num_iters=3).attached(backbone.pipe):
            _, calls = generate_counting_denoiser_calls(backbone)
            assert calls == 3 * STEPS
        _, calls = generate_counting_denoiser_calls(backbone)
        assert calls == 2 * STEPS
        assert backbone.pipe._free_init_method == "gaussian"
    finally:
        backbone.pipe.disable_free_init()


def test_a_bare_denoiser_is_refused(backbone):
    with pytest.raises(UnsupportedModelError, match="attaches to the pipeline, not to a bare UNetMotionModel"):
        FreeInit().attach(backbone.pipe.unet)


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"num_iters": 0}, "num_iters must be an int >= 1; got 0"),
        ({"use_fast_sampling": 1}, "use_fast_sampling must be a bool; got 1"),
        ({"method": "box"}, "method must be one of butterworth, gaussian, ideal; got 'box'"),
        ({"order": 0}, "order must be an int >= 1; got 0"),
        ({"spatial_stop_frequency": 1.5}, r"spatial_stop_frequency must be in \[0, 1\]; got 1.5"),
        ({"temporal_stop_frequency": -0.1}, r"temporal_stop_frequency must be in \[0, 1\]; got -0.1"),
    ],
)
def test_bad_knobs_name_the_value(knobs, message):
    with pytest.raises(ValueError, match=message):
        FreeInit(**knobs)
