"""FreeU (arXiv 2309.11497) on U-Nets through diffusers' own ``enable_freeu`` / ``disable_freeu``."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from vboost.methods.base import DiffusersCode, Method, MethodHandle

if TYPE_CHECKING:
    from vboost.export._comfyui import ComfyExport
    from vboost.methods.preset import Preset

_KNOBS = ("s1", "s2", "b1", "b2")


@dataclasses.dataclass
class FreeU(Method):
    """FreeU: in the first two decoder stages of a U-Net, the backbone features' first half of channels are scaled by
    ``b1`` / ``b2`` and the low spatial frequencies of the skip features by ``s1`` / ``s2`` (diffusers'
    ``enable_freeu``; stage ``k`` is ``up_blocks[k - 1]``).

    Published values: SD1.5 (AnimateDiff's base) ``b1 1.5, b2 1.6, s1 0.9, s2 0.2``; video U-Nets
    (ModelScope/Zeroscope) ``b1 1.2, b2 1.4, s1 0.9, s2 0.2``. Raises ``ValueError`` naming a knob that is not a finite
    number. Detach restores the U-Net's previous FreeU setting (usually: off).
    """

    b1: float
    b2: float
    s1: float
    s2: float

    name: ClassVar[str] = "freeu"
    supported_denoisers: ClassVar[tuple[str, ...]] = ("UNetMotionModel", "UNet3DConditionModel")

    def __post_init__(self) -> None:
        for knob in _KNOBS:
            value = getattr(self, knob)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{knob} must be a finite number; got {value!r}")

    def _attach(self, target: Any, denoiser: torch.nn.Module, handle: MethodHandle) -> None:
        previous = _freeu_settings(denoiser)
        denoiser.enable_freeu(**{knob: getattr(self, knob) for knob in _KNOBS})

        def restore() -> None:
            if previous is None:
                denoiser.disable_freeu()
            else:
                denoiser.enable_freeu(**previous)

        handle.on_detach(restore)

    def diffusers_code(self, setting: "Preset") -> DiffusersCode:
        """``pipe.enable_freeu(...)`` with this setting."""
        args = ", ".join(f"{knob}={getattr(self, knob)!r}" for knob in _KNOBS)
        return DiffusersCode(apply=(f"pipe.enable_freeu({args})",))

    def comfyui(self, setting: "Preset") -> "ComfyExport":
        from vboost.export._comfyui import ComfyExport

        return ComfyExport([], [
            "no ComfyUI values: ComfyUI's FreeU and FreeU_V2 nodes pick the decoder blocks by channel count (model "
            "channels x 4 take b1/s1, x 2 take b2/s2), so on SD1.5 b1 scales the first two decoder stages and b2 the "
            "third, where diffusers' FreeU, which vboost tunes, scales the first stage with b1 and the second with b2; "
            "use the diffusers script"
        ])


def _freeu_settings(denoiser: torch.nn.Module) -> dict[str, float] | None:
    """The U-Net's current ``enable_freeu`` arguments, or ``None`` when FreeU is off (diffusers keeps them on every up
    block; off is ``None`` or absent)."""
    block = denoiser.up_blocks[0]
    values = {knob: getattr(block, knob, None) for knob in _KNOBS}
    return None if any(value is None for value in values.values()) else values


__all__ = ["FreeU"]
