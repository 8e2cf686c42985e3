"""Search-space expressions -> Optuna distributions, checked against what Hydra's own sweeps would enumerate."""

import math

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from vboost.sweep.errors import ConfigError
from vboost.sweep.space import parse_search_space


def _values(distribution):
    """Every value a stepped distribution can take."""
    return list(np.arange(distribution.low, distribution.high + distribution.step / 2, distribution.step))


def test_interval_is_a_float_range_with_optional_log_scale():
    space = parse_search_space({"alpha": "interval(0, 1)", "lr": "tag(log, interval(1e-3, 1e-1))"}, latent_frames=16)
    alpha, lr = space.params
    assert alpha.distribution == FloatDistribution(0.0, 1.0)
    assert lr.distribution == FloatDistribution(1e-3, 1e-1, log=True)


@pytest.mark.parametrize("start,stop,step", [(1, 8, 1), (0, 10, 3), (2, 3, 1)])
def test_int_range_takes_the_values_of_python_range(start, stop, step):
    (param,) = parse_search_space({"tau": f"range({start}, {stop}, {step})"}, latent_frames=16).params
    assert isinstance(param.distribution, IntDistribution)
    assert [int(v) for v in _values(param.distribution)] == list(range(start, stop, step))


def test_float_range_is_end_exclusive_like_hydra():
    (param,) = parse_search_space({"beta": "range(0.5, 2.0, 0.5)"}, latent_frames=16).params
    assert np.allclose(_values(param.distribution), [0.5, 1.0, 1.5])


def test_choice_keeps_its_values():
    (param,) = parse_search_space({"variant": "choice(1, 2, 'x')"}, latent_frames=16).params
    assert param.distribution == CategoricalDistribution([1, 2, "x"])


@pytest.mark.parametrize(
    "expression",
    ["interval(1, 0)", "interval(0.5, 0.5)", "range(5, 1)", "range(0, 4, -1)", "tag(log, interval(0, 1))", "choice(1, 1)", "3", "tag(fast, interval(0, 1))", "interva(0, 1)"],
)
def test_bad_ranges_name_the_knob_and_expression(expression):
    with pytest.raises(ConfigError) as info:
        parse_search_space({"alpha": expression}, latent_frames=16)
    assert "alpha" in str(info.value) and "\n" not in str(info.value)


def test_per_frame_knob_is_sampled_divided_by_the_frame_count_and_round_trips():
    frames = 13  # CogVideoX-2B at 49 frames
    space = parse_search_space({"weight": "tag(per_frame, interval(0.02, 1.5))"}, latent_frames=frames)
    (param,) = space.params
    assert param.name == "weight_per_frame"
    study = optuna.create_study()
    study.enqueue_trial(space.to_trial_params({"weight": 3.4}))
    trial = study.ask()
    knobs = space.suggest(trial)
    assert math.isclose(trial.params["weight_per_frame"], 3.4 / frames)
    assert math.isclose(knobs["weight"], 3.4)
    # A free sample lands in the interval scaled by F.
    knobs = space.suggest(study.ask())
    assert 0.02 * frames <= knobs["weight"] <= 1.5 * frames


def test_corners_visit_every_bound_of_every_knob():
    space = parse_search_space({"a": "interval(0, 1)", "b": "range(2, 5)", "c": "choice('x', 'y')"}, latent_frames=4)
    corners = list(space.corners())
    assert {c["a"] for c in corners} == {0.0, 1.0}
    assert {c["b"] for c in corners} == {2, 4}
    assert {c["c"] for c in corners} == {"x", "y"}
