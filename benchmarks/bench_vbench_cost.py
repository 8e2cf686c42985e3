"""Per-clip cost of each ``vbench``-tier dimension, beside the cost of generating a clip with the tiny backbones.

    python benchmarks/bench_vbench_cost.py --weights-dir CACHE [--frames 16] [--size 256] [--repeats 2]
        [--device cpu] [--no-generation]

``CACHE`` is a VBench cache (the real files, or the full-size stand-ins ``bench_vbench_parity.py`` writes under
``<work>/cache``: same architectures, same cost). Needs the ``vbench`` extra (torchvision, pyiqa); with PyPI's CUDA
torchvision on a CPU torch, ``tests/_torchvision_shim.py`` is applied first. Each dimension gets its own
``Scorer`` (networks loaded once, outside the timing), one warm-up clip, then the median wall and CPU seconds
of ``--repeats`` clips. The generation line is the embedded default sweep's clip (tiny CogVideoX, 25 frames
64x64, 50 steps) and the same at the clip size scored here, timed by ``_generation_timer`` inside the sweep.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "benchmarks")]

import _torchvision_shim  # noqa: E402,F401  (before torchvision)

import objectives  # noqa: E402
from bench_objectives import make_clip, time_scorer  # noqa: E402


def time_dimension(name: str, weights_dir: Path, device: str, clip, repeats: int) -> tuple[float, float, float]:
    """Seconds to build the dimension's Scorer (networks loaded), then median wall and CPU seconds per clip."""
    start = time.perf_counter()
    scorer = objectives.Scorer([name], backend="vbench", weights_dir=weights_dir, device=device)
    load = time.perf_counter() - start
    return (load, *time_scorer(scorer, clip, repeats))


def generation_seconds(overrides: list[str]) -> float:
    """Seconds per clip the tiny backbone takes inside a one-trial sweep (``_generation_timer``)."""
    with tempfile.TemporaryDirectory() as tmp:
        timer = Path(tmp) / "timer.json"
        env = {**os.environ, "VBOOST_TIMER_OUT": str(timer),
               "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "benchmarks"), os.environ.get("PYTHONPATH", "")])}
        # The base interpreter, not this one's environment: PyPI's torchvision there would break diffusers' imports.
        python = getattr(sys, "_base_executable", sys.executable)
        cmd = [python, "-m", "vboost.sweep", f"output_dir={tmp}/out", "imports=[_generation_timer]",
               "study.n_trials=1", "save_videos=false", *overrides]
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        totals = json.loads(timer.read_text())
    return totals["generate_s"] / totals["clips"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights-dir", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-generation", action="store_true")
    args = parser.parse_args()

    import torch

    clip = make_clip(args.frames, args.size)
    print(f"clip: {args.frames} frames of {args.size}x{args.size}; device {args.device}; "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'record':34s} {'load s':>7s} {'wall s/clip':>12s} {'cpu s/clip':>11s}")
    for name in objectives.DIMENSIONS:
        load, wall, cpu = time_dimension(name, args.weights_dir, args.device, clip, args.repeats)
        print(f"{objectives.record_name(name, 'vbench'):34s} {load:7.2f} {wall:12.3f} {cpu:11.3f}")
    if not args.no_generation:
        for label, overrides in (("tiny CogVideoX, default 25x64x64", []),
                                 (f"tiny CogVideoX, 25x{args.size}x{args.size}",
                                  [f"backbone.height={args.size}", f"backbone.width={args.size}"])):
            print(f"generation: {label}, 50 steps: {generation_seconds(overrides):.2f} s/clip")


if __name__ == "__main__":
    main()
