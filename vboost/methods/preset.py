"""A tuned method setting as a file: what ``vboost.export`` writes and what users load back.

A preset holds the method's knobs plus the generation setting they were tuned at (backbone, frames, size, steps,
guidance, fps, dtype, latent frames, the tuning prompts and seeds) and the objective values against the baseline,
so a reader knows where the numbers hold and the exported script can generate the tuned clips again.
``Preset.build()`` gives the method. What each field means: ``docs/presets.md``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import yaml

from vboost.methods import METHODS
from vboost.methods.base import Method

# Version 2 adds the full generation setting (height, width, guidance, fps, dtype, latent_frames, prompts, seeds),
# the searched values (``searched``) and the study's verdict (``status``, ``held_out``); version 1 files load with
# those fields unset.
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)

# The generation setting of a preset, named as the sweep's run context names it (the study records these keys).
SETTING_FIELDS = (
    "backbone", "checkpoint", "num_frames", "height", "width", "steps", "guidance", "fps", "dtype", "latent_frames",
    "prompts", "seeds",
)
_POSITIVE_INTS = ("num_frames", "height", "width", "steps", "latent_frames")
_POSITIVE_NUMBERS = ("fps",)
_STATUSES = (None, "recommended", "not recommended", "unvalidated")


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

    ``params`` are the method's keyword arguments; ``searched`` the values the search sampled (the trial's Optuna
    parameters, e.g. ``weight_per_frame`` where the method takes ``weight``), ``None`` when not recorded.
    ``backbone`` is a backbone family (``conf/backbone``), ``checkpoint`` a hint of which weights were used;
    ``num_frames`` ... ``dtype`` are what the sweep generated with, ``latent_frames`` the frame count F the method's
    attention saw (after the temporal patch), ``prompts`` and ``seeds`` the tuning clips (clip ``p<i>_s<seed>`` is
    ``prompts[i]`` with ``seed``). ``study`` and ``trial`` name where the preset came from. ``status`` is the study's
    verdict on it (``recommended``, ``not recommended``: validated and rejected, or ``unvalidated``) and ``held_out``
    its validated effects vs the untouched model on the held-out clips (per record: ``mean``, ``low``, ``high``,
    ``n``, ``confidence``). Unknown fields are ``None``.

    Raises ``ValueError`` naming the field and value when a setting field has the wrong type or sign.
    """

    method: str
    params: dict[str, Any]
    _: dataclasses.KW_ONLY
    searched: dict[str, Any] | None = None
    backbone: str | None = None
    checkpoint: str | None = None
    num_frames: int | None = None
    height: int | None = None
    width: int | None = None
    steps: int | None = None
    guidance: float | None = None
    fps: float | None = None
    dtype: str | None = None
    latent_frames: int | None = None
    prompts: list[str] | None = None
    seeds: list[int] | None = None
    objectives: list[ObjectiveValue] = dataclasses.field(default_factory=list)
    study: str | None = None
    trial: int | None = None
    status: str | None = None
    held_out: dict[str, dict[str, Any]] | None = None
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.status not in _STATUSES:
            raise ValueError(f"preset status must be one of {list(_STATUSES)}; got {self.status!r}")
        for name in _POSITIVE_INTS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"preset {name} must be a positive int; got {value!r}")
        for name in _POSITIVE_NUMBERS:
            value = getattr(self, name)
            if value is not None and not _is_number(value, positive=True):
                raise ValueError(f"preset {name} must be a positive number; got {value!r}")
        if self.guidance is not None and not _is_number(self.guidance):
            raise ValueError(f"preset guidance must be a number; got {self.guidance!r}")
        if self.prompts is not None and not (isinstance(self.prompts, list) and all(isinstance(p, str) for p in self.prompts)):
            raise ValueError(f"preset prompts must be a list of strings; got {self.prompts!r}")
        if self.seeds is not None and not (
            isinstance(self.seeds, list) and all(isinstance(s, int) and not isinstance(s, bool) for s in self.seeds)
        ):
            raise ValueError(f"preset seeds must be a list of ints; got {self.seeds!r}")

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
        if version not in _READABLE_VERSIONS:
            raise ValueError(f"preset format_version {version!r} is not supported (readable: {list(_READABLE_VERSIONS)})")
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
        parameters when they are not the method's knobs, a required knob is missing, or the method rejects a value
        (the method's :meth:`~vboost.methods.Method.from_params` decides).
        """
        try:
            cls = METHODS[self.method]
        except KeyError:
            raise KeyError(f"unknown method {self.method!r} in preset; known: {', '.join(sorted(METHODS))}") from None
        return cls.from_params(self.params)


def _is_number(value: Any, *, positive: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return value > 0 or not positive


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively (YAML's safe dumper has no tuples)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


__all__ = ["SETTING_FIELDS", "ObjectiveValue", "Preset"]
