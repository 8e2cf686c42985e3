"""Opening a study's Optuna storage: SQLite tuned for several workers, heartbeats, retries of crashed trials."""

from __future__ import annotations

import copy
import time
import warnings
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import TrialState

from vboost.record import TrialAttr
from vboost.sweep.census import retried_numbers

_SCHEMA_ATTEMPTS = 3


def open_storage(url: str, cfg: Any) -> optuna.storages.RDBStorage:
    """The RDB storage at ``url``, with heartbeats and retries as ``cfg`` (the study config) says.

    A SQLite file runs in WAL mode with ``synchronous=NORMAL``: a trial's several small commits skip most fsyncs,
    and workers sharing the file read while one writes (each waits up to a minute for the write lock). Every
    transaction takes the write lock when it begins (``BEGIN IMMEDIATE``): Python's sqlite3 otherwise runs a
    transaction's reads outside it, so two workers could both read an enqueued trial as waiting and both run it
    (Optuna's ``SELECT ... FOR UPDATE`` locks nothing on SQLite).
    """
    sqlite = url.startswith("sqlite")
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        heartbeat = {}
        if cfg.heartbeat_interval is not None:
            heartbeat = {
                "heartbeat_interval": cfg.heartbeat_interval,
                "grace_period": cfg.grace_period,
                "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=cfg.max_retry),
            }
        engine_kwargs = {"connect_args": {"timeout": 60}} if sqlite else None
        for attempt in range(_SCHEMA_ATTEMPTS):
            try:
                storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
                break
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.ProgrammingError):
                # Workers starting together on a new database race to create its tables and stamp its schema
                # version; a loser finds them made when it tries again.
                if attempt + 1 == _SCHEMA_ATTEMPTS:
                    raise
                time.sleep(0.2 * (attempt + 1))
    if sqlite:
        sqlalchemy.event.listen(storage.engine, "connect", _sqlite_pragmas)
        sqlalchemy.event.listen(storage.engine, "begin", _begin_immediate)
        storage.engine.dispose()  # connections opened while the schema was checked lack the pragmas
    return storage


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail (and, per the storage's callback, re-queue) the running trials whose heartbeat went stale.

    Two moments of a worker's death escape Optuna's heartbeats, and are covered here. Killed after its trial was
    created but before the trial's first heartbeat, it leaves a running trial that never goes stale (Optuna ages
    heartbeats only): such a trial is given a heartbeat, so that it ages like any other (a live one's own thread keeps
    it fresh). Killed between failing a stale trial and re-queueing it (Optuna does the two in turn), it leaves a
    failed trial nobody retries: such a trial (failed, with no error of its own recorded, retried by nobody) is
    re-queued; when two workers re-queue one trial at once, the second retry is surplus
    (:func:`vboost.sweep.census.surplus`).
    """
    with warnings.catch_warnings():  # experimental in Optuna since 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
        retry = study._storage.get_heartbeat_stale_trial_callback()
        if retry is None:
            return
        for trial_id in _running_without_heartbeat(study):
            study._storage.record_heartbeat(trial_id)
        trials = study.get_trials(deepcopy=False)
        retried = retried_numbers(trials)
        for trial in trials:
            # A trial's own error, out of memory and Ctrl-C included, is recorded as its fail_reason by the sweep.
            if trial.state == TrialState.FAIL and trial.number not in retried and TrialAttr.FAIL_REASON not in trial.user_attrs:
                retry(study, copy.deepcopy(trial))  # a no-op once the trial's retries (study.max_retry) are spent


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
    connection.isolation_level = None  # sqlite3 emits no BEGIN of its own: _begin_immediate does


def _begin_immediate(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _running_without_heartbeat(study: optuna.Study) -> list[int]:
    """Ids of the study's running trials that have no heartbeat row, read from Optuna's schema (its ``trials`` and
    ``trial_heartbeats`` tables) as Optuna's own stale-trial query reads it."""
    from optuna.storages._rdb import models

    storage = getattr(study._storage, "_backend", study._storage)  # the RDB storage under Optuna's cache
    trials, beats = models.TrialModel.__table__, models.TrialHeartbeatModel.__table__
    query = (
        sqlalchemy.select(trials.c.trial_id)
        .select_from(trials.outerjoin(beats, trials.c.trial_id == beats.c.trial_id))
        .where(trials.c.study_id == storage.get_study_id_from_name(study.study_name))
        .where(trials.c.state == TrialState.RUNNING.name)
        .where(beats.c.trial_heartbeat_id.is_(None))
    )
    with storage.engine.connect() as connection:
        return list(connection.execute(query).scalars())
