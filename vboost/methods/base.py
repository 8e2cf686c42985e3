"""What every method shares: attach/detach, step windows and per-call diagnostics."""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch

from vboost.geometry import ClipGeometry
from vboost.methods._records import RecordLog
from vboost.methods._steps import StepTracker


class UnsupportedModelError(TypeError):
    """Raised when a method is attached to a model it has no injection sites for."""


@dataclasses.dataclass
class MethodHandle:
    """What ``Method.attach`` returns.

    ``records`` holds one dict per attention call the method touched (step, layer and what the method saw; one per
    clip, with ``clip`` its position, when a call carries several clips), so a sweep can log why a setting helped.
    ``detach()`` restores the model exactly; calling it twice is a no-op.
    """

    method: "Method"
    target_name: str
    steps: StepTracker = dataclasses.field(default_factory=StepTracker)
    _log: RecordLog = dataclasses.field(default_factory=RecordLog, repr=False)
    _undo: list[Callable[[], None]] = dataclasses.field(default_factory=list, repr=False)
    attached: bool = True

    def on_detach(self, undo: Callable[[], None]) -> None:
        """Register ``undo`` to run at :meth:`detach` (the last registered runs first): how a method's ``_attach``
        says how to restore each thing it changed, so that detaching leaves the model exactly as it was."""
        self._undo.append(undo)

    def detach(self) -> None:
        """Undo every change ``attach`` made, in reverse order."""
        while self._undo:
            self._undo.pop()()
        self.attached = False

    @property
    def records(self) -> list[dict[str, Any]]:
        """The records so far, as plain values (values recorded as tensors are read back now, in one transfer)."""
        return self._log.records()

    def record(self, **values: Any) -> None:
        """Add a record at the current step. Tensor values are read only when ``records`` is: a 1-D tensor gives one
        record per entry (per clip of a batched call), so a processor never waits for the device."""
        self._log.append({"step": self.steps.step_index, "num_steps": self.steps.num_steps, **values})

    def summary(self) -> dict[str, float]:
        """Mean of every numeric diagnostic over all records (``{}`` when nothing was recorded)."""
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for rec in self.records:
            for key, value in rec.items():
                if key in ("step", "num_steps", "clip") or not isinstance(value, (int, float)) or isinstance(value, bool):
                    continue
                sums[key] = sums.get(key, 0.0) + float(value)
                counts[key] = counts.get(key, 0) + 1
        return {key: sums[key] / counts[key] for key in sums}


class Method(abc.ABC):
    """A training-free enhancement that edits a denoiser's attention at inference time.

    Subclasses are dataclasses of their knobs; ``name`` is the key used in configs and presets, and
    ``supported_denoisers`` lists the diffusers class names the method knows how to inject into.
    """

    name: ClassVar[str]
    supported_denoisers: ClassVar[tuple[str, ...]]

    def attach(self, target: Any) -> MethodHandle:
        """Inject the method into ``target`` (a diffusers pipeline or a bare denoiser module).

        Returns a :class:`MethodHandle`; raises :class:`UnsupportedModelError` naming the model class and the
        supported ones when ``target`` has no known injection sites.
        """
        denoiser = find_denoiser(target)
        self.check_supports(type(denoiser).__name__)
        handle = MethodHandle(method=self, target_name=type(denoiser).__name__)
        if not isinstance(target, torch.nn.Module):
            handle._undo.append(handle.steps.track_pipeline(target))
        try:
            self._attach(target, denoiser, handle)
        except BaseException:
            handle.detach()  # a failed attach leaves the model and its scheduler as they were
            raise
        return handle

    @contextlib.contextmanager
    def attached(self, target: Any) -> Iterator[MethodHandle]:
        """``with method.attached(pipe) as handle: ...`` attaches for the block and always detaches."""
        handle = self.attach(target)
        try:
            yield handle
        finally:
            handle.detach()

    @classmethod
    def supports(cls, denoiser_class_name: str) -> bool:
        return denoiser_class_name in cls.supported_denoisers

    @classmethod
    def check_supports(cls, denoiser_class_name: str) -> None:
        """Raise :class:`UnsupportedModelError` unless this method can be injected into that denoiser class."""
        if not cls.supports(denoiser_class_name):
            raise UnsupportedModelError(
                f"{cls.__name__} does not support {denoiser_class_name}; supported: {', '.join(cls.supported_denoisers)}"
            )

    def check_clip(self, geometry: ClipGeometry) -> None:
        """Raise ``ValueError`` naming the knob when this setting cannot run on clips of ``geometry`` (e.g. a frequency
        band wider than the frame count allows). The sweep calls it before any model loads; the default accepts all."""

    def params(self) -> dict[str, Any]:
        """The method's knobs as plain values (what presets and loggers store)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @abc.abstractmethod
    def _attach(self, target: Any, denoiser: torch.nn.Module, handle: MethodHandle) -> None:
        """Install the injection; register one undo callable per change with ``handle.on_detach``."""


def find_denoiser(target: Any) -> torch.nn.Module:
    """The denoiser of a pipeline (``transformer`` or ``unet``), or ``target`` itself when it is a module."""
    if isinstance(target, torch.nn.Module):
        return target
    for attr in ("transformer", "unet"):
        module = getattr(target, attr, None)
        if isinstance(module, torch.nn.Module):
            return module
    raise UnsupportedModelError(f"{type(target).__name__} is neither a torch module nor a pipeline with a transformer or unet")
