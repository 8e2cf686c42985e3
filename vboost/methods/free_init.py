"""FreeInit (the ByTheWay paper's baseline) through diffusers' own ``enable_free_init`` (docs/methods.md)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from vboost.methods.base import DiffusersCode, Method, MethodHandle, UnsupportedModelError

if TYPE_CHECKING:
    from vboost.export._comfyui import ComfyExport
    from vboost.methods.preset import Preset

_FILTERS = ("butterworth", "gaussian", "ideal")


@dataclasses.dataclass
class FreeInit(Method):
    """FreeInit: re-run sampling ``num_iters`` times, each from the previous result's low temporal-spatial
    frequencies mixed with fresh high-frequency noise. Costs ``num_iters`` generations (fewer steps per early
    pass with ``use_fast_sampling``).

    The knobs are those of diffusers' ``pipe.enable_free_init``. It needs the pipeline (it owns the sampling
    loop): attaching to a bare denoiser raises :class:`UnsupportedModelError`. Raises ``ValueError`` naming a
    bad knob. Detach restores the pipeline's previous FreeInit setting (usually: off).
    """

    num_iters: int = 3
    use_fast_sampling: bool = False
    method: str = "butterworth"
    order: int = 4
    spatial_stop_frequency: float = 0.25
    temporal_stop_frequency: float = 0.25

    name: ClassVar[str] = "free_init"
    supported_denoisers: ClassVar[tuple[str, ...]] = ("UNetMotionModel",)

    def __post_init__(self) -> None:
        if isinstance(self.num_iters, bool) or not isinstance(self.num_iters, int) or self.num_iters < 1:
            raise ValueError(f"num_iters must be an int >= 1; got {self.num_iters!r}")
        if not isinstance(self.use_fast_sampling, bool):
            raise ValueError(f"use_fast_sampling must be a bool; got {self.use_fast_sampling!r}")
        if self.method not in _FILTERS:
            raise ValueError(f"method must be one of {', '.join(_FILTERS)}; got {self.method!r}")
        if isinstance(self.order, bool) or not isinstance(self.order, int) or self.order < 1:
            raise ValueError(f"order must be an int >= 1; got {self.order!r}")
        for knob in ("spatial_stop_frequency", "temporal_stop_frequency"):
            value = getattr(self, knob)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"{knob} must be in [0, 1]; got {value!r}")

    def _attach(self, target: Any, denoiser: torch.nn.Module, handle: MethodHandle) -> None:
        if not hasattr(target, "enable_free_init"):
            raise UnsupportedModelError(
                f"FreeInit re-runs the sampling loop, so it attaches to the pipeline, not to a bare {type(target).__name__}"
            )
        previous = _free_init_settings(target)
        target.enable_free_init(**self.params())

        def restore() -> None:
            if previous is None:
                target.disable_free_init()
            else:
                target.enable_free_init(**previous)

        handle.on_detach(restore)

    def diffusers_code(self, setting: "Preset") -> DiffusersCode:
        """``pipe.enable_free_init(...)`` with these knobs."""
        return DiffusersCode(apply=(f"pipe.enable_free_init(**{self.params()!r})",))

    def comfyui(self, setting: "Preset") -> "ComfyExport":
        """AnimateDiff-Evolved's FreeInit iteration options, which compute diffusers' FreeInit up to 2 iterations."""
        from vboost.export._comfyui import INSTEAD, ComfyExport, checked_values, not_exported
        from vboost.export._comfyui_nodes import ADE_FREE_INIT

        if self.num_iters > 2:
            return ComfyExport([not_exported(
                ADE_FREE_INIT,
                f"not exported: {self.num_iters} iterations, and from the third pass on this node re-noises from "
                f"another noise than diffusers' FreeInit; {INSTEAD}",
            )], [])
        if self.use_fast_sampling:
            return ComfyExport([not_exported(
                ADE_FREE_INIT,
                "not exported: tuned with use_fast_sampling (fewer steps in the early passes), which this node cannot "
                f"do; {INSTEAD}",
            )], [])
        wanted = {
            "iterations": self.num_iters,
            "filter": self.method,
            "d_s": self.spatial_stop_frequency,
            "d_t": self.temporal_stop_frequency,
            "n_butterworth": self.order,
            # diffusers re-noises at the last training timestep and leaves the first pass alone.
            "sigma_step": 999,
            "apply_to_1st_iter": False,
            "init_type": "FreeInit [model sigma]",
        }
        return ComfyExport([checked_values(ADE_FREE_INIT, wanted, [ADE_FREE_INIT.caveat])], [])


def _free_init_settings(pipe: Any) -> dict[str, Any] | None:
    """The pipeline's current ``enable_free_init`` arguments, or ``None`` when FreeInit is off."""
    if not pipe.free_init_enabled:
        return None
    return {field.name: getattr(pipe, f"_free_init_{field.name}") for field in dataclasses.fields(FreeInit)}


__all__ = ["FreeInit"]
