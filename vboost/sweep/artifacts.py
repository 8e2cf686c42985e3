"""What a study leaves in ``outputs/<study>/`` besides its storage: videos, the trials table, the export, the report.

The table, the export and the report are rebuilt from the storage after every run, so they always describe the
whole study (resumed runs and other workers included).
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import subprocess
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
import optuna
import pandas as pd

from vboost.record import (
    ARTIFACTS_DIR,
    EXPORT_DIR,
    REPORT_DIR,
    TRIALS_CSV,
    TRIALS_PARQUET,
    Decision,
    Role,
    StudyRun,
    TrialAttr,
    role_of,
    search_front,
    video_path,
)
from vboost.secrets import mask_url
from vboost.sweep.loggers import BackgroundLogger
from vboost.sweep.validate import SweepPlan


class VideoWriter:
    """Writes ``<study_dir>/videos/trial_<n>/<key>.mp4`` (H.264 via imageio-ffmpeg's ffmpeg), then logs it.

    With ``background`` (generation on an accelerator, CPU cores idle) encoding runs on the logger's thread,
    overlapping the next generation, and the clip is logged there right after it is written, so a logger only ever
    sees complete files. Without it (generation on the CPU) each clip is written on the calling thread between
    generations: an encode running beside torch's CPU threads slows generation by more than it takes inline
    (``benchmarks/RESULTS.md``). With ``artifact_store`` each clip is also uploaded as an Optuna artifact of its trial;
    Optuna attaches artifacts to running trials only, so the clip is then written on the calling thread too.
    """

    def __init__(self, study_dir: Path, logger: BackgroundLogger, artifact_store: Any = None, background: bool = True) -> None:
        self.study_dir = study_dir
        self._logger = logger
        self._artifact_store = artifact_store
        self._background = background and artifact_store is None

    def __call__(self, trial: optuna.Trial, key: str, video: Any) -> Path:
        """Write (or queue) ``video`` as clip ``key`` of ``trial``; returns the path it has (or will have)."""
        path = video_path(self.study_dir, trial.number, key)
        if self._background:
            self._logger.submit(self._write, trial.number, key, path, video)
            return path
        write_mp4(path, video.frames, video.fps)
        if self._artifact_store is not None:
            optuna.artifacts.upload_artifact(artifact_store=self._artifact_store, file_path=str(path), study_or_trial=trial)
        self._logger.log_video(trial.number, key, path, video.fps)
        return path

    def _write(self, trial: int, key: str, path: Path, video: Any) -> None:
        write_mp4(path, video.frames, video.fps)
        self._logger.logger.log_video(trial, key, path, video.fps)  # already on the logger's thread


def artifact_store(study_dir: Path) -> Any:
    """The Optuna artifact store of a study: files under ``<study_dir>/artifacts`` (optuna-dashboard's
    ``--artifact-dir``)."""
    from optuna.artifacts import FileSystemArtifactStore

    directory = study_dir / ARTIFACTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(directory)


def write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    """``frames`` (uint8 ``[T, H, W, 3]``) as H.264 yuv420p at crf 25 (imageio's default quality), preset veryfast
    (a third less CPU per clip than the default preset, at about the same size).

    ffmpeg is started here rather than through imageio's writer, which passes a ``preexec_fn`` and so forces a full
    fork() of this process, model weights included, for every clip; a process group of its own keeps ffmpeg out of
    a Ctrl-C just the same, and lets Python vfork.
    """
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    _, height, width, _ = frames.shape
    rate = Fraction(fps).limit_denominator()
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{width}x{height}", "-r", str(rate), "-i", "-", "-an", "-vcodec", "libx264", "-preset", "veryfast",
           "-pix_fmt", "yuv420p", "-crf", "25"]
    if height % 2 or width % 2:  # yuv420p needs even sizes: stretch by one pixel rather than to 16-px blocks
        cmd += ["-vf", f"scale={width + width % 2}:{height + height % 2}"]
    path.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([*cmd, str(path)], input=frames.tobytes(), capture_output=True, process_group=0)
    if done.returncode != 0:
        raise OSError(f"ffmpeg could not write {path}: {done.stderr.decode(errors='replace').strip()[-500:]}")


def trials_table(run: StudyRun, decision: Decision, plan: SweepPlan) -> pd.DataFrame:
    """One row per trial: number, state, role, the trial it validates, searched knobs, objective values and their
    change vs the baseline of its stage, constraint feasibility, membership of the search stage's Pareto front (the
    baseline a contender), whether it is the recommendation, seconds, and the failure or pruning reason. Surplus
    trials (pruned before they ran) are left out."""
    recommended = None if decision.recommendation is None else decision.recommendation.trial.number
    trials = [t for t in run.study.get_trials(deepcopy=False) if not t.user_attrs.get(TrialAttr.SURPLUS)]
    baselines = {Role.SEARCH: run.baseline, Role.VALIDATION: decision.baseline_validation}
    front = {t.number for t in search_front(run)}
    rows = []
    for t in trials:
        role = role_of(t)
        knobs = t.user_attrs.get(TrialAttr.KNOBS) or {}
        scores = t.user_attrs.get(TrialAttr.SCORES, {})
        baseline = baselines[Role.VALIDATION if role == Role.VALIDATION else Role.SEARCH]
        base_scores = baseline.user_attrs.get(TrialAttr.SCORES, {}) if baseline is not None else {}
        row: dict[str, Any] = {"number": t.number, "state": t.state.name, "role": str(role),
                               "validates": t.user_attrs.get(TrialAttr.CANDIDATE)}
        row.update({f"param_{k}": v for k, v in knobs.items()})
        row.update({f"sample_{k}": v for k, v in t.params.items() if k not in knobs})
        for target in plan.targets:
            value = scores.get(target.record)
            row[target.short] = value
            base = base_scores.get(target.record)
            row[f"{target.short}_vs_baseline"] = (value - base) / abs(base) if value is not None and base else None
        if plan.constraints:
            constraints = t.user_attrs.get(TrialAttr.CONSTRAINTS)
            row["feasible"] = None if constraints is None else all(c <= 0 for c in constraints)
        row["pareto"] = t.number in front
        row["recommended"] = t.number == recommended
        row["seconds"] = t.duration.total_seconds() if t.duration else None
        row["reason"] = t.user_attrs.get(TrialAttr.FAIL_REASON) or t.user_attrs.get(TrialAttr.PRUNED_REASON)
        rows.append(row)
    table = pd.DataFrame(rows)
    # Knob columns right after the role (a baseline row, which has none, comes first and would push them last).
    knob_columns = [c for c in table.columns if c.startswith(("param_", "sample_"))]
    head = ["number", "state", "role", "validates", *knob_columns]
    return table[head + [c for c in table.columns if c not in head]]


@contextlib.contextmanager
def results_lock(study_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<study_dir>/.results.lock`` (blocking) while the results files are written."""
    with (study_dir / ".results.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_results(run: StudyRun, decision: Decision, plan: SweepPlan) -> Path:
    """Write the trials table as ``trials.csv`` and ``trials.parquet``; returns the CSV's path."""
    table = trials_table(run, decision, plan)
    table.to_csv(plan.study_dir / TRIALS_CSV, index=False)
    _one_type_per_column(table).to_parquet(plan.study_dir / TRIALS_PARQUET, index=False)
    return plan.study_dir / TRIALS_CSV


def _one_type_per_column(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the values of a column that mixes types (a knob that is a list in one trial and a number in
    another) as strings: a Parquet column has one type. Missing values stay missing."""

    def missing(value: Any) -> bool:
        return value is None or (isinstance(value, float) and math.isnan(value))

    mixed = [c for c in table.columns if table[c].dtype == object and len({type(v) for v in table[c] if not missing(v)}) > 1]
    return table.assign(**{c: table[c].map(lambda v: None if missing(v) else str(v)) for c in mixed})


def export_and_report(run: StudyRun, decision: Decision, plan: SweepPlan) -> list[str]:
    """Export the decided settings to ``export/`` and make the report in ``report/``; returns what to print.

    Neither may fail a sweep whose trials are safely stored: an error becomes a warning line (the same
    ``python -m vboost.export`` / ``python -m vboost.report`` command redoes it), passwords masked.
    """
    from vboost.export import export_run
    from vboost.report import report_run

    again = f"{plan.study_dir}" + (f" --storage URL --study {plan.study_name}" if plan.cfg.study.storage else "")
    lines = []
    try:
        exported = export_run(run, decision, plan.study_dir / EXPORT_DIR)
        lines.append(f"export: {plan.study_dir / EXPORT_DIR} ({exported.summary})")
    except Exception as err:  # noqa: BLE001 -- the study is stored; an export can be redone
        lines.append(f"warning: no export ({mask_url(f'{type(err).__name__}: {err}')}); retry: python -m vboost.export {again}")
    try:
        report = report_run(run, decision, plan.study_dir / REPORT_DIR)
        lines.append(f"report: {report.summary} (summary.json, pareto.png, effects.png, report.html, "
                     f"{len(report.side_by_side)} side-by-side video(s))")
    except Exception as err:  # noqa: BLE001 -- as above
        lines.append(f"warning: no report ({mask_url(f'{type(err).__name__}: {err}')}); retry: python -m vboost.report {again}")
    return lines
