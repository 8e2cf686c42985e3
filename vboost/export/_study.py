"""Read a finished sweep back: its Optuna study, roles of special trials, per-video scores and video files.

What ``python -m vboost.sweep`` leaves in ``outputs/<study>/`` (the contract this module reads):
- ``study.db``, the Optuna storage (or any storage URL passed explicitly); study user attr ``targets``: the
  objective record names, in the order of the study's directions;
- trial user attrs ``role`` (``baseline`` for the untouched model, ``paper`` for the paper default, ``preset``,
  ``search``) and ``knobs`` (the method's kwargs; the Optuna params may be transformed, e.g. weight / F);
- ``videos/trial_<n>/p<i>_s<seed>.mp4``: prompt ``i``, seed ``seed``;
- per-video scores in the trial user attr ``video_scores`` (``{"p<i>_s<seed>": {record: value}}``), when recorded;
- the run context from study user attrs ``method``, ``backbone`` (family), ``checkpoint`` (weights path or null),
  ``num_frames``, ``steps``, ``fps``, ``prompts`` and ``seeds`` (prompt ``i`` of a video key is ``prompts[i]``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from vboost.export._secrets import SecretScrubber, mask_url

_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
VIDEOS_DIR = "videos"
_VIDEO_KEY = re.compile(r"p(?P<prompt>\d+)_s(?P<seed>-?\d+)")
_CONTEXT_KEYS = ("method", "backbone", "checkpoint", "num_frames", "steps", "fps", "prompts", "seeds")
# The sweep calls the paper-default reference trial "paper".
_ROLE_NAMES = {"paper_default": ("paper_default", "paper")}


@dataclasses.dataclass(frozen=True)
class Objective:
    name: str
    direction: str  # "maximize" | "minimize"

    @property
    def sign(self) -> float:
        """+1 when larger is better, -1 when smaller is better."""
        return 1.0 if self.direction == "maximize" else -1.0


@dataclasses.dataclass(frozen=True)
class VideoRecord:
    """One generated clip of a trial and its per-video objective scores."""

    prompt: str
    seed: int
    path: Path | None
    scores: dict[str, float]


@dataclasses.dataclass
class StudyRun:
    """A loaded sweep: the study plus what the sweep recorded around it."""

    study: optuna.Study
    directory: Path | None
    storage: str  # password masked
    scrubber: SecretScrubber
    context: dict[str, Any]  # method, backbone, checkpoint, num_frames, steps, fps, prompts, seeds (when known)

    @property
    def name(self) -> str:
        return self.study.study_name

    @property
    def attrs(self) -> dict[str, Any]:
        return self.study.user_attrs

    @property
    def method(self) -> str | None:
        return self.context.get("method")

    @property
    def objectives(self) -> list[Objective]:
        """Names and directions, from the ``targets`` attr, else Optuna's metric names, else ``objective_i``."""
        directions = ["maximize" if d == StudyDirection.MAXIMIZE else "minimize" for d in self.study.directions]
        names = self.attrs.get("targets") or self.study.metric_names or [f"objective_{i}" for i in range(len(directions))]
        if len(names) != len(directions):
            raise ValueError(f"study {self.name!r} records objectives {names} but has {len(directions)} directions")
        return [Objective(name, direction) for name, direction in zip(names, directions)]

    def completed(self) -> list[FrozenTrial]:
        """Finished trials whose values are all finite."""
        return [
            t for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.values is not None and all(math.isfinite(v) for v in t.values)
        ]

    def trial_with_role(self, role: str) -> FrozenTrial | None:
        """The complete trial whose ``role`` attr is ``role`` (``baseline``/``paper_default``), or None."""
        names = _ROLE_NAMES.get(role, (role,))
        for trial in self.completed():
            if trial.user_attrs.get("role") in names:
                return trial
        return None

    @property
    def baseline(self) -> FrozenTrial | None:
        return self.trial_with_role("baseline")

    @property
    def paper_default(self) -> FrozenTrial | None:
        return self.trial_with_role("paper_default")

    def best_trials(self) -> list[FrozenTrial]:
        """Optuna's best trial (one objective) or Pareto set (feasible trials only when constrained), baseline excluded.

        The same set the sweep writes to ``best/``: a setting dominated by the untouched model is not a best setting.
        """
        baseline = self.baseline
        try:
            best = self.study.best_trials
        except ValueError:  # no complete trial
            return []
        return [t for t in best if baseline is None or t.number != baseline.number]

    def representative_best(self) -> FrozenTrial | None:
        """One trial to show as "best": the front member whose objectives moved most, in spread units.

        Score = sum over objectives of sign * (value - baseline) / std over completed trials; with no
        baseline the study-wide mean stands in. With one objective this is simply the best trial.
        """
        front = self.best_trials()
        if not front:
            return None
        objectives = self.objectives
        completed = self.completed()
        reference = self.baseline
        scores = {}
        for trial in front:
            total = 0.0
            for i, objective in enumerate(objectives):
                column = [t.values[i] for t in completed]
                mean = sum(column) / len(column)
                spread = math.sqrt(sum((v - mean) ** 2 for v in column) / len(column)) or 1.0
                anchor = reference.values[i] if reference is not None and reference.values else mean
                total += objective.sign * (trial.values[i] - anchor) / spread
            scores[trial.number] = total
        return max(front, key=lambda t: (scores[t.number], -t.number))

    def method_params(self, trial: FrozenTrial) -> dict[str, Any]:
        """The method's kwargs of ``trial`` (its ``knobs`` attr, else its Optuna params)."""
        return dict(trial.user_attrs.get("knobs") or trial.params)

    def videos(self, trial: FrozenTrial) -> list[VideoRecord]:
        """The clips of ``trial`` (files on disk and/or recorded scores), ordered by prompt index then seed."""
        files = {}
        if self.directory is not None:
            for path in (self.directory / VIDEOS_DIR / f"trial_{trial.number:04d}").glob("p*_s*.mp4"):
                files[path.stem] = path
        scores = trial.user_attrs.get("video_scores", {})
        prompts = self.context.get("prompts") or []
        records = []
        for key in set(files) | set(scores):
            match = _VIDEO_KEY.fullmatch(key)
            if match is None:
                continue
            index, seed = int(match["prompt"]), int(match["seed"])
            prompt = prompts[index] if index < len(prompts) else f"prompt {index}"
            records.append((index, seed, VideoRecord(prompt, seed, files.get(key), dict(scores.get(key, {})))))
        return [record for _, _, record in sorted(records, key=lambda item: item[:2])]


def open_study_run(
    study_or_dir: str | os.PathLike, *, storage: str | None = None, study_name: str | None = None
) -> StudyRun:
    """Load a sweep from its output directory, a SQLite file, or a study name in ``storage``.

    Without ``storage``, ``study_or_dir`` must be a directory holding one SQLite file (or that file).
    Without ``study_name``, the storage's only study is used, or the one named like the directory.
    Raises ``FileNotFoundError`` naming the path when no storage is found, ``ValueError`` naming the
    studies present when the study cannot be chosen.
    """
    target = Path(study_or_dir).expanduser()
    directory = target if target.is_dir() else target.parent if target.is_file() else None
    if storage is None:
        storage = _find_sqlite(target)
    elif directory is None and study_name is None:
        study_name = str(study_or_dir)  # a bare study name next to an explicit storage URL
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if study_name is None:
        if len(names) == 1:
            study_name = names[0]
        elif directory is not None and directory.name in names:
            study_name = directory.name
        else:
            raise ValueError(f"storage {mask_url(storage)!r} holds studies {names}; pass --study NAME")
    if study_name not in names:
        raise ValueError(f"no study {study_name!r} in storage {mask_url(storage)!r}; studies: {names}")
    study = optuna.load_study(study_name=study_name, storage=storage)
    scrubber = SecretScrubber([storage, study.user_attrs, *(t.user_attrs for t in study.get_trials(deepcopy=False))])
    context = {key: study.user_attrs[key] for key in _CONTEXT_KEYS if key in study.user_attrs}
    return StudyRun(study=study, directory=directory, storage=mask_url(storage), scrubber=scrubber, context=context)


def _find_sqlite(target: Path) -> str:
    if target.is_file():
        return f"sqlite:///{target.resolve()}"
    if not target.is_dir():
        raise FileNotFoundError(f"{str(target)!r} is neither a sweep output directory nor a SQLite file (pass --storage URL)")
    candidates = sorted(p for p in target.iterdir() if p.suffix in _SQLITE_SUFFIXES and p.is_file())
    if len(candidates) != 1:
        raise FileNotFoundError(
            f"expected one SQLite storage in {str(target)!r}, found {[p.name for p in candidates]} (pass --storage URL)"
        )
    return f"sqlite:///{candidates[0].resolve()}"
