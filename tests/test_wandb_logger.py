"""The W&B logger in offline mode, read back with wandb's own reader of the run files (``wandb leet inspect``)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import warnings
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from omegaconf import OmegaConf

from vboost.sweep.wandb_logger import WandbLogger

PASSWORD = "s3cr3t-Pw9"
STORAGE = f"postgresql://alice:{PASSWORD}@db.example:5432/vboost"
STUDY = "tiny-eav-mvc"
CONF = Path(__file__).resolve().parents[1] / "conf" / "logger" / "wandb.yaml"


def write_mp4(path: Path, level: int) -> bytes:
    """A 5-frame 16x16 clip whose brightness depends on ``level``; returns the file's bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [np.full((16, 16, 3), (level * 37 + 20 * i) % 256, np.uint8) for i in range(5)]
    imageio.mimwrite(path, frames, fps=8, macro_block_size=2)
    return path.read_bytes()


def inspect_runs(wandb_dir: Path) -> dict[str, list[dict]]:
    """Records of every run's ``.wandb`` file under ``wandb_dir``, by display name, decoded by wandb itself."""
    files = sorted(wandb_dir.glob("offline-run-*/run-*.wandb"))
    procs = [
        subprocess.Popen([sys.executable, "-m", "wandb", "leet", "inspect", "--json", f], stdout=subprocess.PIPE, text=True)
        for f in files
    ]
    runs = {}
    for f, proc in zip(files, procs):
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, f
        records = [json.loads(line) for line in out.splitlines() if line.strip()]
        run = next(r["run"] for r in records if r["type"] == "run")
        runs[run["display_name"]] = [{**r, "run_dir": f.parent} for r in records]
    return runs


def config_of(records):
    return next(r["run"] for r in records if r["type"] == "run")["config"]["update"]


def history_of(records):
    return {r["history"]["step"]["num"]: r["history"]["item"] for r in records if r["type"] == "history"}


def summary_of(records):
    summary = {}
    for r in records:
        if r["type"] == "summary":
            summary.update(r["summary"].get("update", {}))
    return summary


def exit_code_of(records):
    return next(r["exit"] for r in records if r["type"] == "exit").get("exit_code", 0)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Drive the logger like a sweep would: two complete trials, one failed trial; a clip is logged once written."""
    root = tmp_path_factory.mktemp("wandb")
    study_dir = root / STUDY
    with pytest.MonkeyPatch.context() as mp:
        for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
            mp.setenv(var, str(root / var.lower()))
        # No data directory set: the preset artifact must still be staged inside the study directory, not in HOME.
        mp.delenv("WANDB_DATA_DIR", raising=False)
        mp.setenv("HOME", str(root / "home"))
        mp.delenv("WANDB_API_KEY", raising=False)
        # W&B's metadata would record the command line, where a storage URL with its password often is.
        mp.setattr(sys, "argv", [sys.argv[0], f"study.storage={STORAGE}"])
        cfg = OmegaConf.merge(OmegaConf.load(CONF), {"tags": ["ci"]})
        run_config = {"backbone": "tiny_cogvideox", "method": "enhance_a_video", "storage": STORAGE}
        logged = {"params": {}, "steps": {}, "final": {}, "videos": {}}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            logger = WandbLogger(cfg, study_dir, STUDY, run_config=run_config)
            for trial, weight in ((0, 1.5), (1, 3.25)):
                params = {"role": "search", "weight": weight, "end": 1.0, "note": f"resumed from {STORAGE}"}
                logger.log_params(trial, params)
                logged["params"][trial] = params
                for step in range(2):
                    key, path = f"p{step}_s0", study_dir / "videos" / f"trial_{trial:04d}" / f"p{step}_s0.mp4"
                    logged["videos"][(trial, key)] = write_mp4(path, 3 * trial + step)
                    logger.log_video(trial, key, path, 8.0)
                    metrics = {"motion": 0.25 * (step + 1) + trial, "consistency": 0.9 - 0.125 * step * (trial + 1)}
                    logger.log_metrics(trial, metrics, step=step)
                    logged["steps"][(trial, step)] = metrics
                final = {"proxy/motion": 0.375 + trial, "proxy/consistency": 0.8125, "method/feta": 0.0625 * (trial + 1)}
                logger.log_metrics(trial, final)
                logged["final"][trial] = final
            logger.log_params(2, {"role": "search", "weight": 7.0})
            logger.log_metrics(2, {"motion": 0.5, "consistency": 0.25}, step=0)  # then the trial raises
            # The files the sweep writes before finalize (vboost.sweep.artifacts.write_results).
            trials_csv = (
                "number,state,role,param_weight,motion,consistency,pareto,reason\n"
                "0,COMPLETE,search,1.5,0.375,0.8125,False,\n"
                "1,COMPLETE,search,3.25,1.375,0.8125,True,\n"
                f"2,FAIL,search,7.0,,,False,OperationalError: could not connect to {STORAGE}\n"
            )
            (study_dir / "trials.csv").write_text(trials_csv)
            preset = f"method: enhance_a_video\nknobs:\n  weight: 3.25\nstudy: {STUDY}\nstorage: {STORAGE}\n"
            (study_dir / "export" / "recommended").mkdir(parents=True)
            (study_dir / "export" / "recommended" / "preset.yaml").write_text(preset)
            logger.finalize("finished")
        logged.update(trials_csv=trials_csv, preset=preset, warnings=[str(w.message) for w in caught])
        yield {"root": root, "study_dir": study_dir, "runs": inspect_runs(study_dir / "wandb"), "logged": logged}


def test_one_run_per_trial_grouped_by_study_with_params_in_config(sweep):
    runs, logged = sweep["runs"], sweep["logged"]
    assert set(runs) == {f"{STUDY}-trial-0", f"{STUDY}-trial-1", f"{STUDY}-trial-2", f"{STUDY}-study"}
    assert not [w for w in logged["warnings"] if "W&B" in w]
    for trial in (0, 1):
        records = runs[f"{STUDY}-trial-{trial}"]
        run = next(r["run"] for r in records if r["type"] == "run")
        assert (run["run_group"], run["job_type"], run["project"], run["tags"]) == (STUDY, "trial", "vboost", ["ci"])
        config = config_of(records)
        expected = {**logged["params"][trial], "note": "resumed from " + STORAGE.replace(PASSWORD, "***")}
        assert {k: config[k] for k in expected} == expected
        context = (config["backbone"], config["method"], config["trial"], config["study"])
        assert context == ("tiny_cogvideox", "enhance_a_video", trial, STUDY)


def test_per_prompt_metrics_at_prompt_steps_and_final_values_in_summary(sweep):
    runs, logged = sweep["runs"], sweep["logged"]
    for trial in (0, 1):
        records = runs[f"{STUDY}-trial-{trial}"]
        history = history_of(records)
        assert sorted(history) == [0, 1]
        for step in (0, 1):
            for key, value in logged["steps"][(trial, step)].items():
                assert history[step][key] == value
        summary = summary_of(records)
        assert {k: summary[k] for k in logged["final"][trial]} == logged["final"][trial]
        assert exit_code_of(records) == 0
    failed = runs[f"{STUDY}-trial-2"]
    assert history_of(failed)[0]["motion"] == 0.5
    assert exit_code_of(failed) != 0  # it ended without final metrics


def test_videos_are_the_trials_mp4_files(sweep):
    runs, logged = sweep["runs"], sweep["logged"]
    for trial in (0, 1):
        records = runs[f"{STUDY}-trial-{trial}"]
        summary = summary_of(records)
        for step in (0, 1):
            key = f"p{step}_s0"
            assert summary[f"video/{key}._type"] == "video-file"
            media = records[0]["run_dir"] / "files" / summary[f"video/{key}.path"]
            assert media.suffix == ".mp4"
            assert media.read_bytes() == logged["videos"][(trial, key)]
            uploads = [f["path"] for r in records if r["type"] == "files" for f in r["files"]["files"]]
            assert summary[f"video/{key}.path"] in uploads


def test_study_run_has_trials_and_pareto_tables_and_the_preset_artifact(sweep):
    runs, logged = sweep["runs"], sweep["logged"]
    records = runs[f"{STUDY}-study"]
    run = next(r["run"] for r in records if r["type"] == "run")
    assert (run["job_type"], run["run_group"]) == ("study", STUDY)
    summary = summary_of(records)
    rows = list(csv.DictReader(logged["trials_csv"].splitlines()))
    tables = {}
    for name in ("trials", "pareto"):
        assert summary[f"{name}._type"] == "table-file"
        tables[name] = json.loads((records[0]["run_dir"] / "files" / summary[f"{name}.path"]).read_text())
        assert tables[name]["columns"] == list(rows[0])
    assert [r[0] for r in tables["trials"]["data"]] == [int(r["number"]) for r in rows]
    assert [r[3] for r in tables["trials"]["data"]] == [float(r["param_weight"]) for r in rows]
    assert [r[0] for r in tables["pareto"]["data"]] == [int(r["number"]) for r in rows if r["pareto"] == "True"]
    masked = STORAGE.replace(PASSWORD, "***")
    assert tables["trials"]["data"][2][-1] == f"OperationalError: could not connect to {masked}"
    artifacts = [r["artifact"] for r in records if r["type"] == "artifact" and r["artifact"]["type"] == "preset"]
    assert len(artifacts) == 1
    (entry,) = artifacts[0]["manifest"]["contents"]
    assert entry["path"] == "recommended/preset.yaml"
    assert Path(entry["local_path"]).read_text() == logged["preset"].replace(PASSWORD, "***")
    # Staged inside the study directory, so a copy of it syncs later with nothing missing; nothing under HOME.
    assert Path(entry["local_path"]).is_relative_to(sweep["study_dir"])
    assert not (sweep["root"] / "home").exists() or not any((sweep["root"] / "home").rglob("*.yaml"))
    assert summary["status"] == "finished"


def test_storage_password_is_in_no_file_wandb_wrote(sweep):
    # Everything under the test's root but the two inputs that hold the URL on purpose.
    inputs = {sweep["study_dir"] / "trials.csv", sweep["study_dir"] / "export" / "recommended" / "preset.yaml"}
    files = [p for p in sweep["root"].rglob("*") if p.is_file() and p not in inputs]
    assert len([p for p in files if p.suffix == ".wandb"]) == 4 and len(files) > 20  # run files, logs, media, staging
    leaked = [p for p in files if PASSWORD.encode() in p.read_bytes()]
    assert leaked == []


def test_a_broken_wandb_warns_once_and_never_raises(tmp_path, monkeypatch):
    import wandb

    def broken_init(**kwargs):
        raise RuntimeError(f"cannot reach the server for {STORAGE}")

    monkeypatch.setattr(wandb, "init", broken_init)
    logger = WandbLogger(OmegaConf.load(CONF), tmp_path, STUDY, run_config={"storage": STORAGE})
    with pytest.warns(RuntimeWarning, match=r"W&B init failed") as caught:
        logger.log_params(0, {"role": "baseline"})
        logger.log_metrics(0, {"motion": 1.0}, step=0)
        logger.log_video(0, "p0_s0", tmp_path / "missing.mp4", 8.0)
        logger.log_metrics(0, {"motion": 1.0})
        logger.log_params(1, {"role": "search", "weight": 2.0})
        logger.finalize("finished")
    messages = [str(w.message) for w in caught if "W&B" in str(w.message)]
    assert len(messages) == 1
    assert PASSWORD not in messages[0] and "alice:***@" in messages[0]


def test_a_log_call_raising_warns_once_finishes_the_run_and_turns_logging_off(tmp_path, monkeypatch):
    import types

    import wandb

    calls = []

    def failing_log(*args, **kwargs):
        calls.append("log")
        raise OSError("disk full")

    def stub_init(**kwargs):
        calls.append("init")
        return types.SimpleNamespace(log=failing_log, finish=lambda exit_code: calls.append(f"finish {exit_code}"))

    monkeypatch.setattr(wandb, "init", stub_init)
    logger = WandbLogger(OmegaConf.load(CONF), tmp_path, STUDY, run_config={})
    with pytest.warns(RuntimeWarning, match=r"W&B log failed \(OSError: disk full\)") as caught:
        logger.log_params(0, {"role": "search", "weight": 1.0})
        logger.log_metrics(0, {"motion": 1.0}, step=0)
        logger.log_metrics(0, {"motion": 1.0}, step=1)
        logger.log_params(1, {"role": "search", "weight": 2.0})
        logger.finalize("finished")
    assert len([w for w in caught if "W&B" in str(w.message)]) == 1
    assert calls == ["init", "log", "finish 1"]


def test_a_missing_wandb_warns_and_never_raises(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.warns(RuntimeWarning, match=r"W&B import failed"):
        logger = WandbLogger(OmegaConf.load(CONF), tmp_path, STUDY, run_config={})
    logger.log_params(0, {"role": "baseline"})
    logger.log_metrics(0, {"motion": 1.0})
    logger.finalize("finished")
    assert not (tmp_path / "wandb").exists()


def test_a_bad_mode_is_named():
    with pytest.raises(ValueError, match=r"logger.mode='onlin'"):
        WandbLogger(OmegaConf.create({"name": "wandb", "mode": "onlin"}), Path("unused"), STUDY, run_config={})
