"""What a study will cost, in clips, before anything loads; and, once the baseline has run, in time."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
from optuna.trial import TrialState

from vboost.record import Role, TrialAttr, role_of
from vboost.sweep.validate import SweepPlan


@dataclasses.dataclass(frozen=True)
class StudyCost:
    """Clips a study generates: ``search_trials`` x ``search_clips`` each, then up to ``validation_trials`` x
    ``validation_clips`` each (the paper's setting, the baseline and ``top_k`` candidates), ``done`` of them made."""

    search_trials: int
    search_clips: int
    validation_trials: int
    validation_clips: int
    done: int = 0

    @property
    def total(self) -> int:
        return self.search_trials * self.search_clips + self.validation_trials * self.validation_clips

    @property
    def left(self) -> int:
        return max(0, self.total - self.done)


def study_cost(plan: SweepPlan, study: optuna.Study | None = None) -> StudyCost:
    """The plan's clips, with those a stored study already holds counted as done (an upper bound: trials pruned early
    generate fewer)."""
    prompts = plan.cfg.prompts
    validation_trials = 0
    if plan.decision.top_k > 0:
        validation_trials = plan.decision.top_k + 1 + any(r.role == Role.PAPER for r in plan.references)
    done = 0
    if study is not None:
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            if not trial.user_attrs.get(TrialAttr.SURPLUS):
                done += len(trial.user_attrs.get(TrialAttr.VIDEO_SCORES, {})) if role_of(trial) == Role.VALIDATION else \
                    len(prompts.prompts) * len(prompts.seeds)
    return StudyCost(
        search_trials=plan.cfg.study.n_trials,
        search_clips=len(prompts.prompts) * len(prompts.seeds),
        validation_trials=validation_trials,
        validation_clips=len(plan.validation.prompts) * len(plan.validation.seeds),
        done=done,
    )


def existing_study(plan: SweepPlan) -> optuna.Study | None:
    """The plan's study if its storage already holds it (read only: a SQLite file that does not exist is not made)."""
    if plan.storage_url.startswith("sqlite:///") and not plan.storage_url.startswith("sqlite:///:memory:"):
        if not Path(plan.storage_url.removeprefix("sqlite:///")).is_file():
            return None
    try:
        return optuna.load_study(study_name=plan.study_name, storage=plan.storage_url)
    except (KeyError, Exception):  # noqa: BLE001 -- a study not made yet, or a storage not reachable: nothing done
        return None


def describe_cost(cost: StudyCost) -> str:
    """One line: the clips of each stage, the total and what is left."""
    validation = (
        f" + validation: up to {cost.validation_trials} trials x {cost.validation_clips} held-out clips"
        if cost.validation_trials else " (no validation stage)"
    )
    left = f", {cost.left} left" if cost.done else ""
    return (
        f"plan: {cost.search_trials} search trials x {cost.search_clips} clips{validation} = up to {cost.total} clips"
        f"{left}"
    )


def describe_eta(cost: StudyCost, seconds: float, clips: int) -> str:
    """The time left, estimated from one trial that made ``clips`` clips in ``seconds``."""
    per_clip = seconds / max(clips, 1)
    return f"{clips} clips took {seconds:.1f} s: about {_duration(per_clip * cost.left)} for the {cost.left} left"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"
