"""Enhance-A-Video (FETA) for video DiTs: CogVideoX, HunyuanVideo, HunyuanVideo 1.5, Wan2.1, LTX-Video (full 3-D
attention), LTX-2 (the video self-attention of its audio-video blocks) and Open-Sora v1.2 (the temporal attention of
its spatial-temporal blocks).

Each matched attention module gets a processor that reimplements its diffusers processor, computes the
cross-frame intensity of the video q/k handed to the kernel and scales the video output by
``clamp(CFI * (F + weight), min=1)`` (docs/methods.md). Outside the step window the original processor runs.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from vboost.geometry import ClipGeometry
from vboost.methods.base import Method, MethodHandle, UnsupportedModelError
from vboost.methods.enhance_a_video._processor import Family, FetaProcessor, FetaState, clip_layout

if TYPE_CHECKING:
    from vboost.export._comfyui import ComfyExport
    from vboost.methods.preset import Preset

# Denoiser class name -> the module of this package defining its Family, and the Family's name there. They import the
# diffusers processors they reimplement, so they are imported when the method attaches, not when a config is checked.
FAMILIES: dict[str, tuple[str, str]] = {
    "CogVideoXTransformer3DModel": ("_cogvideox", "COGVIDEOX"),
    "HunyuanVideoTransformer3DModel": ("_hunyuan_video", "HUNYUAN_VIDEO"),
    "HunyuanVideo15Transformer3DModel": ("_hunyuan_video15", "HUNYUAN_VIDEO15"),
    "WanTransformer3DModel": ("_wan", "WAN"),
    "LTXVideoTransformer3DModel": ("_ltx_video", "LTX_VIDEO"),
    "LTX2VideoTransformer3DModel": ("_ltx2", "LTX2"),
    "STDiT3": ("_opensora", "OPENSORA"),
}


def family_of(denoiser_class: str) -> Family:
    """How Enhance-A-Video enters the denoiser class ``denoiser_class`` (one of :data:`FAMILIES`)."""
    module, name = FAMILIES[denoiser_class]
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


@dataclasses.dataclass
class EnhanceAVideo(Method):
    """Enhance-A-Video: scale each full-attention layer's video output by its cross-frame intensity.

    Args:
        weight: added to the frame count in the official temperature ``F + weight``; uniform attention gives a
            gain of ``1 + weight / F``, so the same weight is stronger on short clips.
        start, end: active iff ``start <= step / num_steps <= end`` (zero-based step; inclusive).
        layers: ``None`` for every matched attention module, else a list of fnmatch patterns on the module
            name relative to the denoiser (``"single_transformer_blocks.*"``, ``"transformer_blocks.3"``,
            which also matches the modules below it) or ints: the i-th matched module in forward order (block
            ``i`` in single-stream models; HunyuanVideo counts its dual-stream blocks first).

    Raises ``ValueError`` naming the bad knob on construction, and on attach when a ``layers`` entry matches
    nothing.
    """

    weight: float
    start: float = 0.0
    end: float = 1.0
    layers: Sequence[str | int] | None = None

    name: ClassVar[str] = "enhance_a_video"
    supported_denoisers: ClassVar[tuple[str, ...]] = tuple(FAMILIES)

    def __post_init__(self) -> None:
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) or not math.isfinite(self.weight):
            raise ValueError(f"weight must be a finite number; got {self.weight!r}")
        if not 0.0 <= self.start <= self.end <= 1.0:
            raise ValueError(f"need 0 <= start <= end <= 1; got start={self.start!r}, end={self.end!r}")
        if self.layers is not None:
            if isinstance(self.layers, (str, int)):
                self.layers = [self.layers]
            self.layers = list(self.layers)
            for entry in self.layers:
                if isinstance(entry, bool) or not isinstance(entry, (str, int)) or (isinstance(entry, int) and entry < 0):
                    raise ValueError(f"layers entries must be module-name patterns or block indices >= 0; got {entry!r}")

    def check_clip(self, geometry: ClipGeometry) -> None:
        """The score compares frames: it needs at least 2 latent frames."""
        if geometry.latent_frames < 2:
            raise ValueError(
                f"Enhance-A-Video scores attention across frames and needs at least 2 latent frames; "
                f"{geometry.num_frames} frames give F={geometry.latent_frames}"
            )

    def _attach(self, target: Any, denoiser: torch.nn.Module, handle: MethodHandle) -> None:
        family = family_of(type(denoiser).__name__)  # the base class has checked supported_denoisers
        sites = self._select(_find_sites(denoiser, family))
        state = FetaState(weight=float(self.weight), start=self.start, end=self.end, handle=handle)

        def capture_frames(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            state.num_frames = family.latent_frames(module, args, kwargs)
            state.clips, state.halves = clip_layout(family, target, args, kwargs)

        hook = denoiser.register_forward_pre_hook(capture_frames, with_kwargs=True)
        handle.on_detach(hook.remove)
        for name, module in sites:
            original = module.processor
            module.set_processor(family.feta_processor(original, name, state))
            handle.on_detach(lambda module=module, original=original: module.set_processor(original))

    def comfyui(self, setting: "Preset") -> "ComfyExport":
        """The nodes that compute this score on ``setting``'s backbone (``_comfyui``; docs/comfyui.md)."""
        from vboost.methods.enhance_a_video._comfyui import enhance_a_video_nodes

        return enhance_a_video_nodes(setting, self.params())

    def _select(self, sites: list[tuple[str, torch.nn.Module]]) -> list[tuple[str, torch.nn.Module]]:
        if self.layers is None:
            return sites
        chosen: set[int] = set()
        for entry in self.layers:
            if isinstance(entry, int):
                if entry >= len(sites):
                    raise ValueError(f"layers entry {entry} is out of range: {len(sites)} attention modules matched")
                matched = [entry]
            else:
                matched = [
                    i for i, (name, _) in enumerate(sites)
                    if fnmatch.fnmatchcase(name, entry) or fnmatch.fnmatchcase(name, entry + ".*")
                ]
                if not matched:
                    examples = ", ".join(name for name, _ in sites[:3])
                    raise ValueError(f"layers pattern {entry!r} matches no attention module (they are named like {examples})")
            chosen.update(matched)
        return [site for i, site in enumerate(sites) if i in chosen]


def _find_sites(denoiser: torch.nn.Module, family: Family) -> list[tuple[str, torch.nn.Module]]:
    """The attention modules to swap, in forward order; raises when one runs a processor we cannot reimplement."""
    pattern = re.compile(family.site_pattern)
    sites = [(name, module) for name, module in denoiser.named_modules() if pattern.fullmatch(name)]
    for name, module in sites:
        processor = getattr(module, "processor", None)
        if isinstance(processor, FetaProcessor):
            raise RuntimeError(f"EnhanceAVideo is already attached to {name}; detach it first")
        if type(processor) is not family.processor_class:
            raise UnsupportedModelError(
                f"{name} runs {type(processor).__name__}; EnhanceAVideo reimplements {family.processor_class.__name__} only"
            )
        family.check_site(name, module)
    if not sites:
        raise UnsupportedModelError(f"no attention module of {type(denoiser).__name__} matches {family.site_pattern!r}")
    return sites


__all__ = ["EnhanceAVideo"]
