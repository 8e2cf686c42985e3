"""A tuned method setting as a file: what ``vboost.export`` writes and what users load back.

A preset holds the method's knobs plus the context they were tuned in (backbone, frames, steps, the objective
values against the baseline), so a reader knows where the numbers hold. ``Preset.build()`` gives the method.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import yaml

from vboost.methods.base import Method

FORMAT_VERSION = 1


@dataclasses.dataclass
class ObjectiveValue:
    """One objective of the trial a preset comes from: its value, and the baseline's (no method) when known."""

    name: str
    direction: str
    value: float
    baseline: float | None = None

    def __post_init__(self) -> None:
        if self.direction not in ("maximize", "minimize"):
            raise ValueError(f"objective {self.name!r} direction must be 'maximize' or 'minimize'; got {self.direction!r}")


@dataclasses.dataclass
class Preset:
    """A method name, its parameters, and the setting they were tuned for.

    ``backbone`` is a backbone family (``conf/backbone``), ``checkpoint`` a hint of which weights were used;
    ``num_frames`` and ``steps`` are what the sweep generated with (the same weight means something else at
    another frame count). ``study`` and ``trial`` name where the preset came from.
    """

    method: str
    params: dict[str, Any]
    backbone: str | None = None
    checkpoint: str | None = None
    num_frames: int | None = None
    steps: int | None = None
    objectives: list[ObjectiveValue] = dataclasses.field(default_factory=list)
    study: str | None = None
    trial: int | None = None
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_method(cls, method: Method, **context: Any) -> "Preset":
        """The preset of ``method`` (its name and ``params()``) with ``context`` fields (backbone, steps, ...)."""
        return cls(method=method.name, params=_plain(method.params()), **context)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python data (tuples become lists), ready for YAML or JSON."""
        return _plain(dataclasses.asdict(self))

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        """The preset as YAML; also written to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The preset as JSON; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preset":
        """A preset from plain data; raises ``ValueError`` naming unknown or missing keys."""
        if not isinstance(data, dict):
            raise ValueError(f"a preset must be a mapping; got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown preset keys {unknown}; known: {sorted(known)}")
        missing = [key for key in ("method", "params") if key not in data]
        if missing:
            raise ValueError(f"preset is missing {missing}")
        if not isinstance(data["params"], dict):
            raise ValueError(f"preset params must be a mapping; got {data['params']!r}")
        version = data.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ValueError(f"preset format_version {version!r} is not supported (expected {FORMAT_VERSION})")
        objectives = [ObjectiveValue(**obj) for obj in data.get("objectives") or []]
        return cls(**{**data, "objectives": objectives})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Preset":
        """Read a preset written by ``to_yaml`` or ``to_json`` (JSON is read by suffix, anything else as YAML).

        Raises ``FileNotFoundError`` naming the path, ``ValueError`` for content that is not a preset.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no preset file at {str(path)!r}")
        text = path.read_text()
        try:
            data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as err:
            raise ValueError(f"{str(path)!r} is not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {err}") from err
        return cls.from_dict(data)

    def build(self) -> Method:
        """The method this preset describes, equal (dataclass equality) to the one it was made from.

        Raises ``KeyError`` naming the known methods for an unknown name, ``ValueError`` naming the bad
        parameters when they are not the method's knobs, a required knob is missing, or the method rejects a value.
        """
        from vboost.methods import METHODS  # the registry imports every method; a preset file alone should not

        try:
            cls = METHODS[self.method]
        except KeyError:
            raise KeyError(f"unknown method {self.method!r} in preset; known: {', '.join(sorted(METHODS))}") from None
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(self.params) - set(fields))
        if unknown:
            raise ValueError(f"{unknown} are not parameters of {self.method!r}; its parameters: {sorted(fields)}")
        required = [
            name for name, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and name not in self.params
        ]
        if required:
            raise ValueError(f"preset for {self.method!r} is missing required parameters {required}")
        kwargs = {name: _restore_tuples(value, fields[name]) for name, value in self.params.items()}
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as err:
            raise ValueError(f"bad parameters {self.params!r} for {self.method!r}: {err}") from err


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively (YAML's safe dumper has no tuples)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _restore_tuples(value: Any, field: dataclasses.Field) -> Any:
    # A knob declared as a tuple comes back from YAML/JSON as a list; without this the rebuilt method
    # would compare unequal to the original.
    if isinstance(value, list) and "tuple" in str(field.type):
        return tuple(_restore_tuples(item, field) if isinstance(item, list) else item for item in value)
    return value


__all__ = ["ObjectiveValue", "Preset"]
