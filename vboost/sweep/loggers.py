"""Where a sweep streams what happens: one small interface, one class per backend (``conf/logger/<name>.yaml``).

Loggers are side effects only: the study storage stays the record the sweep resumes from. The sweep calls them
through a :class:`BackgroundLogger`, so their I/O (a W&B run's files, an upload) overlaps the next generation.
"""

from __future__ import annotations

import abc
import csv
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from pathlib import Path
from typing import Any

from omegaconf import DictConfig


class Logger(abc.ABC):
    """The interface every logger shares (the sweep calls these, in this order, per trial).

    A logger is built as ``cls(cfg, study_dir, study_name, run_config)``: ``cfg`` is ``conf/logger/<name>.yaml``,
    ``run_config`` what every run records about the sweep (backbone, checkpoint, method, objectives, the storage
    URL with its password masked).
    """

    @abc.abstractmethod
    def log_params(self, trial: int, params: Mapping[str, Any]) -> None:
        """The method's knobs of ``trial`` (and its role: baseline, paper, preset or search)."""

    @abc.abstractmethod
    def log_metrics(self, trial: int, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Scores of ``trial``: running values after prompt ``step``, or the final ones when ``step`` is None."""

    @abc.abstractmethod
    def log_video(self, trial: int, key: str, path: Path, fps: float) -> None:
        """A complete video file of ``trial`` at ``path`` (``key`` names its prompt and seed), logged before the
        trial's final metrics."""

    @abc.abstractmethod
    def finalize(self, status: str) -> None:
        """The sweep ended with ``status`` (``finished``, ``interrupted`` or ``failed``); flush and close."""


class NullLogger(Logger):
    """``logger=none``: log nothing."""

    def __init__(self, cfg: DictConfig, study_dir: Path, study_name: str, run_config: Mapping[str, Any]) -> None:
        pass

    def log_params(self, trial: int, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, trial: int, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def log_video(self, trial: int, key: str, path: Path, fps: float) -> None:
        pass

    def finalize(self, status: str) -> None:
        pass


class CSVLogger(Logger):
    """``logger=csv``: one row per logged value in ``<study_dir>/log.csv`` (time, trial, kind, step, key, value).

    The file is appended to, so a resumed or parallel sweep adds to the same log.
    """

    COLUMNS = ("time", "trial", "kind", "step", "key", "value")

    def __init__(self, cfg: DictConfig, study_dir: Path, study_name: str, run_config: Mapping[str, Any]) -> None:
        self.path = study_dir / "log.csv"
        new = not self.path.exists()
        self._file = self.path.open("a", newline="")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(self.COLUMNS)

    def _rows(self, trial: int, kind: str, step: int | None, values: Mapping[str, Any]) -> None:
        now = f"{time.time():.3f}"
        self._writer.writerows([now, trial, kind, "" if step is None else step, key, value] for key, value in values.items())
        self._file.flush()

    def log_params(self, trial: int, params: Mapping[str, Any]) -> None:
        self._rows(trial, "param", None, params)

    def log_metrics(self, trial: int, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._rows(trial, "metric", step, metrics)

    def log_video(self, trial: int, key: str, path: Path, fps: float) -> None:
        self._rows(trial, "video", None, {key: str(path)})

    def finalize(self, status: str) -> None:
        self._file.close()


class BackgroundLogger(Logger):
    """Runs ``logger``'s calls, and any job given to :meth:`submit`, in call order on one background thread.

    One ordered thread is what makes ``log_video`` simple: the sweep's :class:`~vboost.sweep.artifacts.VideoWriter`
    submits "write the clip, then log it" here, so the logger sees each complete clip before the trial's later
    calls, with no polling. :meth:`wait` blocks until everything submitted so far is done and raises the first
    error; :meth:`finalize` waits, then finalizes ``logger`` on the calling thread and stops the thread.
    """

    def __init__(self, logger: Logger) -> None:
        self.logger = logger
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vboost-log")
        self._pending: list[Future] = []

    def submit(self, job: Callable[..., Any], *args: Any) -> None:
        # Keep unfinished jobs and failed ones (their error is raised by wait); drop the rest.
        self._pending = [f for f in self._pending if not f.done() or f.exception() is not None]
        self._pending.append(self._pool.submit(job, *args))

    def wait(self) -> None:
        pending, self._pending = self._pending, []
        wait_for(pending)
        for future in pending:
            future.result()

    def log_params(self, trial: int, params: Mapping[str, Any]) -> None:
        self.submit(self.logger.log_params, trial, dict(params))

    def log_metrics(self, trial: int, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.submit(self.logger.log_metrics, trial, dict(metrics), step)

    def log_video(self, trial: int, key: str, path: Path, fps: float) -> None:
        self.submit(self.logger.log_video, trial, key, path, fps)

    def finalize(self, status: str) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)
            self.logger.finalize(status)


def _wandb_logger(cfg: DictConfig, study_dir: Path, study_name: str, run_config: Mapping[str, Any]) -> Logger:
    # Imported only when chosen: wandb is slow to import and optional for every other logger.
    from vboost.sweep.wandb_logger import WandbLogger

    return WandbLogger(cfg, study_dir, study_name, run_config)


LOGGERS: dict[str, Callable[[DictConfig, Path, str, Mapping[str, Any]], Logger]] = {
    "csv": CSVLogger,
    "none": NullLogger,
    "wandb": _wandb_logger,
}


def build_logger(cfg: DictConfig, study_dir: Path, study_name: str, run_config: Mapping[str, Any]) -> Logger:
    """The logger ``cfg.name`` names; raises ``KeyError`` naming the known loggers, ``ValueError`` naming a bad
    setting of the chosen one."""
    try:
        make = LOGGERS[cfg.name]
    except KeyError:
        raise KeyError(f"unknown logger {cfg.name!r}; known: {', '.join(sorted(LOGGERS))}") from None
    return make(cfg, study_dir, study_name, run_config)
