"""The VBench side of ``bench_vbench_parity.py``; runs inside the virtual environment holding vbench==0.1.5.

    python _vbench_side.py standins CACHE TORCH_HOME SEED   # random stand-in weights, VBench's formats
    python _vbench_side.py decode VIDEOS OUT.npz            # frames as VBench's two readers decode them
    python _vbench_side.py evaluate VIDEOS CACHE TORCH_HOME OUT.json [DIMENSION...]

Stand-ins are built with the original architectures (VBench's vendored RAFT and AMT, DINO's own
``vision_transformer`` from the repository VBench loads through torch.hub, OpenAI's ``clip`` model saved as a
TorchScript archive with half weights as OpenAI ships them, pyiqa's MUSIQ, a ``Linear(768, 1)``), seeded, and
saved under VBench's cache names. Nothing is downloaded: ``evaluate`` fails rather than fetch a missing file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "tests")]
import _torchvision_shim  # noqa: E402,F401  (before anything imports torchvision)

import numpy as np  # noqa: E402
import torch  # noqa: E402

DIMENSIONS = ["subject_consistency", "background_consistency", "temporal_flickering", "motion_smoothness",
              "dynamic_degree", "aesthetic_quality", "imaging_quality"]


def _save(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def _jitter(module: torch.nn.Module, generator: torch.Generator, scale: float) -> None:
    """Seeded perturbation of every floating tensor, so no weight keeps a constant initial value
    (biases 0, norms 1, BatchNorm statistics 0/1) that could hide a mis-mapped tensor."""
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.dtype.is_floating_point:
                continue
            noise = torch.randn(tensor.shape, generator=generator) * scale
            if name.endswith("running_var"):
                tensor.copy_(tensor.abs() + 0.5 + noise.abs())
            else:
                tensor.add_(noise)


def standins(cache: Path, torch_home: Path, seed: int) -> None:
    marker = cache / f"standins-seed-{seed}"
    if marker.exists():
        return
    from easydict import EasyDict
    from omegaconf import OmegaConf

    import clip.model
    import vbench
    from pyiqa.archs.musiq_arch import MUSIQ
    from vbench.third_party.amt.utils.build_utils import build_from_cfg
    from vbench.third_party.RAFT.core.raft import RAFT

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)

    raft = RAFT(EasyDict(small=False, mixed_precision=False, alternate_corr=False))
    _jitter(raft, generator, 0.01)
    _save({f"module.{k}": v for k, v in raft.state_dict().items()}, cache / "raft_model/models/raft-things.pth")

    amt_cfg = OmegaConf.load(Path(vbench.__file__).parent / "third_party/amt/cfgs/AMT-S.yaml").network
    amt = build_from_cfg(amt_cfg)
    _jitter(amt, generator, 0.01)
    _save({"state_dict": amt.state_dict()}, cache / "amt_model/amt-s.pth")

    sys.path.insert(0, str(cache / "dino_model/facebookresearch_dino_main"))
    import vision_transformer

    dino = vision_transformer.vit_base(patch_size=16, num_classes=0)
    _jitter(dino, generator, 0.02)
    _save(dino.state_dict(), cache / "dino_model/dino_vitbase16_pretrain.pth")
    # DINO's hubconf ignores VBench's path and reads torch.hub's checkpoint cache: the same file goes there.
    _save(dino.state_dict(), torch_home / "hub/checkpoints/dino_vitbase16_pretrain.pth")

    # (embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size, context_length,
    #  vocab_size, transformer_width, transformer_heads, transformer_layers) of OpenAI's two models.
    for name, dims in (("ViT-B-32", (512, 224, 12, 768, 32, 77, 49408, 512, 8, 12)),
                       ("ViT-L-14", (768, 224, 24, 1024, 14, 77, 49408, 768, 12, 12))):
        model = clip.model.CLIP(*dims).eval()
        _jitter(model, generator, 0.002)
        traced = torch.jit.trace(model, (torch.zeros(1, 3, 224, 224), torch.zeros(1, 77, dtype=torch.long)))
        traced = traced.half()  # OpenAI's archives hold float16 weights
        (cache / "clip_model").mkdir(parents=True, exist_ok=True)
        traced.save(str(cache / f"clip_model/{name}.pt"))

    head = torch.nn.Linear(768, 1)
    _jitter(head, generator, 0.5)
    _save(head.state_dict(), cache / "aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth")

    musiq = MUSIQ(pretrained=False)
    _jitter(musiq, generator, 0.01)
    _save(musiq.state_dict(), cache / "pyiqa_model/musiq_spaq_ckpt-358bb6af.pth")
    marker.touch()


def decode(videos: Path, out: Path) -> None:
    """Per video: cv2's RGB frames (VBench's reader for flicker, RAFT and AMT), decord's (its ``load_video``
    for DINO, CLIP and MUSIQ), cv2's fps, and whether the two readers agree exactly."""
    from decord import VideoReader

    from objectives._io import _read_opencv  # VBench's own loop: VideoCapture.read, BGR -> RGB, CAP_PROP_FPS

    arrays, report = {}, {}
    for path in sorted(videos.glob("*.mp4")):
        by_cv2, fps = _read_opencv(path)
        reader = VideoReader(str(path), num_threads=1)
        by_decord = reader.get_batch(range(len(reader))).asnumpy()
        arrays[f"{path.name}:cv2"], arrays[f"{path.name}:decord"] = by_cv2, by_decord
        same = by_cv2.shape == by_decord.shape and bool((by_cv2 == by_decord).all())
        report[path.name] = {"fps": fps, "frames": len(by_cv2), "readers_agree": same}
    np.savez(out, **arrays)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))


def _record_dynamic_pair_scores() -> dict[str, float]:
    """Wrap VBench's DynamicDegree so that each video's continuous companion is kept: the mean of its pair
    scores (``get_score``, the top-5% flow magnitude) over the threshold ``set_params`` chose."""
    from vbench.dynamic_degree import DynamicDegree

    magnitudes: dict[str, float] = {}
    infer, get_score = DynamicDegree.infer, DynamicDegree.get_score

    def recording_infer(self, video_path):
        self.pair_scores = []
        moving = infer(self, video_path)
        scores = self.pair_scores
        magnitudes[Path(video_path).name] = float(np.mean(scores)) / self.params["thres"] if scores else 0.0
        return moving

    def recording_get_score(self, img, flo):
        score = get_score(self, img, flo)
        self.pair_scores.append(score)
        return score

    DynamicDegree.infer, DynamicDegree.get_score = recording_infer, recording_get_score
    return magnitudes


def evaluate(videos: Path, cache: Path, torch_home: Path, out: Path, dimensions: list[str]) -> None:
    """VBench's own API on the CPU, local mode, custom input; writes ``{dimension: {video: value}}``."""
    os.environ["VBENCH_CACHE_DIR"], os.environ["TORCH_HOME"] = str(cache), str(torch_home)
    import vbench
    import vbench.utils
    from vbench import VBench

    def no_downloads(*args, **kwargs):
        raise RuntimeError(f"the benchmark refuses a download: {args[0] if args else kwargs}")

    # VBench fetches a missing file with wget or git through vbench.utils' subprocess; every file must be there.
    vbench.utils.subprocess = types.SimpleNamespace(run=no_downloads, CalledProcessError=subprocess.CalledProcessError)
    magnitudes = _record_dynamic_pair_scores()
    full_info = Path(vbench.__file__).parent / "VBench_full_info.json"
    results_dir = out.parent / "vbench_results"
    VBench("cpu", str(full_info), str(results_dir)).evaluate(
        videos_path=str(videos), name="parity", dimension_list=dimensions, local=True, mode="custom_input"
    )
    raw = json.loads((results_dir / "parity_eval_results.json").read_text())
    per_video = {}
    for dimension, (_overall, videos_results) in raw.items():
        values = {}
        for entry in videos_results:
            value = entry["video_results"]
            if dimension == "imaging_quality":
                value = value / 100.0  # VBench divides only its overall score by 100
            values[Path(entry["video_path"]).name] = float(value)
        per_video[dimension] = values
    if magnitudes:
        per_video["dynamic_degree_magnitude"] = magnitudes
    out.write_text(json.dumps({"overall": {d: raw[d][0] for d in raw}, "per_video": per_video}, indent=2))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "standins":
        standins(Path(args[0]), Path(args[1]), int(args[2]))
    elif command == "decode":
        decode(Path(args[0]), Path(args[1]))
    elif command == "evaluate":
        evaluate(Path(args[0]), Path(args[1]), Path(args[2]), Path(args[3]), args[4:] or DIMENSIONS)
    else:
        raise SystemExit(f"unknown command {command!r}")
