"""The decision rule (``vboost.record``) on studies built here by hand, checked against independent computations:
scipy's t intervals, brute-force Pareto fronts, and per-clip numbers written in the tests themselves."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from scipy import stats

from vboost.record import (
    ConstraintSpec,
    DecisionSettings,
    StudyRun,
    choose_candidates,
    clip_set_id,
    decide,
    paired_effect,
    search_front,
)

HELD_OUT = (["a dog", "a car"], [5, 6])
KEYS = [f"p{i}_s{s}" for i in range(2) for s in HELD_OUT[1]]
A, B = "proxy/a", "proxy/b"


class Study:
    """A hand-built study: search-stage trials (role, values, knobs) and validation trials (per-clip scores)."""

    def __init__(self, directions, targets, settings=DecisionSettings()):
        self.study = optuna.create_study(directions=directions)
        self.study.set_user_attr("targets", targets)
        self.study.set_user_attr("method", "enhance_a_video")
        self.study.set_user_attr("validation_prompts", HELD_OUT[0])
        self.study.set_user_attr("validation_seeds", HELD_OUT[1])
        self.study.set_user_attr("decision", settings.to_attr())
        self.targets = targets

    def search(self, role, values, weight=None, constraints=None, clips=None):
        attrs = {"role": role, "scores": dict(zip(self.targets, values))}
        if weight is not None:
            attrs["knobs"] = {"weight": weight}
        if constraints is not None:
            attrs["constraints"] = constraints
        if clips is not None:
            attrs["video_scores"] = clips
        self.study.add_trial(optuna.trial.create_trial(values=list(values), user_attrs=attrs))
        return self.study.trials[-1].number

    def validate(self, candidate, per_clip, clip_set=None, records=None):
        """A validation trial of ``candidate``; ``per_clip`` is {record: [value per held-out clip]}."""
        records = records or self.targets
        clips = {key: {r: per_clip[r][i] for r in per_clip} for i, key in enumerate(KEYS)}
        values = [float(np.mean(per_clip[r])) for r in self.targets]
        attrs = {"role": "validation", "candidate": candidate, "clip_set": clip_set or clip_set_id(*HELD_OUT),
                 "reference": f"trial {candidate}", "video_scores": clips,
                 "scores": {r: float(np.mean(per_clip[r])) for r in per_clip}}
        self.study.add_trial(optuna.trial.create_trial(values=values, user_attrs=attrs))
        return self.study.trials[-1].number

    @property
    def run(self) -> StudyRun:
        return StudyRun.from_study(self.study, None, "sqlite:///in-memory")


def t_interval(diffs, confidence):
    diffs = np.asarray(diffs, dtype=float)
    return stats.t.interval(confidence, len(diffs) - 1, loc=diffs.mean(), scale=stats.sem(diffs))


# --- the interval ----------------------------------------------------------------------------------------

def test_paired_effect_is_scipys_t_interval():
    diffs = np.random.default_rng(0).normal(0.3, 1.0, size=9)
    effect = paired_effect(diffs, 0.9)
    assert effect.mean == pytest.approx(diffs.mean())
    assert (effect.low, effect.high) == pytest.approx(t_interval(diffs, 0.9))
    assert effect.n == 9 and effect.confidence == 0.9


def test_paired_effect_edge_cases():
    same = paired_effect([0.2, 0.2, 0.2], 0.95)
    assert (same.low, same.high) == pytest.approx((0.2, 0.2), abs=1e-12)  # no spread, no width
    assert paired_effect([0.0, 0.0], 0.95).to_dict() == {"mean": 0.0, "low": 0.0, "high": 0.0, "n": 2, "confidence": 0.95}
    one = paired_effect([0.5], 0.95)
    assert one.mean == 0.5 and (one.low, one.high) == (-math.inf, math.inf)
    assert one.to_dict()["low"] is None  # JSON has no infinities
    assert math.isnan(paired_effect([], 0.95).mean)


# --- which trials are validated --------------------------------------------------------------------------

def two_objective_study(settings=DecisionSettings()) -> Study:
    s = Study(["maximize", "maximize"], [A, B], settings)
    s.search("baseline", (0.90, 0.30))
    s.search("paper", (0.91, 0.29), weight=3.4)
    s.search("search", (0.95, 0.20), weight=6.0)  # 2: on the front, but loses on b
    s.search("search", (0.94, 0.40), weight=4.0)  # 3: beats the baseline on both
    s.search("search", (0.93, 0.35), weight=2.0)  # 4: beats it too, dominated by 3
    s.search("search", (0.80, 0.45), weight=8.0)  # 5: on the front, loses on a
    s.search("search", (0.945, 0.298), weight=1.0)  # 6: on the front, loses 0.7% on b
    return s


def brute_force_front(values: dict[int, tuple[float, ...]]) -> set[int]:
    return {n for n, v in values.items() if not any(all(o >= x for o, x in zip(w, v)) and w != v for w in values.values())}


def test_the_front_counts_the_baseline_as_a_contender():
    s = two_objective_study()
    front = {t.number for t in search_front(s.run)}
    assert front == brute_force_front({t.number: tuple(t.values) for t in s.study.trials}) == {2, 3, 5, 6}
    only_worse = Study(["maximize", "maximize"], [A, B])
    only_worse.search("baseline", (0.9, 0.3))
    only_worse.search("search", (0.8, 0.2), weight=1.0)
    assert [t.number for t in search_front(only_worse.run)] == [0]  # the untouched model is the whole front


def test_candidates_beat_the_baseline_on_the_primary_and_keep_the_others_within_tolerance():
    # Without tolerance: front members that lose nothing; the paper's setting is always added.
    assert [t.number for t in choose_candidates(two_objective_study().run)] == [3, 1]
    # A 1% tolerance on b admits trial 6 (-0.7% on b), ranked by the primary objective a.
    tolerant = two_objective_study(DecisionSettings(tolerances={B: 0.01}))
    assert [t.number for t in choose_candidates(tolerant.run)] == [6, 3, 1]
    assert [t.number for t in choose_candidates(tolerant.run, DecisionSettings(top_k=1, tolerances={B: 0.01}))] == [6, 1]
    assert choose_candidates(tolerant.run, DecisionSettings(top_k=0)) == []


def test_single_objective_candidates_rank_by_value_and_skip_infeasible_and_worse_trials():
    s = Study(["minimize"], [A])
    s.search("baseline", (0.50,), constraints=[0.0])
    s.search("paper", (0.55,), weight=3.4, constraints=[0.0])
    s.search("search", (0.40,), weight=1.0, constraints=[0.0])
    s.search("search", (0.30,), weight=2.0, constraints=[0.01])  # best, but infeasible
    s.search("search", (0.45,), weight=3.0, constraints=[-0.2])
    s.search("search", (0.60,), weight=4.0, constraints=[0.0])  # worse than the baseline
    assert [t.number for t in choose_candidates(s.run)] == [2, 4, 1]


# --- the decision ----------------------------------------------------------------------------------------

def validated_study(b_loss=0.0, settings=DecisionSettings()) -> Study:
    s = two_objective_study(settings)
    base_a, base_b = [0.80, 0.85, 0.90, 0.95], [0.30, 0.31, 0.29, 0.30]
    s.validate(0, {A: base_a, B: base_b})
    s.validate(3, {A: [0.84, 0.88, 0.95, 0.98], B: [v - b_loss for v in base_b]})  # +0.0375 on a
    s.validate(1, {A: [0.81, 0.84, 0.92, 0.95], B: base_b})  # +0.005, noisy
    return s


def test_the_candidate_whose_held_out_gain_is_clear_of_zero_is_recommended():
    decision = decide(validated_study().run)
    assert decision.recommendation is not None and decision.recommendation.trial.number == 3
    # Bonferroni over the two validated candidates, against scipy's interval on the per-clip differences.
    diffs = [0.04, 0.03, 0.05, 0.03]
    effect = decision.recommendation.effects[A]
    assert decision.corrected_confidence == pytest.approx(0.975)
    assert (effect.mean, effect.low, effect.high) == pytest.approx((np.mean(diffs), *t_interval(diffs, 0.975)))
    assert effect.low > 0
    paper = next(c for c in decision.candidates if c.trial.number == 1)
    assert paper.rejected and paper.rejected[0].startswith(f"{A}: the held-out gain is not clear of 0")
    summary = decision.to_json(validated_study().run)
    assert summary["recommendation"]["trial"] == 3 and summary["baseline_trial"] == 0
    assert summary["recommendation"]["effects"][A]["low"] == pytest.approx(effect.low)


def test_a_secondary_objective_worse_beyond_its_tolerance_blocks_the_recommendation():
    # b falls by 0.02 on every clip: significantly worse, beyond a 1% tolerance (0.003 of a 0.30 baseline).
    decision = decide(validated_study(b_loss=0.02, settings=DecisionSettings(tolerances={B: 0.01})).run)
    assert decision.recommendation is None
    validated = next(c for c in decision.candidates if c.trial.number == 3)
    assert any(r.startswith(f"{B}: worse than the baseline") for r in validated.rejected)
    # Within the tolerance (a 0.002 loss), it is recommended.
    assert decide(validated_study(b_loss=0.002, settings=DecisionSettings(tolerances={B: 0.01})).run).recommendation


def test_min_effect_raises_the_bar():
    assert decide(validated_study(settings=DecisionSettings(min_effect=0.05)).run).recommendation is None


def test_a_constraint_must_hold_on_the_held_out_clips():
    spec = ConstraintSpec(B, min_ratio_to_baseline=0.99)
    held = two_objective_study(DecisionSettings(constraints=(spec,)))
    base_b = [0.30, 0.31, 0.29, 0.30]
    held.validate(0, {A: [0.80, 0.85, 0.90, 0.95], B: base_b})
    held.validate(3, {A: [0.84, 0.88, 0.95, 0.98], B: [v - 0.01 for v in base_b]})  # 3.3% below: the bound fails
    held.validate(1, {A: [0.81, 0.84, 0.92, 0.95], B: base_b})
    decision = decide(held.run)
    assert decision.recommendation is None
    assert any(r.startswith(f"constraint on {B} fails") for r in decision.candidates[0].rejected)


def test_no_recommendation_before_the_validation_stage_or_from_another_clip_set():
    unvalidated = decide(two_objective_study().run)
    assert unvalidated.recommendation is None and "validation stage has not completed" in unvalidated.reason
    assert all(c.validation is None for c in unvalidated.candidates)
    other = two_objective_study()
    other.validate(0, {A: [0.8] * 4, B: [0.3] * 4}, clip_set="elsewhere")
    other.validate(3, {A: [0.9] * 4, B: [0.4] * 4}, clip_set="elsewhere")
    assert decide(other.run).baseline_validation is None


def test_minimised_primary_objective_gains_when_it_falls():
    s = Study(["minimize"], [A])
    s.search("baseline", (0.50,))
    s.search("search", (0.40,), weight=1.0)
    s.validate(0, {A: [0.50, 0.52, 0.48, 0.51]})
    s.validate(1, {A: [0.40, 0.43, 0.37, 0.41]})  # lower by 0.10 on every clip but one (0.11)
    decision = decide(s.run)
    assert decision.recommendation.trial.number == 1
    assert decision.recommendation.effects[A].high < 0


def test_the_largest_validated_gain_wins_among_qualifying_candidates():
    s = Study(["maximize"], [A], DecisionSettings(top_k=2))
    s.search("baseline", (0.50,))
    s.search("search", (0.70,), weight=1.0)  # best on the search clips
    s.search("search", (0.60,), weight=2.0)
    base = [0.50, 0.51, 0.49, 0.50]
    s.validate(0, {A: base})
    s.validate(1, {A: [v + 0.02 for v in base]})
    s.validate(2, {A: [v + 0.05 + d for v, d in zip(base, (0.0, 0.001, -0.001, 0.0))]})
    decision = decide(s.run)
    assert [c.qualifies for c in decision.candidates] == [True, True]
    assert decision.recommendation.trial.number == 2  # the held-out gain decides, not the search-stage rank
    assert decision.headline().startswith("recommendation: weight=2.0: trial 2 changes proxy/a by +0.05")
