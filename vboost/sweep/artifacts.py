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
from optuna.trial import FrozenTrial, TrialState

from vboost.sweep.loggers import BackgroundLogger
from vboost.sweep.validate import SweepPlan

TRIALS_TABLE = "trials.csv"
TRIALS_PARQUET = "trials.parquet"
EXPORT_DIR = "export"
REPORT_DIR = "report"
VIDEOS_DIR = "videos"
ARTIFACTS_DIR = "artifacts"


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
        path = self.study_dir / VIDEOS_DIR / f"trial_{trial.number:04d}" / f"{key}.mp4"
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


def run_context(plan: SweepPlan) -> dict[str, Any]:
    """What a study records about how it was run (study user attrs): the method, the backbone family, its
    checkpoint (weights path, or None for the tiny random model), frames, steps, fps, prompts and seeds.

    The key names are the ones :func:`vboost.export.open_study_run` reads.
    """
    backbone, prompts = plan.cfg.backbone, plan.cfg.prompts
    return {
        "method": plan.cfg.method.name,
        "backbone": backbone.family,
        "checkpoint": backbone.weights,
        "num_frames": backbone.num_frames,
        "steps": backbone.steps,
        "fps": backbone.fps,
        "prompts": list(prompts.prompts),
        "seeds": list(prompts.seeds),
    }


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


def trials_table(study: optuna.Study, plan: SweepPlan) -> pd.DataFrame:
    """One row per trial: number, state, role, searched knobs, objective values and their change vs baseline,
    constraint feasibility, Pareto membership, seconds, and the failure or pruning reason. Surplus trials (started
    by a worker racing others when the study was full, pruned before they ran) are left out."""
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]
    baseline = next((t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("role") == "baseline"), None)
    base_scores = baseline.user_attrs.get("scores", {}) if baseline else {}
    pareto = {t.number for t in best_trials(study)}
    rows = []
    for t in trials:
        knobs = t.user_attrs.get("knobs") or {}
        scores = t.user_attrs.get("scores", {})
        row: dict[str, Any] = {"number": t.number, "state": t.state.name, "role": t.user_attrs.get("role", "search")}
        row.update({f"param_{k}": v for k, v in knobs.items()})
        row.update({f"sample_{k}": v for k, v in t.params.items() if k not in knobs})
        for target in plan.targets:
            value = scores.get(target.record)
            row[target.short] = value
            base = base_scores.get(target.record)
            row[f"{target.short}_vs_baseline"] = (value - base) / abs(base) if value is not None and base else None
        if plan.constraints:
            constraints = t.user_attrs.get("constraints")
            row["feasible"] = None if constraints is None else all(c <= 0 for c in constraints)
        row["pareto"] = t.number in pareto
        row["seconds"] = t.duration.total_seconds() if t.duration else None
        row["reason"] = t.user_attrs.get("fail_reason") or t.user_attrs.get("pruned_reason")
        rows.append(row)
    table = pd.DataFrame(rows)
    # Knob columns right after the role (a baseline row, which has none, comes first and would push them last).
    knob_columns = [c for c in table.columns if c.startswith(("param_", "sample_"))]
    head = ["number", "state", "role", *knob_columns]
    return table[head + [c for c in table.columns if c not in head]]


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto set (multi-objective) or the best trial (single), feasible ones only when constrained."""
    try:
        return study.best_trials
    except ValueError:  # no complete trial yet
        return []


@contextlib.contextmanager
def results_lock(study_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<study_dir>/.results.lock`` (blocking) while the results files are written."""
    with (study_dir / ".results.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_results(study: optuna.Study, plan: SweepPlan) -> Path:
    """Write the trials table as ``trials.csv`` and ``trials.parquet``; returns the CSV's path."""
    table = trials_table(study, plan)
    table.to_csv(plan.study_dir / TRIALS_TABLE, index=False)
    _one_type_per_column(table).to_parquet(plan.study_dir / TRIALS_PARQUET, index=False)
    return plan.study_dir / TRIALS_TABLE


def _one_type_per_column(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the values of a column that mixes types (a knob that is a list in one trial and a number in
    another) as strings: a Parquet column has one type. Missing values stay missing."""

    def missing(value: Any) -> bool:
        return value is None or (isinstance(value, float) and math.isnan(value))

    mixed = [c for c in table.columns if table[c].dtype == object and len({type(v) for v in table[c] if not missing(v)}) > 1]
    return table.assign(**{c: table[c].map(lambda v: None if missing(v) else str(v)) for c in mixed})


def export_and_report(plan: SweepPlan) -> list[str]:
    """Export the best settings to ``export/`` and make the report in ``report/``; returns what to print.

    Neither may fail a sweep whose trials are safely stored: an error becomes a warning line (the same
    ``python -m vboost.export`` / ``python -m vboost.report`` command redoes it), passwords masked.
    """
    from vboost.export import export_study, mask_url

    where = {"storage": plan.storage_url, "study_name": plan.study_name}
    again = f"{plan.study_dir}" + (f" --storage URL --study {plan.study_name}" if plan.cfg.study.storage else "")
    lines = []
    try:
        exported = export_study(plan.study_dir, **where, out=plan.study_dir / EXPORT_DIR)
        lines.append(f"export: {plan.study_dir / EXPORT_DIR} ({len(exported)} setting(s): preset, diffusers snippet, ComfyUI values)")
    except Exception as err:  # noqa: BLE001 -- the study is stored; an export can be redone
        lines.append(f"warning: no export ({mask_url(f'{type(err).__name__}: {err}')}); retry: python -m vboost.export {again}")
    try:
        from vboost.report import make_report

        report = make_report(plan.study_dir, **where, out=plan.study_dir / REPORT_DIR)
        lines.append(f"report: {report.summary} (pareto.png, report.html, {len(report.side_by_side)} side-by-side video(s))")
    except Exception as err:  # noqa: BLE001 -- as above
        lines.append(f"warning: no report ({mask_url(f'{type(err).__name__}: {err}')}); retry: python -m vboost.report {again}")
    return lines
