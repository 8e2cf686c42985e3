"""The values to type into the ComfyUI nodes people already use, with where a node means something else.

What each node computes was read from the nodes' public source (ComfyUI custom-node repositories, as
indexed in late 2025); where the source was not read, the note says so instead of guessing.
- kijai/ComfyUI-HunyuanVideoWrapper ``HyVideoEnhanceAVideo``, kijai/ComfyUI-WanVideoWrapper
  ``WanVideoEnhanceAVideo`` and kijai/ComfyUI-CogVideoXWrapper ``CogVideoEnhanceAVideo`` only collect
  ``weight``/``start_percent``/``end_percent`` (+ ``single_blocks``/``double_blocks`` for Hunyuan) into
  ``feta_args``; the samplers set F to the latent frame count (``context_frames`` under context windows)
  and enable it iff ``start_percent <= i / len(timesteps) <= end_percent``: the same window as ours.
- WanVideoWrapper's ``enhance_a_video/enhance.py`` (versions seen) reshapes q/k as ``[B, S, F, N, C]``,
  i.e. groups tokens spatial-first, where video tokens are frame-major (METHODS.md 1.2 calls this grouping a
  bug), and some versions of ``wanvideo/modules/model.py`` score q/k before RoPE: a different quantity.
- kijai/ComfyUI-KJNodes ``nodes/model_optimization_nodes.py``: ``WanVideoEnhanceAVideoKJ`` (native Wan)
  groups ``"B (T S) N C -> (B S) N T C"`` after RoPE and scales the output after ``o``, like the official
  code, F from the latent input, no step window; ``LTXVEnhanceAVideoKJ`` scales the attention output
  *before* ``to_out`` (``self.to_out(out * feta_scores)``), so the bias of ``to_out`` is not scaled.
- Kosinkadink/ComfyUI-AnimateDiff-Evolved ``FreeInit Iteration Options``: ``iterations``, ``filter``,
  ``d_s``, ``d_t``, ``n_butterworth`` (+ ``sigma_step``, ``apply_to_1st_iter``, ``init_type``).
"""

from __future__ import annotations

from typing import Any

from vboost.methods.preset import Preset

# VAE temporal compression per backbone family: latent frames F = (frames - 1) // r + 1.
_TEMPORAL_COMPRESSION = {"cogvideox": 4, "hunyuan_video": 4, "wan": 4, "ltx_video": 8}

_WEIGHT_TRANSFER = (
    "weight enters the official score as F + weight (F = latent frames), so uniform attention gives a gain of "
    "about 1 + weight / F: keep weight / F fixed, not weight, when you change the frame count"
)


def latent_frames(family: str | None, num_frames: int | None) -> int | None:
    """Latent frame count F the denoiser sees for ``num_frames`` pixel frames, or ``None`` when unknown."""
    if family not in _TEMPORAL_COMPRESSION or not num_frames:
        return None
    return (num_frames - 1) // _TEMPORAL_COMPRESSION[family] + 1


def comfyui_values(preset: Preset) -> dict[str, Any]:
    """``{"nodes": [{"node", "package", "inputs", "notes"}], "notes": [...]}`` for ``preset``'s method."""
    if preset.method == "enhance_a_video":
        return _enhance_a_video(preset)
    if preset.method == "free_init":
        return _free_init(preset)
    return {"nodes": [], "notes": [f"no ComfyUI node for {preset.method!r} is known to vboost; use the diffusers snippet"]}


def _window_note(params: dict[str, Any]) -> list[str]:
    if params.get("start", 0.0) == 0.0 and params.get("end", 1.0) == 1.0:
        return []
    return [f"this node has no step window: the tuned window start={params.get('start')} end={params.get('end')} cannot be set here"]


def _enhance_a_video(preset: Preset) -> dict[str, Any]:
    params = preset.params
    weight, start, end = params["weight"], params.get("start", 0.0), params.get("end", 1.0)
    frames = latent_frames(preset.backbone, preset.num_frames)
    notes = [_WEIGHT_TRANSFER]
    if frames is not None:
        notes.append(f"tuned at {preset.num_frames} frames = F {frames} latent frames: weight / F = {weight / frames:.4g}")
    wrapper_window = {"weight": weight, "start_percent": start, "end_percent": end}
    nodes: list[dict[str, Any]] = []
    if preset.backbone == "hunyuan_video":
        single, double, layer_note = _hunyuan_blocks(params.get("layers"))
        nodes.append({
            "node": "HyVideoEnhanceAVideo",
            "package": "kijai/ComfyUI-HunyuanVideoWrapper",
            "inputs": {"weight": weight, "single_blocks": single, "double_blocks": double, "start_percent": start, "end_percent": end},
            "notes": [
                "same step window as vboost (start_percent <= i / steps <= end_percent)",
                "how this wrapper computes the score inside its blocks was not verified against the official code",
                *layer_note,
            ],
        })
    elif preset.backbone == "wan":
        nodes.append({
            "node": "WanVideoEnhanceAVideo",
            "package": "kijai/ComfyUI-WanVideoWrapper",
            "inputs": wrapper_window,
            "notes": [
                "DIFFERENT QUANTITY: the wrapper's get_feta_scores (versions seen) groups tokens spatial-first "
                "([B, S, F, N, C] reshape of frame-major tokens), and some versions score q/k before RoPE; the score "
                "then compares neighbouring tokens rather than one position across frames, so this weight gives a "
                "different gain there: treat it as a starting point and re-tune by eye",
                *_layers_note(params),
            ],
        })
        nodes.append({
            "node": "WanVideoEnhanceAVideoKJ",
            "package": "kijai/ComfyUI-KJNodes",
            "inputs": {"weight": weight},
            "notes": [
                "same score as the official code (frame-major grouping after RoPE, output scaled after o)",
                "ComfyUI may batch cond and uncond in one forward, which pools the score over both; diffusers' Wan "
                "pipeline runs them separately",
                *_window_note(params),
                *_layers_note(params),
            ],
        })
    elif preset.backbone == "ltx_video":
        nodes.append({
            "node": "LTXVEnhanceAVideoKJ",
            "package": "kijai/ComfyUI-KJNodes",
            "inputs": {"weight": weight},
            "notes": [
                "DIFFERENT QUANTITY: this node scales the attention output before to_out (to_out(out * score)); vboost "
                "scales after to_out, so here the bias of to_out is not amplified and the same weight acts differently",
                *_window_note(params),
                *_layers_note(params),
            ],
        })
    elif preset.backbone == "cogvideox":
        nodes.append({
            "node": "CogVideoEnhanceAVideo",
            "package": "kijai/ComfyUI-CogVideoXWrapper",
            "inputs": wrapper_window,
            "notes": [
                "the node's default weight is 1 (the official CogVideoX-2B value is 3.4)",
                "how this wrapper computes the score was not verified against the official code",
                *_layers_note(params),
            ],
        })
    else:
        notes.append(f"no ComfyUI Enhance-A-Video node is known for backbone {preset.backbone!r}")
    return {"nodes": nodes, "notes": notes}


def _layers_note(params: dict[str, Any]) -> list[str]:
    if params.get("layers") is None:
        return []
    return [f"this node applies to every block; the tuned layer selection {params['layers']!r} cannot be set here"]


def _hunyuan_blocks(layers: list[Any] | None) -> tuple[bool, bool, list[str]]:
    """(single_blocks, double_blocks, note) for a vboost ``layers`` selection on HunyuanVideo."""
    if layers is None:
        return True, True, []
    single = {"single_transformer_blocks", "single_transformer_blocks.*"}
    double = {"transformer_blocks", "transformer_blocks.*"}
    chosen = set(map(str, layers))
    if chosen <= single | double:
        return bool(chosen & single), bool(chosen & double), []
    return True, True, [f"the node selects only single/double block groups; the tuned selection {layers!r} cannot be set here"]


def _free_init(preset: Preset) -> dict[str, Any]:
    params = preset.params
    notes = [
        "AnimateDiff-Evolved re-noises with its own schedule (init_type, sigma_step); it was not verified to match "
        "diffusers' FreeInit step for step, nor whether its iteration count includes the first pass",
    ]
    if params.get("use_fast_sampling"):
        notes.append("use_fast_sampling (fewer steps in early iterations) has no equivalent input on this node")
    return {
        "nodes": [{
            "node": "FreeInit Iteration Options (ADE_IterationOptsFreeInit)",
            "package": "Kosinkadink/ComfyUI-AnimateDiff-Evolved",
            "inputs": {
                "iterations": params.get("num_iters", 3),
                "filter": params.get("method", "butterworth"),
                "d_s": params.get("spatial_stop_frequency", 0.25),
                "d_t": params.get("temporal_stop_frequency", 0.25),
                "n_butterworth": params.get("order", 4),
            },
            "notes": notes,
        }],
        "notes": [],
    }
