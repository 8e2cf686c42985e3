"""Where a study stands, read from its storage alone: what counts towards ``n_trials``, what waits, what runs.

Workers share nothing but the storage. Storages hand out trial numbers atomically, so workers racing at the end of a
stage (or enqueueing the same references at once) agree on which trials are surplus without any lock.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from vboost.record import Role, TrialAttr, role_of

# States of the trials that count (enqueued-and-not-started ones do not).
COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
_POLL_S = 2.0


@dataclasses.dataclass(frozen=True)
class Census:
    """One read of a study."""

    search: int  # counted trials of the search stage (what study.n_trials counts)
    validation: int  # counted validation trials
    waiting: bool  # a trial waits in the queue
    search_running: bool  # a search-stage trial runs (in this worker or another)
    running: bool  # any trial runs


def census(study: optuna.Study) -> Census:
    """Count the study's trials by stage; see :func:`counts` for what counts."""
    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    counted = [t for t in trials if counts(t, retried)]
    validation = sum(role_of(t) == Role.VALIDATION for t in counted)
    return Census(
        search=len(counted) - validation,
        validation=validation,
        waiting=any(t.state == TrialState.WAITING for t in trials),
        search_running=any(t.state == TrialState.RUNNING and role_of(t) != Role.VALIDATION for t in trials),
        running=any(t.state == TrialState.RUNNING for t in trials),
    )


def counts(trial: FrozenTrial, retried: set[int]) -> bool:
    """Complete, pruned, failed or running; not a surplus trial, nor a failed one whose retry took its place."""
    return (
        trial.state in COUNTED_STATES
        and not trial.user_attrs.get(TrialAttr.SURPLUS)
        and not (trial.state == TrialState.FAIL and trial.number in retried)
    )


def surplus(study: optuna.Study, number: int, user_attrs: dict[str, Any], n_trials: int) -> str | None:
    """Why the trial ``number`` must not run, or None: it is a second retry of one failed trial (see
    :func:`vboost.sweep.storage.fail_stale_trials`), it repeats an enqueued trial (same role and reference key) that a
    lower-numbered trial already holds, or it is a search-stage trial and ``n_trials`` counted search-stage trials
    with lower numbers exist (validation trials come on top of ``n_trials``)."""
    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    own = next((t for t in trials if t.number == number), None)
    history = [] if own is None else own.system_attrs.get("retry_history", [])
    if history and any(t.number < number and t.system_attrs.get("retry_history", [])[-1:] == history[-1:] for t in trials):
        return f"surplus: trial {history[-1]} is already retried"
    earlier = [t for t in trials if t.number < number and counts(t, retried)]
    role, reference = user_attrs.get(TrialAttr.ROLE, Role.SEARCH), user_attrs.get(TrialAttr.REFERENCE)
    if reference is not None and any(
        (t.user_attrs.get(TrialAttr.ROLE), t.user_attrs.get(TrialAttr.REFERENCE)) == (role, reference)
        and t.state != TrialState.FAIL
        for t in earlier
    ):
        return f"surplus: another trial holds the {role} trial {reference!r}"
    if role == Role.VALIDATION:
        return None
    if sum(role_of(t) != Role.VALIDATION for t in earlier) >= n_trials:
        return "surplus: the study was full when this trial started"
    return None


def find_reference(study: optuna.Study, role: Role, key: str) -> FrozenTrial | None:
    """The complete trial enqueued as ``(role, key)`` (e.g. the baseline), or None."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if role_of(trial) == role and trial.user_attrs.get(TrialAttr.REFERENCE) == key:
            return trial
    return None


def wait_for_reference(study: optuna.Study, role: Role, key: str) -> FrozenTrial | None:
    """The complete ``(role, key)`` trial, waiting while another worker runs it; None when it failed or waits in the
    queue (a waiting one may be this worker's own next trial, so waiting for it would never end)."""
    while True:
        found = find_reference(study, role, key)
        running = any(
            role_of(t) == role and t.user_attrs.get(TrialAttr.REFERENCE) == key
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        )
        if found is not None or not running:
            return found
        time.sleep(_POLL_S)


def retried_numbers(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of failed trials that a heartbeat retry re-queued.

    ``RetryHeartbeatStaleTrialCallback`` stores the chain in the retry's ``retry_history`` system attr; read
    directly, since its accessor warns as experimental on every call.
    """
    return {n for t in trials for n in t.system_attrs.get("retry_history", ())}
