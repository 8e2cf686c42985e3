"""The sweep's decisions, observed one by one on studies whose every clip score is scripted here: which trial is pruned
or stopped early and why, constraints holding and failing, the order of the references, surplus trials, what counts
towards ``study.n_trials``, and the validation stage's trials.

The sweep runs in this process (no subprocess, no diffusers): a backbone of the synthetic world whose clips carry
``(knob, prompt, seed)`` and a scorer that returns, for each clip, the scores a test prescribes.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from optuna.trial import TrialState

from vboost.backbones import BACKBONES, Video
from vboost.sweep.census import census, surplus
from vboost.sweep.config import register_configs
from vboost.sweep.loggers import NullLogger
from vboost.sweep.loop import Sweep
from vboost.sweep.storage import fail_stale_trials, open_storage
from vboost.sweep.validate import plan_sweep

REPO = Path(__file__).resolve().parents[1]
WORLD = REPO / "tests" / "synthetic_world"
sys.path.insert(0, str(WORLD))
import synthetic_world  # noqa: E402  -- the backbone and the knob, registered like a user's module

FLICKER, CONSISTENCY = "exact/temporal_flickering", "proxy/subject_consistency"
PROMPTS = ["scene 0", "scene 1", "scene 2"]  # tests/synthetic_world/conf/prompts/synthetic.yaml


class ScriptedBackbone(synthetic_world.SyntheticBackbone):
    """Clips that are ``(knob strength or None, prompt, seed)``: the scorer below turns them into scores."""

    family = "scripted"

    def generate(self, prompt: str, seed: int, **kwargs) -> Video:
        knob = self.pipe.knob
        return Video(frames=(None if knob is None else knob.strength, prompt, seed), fps=8.0)


BACKBONES[ScriptedBackbone.family] = ScriptedBackbone


class ScriptedScorer:
    """Each clip's scores from ``scores(strength, prompt, seed) -> {record: value}``; aggregates are means."""

    def __init__(self, scores):
        self.scores = scores

    def score_video(self, frames, fps):
        return dict(self.scores(*frames))

    def aggregate(self, results):
        return {key: sum(r[key] for r in results) / len(results) for key in results[0]}


def make_sweep(tmp_path: Path, scores, *overrides: str) -> tuple[Sweep, optuna.Study]:
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose("sweep", return_hydra_config=True, overrides=[
            f"hydra.searchpath=[file://{WORLD / 'conf'}]", "backbone=synthetic", "backbone.family=scripted",
            "method=synthetic_knob", "objective=synthetic_flicker", "prompts=synthetic", f"output_dir={tmp_path}",
            "study.heartbeat_interval=null", "save_videos=false", "+method.paper_defaults.scripted.strength=0.2", *overrides,
        ])
        HydraConfig.instance().set_config(cfg)
        plan = plan_sweep(cfg)
    backbone = ScriptedBackbone.tiny()
    sweep = Sweep(plan, models=lambda: (backbone, ScriptedScorer(scores)), logger=NullLogger(None, tmp_path, "s", {}),
                  write_video=None)
    return sweep, sweep.open_study()


def enqueue(sweep: Sweep, study: optuna.Study, *strengths: float) -> None:
    """The references first (as the sweep would), then search trials at these knob values, in this order."""
    sweep._enqueue_references(study)
    for strength in strengths:
        study.enqueue_trial({"strength": strength})


def by_strength(study: optuna.Study) -> dict:
    return {t.params.get("strength"): t for t in study.trials if t.user_attrs.get("role") != "validation"}


# --- stopping early --------------------------------------------------------------------------------------------

def test_the_pruner_stops_a_trial_below_the_median_and_says_why(tmp_path):
    # One objective. Every clip of a trial scores 0.5 + strength / 10, except the 0.05 trial whose first clip is low.
    def scores(strength, prompt, seed):
        if strength == 0.05 and prompt == PROMPTS[0]:
            return {FLICKER: 0.1}
        return {FLICKER: 0.5 + (strength or 0.0) / 10}

    sweep, study = make_sweep(tmp_path, scores, "study.n_trials=6", "validation.top_k=0")
    enqueue(sweep, study, 0.3, 0.4, 0.05, 0.35)
    sweep.run(study)
    trials = by_strength(study)
    pruned = trials[0.05]
    assert pruned.state == TrialState.PRUNED
    assert pruned.user_attrs["pruned_reason"] == "pruned by MedianPruner after prompt 1"
    assert len(pruned.user_attrs["video_scores"]) == 1  # it stopped after its first clip
    assert trials[0.35].state == TrialState.COMPLETE  # above the median: runs to the end
    assert trials[None].state == TrialState.COMPLETE and trials[0.2].state == TrialState.COMPLETE  # references never stop


@pytest.mark.parametrize(
    ("change", "stopped"),
    [
        ((-0.2, -0.2), True),  # worse than the baseline by more than 5% on both objectives: stopped
        ((+0.2, +0.2), False),  # better on both: never stopped
        ((-0.2, +0.2), False),  # worse on one only: goes on
        ((-0.04, -0.04), False),  # worse on both, within the 5% margin: goes on
    ],
)
def test_the_multi_objective_early_stop_rule_in_both_directions(tmp_path, change, stopped):
    base = {FLICKER: 0.5, CONSISTENCY: 0.8}

    def scores(strength, prompt, seed):
        if strength == 0.7:  # relative change on every clip
            return {FLICKER: base[FLICKER] * (1 + change[0]), CONSISTENCY: base[CONSISTENCY] * (1 + change[1])}
        return base

    sweep, study = make_sweep(tmp_path, scores, "study.n_trials=3", "validation.top_k=0",
                              "objective.targets=[{dimension: temporal_flickering}, {dimension: subject_consistency}]")
    enqueue(sweep, study, 0.7)
    sweep.run(study)
    trial = by_strength(study)[0.7]
    assert (trial.state == TrialState.PRUNED) == stopped
    if stopped:
        assert trial.user_attrs["pruned_reason"] == "worse than the baseline by > 5% on every objective after prompt 1"
        assert len(trial.user_attrs["video_scores"]) == 1
    else:
        assert trial.state == TrialState.COMPLETE and len(trial.user_attrs["video_scores"]) == len(PROMPTS)


def test_clips_are_generated_in_batches_within_one_prompt(tmp_path, monkeypatch):
    # backbone.batch_size=2 over 3 seeds: each prompt's clips in calls of 2 and 1, never mixing prompts, so the
    # pruner still stops the low trial after its first prompt, having scored exactly that prompt's 3 clips.
    calls = []
    one_by_one = ScriptedBackbone.generate_batch

    def generate_batch(self, prompts, seeds, **kwargs):
        calls.append((tuple(prompts), tuple(seeds)))
        return one_by_one(self, prompts, seeds, **kwargs)

    monkeypatch.setattr(ScriptedBackbone, "generate_batch", generate_batch)

    def scores(strength, prompt, seed):
        if strength == 0.05 and prompt == PROMPTS[0]:
            return {FLICKER: 0.1}
        return {FLICKER: 0.5 + (strength or 0.0) / 10 + seed / 100}

    sweep, study = make_sweep(tmp_path, scores, "study.n_trials=6", "validation.top_k=0", "backbone.batch_size=2",
                              "prompts.seeds=[0,1,2]")
    enqueue(sweep, study, 0.3, 0.4, 0.05, 0.35)
    sweep.run(study)
    per_trial = [(p, s) for p in PROMPTS for s in ((0, 1), (2,))]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert calls[:len(per_trial)] == [((p,) * len(s), s) for p, s in per_trial]  # the baseline's calls, in order
    assert len(calls) == len(complete) * len(per_trial) + 2  # the pruned trial made its first prompt's 2 calls
    trials = by_strength(study)
    assert trials[0.05].state == TrialState.PRUNED and len(trials[0.05].user_attrs["video_scores"]) == 3
    # Each clip's score is the one of its own (prompt, seed): batching changes no clip's value.
    assert trials[0.35].values[0] == pytest.approx(0.5 + 0.035 + 0.01)

# --- constraints -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("constraint", "value", "feasible"),
    [
        ("min_ratio_to_baseline: 0.99", 0.80 * 0.995, True),
        ("min_ratio_to_baseline: 0.99", 0.80 * 0.985, False),
        ("min_value: 0.7", 0.71, True),
        ("min_value: 0.7", 0.69, False),
        ("min_value: 0.7, min_ratio_to_baseline: 0.99", 0.75, False),  # above the floor, below 0.99 x 0.8
    ],
)
def test_constraints_hold_or_fail_as_written(tmp_path, constraint, value, feasible):
    def scores(strength, prompt, seed):
        return {FLICKER: 0.5 + (strength or 0.0), CONSISTENCY: value if strength == 0.6 else 0.8}

    sweep, study = make_sweep(tmp_path, scores, "study.n_trials=3", "validation.top_k=0", "study.pruner._target_=optuna.pruners.NopPruner",
                              "~study.pruner.n_startup_trials",
                              f"objective.constraints=[{{dimension: subject_consistency, {constraint}}}]")
    enqueue(sweep, study, 0.6)
    sweep.run(study)
    trial = by_strength(study)[0.6]
    bound = max(0.7 if "min_value" in constraint else 0.0, 0.99 * 0.8 if "ratio" in constraint else 0.0)
    assert trial.constraints == pytest.approx({CONSISTENCY: bound - value})  # what Optuna's samplers read
    assert all(c <= 0 for c in trial.constraints.values()) == feasible
    # The best trial (the highest flicker score) is the constrained one only when it is feasible.
    assert (study.best_trial.number == trial.number) == feasible


# --- references, surplus and counting --------------------------------------------------------------------------

def test_references_in_another_order_do_not_hang_the_sweep(tmp_path):
    sweep, study = make_sweep(tmp_path, lambda *clip: {FLICKER: 0.5}, "study.n_trials=3", "validation.top_k=0")
    sweep.plan.references.reverse()  # the paper's setting enqueued before the baseline
    assert [r.role for r in sweep.plan.references] == ["paper", "baseline"]
    runner = threading.Thread(target=sweep.run, args=(study,), daemon=True)
    runner.start()
    runner.join(timeout=60)
    assert not runner.is_alive(), "the sweep waited for a baseline that waited behind it"
    roles = [t.user_attrs["role"] for t in study.trials]
    assert roles[:2] == ["paper", "baseline"] and all(t.state != TrialState.RUNNING for t in study.trials)


def hand_built(trials: list[tuple]) -> optuna.Study:
    """``(state, user_attrs, system_attrs)`` per trial, numbered in order."""
    study = optuna.create_study()
    for state, attrs, system in trials:
        study.add_trial(optuna.trial.create_trial(state=state, value=0.5 if state == TrialState.COMPLETE else None,
                                                  user_attrs=attrs, system_attrs=system))
    return study


def test_what_counts_towards_n_trials():
    C, P, F, W = TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.WAITING
    study = hand_built([
        (C, {"role": "baseline", "reference": "baseline"}, {}),
        (F, {"role": "search"}, {}),  # failed by a crash, then retried below: the retry counts instead
        (P, {"role": "search"}, {}),  # pruned: counts
        (C, {"role": "search"}, {"retry_history": [1], "failed_trial": 1}),
        (P, {"role": "search", "surplus": True}, {}),  # surplus: never counted
        (F, {"role": "search"}, {}),  # failed, not retried: counts
        (C, {"role": "validation", "reference": "trial 0 on x"}, {}),  # validation: on top of n_trials
        (W, {"role": "search"}, {}),  # waiting: not yet
    ])
    state = census(study)
    assert (state.search, state.validation, state.waiting, state.running) == (4, 1, True, False)


def test_surplus_trials_by_reference_and_by_a_full_study():
    C, R = TrialState.COMPLETE, TrialState.RUNNING
    study = hand_built([
        (C, {"role": "baseline", "reference": "baseline"}, {}),
        (R, {"role": "paper", "reference": "cogvideox"}, {}),
        (C, {"role": "search"}, {}),
        (C, {"role": "validation", "reference": "trial 0 on x"}, {}),
    ])
    # A second copy of a reference another worker holds (running or done) is surplus; a failed one would not be.
    assert surplus(study, 9, {"role": "paper", "reference": "cogvideox"}, n_trials=10)
    assert surplus(study, 9, {"role": "validation", "reference": "trial 0 on x"}, n_trials=10)
    assert not surplus(study, 9, {"role": "validation", "reference": "trial 2 on x"}, n_trials=3)  # validation: on top
    # Three search-stage trials before it: the fourth fits a study of four, not one of three.
    assert not surplus(study, 9, {"role": "search"}, n_trials=4)
    assert surplus(study, 9, {"role": "search"}, n_trials=3)
    assert not surplus(study, 1, {"role": "paper", "reference": "cogvideox"}, n_trials=3)  # the holder itself


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_trials_of_workers_killed_where_heartbeats_miss_them_are_retried_once(tmp_path):
    cfg = SimpleNamespace(heartbeat_interval=1, grace_period=1, max_retry=2)
    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 'study.db'}", cfg))
    space = {"strength": optuna.distributions.FloatDistribution(0.0, 1.0)}
    # Optuna fails a stale trial, then re-queues it: a worker killed in between leaves it failed, never retried.
    orphan = study.ask(space)
    orphan.set_user_attr("role", "search")
    study._storage.set_trial_state_values(orphan._trial_id, TrialState.FAIL)  # failed, and the worker died here
    own_error = study.ask(space)
    own_error.set_user_attr("fail_reason", "ValueError: bad frames")
    study.tell(own_error, state=TrialState.FAIL)
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, system_attrs={"retry_history": [5, 6]}))  # spent
    # A worker killed after its trial was created, before the trial's first heartbeat: Optuna never sees it stale.
    unbeaten = study.ask(space)
    fail_stale_trials(study)
    fail_stale_trials(study)  # a second pass (or worker) finds the orphan retried
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [(t.params, t.user_attrs, t.system_attrs["retry_history"]) for t in waiting] == [
        (orphan.params, {"role": "search"}, [orphan.number])
    ]
    assert study.trials[unbeaten.number].state == TrialState.RUNNING  # given a heartbeat, it now ages
    time.sleep(cfg.grace_period + 1.5)
    fail_stale_trials(study)
    assert study.trials[unbeaten.number].state == TrialState.FAIL
    assert [t.system_attrs["retry_history"] for t in study.get_trials(states=(TrialState.WAITING,))] == [
        [orphan.number], [unbeaten.number]
    ]
    # Two workers re-queueing the orphan at once: the second retry is surplus, the first runs.
    study._storage.get_heartbeat_stale_trial_callback()(study, study.trials[orphan.number])
    first, _, second = study.get_trials(states=(TrialState.WAITING,))
    assert surplus(study, first.number, first.user_attrs, n_trials=10) is None
    assert surplus(study, second.number, second.user_attrs, n_trials=10) == f"surplus: trial {orphan.number} is already retried"


# --- the validation stage ------------------------------------------------------------------------------------

def test_the_validation_stage_runs_the_baseline_first_then_the_candidates_once(tmp_path):
    # The knob helps: the higher the strength, the higher the flicker score, on every clip.
    sweep, study = make_sweep(tmp_path, lambda s, p, seed: {FLICKER: 0.5 + (s or 0.0) / 10}, "study.n_trials=5",
                              "validation.top_k=2", "study.pruner._target_=optuna.pruners.NopPruner",
                              "~study.pruner.n_startup_trials")
    enqueue(sweep, study, 0.9, 0.3, 0.6)
    sweep.run(study)
    validation = [t for t in study.trials if t.user_attrs.get("role") == "validation"]
    strengths = {t.number: t.params.get("strength") for t in study.trials if t.user_attrs.get("role") != "validation"}
    # The baseline, the two best (0.9, 0.6) in rank order, then the paper's setting (0.2), each once, all complete.
    assert [strengths[t.user_attrs["candidate"]] for t in validation] == [None, 0.9, 0.6, 0.2]
    assert all(t.state == TrialState.COMPLETE for t in validation)
    held_out = {f"p{i}_s{s}" for i in range(6) for s in (1, 2)}
    assert all(set(t.user_attrs["video_scores"]) == held_out for t in validation)
    # Run again: nothing left to do, nothing redone.
    before = [(t.number, t.state) for t in study.trials]
    sweep.run(study)
    assert [(t.number, t.state) for t in study.trials] == before


def test_a_validation_trial_waiting_while_the_search_resumes_is_surplus(tmp_path):
    sweep, study = make_sweep(tmp_path, lambda s, p, seed: {FLICKER: 0.5 + (s or 0.0) / 10}, "study.n_trials=3",
                              "validation.top_k=1", "study.pruner._target_=optuna.pruners.NopPruner",
                              "~study.pruner.n_startup_trials")
    enqueue(sweep, study, 0.9)
    # A validation trial enqueued by an earlier run, before the search stage was full.
    study.enqueue_trial({}, user_attrs={"role": "validation", "reference": "trial 0 on old", "candidate": 0, "clip_set": "old"})
    sweep.plan.cfg.study.n_trials = 4  # this run grows the search stage
    study.enqueue_trial({"strength": 0.4})
    sweep.run(study)
    stale = next(t for t in study.trials if t.user_attrs.get("clip_set") == "old")
    assert stale.state == TrialState.PRUNED and stale.user_attrs["surplus"]
    assert stale.user_attrs["pruned_reason"] == "surplus: the search stage resumed after this validation trial was enqueued"
    assert stale.system_attrs == {} or "video_scores" not in stale.user_attrs
    assert census(study).search == 4
