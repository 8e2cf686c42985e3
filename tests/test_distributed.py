"""Several ``python -m vboost.sweep`` workers on one study storage (SQLite and PostgreSQL), and a crashed worker."""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parents[1]
PROMPTS = "prompts.prompts=[a cat walks on the beach,a red car at night]"
# One held-out clip per validation trial keeps the validation stage short.
SMALL = ("backbone.num_frames=9", "backbone.height=32", "backbone.width=32", "validation.prompts=[a dog runs on the beach]",
         "validation.seeds=[7]")


def start_worker(cwd: Path, storage: str, study: str, seed: int, *overrides: str) -> subprocess.Popen:
    """One worker process; each gets its own sampler seed, as the README tells users to do."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [
        sys.executable, "-m", "vboost.sweep", f"output_dir={cwd / 'outputs'}", "backbone=tiny_cogvideox",
        "method=enhance_a_video", "backbone.steps=2", *SMALL, PROMPTS, "logger=none", "save_videos=false",
        f"study.name={study}", f"study.storage={storage}", f"study.sampler.seed={seed}",
        "study.heartbeat_interval=1", "study.grace_period=3", *overrides,
    ]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(worker: subprocess.Popen) -> str:
    output, _ = worker.communicate(timeout=240)
    assert worker.returncode == 0, output
    return output


def counted(trials: list, stage: str = "search") -> list:
    """The trials that make up a stage: ``n_trials`` for the search stage, one per candidate for the validation
    stage (an independent reading of the rule in the README)."""
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return [
        t for t in trials
        if not t.user_attrs.get("surplus") and not (t.state == TrialState.FAIL and t.number in retried)
        and (t.user_attrs.get("role") == "validation") == (stage == "validation")
    ]


def check_validation_stage(trials: list) -> None:
    """One complete validation trial per validated search trial (the baseline first), none run twice."""
    validation = counted(trials, "validation")
    assert validation and all(t.state == TrialState.COMPLETE for t in validation)
    keys = [t.user_attrs["reference"] for t in validation]
    assert len(set(keys)) == len(keys)
    baseline = next(t for t in trials if t.user_attrs.get("role") == "baseline" and t.state == TrialState.COMPLETE)
    assert validation[0].user_attrs["candidate"] == baseline.number
    search = {t.number: t for t in counted(trials)}
    for t in validation[1:]:
        assert t.user_attrs["knobs"] == search[t.user_attrs["candidate"]].user_attrs["knobs"]


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    yield request.getfixturevalue("postgres")


@pytest.mark.slow
def test_three_workers_finish_exactly_n_trials(tmp_path, storage):
    study_name = f"workers-{uuid.uuid4().hex[:8]}"
    n_trials = 7
    workers = [start_worker(tmp_path, storage, study_name, seed, f"study.n_trials={n_trials}") for seed in range(3)]
    try:
        for worker in workers:
            finish(worker)
        trials = optuna.load_study(study_name=study_name, storage=storage).get_trials()
        kept = counted(trials)
        assert len(kept) == n_trials
        assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in kept)
        check_validation_stage(trials)
        assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        roles = [t.user_attrs["role"] for t in kept]
        assert roles.count("baseline") == 1 and roles.count("paper") == 1
        # A surplus trial (a race at the end, or a reference enqueued twice) is pruned before it generates anything.
        for t in trials:
            if t.user_attrs.get("surplus"):
                assert t.state == TrialState.PRUNED and not {"scores", "video_scores"} & t.user_attrs.keys()
    finally:
        if storage.startswith("postgresql") and study_name in optuna.get_all_study_names(storage):
            optuna.delete_study(study_name=study_name, storage=storage)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["search", "validation"])
def test_killed_worker_trial_fails_by_heartbeat_and_is_retried(tmp_path, stage):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    study_name = "crash"
    n_trials = 5 if stage == "search" else 3
    # Slower trials (more steps, more held-out clips) leave time to kill the worker in the middle of one.
    slow = ("backbone.steps=12", f"study.n_trials={n_trials}", "validation.seeds=[7,8,9]")
    first = start_worker(tmp_path, storage, study_name, 0, *slow)
    deadline = time.monotonic() + 300
    victim = None
    while victim is None and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
        # Frozen while the storage is read, the worker cannot finish the trial seen running before it is killed.
        first.send_signal(signal.SIGSTOP)
        try:
            trials = optuna.load_study(study_name=study_name, storage=storage).get_trials()
        except KeyError:  # the study does not exist yet
            trials = []
        except sqlalchemy.exc.OperationalError:  # frozen in the middle of a write, the worker holds the lock
            trials = []
        # The victim must be generating: a trial caught before its knobs are suggested has no params to retry with.
        if any(t.state == TrialState.COMPLETE for t in trials):
            victim = next((
                t for t in trials
                if t.state == TrialState.RUNNING and t.params and (t.user_attrs.get("role") == "validation") == (stage == "validation")
            ), None)
        if victim is None:
            first.send_signal(signal.SIGCONT)
    assert victim is not None, "the worker finished or stalled before a trial could be interrupted"
    first.send_signal(signal.SIGKILL)
    first.wait()
    finished_before = {
        t.number: t.values
        for t in optuna.load_study(study_name=study_name, storage=storage).get_trials()
        if t.state == TrialState.COMPLETE
    }

    finish(start_worker(tmp_path, storage, study_name, 1, *slow))

    trials = optuna.load_study(study_name=study_name, storage=storage).get_trials()
    by_number = {t.number: t for t in trials}
    assert by_number[victim.number].state == TrialState.FAIL
    assert by_number[victim.number].params == victim.params
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retry.params == victim.params
    assert {k: retry.user_attrs.get(k) for k in ("role", "reference", "candidate")} == {
        k: victim.user_attrs.get(k) for k in ("role", "reference", "candidate")
    }
    for number, values in finished_before.items():
        assert by_number[number].state == TrialState.COMPLETE and by_number[number].values == values
    assert len(counted(trials)) == n_trials
    check_validation_stage(trials)


def test_a_worker_that_loses_the_race_to_create_the_schema_opens_the_storage(tmp_path, monkeypatch):
    from optuna.storages._rdb.storage import _VersionManager

    from vboost.sweep.storage import open_storage

    url = f"sqlite:///{tmp_path / 'new.db'}"
    init = _VersionManager._init_alembic
    collisions = []

    def collide_once(self):
        # What SQLite raised when three workers started on a new file at once: another stamped the version first.
        if not collisions:
            collisions.append(True)
            init(self)
            raise sqlalchemy.exc.IntegrityError("INSERT INTO alembic_version", {}, Exception("UNIQUE constraint failed"))
        init(self)

    monkeypatch.setattr(_VersionManager, "_init_alembic", collide_once)
    storage = open_storage(url, SimpleNamespace(heartbeat_interval=None, grace_period=None, max_retry=2))
    assert collisions
    study = optuna.create_study(storage=storage, study_name="raced")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    assert len(optuna.load_study(study_name="raced", storage=url).trials) == 2


def test_two_workers_never_both_start_one_enqueued_trial(tmp_path, monkeypatch):
    from optuna.storages._rdb import models

    from vboost.sweep.storage import open_storage

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    cfg = SimpleNamespace(heartbeat_interval=None, grace_period=None, max_retry=2)
    study = optuna.create_study(storage=open_storage(url, cfg), study_name="queue")
    study.enqueue_trial({})
    (waiting,) = study.get_trials(states=(TrialState.WAITING,))
    workers = [open_storage(url, cfg) for _ in range(2)]
    # Each worker pauses after reading the trial's state, until the other has read it too (or for a second): without a
    # lock held from the read to the write, both read "waiting" and both start it.
    both_read = threading.Barrier(2, timeout=1.0)
    read = models.TrialModel.find_or_raise_by_id

    def read_then_wait(*args, **kwargs):
        trial = read(*args, **kwargs)
        with contextlib.suppress(threading.BrokenBarrierError):
            both_read.wait()
        return trial

    monkeypatch.setattr(models.TrialModel, "find_or_raise_by_id", staticmethod(read_then_wait))
    started = []
    threads = [threading.Thread(target=lambda s=s: started.append(s.set_trial_state_values(waiting._trial_id, TrialState.RUNNING)))
               for s in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(started) == [False, True]


def test_slurm_recipe_composes_with_the_submitit_launcher(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "vboost.sweep", "-cd", str(REPO / "sweeps"), "-cn", "slurm_workers", "--cfg", "hydra"]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "_target_: hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher" in result.stdout
    assert "_target_: hydra_plugins.vboost_sweeper.VboostSweeper" in result.stdout


@pytest.mark.slow
def test_a_multirun_over_sampler_seeds_is_workers_of_one_study(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [
        sys.executable, "-m", "vboost.sweep", "-m", f"output_dir={tmp_path / 'outputs'}", "backbone=tiny_cogvideox",
        "method=enhance_a_video", "backbone.steps=2", *SMALL, PROMPTS, "logger=none", "save_videos=false",
        "study.heartbeat_interval=null", "study.n_trials=4", "study.sampler.seed=0,1,2",
    ]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    [db] = (tmp_path / "outputs").glob("*/study.db")
    [name] = optuna.get_all_study_names(f"sqlite:///{db}")
    trials = optuna.load_study(study_name=name, storage=f"sqlite:///{db}").get_trials()
    assert len(counted(trials)) == 4
    check_validation_stage(trials)
