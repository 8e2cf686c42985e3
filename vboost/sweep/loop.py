"""The trial loop: it owns the study; a trial is every prompt x seed generated with one setting, then scored.

Every study first runs its references (enqueued in this order): the untouched model ("baseline", whose videos
are made once per study), the paper's defaults for the backbone family ("paper", when the method config has
them) and any presets given. Every trial uses the same prompts and seeds, so each value is read against the
baseline's on the same clips.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from vboost.sweep.errors import ConfigError
from vboost.sweep.loggers import Logger
from vboost.sweep.validate import SweepPlan

# States of the trials that count towards ``n_trials`` (enqueued-and-not-started ones do not).
COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
_BASELINE_POLL_S = 2.0
_SCHEMA_ATTEMPTS = 3


class NonFiniteScoreError(FloatingPointError):
    """A scorer record the study reads came out NaN or infinite; the trial fails instead of recording it."""


class Sweep:
    """Run one study to ``n_trials`` trials.

    ``models`` returns ``(backbone, scorer)`` and is called at most once, only when trials remain to run, so a
    finished study resumes without loading anything. ``write_video(trial, key, video) -> path`` stores a clip;
    None keeps no videos.
    """

    def __init__(
        self,
        plan: SweepPlan,
        models: Callable[[], tuple[Any, Any]],
        logger: Logger,
        write_video: Callable[[optuna.Trial, str, Any], Any] | None,
    ) -> None:
        self.plan = plan
        self._models = models
        self.logger = logger
        self._write_video = write_video
        self.backbone: Any = None
        self.scorer: Any = None
        self._baseline: FrozenTrial | None = None
        self._trial_bar: Any = None

    # -- study --------------------------------------------------------------------------------------------------

    def open_study(self) -> optuna.Study:
        """Create or load the study; raises :class:`ConfigError` when a stored study optimises something else."""
        cfg = self.plan.cfg.study
        self.plan.study_dir.mkdir(parents=True, exist_ok=True)
        storage = open_storage(self.plan.storage_url, cfg)
        study = optuna.create_study(
            storage=storage,
            study_name=self.plan.study_name,
            sampler=self.plan.sampler,
            pruner=self.plan.pruner,
            directions=self.plan.directions,
            load_if_exists=True,
        )
        from vboost.export import mask_url
        from vboost.sweep.artifacts import run_context

        records = [t.record for t in self.plan.targets]
        stored = study.user_attrs.get("targets")
        if stored is not None and (stored != records or [d.name.lower() for d in study.directions] != self.plan.directions):
            raise ConfigError(
                f"study {self.plan.study_name!r} in {mask_url(self.plan.storage_url)!r} optimises {stored}; this config "
                f"optimises {records}: set study.name to start another study"
            )
        # What the study was run with, for vboost.export and vboost.report (which never read the Hydra config).
        for key, value in {"targets": records, **run_context(self.plan)}.items():
            if key not in study.user_attrs:  # set once: every worker and resumed run has the same
                study.set_user_attr(key, value)
        return study

    def run(self, study: optuna.Study) -> None:
        """Run trials until the study holds ``n_trials`` counted trials (see :func:`count_trials`).

        Any number of workers may run the same study at once: each trial first checks that it is not
        :func:`surplus`, so together they finish exactly ``n_trials``. With heartbeats on, a worker whose study is
        full stays while trials run elsewhere, so that a crashed worker's trial, failed by its stale heartbeat, is
        retried by a survivor. Trial errors are recorded on the trial (user attr ``fail_reason``) and the sweep goes
        on; a ``KeyboardInterrupt`` marks the running trial failed and is re-raised.
        """
        n_trials = self.plan.cfg.study.n_trials
        heartbeats = self.plan.cfg.study.heartbeat_interval is not None
        if heartbeats:
            _fail_stale_trials(study)
        counted, waiting, running = _census(study)
        if counted >= n_trials and not waiting and not (heartbeats and running):
            return
        self._enqueue_references(study)
        self._trial_bar = tqdm(total=n_trials, initial=counted, desc=self.plan.study_name, unit="trial", disable=None)
        try:
            while True:
                counted, waiting, running = _census(study)
                if counted < n_trials or waiting:
                    if self.backbone is None:
                        self.backbone, self.scorer = self._models()
                        self._baseline = find_baseline(study)
                    # One trial per call: the census is taken again before every trial, whoever ran the others.
                    study.optimize(self._objective, n_trials=1, catch=(Exception,), callbacks=[self._after_trial])
                elif heartbeats and running:
                    time.sleep(self.plan.cfg.study.heartbeat_interval)
                    _fail_stale_trials(study)
                else:
                    return
        finally:
            self._trial_bar.close()

    def _enqueue_references(self, study: optuna.Study) -> None:
        """Enqueue each reference that has no complete, running or waiting trial yet (a failed one runs again)."""
        present = {
            (t.user_attrs.get("role"), t.user_attrs.get("reference"))
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING))
        }
        for ref in self.plan.references:
            if (ref.role, ref.key) in present:
                continue
            attrs = {"role": ref.role, "reference": ref.key}
            params = {}
            if ref.knobs is not None:
                attrs["knobs"] = ref.knobs
                params = self.plan.space.to_trial_params(ref.knobs)
            study.enqueue_trial(params, user_attrs=attrs)

    # -- one trial ----------------------------------------------------------------------------------------------

    def _objective(self, trial: optuna.Trial) -> list[float]:
        if surplus(trial.study, trial.number, trial.user_attrs, self.plan.cfg.study.n_trials):
            trial.set_user_attr("surplus", True)
            raise optuna.TrialPruned("surplus: the study was full when this trial started")
        try:
            return self._evaluate(trial)
        except optuna.TrialPruned:
            raise
        except (Exception, KeyboardInterrupt) as err:
            reason = "interrupted (KeyboardInterrupt)" if isinstance(err, KeyboardInterrupt) else f"{type(err).__name__}: {err}"
            trial.set_user_attr("fail_reason", reason[:1000])
            raise

    def _evaluate(self, trial: optuna.Trial) -> list[float]:
        role = trial.user_attrs.get("role")
        if role is None:
            role = "search"
            trial.set_user_attr("role", role)
        knobs = self._knobs(trial, role)
        self.logger.log_params(trial.number, {"role": role, **(knobs or {})})
        if role != "baseline":
            self._baseline = self._baseline or wait_for_baseline(trial.study)
        method = None if knobs is None else self.plan.method_cls(**knobs)
        prompts, seeds = list(self.plan.cfg.prompts.prompts), list(self.plan.cfg.prompts.seeds)
        scores: list[dict[str, float]] = []
        running: list[list[float]] = []
        video_scores: dict[str, dict[str, float]] = {}  # per clip, keyed like its file videos/trial_<n>/<key>.mp4
        with contextlib.ExitStack() as stack:
            handle = stack.enter_context(method.attached(self.backbone.pipe)) if method is not None else None
            bar = stack.enter_context(tqdm(total=len(prompts) * len(seeds), desc=f"trial {trial.number}", leave=False, disable=None))
            for step, prompt in enumerate(prompts):
                for seed in seeds:
                    key = f"p{step}_s{seed}"
                    video = self.backbone.generate(prompt, seed)
                    scores.append(self._score(video))
                    video_scores[key] = {k: v for k, v in scores[-1].items() if math.isfinite(v)}
                    if self._write_video is not None:
                        self._write_video(trial, key, video)  # the writer logs the clip once its file is complete
                    bar.update()
                aggregate = self.scorer.aggregate(scores)
                values = [aggregate[t.record] for t in self.plan.targets]
                running.append(values)
                self.logger.log_metrics(trial.number, dict(zip(self._names, values)), step=step)
                reason = self._stop_early(trial, role, step, values)
                if reason is not None:
                    self._finish(trial, role, aggregate, running, video_scores, {}, reason=reason)
                    raise optuna.TrialPruned()
            diagnostics = handle.summary() if handle is not None else {}
        self._finish(trial, role, aggregate, running, video_scores, diagnostics)
        return values

    def _knobs(self, trial: optuna.Trial, role: str) -> dict[str, Any] | None:
        """The method's kwargs for ``trial`` (None for the baseline); a reference's stored knobs win over samples."""
        if role == "baseline":
            return None
        knobs = {**self.plan.fixed_knobs, **self.plan.space.suggest(trial), **trial.user_attrs.get("knobs", {})}
        trial.set_user_attr("knobs", knobs)
        return knobs

    def _score(self, video: Any) -> dict[str, float]:
        scores = self.scorer.score_video(video.frames, video.fps)
        for record in self._read_records:
            value = scores.get(record)
            if value is None:
                raise KeyError(f"the scorer gave no {record!r}; it gave {sorted(scores)}")
            if not math.isfinite(value):
                raise NonFiniteScoreError(f"{record} is {value} for one video")
        return scores

    def _stop_early(self, trial: optuna.Trial, role: str, step: int, values: list[float]) -> str | None:
        """Why the trial stops after prompt ``step``, or None: the pruner (single objective) or the baseline-dominance
        rule (multi-objective); references always run to the end."""
        if len(values) == 1:
            trial.report(values[0], step)
            if role == "search" and trial.should_prune():
                return f"pruned by {type(self.plan.pruner).__name__} after prompt {step + 1}"
            return None
        rule = self.plan.cfg.objective.early_stop
        if role != "search" or not rule.enabled or step + 1 < rule.after_prompts or self._baseline is None:
            return None
        baseline = self._baseline.user_attrs["running"][step]
        if all(self._worse(v, b, t.direction, rule.margin) for v, b, t in zip(values, baseline, self.plan.targets)):
            return f"worse than the baseline by > {rule.margin:.0%} on every objective after prompt {step + 1}"
        return None

    @staticmethod
    def _worse(value: float, baseline: float, direction: str, margin: float) -> bool:
        gap = baseline - value if direction == "maximize" else value - baseline
        return gap > margin * abs(baseline)

    def _finish(
        self,
        trial: optuna.Trial,
        role: str,
        aggregate: dict[str, float],
        running: list[list[float]],
        video_scores: dict[str, dict[str, float]],
        diagnostics: dict[str, float],
        reason: str | None = None,
    ) -> None:
        # One storage write per attr (Optuna has no batch write), so the final metrics go in one: the scorer's
        # records and the method's diagnostics as "method/<name>", as the loggers get them.
        final = {**aggregate, **{f"method/{k}": v for k, v in diagnostics.items()}}
        attrs: dict[str, Any] = {
            "scores": {k: v for k, v in final.items() if math.isfinite(v)},
            "running": running,
            "video_scores": video_scores,
        }
        if self.plan.constraints:
            attrs["constraints"] = self._constraint_values(role, aggregate)
        if reason is not None:
            attrs["pruned_reason"] = reason
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        self.logger.log_metrics(trial.number, final)

    def _constraint_values(self, role: str, aggregate: dict[str, float]) -> list[float]:
        """``bound - value`` per constraint (``<= 0`` is feasible), as Optuna's ``constraints_func`` expects."""
        out = []
        for c in self.plan.constraints:
            bounds = [] if c.min_value is None else [c.min_value]
            if c.min_ratio_to_baseline is not None:
                if role == "baseline":
                    baseline = aggregate[c.record]
                elif self._baseline is not None:
                    baseline = self._baseline.user_attrs["scores"][c.record]
                else:
                    raise RuntimeError(f"the constraint on {c.record} is relative to the baseline, which has no complete trial")
                bounds.append(c.min_ratio_to_baseline * baseline)
            out.append(max(bounds) - aggregate[c.record])
        return out

    # -- after a trial ------------------------------------------------------------------------------------------

    def _after_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.user_attrs.get("surplus"):
            return
        if trial.user_attrs.get("role") == "baseline" and trial.state == TrialState.COMPLETE:
            self._baseline = trial
        self._trial_bar.update()
        tqdm.write(describe_trial(trial, self.plan, self._baseline))
        sys.stdout.flush()  # one line per trial, visible at once even through a pipe

    @property
    def _names(self) -> list[str]:
        return [t.short for t in self.plan.targets]

    @property
    def _read_records(self) -> list[str]:
        return [t.record for t in self.plan.targets] + [c.record for c in self.plan.constraints]



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


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def count_trials(study: optuna.Study) -> int:
    """Trials that count towards ``n_trials``: see :func:`_counts`."""
    return _census(study)[0]


def surplus(study: optuna.Study, number: int, user_attrs: dict[str, Any], n_trials: int) -> bool:
    """Whether the trial ``number`` must not run: ``n_trials`` counted trials with lower numbers exist, or it
    repeats a reference (same role and key) that a lower-numbered trial already holds.

    Storages hand out trial numbers atomically, so workers racing at the end of a study (or enqueueing the same
    references at once) agree on which trials are surplus without any lock.
    """
    trials = study.get_trials(deepcopy=False)
    retried = _retried(trials)
    earlier = [t for t in trials if t.number < number and _counts(t, retried)]
    reference = user_attrs.get("reference")
    if reference is not None and any(
        (t.user_attrs.get("role"), t.user_attrs.get("reference")) == (user_attrs.get("role"), reference)
        and t.state != TrialState.FAIL
        for t in earlier
    ):
        return True
    return len(earlier) >= n_trials


def _counts(trial: FrozenTrial, retried: set[int]) -> bool:
    # Complete, pruned, failed or running; not a surplus trial, nor a failed one whose retry took its place.
    return (
        trial.state in COUNTED_STATES
        and not trial.user_attrs.get("surplus")
        and not (trial.state == TrialState.FAIL and trial.number in retried)
    )


def _retried(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of failed trials that a heartbeat retry re-queued.

    ``RetryHeartbeatStaleTrialCallback`` stores the chain in the retry's ``retry_history`` system attr; read
    directly, since its accessor warns as experimental on every call.
    """
    return {n for t in trials for n in t.system_attrs.get("retry_history", ())}


def _fail_stale_trials(study: optuna.Study) -> None:
    """Fail (and, per the storage's callback, re-queue) the running trials whose heartbeat went stale."""
    with warnings.catch_warnings():  # experimental in Optuna since 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _census(study: optuna.Study) -> tuple[int, bool, bool]:
    """From one read of the study: the counted trials, whether any waits in the queue, whether any runs."""
    trials = study.get_trials(deepcopy=False)
    retried = _retried(trials)
    states = {t.state for t in trials}
    return sum(_counts(t, retried) for t in trials), TrialState.WAITING in states, TrialState.RUNNING in states


def find_baseline(study: optuna.Study) -> FrozenTrial | None:
    """The study's complete baseline trial, or None."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.user_attrs.get("role") == "baseline":
            return trial
    return None


def wait_for_baseline(study: optuna.Study) -> FrozenTrial | None:
    """The complete baseline, waiting while another worker is still running it; None when it failed."""
    while True:
        baseline = find_baseline(study)
        running = any(
            t.user_attrs.get("role") == "baseline"
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
        )
        if baseline is not None or not running:
            return baseline
        time.sleep(_BASELINE_POLL_S)


def describe_trial(trial: FrozenTrial, plan: SweepPlan, baseline: FrozenTrial | None) -> str:
    """One readable line: number, role, searched knobs, objectives with their change vs the baseline, time."""
    role = trial.user_attrs.get("role", "search")
    knobs = trial.user_attrs.get("knobs") or {}
    shown = ", ".join(f"{k}={_fmt(knobs[k])}" for k in knobs if k in plan.space.knobs) or ("no method" if role == "baseline" else "")
    seconds = trial.duration.total_seconds() if trial.duration else float("nan")
    head = f"trial {trial.number:>3} {role:<8} {trial.state.name:<8} {shown}"
    if trial.state == TrialState.FAIL:
        return f"{head} | {trial.user_attrs.get('fail_reason', 'failed')} | {seconds:.1f} s"
    scores = trial.user_attrs.get("scores", {})
    base = baseline.user_attrs.get("scores", {}) if baseline is not None and baseline.number != trial.number else {}
    parts = []
    for target in plan.targets:
        value = scores.get(target.record)
        if value is None:
            continue
        delta = f" ({(value - base[target.record]) / abs(base[target.record]):+.1%} vs baseline)" if base.get(target.record) else ""
        parts.append(f"{target.short}={value:.4f}{delta}")
    tail = f" | {trial.user_attrs['pruned_reason']}" if trial.state == TrialState.PRUNED else ""
    return f"{head} | {'  '.join(parts)}{tail} | {seconds:.1f} s"


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
