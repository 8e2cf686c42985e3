"""Backbone adapters, one per pipeline family, and the registry the configs name them by.

``BACKBONES`` maps a family to its :class:`BackboneSpec` (plain data: importing this package imports no diffusers,
so a config is checked before anything heavy loads). A user's module may register an adapter class directly,
``BACKBONES["mine"] = MyBackbone``. The adapter classes are imported on first use.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
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
    component_dtypes: Mapping[str, torch.dtype | str] | None = None,
    memory: Mapping[str, Any] | None = None,
    attention_backend: str | None = None,
    compile: Mapping[str, Any] | None = None,  # noqa: A002 -- the config key's name
    **load_kwargs: Any,
) -> Backbone:
    """Load ``family`` from a local weights directory, or build its tiny random-weight model when ``weights`` is None,
    and apply diffusers' memory and speed features (docs/gpu.md).

    ``defaults`` overrides the generation settings (a tiny model keeps its own where none is given).
    ``component_dtypes`` gives components a dtype of their own (``{"vae": "float32"}``); ``memory`` (CPU or group
    offloading to ``device``, VAE tiling and slicing), ``attention_backend`` and ``compile`` are the options of
    ``backbone.memory``, ``backbone.attention_backend`` and ``backbone.compile`` in a sweep config (applied by
    :func:`vboost.backbones._runtime.apply_runtime_options`). An offloaded pipeline is loaded on the CPU.
    """
    from vboost.backbones._runtime import apply_runtime_options, cast_vae_inputs, module_dtype

    cls, spec = get_backbone_class(family), backbone_spec(family)
    dtypes = {name: getattr(torch, dtype) if isinstance(dtype, str) else dtype for name, dtype in (component_dtypes or {}).items()}
    offloaded = bool(memory and (memory.get("cpu_offload") or memory.get("group_offload")))
    load_device = "cpu" if offloaded else device
    if weights is None:
        backbone = cls.tiny(seed=seed)
        for name, dtype in dtypes.items():
            backbone.pipe.components[name].to(dtype)
        backbone.pipe.to(load_device)
        if defaults is not None:
            backbone.defaults = defaults
    else:
        if defaults is None:
            raise ValueError(f"loading {family!r} from {str(weights)!r} needs generation defaults")
        if dtypes:
            load_kwargs["component_dtypes"] = dtypes
        backbone = cls.from_pretrained(weights, defaults, torch_dtype=torch_dtype, device=load_device, **load_kwargs)
    vae = getattr(backbone.pipe, "vae", None)  # a user's own backbone (``imports=``) need not be a diffusers pipeline
    if vae is not None and module_dtype(vae) != module_dtype(backbone.denoiser):
        cast_vae_inputs(vae)
    apply_runtime_options(backbone, spec, device, memory=memory, attention_backend=attention_backend, compile=compile)
    return backbone


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
