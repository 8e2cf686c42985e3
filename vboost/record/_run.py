"""Read a study back: its trials by role and stage, its objectives and decision settings, clips and their scores."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from vboost.record._schema import (
    CONTEXT_ATTRS,
    SEARCH_ROLES,
    Role,
    StudyAttr,
    TrialAttr,
    clip_set_id,
    parse_clip_key,
    role_of,
    trial_videos_dir,
)
from vboost.secrets import SecretScrubber, mask_url

_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


@dataclasses.dataclass(frozen=True)
class Objective:
    """One optimised record and its direction."""

    name: str
    direction: str  # "maximize" | "minimize"

    @property
    def sign(self) -> float:
        """+1 when larger is better, -1 when smaller is better."""
        return 1.0 if self.direction == "maximize" else -1.0


@dataclasses.dataclass(frozen=True)
class ConstraintSpec:
    """A floor on a record: feasible when ``value >= max(min_value, min_ratio_to_baseline * baseline)``."""

    record: str
    min_ratio_to_baseline: float | None = None
    min_value: float | None = None


@dataclasses.dataclass(frozen=True)
class DecisionSettings:
    """How a study's recommendation is decided (docs/decision.md): ``top_k`` candidates validated against the
    baseline with intervals at ``confidence`` (corrected for the number of candidates), a gain on the primary (first)
    objective clear of ``min_effect``, the other objectives within ``tolerances`` (relative to the baseline) and the
    constraints holding on the held-out clips."""

    top_k: int = 3
    confidence: float = 0.95
    min_effect: float = 0.0
    tolerances: dict[str, float] = dataclasses.field(default_factory=dict)
    constraints: tuple[ConstraintSpec, ...] = ()

    def to_attr(self) -> dict[str, Any]:
        """Plain data for the study attribute ``decision``."""
        return {**dataclasses.asdict(self), "constraints": [dataclasses.asdict(c) for c in self.constraints]}

    @classmethod
    def from_attr(cls, data: dict[str, Any] | None) -> "DecisionSettings":
        """The settings stored by :meth:`to_attr`; the defaults for a study that stored none."""
        if not data:
            return cls()
        return cls(**{**data, "constraints": tuple(ConstraintSpec(**c) for c in data.get("constraints", ()))})


@dataclasses.dataclass(frozen=True)
class VideoRecord:
    """One clip of a trial: its prompt, seed, key, file (when kept) and its own scores."""

    prompt: str
    seed: int
    key: str
    path: Path | None
    scores: dict[str, float]


@dataclasses.dataclass
class StudyRun:
    """A study as the sweep recorded it, with the run context and the decision settings around it."""

    study: optuna.Study
    directory: Path | None
    storage: str  # password masked
    scrubber: SecretScrubber
    context: dict[str, Any]

    @classmethod
    def from_study(cls, study: optuna.Study, directory: Path | None, storage_url: str) -> "StudyRun":
        """Wrap a study already open (the sweep's own); ``storage_url`` is masked for display."""
        trials = study.get_trials(deepcopy=False)
        scrubber = SecretScrubber([storage_url, study.user_attrs, *(t.user_attrs for t in trials)])
        context = {key: study.user_attrs[key] for key in CONTEXT_ATTRS if key in study.user_attrs}
        for key in (StudyAttr.VALIDATION_PROMPTS, StudyAttr.VALIDATION_SEEDS):
            if key in study.user_attrs:
                context[key] = study.user_attrs[key]
        return cls(study=study, directory=directory, storage=mask_url(storage_url), scrubber=scrubber, context=context)

    @property
    def name(self) -> str:
        return self.study.study_name

    @property
    def method(self) -> str | None:
        return self.context.get(StudyAttr.METHOD)

    @property
    def objectives(self) -> list[Objective]:
        """Names and directions: the ``targets`` attr, else Optuna's metric names, else ``objective_<i>``.

        Raises ``ValueError`` when the names and the study's directions disagree in number.
        """
        directions = ["maximize" if d == StudyDirection.MAXIMIZE else "minimize" for d in self.study.directions]
        attrs = self.study.user_attrs
        names = attrs.get(StudyAttr.TARGETS) or self.study.metric_names or [f"objective_{i}" for i in range(len(directions))]
        if len(names) != len(directions):
            raise ValueError(f"study {self.name!r} records objectives {names} but has {len(directions)} directions")
        return [Objective(name, direction) for name, direction in zip(names, directions)]

    @property
    def settings(self) -> DecisionSettings:
        """The decision settings the latest sweep stored (defaults for studies of earlier versions)."""
        return DecisionSettings.from_attr(self.study.user_attrs.get(StudyAttr.DECISION))

    def completed(self, roles: tuple[Role, ...] = SEARCH_ROLES) -> list[FrozenTrial]:
        """Complete trials with all values finite whose role is in ``roles`` (default: the search stage)."""
        return [
            t for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.values is not None and all(math.isfinite(v) for v in t.values) and role_of(t) in roles
        ]

    def trial_with_role(self, role: Role) -> FrozenTrial | None:
        """The first complete trial with ``role``, or None."""
        return next(iter(self.completed((role,))), None)

    @property
    def baseline(self) -> FrozenTrial | None:
        """The search stage's complete baseline trial (the untouched model), or None."""
        return self.trial_with_role(Role.BASELINE)

    @property
    def paper(self) -> FrozenTrial | None:
        """The complete trial of the paper's published setting, or None."""
        return self.trial_with_role(Role.PAPER)

    @property
    def validation_prompts(self) -> list[str]:
        return list(self.context.get(StudyAttr.VALIDATION_PROMPTS) or [])

    @property
    def validation_seeds(self) -> list[int]:
        return list(self.context.get(StudyAttr.VALIDATION_SEEDS) or [])

    @property
    def validation_clip_set(self) -> str | None:
        """The id of the latest run's held-out clips, or None when the study never planned a validation stage."""
        prompts, seeds = self.context.get(StudyAttr.VALIDATION_PROMPTS), self.context.get(StudyAttr.VALIDATION_SEEDS)
        return None if not prompts or not seeds else clip_set_id(prompts, seeds)

    def validations(self) -> dict[int, FrozenTrial]:
        """``{search-stage trial number: its complete validation trial}`` on the latest run's held-out clips."""
        clip_set = self.validation_clip_set
        out: dict[int, FrozenTrial] = {}
        for trial in self.completed((Role.VALIDATION,)):
            if trial.user_attrs.get(TrialAttr.CLIP_SET) == clip_set:
                out.setdefault(trial.user_attrs[TrialAttr.CANDIDATE], trial)
        return out

    def method_params(self, trial: FrozenTrial) -> dict[str, Any]:
        """The method's kwargs of ``trial`` (its ``knobs`` attr, else its Optuna params)."""
        return dict(trial.user_attrs.get(TrialAttr.KNOBS) or trial.params)

    def prompts_of(self, trial: FrozenTrial) -> list[str]:
        """The prompt list a trial's clip keys index into: the held-out prompts for validation trials."""
        if role_of(trial) == Role.VALIDATION:
            return self.validation_prompts
        return list(self.context.get(StudyAttr.PROMPTS) or [])

    def videos(self, trial: FrozenTrial) -> list[VideoRecord]:
        """The clips of ``trial`` (files on disk and/or recorded scores), ordered by prompt index then seed."""
        files = {}
        if self.directory is not None:
            for path in trial_videos_dir(self.directory, trial.number).glob("p*_s*.mp4"):
                files[path.stem] = path
        scores = trial.user_attrs.get(TrialAttr.VIDEO_SCORES, {})
        prompts = self.prompts_of(trial)
        records = []
        for key in set(files) | set(scores):
            parsed = parse_clip_key(key)
            if parsed is None:
                continue
            index, seed = parsed
            prompt = prompts[index] if index < len(prompts) else f"prompt {index}"
            records.append((parsed, VideoRecord(prompt, seed, key, files.get(key), dict(scores.get(key, {})))))
        return [record for _, record in sorted(records, key=lambda item: item[0])]


def open_study_run(
    study_or_dir: str | os.PathLike, *, storage: str | None = None, study_name: str | None = None
) -> StudyRun:
    """Load a sweep from its output directory, a SQLite file, or a study name in ``storage``.

    Without ``storage``, ``study_or_dir`` must be a directory holding one SQLite file (or that file). Without
    ``study_name``, the storage's only study is used, or the one named like the directory. Raises
    ``FileNotFoundError`` naming the path when no storage is found, ``ValueError`` naming the studies present when
    the study cannot be chosen.
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
    return StudyRun.from_study(optuna.load_study(study_name=study_name, storage=storage), directory, storage)


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
