"""Training-free enhancement methods: attach to a pipeline or denoiser, generate, detach."""

from __future__ import annotations

from typing import Any

from vboost.methods.base import DiffusersCode, Method, MethodHandle, UnsupportedModelError
from vboost.methods.bytheway import ByTheWay
from vboost.methods.combined import Combined, Member
from vboost.methods.enhance_a_video import EnhanceAVideo
from vboost.methods.free_init import FreeInit
from vboost.methods.freeu import FreeU
from vboost.methods.guiders import (
    AdaptiveProjectedGuidance,
    ClassifierFreeGuidance,
    ClassifierFreeZeroStarGuidance,
    GuiderMethod,
    SkipLayerGuidance,
)

METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (
        EnhanceAVideo, ByTheWay, FreeInit, FreeU, SkipLayerGuidance, ClassifierFreeZeroStarGuidance,
        ClassifierFreeGuidance, AdaptiveProjectedGuidance, Combined,
    )
}


def build_method(name: str, **params: Any) -> Method:
    """The method registered as ``name`` with ``params``; raises ``KeyError`` naming the known methods."""
    try:
        cls = METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}") from None
    return cls(**params)


__all__ = [
    "METHODS",
    "AdaptiveProjectedGuidance",
    "ByTheWay",
    "ClassifierFreeGuidance",
    "ClassifierFreeZeroStarGuidance",
    "Combined",
    "DiffusersCode",
    "EnhanceAVideo",
    "FreeInit",
    "FreeU",
    "GuiderMethod",
    "Member",
    "Method",
    "MethodHandle",
    "SkipLayerGuidance",
    "UnsupportedModelError",
    "build_method",
]
