"""The trial loop: it owns the study; a trial is every prompt x seed generated with one setting, then scored.

A study has two stages (docs/decision.md). The search stage first runs its references (enqueued in this order):
the untouched model ("baseline"), the paper's defaults for the backbone family ("paper", when the method config has
them) and any presets given; then the sampler's settings, ``study.n_trials`` trials in all, each on the search clips
(prompts x seeds), read against the baseline's values on the same clips. Once every search trial has ended, the
validation stage runs the chosen candidates, the paper's setting and the baseline again on held-out clips; the
recommendation is decided from those alone.
"""

from __future__ import annotations

import contextlib
import gc
import math
import sqlite3
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import optuna
import sqlalchemy
import torch
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from vboost.record import (
    Role,
    StudyAttr,
    StudyRun,
    TrialAttr,
    choose_candidates,
    clip_key,
    constraint_values,
    role_of,
    validation_reference,
)
from vboost.secrets import mask_url
from vboost.sweep.census import census, find_reference, surplus, wait_for_reference
from vboost.sweep.cost import describe_eta, study_cost
from vboost.sweep.errors import ConfigError
from vboost.sweep.loggers import Logger
from vboost.sweep.storage import fail_stale_trials, open_storage
from vboost.sweep.validate import SweepPlan

_BASELINE_KEY = str(Role.BASELINE)


class NonFiniteScoreError(FloatingPointError):
    """A scorer record the study reads came out NaN or infinite; the trial fails instead of recording it."""


class Sweep:
    """Run one study: ``n_trials`` search-stage trials, then its validation stage.

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
        self._baselines: dict[Role, FrozenTrial | None] = {}  # per stage: the baseline trial results are read against
        self._enqueued_validation: set[str] = set()  # keys this run enqueued: a failed one is retried on the next run
        self._out_of_memory = False  # the trial that just ended ran out of memory
        self._trial_bar: Any = None

    # -- study --------------------------------------------------------------------------------------------------

    def open_study(self) -> optuna.Study:
        """Create or load the study; raises :class:`ConfigError` when a stored study optimises something else."""
        plan = self.plan
        plan.study_dir.mkdir(parents=True, exist_ok=True)
        try:
            storage = open_storage(plan.storage_url, plan.cfg.study)
            study = optuna.create_study(
                storage=storage,
                study_name=plan.study_name,
                sampler=plan.sampler,
                pruner=plan.pruner,
                directions=plan.directions,
                load_if_exists=True,
            )
        except sqlalchemy.exc.DatabaseError as err:
            raise ConfigError(_storage_problem(plan.storage_url, err)) from None
        records = [t.record for t in plan.targets]
        stored = study.user_attrs.get(StudyAttr.TARGETS)
        if stored is not None and (stored != records or [d.name.lower() for d in study.directions] != plan.directions):
            raise ConfigError(
                f"study {plan.study_name!r} in {mask_url(plan.storage_url)!r} optimises {stored}; this config "
                f"optimises {records}: set study.name to start another study"
            )
        if study.metric_names is None:
            with warnings.catch_warnings():  # "experimental" since Optuna 3.2
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(records)  # optuna-dashboard then names the objectives
        # What the study was run with, for vboost.export and vboost.report (which never read the Hydra config).
        for key, value in {StudyAttr.TARGETS: records, **run_context(plan)}.items():
            if key not in study.user_attrs:  # set once: every worker and resumed run has the same
                study.set_user_attr(key, value)
        # How it is decided: the latest run's settings.
        for key, value in decision_context(plan).items():
            if study.user_attrs.get(key) != value:
                study.set_user_attr(key, value)
        return study

    def run(self, study: optuna.Study) -> None:
        """Run the search stage to ``n_trials`` counted trials, then the validation stage, with any number of
        workers on the same study.

        Each trial first checks that it is not surplus, so workers together finish exactly ``n_trials`` search
        trials and one validation trial per candidate. With heartbeats on, a worker with nothing left to start stays
        while trials run elsewhere, so that a crashed worker's trial, failed by its stale heartbeat, is retried by a
        survivor. Trial errors are recorded on the trial (user attr ``fail_reason``) and the sweep goes on; a
        ``KeyboardInterrupt`` marks the running trial failed and is re-raised.
        """
        n_trials = self.plan.cfg.study.n_trials
        heartbeats = self.plan.cfg.study.heartbeat_interval is not None
        if heartbeats:
            fail_stale_trials(study)
        state = census(study)
        if state.search < n_trials:
            self._enqueue_references(study)
        self._trial_bar = tqdm(
            total=n_trials + state.validation, initial=min(state.search, n_trials) + state.validation,
            desc=self.plan.study_name, unit="trial", disable=None,
        )
        try:
            while True:
                state = census(study)
                if state.search < n_trials or state.waiting or (not state.search_running and self._enqueue_validation(study)):
                    self._run_one(study)
                elif heartbeats and state.running:
                    time.sleep(self.plan.cfg.study.heartbeat_interval)
                else:
                    return
                if heartbeats:
                    fail_stale_trials(study)
        finally:
            self._trial_bar.close()

    def _run_one(self, study: optuna.Study) -> None:
        if self.backbone is None:
            self.backbone, self.scorer = self._models()
        # One trial per call: the census is taken again before every trial, whoever ran the others.
        study.optimize(self._objective, n_trials=1, catch=(Exception,), callbacks=[self._after_trial])
        if self._out_of_memory:
            # The failed trial's tensors are held by its exception's frames, a reference cycle: collect them and give
            # the cached device memory back before the next trial.
            self._out_of_memory = False
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def _enqueue_references(self, study: optuna.Study) -> None:
        """Enqueue each reference that has no complete, running or waiting trial yet (a failed one runs again)."""
        present = _references_present(study)
        for ref in self.plan.references:
            if (ref.role, ref.key) not in present:
                self._enqueue(study, {TrialAttr.ROLE: ref.role, TrialAttr.REFERENCE: ref.key}, ref.knobs)

    def _enqueue_validation(self, study: optuna.Study) -> bool:
        """Enqueue the validation trials the ended search stage calls for (the baseline's first, then the
        candidates' in rank order) that the study does not hold yet; returns whether any was enqueued."""
        candidates = self._candidates(study)
        if not candidates:
            return False
        baseline = find_reference(study, Role.BASELINE, _BASELINE_KEY)
        present = _references_present(study)
        clip_set = self.plan.validation.clip_set
        enqueued = 0
        for trial in [baseline, *candidates]:
            key = validation_reference(trial.number, clip_set)
            if (Role.VALIDATION, key) in present or key in self._enqueued_validation:
                continue
            attrs = {TrialAttr.ROLE: Role.VALIDATION, TrialAttr.REFERENCE: key, TrialAttr.CANDIDATE: trial.number,
                     TrialAttr.CLIP_SET: clip_set}
            self._enqueue(study, attrs, trial.user_attrs.get(TrialAttr.KNOBS))
            self._enqueued_validation.add(key)
            enqueued += 1
        if enqueued:
            self._trial_bar.total += enqueued
            self._trial_bar.refresh()
        return enqueued > 0

    def _enqueue(self, study: optuna.Study, attrs: dict[str, Any], knobs: dict[str, Any] | None) -> None:
        """Enqueue a trial of fixed ``knobs`` (None: the untouched model), its searched coordinates as its params."""
        params = {}
        if knobs is not None:
            attrs = {**attrs, TrialAttr.KNOBS: knobs}
            params = self.plan.space.to_trial_params(knobs)
        study.enqueue_trial(params, user_attrs=attrs)

    def _candidates(self, study: optuna.Study) -> list[FrozenTrial]:
        """The search-stage trials the validation stage runs again (none when it is off or nothing qualifies)."""
        if self.plan.decision.top_k < 1:
            return []
        run = StudyRun.from_study(study, self.plan.study_dir, self.plan.storage_url)
        return choose_candidates(run, self.plan.decision)

    # -- one trial ----------------------------------------------------------------------------------------------

    def _objective(self, trial: optuna.Trial) -> list[float]:
        why_not = self._why_not_run(trial)
        if why_not is not None:
            trial.set_user_attr(TrialAttr.SURPLUS, True)
            trial.set_user_attr(TrialAttr.PRUNED_REASON, why_not)
            raise optuna.TrialPruned(why_not)
        try:
            return self._evaluate(trial)
        except optuna.TrialPruned:
            raise
        except (Exception, KeyboardInterrupt) as err:
            if isinstance(err, KeyboardInterrupt):
                reason = "interrupted (KeyboardInterrupt)"
            elif isinstance(err, torch.OutOfMemoryError):
                self._out_of_memory = True
                reason = f"out of memory: {err}"
            else:
                reason = f"{type(err).__name__}: {err}"
            trial.set_user_attr(TrialAttr.FAIL_REASON, mask_url(reason)[:1000])
            raise

    def _why_not_run(self, trial: optuna.Trial) -> str | None:
        """Why ``trial`` is surplus, or None: the study was full when it started, another trial holds its reference,
        or it validates a trial that is (no longer) a candidate of a search stage that has ended."""
        why = surplus(trial.study, trial.number, trial.user_attrs, self.plan.cfg.study.n_trials)
        if why is not None:
            return why
        if trial.user_attrs.get(TrialAttr.ROLE) != Role.VALIDATION:
            return None
        state = census(trial.study)
        if state.search < self.plan.cfg.study.n_trials or state.search_running:
            return "surplus: the search stage resumed after this validation trial was enqueued"
        candidate = trial.user_attrs[TrialAttr.CANDIDATE]
        if candidate != self._baseline_number(trial.study) and candidate not in {t.number for t in self._candidates(trial.study)}:
            return f"surplus: trial {candidate} is no longer a candidate"
        return None

    def _evaluate(self, trial: optuna.Trial) -> list[float]:
        role = trial.user_attrs.get(TrialAttr.ROLE)
        if role is None:
            role = Role.SEARCH
            trial.set_user_attr(TrialAttr.ROLE, role)
        role = Role(role)
        knobs = self._knobs(trial, role)
        self.logger.log_params(trial.number, {"role": str(role), **(knobs or {})})
        is_baseline = role == Role.BASELINE or (
            role == Role.VALIDATION and trial.user_attrs[TrialAttr.CANDIDATE] == self._baseline_number(trial.study)
        )
        baseline = None if is_baseline else self._stage_baseline(trial.study, role)
        method = None if knobs is None else self.plan.method_cls(**knobs)
        prompts, seeds = self._clips(role)
        scores: list[dict[str, float]] = []
        running: list[list[float]] = []
        video_scores: dict[str, dict[str, float]] = {}  # per clip, keyed like its file videos/trial_<n>/<key>.mp4
        with contextlib.ExitStack() as stack:
            handle = stack.enter_context(method.attached(self.backbone.pipe)) if method is not None else None
            bar = stack.enter_context(tqdm(total=len(prompts) * len(seeds), desc=f"trial {trial.number}", leave=False, disable=None))
            batch = self.plan.cfg.backbone.batch_size
            for step, prompt in enumerate(prompts):
                # Batches stay within one prompt, so a trial still stops early at a prompt's end.
                for start in range(0, len(seeds), batch):
                    chunk = seeds[start:start + batch]
                    for seed, video in zip(chunk, self.backbone.generate_batch([prompt] * len(chunk), chunk)):
                        key = clip_key(step, seed)
                        scores.append(self._score(video))
                        video_scores[key] = {k: v for k, v in scores[-1].items() if math.isfinite(v)}
                        if self._write_video is not None:
                            self._write_video(trial, key, video)  # the writer logs the clip once its file is complete
                        bar.update()
                aggregate = self.scorer.aggregate(scores)
                values = [aggregate[t.record] for t in self.plan.targets]
                running.append(values)
                self.logger.log_metrics(trial.number, dict(zip(self._names, values)), step=step)
                reason = self._stop_early(trial, role, step, values, baseline)
                if reason is not None:
                    self._finish(trial, aggregate, running, video_scores, {}, aggregate if is_baseline else baseline, reason)
                    raise optuna.TrialPruned()
            diagnostics = handle.summary() if handle is not None else {}
        self._finish(trial, aggregate, running, video_scores, diagnostics, aggregate if is_baseline else baseline)
        return values

    def _knobs(self, trial: optuna.Trial, role: Role) -> dict[str, Any] | None:
        """The method's kwargs for ``trial`` (None for the untouched model); stored knobs win over samples."""
        stored = trial.user_attrs.get(TrialAttr.KNOBS)
        if role == Role.BASELINE or (role == Role.VALIDATION and stored is None):
            return None
        knobs = {**self.plan.fixed_knobs, **self.plan.space.suggest(trial), **(stored or {})}
        trial.set_user_attr(TrialAttr.KNOBS, knobs)
        return knobs

    def _clips(self, role: Role) -> tuple[list[str], list[int]]:
        """The prompts and seeds of a trial of ``role``: the held-out ones for validation trials."""
        if role == Role.VALIDATION:
            return list(self.plan.validation.prompts), list(self.plan.validation.seeds)
        return list(self.plan.cfg.prompts.prompts), list(self.plan.cfg.prompts.seeds)

    def _stage_baseline(self, study: optuna.Study, stage: Role) -> FrozenTrial | None:
        """The baseline trial of the search stage, or of the validation stage for ``Role.VALIDATION``; waited for
        while another worker runs it; None when it failed."""
        stage = Role.VALIDATION if stage == Role.VALIDATION else Role.SEARCH
        if self._baselines.get(stage) is None:
            if stage == Role.SEARCH:
                self._baselines[stage] = wait_for_reference(study, Role.BASELINE, _BASELINE_KEY)
            else:
                key = validation_reference(self._baseline_number(study), self.plan.validation.clip_set)
                self._baselines[stage] = wait_for_reference(study, Role.VALIDATION, key)
        return self._baselines[stage]

    def _baseline_number(self, study: optuna.Study) -> int | None:
        baseline = find_reference(study, Role.BASELINE, _BASELINE_KEY)
        return None if baseline is None else baseline.number

    def _score(self, video: Any) -> dict[str, float]:
        scores = self.scorer.score_video(video.frames, video.fps)
        for record in self._read_records:
            value = scores.get(record)
            if value is None:
                raise KeyError(f"the scorer gave no {record!r}; it gave {sorted(scores)}")
            if not math.isfinite(value):
                raise NonFiniteScoreError(f"{record} is {value} for one video")
        return scores

    def _stop_early(
        self, trial: optuna.Trial, role: Role, step: int, values: list[float], baseline: FrozenTrial | None
    ) -> str | None:
        """Why the trial stops after prompt ``step``, or None: the pruner (single objective) or the baseline-dominance
        rule (multi-objective); only search trials stop early."""
        if len(values) == 1:
            if role == Role.VALIDATION:
                return None  # a validation trial's per-prompt values are not comparable with the search's
            trial.report(values[0], step)
            if role == Role.SEARCH and trial.should_prune():
                return f"pruned by {type(self.plan.pruner).__name__} after prompt {step + 1}"
            return None
        rule = self.plan.cfg.objective.early_stop
        if role != Role.SEARCH or not rule.enabled or step + 1 < rule.after_prompts or baseline is None:
            return None
        reference = baseline.user_attrs[TrialAttr.RUNNING][step]
        if all(_worse(v, b, t.direction, rule.margin) for v, b, t in zip(values, reference, self.plan.targets)):
            return f"worse than the baseline by > {rule.margin:.0%} on every objective after prompt {step + 1}"
        return None

    def _finish(
        self,
        trial: optuna.Trial,
        aggregate: dict[str, float],
        running: list[list[float]],
        video_scores: dict[str, dict[str, float]],
        diagnostics: dict[str, float],
        baseline: FrozenTrial | dict[str, float] | None,
        reason: str | None = None,
    ) -> None:
        """Store the trial's results. ``baseline`` is the stage's baseline trial, its own aggregate for a baseline
        trial (its constraints are relative to itself), or None when that baseline failed."""
        # One storage write per attr (Optuna has no batch write), so the final metrics go in one: the scorer's
        # records and the method's diagnostics as "method/<name>", as the loggers get them.
        final = {**aggregate, **{f"method/{k}": v for k, v in diagnostics.items()}}
        attrs: dict[str, Any] = {
            TrialAttr.SCORES: {k: v for k, v in final.items() if math.isfinite(v)},
            TrialAttr.RUNNING: running,
            TrialAttr.VIDEO_SCORES: video_scores,
        }
        if self.plan.constraints:
            reference = baseline.user_attrs[TrialAttr.SCORES] if isinstance(baseline, FrozenTrial) else baseline
            values = constraint_values(self.plan.constraints, aggregate, reference)
            attrs[TrialAttr.CONSTRAINTS] = values
            for spec, value in zip(self.plan.constraints, values):
                trial.set_constraint(spec.record, value)  # what Optuna's samplers and best_trials read
        if reason is not None:
            attrs[TrialAttr.PRUNED_REASON] = reason
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        self.logger.log_metrics(trial.number, final)

    # -- after a trial ------------------------------------------------------------------------------------------

    def _after_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.user_attrs.get(TrialAttr.SURPLUS):
            return
        self._trial_bar.update()
        baseline = self._baselines.get(Role.VALIDATION if role_of(trial) == Role.VALIDATION else Role.SEARCH)
        tqdm.write(describe_trial(trial, self.plan, baseline))
        if role_of(trial) == Role.BASELINE and trial.state == TrialState.COMPLETE and trial.duration:
            # The untouched model's trial times a clip: what the rest of the study will take.
            clips = len(trial.user_attrs.get(TrialAttr.VIDEO_SCORES, {}))
            tqdm.write(f"{self.plan.study_name}: {describe_eta(study_cost(self.plan, study), trial.duration.total_seconds(), clips)}")
        sys.stdout.flush()  # one line per trial, visible at once even through a pipe

    @property
    def _names(self) -> list[str]:
        return [t.short for t in self.plan.targets]

    @property
    def _read_records(self) -> list[str]:
        return [t.record for t in self.plan.targets] + [c.record for c in self.plan.constraints]


def run_context(plan: SweepPlan) -> dict[str, Any]:
    """What a study records about how it was run (study user attrs :data:`vboost.record.CONTEXT_ATTRS`)."""
    backbone, prompts = plan.cfg.backbone, plan.cfg.prompts
    context = {
        StudyAttr.METHOD: plan.cfg.method.name,
        StudyAttr.BACKBONE: backbone.family,
        StudyAttr.CHECKPOINT: backbone.weights,
        StudyAttr.NUM_FRAMES: backbone.num_frames,
        StudyAttr.LATENT_FRAMES: plan.latent_frames,
        StudyAttr.HEIGHT: backbone.height,
        StudyAttr.WIDTH: backbone.width,
        StudyAttr.STEPS: backbone.steps,
        StudyAttr.GUIDANCE: backbone.guidance,
        StudyAttr.FPS: backbone.fps,
        StudyAttr.DTYPE: backbone.dtype,
        StudyAttr.PROMPTS: list(prompts.prompts),
        StudyAttr.SEEDS: list(prompts.seeds),
    }
    return context


def decision_context(plan: SweepPlan) -> dict[str, Any]:
    """The study attrs that say how the study is decided: the held-out clips and the decision settings."""
    return {
        StudyAttr.VALIDATION_PROMPTS: list(plan.validation.prompts),
        StudyAttr.VALIDATION_SEEDS: list(plan.validation.seeds),
        StudyAttr.DECISION: plan.decision.to_attr(),
    }


def _storage_problem(url: str, err: sqlalchemy.exc.DatabaseError) -> str:
    """One line on why the study storage at ``url`` cannot be opened, and what to do (password masked)."""
    cause = err.orig or err
    reason = mask_url((str(cause).strip().splitlines() or [""])[0])
    # SQLite says "file is not a database" or "malformed" (a DatabaseError) for a damaged file; an OperationalError is
    # a lock or a path it cannot open.
    if url.startswith("sqlite") and isinstance(cause, sqlite3.DatabaseError) and not isinstance(cause, sqlite3.OperationalError):
        path = url.split(":///", 1)[-1]
        return (f"{path} is not a readable Optuna study ({reason}): move it away to start the study anew, or restore it "
                "from a copy; the videos and results beside it are kept")
    return f"study.storage={mask_url(url)!r} cannot be opened: {reason}"


def _references_present(study: optuna.Study) -> set[tuple[str, str]]:
    """``(role, reference key)`` of every complete, running or waiting enqueued trial."""
    return {
        (t.user_attrs.get(TrialAttr.ROLE), t.user_attrs.get(TrialAttr.REFERENCE))
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING))
    }


def _worse(value: float, baseline: float, direction: str, margin: float) -> bool:
    gap = baseline - value if direction == "maximize" else value - baseline
    return gap > margin * abs(baseline)


def describe_trial(trial: FrozenTrial, plan: SweepPlan, baseline: FrozenTrial | None) -> str:
    """One readable line: number, role, searched knobs, objectives with their change vs the stage's baseline, time."""
    role = role_of(trial)
    knobs = trial.user_attrs.get(TrialAttr.KNOBS) or {}
    shown = ", ".join(f"{k}={_fmt(knobs[k])}" for k in knobs if k in plan.space.knobs) or ("no method" if not knobs else "")
    if role == Role.VALIDATION:
        shown = f"of trial {trial.user_attrs.get(TrialAttr.CANDIDATE)}: {shown}"
    seconds = trial.duration.total_seconds() if trial.duration else float("nan")
    head = f"trial {trial.number:>3} {role:<10} {trial.state.name:<8} {shown}"
    if trial.state == TrialState.FAIL:
        return f"{head} | {trial.user_attrs.get(TrialAttr.FAIL_REASON, 'failed')} | {seconds:.1f} s"
    values = trial.user_attrs.get(TrialAttr.RUNNING) or [[]]
    # A trial stopped early is read against the baseline on the same clips: its running values after that prompt.
    base = []
    if baseline is not None and baseline.number != trial.number:
        base = baseline.user_attrs.get(TrialAttr.RUNNING, [[]])[len(values) - 1]
    parts = []
    for i, (target, value) in enumerate(zip(plan.targets, values[-1])):
        delta = f" ({(value - base[i]) / abs(base[i]):+.1%} vs baseline)" if i < len(base) and base[i] else ""
        parts.append(f"{target.short}={value:.4g}{delta}")
    tail = f" | {trial.user_attrs[TrialAttr.PRUNED_REASON]}" if trial.state == TrialState.PRUNED else ""
    return f"{head} | {'  '.join(parts)}{tail} | {seconds:.1f} s"


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
