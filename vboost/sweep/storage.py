"""Opening a study's Optuna storage: SQLite tuned for several workers, heartbeats, retries of crashed trials."""

from __future__ import annotations

import time
import warnings
from typing import Any

import optuna
import sqlalchemy

_SCHEMA_ATTEMPTS = 3


def open_storage(url: str, cfg: Any) -> optuna.storages.RDBStorage:
    """The RDB storage at ``url``, with heartbeats and retries as ``cfg`` (the study config) says.

    A SQLite file runs in WAL mode with ``synchronous=NORMAL``: a trial's several small commits skip most fsyncs,
    and workers sharing the file read while one writes (each waits up to a minute for the write lock).
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
        storage.engine.dispose()  # connections opened while the schema was checked lack the pragmas
    return storage


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail (and, per the storage's callback, re-queue) the running trials whose heartbeat went stale."""
    with warnings.catch_warnings():  # experimental in Optuna since 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
