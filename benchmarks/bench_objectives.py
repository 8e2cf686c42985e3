"""Cost of each objectives/ dimension per clip (default: 16 frames of 512x512 at 8 fps).

    python benchmarks/bench_objectives.py [--frames 16] [--size 512] [--repeats 3]

Prints one row per dimension (record name, median wall and CPU seconds per clip) and the total of the weight-free default
(``backend="proxy"``). The vbench tier's networks are timed by ``bench_vbench_cost.py``. The clip is a textured square moving over a textured background, so the flow has real work to do.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import cv2
import numpy as np

import objectives


def make_clip(frames: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.random((size, size, 3)).astype(np.float32), (0, 0), 3) * 255
    patch = cv2.GaussianBlur(rng.random((size // 2, size // 2, 3)).astype(np.float32), (0, 0), 3) * 255
    clip = np.repeat(background[None], frames, axis=0)
    for t in range(frames):
        x = size // 8 + t * size // (4 * frames)
        clip[t, size // 4 : size // 4 + size // 2, x : x + size // 2] = patch
    return np.clip(clip, 0, 255).astype(np.uint8)


def time_scorer(scorer: objectives.Scorer, clip: np.ndarray, repeats: int) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds (all threads) per clip; CPU time is the steadier number
    on a machine shared with other work."""
    scorer.score_video(clip, 8.0)  # warm-up (first-call allocations, lazy kernels)
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        scorer.score_video(clip, 8.0)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    clip = make_clip(args.frames, args.size)
    print(f"clip: {args.frames} frames of {args.size}x{args.size}; {os.cpu_count()} CPUs visible; "
          f"OpenCV threads {cv2.getNumThreads()}")
    rows = []
    for name in objectives.DIMENSIONS:
        rows.append((objectives.record_name(name), time_scorer(objectives.Scorer([name]), clip, args.repeats)))
    default = objectives.Scorer(list(objectives.DIMENSIONS))
    rows.append(("all, backend='proxy' (one Scorer)", time_scorer(default, clip, args.repeats)))

    width = max(len(r[0]) for r in rows)
    print(f"{'record':<{width}}  wall s/clip  cpu s/clip")
    for record, (wall, cpu) in rows:
        print(f"{record:<{width}}  {wall:11.3f}  {cpu:10.3f}")


if __name__ == "__main__":
    main()
