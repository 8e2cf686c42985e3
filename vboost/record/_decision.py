"""The recommendation of a study: the validated setting that beats the untouched model on held-out clips, or none.

The rule (docs/decision.md):
1. Candidates come from the search stage: complete, feasible trials other than the baseline that beat it on the
   primary (first) objective and keep the others within their tolerances; with several objectives, only members of
   the Pareto front computed with the baseline as a contender. The best ``top_k`` by the primary objective, plus
   the paper's setting, are validated.
2. Each candidate and the baseline run again on held-out clips (validation trials). Per record, the paired
   differences (candidate - baseline, same prompt and seed) get a two-sided Student t interval at confidence
   ``1 - (1 - confidence) / m`` for ``m`` validated candidates (Bonferroni).
3. A candidate qualifies when the primary objective's interval lies beyond ``min_effect`` in its direction, no other
   objective is worse beyond its tolerance with its whole interval, and every constraint holds on the held-out
   clips as it was defined for the search. The qualifying candidate with the largest mean gain is recommended;
   none qualifying means "no recommendation".
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from optuna.trial import FrozenTrial

from vboost.record._run import DecisionSettings, Objective, StudyRun
from vboost.record._schema import Role, TrialAttr, constraint_values, role_of

NO_GAIN = "no setting tried beat the untouched model on held-out clips: keep the method off, or widen the search"


@dataclasses.dataclass(frozen=True)
class Effect:
    """The paired difference (setting - baseline) of one record over ``n`` clips, with a two-sided Student t
    interval ``[low, high]`` at ``confidence`` (infinite with fewer than two clips)."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float

    def gain(self, sign: float) -> tuple[float, float, float]:
        """``(mean, low, high)`` of the improvement: the difference times ``sign`` (+1 maximise, -1 minimise)."""
        ends = sorted((sign * self.low, sign * self.high))
        return sign * self.mean, ends[0], ends[1]

    def text(self) -> str:
        """``+0.0123 [+0.0011, +0.0235] (95.0%, n=8)``: mean, interval, its confidence and the clips."""
        return f"{self.mean:+.4g} [{self.low:+.4g}, {self.high:+.4g}] ({self.confidence:.1%}, n={self.n})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: non-finite values (no clips, or one) become None."""

        def number(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        return {"mean": number(self.mean), "low": number(self.low), "high": number(self.high), "n": self.n,
                "confidence": self.confidence}


def paired_effect(differences: Sequence[float], confidence: float) -> Effect:
    """The mean of ``differences`` with its two-sided Student t interval at ``confidence`` (``n - 1`` degrees of
    freedom). Identical differences give a zero-width interval; fewer than two give an infinite one."""
    d = np.asarray(differences, dtype=np.float64)
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    if n < 2:
        return Effect(mean, -math.inf, math.inf, n, confidence)
    from scipy import stats  # imported when needed: a config check should not pay for it

    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * float(d.std(ddof=1)) / math.sqrt(n)
    return Effect(mean, mean - half, mean + half, n, confidence)


def clip_differences(trial: FrozenTrial, reference: FrozenTrial, record: str) -> list[float]:
    """``trial - reference`` for ``record`` on every clip both scored (same key: same prompt and seed), by key."""
    ours = trial.user_attrs.get(TrialAttr.VIDEO_SCORES, {})
    theirs = reference.user_attrs.get(TrialAttr.VIDEO_SCORES, {})
    keys = sorted(k for k in ours.keys() & theirs.keys() if record in ours[k] and record in theirs[k])
    return [ours[k][record] - theirs[k][record] for k in keys]


@dataclasses.dataclass
class Candidate:
    """A search-stage trial chosen for validation, its effects on the search clips and on the held-out ones."""

    trial: FrozenTrial
    knobs: dict[str, Any]
    search_effects: dict[str, Effect]
    validation: FrozenTrial | None = None
    effects: dict[str, Effect] = dataclasses.field(default_factory=dict)  # validated, corrected intervals
    rejected: list[str] = dataclasses.field(default_factory=list)  # why it is not recommended

    @property
    def role(self) -> Role:
        return role_of(self.trial)

    @property
    def qualifies(self) -> bool:
        return self.validation is not None and not self.rejected


@dataclasses.dataclass
class Decision:
    """What a study recommends (``recommendation``, or None) and why, with every validated candidate."""

    recommendation: Candidate | None
    reason: str
    candidates: list[Candidate]
    objectives: list[Objective]
    records: list[str]  # the objectives' records, then the constraints'
    settings: DecisionSettings
    baseline: FrozenTrial | None = None
    baseline_validation: FrozenTrial | None = None
    corrected_confidence: float | None = None

    @property
    def primary(self) -> Objective:
        return self.objectives[0]

    def headline(self) -> str:
        """One line for the console: the setting to use and why, or that there is none and why."""
        if self.recommendation is None:
            return f"recommendation: none: {self.reason}"
        knobs = ", ".join(f"{k}={v!r}" for k, v in self.recommendation.knobs.items())
        return f"recommendation: {knobs}: {self.reason}"

    def to_json(self, run: StudyRun) -> dict[str, Any]:
        """The machine-readable summary (``report/summary.json``)."""

        def candidate(c: Candidate) -> dict[str, Any]:
            return {
                "trial": c.trial.number,
                "role": str(c.role),
                "knobs": c.knobs,
                "validation_trial": None if c.validation is None else c.validation.number,
                "search_effects": {r: e.to_dict() for r, e in c.search_effects.items()},
                "effects": {r: e.to_dict() for r, e in c.effects.items()},
                "recommended": c is self.recommendation,
                "rejected": c.rejected,
            }

        rec = self.recommendation
        return {
            "study": run.name,
            "method": run.method,
            "recommendation": None if rec is None else {
                "trial": rec.trial.number,
                "role": str(rec.role),
                "knobs": rec.knobs,
                "validation_trial": rec.validation.number,
                "effects": {r: e.to_dict() for r, e in rec.effects.items()},
            },
            "reason": self.reason,
            "baseline_trial": None if self.baseline is None else self.baseline.number,
            "baseline_validation_trial": None if self.baseline_validation is None else self.baseline_validation.number,
            "objectives": [{"record": o.name, "direction": o.direction} for o in self.objectives],
            "primary": self.primary.name,
            "interval": "paired Student t, two-sided, Bonferroni-corrected over the validated candidates",
            "confidence": self.settings.confidence,
            "corrected_confidence": self.corrected_confidence,
            "min_effect": self.settings.min_effect,
            "tolerances": self.settings.tolerances,
            "constraints": [dataclasses.asdict(c) for c in self.settings.constraints],
            "validation_clips": {"prompts": run.validation_prompts, "seeds": run.validation_seeds},
            "candidates": [candidate(c) for c in self.candidates],
        }


def search_front(run: StudyRun) -> list[FrozenTrial]:
    """The Pareto front of the feasible search-stage trials, the baseline a contender like any other (one
    objective: the best trial, or every trial tied with it)."""
    trials = [t for t in run.completed() if _feasible(t)]
    return [t for t in trials if not any(_dominates(u, t, run.objectives) for u in trials)]


def choose_candidates(run: StudyRun, settings: DecisionSettings | None = None) -> list[FrozenTrial]:
    """The search-stage trials to validate, in rank order (see the module docstring); [] without a baseline."""
    settings = settings or run.settings
    baseline = run.baseline
    if baseline is None or settings.top_k < 1:
        return []
    objectives = run.objectives
    front = {t.number for t in search_front(run)} if len(objectives) > 1 else None
    base = baseline.values

    def eligible(t: FrozenTrial) -> bool:
        if t.number == baseline.number or not _feasible(t) or (front is not None and t.number not in front):
            return False
        gains = [o.sign * (t.values[i] - base[i]) for i, o in enumerate(objectives)]
        within = all(g >= -settings.tolerances.get(o.name, 0.0) * abs(base[i]) for i, (o, g) in enumerate(zip(objectives, gains)) if i)
        return gains[0] > 0 and within

    primary = objectives[0]
    ranked = sorted((t for t in run.completed() if eligible(t)), key=lambda t: (-primary.sign * t.values[0], t.number))
    chosen = ranked[: settings.top_k]
    paper = run.paper
    if paper is not None and all(t.number != paper.number for t in chosen):
        chosen.append(paper)
    return chosen


def decide(run: StudyRun) -> Decision:
    """The study's recommendation under its stored decision settings (see the module docstring)."""
    settings, objectives = run.settings, run.objectives
    records = list(dict.fromkeys([o.name for o in objectives] + [c.record for c in settings.constraints]))
    baseline = run.baseline
    decision = Decision(None, "", [], objectives, records, settings, baseline=baseline)
    if baseline is None:
        decision.reason = "the untouched model's trial (role baseline) has not completed: there is nothing to compare with"
        return decision
    chosen = choose_candidates(run, settings)
    decision.candidates = [
        Candidate(t, run.method_params(t), _effects(t, baseline, records, settings.confidence)) for t in chosen
    ]
    if settings.top_k < 1:
        decision.reason = "validation is off (validation.top_k=0): without held-out clips nothing is recommended"
        return decision
    if not chosen:
        decision.reason = (
            "no setting tried beat the untouched model on the search clips within the constraints and tolerances: "
            "keep the method off, or widen the search"
        )
        return decision
    decision.corrected_confidence = level = 1 - (1 - settings.confidence) / len(chosen)
    validations = run.validations()
    base_val = decision.baseline_validation = validations.get(baseline.number)
    for c in decision.candidates:
        c.validation = validations.get(c.trial.number) if base_val is not None else None
        if c.validation is None:
            c.rejected.append("not validated: its held-out trial (or the baseline's) has not completed")
            continue
        c.effects = _effects(c.validation, base_val, records, level)
        c.rejected = _rejections(c, objectives, settings, base_val)
    qualifying = [c for c in decision.candidates if c.qualifies]
    if base_val is None:
        decision.reason = "the validation stage has not completed: run the same command again to finish it"
    elif not qualifying:
        decision.reason = NO_GAIN
    else:
        primary = decision.primary
        best = max(qualifying, key=lambda c: (c.effects[primary.name].gain(primary.sign)[0], -c.trial.number))
        decision.recommendation = best
        decision.reason = _recommended_because(best, decision, base_val)
    return decision


def _effects(trial: FrozenTrial, reference: FrozenTrial, records: list[str], confidence: float) -> dict[str, Effect]:
    return {r: paired_effect(clip_differences(trial, reference, r), confidence) for r in records}


def _rejections(c: Candidate, objectives: list[Objective], settings: DecisionSettings, base_val: FrozenTrial) -> list[str]:
    reasons = []
    base_scores = base_val.user_attrs.get(TrialAttr.SCORES, {})
    primary = objectives[0]
    _, low, _ = c.effects[primary.name].gain(primary.sign)
    if not low > settings.min_effect:  # also when NaN: no paired clips
        reasons.append(f"{primary.name}: the held-out gain is not clear of {settings.min_effect:g} ({c.effects[primary.name].text()})")
    for o in objectives[1:]:
        tolerance = settings.tolerances.get(o.name, 0.0) * abs(base_scores.get(o.name, math.nan))
        _, _, high = c.effects[o.name].gain(o.sign)
        if not high >= -tolerance:
            reasons.append(f"{o.name}: worse than the baseline beyond its tolerance {tolerance:.4g} ({c.effects[o.name].text()})")
    if settings.constraints:
        scores = c.validation.user_attrs.get(TrialAttr.SCORES, {})
        try:
            values = constraint_values(settings.constraints, scores, base_scores)
        except (KeyError, ValueError) as err:
            return [*reasons, f"constraints cannot be checked on the held-out clips: {err}"]
        for spec, value in zip(settings.constraints, values):
            if value > 0:
                reasons.append(f"constraint on {spec.record} fails on the held-out clips ({scores[spec.record]:.4g}, "
                               f"{value:.4g} below its bound)")
    return reasons


def _recommended_because(best: Candidate, decision: Decision, base_val: FrozenTrial) -> str:
    primary = decision.primary
    effect = best.effects[primary.name]
    base = base_val.user_attrs.get(TrialAttr.SCORES, {}).get(primary.name)
    relative = f" ({effect.mean / abs(base):+.1%})" if base else ""
    others = " and keeps the other objectives and constraints" if len(decision.records) > 1 else ""
    return (
        f"trial {best.trial.number} changes {primary.name} by {effect.mean:+.4g}{relative} on {effect.n} held-out "
        f"clips vs the untouched model ({effect.text()}, clear of {decision.settings.min_effect:g}){others}; "
        f"the largest validated gain of {len(decision.candidates)} candidate(s)"
    )




def _feasible(trial: FrozenTrial) -> bool:
    """No constraint violated: Optuna's constraints (``set_constraint``), else the stored ``constraints`` attr."""
    values = list(trial.constraints.values()) or trial.user_attrs.get(TrialAttr.CONSTRAINTS) or []
    return all(v <= 0 for v in values)


def _dominates(a: FrozenTrial, b: FrozenTrial, objectives: list[Objective]) -> bool:
    better = [o.sign * (x - y) for o, x, y in zip(objectives, a.values, b.values)]
    return all(g >= 0 for g in better) and any(g > 0 for g in better)
