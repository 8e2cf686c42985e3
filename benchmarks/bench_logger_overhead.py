"""What a logger costs per trial: the same tiny sweep with ``logger=csv``, ``logger=wandb`` (offline) and
``logger=none``, side by side, each run ``--repeats`` times; prints the wall time per trial and the difference.

    python benchmarks/bench_logger_overhead.py --trials 8 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = ["backbone.steps=2", "backbone.num_frames=9", "backbone.height=32", "backbone.width=32",
        "prompts.prompts=[a cat walks on the beach]", "prompts.seeds=[0,1]", "validation.top_k=0",
        "study.heartbeat_interval=null"]


def sweep_seconds(logger: str, trials: int) -> float:
    """Wall time of one sweep of ``trials`` trials with ``logger``, in a fresh directory (W&B's own dirs there too)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.update({var: str(Path(tmp) / var.lower()) for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR")})
        env.pop("WANDB_API_KEY", None)
        cmd = [sys.executable, "-m", "vboost.sweep", f"output_dir={tmp}/outputs", f"logger={logger}",
               f"study.n_trials={trials}", *TINY]
        start = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    results = {logger: [] for logger in ("none", "csv", "wandb")}
    for _ in range(args.repeats):  # interleaved, so a change in the machine's load hits every logger alike
        for logger, times in results.items():
            times.append(sweep_seconds(logger, args.trials))
    base = statistics.median(results["none"])
    print(f"{args.trials} trials x 2 clips (tiny CogVideoX, 9 frames 32x32, 2 steps), median of {args.repeats} runs")
    for logger, times in results.items():
        median = statistics.median(times)
        print(f"logger={logger:<6} {median:7.2f} s  {median / args.trials:6.3f} s/trial  "
              f"{(median - base) / args.trials:+6.3f} s/trial vs logger=none")


if __name__ == "__main__":
    main()
