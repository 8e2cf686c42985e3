"""Where the ``vbench`` tier finds its weights and libraries: VBench's own cache, checked before anything loads.

The files are VBench's (0.1.5), under the paths its ``vbench/utils.py`` gives them in its cache directory
(``$VBENCH_CACHE_DIR``, else ``~/.cache/vbench``), in their original formats. Nothing is ever downloaded:
a missing file is an error naming the path, the dimension that needs it and where VBench gets it.

This module imports no torch, so a sweep can check a configuration in a second.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from ._registry import resolve


@dataclasses.dataclass(frozen=True)
class WeightFile:
    """One file of VBench's cache: its path relative to the cache, what it holds and where VBench gets it."""

    path: str
    holds: str
    source: str


RAFT = WeightFile(
    "raft_model/models/raft-things.pth", "RAFT-large trained on FlyingChairs+FlyingThings (state dict)",
    "https://dl.dropboxusercontent.com/s/4j4z58wuv8o0mfz/models.zip (unzipped into raft_model/)",
)
DINO = WeightFile(
    "dino_model/dino_vitbase16_pretrain.pth", "DINO ViT-B/16 backbone (state dict)",
    "https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
)
CLIP_B32 = WeightFile(
    "clip_model/ViT-B-32.pt", "OpenAI CLIP ViT-B/32 (TorchScript archive)",
    "https://openaipublic.azureedge.net/clip/models/"
    "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
)
CLIP_L14 = WeightFile(
    "clip_model/ViT-L-14.pt", "OpenAI CLIP ViT-L/14 (TorchScript archive)",
    "https://openaipublic.azureedge.net/clip/models/"
    "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
)
AESTHETIC = WeightFile(
    "aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth", "LAION aesthetic head, Linear(768, 1) state dict",
    "https://github.com/LAION-AI/aesthetic-predictor/blob/main/sa_0_4_vit_l_14_linear.pth?raw=true",
)
AMT_S = WeightFile(
    "amt_model/amt-s.pth", "AMT-S frame interpolator ({'state_dict': ...})",
    "https://huggingface.co/lalala125/AMT/resolve/main/amt-s.pth",
)
MUSIQ_SPAQ = WeightFile(
    "pyiqa_model/musiq_spaq_ckpt-358bb6af.pth", "MUSIQ trained on SPAQ (state dict)",
    "https://github.com/chaofengc/IQA-PyTorch/releases/download/v0.1-weights/musiq_spaq_ckpt-358bb6af.pth",
)

REQUIRED: dict[str, tuple[WeightFile, ...]] = {
    "dynamic_degree": (RAFT,),
    "subject_consistency": (DINO,),
    "background_consistency": (CLIP_B32,),
    "motion_smoothness": (AMT_S,),
    "aesthetic_quality": (CLIP_L14, AESTHETIC),
    "imaging_quality": (MUSIQ_SPAQ,),
}
"""What each dimension's ``vbench`` tier reads from the cache (temporal_flickering needs nothing)."""

LIBRARIES: dict[str, tuple[str, ...]] = {
    "dynamic_degree": ("torchvision",),
    "imaging_quality": ("torchvision", "pyiqa"),
}
"""Importable modules each dimension's ``vbench`` tier needs beyond the core install (``pip install
'vboost[vbench]'`` brings them); transformers (DINO, CLIP) is a core dependency, AMT-S is in this package."""


class MissingWeightsError(FileNotFoundError):
    """A weight file the ``vbench`` tier needs is not in the weights directory; the one-line message names
    the path, the dimension that needs it and where VBench downloads it from."""


class CheckpointError(ValueError):
    """A weight file is unreadable without executing pickled code, or does not hold the network it should;
    the message names the file."""


class MissingDependencyError(ImportError):
    """A library the ``vbench`` tier needs for a dimension is not installed; the message names both."""


def default_weights_dir() -> Path:
    """VBench's cache directory: ``$VBENCH_CACHE_DIR`` if set, else ``~/.cache/vbench`` (as ``vbench/utils.py``)."""
    cache = os.environ.get("VBENCH_CACHE_DIR")
    return Path(cache) if cache else Path.home() / ".cache" / "vbench"


def weights_dir_or_default(weights_dir: str | Path | None) -> Path:
    """``weights_dir`` with ``~`` expanded, or :func:`default_weights_dir` when it is ``None``."""
    return default_weights_dir() if weights_dir is None else Path(weights_dir).expanduser()


def weight_path(weights_dir: str | Path | None, file: WeightFile, dimension: str) -> Path:
    """The path of ``file`` under ``weights_dir`` (``None``: VBench's cache); raises :class:`MissingWeightsError`
    (one line: path, dimension, source) when it is not a file."""
    path = weights_dir_or_default(weights_dir) / file.path
    if not path.is_file():
        raise MissingWeightsError(
            f"{dimension} (vbench tier) needs {str(path)!r}, {file.holds}, which is missing; "
            f"VBench downloads it from {file.source}"
        )
    return path


def check_weights(
    dimensions: Iterable[str] | str,
    backend: str | Mapping[str, str] = "vbench",
    weights_dir: str | Path | None = None,
) -> dict[str, list[Path]]:
    """Check, without importing torch or loading anything, that every dimension resolving to the ``vbench``
    tier under ``backend`` finds its files under ``weights_dir`` (``None``: VBench's cache, see
    :func:`default_weights_dir`) and its libraries.

    Returns ``{dimension: [weight file paths]}`` for those dimensions (empty when none uses the vbench tier).
    Raises ``ValueError``/:class:`~objectives.TierUnavailableError` on a bad configuration (as
    :func:`objectives.resolve`), :class:`MissingWeightsError` naming the first missing file and its dimension,
    :class:`MissingDependencyError` naming a missing library and its dimension.
    """
    found: dict[str, list[Path]] = {}
    for name, tier_name in resolve(dimensions, backend).items():
        if tier_name != "vbench":
            continue
        found[name] = [weight_path(weights_dir, file, name) for file in REQUIRED[name]]
        for module in LIBRARIES.get(name, ()):
            if importlib.util.find_spec(module) is None:
                raise MissingDependencyError(
                    f"{name} (vbench tier) needs the {module} package, which is not installed; "
                    "pip install -e '.[vbench]' (in the vboost checkout)"
                )
    return found
