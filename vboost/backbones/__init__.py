"""Backbone adapters, one per pipeline family, and the registry the configs name them by.

``BACKBONES`` maps a family to its :class:`BackboneSpec` (plain data: importing this package imports no diffusers,
so a config is checked before anything heavy loads). A user's module may register an adapter class directly,
``BACKBONES["mine"] = MyBackbone``. The adapter classes are imported on first use.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import torch

from vboost.geometry import ClipGeometry, FrameRule
from vboost.backbones._specs import SPECS, BackboneSpec
from vboost.backbones.base import Backbone, GenerationDefaults, Video

BACKBONES: dict[str, BackboneSpec | type[Backbone]] = dict(SPECS)

# Adapter class name -> its module, for ``from vboost.backbones import CogVideoXBackbone`` (imported when asked for).
_ADAPTERS = {spec.target.split(":")[1]: spec.target.split(":")[0] for spec in SPECS.values()}


def backbone_spec(family: str) -> BackboneSpec:
    """The spec registered as ``family`` (importing nothing); raises ``KeyError`` naming the known families."""
    try:
        entry = BACKBONES[family]
    except KeyError:
        raise KeyError(f"unknown backbone family {family!r}; known: {', '.join(sorted(BACKBONES))}") from None
    return entry if isinstance(entry, BackboneSpec) else BackboneSpec.of_class(entry)


def get_backbone_class(family: str) -> type[Backbone]:
    """The adapter class registered as ``family`` (importing it); raises ``KeyError`` naming the known families."""
    entry = BACKBONES.get(family)
    if isinstance(entry, type):
        return entry
    return backbone_spec(family).load()


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


def __getattr__(name: str) -> Any:
    if name in _ADAPTERS:
        return getattr(importlib.import_module(_ADAPTERS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BACKBONES",
    "Backbone",
    "BackboneSpec",
    "ClipGeometry",
    "FrameRule",
    "GenerationDefaults",
    "Video",
    "backbone_spec",
    "get_backbone_class",
    "load_backbone",
    *_ADAPTERS,
]
