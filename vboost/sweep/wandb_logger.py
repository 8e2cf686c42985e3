"""``logger=wandb``: one W&B run per trial, grouped by study, and one study run with the results at the end.

Offline by default: runs are written under ``<study_dir>/wandb/`` with no account or network, and
``wandb sync <study_dir>/wandb/offline-run-*`` uploads them later. W&B is a side channel: any W&B error is
reported as a warning and turns this logger into a no-op, so it can never fail a sweep. Every string that
reaches W&B (config, table cells, preset files) goes through :class:`vboost.secrets.SecretScrubber`, and W&B's
own collection of the command line, environment and console is switched off, so a storage URL's password
is never written to a run.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig

from vboost.secrets import SecretScrubber
from vboost.sweep.loggers import Logger

MODES = ("offline", "online")
_T = TypeVar("_T")


@dataclass
class _TrialRun:
    run: Any
    videos: dict[str, Any] = field(default_factory=dict)  # "video/<key>" -> wandb.Video, logged as the run closes


class WandbLogger(Logger):
    """Streams a sweep to W&B.

    ``cfg`` (``conf/logger/wandb.yaml``) holds ``mode`` (``offline`` or ``online``), ``project``, ``entity``
    and ``tags``. ``run_config`` is added to every run's config (e.g. backbone and method names, a storage URL;
    strings are scrubbed of passwords).

    Per trial: a run ``<study>-trial-<n>`` in group ``<study>`` whose config is the run config plus the
    trial's params (role included), with the running objectives per prompt (``step`` = prompt index), the final
    values in its summary and the trial's clips as mp4 (each logged once its file is complete). A trial's run
    closes with its final metrics, or, for a trial that failed, when the next trial starts. At :meth:`finalize`:
    a run ``<study>-study`` (``job_type="study"``) with the table of all trials, the Pareto set and the exported
    presets as an artifact of type ``preset``, read from the files the sweep wrote in ``study_dir``.

    Raises ``ValueError`` naming the mode when it is not one of :data:`MODES`.
    """

    def __init__(self, cfg: DictConfig, study_dir: Path, study_name: str, run_config: Mapping[str, Any]) -> None:
        mode = cfg.get("mode", "offline")
        if mode not in MODES:
            raise ValueError(f"logger.mode={mode!r} is not one of {', '.join(MODES)}")
        self.study_dir = Path(study_dir)
        self.study_name = study_name
        run_config = dict(run_config)
        self._scrub = SecretScrubber([run_config])
        self._run_config = self._scrub.clean(run_config)
        self._init_args = {
            "project": cfg.get("project") or "vboost",
            "entity": cfg.get("entity"),
            "tags": list(cfg.get("tags") or []),
            "group": study_name,
            "dir": str(self.study_dir),
        }
        self._mode = mode
        self._runs: dict[int, _TrialRun] = {}
        self._wandb: Any = None
        self._failed = False
        self.study_dir.mkdir(parents=True, exist_ok=True)
        self._wandb = self._guard("import", _import_wandb)

    # -- the Logger interface ------------------------------------------------------------------------------------

    def log_params(self, trial: int, params: Mapping[str, Any]) -> None:
        # One worker runs its trials one after another: a new trial ends the previous one, which got no final
        # metrics, so it failed.
        for number in [n for n in self._runs if n != trial]:
            self._close(number, completed=False)
        params = self._scrub.clean(dict(params))
        if trial in self._runs:
            state = self._runs[trial]
            self._guard("config update", lambda: state.run.config.update(params, allow_val_change=True))
        else:
            self._trial(trial, params)

    def log_metrics(self, trial: int, metrics: Mapping[str, float], step: int | None = None) -> None:
        state = self._trial(trial)
        if state is None:
            return
        if step is None:
            self._guard("summary update", lambda: state.run.summary.update(dict(metrics)))
            self._close(trial, completed=True)
        else:
            self._guard("log", lambda: state.run.log(dict(metrics), step=step))

    def log_video(self, trial: int, key: str, path: Path, fps: float) -> None:
        state = self._trial(trial)
        if state is not None:
            # The file is complete (the sweep logs a clip once written); W&B copies it when the run logs it.
            video = self._guard("video", lambda: self._wandb.Video(str(path), caption=key, format="mp4"))
            if video is not None:
                state.videos[f"video/{key}"] = video

    def finalize(self, status: str) -> None:
        for number in list(self._runs):  # a trial still open here did not finish
            self._close(number, completed=False)
        if self._wandb is not None and not self._failed:
            self._guard("study run", lambda: self._log_study(status))
        self._wandb = None

    # -- trial runs ----------------------------------------------------------------------------------------------

    def _trial(self, trial: int, params: Mapping[str, Any] | None = None) -> _TrialRun | None:
        """The open run of ``trial``, started on first use (``params`` join its config); None once W&B is off."""
        if self._wandb is None or self._failed:
            return None
        state = self._runs.get(trial)
        if state is None:
            config = {"study": self.study_name, "trial": trial, **self._run_config, **(params or {})}
            name = f"{self.study_name}-trial-{trial}"
            run = self._guard("init", lambda: self._init(name=name, job_type="trial", config=config))
            if run is None:
                return None
            state = self._runs[trial] = _TrialRun(run)
        return state

    def _close(self, trial: int, completed: bool) -> None:
        state = self._runs.get(trial)
        if state is None:  # already abandoned after a W&B failure
            return

        def close() -> None:
            if state.videos:
                state.run.log(state.videos)
            state.run.finish(exit_code=0 if completed else 1)

        self._guard(f"closing trial {trial}", close)
        self._runs.pop(trial, None)  # after a failure, _abandon has already finished it

    # -- the study run -------------------------------------------------------------------------------------------

    def _log_study(self, status: str) -> None:
        # W&B stages an offline artifact's files under WANDB_DATA_DIR (~/.local/share/wandb by default); keep them in
        # the study directory, so that a copy of outputs/<study>/ syncs later with nothing missing.
        staging = os.environ.get("WANDB_DATA_DIR")
        os.environ["WANDB_DATA_DIR"] = staging or str(self.study_dir / "wandb" / "data")
        try:
            self._log_study_run(status)
        finally:
            if staging is None:
                del os.environ["WANDB_DATA_DIR"]

    def _log_study_run(self, status: str) -> None:
        import pandas as pd

        from vboost.record import ALTERNATIVES_DIR, EXPORT_DIR, RECOMMENDED_DIR, TRIALS_CSV

        wandb = self._wandb
        config = {"study": self.study_name, **self._run_config}
        run = self._init(name=f"{self.study_name}-study", job_type="study", config=config)
        try:
            table_path = self.study_dir / TRIALS_CSV
            if table_path.is_file():
                trials = pd.read_csv(table_path).map(lambda v: self._scrub(v) if isinstance(v, str) else v)
                pareto = trials[trials["pareto"].astype(bool)] if "pareto" in trials else trials.iloc[:0]
                run.log({"trials": wandb.Table(dataframe=trials), "pareto": wandb.Table(dataframe=pareto)})
                run.summary.update({"n_trials": len(trials), "n_pareto": len(pareto)})
            export = self.study_dir / EXPORT_DIR
            presets = sorted(export.glob(f"{RECOMMENDED_DIR}/preset.*")) + sorted(export.glob(f"{ALTERNATIVES_DIR}/trial_*/preset.*"))
            if presets:
                name = _artifact_name(f"{self.study_name}-preset")
                artifact = wandb.Artifact(name, type="preset", metadata={"study": self.study_name})
                for path in presets:
                    # recommended/preset.yaml, alternatives/trial_0003/preset.yaml; a scrubbed copy, never the file
                    with artifact.new_file(str(path.relative_to(export))) as f:
                        f.write(self._scrub(path.read_text()))
                run.log_artifact(artifact)
            run.summary["status"] = status
        finally:
            run.finish(exit_code=0 if status == "finished" else 1)

    # -- W&B calls -----------------------------------------------------------------------------------------------

    def _init(self, **kwargs: Any) -> Any:
        wandb = self._wandb
        settings = wandb.Settings(
            mode=self._mode,
            reinit="create_new",  # this logger finishes every run itself; a new run leaves others alone
            silent=True,
            console="off",  # console capture would copy whatever the sweep prints into output.log
            x_disable_stats=True,
            # Either of these keeps W&B from recording the command line, which may hold a storage URL.
            x_disable_meta=True,
            x_disable_machine_info=True,
            disable_git=True,
            save_code=False,
            x_save_requirements=False,
        )
        return wandb.init(**self._init_args, **kwargs, settings=settings)

    def _guard(self, what: str, call: Callable[[], _T]) -> _T | None:
        """``call()``, or None after warning once and switching W&B off when it raises."""
        if self._failed:
            return None
        try:
            return call()
        except Exception as err:  # noqa: BLE001 -- W&B must never fail a sweep
            self._failed = True
            message = self._scrub(f"{type(err).__name__}: {err}")
            warnings.warn(
                f"W&B {what} failed ({message}); W&B logging is off for the rest of this sweep", RuntimeWarning, stacklevel=3
            )
            self._abandon()
            return None

    def _abandon(self) -> None:
        """Best-effort finish of the open runs after a failure (W&B may be broken, so errors are ignored)."""
        for state in self._runs.values():
            try:
                state.run.finish(exit_code=1)
            except Exception:  # noqa: BLE001, S110
                pass
        self._runs.clear()


def _import_wandb() -> Any:
    import wandb

    return wandb


def _artifact_name(name: str) -> str:
    """W&B artifact names allow letters, digits, ``-``, ``_`` and ``.`` only."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)
