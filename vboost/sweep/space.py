"""Search spaces written as Hydra sweep expressions, turned into Optuna distributions.

The syntax is Hydra's own override grammar (parsed by Hydra, so a typo gets Hydra's message):
``interval(a, b)`` a float in ``[a, b]``; ``range(a, b[, step])`` the values Hydra's basic sweeper would visit
(end-exclusive); ``choice(a, b, ...)``; ``tag(log, ...)`` a log scale. ``tag(per_frame, ...)`` searches a knob
divided by the latent frame count F and hands the method ``value * F``: Enhance-A-Video's score is about
``1 + weight/F``, so a range of ``weight/F`` means the same strength at every clip length.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.errors import HydraException
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from vboost.sweep.errors import ConfigError

PER_FRAME = "per_frame"
DEPTH = "depth"
_KNOWN_TAGS = {"log", PER_FRAME, DEPTH}


@dataclasses.dataclass(frozen=True)
class SearchParam:
    """One searched knob: the Optuna ``name`` it is sampled under and how a sample becomes the knob's value."""

    knob: str
    distribution: BaseDistribution
    per_frame: bool = False

    @property
    def name(self) -> str:
        return f"{self.knob}_per_frame" if self.per_frame else self.knob

    def to_knob(self, sample: Any, latent_frames: int) -> Any:
        return sample * latent_frames if self.per_frame else sample

    def to_sample(self, value: Any, latent_frames: int) -> Any:
        return value / latent_frames if self.per_frame else value

    def bounds(self) -> list[Any]:
        """The extreme samples (both ends, or every choice): where a domain check must pass."""
        if isinstance(self.distribution, CategoricalDistribution):
            return list(self.distribution.choices)
        return [self.distribution.low, self.distribution.high]


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The searched knobs of one method for one backbone (``latent_frames`` resolves ``per_frame`` knobs)."""

    params: tuple[SearchParam, ...]
    latent_frames: int

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample every knob through ``trial`` (enqueued values are taken as given); returns the method's kwargs."""
        return {p.knob: p.to_knob(_suggest(trial, p.name, p.distribution), self.latent_frames) for p in self.params}

    def to_trial_params(self, knobs: Mapping[str, Any]) -> dict[str, Any]:
        """The Optuna params (sample coordinates) of the searched knobs in ``knobs``, for ``enqueue_trial``."""
        return {p.name: p.to_sample(knobs[p.knob], self.latent_frames) for p in self.params if p.knob in knobs}

    def corners(self) -> Iterator[dict[str, Any]]:
        """Knob settings that put each knob at each of its bounds, the others at their lower bound."""
        low = {p.knob: p.to_knob(p.bounds()[0], self.latent_frames) for p in self.params}
        for p in self.params:
            for bound in p.bounds():
                yield {**low, p.knob: p.to_knob(bound, self.latent_frames)}

    @property
    def knobs(self) -> set[str]:
        return {p.knob for p in self.params}


def parse_search_space(space: Mapping[str, str], latent_frames: int, num_layers: int | None = None) -> SearchSpace:
    """Parse ``{knob: expression}`` (``num_layers``: the denoiser's depth, for ``tag(depth, ...)``); raises
    :class:`ConfigError` naming the knob and expression when it is not a search range, is empty or inverted, asks for
    a log scale Optuna cannot sample, or searches a depth that is not known."""
    parser = OverridesParser.create()
    params = []
    for knob, expression in space.items():
        try:
            sweep = parser.parse_override(f"{knob}={expression}").value()
        except HydraException as err:
            raise ConfigError(f"search space {knob}={expression!r}: {_first_line(err)}") from None
        params.append(_search_param(knob, expression, sweep, num_layers))
    return SearchSpace(tuple(params), latent_frames)


def _search_param(knob: str, expression: str, sweep: Any, num_layers: int | None) -> SearchParam:
    where = f"search space {knob}={expression!r}"
    if not isinstance(sweep, (IntervalSweep, RangeSweep, ChoiceSweep)):
        raise ConfigError(f"{where} is not a search range; use interval(), range() or choice(), or put a fixed value in method.params")
    unknown = set(sweep.tags) - _KNOWN_TAGS
    if unknown:
        raise ConfigError(f"{where}: unknown tag {sorted(unknown)[0]!r}; known: {sorted(_KNOWN_TAGS)}")
    if DEPTH in sweep.tags:
        return SearchParam(knob, _depth_distribution(where, sweep, num_layers))
    log = "log" in sweep.tags
    try:
        if isinstance(sweep, IntervalSweep):
            if not sweep.start < sweep.end:
                raise ConfigError(f"{where} is empty or inverted (needs start < end)")
            distribution: BaseDistribution = FloatDistribution(sweep.start, sweep.end, log=log)
        elif isinstance(sweep, RangeSweep):
            distribution = _range_distribution(where, sweep, log)
        else:
            if log or PER_FRAME in sweep.tags:
                raise ConfigError(f"{where}: choice() takes no tags")
            if len(set(map(repr, sweep.list))) != len(sweep.list):
                raise ConfigError(f"{where} repeats a choice")
            distribution = CategoricalDistribution(sweep.list)
    except ConfigError:
        raise
    except ValueError as err:  # Optuna's own checks, e.g. a log scale over a range that includes 0
        raise ConfigError(f"{where}: {err}") from None
    return SearchParam(knob, distribution, per_frame=PER_FRAME in sweep.tags)


def _range_distribution(where: str, sweep: RangeSweep, log: bool) -> BaseDistribution:
    start, stop, step = sweep.start, sweep.stop, sweep.step
    if step <= 0:
        raise ConfigError(f"{where}: step must be positive")
    # Hydra's range is end-exclusive; the tolerance keeps float ranges like range(0.1, 1.0, 0.3) at 3 values.
    count = math.ceil((stop - start) / step - 1e-9)
    if count < 1:
        raise ConfigError(f"{where} is empty or inverted (needs start < stop)")
    if all(isinstance(x, int) for x in (start, stop, step)):
        return IntDistribution(start, start + (count - 1) * step, log=log, step=step)
    return FloatDistribution(start, start + (count - 1) * step, log=log, step=step)


def _depth_distribution(where: str, sweep: Any, num_layers: int | None) -> IntDistribution:
    """The block indices ``i`` with ``start <= i / L < end`` (``<= 1`` when ``end`` is 1) for depth ``L``."""
    if not isinstance(sweep, IntervalSweep) or set(sweep.tags) != {DEPTH}:
        raise ConfigError(f"{where}: tag(depth, ...) takes one interval(a, b) of relative depth, 0 <= a < b <= 1")
    if num_layers is None:
        raise ConfigError(f"{where}: the denoiser's depth is not known for this backbone; search explicit indices with range()")
    start, end = sweep.start, sweep.end
    if not 0.0 <= start < end <= 1.0:
        raise ConfigError(f"{where}: the relative depth needs 0 <= a < b <= 1")
    low = math.ceil(start * num_layers)
    high = num_layers - 1 if end == 1.0 else math.ceil(end * num_layers) - 1
    if high < low:
        raise ConfigError(f"{where} holds no block index of the denoiser's {num_layers} blocks")
    return IntDistribution(low, high)


def _suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)
    return trial.suggest_categorical(name, distribution.choices)


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0]
