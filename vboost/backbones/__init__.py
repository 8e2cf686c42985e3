"""Backbone adapters, one per diffusers pipeline family, and the registry the configs name them by."""

from __future__ import annotations

import os
from typing import Any

import torch

from vboost.backbones.animatediff import (
    AnimateDiffBackbone,
    AnimateDiffSparseCtrlBackbone,
)
from vboost.backbones.base import Backbone, GenerationDefaults, Video
from vboost.backbones.cogvideox import CogVideoXBackbone
from vboost.backbones.hunyuan_video import HunyuanVideoBackbone
from vboost.backbones.ltx_video import LTXVideoBackbone
from vboost.backbones.videocrafter2 import VideoCrafter2Backbone
from vboost.backbones.wan import WanBackbone

BACKBONES: dict[str, type[Backbone]] = {
    cls.family: cls
    for cls in (
        AnimateDiffBackbone,
        AnimateDiffSparseCtrlBackbone,
        CogVideoXBackbone,
        HunyuanVideoBackbone,
        WanBackbone,
        LTXVideoBackbone,
        VideoCrafter2Backbone,
    )
}


def get_backbone_class(family: str) -> type[Backbone]:
    """The adapter class registered as ``family``; raises ``KeyError`` naming the known families."""
    try:
        return BACKBONES[family]
    except KeyError:
        raise KeyError(f"unknown backbone family {family!r}; known: {', '.join(sorted(BACKBONES))}") from None


def load_backbone(
    family: str,
    weights: str | os.PathLike | None,
    *,
    defaults: GenerationDefaults | None = None,
    torch_dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cpu",
    seed: int = 0,
    **load_kwargs: Any,
) -> Backbone:
    """Load ``family`` from a local weights directory, or build its tiny random-weight model when ``weights`` is None.

    ``defaults`` overrides the generation settings (a tiny model keeps its own where none is given).
    """
    cls = get_backbone_class(family)
    if weights is None:
        backbone = cls.tiny(seed=seed)
        backbone.pipe.to(device)
        if defaults is not None:
            backbone.defaults = defaults
        return backbone
    if defaults is None:
        raise ValueError(f"loading {family!r} from {str(weights)!r} needs generation defaults")
    return cls.from_pretrained(weights, defaults, torch_dtype=torch_dtype, device=device, **load_kwargs)


__all__ = [
    "BACKBONES",
    "Backbone",
    "GenerationDefaults",
    "Video",
    "get_backbone_class",
    "load_backbone",
    *[cls.__name__ for cls in BACKBONES.values()],
]
