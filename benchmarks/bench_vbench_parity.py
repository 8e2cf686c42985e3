"""Parity of the ``vbench`` tier with VBench itself: vbench==0.1.5's own API and this package's tier on the
same clips and the same weight files, per video and dimension.

    python benchmarks/bench_vbench_parity.py --dino-repo DIR [--work /tmp/vbench_parity] [--clips 6]
        [--vbench-venv /work/venvs/vbench-0.1.5] [--ours-venv /work/venvs/vboost-vbench] [--seed 0]

``--dino-repo`` is a checkout of github.com/facebookresearch/dino (VBench's local mode loads DINO's code from
``dino_model/facebookresearch_dino_main``). Two virtual environments are created when missing, with pip and
nothing else from outside:
- VBench's: vbench==0.1.5 with its pins (numpy<2, transformers 4.33.2, setuptools<81 for its ``clip``), torch
  2.13.0 and the matching torchvision 0.28.0;
- this package's: the system site packages plus torchvision 0.28.0 and pyiqa 0.1.16 (``--no-deps``: what the
  ``vbench`` extra adds and the tier imports).
Both run on the CPU; PyPI's torchvision is a CUDA build, so both import ``tests/_torchvision_shim.py`` first.

Then: seeded random stand-ins with VBench's architectures and file formats (``_vbench_side.py standins``),
clips with textured moving content at several sizes and frame rates (half of them plain yuv420p H.264 as
generators write it, half lossless RGB H.264), VBench's ``evaluate(..., local=True, mode="custom_input")`` on
the CPU, this tier on the frames VBench's readers decode (cv2 for flicker, RAFT and AMT; decord for DINO, CLIP
and MUSIQ: ``_vbench_side.py decode`` saves both and says whether they agree), and a table of per-video
absolute differences. Exit status 1 when a difference exceeds ``--tolerance`` (1e-4).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIDE = Path(__file__).resolve().parent / "_vbench_side.py"
DIMENSIONS = ["subject_consistency", "background_consistency", "temporal_flickering", "motion_smoothness",
              "dynamic_degree", "aesthetic_quality", "imaging_quality"]
DECORD_DIMENSIONS = {"subject_consistency", "background_consistency", "aesthetic_quality", "imaging_quality"}
VBENCH_PINS = ["torch==2.13.0", "torchvision==0.28.0", "numpy<2", "vbench==0.1.5", "transformers==4.33.2",
               "setuptools<81"]
OURS_EXTRAS = ["torchvision==0.28.0", "pyiqa==0.1.16"]
# (height, width, frames, fps, lossless): sizes off the multiples of 8 and 16 exercise both padders.
CLIPS = [(256, 256, 16, 8, False), (250, 330, 17, 16, True), (144, 176, 16, 8, False), (180, 320, 20, 24, True),
         (240, 240, 16, 8, True), (200, 136, 15, 12, False)]


def ensure_venv(path: Path, system_site: bool, install: list[list[str]]) -> Path:
    python = path / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", *(["--system-site-packages"] if system_site else []), str(path)],
                       check=True)
        for args in install:
            subprocess.run([str(python), "-m", "pip", "install", "-q", *args], check=True)
    return python


def make_clip(height: int, width: int, frames: int, seed: int) -> np.ndarray:
    """A smooth random texture with a second texture sliding and growing over it: real motion at every
    scale, different per clip."""
    import cv2

    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(rng.random((height, width, 3)).astype(np.float32), (0, 0), 4) * 255
    patch = cv2.GaussianBlur(rng.random((height, width, 3)).astype(np.float32), (0, 0), 2) * 255
    velocity = rng.uniform(1.0, 4.0, size=2)
    clip = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        frame = background.copy()
        side = int(min(height, width) * (0.3 + 0.02 * t))
        y = int(height * 0.2 + velocity[0] * t) % max(1, height - side)
        x = int(width * 0.1 + velocity[1] * t) % max(1, width - side)
        frame[y : y + side, x : x + side] = patch[:side, :side]
        clip[t] = np.clip(frame * (0.9 + 0.1 * np.sin(t)), 0, 255)
    return clip


def write_clips(directory: Path, count: int, seed: int) -> None:
    import imageio.v2 as imageio

    directory.mkdir(parents=True, exist_ok=True)
    for i, (h, w, t, fps, lossless) in enumerate((CLIPS * (count // len(CLIPS) + 1))[:count]):
        params = {"codec": "libx264rgb", "output_params": ["-qp", "0"]} if lossless else {"codec": "libx264",
                                                                                            "pixelformat": "yuv420p"}
        with imageio.get_writer(directory / f"clip{i}.mp4", fps=fps, macro_block_size=1, **params) as writer:
            for frame in make_clip(h, w, t, seed + i):
                writer.append_data(frame)


def score_ours(work: Path, dimensions: list[str]) -> None:
    """Runs in this package's environment: the vbench tier on the decoded frames, one Scorer per dimension."""
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    import _torchvision_shim  # noqa: F401

    import objectives

    decoded = np.load(work / "decoded.npz")
    info = json.loads((work / "decoded.json").read_text())
    out: dict[str, dict[str, float]] = {}
    for dimension in dimensions:
        scorer = objectives.Scorer([dimension], backend="vbench", weights_dir=work / "cache")
        reader = "decord" if dimension in DECORD_DIMENSIONS else "cv2"
        record = objectives.record_name(dimension, "vbench")
        records = {name: scorer.score_video(decoded[f"{name}:{reader}"], meta["fps"]) for name, meta in info.items()}
        out[dimension] = {name: r[record] for name, r in records.items()}
        if dimension == "dynamic_degree":
            out["dynamic_degree_magnitude"] = {name: r[f"{record}_magnitude"] for name, r in records.items()}
    (work / "ours.json").write_text(json.dumps(out, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dino-repo", type=Path, help="checkout of facebookresearch/dino")
    parser.add_argument("--work", type=Path, default=Path("/tmp/vbench_parity"))
    parser.add_argument("--vbench-venv", type=Path, default=Path("/work/venvs/vbench-0.1.5"))
    parser.add_argument("--ours-venv", type=Path, default=Path("/work/venvs/vboost-vbench"))
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--dimensions", nargs="+", default=DIMENSIONS, choices=DIMENSIONS, metavar="DIM",
                        help="a subset of the seven (default: all)")
    parser.add_argument("--compare-only", action="store_true", help="print the table of an earlier run in --work")
    parser.add_argument("--score-ours", type=Path, help=argparse.SUPPRESS)  # the inner call, in --ours-venv
    args = parser.parse_args()
    if args.score_ours:
        score_ours(args.score_ours, args.dimensions)
        return 0

    if not args.compare_only:
        run(args, parser)
    return compare(args.work, args.tolerance)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Environments, stand-ins, clips, VBench's evaluation and this tier's, all under ``args.work``."""
    work, cache, torch_home = args.work, args.work / "cache", args.work / "torch_home"
    vbench_python = ensure_venv(args.vbench_venv, False, [["setuptools<81", "wheel"], VBENCH_PINS])
    ours_python = ensure_venv(args.ours_venv, True, [["--no-deps", *OURS_EXTRAS]])
    dino_dir = cache / "dino_model" / "facebookresearch_dino_main"
    if not (dino_dir / "hubconf.py").is_file():
        if args.dino_repo is None or not (args.dino_repo / "hubconf.py").is_file():
            parser.error("--dino-repo must name a checkout of facebookresearch/dino (with hubconf.py)")
        dino_dir.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-r", str(args.dino_repo), str(dino_dir)], check=True)
    videos = work / "videos"
    write_clips(videos, args.clips, args.seed)

    subprocess.run([str(vbench_python), str(SIDE), "standins", str(cache), str(torch_home), str(args.seed)], check=True)
    subprocess.run([str(vbench_python), str(SIDE), "decode", str(videos), str(work / "decoded.npz")], check=True)
    subprocess.run([str(vbench_python), str(SIDE), "evaluate", str(videos), str(cache), str(torch_home),
                    str(work / "vbench.json"), *args.dimensions], check=True)
    subprocess.run([str(ours_python), __file__, "--score-ours", str(work), "--dimensions", *args.dimensions], check=True)


def compare(work: Path, tolerance: float) -> int:
    """Print per-video values and the largest absolute difference per dimension; 1 if one exceeds ``tolerance``."""
    theirs = json.loads((work / "vbench.json").read_text())["per_video"]
    ours = json.loads((work / "ours.json").read_text())
    readers = json.loads((work / "decoded.json").read_text())
    names = sorted(readers)
    print("readers agree (cv2 == decord): " + ", ".join(f"{n} {readers[n]['readers_agree']}" for n in names))
    print(f"{'dimension':24s} {'max |diff|':>10s}  per video: vbench / ours")
    worst = 0.0
    # The companion is VBench's own pair scores over its threshold, recorded by _vbench_side.py.
    for dimension in [d for d in [*DIMENSIONS, "dynamic_degree_magnitude"] if d in theirs and d in ours]:
        diffs = [abs(theirs[dimension][n] - ours[dimension][n]) for n in names]
        worst = max(worst, *diffs)
        cells = "  ".join(f"{theirs[dimension][n]:.6f}/{ours[dimension][n]:.6f}" for n in names)
        print(f"{dimension:24s} {max(diffs):10.2e}  {cells}")
    print(f"worst per-video difference {worst:.2e} (tolerance {tolerance:g})")
    return 0 if worst <= tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
