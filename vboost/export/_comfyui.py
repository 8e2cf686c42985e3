"""What to set in the ComfyUI nodes people already use, checked against each node's real inputs.

For every node that exposes the preset's method (``_comfyui_nodes``), the export gives the widget values to set, each
validated against the node's range and rounded to its step, and a UI-format workflow holding that node; where the
node cannot take the tuned setting, or computes something else that no value translates into, it gives no values and
a note saying what to use instead. ``docs/comfyui.md`` explains each node's caveat and translation.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from vboost.backbones import backbone_spec
from vboost.export._comfyui_nodes import (
    ADE_FREE_INIT,
    COG_VIDEO_ENHANCE,
    HY_VIDEO_ENHANCE,
    LTX_FETA_ENHANCE,
    LTXV_ENHANCE_KJ,
    WAN_VIDEO_ENHANCE,
    WAN_VIDEO_ENHANCE_KJ,
    NodeInput,
    NodeSource,
)
from vboost.methods.preset import Preset

# Bounds ComfyUI's frontend gives a number widget whose INPUT_TYPES declares none (useIntWidget / useFloatWidget).
_FRONTEND_MIN, _FRONTEND_MAX = 0, 2048
# The workflow schema version of ComfyUI's frontend whose links are arrays (zComfyWorkflow).
WORKFLOW_VERSION = 0.4

# What a user does where a node cannot take the tuned setting.
_INSTEAD = "use the diffusers script (diffusers_vboost.py)"
_WEIGHT_PER_FRAME = (
    "Enhance-A-Video's weight enters the score as F + weight (F = latent frames the attention sees), so uniform "
    "attention gives a gain of 1 + weight / F: keep weight / F, not weight, when you change the frame count"
)


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
    """The ComfyUI nodes for ``preset``'s method and backbone, with the values each can take.

    Returns a :class:`ComfyExport` whose nodes are empty, with a note, when no node is known for the method or
    backbone; raises what :meth:`Preset.build` raises for knobs the method rejects.
    """
    if preset.method not in ("enhance_a_video", "free_init"):
        return ComfyExport([], [f"no ComfyUI node for {preset.method!r} is known to vboost: use the diffusers script"])
    params = preset.build().params()  # every knob, defaults included
    if preset.method == "enhance_a_video":
        return _enhance_a_video(preset, params)
    return ComfyExport([_free_init(params)], [])


def widget_value(entry: NodeInput, value: Any) -> Any:
    """``value`` as the widget ``entry`` holds it: a FLOAT rounded to the widget's step, any value range-checked.

    Ranges are the node's declared ``min``/``max``, else the frontend's defaults (0 and 2048) for number widgets.
    Raises ``ValueError`` naming the input, the value and the bound or choices it breaks.
    """
    if entry.type == "BOOLEAN":
        if not isinstance(value, bool):
            raise ValueError(f"{entry.name} must be true or false; got {value!r}")
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


def _checked(node: NodeSource, wanted: dict[str, Any], notes: list[str]) -> NodeExport:
    """The export of ``node`` with ``wanted`` widget values, each validated; on a bad one, none and a note."""
    values = {}
    for name, value in wanted.items():
        try:
            values[name] = widget_value(node.input(name), value)
        except ValueError as err:
            return NodeExport(node, None, [*notes, f"not exported: {err}; {_INSTEAD}"])
        if values[name] != value:
            notes = [*notes, f"{name} {value!r} rounded to {values[name]!r} (the widget's step {node.input(name).step})"]
    return NodeExport(node, values, notes)


def _not_exported(node: NodeSource) -> NodeExport:
    return NodeExport(node, None, [node.caveat])


# -- Enhance-A-Video ----------------------------------------------------------------------------------------------

def _enhance_a_video(preset: Preset, params: dict[str, Any]) -> ComfyExport:
    notes = [_WEIGHT_PER_FRAME]
    if preset.latent_frames is not None:
        notes.append(
            f"tuned at {preset.num_frames} frames, F = {preset.latent_frames} latent frames in attention: "
            f"weight / F = {params['weight'] / preset.latent_frames:.4g}"
        )
    else:
        notes.append("this study records no latent frame count F: no value that needs F is translated")
    if preset.backbone == "cogvideox":
        nodes = [_cogvideox_wrapper(preset, params)]
    elif preset.backbone == "hunyuan_video":
        nodes = [_not_exported(HY_VIDEO_ENHANCE)]
    elif preset.backbone == "wan":
        nodes = [_kj_node(WAN_VIDEO_ENHANCE_KJ, params), _not_exported(WAN_VIDEO_ENHANCE)]
    elif preset.backbone == "ltx_video":
        nodes = [_kj_node(LTXV_ENHANCE_KJ, params), _not_exported(LTX_FETA_ENHANCE)]
    else:
        return ComfyExport([], [*notes, f"no ComfyUI Enhance-A-Video node is known for backbone {preset.backbone!r}"])
    return ComfyExport(nodes, notes)


def _kj_node(node: NodeSource, params: dict[str, Any]) -> NodeExport:
    """KJNodes' native-model nodes: vboost's score, F from the latent, but no window or layers; weight 0 is off."""
    notes = [node.caveat]
    if (params["start"], params["end"]) != (0.0, 1.0):
        return NodeExport(node, None, [
            *notes,
            f"not exported: tuned with the step window start={params['start']} end={params['end']}, and this node "
            f"acts at every step; {_INSTEAD}",
        ])
    if params["layers"] is not None:
        return _layers_not_settable(node, notes, params["layers"])
    export = _checked(node, {"weight": params["weight"]}, notes)
    if export.values is not None and export.values["weight"] == 0:
        return NodeExport(node, None, [
            *export.notes,
            "not exported: weight 0 switches this node off, while vboost's weight 0 still applies clamp(CFI * F, 1); "
            + _INSTEAD,
        ])
    return export


def _cogvideox_wrapper(preset: Preset, params: dict[str, Any]) -> NodeExport:
    """CogVideoXWrapper: vboost's score and window; at CogVideoX 1.5 its F is the pre-patch latent count."""
    node = COG_VIDEO_ENHANCE
    notes = [node.caveat]
    if params["layers"] is not None:
        return _layers_not_settable(node, notes, params["layers"])
    frames = preset.latent_frames
    if frames is None or preset.num_frames is None:
        return NodeExport(node, None, [
            *notes,
            "not exported: translating the weight needs the latent frame count F (the wrapper's F differs at "
            f"CogVideoX 1.5), which this study does not record; export a study that records it, or {_INSTEAD}",
        ])
    wrapper_frames = _cogvideox_wrapper_frames(preset.num_frames, frames)
    weight = params["weight"] * wrapper_frames / frames
    if wrapper_frames != frames:
        notes.append(
            f"weight {params['weight']!r} translated to {weight!r}: the wrapper takes F = {wrapper_frames} where the "
            f"attention sees {frames} latent frames, so weight x {wrapper_frames}/{frames} keeps weight / F"
        )
    wanted = {"weight": weight, "start_percent": params["start"], "end_percent": params["end"]}
    return _checked(node, wanted, notes)


def _layers_not_settable(node: NodeSource, notes: list[str], layers: Any) -> NodeExport:
    return NodeExport(node, None, [
        *notes, f"not exported: tuned on the layers {layers!r}, and this node acts on every block; {_INSTEAD}",
    ])


def _cogvideox_wrapper_frames(num_frames: int, latent_frames: int) -> int:
    """The F that CogVideoXWrapper's score uses: the latent frame count padded to whole temporal patches.

    The transformer sees ``latent_frames = ceil(L / p)`` for ``L`` VAE latent frames and temporal patch ``p`` (1 for
    CogVideoX 1.0, 2 for 1.5); the wrapper pads ``L`` to ``latent_frames * p`` and uses that. ``p = ceil(L / F)``
    recovers the patch for ``p`` in {1, 2} whenever ``F >= 2``.
    """
    before_patch = backbone_spec("cogvideox").rule.geometry(num_frames, 1, 1, {}).vae_frames
    return latent_frames * -(-before_patch // latent_frames)


# -- FreeInit -----------------------------------------------------------------------------------------------------

def _free_init(params: dict[str, Any]) -> NodeExport:
    node = ADE_FREE_INIT
    notes = [node.caveat]
    if params["num_iters"] > 2:
        return NodeExport(node, None, [
            *notes,
            f"not exported: {params['num_iters']} iterations, and from the third pass on this node re-noises from "
            f"another noise than diffusers' FreeInit; {_INSTEAD}",
        ])
    if params["use_fast_sampling"]:
        return NodeExport(node, None, [
            *notes,
            "not exported: tuned with use_fast_sampling (fewer steps in the early passes), which this node cannot "
            f"do; {_INSTEAD}",
        ])
    wanted = {
        "iterations": params["num_iters"],
        "filter": params["method"],
        "d_s": params["spatial_stop_frequency"],
        "d_t": params["temporal_stop_frequency"],
        "n_butterworth": params["order"],
        # diffusers re-noises at the last training timestep and leaves the first pass alone.
        "sigma_step": 999,
        "apply_to_1st_iter": False,
        "init_type": "FreeInit [model sigma]",
    }
    return _checked(node, wanted, notes)
