"""Throughput of batched generation: a trial's clips one by one against ``generate_batch`` in batches, side by side.

A tiny random-weight pipeline of each family given (real module names) at the size given, ``clips`` clips (prompts x
seeds); alternating one-by-one and batched repeats, median taken. Prints seconds per clip both ways and the speed-up.

    python benchmarks/bench_batch.py [--families cogvideox,animatediff] [--clips 4] [--batch 4] [--size 64] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vboost.backbones import load_backbone

PROMPTS = ["a cat runs on the beach", "a red car in the city at night"]


def clips_per_second(family: str, clips: int, batch: int, size: int, steps: int, repeats: int, device: str) -> tuple[float, float]:
    """Median seconds per clip, one by one and in batches of ``batch``."""
    backbone = load_backbone(family, None, device=device)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(clips)]
    seeds = list(range(clips))
    settings = {"steps": steps, "height": size, "width": size}

    def one_by_one() -> None:
        for prompt, seed in zip(prompts, seeds):
            backbone.generate(prompt, seed, **settings)

    def batched() -> None:
        for start in range(0, clips, batch):
            backbone.generate_batch(prompts[start:start + batch], seeds[start:start + batch], **settings)

    batched()  # warm-up: text embeddings cached, kernels chosen
    times: dict[str, list[float]] = {"single": [], "batched": []}
    for _ in range(repeats):
        for name, run in (("single", one_by_one), ("batched", batched)):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            run()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - start) / clips)
    return statistics.median(times["single"]), statistics.median(times["batched"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="cogvideox,wan,animatediff")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    print(f"{'family':<24} {'clips':>5} {'batch':>5} {'s/clip single':>14} {'s/clip batched':>15} {'speed-up':>9}")
    for family in args.families.split(","):
        single, batched = clips_per_second(family, args.clips, args.batch, args.size, args.steps, args.repeats, args.device)
        print(f"{family:<24} {args.clips:>5} {args.batch:>5} {single:>14.4f} {batched:>15.4f} {single / batched:>9.2f}")


if __name__ == "__main__":
    main()
