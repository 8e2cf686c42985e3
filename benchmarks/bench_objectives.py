"""Cost of each objectives/ dimension per clip (default: 16 frames of 512x512 at 8 fps).

    python benchmarks/bench_objectives.py [--frames 16] [--size 512] [--repeats 3] [--vbench] [--device cpu]

Prints one row per dimension (record name, median wall and CPU seconds per clip) and the total of the weight-free default
(``backend="proxy"``). ``--vbench`` also times the vbench tier with full-size networks (ViT-B/16, CLIP
ViT-B/32 and ViT-L/14 architectures, random weights: same cost as the real ones, nothing downloaded).
The clip is a textured square moving over a textured background, so the flow has real work to do.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

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


def save_full_size_networks(root: Path) -> None:
    import torch
    from transformers import CLIPConfig, CLIPModel, ViTConfig, ViTModel

    torch.manual_seed(0)
    ViTModel(ViTConfig(layer_norm_eps=1e-6), add_pooling_layer=False).save_pretrained(root / "dino-vitb16")
    CLIPModel(CLIPConfig(vision_config=dict(patch_size=32), projection_dim=512)).save_pretrained(
        root / "clip-vit-base-patch32")
    large = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, patch_size=14)
    CLIPModel(CLIPConfig(text_config=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12),
                         vision_config=large, projection_dim=768)).save_pretrained(root / "clip-vit-large-patch14")
    torch.save(torch.nn.Linear(768, 1).state_dict(), root / "sa_0_4_vit_l_14_linear.pth")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vbench", action="store_true", help="also time the vbench tier (full-size random nets)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    clip = make_clip(args.frames, args.size)
    print(f"clip: {args.frames} frames of {args.size}x{args.size}; {os.cpu_count()} CPUs visible; "
          f"OpenCV threads {cv2.getNumThreads()}")
    rows = []
    for name in objectives.DIMENSIONS:
        rows.append((objectives.record_name(name), time_scorer(objectives.Scorer([name]), clip, args.repeats)))
    default = objectives.Scorer(list(objectives.DIMENSIONS))
    rows.append(("all, backend='proxy' (one Scorer)", time_scorer(default, clip, args.repeats)))

    if args.vbench:
        with tempfile.TemporaryDirectory() as tmp:
            save_full_size_networks(Path(tmp))
            for name in objectives.DIMENSIONS:
                if objectives.available(name, "vbench") and objectives.tier(name, "vbench") == "vbench":
                    scorer = objectives.Scorer([name], backend="vbench", weights_dir=tmp, device=args.device)
                    rows.append((f"{objectives.record_name(name, 'vbench')} ({args.device})",
                                 time_scorer(scorer, clip, args.repeats)))

    width = max(len(r[0]) for r in rows)
    print(f"{'record':<{width}}  wall s/clip  cpu s/clip")
    for record, (wall, cpu) in rows:
        print(f"{record:<{width}}  {wall:11.3f}  {cpu:10.3f}")


if __name__ == "__main__":
    main()
