"""The composed ``method`` config as one setting the plan reads: a single method as written, a combination
(``name: combined``) as its members' knobs, spaces and published settings namespaced by member.

A combination's yaml composes its members from the ``method`` group with Hydra's defaults list::

    # conf/method/enhance_a_video+skip_layer_guidance.yaml
    defaults:
      - /method@members.eav: enhance_a_video
      - /method@members.slg: skip_layer_guidance
      - _self_
    name: combined

(or on the command line: ``method=combined +method@method.members.eav=enhance_a_video ...``). A member config may
set ``component`` to enter one pipeline component only (Wan 2.2's ``transformer_2``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vboost.sweep.errors import ConfigError

COMBINED = "combined"


@dataclasses.dataclass(frozen=True)
class MethodSetting:
    """What the sweep searches: a registered method's name, fixed knobs, search space and per-family published knobs
    (a combination's are flat and namespaced ``<member>.<knob>``, its fixed knobs naming each member's method), and
    the member configs by key (empty for a single method)."""

    name: str
    params: dict[str, Any]
    search_space: dict[str, str]
    paper_defaults: dict[str, dict[str, Any]]
    members: dict[str, str] = dataclasses.field(default_factory=dict)  # member key -> its method's name


def method_setting(method: DictConfig) -> MethodSetting:
    """The setting of a composed ``method`` config; raises :class:`ConfigError` naming the key and value of a
    combination without members, a member that is not a method config, or a component on a single method."""
    plain = OmegaConf.to_container(method, resolve=True)
    if method.name != COMBINED:
        if plain.get("members"):
            raise ConfigError(f"method.members is set, but method.name={method.name!r}: members need name: {COMBINED}")
        if plain.get("component") is not None:
            raise ConfigError(
                f"method.component={plain['component']!r}: a component is set per member of a combination "
                f"(method.name={COMBINED})"
            )
        return MethodSetting(method.name, plain["params"], plain["search_space"], plain["paper_defaults"])
    members = plain.get("members") or {}
    if not members:
        raise ConfigError(f"method.name={COMBINED} needs method.members (e.g. +method@method.members.eav=enhance_a_video)")
    params: dict[str, Any] = dict(plain["params"])
    space: dict[str, str] = dict(plain["search_space"])
    paper: dict[str, dict[str, Any]] = {}
    names = {}
    for key, member in members.items():
        if not isinstance(member, dict) or not isinstance(member.get("name"), str):
            raise ConfigError(f"method.members.{key} is not a method config (compose one from the method group)")
        if member["name"] == COMBINED:
            raise ConfigError(f"method.members.{key}: a member cannot itself be a combination")
        names[key] = member["name"]
        params[key] = member["name"] if member.get("component") is None else f"{member['name']}@{member['component']}"
        params.update({f"{key}.{knob}": value for knob, value in (member.get("params") or {}).items()})
        space.update({f"{key}.{knob}": expr for knob, expr in (member.get("search_space") or {}).items()})
    for family in {f for m in members.values() for f in (m.get("paper_defaults") or {})}:
        # A combination's published setting exists where every member has one.
        if all(family in (m.get("paper_defaults") or {}) for m in members.values()):
            paper[family] = {
                f"{key}.{knob}": value for key, m in members.items() for knob, value in m["paper_defaults"][family].items()
            }
    return MethodSetting(COMBINED, params, space, paper, names)
