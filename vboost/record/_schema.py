"""The names of the study record: roles, trial and study attributes, and the files under ``outputs/<study>/``.

Everything the sweep writes and export/report read is spelled here once (docs/study-record.md describes it).
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial


class Role(enum.StrEnum):
    """Why a trial exists. The first four make the search stage; ``validation`` trials make the validation stage."""

    BASELINE = "baseline"  # the untouched model: every result is read against it
    PAPER = "paper"  # the paper's published setting for the backbone family
    PRESET = "preset"  # a preset file given with presets=
    SEARCH = "search"  # a setting the sampler chose
    VALIDATION = "validation"  # a search-stage trial (its knobs, or none for the baseline) again on held-out clips


SEARCH_ROLES = (Role.BASELINE, Role.PAPER, Role.PRESET, Role.SEARCH)
# Roles written by earlier versions, read as today's.
_LEGACY_ROLES = {"paper_default": Role.PAPER}


class TrialAttr(enum.StrEnum):
    """Trial user attributes."""

    ROLE = "role"  # a Role
    REFERENCE = "reference"  # enqueued trials: a key unique per role (dedupes workers racing to enqueue)
    KNOBS = "knobs"  # the method's kwargs (Optuna params are sample coordinates, e.g. weight / F)
    SCORES = "scores"  # {record: value} aggregated over the trial's clips, plus "method/<diagnostic>"
    RUNNING = "running"  # per prompt: the objective values aggregated over the clips so far
    VIDEO_SCORES = "video_scores"  # {clip key: {record: value}}, the clip's own scores
    CONSTRAINTS = "constraints"  # bound - value per constraint (<= 0 feasible); also set as Optuna constraints
    CANDIDATE = "candidate"  # validation trials: the number of the search-stage trial they validate
    CLIP_SET = "clip_set"  # validation trials: the id of the held-out clips (see clip_set_id)
    FAIL_REASON = "fail_reason"
    PRUNED_REASON = "pruned_reason"
    SURPLUS = "surplus"  # started when the study was full; pruned before it ran, never counted


class StudyAttr(enum.StrEnum):
    """Study user attributes: how the study was run (set once) and how it is decided (set by every run)."""

    TARGETS = "targets"  # objective record names, in the order of the study's directions
    METHOD = "method"
    BACKBONE = "backbone"  # backbone family
    CHECKPOINT = "checkpoint"  # weights directory, or None for the tiny random model
    NUM_FRAMES = "num_frames"
    LATENT_FRAMES = "latent_frames"  # F, the frames the method's attention sees
    HEIGHT = "height"
    WIDTH = "width"
    STEPS = "steps"
    GUIDANCE = "guidance"
    FPS = "fps"
    DTYPE = "dtype"
    PROMPTS = "prompts"  # the search clips: prompts x seeds
    SEEDS = "seeds"
    VALIDATION_PROMPTS = "validation_prompts"  # the held-out clips of the latest run
    VALIDATION_SEEDS = "validation_seeds"
    DECISION = "decision"  # the decision rule's settings of the latest run (see DecisionSettings)


# Run-context attributes, set once when the study is created (every worker and resumed run has the same).
CONTEXT_ATTRS = (
    StudyAttr.METHOD, StudyAttr.BACKBONE, StudyAttr.CHECKPOINT, StudyAttr.NUM_FRAMES, StudyAttr.LATENT_FRAMES,
    StudyAttr.HEIGHT, StudyAttr.WIDTH, StudyAttr.STEPS, StudyAttr.GUIDANCE, StudyAttr.FPS, StudyAttr.DTYPE,
    StudyAttr.PROMPTS, StudyAttr.SEEDS,
)

# Files and directories under outputs/<study>/.
STUDY_DB = "study.db"
TRIALS_CSV = "trials.csv"
TRIALS_PARQUET = "trials.parquet"
VIDEOS_DIR = "videos"
ARTIFACTS_DIR = "artifacts"
EXPORT_DIR = "export"
RECOMMENDED_DIR = "recommended"  # under export/: the one preset to use, when a setting is recommended
ALTERNATIVES_DIR = "alternatives"  # under export/: trial_<NNNN>/ per candidate not recommended
REPORT_DIR = "report"
SUMMARY_JSON = "summary.json"  # under report/

_CLIP_KEY = re.compile(r"p(?P<prompt>\d+)_s(?P<seed>-?\d+)")


def role_of(trial: FrozenTrial) -> Role:
    """The trial's :class:`Role` (a trial without one is a search trial; legacy names are mapped)."""
    role = trial.user_attrs.get(TrialAttr.ROLE, Role.SEARCH)
    return _LEGACY_ROLES.get(role) or Role(role)


def clip_key(prompt_index: int, seed: int) -> str:
    """The key of one clip of a trial: ``p<prompt index>_s<seed>`` (the index into the trial's prompt list)."""
    return f"p{prompt_index}_s{seed}"


def parse_clip_key(key: str) -> tuple[int, int] | None:
    """``(prompt index, seed)`` of a clip key, or None when ``key`` is not one."""
    match = _CLIP_KEY.fullmatch(key)
    return None if match is None else (int(match["prompt"]), int(match["seed"]))


def trial_videos_dir(study_dir: Path, trial_number: int) -> Path:
    """The directory of a trial's clips: ``videos/trial_<NNNN>/``."""
    return study_dir / VIDEOS_DIR / f"trial_{trial_number:04d}"


def video_path(study_dir: Path, trial_number: int, key: str) -> Path:
    """Where the clip ``key`` of trial ``trial_number`` is stored: ``videos/trial_<NNNN>/<key>.mp4``."""
    return trial_videos_dir(study_dir, trial_number) / f"{key}.mp4"


def clip_set_id(prompts: Sequence[str], seeds: Sequence[int]) -> str:
    """A short stable id of a set of clips (prompts x seeds): validation trials of another set are not reused."""
    digest = hashlib.sha256(json.dumps([list(prompts), list(seeds)]).encode()).hexdigest()
    return digest[:10]


def validation_reference(candidate: int, clip_set: str) -> str:
    """The reference key of the validation trial of search-stage trial ``candidate`` on the clip set ``clip_set``."""
    return f"trial {candidate} on {clip_set}"


def constraint_values(
    constraints: Sequence[Any], scores: dict[str, float], baseline_scores: dict[str, float] | None
) -> list[float]:
    """``bound - value`` per constraint (``<= 0`` is feasible), the bound being the larger of ``min_value`` and
    ``min_ratio_to_baseline * baseline``; ``constraints`` hold ``record``, ``min_value``, ``min_ratio_to_baseline``.

    Raises ``ValueError`` naming the record when a constraint is relative to a baseline that has no score.
    """
    out = []
    for c in constraints:
        bounds = [] if c.min_value is None else [c.min_value]
        if c.min_ratio_to_baseline is not None:
            if baseline_scores is None or c.record not in baseline_scores:
                raise ValueError(f"the constraint on {c.record} is relative to the baseline, which has no score for it")
            bounds.append(c.min_ratio_to_baseline * baseline_scores[c.record])
        out.append(max(bounds) - scores[c.record])
    return out
