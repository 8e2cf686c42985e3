"""What to set in the ComfyUI nodes people already use, checked against each node's real inputs.

Each method says which nodes take its setting (its ``comfyui`` hook, using :func:`checked_values` and
:func:`not_exported` here); the export gives the widget values to set, each validated against the node's range and
rounded to its step (``_comfyui_nodes`` restates the nodes' inputs), and a UI-format workflow holding that node; where
the node cannot take the tuned setting, or computes something else that no value translates into, it gives no values
and a note saying what to use instead. ``docs/comfyui.md`` explains each node's caveat and translation.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from vboost.export._comfyui_nodes import NodeInput, NodeSource
from vboost.methods.preset import Preset

# Bounds ComfyUI's frontend gives a number widget whose INPUT_TYPES declares none (useIntWidget / useFloatWidget).
_FRONTEND_MIN, _FRONTEND_MAX = 0, 2048
# The workflow schema version of ComfyUI's frontend whose links are arrays (zComfyWorkflow).
WORKFLOW_VERSION = 0.4

# What a user does where a node cannot take the tuned setting.
INSTEAD = "use the diffusers script (diffusers_vboost.py)"


@dataclasses.dataclass
class NodeExport:
    """One node's share of an export: the widget values to set (``None``: nothing exported) and why."""

    node: NodeSource
    values: dict[str, Any] | None
    notes: list[str]  # the node's caveat first

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``comfyui.json``: node, package, commit, whether exported, values, notes."""
        return {
            "node": self.node.class_name,
            "display_name": self.node.display_name,
            "package": self.node.package,
            "commit": self.node.commit,
            "exported": self.values is not None,
            "values": self.values,
            "notes": self.notes,
        }


@dataclasses.dataclass
class ComfyExport:
    """Every node known for the preset's method and backbone, plus notes that hold for all of them."""

    nodes: list[NodeExport]
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        """``{"nodes": [...], "notes": [...]}``, as ``comfyui.json`` holds it."""
        return {"nodes": [node.to_dict() for node in self.nodes], "notes": self.notes}


def comfyui_export(preset: Preset) -> ComfyExport:
    """The ComfyUI nodes for ``preset``'s method and backbone, with the values each can take (the method's
    ``comfyui`` hook decides which nodes and values).

    Returns a :class:`ComfyExport` whose nodes are empty, with a note, when no node is known for the method or
    backbone; raises what :meth:`Preset.build` raises for knobs the method rejects.
    """
    return preset.build().comfyui(preset)


def widget_value(entry: NodeInput, value: Any) -> Any:
    """``value`` as the widget ``entry`` holds it: a FLOAT rounded to the widget's step, any value range-checked.

    Ranges are the node's declared ``min``/``max``, else the frontend's defaults (0 and 2048) for number widgets.
    Raises ``ValueError`` naming the input, the value and the bound or choices it breaks.
    """
    if entry.type == "BOOLEAN":
        if not isinstance(value, bool):
            raise ValueError(f"{entry.name} must be true or false; got {value!r}")
        return value
    if entry.type == "STRING":
        if not isinstance(value, str):
            raise ValueError(f"{entry.name} must be a string; got {value!r}")
        return value
    if entry.type == "COMBO":
        if value not in entry.choices:
            raise ValueError(f"{entry.name} {value!r} is not one of the node's choices {list(entry.choices)}")
        return value
    if entry.type == "INT":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{entry.name} must be an integer; got {value!r}")
    elif entry.type == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{entry.name} must be a finite number; got {value!r}")
        value = _round_to_step(float(value), entry.step)
    else:
        raise ValueError(f"{entry.name} is a {entry.type} input, not a widget")
    low = _FRONTEND_MIN if entry.min is None else entry.min
    high = _FRONTEND_MAX if entry.max is None else entry.max
    if not low <= value <= high:
        raise ValueError(f"{entry.name} {value!r} is outside the node's range [{low}, {high}]")
    return value


def _round_to_step(value: float, step: float | None) -> float:
    # The frontend rounds a float widget to 10**-precision, precision = the step's decimals: the same multiples for
    # the steps these nodes use (0.01, 0.001).
    if step is None:
        return value
    decimals = max(0, -math.floor(math.log10(step)))
    return round(round(value / step) * step, decimals)


def workflow_fragment(export: NodeExport) -> dict[str, Any]:
    """A ComfyUI UI-format workflow (schema 0.4) holding ``export``'s node with its values, no links.

    ``widgets_values`` follow the node's widget order (required then optional inputs in ``INPUT_TYPES`` order, the
    exported value where there is one, else the node's default). Raises ``ValueError`` when nothing is exported.
    """
    if export.values is None:
        raise ValueError(f"nothing is exported for {export.node.class_name}; it has no workflow")
    node = export.node
    widgets = [export.values.get(entry.name, entry.default) for entry in node.inputs if entry.is_widget]
    slots = [{"name": entry.name, "type": entry.type, "link": None} for entry in node.inputs if not entry.is_widget]
    outputs = [{"name": name, "type": kind, "links": [], "slot_index": i} for i, (name, kind) in enumerate(node.outputs)]
    return {
        "last_node_id": 1,
        "last_link_id": 0,
        "nodes": [{
            "id": 1,
            "type": node.class_name,
            "pos": [0, 0],
            "size": [320, 30 + 26 * (len(widgets) + max(len(slots), len(outputs)))],
            "flags": {},
            "order": 0,
            "mode": 0,
            "inputs": slots,
            "outputs": outputs,
            "properties": {"Node name for S&R": node.class_name, "aux_id": node.package, "ver": node.commit},
            "widgets_values": widgets,
        }],
        "links": [],
        "groups": [],
        "config": {},
        "extra": {},
        "version": WORKFLOW_VERSION,
    }


def checked_values(node: NodeSource, wanted: dict[str, Any], notes: list[str]) -> NodeExport:
    """The export of ``node`` with ``wanted`` widget values, each validated and rounded to its step (a note says so);
    on a value the node cannot take, no values and a note naming it."""
    values = {}
    for name, value in wanted.items():
        try:
            values[name] = widget_value(node.input(name), value)
        except ValueError as err:
            return NodeExport(node, None, [*notes, f"not exported: {err}; {INSTEAD}"])
        if values[name] != value:
            notes = [*notes, f"{name} {value!r} rounded to {values[name]!r} (the widget's step {node.input(name).step})"]
    return NodeExport(node, values, notes)


def not_exported(node: NodeSource, *notes: str) -> NodeExport:
    """``node`` with no values: its caveat, then ``notes``."""
    return NodeExport(node, None, [node.caveat, *notes])
