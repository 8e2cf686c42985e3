"""How often the decision rule recommends a setting that does not help (false positives), and how often it finds
one that does (power), measured on many independent studies of the synthetic world in tests/synthetic_world.

Each study is the real ``python -m vboost.sweep`` (one multirun per world batch, one study per world), with the
world's knob at a given true effect ``depth`` (the relative flicker reduction at the optimum; 0 is the null world,
whose knob perturbs every clip with zero mean). Prints, per depth: the share of studies with a recommendation
(with a 95% Wilson interval), how far the recommended knob sits from the true optimum, and the true held-out gain.

    python benchmarks/bench_decision.py --null 200 --depths 0.02,0.04,0.08 --studies 50
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORLD = REPO / "tests" / "synthetic_world"


def run_studies(out: Path, depth: float, worlds: range, n_trials: int, extra: list[str]) -> list[dict]:
    """One multirun: a study per world at ``depth``; returns each study's summary.json."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(WORLD), os.environ.get("PYTHONPATH", "")])}
    cmd = [
        sys.executable, "-m", "vboost.sweep", "-m", f"output_dir={out}", f"hydra.searchpath=[file://{WORLD / 'conf'}]",
        "imports=[synthetic_world]", "backbone=synthetic", "method=synthetic_knob", "objective=synthetic_flicker",
        "prompts=synthetic", "save_videos=false", "logger=none", "study.heartbeat_interval=null",
        f"study.n_trials={n_trials}", f"method.params.depth={depth}", f"method.params.world={','.join(map(str, worlds))}",
        "study.name=d" + f"{depth}".replace(".", "_") + "_${method.params.world}", "study.sampler.seed=${method.params.world}",
        *extra,
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    stem = "d" + f"{depth}".replace(".", "_")
    return [json.loads((out / f"{stem}_{w}" / "report" / "summary.json").read_text()) for w in worlds]


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--null", type=int, default=200, help="studies of the null world (depth 0)")
    parser.add_argument("--depths", default="0.02,0.04,0.08", help="true effects to measure the power at")
    parser.add_argument("--studies", type=int, default=50, help="studies per non-zero depth")
    parser.add_argument("--n-trials", type=int, default=16)
    parser.add_argument("--batch", type=int, default=50, help="studies per process (one multirun)")
    parser.add_argument("overrides", nargs="*", help="more sweep overrides, e.g. validation.confidence=0.9")
    args = parser.parse_args()

    sys.path.insert(0, str(WORLD))
    import synthetic_world
    import yaml

    knob = yaml.safe_load((WORLD / "conf" / "method" / "synthetic_knob.yaml").read_text())["params"]
    plan = [(0.0, args.null)] + [(float(d), args.studies) for d in args.depths.split(",") if d]
    print(f"synthetic world: noise sd {knob['noise']:.0%} per clip, optimum {knob['optimum']}, width {knob['width']}; "
          f"{args.n_trials} search trials; decision settings: the defaults {' '.join(args.overrides)}")
    print(f"{'depth':>6} {'studies':>7} {'recommended':>11} {'share [95% Wilson]':>22} {'|k - opt|':>9} "
          f"{'true gain of rec.':>17} {'s/study':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for depth, count in plan:
            start = time.perf_counter()
            reports: list[dict] = []
            for first in range(0, count, args.batch):
                worlds = range(first, min(count, first + args.batch))
                reports += run_studies(Path(tmp) / "outputs", depth, worlds, args.n_trials, args.overrides)
            seconds = (time.perf_counter() - start) / count
            recs = [r["recommendation"] for r in reports if r["recommendation"] is not None]
            low, high = wilson(len(recs), count)
            distance = [abs(r["knobs"]["strength"] - knob["optimum"]) for r in recs]
            gains = [synthetic_world.true_gain(r["knobs"]["strength"], depth, knob["optimum"], knob["width"]) for r in recs]
            print(f"{depth:>6.3f} {count:>7} {len(recs):>11} {len(recs) / count:>8.1%} [{low:.1%}, {high:.1%}] "
                  f"{(sum(distance) / len(distance)) if distance else math.nan:>9.3f} "
                  f"{(sum(gains) / len(gains)) if gains else math.nan:>17.4f} {seconds:>7.2f}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
