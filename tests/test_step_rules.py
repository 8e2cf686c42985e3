"""The step rules (docs/methods.md), at settings where their plausible alternatives disagree: Enhance-A-Video's
window is inclusive at both ends on ``i / num_steps`` (zero-based ``i``), ByTheWay's active steps are the first
``round(fraction * num_steps)`` with Python's (half-to-even) rounding."""

from __future__ import annotations

import numpy as np
import pytest

from vboost.backbones import AnimateDiffBackbone, CogVideoXBackbone
from vboost.methods import ByTheWay, EnhanceAVideo
from vboost.methods._steps import StepTracker

PROMPT = "a cat walks on the beach"


@pytest.mark.parametrize(
    ("num_steps", "start", "end", "active"),
    [
        (4, 0.25, 0.5, {1, 2}),  # an exclusive end gives {1}, an exclusive start {2}, (i + 1) / N gives {0, 1}
        (5, 0.0, 0.4, {0, 1, 2}),  # 2 / 5 = 0.4 is inside
        (3, 0.0, 1.0, {0, 1, 2}),
        (8, 0.9, 1.0, set()),  # 7 / 8 = 0.875: none
    ],
)
def test_the_window_is_inclusive_on_i_over_n(num_steps, start, end, active):
    tracker = StepTracker(num_steps=num_steps)
    found = set()
    for i in range(num_steps):
        tracker.step_index = i
        if tracker.in_window(start, end):
            found.add(i)
    assert found == active


@pytest.mark.parametrize(
    ("num_steps", "fraction", "active"),
    [
        (8, 0.2, 2),  # round(1.6) = 2; int() gives 1
        (3, 0.2, 1),  # round(0.6) = 1; int() gives 0
        (10, 0.25, 2),  # round(2.5) = 2 (half to even); floor(x + 0.5) gives 3
        (10, 0.35, 4),  # round(3.5) = 4
        (2, 0.2, 0),
    ],
)
def test_the_first_fraction_of_the_steps_rounds_half_to_even(num_steps, fraction, active):
    tracker = StepTracker(num_steps=num_steps)
    count = 0
    for i in range(num_steps):
        tracker.step_index = i
        count += tracker.in_first(fraction)
    assert count == active


def test_enhance_a_video_acts_on_exactly_the_window_steps_of_a_real_generation():
    backbone = CogVideoXBackbone.tiny(seed=0)
    with EnhanceAVideo(weight=4.0, start=0.25, end=0.5).attached(backbone.pipe) as handle:
        backbone.generate(PROMPT, 0, steps=4)
    assert {r["step"] for r in handle.records} == {1, 2}
    assert {r["num_steps"] for r in handle.records} == {4}


def test_bytheway_acts_on_exactly_the_first_round_fraction_steps_of_a_real_generation():
    backbone = AnimateDiffBackbone.tiny(seed=0)
    with ByTheWay(alpha=0.6, beta=1.5, tau=7).attached(backbone.pipe) as handle:  # active_fraction 0.2 of 8 steps
        frames = backbone.generate(PROMPT, 0, steps=8).frames
    assert {r["step"] for r in handle.records} == {0, 1}
    assert np.isfinite(frames).all()
