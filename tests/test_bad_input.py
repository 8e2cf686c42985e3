"""The bad-input catalogue: every mistake a user makes on the command line is refused with one line naming the bad
value, before anything heavy loads (diffusers is never imported), with no password in any printed line, and an
existing study's finished trials untouched.

The cases run through the real ``python -m vboost.sweep`` entry point, one after another in one process (the
driver below), so the catalogue costs one start of Python, torch and Hydra instead of one per case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest

from in_process import run_sweep

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "Hunter2-s3cret"
STUDY = "tiny_cogvideox-enhance_a_video-motion_vs_consistency"
TINY = ["backbone.steps=2", "backbone.num_frames=9", "backbone.height=32", "backbone.width=32",
        "prompts.prompts=[a cat walks on the beach]", "study.heartbeat_interval=null", "validation.top_k=0",
        "logger=none", "save_videos=false"]

# Runs each case's overrides through the sweep's entry point and reports what it printed, its exit code and
# whether diffusers has been imported (it never should be).
DRIVER = textwrap.dedent("""
    import contextlib, io, json, runpy, sys
    from hydra.core.global_hydra import GlobalHydra

    results = []
    for case in json.loads(sys.argv[1]):
        out, err, code = io.StringIO(), io.StringIO(), 0
        sys.argv = ["vboost.sweep", *case]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_module("vboost.sweep", run_name="__main__")
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else 1
        GlobalHydra.instance().clear()
        results.append({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(), "diffusers": "diffusers" in sys.modules})
    print(json.dumps(results))
""")


def run_cases(cwd: Path, cases: list[list[str]], env: dict[str, str] | None = None, pythonpath: list[str] = ()) -> list[dict]:
    env = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join([*pythonpath, str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(cases)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def trial_record(study_dir: Path) -> list[tuple]:
    study = optuna.load_study(study_name=study_dir.name, storage=f"sqlite:///{study_dir / 'study.db'}")
    return [(t.number, t.state, t.values, t.datetime_start, t.datetime_complete, t.user_attrs) for t in study.trials]


# (overrides, the text the one line must hold); each runs against a directory that holds a finished study.
OURS = [
    (["backbone.num_frames=10"], "backbone.num_frames=10: cogvideox takes 4k+1 frames; nearest: 9 or 13"),
    (["backbone.height=63"], "backbone.height=63: cogvideox takes multiples of 16"),
    (["backbone.width=8"], "backbone.width=8: cogvideox takes multiples of 16"),
    (["backbone.guidance=-3"], "backbone.guidance=-3.0 must be >= 0"),
    (["backbone.num_frames=100001"], "backbone.num_frames=100001 at 64x64 makes 400016 attention tokens"),
    (["backbone.fps=0"], "backbone.fps=0.0 must be positive"),
    (["backbone.dtype=float8"], "backbone.dtype='float8' is not one of"),
    (["backbone.weights=/no/such/weights"], "backbone.weights='/no/such/weights' is not a directory"),
    (["backbone=cogvideox_2b"], "backbone.weights is not set"),
    (["backbone=cogvideox_2b", "backbone.weights=CHECKPOINT", "backbone.num_frames=97"],
     "backbone.num_frames=97 exceeds backbone.max_frames=49"),
    (["backbone=cogvideox_2b", "backbone.weights=/tmp"], "config.json' not found"),
    (["method=bytheway"], "does not support backbone 'cogvideox' (CogVideoXTransformer3DModel)"),
    (["method.search_space.weight=\"interval(1.0, 0.2)\""], "interval(1.0, 0.2)"),
    (["backbone=tiny_animatediff", "method=bytheway", "method.search_space.tau=\"range(0, 12)\""], "tau=11 exceeds 7 for F=16"),
    (["backbone=tiny_animatediff", "method=bytheway", "backbone.num_frames=40"],
     "backbone.num_frames=40 gives 40 latent frames; the animatediff denoiser has positions for 32 at most"),
    (["objective.targets=[{dimension: dynamic_dgree}]"], "dynamic_dgree"),
    (["objective.targets=[{dimension: subject_consistency, tolerance: 1.5}]"], "tolerance=1.5 must be in [0, 1)"),
    (["device=cuda"], "device='cuda': no CUDA device is visible"),
    (["device=cuda:1"], "device='cuda:1': no CUDA device is visible"),
    (["device=tpu"], "device='tpu' is not a torch device"),
    (["objective.device=cuda"], "objective.device='cuda': no CUDA device is visible"),
    ([f"study.storage=postgresql://user:{PASSWORD}@127.0.0.1:1/db"], "study.storage='postgresql://user:***@127.0.0.1:1/db' cannot be opened"),
    (["study.storage=postgresql://user:${oc.env:VBOOST_DB_PASSWORD}@127.0.0.1:1/db"],
     "study.storage='postgresql://user:***@127.0.0.1:1/db' cannot be opened"),
    ([f"study.storage=mysql://user:{PASSWORD}@localhost/db"], "study.storage='mysql://user:***@localhost/db' needs the mysqldb driver"),
    (["study.storage=not-a-url"], "study.storage='not-a-url' is not a database URL"),
    (["study.n_trials=0"], "study.n_trials=0 must be at least 1"),
    (["prompts.seeds=[]"], "prompts: needs at least one prompt and one seed"),
    (["validation.top_k=-1"], "validation.top_k=-1"),
    (["validation.confidence=1.5"], "validation.confidence=1.5 must be in (0, 1)"),
    (["validation.prompts=[]"], "validation needs held-out prompts"),
    (["validation.prompts=[a cat walks on the beach]", "validation.seeds=[0]"],
     "validation clip 'a cat walks on the beach' with seed 0 is also a search clip"),
    (["imports=[no_such_module_of_mine]"], "imports: cannot import 'no_such_module_of_mine'"),
    (["logger=wandb", "logger.mode=sideways"], "logger.mode='sideways' is not one of offline, online"),
    (["study.name=damaged"], "damaged/study.db is not a readable Optuna study (file is not a database)"),
    (["objective.backend=vbench", "objective.weights_dir=EMPTY", "backbone.height=128", "backbone.width=128"],
     "objective: dynamic_degree (vbench tier) needs 'EMPTY/raft_model/models/raft-things.pth'"),
    (["objective.backend=vbench", "objective.weights_dir=/no/such/cache"], "objective.weights_dir='/no/such/cache' is not a directory"),
    (["objective=motion_within_consistency", "objective.backend=vbench"],
     "objective: vbench/dynamic_degree scores frames of at least 121 px a side; backbone.height=64, backbone.width=64"),
]
# Hydra's own refusals (a typo in a key, an unknown config option, a wrong type) keep Hydra's messages.
HYDRAS = [
    (["study.n_trails=3"], "n_trails"),
    (["backbone=no_such_backbone"], "no_such_backbone"),
    (["study.n_trials=many"], "many"),
    (["logger=nowhere"], "nowhere"),
]


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    """A finished tiny study, then every case against its directory; returns the results and the study's record
    before and after."""
    cwd = tmp_path_factory.mktemp("bad_input")
    outputs = cwd / "outputs"
    made = run_sweep([f"output_dir={outputs}", *TINY, "study.n_trials=2"], cwd)
    assert made.returncode == 0, made.stderr
    before = trial_record(outputs / STUDY)
    (outputs / "damaged").mkdir()
    (outputs / "damaged" / "study.db").write_text("not an Optuna study\n")
    from vboost.backbones import CogVideoXBackbone

    CogVideoXBackbone.tiny().save_pretrained(cwd / "CogVideoX-2b")
    (cwd / "empty").mkdir()
    cases = [[f"output_dir={outputs}", *[o.replace("CHECKPOINT", str(cwd / "CogVideoX-2b")).replace("EMPTY", str(cwd / "empty"))
                                        for o in overrides]]
             for overrides, _ in OURS + HYDRAS]
    results = run_cases(cwd, cases, env={"VBOOST_DB_PASSWORD": PASSWORD})
    return dict(zip([tuple(o) for o, _ in OURS + HYDRAS], results)), before, trial_record(outputs / STUDY), outputs


@pytest.mark.parametrize(("overrides", "message"), OURS, ids=[" ".join(o) for o, _ in OURS])
def test_a_mistake_is_one_line_naming_it_before_anything_loads(catalogue, overrides, message):
    results, _, _, outputs = catalogue
    result = results[tuple(overrides)]
    lines = result["stderr"].strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("vboost.sweep: error: "), result["stderr"]
    assert message.replace("EMPTY", str(outputs.parent / "empty")) in lines[0]
    assert result["code"] == 2
    assert not result["diffusers"], "a config check imported diffusers"
    assert PASSWORD not in result["stdout"] + result["stderr"]


@pytest.mark.parametrize(("overrides", "message"), HYDRAS, ids=[" ".join(o) for o, _ in HYDRAS])
def test_hydras_own_refusals_keep_hydras_message(catalogue, overrides, message):
    results, *_ = catalogue
    result = results[tuple(overrides)]
    assert result["code"] != 0 and message in result["stderr"] and not result["diffusers"]


def test_the_existing_study_is_untouched_and_no_other_study_appears(catalogue):
    _, before, after, outputs = catalogue
    assert after == before
    assert sorted(p.parent.name for p in outputs.glob("*/study.db")) == sorted([STUDY, "damaged"])
    assert (outputs / "damaged" / "study.db").read_text() == "not an Optuna study\n"  # nothing overwritten


def test_a_missing_postgresql_driver_names_the_extra(tmp_path):
    # A stand-in psycopg that cannot be imported, earlier on the path than the real one.
    (tmp_path / "psycopg").mkdir()
    (tmp_path / "psycopg" / "__init__.py").write_text("raise ImportError('No module named psycopg')\n")
    [result] = run_cases(tmp_path, [[f"output_dir={tmp_path}", f"study.storage=postgresql://u:{PASSWORD}@db/vboost"]],
                         pythonpath=[str(tmp_path)])
    assert result["code"] == 2 and PASSWORD not in result["stderr"]
    assert result["stderr"].strip() == (
        "vboost.sweep: error: study.storage='postgresql://u:***@db/vboost' needs the psycopg driver, which is not "
        "installed: No module named psycopg (pip install -e \".[postgres]\")"
    )


def test_a_full_traceback_on_request_is_masked_too(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "HYDRA_FULL_ERROR": "1", "PGPASSWORD": "pg-env-s3cret"}
    # A failure past the config checks: the storage's database refuses the connection in the middle of opening.
    cmd = [sys.executable, "-m", "vboost.sweep", f"output_dir={tmp_path}", f"study.storage=postgresql://u:{PASSWORD}@127.0.0.1:1/db"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 2
    assert "Traceback (most recent call last)" in done.stderr  # the traceback, as asked
    assert PASSWORD not in done.stdout + done.stderr and "***@127.0.0.1:1/db" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("vboost.sweep: error: study.storage=")
