"""A chaos run: several workers on one study, SIGKILLed at random and restarted, until the study is done.

Checks, and prints: the search stage holds exactly ``--n-trials`` counted trials and the validation stage one complete
trial per candidate; no trial once finished is ever lost or changed; every trial killed while running was failed by
its heartbeat and retried.

    python benchmarks/chaos_workers.py --storage postgresql://postgres@127.0.0.1:5432/test --kills 100 --n-trials 40
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parents[1]


def start_worker(out: Path, storage: str, study: str, seed: int, n_trials: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable, "-m", "vboost.sweep", f"output_dir={out}", "backbone.steps=4", "backbone.num_frames=9",
        "backbone.height=32", "backbone.width=32", "prompts.prompts=[a cat walks on the beach,a red car at night]",
        "validation.prompts=[a dog runs on the beach]", "validation.seeds=[7,8]", "logger=none", "save_videos=false",
        f"study.name={study}", f"study.storage={storage}", f"study.sampler.seed={seed}", f"study.n_trials={n_trials}",
        "study.heartbeat_interval=1", "study.grace_period=3",
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def trials_of(storage: str, study: str) -> list:
    try:
        return optuna.load_study(study_name=study, storage=storage).get_trials()
    except KeyError:
        return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--n-trials", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(args.seed)
    study = f"chaos-{uuid.uuid4().hex[:8]}"
    finished: dict[int, tuple] = {}  # trial number -> (state, values) once it ended COMPLETE
    changed: list[int] = []

    def watch() -> list:
        trials = trials_of(args.storage, study)
        for t in trials:
            if t.state == TrialState.COMPLETE:
                if t.number in finished and finished[t.number] != tuple(t.values):
                    changed.append(t.number)
                finished.setdefault(t.number, tuple(t.values))
        gone = [n for n in finished if n >= len(trials) or trials[n].state != TrialState.COMPLETE]
        changed.extend(gone)
        return trials

    start = time.monotonic()
    seed = 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        workers = []
        for _ in range(args.workers):
            workers.append(start_worker(out, args.storage, study, seed, args.n_trials))
            seed += 1
        kills = 0
        try:
            while True:
                time.sleep(rng.uniform(0.5, 3.0))
                watch()
                for i, w in enumerate(workers):  # a worker that left: restarted while the chaos lasts
                    if w.poll() is not None:
                        if w.returncode not in (0, -signal.SIGKILL):
                            print(f"worker exited {w.returncode}: {w.stderr.read()[-2000:]}")
                        if kills < args.kills:
                            workers[i] = start_worker(out, args.storage, study, seed, args.n_trials)
                            seed += 1
                if kills < args.kills:
                    victim = rng.randrange(len(workers))
                    if workers[victim].poll() is None:
                        workers[victim].send_signal(signal.SIGKILL)
                        workers[victim].wait()
                        kills += 1
                        workers[victim] = start_worker(out, args.storage, study, seed, args.n_trials)
                        seed += 1
                elif all(w.poll() is not None for w in workers):
                    break
            trials = watch()
        finally:
            for w in workers:
                if w.poll() is None:
                    w.kill()
    counted = [t for t in trials if not t.user_attrs.get("surplus")]
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
    search = [t for t in counted if t.user_attrs.get("role") != "validation" and not (t.state == TrialState.FAIL and t.number in retried)]
    validation = [t for t in counted if t.user_attrs.get("role") == "validation" and t.state == TrialState.COMPLETE]
    keys = [t.user_attrs["reference"] for t in validation]
    killed = [t for t in trials if t.state == TrialState.FAIL and t.number in retried]
    print(f"study {study}: {kills} kills in {time.monotonic() - start:.0f} s")
    print(f"search stage: {len(search)} of {args.n_trials} counted trials "
          f"({sum(t.state == TrialState.COMPLETE for t in search)} complete, {sum(t.state == TrialState.PRUNED for t in search)} pruned, "
          f"{sum(t.state == TrialState.FAIL for t in search)} failed)")
    print(f"validation stage: {len(validation)} complete trials, {len(set(keys))} distinct candidates")
    print(f"killed while running and retried by heartbeat: {len(killed)}; finished trials lost or changed: {len(set(changed))}")
    print(f"left running or waiting: {sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)}")
    for t in search:
        if t.state == TrialState.FAIL:  # counted and failed: its own error, or a kill after its last retry
            history = t.system_attrs.get("retry_history", [])
            why = t.user_attrs.get("fail_reason") or f"stale heartbeat after {len(history)} retries (study.max_retry)"
            print(f"  failed trial {t.number}: {why}")
    optuna.delete_study(study_name=study, storage=args.storage)
    ok = len(search) == args.n_trials and len(keys) == len(set(keys)) and not changed and validation
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
