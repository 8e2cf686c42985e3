"""Enhance-A-Video's ComfyUI export hook: which nodes compute vboost's score on each backbone, and the values they
take (``docs/comfyui.md`` explains each node). Imported by :meth:`EnhanceAVideo.comfyui` at export time."""

from __future__ import annotations

from typing import Any

from vboost.backbones import backbone_spec
from vboost.export._comfyui import INSTEAD, ComfyExport, NodeExport, checked_values, not_exported
from vboost.export._comfyui_nodes import (
    COG_VIDEO_ENHANCE,
    HY_VIDEO_ENHANCE,
    LTX_FETA_ENHANCE,
    LTXV_ENHANCE_KJ,
    WAN_VIDEO_ENHANCE,
    WAN_VIDEO_ENHANCE_KJ,
    NodeSource,
)
from vboost.methods.preset import Preset

_WEIGHT_PER_FRAME = (
    "Enhance-A-Video's weight enters the score as F + weight (F = latent frames the attention sees), so uniform "
    "attention gives a gain of 1 + weight / F: keep weight / F, not weight, when you change the frame count"
)
# The ComfyUI model a family's nodes patch is the same for the plain and the modular diffusers pipeline.
_MODEL_OF = {"wan_modular": "wan", "wan22_modular": "wan", "ltx_modular": "ltx_video"}


def enhance_a_video_nodes(preset: Preset, params: dict[str, Any]) -> ComfyExport:
    """The ComfyUI nodes of ``preset``'s backbone that take Enhance-A-Video (``params``: every knob)."""
    notes = [_WEIGHT_PER_FRAME]
    if preset.latent_frames is not None:
        notes.append(
            f"tuned at {preset.num_frames} frames, F = {preset.latent_frames} latent frames in attention: "
            f"weight / F = {params['weight'] / preset.latent_frames:.4g}"
        )
    else:
        notes.append("this study records no latent frame count F: no value that needs F is translated")
    model = _MODEL_OF.get(preset.backbone, preset.backbone)
    if model == "cogvideox":
        nodes = [_cogvideox_wrapper(preset, params)]
    elif model == "hunyuan_video":
        nodes = [not_exported(HY_VIDEO_ENHANCE)]
    elif model == "wan":
        nodes = [_kj_node(WAN_VIDEO_ENHANCE_KJ, params), not_exported(WAN_VIDEO_ENHANCE)]
    elif model == "ltx_video":
        nodes = [_kj_node(LTXV_ENHANCE_KJ, params), not_exported(LTX_FETA_ENHANCE)]
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
            f"acts at every step; {INSTEAD}",
        ])
    if params["layers"] is not None:
        return _layers_not_settable(node, notes, params["layers"])
    export = checked_values(node, {"weight": params["weight"]}, notes)
    if export.values is not None and export.values["weight"] == 0:
        return NodeExport(node, None, [
            *export.notes,
            "not exported: weight 0 switches this node off, while vboost's weight 0 still applies clamp(CFI * F, 1); "
            + INSTEAD,
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
            f"CogVideoX 1.5), which this study does not record; export a study that records it, or {INSTEAD}",
        ])
    wrapper_frames = _cogvideox_wrapper_frames(preset.num_frames, frames)
    weight = params["weight"] * wrapper_frames / frames
    if wrapper_frames != frames:
        notes.append(
            f"weight {params['weight']!r} translated to {weight!r}: the wrapper takes F = {wrapper_frames} where the "
            f"attention sees {frames} latent frames, so weight x {wrapper_frames}/{frames} keeps weight / F"
        )
    wanted = {"weight": weight, "start_percent": params["start"], "end_percent": params["end"]}
    return checked_values(node, wanted, notes)


def _layers_not_settable(node: NodeSource, notes: list[str], layers: Any) -> NodeExport:
    return NodeExport(node, None, [
        *notes, f"not exported: tuned on the layers {layers!r}, and this node acts on every block; {INSTEAD}",
    ])


def _cogvideox_wrapper_frames(num_frames: int, latent_frames: int) -> int:
    """The F that CogVideoXWrapper's score uses: the latent frame count padded to whole temporal patches.

    The transformer sees ``latent_frames = ceil(L / p)`` for ``L`` VAE latent frames and temporal patch ``p`` (1 for
    CogVideoX 1.0, 2 for 1.5); the wrapper pads ``L`` to ``latent_frames * p`` and uses that. ``p = ceil(L / F)``
    recovers the patch for ``p`` in {1, 2} whenever ``F >= 2``.
    """
    before_patch = backbone_spec("cogvideox").rule.geometry(num_frames, 1, 1, {}).vae_frames
    return latent_frames * -(-before_patch // latent_frames)
