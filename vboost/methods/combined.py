"""Several methods attached together, as one method whose knobs are the members' knobs namespaced by member.

``Combined({"eav": EnhanceAVideo(weight=3.4), "slg": SkipLayerGuidance(layers=2)})`` attaches both, in that order,
and detaches both. Written down (``params()``, presets, the study's knobs) it is one flat mapping: the member key
names the member's method (``"eav": "enhance_a_video"``, or ``"low": "enhance_a_video@transformer_2"`` for a member
that enters one pipeline component only) and ``"<member>.<knob>"`` its knobs (``"eav.weight": 3.4``), so a search
space over two methods is one space of namespaced knobs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from vboost.geometry import ClipGeometry
from vboost.methods.base import DiffusersCode, Method, MethodHandle

if TYPE_CHECKING:
    from vboost.export._comfyui import ComfyExport
    from vboost.methods.preset import Preset

SEPARATOR = "."  # between a member key and its knob
COMPONENT = "@"  # between a member's method name and the pipeline component it enters


@dataclasses.dataclass(frozen=True)
class Member:
    """One method of a combination and the pipeline component it enters (``None``: every denoiser)."""

    method: Method
    component: str | None = None

    @property
    def spec(self) -> str:
        """``"<method name>"`` or ``"<method name>@<component>"``."""
        return self.method.name if self.component is None else f"{self.method.name}{COMPONENT}{self.component}"


@dataclasses.dataclass
class CombinedHandle(MethodHandle):
    """The handle of a combination: each member's own handle, by member key; ``summary()`` namespaces theirs."""

    members: dict[str, MethodHandle] = dataclasses.field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        """Every member's diagnostics as ``"<member>/<diagnostic>"``."""
        return {f"{key}/{name}": value for key, handle in self.members.items() for name, value in handle.summary().items()}


class Combined(Method):
    """Methods attached together in order (and detached in reverse), each seeing the pipeline's shared step tracker.

    ``members`` maps a member key (no ``.`` or ``@``) to a :class:`~vboost.methods.Method` or a :class:`Member`. The
    flat keyword form, ``Combined(**params)``, is what :meth:`params` gives. Raises ``ValueError`` naming the bad
    member or knob: an unknown method, a knob the method rejects, or two members setting the same guider.
    """

    name: ClassVar[str] = "combined"
    supported_denoisers: ClassVar[tuple[str, ...]] = ()

    def __init__(self, members: Mapping[str, Method | Member] | None = None, **flat: Any) -> None:
        if members is not None and flat:
            raise ValueError("give the members as a mapping or as flat knobs, not both")
        parsed = _parse_flat(flat) if members is None else {
            key: member if isinstance(member, Member) else Member(member) for key, member in members.items()
        }
        if not parsed:
            raise ValueError("a combination needs at least one member")
        for key, member in parsed.items():
            if not key or SEPARATOR in key or COMPONENT in key:
                raise ValueError(f"member key {key!r} must be non-empty without {SEPARATOR!r} or {COMPONENT!r}")
            if not isinstance(member.method, Method) or isinstance(member.method, Combined):
                raise ValueError(f"member {key!r} must be a method (not a combination); got {member.method!r}")
        _check_one_guider_per_component(parsed)
        self.members = parsed

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Combined) and self.members == other.members

    def __repr__(self) -> str:
        return f"Combined({self.members!r})"

    def check_clip(self, geometry: ClipGeometry) -> None:
        for key, member in self.members.items():
            try:
                member.method.check_clip(geometry)
            except ValueError as err:
                raise ValueError(f"member {key!r}: {err}") from None

    def attach(self, target: Any, component: str | None = None) -> CombinedHandle:
        """Attach every member (a member's own component wins over ``component``); returns a :class:`CombinedHandle`
        whose ``detach`` detaches them in reverse order. A member that fails to attach leaves nothing attached."""
        handle = CombinedHandle(method=self, target_name=type(target).__name__)
        try:
            for key, member in self.members.items():
                member_handle = member.method.attach(target, member.component or component)
                handle.members[key] = member_handle
                handle.on_detach(member_handle.detach)
        except BaseException:
            handle.detach()
            raise
        handle.steps = next(iter(handle.members.values())).steps
        return handle

    def _attach(self, target: Any, denoiser: torch.nn.Module, handle: MethodHandle) -> None:
        raise TypeError("a combination attaches through its members; call attach()")

    def params(self) -> dict[str, Any]:
        """The flat form: ``{key: "<method>[@<component>]", "<key>.<knob>": value, ...}``."""
        flat: dict[str, Any] = {}
        for key, member in self.members.items():
            flat[key] = member.spec
            flat.update({f"{key}{SEPARATOR}{knob}": value for knob, value in member.method.params().items()})
        return flat

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "Combined":
        try:
            return cls(**params)
        except (TypeError, KeyError) as err:
            raise ValueError(f"bad combination {params!r}: {err}") from err

    def code(self) -> tuple[str, list[str]]:
        parts, imports = [], [f"from {__name__} import Combined, Member"]
        for key, member in self.members.items():
            expression, member_imports = member.method.code()
            if member.component is not None:
                expression = f"Member({expression}, {member.component!r})"
            parts.append(f"{key!r}: {expression}")
            imports += [line for line in member_imports if line not in imports]
        return "Combined({" + ", ".join(parts) + "})", imports

    def diffusers_code(self, setting: "Preset") -> DiffusersCode | None:
        """The members' plain-diffusers code in order, or ``None`` when one member has none or enters one component
        only (the exported code sets every component)."""
        codes = [member.method.diffusers_code(setting) for member in self.members.values()]
        if any(code is None for code in codes) or any(m.component is not None for m in self.members.values()):
            return None
        imports = list(dict.fromkeys(line for code in codes for line in code.imports))
        return DiffusersCode(
            imports=tuple(imports),
            apply=tuple(line for code in codes for line in code.apply),
            files={name: text for code in codes for name, text in code.files.items()},
        )

    def comfyui(self, setting: "Preset") -> "ComfyExport":
        """Every member's ComfyUI nodes, each member's notes prefixed by its key."""
        from vboost.export._comfyui import ComfyExport

        nodes, notes = [], []
        for key, member in self.members.items():
            export = member.method.comfyui(setting)
            nodes += export.nodes
            notes += [f"{key}: {note}" for note in export.notes]
        return ComfyExport(nodes, notes)


def _parse_flat(flat: Mapping[str, Any]) -> dict[str, Member]:
    """Members from the flat form; raises ``ValueError`` naming a knob without a member or an unknown method."""
    from vboost.methods import METHODS

    members: dict[str, Member] = {}
    knobs: dict[str, dict[str, Any]] = {key: {} for key in flat if SEPARATOR not in key}
    for name, value in flat.items():
        if SEPARATOR in name:
            key, knob = name.split(SEPARATOR, 1)
            if key not in knobs:
                raise ValueError(f"knob {name!r} names no member (members: {sorted(knobs)})")
            knobs[key][knob] = value
    for key in knobs:
        spec = flat[key]
        if not isinstance(spec, str):
            raise ValueError(f"member {key!r} must name its method as '<method>[@<component>]'; got {spec!r}")
        method_name, _, component = spec.partition(COMPONENT)
        if method_name not in METHODS:
            raise ValueError(f"member {key!r}: unknown method {method_name!r}; known: {', '.join(sorted(METHODS))}")
        method = METHODS[method_name].from_params(knobs[key])
        members[key] = Member(method, component or None)
    return members


def _check_one_guider_per_component(members: Mapping[str, Member]) -> None:
    """Two guider methods on the same component would replace each other's guider: refuse it."""
    from vboost.methods.guiders import GuiderMethod

    guiders = [(key, m.component) for key, m in members.items() if isinstance(m.method, GuiderMethod)]
    for i, (key, component) in enumerate(guiders):
        for other, other_component in guiders[i + 1:]:
            if component is None or other_component is None or component == other_component:
                raise ValueError(f"members {key!r} and {other!r} both set the guider of the same component")

__all__ = ["Combined", "CombinedHandle", "Member"]
