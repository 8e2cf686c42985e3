"""What every method shares: attach/detach, the shared step tracker, per-call diagnostics, and the hooks through which
the sweep and the export ask a method about itself (backbones it fits, clips it can run on, how it is written down)."""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from vboost.geometry import ClipGeometry
from vboost.methods._records import RecordLog
from vboost.methods._steps import StepTracker, shared_tracker

if TYPE_CHECKING:
    from vboost.backbones import BackboneSpec
    from vboost.export._comfyui import ComfyExport
    from vboost.methods.preset import Preset

# Pipeline components that hold a denoiser, in the order methods enter them (Wan 2.2 has two experts).
DENOISER_COMPONENTS = ("transformer", "transformer_2", "unet")


class UnsupportedModelError(TypeError):
    """Raised when a method is attached to a model it has no injection sites for."""


@dataclasses.dataclass
class MethodHandle:
    """What ``Method.attach`` returns.

    ``records`` holds one dict per attention call the method touched (step, layer and what the method saw; one per
    clip, with ``clip`` its position, when a call carries several clips), so a sweep can log why a setting helped.
    ``steps`` is the pipeline's shared step tracker (one per scheduler, so every method attached to a pipeline reads
    the same step). ``detach()`` restores the model exactly; calling it twice is a no-op.
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


@dataclasses.dataclass(frozen=True)
class DiffusersCode:
    """How a method is set on a loaded diffusers pipeline ``pipe`` in plain diffusers, for an exported script.

    ``imports`` are import lines; ``apply`` statements run once on ``pipe`` (they may read ``HERE``, the directory the
    script lies in); ``files`` maps a path relative to that directory to a file's text (e.g. a guider's
    ``guider/guider_config.json``, as diffusers' ``save_pretrained`` writes it).
    """

    imports: tuple[str, ...] = ()
    apply: tuple[str, ...] = ()
    files: dict[str, str] = dataclasses.field(default_factory=dict)


class Method(abc.ABC):
    """A training-free enhancement that edits a denoiser (or its pipeline) at inference time.

    Subclasses are dataclasses of their knobs; ``name`` is the key used in configs and presets, and
    ``supported_denoisers`` lists the class names of the denoisers the method knows how to inject into.
    Besides :meth:`_attach`, a method may override the hooks the sweep and the export call: :meth:`check_backbone`,
    :meth:`check_clip`, :meth:`params`/:meth:`from_params` (what a preset holds), :meth:`code` (the vboost line of
    an exported script), :meth:`diffusers_code` (plain diffusers) and :meth:`comfyui` (ComfyUI node values).
    """

    name: ClassVar[str]
    supported_denoisers: ClassVar[tuple[str, ...]]

    def attach(self, target: Any, component: str | None = None) -> MethodHandle:
        """Inject the method into ``target`` (a diffusers pipeline or a bare denoiser module).

        ``component`` names the pipeline's denoiser to enter (``"transformer_2"``: Wan 2.2's low-noise expert); by
        default every denoiser the pipeline holds. Returns a :class:`MethodHandle`; raises
        :class:`UnsupportedModelError` naming the model class and the supported ones when ``target`` has no known
        injection sites.
        """
        denoisers = find_denoisers(target, component)
        for denoiser in denoisers:
            self.check_supports(type(denoiser).__name__)
        handle = MethodHandle(method=self, target_name=", ".join(dict.fromkeys(type(d).__name__ for d in denoisers)))
        if not isinstance(target, torch.nn.Module):
            handle.steps, release = shared_tracker(target)
            handle.on_detach(release)
        try:
            for denoiser in denoisers:
                self._attach(target, denoiser, handle)
        except BaseException:
            handle.detach()  # a failed attach leaves the model and its scheduler as they were
            raise
        return handle

    @contextlib.contextmanager
    def attached(self, target: Any, component: str | None = None) -> Iterator[MethodHandle]:
        """``with method.attached(pipe) as handle: ...`` attaches for the block and always detaches."""
        handle = self.attach(target, component)
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

    @classmethod
    def check_backbone(cls, spec: "BackboneSpec") -> None:
        """Raise :class:`UnsupportedModelError` saying why this method cannot run on the backbone family ``spec``
        (the sweep calls it before anything loads); by default the denoiser class decides."""
        cls.check_supports(spec.denoiser_class)

    def check_clip(self, geometry: ClipGeometry) -> None:
        """Raise ``ValueError`` naming the knob when this setting cannot run on clips of ``geometry`` (e.g. a frequency
        band wider than the frame count allows, a layer index beyond the denoiser's depth). The sweep calls it before
        any model loads; the default accepts all."""

    def params(self) -> dict[str, Any]:
        """The method's knobs as plain values (what presets and loggers store)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "Method":
        """The method with the knobs ``params`` (what :meth:`params` gives, e.g. read from a preset file).

        Raises ``ValueError`` naming the knobs that are not this method's, the required ones missing, or the value the
        method rejects.
        """
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
        unknown = sorted(set(params) - set(fields))
        if unknown:
            raise ValueError(f"{unknown} are not parameters of {cls.name!r}; its parameters: {sorted(fields)}")
        required = [
            name for name, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and name not in params
        ]
        if required:
            raise ValueError(f"a {cls.name!r} setting is missing required parameters {required}")
        kwargs = {name: _restore_tuples(value, fields[name]) for name, value in params.items()}
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as err:
            raise ValueError(f"bad parameters {params!r} for {cls.name!r}: {err}") from err

    def code(self) -> tuple[str, list[str]]:
        """``(expression, import lines)``: Python source that builds this method, for an exported script."""
        cls = type(self)
        args = ", ".join(f"{key}={value!r}" for key, value in self.params().items())
        return f"{cls.__name__}({args})", [f"from {cls.__module__} import {cls.__name__}"]

    def diffusers_code(self, setting: "Preset") -> DiffusersCode | None:
        """How to set this method on a pipeline of ``setting``'s backbone with plain diffusers, or ``None`` when
        diffusers has no equivalent (the default)."""
        return None

    def comfyui(self, setting: "Preset") -> "ComfyExport":
        """The ComfyUI nodes that take this setting on ``setting``'s backbone, with the values each can take (the
        default: none known)."""
        from vboost.export._comfyui import ComfyExport  # export reads methods, never the reverse at import time

        return ComfyExport([], [f"no ComfyUI node for {self.name!r} is known to vboost: use the diffusers script"])

    @abc.abstractmethod
    def _attach(self, target: Any, denoiser: torch.nn.Module, handle: MethodHandle) -> None:
        """Install the injection into ``denoiser`` (called once per denoiser entered); register one undo callable per
        change with ``handle.on_detach``."""


def find_denoisers(target: Any, component: str | None = None) -> list[torch.nn.Module]:
    """The denoisers a method enters: ``target`` itself when it is a module, else the pipeline's ``component`` or, by
    default, every one of :data:`DENOISER_COMPONENTS` it holds. Raises :class:`UnsupportedModelError` when there is
    none (or no such component)."""
    if isinstance(target, torch.nn.Module):
        if component is not None:
            raise UnsupportedModelError(f"component={component!r} names a pipeline part; {type(target).__name__} is a module")
        return [target]
    names = [component] if component is not None else list(DENOISER_COMPONENTS)
    found = [module for name in names if isinstance(module := getattr(target, name, None), torch.nn.Module)]
    if not found:
        what = f"a denoiser component {component!r}" if component is not None else "a transformer or unet"
        raise UnsupportedModelError(f"{type(target).__name__} is neither a torch module nor a pipeline with {what}")
    return found


def component_name(target: Any, denoiser: torch.nn.Module) -> str:
    """The name of the pipeline component holding ``denoiser`` (``"transformer"``, ``"transformer_2"``, ``"unet"``)."""
    for name in DENOISER_COMPONENTS:
        if getattr(target, name, None) is denoiser:
            return name
    raise UnsupportedModelError(f"{type(denoiser).__name__} is not a denoiser component of {type(target).__name__}")


def _restore_tuples(value: Any, field: dataclasses.Field) -> Any:
    # A knob declared as a tuple comes back from YAML/JSON as a list; without this the rebuilt method
    # would compare unequal to the original.
    if isinstance(value, list) and "tuple" in str(field.type):
        return tuple(_restore_tuples(item, field) if isinstance(item, list) else item for item in value)
    return value
