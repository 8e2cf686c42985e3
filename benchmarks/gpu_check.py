"""The GPU path in one run: device and versions; method overhead and peak memory at full size with random weights
(CogVideoX-2b at 49 frames 480x720, Wan2.1-1.3B at 81 frames 480x832, AnimateDiff SD1.5 at 16x512x512, bf16);
method read-backs; scorer cost per clip; batched against one-by-one throughput; the memory and speed options on a
tiny pipeline (each clip against the plain one); a short real sweep on the device (background video encoding,
heartbeats). Every part prints its numbers and a verdict; the exit code is the number of failed checks.

    bash benchmarks/gpu_check.sh              # on a machine with CUDA (a few minutes on an H100/H200)
    bash benchmarks/gpu_check.sh --cpu-smoke  # every part at tiny sizes on the CPU
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[1]

CHECKS: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    CHECKS.append((name, ok, detail))
    print(f"  [{'PASS' if ok else 'FAIL'}] {name}{': ' + detail if detail else ''}", flush=True)


def section(title: str, run: Callable[[], None]) -> None:
    print(f"\n== {title}", flush=True)
    start = time.perf_counter()
    try:
        run()
    except Exception as err:  # noqa: BLE001 -- one broken part must not hide the others
        traceback.print_exc()
        check(title, False, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    print(f"   ({time.perf_counter() - start:.1f} s)", flush=True)


def environment(device: str) -> None:
    versions = {name: _version(name) for name in ("torch", "diffusers", "transformers", "accelerate", "optuna",
                                                  "triton", "flash_attn", "xformers", "sageattention")}
    print("  " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"  python {sys.version.split()[0]}, CUDA build {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        print(f"  device: {props.name}, {props.total_memory / 2**30:.1f} GiB, capability {props.major}.{props.minor}, "
              f"{props.multi_processor_count} SMs")
    else:
        print(f"  device: CPU, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}")


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def method_overhead(device: str, full: bool, steps: int, repeats: int) -> None:
    from bench_methods import WORKLOADS, measure, measure_read_backs, prepare, print_read_backs, print_rows

    rows, read_backs = [], []
    for build in WORKLOADS:
        work = prepare(build, full, device)
        rows += measure(work, steps, repeats, device)
        read_backs += measure_read_backs(work, max(steps, 5), 1, device)  # 5 steps: ByTheWay's 20% holds one
        del work
        if device == "cuda":
            torch.cuda.empty_cache()
    print_rows(rows)
    print_read_backs(read_backs)
    for row in rows:
        if not full:  # the targets are the GPU's; the smoke run's timings are printed above, not judged
            continue
        check(f"{row.model}: {row.method} <= {row.limit}x a {row.target}", row.ratio <= row.limit, f"{row.ratio:.3f}x")
        check(f"{row.model}: peak memory with the method within 2%", row.memory_ratio <= 1.02,
              f"{row.peak_plain:.2f} -> {row.peak_method:.2f} GiB ({row.memory_ratio:.4f}x)")
    for name, calls, _, deferred, _, _ in read_backs:
        check(f"{name}: one read-back per generation", deferred == 1 and calls > 0, f"{calls} calls, {deferred} read-back")


def scorer_cost(frames: int, height: int, width: int) -> None:
    import objectives
    from bench_objectives import make_clip, time_scorer

    clip = make_clip(frames, min(height, width))
    clip = np.ascontiguousarray(np.pad(clip, ((0, 0), (0, height - clip.shape[1]), (0, width - clip.shape[2]), (0, 0)), mode="edge"))
    dimensions = ["subject_consistency", "background_consistency", "motion_smoothness", "dynamic_degree",
                  "aesthetic_quality", "imaging_quality", "temporal_flickering"]
    scorer = objectives.Scorer(dimensions, backend="proxy")
    wall, cpu = time_scorer(scorer, clip, repeats=1)
    print(f"  weight-free proxy tier, {len(dimensions)} dimensions, one {frames}x{height}x{width} clip: "
          f"{wall:.2f} s wall, {cpu:.2f} s CPU (the vbench tier needs VBench's weights, which this machine has not)")
    check("scorer scores a clip", wall > 0)


def batched_throughput(device: str, full: bool, size: int, steps: int) -> None:
    from bench_batch import clips_per_second
    from bench_methods import cogvideox_workload, prepare

    for family in ("cogvideox", "animatediff"):
        single, batched = clips_per_second(family, 4, 4, size, steps, 1 if not full else 3, device)
        print(f"  tiny {family} pipeline at {size}x{size}, {steps} steps, 4 clips: {single:.3f} s/clip one by one, "
              f"{batched:.3f} s/clip in one batch ({single / batched:.2f}x)")
    # The real-size denoiser: one step for one clip (CFG pair) against one step for two clips.
    work = prepare(cogvideox_workload, full, device)
    one = work.inputs
    two = {k: torch.cat([v, v]) for k, v in one.items()}
    with torch.inference_mode():
        seconds = {}
        for name, inputs in (("1 clip", one), ("2 clips", two)):
            work.denoiser(**inputs, return_dict=False)
            _sync(device)
            start = time.perf_counter()
            for _ in range(3):
                work.denoiser(**inputs, return_dict=False)
            _sync(device)
            seconds[name] = (time.perf_counter() - start) / 3
    per_clip = seconds["2 clips"] / 2
    print(f"  {work.name} step: {seconds['1 clip']:.3f} s for 1 clip, {seconds['2 clips']:.3f} s for 2 "
          f"({seconds['1 clip'] / per_clip:.2f}x clips per second batched)")
    check("batched generation runs", True)


def options_on_a_tiny_pipeline(device: str) -> None:
    from vboost.backbones import load_backbone
    from vboost.methods import EnhanceAVideo

    settings = {"steps": 3}

    def frames(backbone, weight: float | None = 4.0) -> np.ndarray:
        if weight is None:
            return backbone.generate("a cat runs on the beach", 0, **settings).frames.astype(int)
        with EnhanceAVideo(weight=weight).attached(backbone.pipe) as handle:
            out = backbone.generate("a cat runs on the beach", 0, **settings).frames.astype(int)
        assert handle.records
        return out

    cuda = device == "cuda"
    cases: list[tuple[str, str, dict]] = [
        ("vae tiling + slicing", "cogvideox", {"memory": {"vae_tiling": True, "vae_slicing": True}}),
        ("attention backend", "wan", {"attention_backend": "_native_flash" if cuda else "_native_math"}),
        ("compile blocks", "cogvideox", {"compile": {"enabled": True, "scope": "blocks", "backend": "inductor" if cuda else "aot_eager"}}),
    ]
    if cuda:
        cases += [
            ("model CPU offload", "cogvideox", {"memory": {"cpu_offload": "model"}}),
            ("sequential CPU offload", "cogvideox", {"memory": {"cpu_offload": "sequential"}}),
            ("group offload, leaf level, stream", "cogvideox", {"memory": {"group_offload": "leaf_level", "group_offload_stream": True}}),
            ("group offload, 1 block", "wan", {"memory": {"group_offload": "block_level", "group_offload_blocks": 1}}),
            ("compile + model CPU offload", "wan", {"memory": {"cpu_offload": "model"}, "compile": {"enabled": True}}),
        ]
    references: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, family, options in cases:
        if family not in references:
            plain = load_backbone(family, None, device=device)
            references[family] = (frames(plain, None), frames(plain))
        start = time.perf_counter()
        backbone = load_backbone(family, None, device=device, **options)
        got_plain, got_method = frames(backbone, None), frames(backbone)
        ref_plain, ref_method = references[family]
        plain_diff, method_diff = np.abs(got_plain - ref_plain).max(), np.abs(got_method - ref_method).max()
        changed = np.abs(got_method - got_plain).max()
        # Offloading moves weights only: the clip is the same; kernels (compile, attention backends) and tiles
        # (blended) round differently, a few uint8 levels at most on these tiny models.
        limit = 0 if "offload" in name and "compile" not in name else 8
        check(f"{family} {name}", plain_diff <= limit and method_diff <= limit and changed > 0,
              f"clip vs plain pipeline {plain_diff}, with Enhance-A-Video {method_diff} (it changes the clip by "
              f"{changed}); {time.perf_counter() - start:.1f} s")
        del backbone
        if cuda:
            torch.cuda.empty_cache()


def short_sweep(device: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable, "-m", "vboost.sweep", f"output_dir={tmp}", f"device={device}", "study.n_trials=3",
            "study.heartbeat_interval=1", "validation.top_k=1",
        ]
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        seconds = time.perf_counter() - start
        print("  " + "\n  ".join(result.stdout.strip().splitlines()[-6:]))
        videos = list(Path(tmp).rglob("*.mp4"))
        ok = result.returncode == 0 and bool(videos)
        encoding = "in the background" if device == "cuda" else "between clips"
        check(f"sweep on {device} (heartbeats every 1 s, videos encoded {encoding})", ok,
              f"exit {result.returncode}, {len(videos)} mp4 files, {seconds:.1f} s" + ("" if ok else f"; {result.stderr[-500:]}"))


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="run every part at tiny sizes on the CPU")
    args = parser.parse_args()
    if not args.cpu_smoke and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device is visible (torch {torch.__version__}, CUDA build {torch.version.cuda}); "
              "run it on a GPU machine, or with --cpu-smoke to exercise every part on the CPU", file=sys.stderr)
        return 2
    full = not args.cpu_smoke
    device = "cuda" if full else "cpu"
    torch.manual_seed(0)
    start = time.perf_counter()
    section("environment", lambda: environment(device))
    section("method overhead and peak memory" + (" at full size, bf16" if full else " (reduced, float32)"),
            lambda: method_overhead(device, full, steps=10 if full else 2, repeats=3 if full else 1))
    section("scorer cost per clip", lambda: scorer_cost(49, 480, 720) if full else scorer_cost(9, 64, 64))
    section("batched vs one by one", lambda: batched_throughput(device, full, size=256 if full else 32, steps=4 if full else 2))
    section("memory and speed options on a tiny pipeline", lambda: options_on_a_tiny_pipeline(device))
    section("a short sweep on the device", lambda: short_sweep(device))
    failed = [name for name, ok, _ in CHECKS if not ok]
    print(f"\n{len(CHECKS) - len(failed)} passed, {len(failed)} failed in {time.perf_counter() - start:.0f} s")
    return len(failed)


if __name__ == "__main__":
    sys.exit(main())
