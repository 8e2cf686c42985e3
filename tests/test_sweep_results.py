"""What a real ``python -m vboost.sweep`` leaves for people to see and reuse: per-video scores and the run context in
the study, the trials table (CSV and Parquet), W&B offline runs, Optuna artifacts, the export and the report; and a
storage URL's password in none of it."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

from in_process import run_sweep
from test_wandb_logger import config_of, exit_code_of, inspect_runs, summary_of

REPO = Path(__file__).resolve().parents[1]
PROMPT = "a cat walks on the beach"
SEEDS = [0, 1]
NUM_FRAMES, HEIGHT, WIDTH = 9, 32, 32
HELD_OUT = "a dog runs on the beach"
TINY = ["backbone.steps=2", f"backbone.num_frames={NUM_FRAMES}", f"backbone.height={HEIGHT}", f"backbone.width={WIDTH}",
        f"prompts.prompts=[{PROMPT}]", "study.heartbeat_interval=null", f"validation.prompts=[{HELD_OUT}]",
        "validation.seeds=[5,6]"]
STUDY = "tiny_cogvideox-enhance_a_video-motion_vs_consistency"
TARGETS = ["proxy/dynamic_degree_magnitude", "proxy/subject_consistency"]
TINY_COGVIDEOX = yaml.safe_load((REPO / "conf" / "backbone" / "tiny_cogvideox.yaml").read_text())


def sweep(cwd: Path, *overrides: str, multirun: bool = False, own_process: bool = False) -> subprocess.CompletedProcess:
    """The real CLI in ``cwd`` (in this process unless ``own_process``), with W&B's own directories there too and no
    API key."""
    env = {var: str(cwd / var.lower()) for var in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR")}
    args = [*(["-m"] if multirun else []), f"output_dir={cwd / 'outputs'}", *TINY, *overrides]
    if not own_process:
        return run_sweep(args, cwd, env={**env, "WANDB_API_KEY": None})
    env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("WANDB_API_KEY", None)
    return subprocess.run([sys.executable, "-m", "vboost.sweep", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=240)


def load(cwd: Path) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{cwd / 'outputs' / STUDY / 'study.db'}")


@pytest.fixture(scope="module")
def wandb_sweep(tmp_path_factory):
    """Three trials (baseline, paper, one searched), two seeds, logged to W&B offline."""
    cwd = tmp_path_factory.mktemp("wandb_sweep")
    result = sweep(cwd, "logger=wandb", "study.n_trials=3", f"prompts.seeds={SEEDS}")
    assert result.returncode == 0, result.stderr
    return cwd, result


def test_per_video_scores_and_the_run_context_are_in_the_study(wandb_sweep):
    cwd, _ = wandb_sweep
    study = load(cwd)
    context = {key: study.user_attrs[key] for key in ("method", "backbone", "checkpoint", "num_frames", "steps", "fps", "prompts", "seeds")}
    assert context == {
        "method": "enhance_a_video", "backbone": TINY_COGVIDEOX["family"], "checkpoint": TINY_COGVIDEOX["weights"],
        "num_frames": NUM_FRAMES, "steps": 2, "fps": TINY_COGVIDEOX["fps"], "prompts": [PROMPT], "seeds": SEEDS,
    }
    assert (study.user_attrs["validation_prompts"], study.user_attrs["validation_seeds"]) == ([HELD_OUT], [5, 6])
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        per_video = trial.user_attrs["video_scores"]
        files = {p.stem for p in (cwd / "outputs" / STUDY / "videos" / f"trial_{trial.number:04d}").glob("*.mp4")}
        seeds = [5, 6] if trial.user_attrs["role"] == "validation" else SEEDS
        assert set(per_video) == files == {f"p0_s{seed}" for seed in seeds}
        # Equal-length clips: both objectives aggregate as the plain mean over clips.
        for value, record in zip(trial.values, TARGETS):
            assert value == pytest.approx(np.mean([scores[record] for scores in per_video.values()]))


def test_the_decision_reads_the_per_clip_differences_of_the_validation_trials(wandb_sweep):
    cwd, result = wandb_sweep
    study = load(cwd)
    summary = json.loads((cwd / "outputs" / STUDY / "report" / "summary.json").read_text())
    trials = study.get_trials()
    held_out_baseline = trials[summary["baseline_validation_trial"]]
    assert held_out_baseline.user_attrs["candidate"] == summary["baseline_trial"] == 0
    for candidate in summary["candidates"]:
        validation = trials[candidate["validation_trial"]]
        assert validation.user_attrs["candidate"] == candidate["trial"]
        ours, base = validation.user_attrs["video_scores"], held_out_baseline.user_attrs["video_scores"]
        for record in TARGETS:
            diff = [ours[key][record] - base[key][record] for key in sorted(base)]
            assert candidate["effects"][record]["mean"] == pytest.approx(np.mean(diff))
            assert candidate["effects"][record]["n"] == 2
    assert result.stdout.strip().splitlines()[-1].startswith("recommendation: ")


def test_trials_table_as_csv_and_parquet(wandb_sweep):
    cwd, _ = wandb_sweep
    out = cwd / "outputs" / STUDY
    csv, parquet = pd.read_csv(out / "trials.csv"), pd.read_parquet(out / "trials.parquet")
    assert list(parquet.columns) == list(csv.columns)
    assert list(parquet["number"]) == [t.number for t in load(cwd).get_trials()]
    # Same content: the Parquet table written out as CSV reads back as the CSV table.
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(parquet.to_csv(index=False))), csv)


def test_wandb_offline_runs_hold_each_trials_config_metrics_and_videos(wandb_sweep):
    cwd, _ = wandb_sweep
    out = cwd / "outputs" / STUDY
    runs = inspect_runs(out / "wandb")
    trials = load(cwd).get_trials()
    assert set(runs) == {f"{STUDY}-trial-{t.number}" for t in trials} | {f"{STUDY}-study"}
    for trial in trials:
        records = runs[f"{STUDY}-trial-{trial.number}"]
        config = config_of(records)
        assert (config["backbone"], config["method"], config["role"]) == ("cogvideox", "enhance_a_video", trial.user_attrs["role"])
        assert config["storage"] == f"sqlite:///{out / 'study.db'}"
        summary = summary_of(records)
        assert [summary[record] for record in TARGETS] == pytest.approx(trial.values)
        for seed in [5, 6] if trial.user_attrs["role"] == "validation" else SEEDS:
            media = records[0]["run_dir"] / "files" / summary[f"video/p0_s{seed}.path"]
            assert media.read_bytes() == (out / "videos" / f"trial_{trial.number:04d}" / f"p0_s{seed}.mp4").read_bytes()
        assert exit_code_of(records) == 0
    study_run = runs[f"{STUDY}-study"]
    assert summary_of(study_run)["n_trials"] == len(trials)
    (artifact,) = [r["artifact"] for r in study_run if r["type"] == "artifact" and r["artifact"]["type"] == "preset"]
    exported = sorted(str(p.relative_to(out / "export")) for p in (out / "export").glob("*/**/preset.*"))
    assert exported and sorted(entry["path"] for entry in artifact["manifest"]["contents"]) == exported


def test_export_and_report_are_made_at_the_end_of_the_sweep(wandb_sweep):
    cwd, result = wandb_sweep
    out = cwd / "outputs" / STUDY
    summary = json.loads((out / "report" / "summary.json").read_text())
    exported = sorted((out / "export").glob("alternatives/trial_*")) + sorted((out / "export").glob("recommended"))
    alternatives = {c["trial"] for c in summary["candidates"] if not c["recommended"]}
    assert {int(d.name.split("_")[1]) for d in exported if d.name != "recommended"} == alternatives
    assert exported and (out / "export" / "README.md").is_file()
    for directory in exported:
        for name in ("preset.yaml", "preset.json", "diffusers_vboost.py", "comfyui.json", "README.md"):
            assert (directory / name).is_file(), directory / name
    for name in ("pareto.png", "effects.png", "report.html", "summary.md", "summary.json"):
        assert (out / "report" / name).is_file(), name
    assert f"report: {out / 'report' / 'summary.md'}" in result.stdout
    (mp4,) = (out / "report" / "side_by_side").glob("*.mp4")
    frames = iio.imread(mp4)
    assert frames.shape[0] == NUM_FRAMES and frames.shape[2] % WIDTH == 0  # baseline | paper default | a candidate
    assert (out / "report" / "side_by_side" / f"{mp4.stem}.gif").is_file()
    # The first panel, under its label band, is the held-out baseline's first-seed clip (both lossy): it is closer
    # to that clip than to the other held-out clips of the baseline and of the candidates.
    panel = frames[:, frames.shape[1] - HEIGHT:, :WIDTH].astype(float)
    videos = out / "videos"
    first = videos / f"trial_{summary['baseline_validation_trial']:04d}" / "p0_s5.mp4"
    others = [videos / f"trial_{c['validation_trial']:04d}" / "p0_s5.mp4" for c in summary["candidates"]]
    others.append(first.with_name("p0_s6.mp4"))
    distance = {path: np.abs(panel - iio.imread(path).astype(float)).mean() for path in [first, *others]}
    assert distance[first] < min(distance[p] for p in others)


@pytest.mark.parametrize(("height", "width"), [(32, 48), (33, 31)])
def test_clips_are_h264_mp4s_of_the_frames(tmp_path, height, width):
    from vboost.sweep.artifacts import write_mp4

    y, x = np.mgrid[:height, :width]
    frames = np.stack([np.stack([x * 4 + 8 * t, y * 4, (x + y) * 2 + 16 * t], -1) for t in range(6)]).astype(np.uint8)
    path = tmp_path / "videos" / "clip.mp4"
    write_mp4(path, frames, 12.0)
    back = iio.imread(path)
    assert iio.immeta(path)["fps"] == 12.0 and iio.immeta(path)["codec"] == "h264"
    assert back.shape == (6, height + height % 2, width + width % 2, 3)  # odd sizes grow by one pixel (yuv420p)
    if not (height % 2 or width % 2):
        assert np.abs(back.astype(float) - frames).mean() < 3.0  # lossy at crf 25, but these frames
    (tmp_path / "videos" / "taken.mp4").mkdir()
    with pytest.raises(OSError, match="ffmpeg could not write .*taken.mp4"):
        write_mp4(tmp_path / "videos" / "taken.mp4", frames, 12.0)


@pytest.mark.parametrize("background", [True, False], ids=["beside generation", "between generations"])
def test_each_clip_is_logged_once_its_file_is_complete(tmp_path, background):
    from types import SimpleNamespace

    from vboost.sweep.artifacts import VideoWriter
    from vboost.sweep.loggers import BackgroundLogger, NullLogger

    logged = []

    class Recorder(NullLogger):
        def log_video(self, trial, key, path, fps):
            logged.append((trial, key, len(iio.imread(path)), fps))  # reads the whole file: it must be complete

    logger = BackgroundLogger(Recorder(None, tmp_path, "study", {}))
    writer = VideoWriter(tmp_path, logger, background=background)
    frames = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    paths = [writer(SimpleNamespace(number=3), key, SimpleNamespace(frames=frames, fps=8.0)) for key in ("p0_s0", "p1_s0")]
    logger.finalize("finished")
    assert paths == [tmp_path / "videos" / "trial_0003" / f"{key}.mp4" for key in ("p0_s0", "p1_s0")]
    assert logged == [(3, "p0_s0", 5, 8.0), (3, "p1_s0", 5, 8.0)]


def test_videos_as_optuna_artifacts(tmp_path):
    result = sweep(tmp_path, "optuna_artifacts=true", "logger=none", "study.n_trials=2", "prompts.seeds=[0]")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "outputs" / STUDY
    store = optuna.artifacts.FileSystemArtifactStore(out / "artifacts")
    study = load(tmp_path)
    for trial in study.get_trials():
        metas = optuna.artifacts.get_all_artifact_meta(trial, storage=study._storage)
        assert sorted(m.filename for m in metas) == sorted(f"{key}.mp4" for key in trial.user_attrs["video_scores"])
        for meta in metas:
            assert meta.mimetype == "video/mp4"
            with store.open_reader(meta.artifact_id) as stored:
                assert stored.read() == (out / "videos" / f"trial_{trial.number:04d}" / meta.filename).read_bytes()


def test_a_csv_sweep_never_imports_wandb():
    code = (
        "import sys; from pathlib import Path; from omegaconf import OmegaConf; "
        "from vboost.sweep.loggers import build_logger; import tempfile; "
        "build_logger(OmegaConf.create({'name': 'csv'}), Path(tempfile.mkdtemp()), 's', {}).finalize('finished'); "
        "print('wandb' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


@pytest.mark.slow
def test_a_storage_password_is_in_no_output_file_and_no_printed_line(tmp_path, postgres):
    secret = "s3cret"
    storage = postgres.replace("postgres@", f"postgres:{secret}@")  # trust auth ignores the password
    name = f"vboost-secret-{uuid.uuid4().hex[:12]}"
    common = [f"study.storage={storage}", f"study.name={name}"]
    try:
        runs = [
            # Trials, W&B runs, export and report; then a multirun job resuming the same (full) study; then a
            # config that does not match the stored study (its error names the storage). Each in a process of its
            # own, so that every line it prints, its children's too, is read here.
            sweep(tmp_path, *common, "logger=wandb", "study.n_trials=2", "prompts.seeds=[0]", own_process=True),
            sweep(tmp_path, *common, "study.n_trials=1", "prompts.seeds=[0]", "backbone=tiny_cogvideox", multirun=True,
                  own_process=True),
            sweep(tmp_path, *common, "objective=motion_within_consistency", own_process=True),
        ]
        assert [r.returncode for r in runs[:2]] == [0, 0], runs[0].stderr + runs[1].stderr
        assert runs[2].returncode != 0 and "postgres:***@127.0.0.1" in runs[2].stderr
        trials = optuna.load_study(study_name=name, storage=storage).get_trials()
        assert [t.user_attrs["role"] for t in trials if t.user_attrs["role"] != "validation"] == ["baseline", "paper"]
    finally:
        with contextlib.suppress(KeyError):  # KeyError: the first run failed before creating it
            optuna.delete_study(study_name=name, storage=storage)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    saved = [p for p in files if p.name == "config.yaml" and p.parent.name == ".hydra"]
    assert saved and all("postgres:***@127.0.0.1" in p.read_text() for p in saved)  # kept, with the password masked
    assert any(p.name == "multirun.yaml" for p in files) and any(p.suffix == ".wandb" for p in files)
    assert any(p.parent.name == "report" for p in files) and any(p.name == "preset.yaml" and "export" in p.parts for p in files)
    leaked = [str(p) for p in files if secret.encode() in p.read_bytes()]
    printed = [line for r in runs for line in (r.stdout + r.stderr).splitlines() if secret in line]
    assert leaked == [] and printed == []
