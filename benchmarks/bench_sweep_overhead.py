"""The sweep's own overhead: its trial-loop wall time over the pure generation + scoring time of the same trials.

Runs the real ``python -m vboost.sweep`` (the embedded default, or the overrides given) in a temporary directory,
with ``_generation_timer`` loaded through the sweep's ``imports=`` option: it times every ``generate`` and
``score_video`` call inside the sweep process, so both numbers come from the same process, models and threads.
The loop wall time runs from the first trial's start to the last trial's end (sampling, storage writes, video
files and logging included); process start, imports, the model load and the end-of-sweep export and report are
printed beside it, not counted. ``overhead = loop / (generate + score) - 1``; the per-trial line gives the same
cost in milliseconds, which is what stays fixed when trials get longer on real models.

    python benchmarks/bench_sweep_overhead.py [hydra overrides...]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

REPO = Path(__file__).resolve().parents[1]


def main(overrides: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out, timer = Path(tmp) / "outputs", Path(tmp) / "timer.json"
        env = {
            **os.environ,
            "VBOOST_TIMER_OUT": str(timer),
            "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "benchmarks"), os.environ.get("PYTHONPATH", "")]),
        }
        cmd = [sys.executable, "-m", "vboost.sweep", f"output_dir={out}", "imports=[_generation_timer]", *overrides]
        start = time.perf_counter()
        result = subprocess.run(cmd, env=env, capture_output=True, text=True)
        total = time.perf_counter() - start
        if result.returncode != 0:
            sys.exit(f"the sweep failed:\n{result.stderr}")
        pure = json.loads(timer.read_text())
        [db] = out.glob("*/study.db")
        storage = f"sqlite:///{db}"
        [name] = optuna.get_all_study_names(storage)
        trials = [t for t in optuna.load_study(study_name=name, storage=storage).get_trials() if t.datetime_complete]
    loop = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    work = pure["generate_s"] + pure["score_s"]
    print(f"study {name}: {len(trials)} trials, {pure['clips']} clips, overrides {overrides or 'none'}")
    print(f"process wall time       {total:8.2f} s (imports, model build, trials, export and report)")
    print(f"trial loop wall time    {loop:8.2f} s")
    print(f"generate + score        {work:8.2f} s ({pure['generate_s']:.2f} + {pure['score_s']:.2f})")
    print(f"overhead per trial      {(loop - work) / len(trials) * 1000:8.1f} ms")
    print(f"overhead                {loop / work - 1:8.2%} (target < 3%)")


if __name__ == "__main__":
    main(sys.argv[1:])
