"""The ComfyUI export, checked against the nodes' own sources and formulas restated here.

``SOURCE_INPUT_TYPES`` restates each node's ``INPUT_TYPES`` as its source declares it (at the commits named in
``vboost.export._comfyui_nodes``); the score formulas below restate the nodes' code beside vboost's on the same q/k.
"""

from __future__ import annotations

import json
import math
import re
import types
from pathlib import Path

import optuna
import pytest
import torch
from diffusers import DDIMScheduler
from diffusers.pipelines.free_init_utils import FreeInitMixin

from vboost.backbones import backbone_spec
from vboost.backbones._specs import SPECS
from vboost.backbones.animatediff import ANIMATEDIFF_SCHEDULER
from vboost.export import export_study
from vboost.export._comfyui import comfyui_export, widget_value, workflow_fragment
from vboost.export._comfyui_nodes import NODES
from vboost.methods import METHODS, MethodHandle
from vboost.methods.enhance_a_video import EnhanceAVideo
from vboost.methods.enhance_a_video._processor import FetaProcessor, FetaState
from vboost.methods.preset import Preset

DOCS = Path(__file__).resolve().parents[1] / "docs" / "comfyui.md"
_BIG = 2**53 - 1

# Each node's INPUT_TYPES, restated from its source file at the commit recorded for it.
SOURCE_INPUT_TYPES = {
    "HyVideoEnhanceAVideo": {"required": {
        "weight": ("FLOAT", {"default": 2.0, "min": 0, "max": 100, "step": 0.01}),
        "single_blocks": ("BOOLEAN", {"default": True}),
        "double_blocks": ("BOOLEAN", {"default": True}),
        "start_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01}),
        "end_percent": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
    }},
    "WanVideoEnhanceAVideo": {"required": {
        "weight": ("FLOAT", {"default": 2.0, "min": 0, "max": 100, "step": 0.01}),
        "start_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01}),
        "end_percent": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
    }},
    "CogVideoEnhanceAVideo": {"required": {
        "weight": ("FLOAT", {"default": 1.0, "min": 0, "max": 100, "step": 0.01}),
        "start_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01}),
        "end_percent": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
    }},
    "WanVideoEnhanceAVideoKJ": {"required": {
        "model": ("MODEL",),
        "latent": ("LATENT", {}),
        "weight": ("FLOAT", {"default": 2.0, "min": 0.0, "max": 10.0, "step": 0.001}),
    }},
    "LTXVEnhanceAVideoKJ": {"required": {
        "model": ("MODEL",),
        "latent": ("LATENT", {}),
        "weight": ("FLOAT", {"default": 4.0, "min": 0.0, "max": 100.0, "step": 0.001}),
    }},
    "LTXFetaEnhance": {
        "required": {"model": ("MODEL",), "feta_weight": ("FLOAT", {"default": 4, "min": -100.0, "max": 100.0, "step": 0.01})},
        "optional": {"attn_override": ("ATTN_OVERRIDE",)},
    },
    "LTXAttnOverride": {"required": {"layers": ("STRING", {"multiline": True})}},
    "ADE_IterationOptsFreeInit": {
        "required": {
            "iterations": ("INT", {"default": 2, "min": 1}),
            "filter": (["gaussian", "butterworth", "ideal", "box"],),
            "d_s": ("FLOAT", {"default": 0.25, "min": 0.0, "max": 1.0, "step": 0.001}),
            "d_t": ("FLOAT", {"default": 0.25, "min": 0.0, "max": 1.0, "step": 0.001}),
            "n_butterworth": ("INT", {"default": 4, "min": 1, "max": 100}),
            "sigma_step": ("INT", {"default": 999, "min": 1, "max": 999}),
            "apply_to_1st_iter": ("BOOLEAN", {"default": False}),
            "init_type": (["FreeInit [sampler sigma]", "FreeInit [model sigma]", "DinkInit_v1"],),
        },
        "optional": {
            "iter_batch_offset": ("INT", {"default": 0, "min": 0, "max": _BIG}),
            "iter_seed_offset": ("INT", {"default": 1, "min": -_BIG, "max": _BIG}),
        },
    },
    # Declared with ComfyUI's io.Schema (comfy_extras/nodes_slg.py): the same inputs, in this order.
    "SkipLayerGuidanceDiT": {"required": {
        "model": ("MODEL",),
        "double_layers": ("STRING", {"default": "7, 8, 9"}),
        "single_layers": ("STRING", {"default": "7, 8, 9"}),
        "scale": ("FLOAT", {"default": 3.0, "min": 0.0, "max": 10.0, "step": 0.1}),
        "start_percent": ("FLOAT", {"default": 0.01, "min": 0.0, "max": 1.0, "step": 0.001}),
        "end_percent": ("FLOAT", {"default": 0.15, "min": 0.0, "max": 1.0, "step": 0.001}),
        "rescaling_scale": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 10.0, "step": 0.01}),
    }},
    "SkipLayerGuidanceWanVideo": {"required": {
        "model": ("MODEL",),
        "blocks": ("STRING", {"default": "10", "multiline": False}),
        "start_percent": ("FLOAT", {"default": 0.2, "min": 0.0, "max": 1.0, "step": 0.001}),
        "end_percent": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.001}),
    }},
    "CFGZeroStarAndInit": {"required": {
        "model": ("MODEL",),
        "use_zero_init": ("BOOLEAN", {"default": True}),
        "zero_init_steps": ("INT", {"default": 0, "min": 0}),
    }},
}
WIDGET_KINDS = ("FLOAT", "INT", "BOOLEAN", "STRING")


def source_inputs(class_name: str) -> list[dict]:
    """The node's inputs in the frontend's order (required, then optional), each as kind, options and optionality."""
    declared = SOURCE_INPUT_TYPES[class_name]
    rows = []
    for section in ("required", "optional"):
        for name, spec in declared.get(section, {}).items():
            kind = "COMBO" if isinstance(spec[0], list) else spec[0]
            options = spec[1] if len(spec) > 1 else {}
            rows.append({"name": name, "kind": kind, "choices": spec[0] if kind == "COMBO" else None,
                         "options": options, "optional": section == "optional"})
    return rows


def check_ui_workflow(fragment: dict, class_name: str) -> list:
    """Assert ``fragment`` is a ComfyUI UI workflow (frontend schema 0.4, zComfyWorkflow) holding ``class_name``
    with one valid widget value per widget input, in the node's widget order; returns the widget values."""
    assert isinstance(fragment["last_node_id"], (int, str)) and isinstance(fragment["last_link_id"], int)
    assert fragment["links"] == [] and isinstance(fragment["version"], (int, float))
    assert fragment["version"] == 0.4
    (node,) = fragment["nodes"]
    assert node["type"] == class_name and node["id"] == fragment["last_node_id"]
    for key in ("pos", "size"):
        assert len(node[key]) == 2 and all(isinstance(v, (int, float)) for v in node[key])
    assert isinstance(node["flags"], dict) and isinstance(node["order"], int) and isinstance(node["mode"], int)
    assert node["properties"]["Node name for S&R"] == class_name
    assert re.fullmatch(r"[^/]+/[^/]+", node["properties"]["aux_id"])
    assert re.fullmatch(r"[0-9a-f]{4,40}", node["properties"]["ver"])
    inputs = source_inputs(class_name)
    widgets = [row for row in inputs if row["kind"] in (*WIDGET_KINDS, "COMBO")]
    slots = [row for row in inputs if row not in widgets]
    assert [(s["name"], s["type"], s["link"]) for s in node["inputs"]] == [(r["name"], r["kind"], None) for r in slots]
    for output in node["outputs"]:
        assert isinstance(output["name"], str) and isinstance(output["type"], str) and output["links"] == []
    # The frontend adds a control_after_generate value only after INT inputs named seed/noise_seed or declaring it.
    assert not [w for w in widgets if w["name"] in ("seed", "noise_seed") or "control_after_generate" in w["options"]]
    values = node["widgets_values"]
    assert len(values) == len(widgets)
    for row, value in zip(widgets, values):
        options = row["options"]
        if row["kind"] == "COMBO":
            assert value in row["choices"], row["name"]
        elif row["kind"] == "BOOLEAN":
            assert isinstance(value, bool), row["name"]
        elif row["kind"] == "STRING":
            assert isinstance(value, str), row["name"]
        else:
            assert not isinstance(value, bool) and isinstance(value, int if row["kind"] == "INT" else (int, float))
            # Bounds the frontend gives an undeclared min/max: 0 and 2048.
            assert options.get("min", 0) <= value <= options.get("max", 2048), (row["name"], value)
            if "step" in options:
                assert abs(value / options["step"] - round(value / options["step"])) < 1e-6, (row["name"], value)
    return values


# --- the recorded node tables ---------------------------------------------------------------------------------

@pytest.mark.parametrize("class_name", sorted(SOURCE_INPUT_TYPES))
def test_node_tables_restate_input_types(class_name):
    node = NODES[class_name]
    assert re.fullmatch(r"[0-9a-f]{40}", node.commit)
    recorded = [(i.name, i.type, i.optional) for i in node.inputs]
    assert recorded == [(r["name"], r["kind"], r["optional"]) for r in source_inputs(class_name)]
    for entry, row in zip(node.inputs, source_inputs(class_name)):
        options = row["options"]
        assert (entry.default, entry.min, entry.max, entry.step) == (
            options.get("default"), options.get("min"), options.get("max"), options.get("step"),
        ), entry.name
        assert entry.choices == tuple(row["choices"] or ())
        assert entry.used_at


def test_docs_tables_match_the_recorded_nodes():
    text = DOCS.read_text()
    for node in NODES.values():
        section = text.split(f"### `{node.class_name}`", 1)[1].split("\n#", 1)[0]
        assert node.package in section and node.commit in section and node.path in section, node.class_name
        table = section.split("| input | type |", 1)[1].split("\n\n", 1)[0]  # the node's input table
        rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| `")]
        assert [row[0].strip("| `") for row in rows] == [entry.name for entry in node.inputs], node.class_name
        for row, entry in zip(rows, node.inputs):
            default = entry.choices[0] if entry.choices else entry.default  # a COMBO defaults to its first choice
            for cell, value in zip(row[1:6], (entry.type, default, entry.min, entry.max, entry.step)):
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    assert float(cell) == value, (node.class_name, entry.name, cell)
                else:
                    assert cell == ("" if value is None else str(value)), (node.class_name, entry.name, cell)
            assert (row[6] == "yes") == entry.optional, (node.class_name, entry.name)


# --- every backbone x method the sweep supports ------------------------------------------------------------------

# A typical clip length per family; latent frames from the backbone's own geometry (no temporal patch).
FRAMES = {"cogvideox": 49, "hunyuan_video": 129, "wan": 81, "ltx_video": 97, "animatediff": 16, "animatediff_sparsectrl": 16,
          "opensora": 51, "videocrafter2": 16, "wan_modular": 81, "wan22_modular": 81, "ltx_modular": 97,
          "hunyuan_video15_modular": 121, "ltx2_modular": 121}
KNOBS = {
    "enhance_a_video": {"weight": 4.0},
    "bytheway": {"alpha": 0.6, "beta": 1.5, "tau": 7},
    "free_init": {"num_iters": 2, "spatial_stop_frequency": 0.3, "temporal_stop_frequency": 0.25},
    "freeu": {"b1": 1.5, "b2": 1.6, "s1": 0.9, "s2": 0.2},
    "skip_layer_guidance": {"layers": 2, "skip_layer_guidance_start": 0.0, "skip_layer_guidance_stop": 1.0},
    "cfg_zero_star": {"zero_init_steps": 2},
    "classifier_free_guidance": {"guidance_scale": 5.0},
    "adaptive_projected_guidance": {"eta": 0.0},
}


def _supported(cls, family) -> bool:
    try:
        cls.check_backbone(backbone_spec(family))
    except TypeError:
        return False
    return cls.name != "combined"  # a combination's compatibility is its members'


# The built-in families and methods (a user's, such as the synthetic world's that other test modules register, have no
# ComfyUI node).
SUPPORTED = [(family, method) for family in SPECS for method, cls in METHODS.items()
             if cls.__module__.startswith("vboost.") and _supported(cls, family)]


@pytest.mark.parametrize(("family", "method"), SUPPORTED)
def test_every_exported_fragment_fits_its_node(family, method):
    frames = FRAMES[family]
    preset = Preset(method, KNOBS[method], backbone=family, num_frames=frames, steps=50,
                    latent_frames=backbone_spec(family).geometry(frames, 64, 64).latent_frames)
    export = comfyui_export(preset)
    json.dumps(export.to_dict())  # plain data
    for node in export.nodes:
        assert node.notes[0] == node.node.caveat
        if node.values is None:
            continue
        values = check_ui_workflow(workflow_fragment(node), node.node.class_name)
        widget_names = [i.name for i in node.node.inputs if i.is_widget]
        for name, value in node.values.items():
            assert values[widget_names.index(name)] == value
    if method == "bytheway":
        assert export.nodes == [] and "no ComfyUI node" in export.notes[0]


def test_values_are_what_the_nodes_take():
    # Wan at 81 frames (F = 21) with weight / F = 1.5: 31.5 is over the native node's max of 10.
    wan = comfyui_export(Preset("enhance_a_video", {"weight": 31.5}, backbone="wan", num_frames=81, latent_frames=21))
    kj, wrapper = wan.nodes
    assert kj.values is None and any("31.5" in n and "[0.0, 10.0]" in n for n in kj.notes)
    assert wrapper.values is None and "DIFFERENT QUANTITY" in wrapper.notes[0]
    # Rounded to the widget step: 0.001 on the KJ node; 0.01 on the wrapper.
    ltx = comfyui_export(Preset("enhance_a_video", {"weight": 3.070095694215842}, backbone="ltx_video"))
    assert ltx.nodes[0].values == {"weight": 3.07} and any("rounded to 3.07" in n for n in ltx.nodes[0].notes)
    assert ltx.nodes[1].values is None and "KeyError 'original_shape'" in ltx.nodes[1].notes[0]
    cog = comfyui_export(Preset("enhance_a_video", {"weight": 3.4567, "start": 0.1, "end": 0.9}, backbone="cogvideox",
                                num_frames=49, latent_frames=13))
    assert cog.nodes[0].values == {"weight": 3.46, "start_percent": 0.1, "end_percent": 0.9}
    # The native nodes have no step window, no layer choice, and weight 0 switches them off.
    for params in ({"weight": 2.0, "start": 0.0, "end": 0.5}, {"weight": 2.0, "layers": [0]}, {"weight": 0.0004}):
        node = comfyui_export(Preset("enhance_a_video", params, backbone="wan")).nodes[0]
        assert node.values is None and "not exported" in node.notes[-1], params
    assert widget_value(NODES["ADE_IterationOptsFreeInit"].input("n_butterworth"), 4) == 4
    with pytest.raises(ValueError, match="n_butterworth 101 is outside the node's range"):
        widget_value(NODES["ADE_IterationOptsFreeInit"].input("n_butterworth"), 101)
    with pytest.raises(ValueError, match="filter 'box2'"):
        widget_value(NODES["ADE_IterationOptsFreeInit"].input("filter"), "box2")


def test_cogvideox_wrapper_frame_count_translation():
    # CogVideoX 1.5 at 81 frames: 21 VAE latent frames padded to 22, patched to F = 11. The wrapper uses 22.
    v15 = comfyui_export(Preset("enhance_a_video", {"weight": 3.4}, backbone="cogvideox", num_frames=81, latent_frames=11))
    assert v15.nodes[0].values["weight"] == round(3.4 * 22 / 11, 2)
    assert any("F = 22" in n and "11" in n for n in v15.nodes[0].notes)
    # CogVideoX 1.0 (no temporal patch): the wrapper's F is vboost's.
    v10 = comfyui_export(Preset("enhance_a_video", {"weight": 3.4}, backbone="cogvideox", num_frames=49, latent_frames=13))
    assert v10.nodes[0].values["weight"] == 3.4
    # A study that does not record F: no translation, hence no value.
    old = comfyui_export(Preset("enhance_a_video", {"weight": 3.4}, backbone="cogvideox", num_frames=49))
    assert old.nodes[0].values is None and any("needs the latent frame count F" in n for n in old.nodes[0].notes)
    assert "records no latent frame count F" in old.notes[1]


def test_free_init_values_and_limits():
    node = comfyui_export(Preset("free_init", {"num_iters": 2, "method": "gaussian", "spatial_stop_frequency": 0.37123,
                                               "temporal_stop_frequency": 0.2, "order": 3}, backbone="animatediff")).nodes[0]
    assert node.values == {"iterations": 2, "filter": "gaussian", "d_s": 0.371, "d_t": 0.2, "n_butterworth": 3,
                           "sigma_step": 999, "apply_to_1st_iter": False, "init_type": "FreeInit [model sigma]"}
    values = check_ui_workflow(workflow_fragment(node), "ADE_IterationOptsFreeInit")
    assert values[-2:] == [0, 1]  # the optional offsets at the node's defaults
    for params in ({"num_iters": 3}, {"num_iters": 2, "use_fast_sampling": True}):
        node = comfyui_export(Preset("free_init", params, backbone="animatediff")).nodes[0]
        assert node.values is None and "not exported" in node.notes[-1]
    with pytest.raises(ValueError, match="nothing is exported"):
        workflow_fragment(node)


# --- the same quantity, or the measured difference -----------------------------------------------------------

def vboost_score(query, key, num_frames, weight, heads_first):
    """vboost's own scoring path: a FetaProcessor's score on the video q/k of one attention call."""
    state = FetaState(weight=weight, start=0.0, end=1.0, handle=MethodHandle(EnhanceAVideo(weight), "test"),
                      num_frames=num_frames)
    return FetaProcessor(None, "test", state).score(query, key, heads_first=heads_first)


def node_feta_score(query_image, key_image, head_dim, num_frames, weight):
    """feta_score as KJNodes, the kijai wrappers and LTXVideo's tricks all write it (masked diagonal, mean, clamp)."""
    attn = (query_image * head_dim**-0.5) @ key_image.transpose(-2, -1)
    attn = attn.to(torch.float32).softmax(dim=-1).reshape(-1, num_frames, num_frames)
    mask = torch.eye(num_frames, device=attn.device).bool().unsqueeze(0).expand(attn.shape[0], -1, -1)
    mean = attn.masked_fill(mask, 0).sum(dim=(1, 2)) / (num_frames * num_frames - num_frames)
    return (mean.mean() * (num_frames + weight)).clamp(min=1)


def frame_major(x, num_frames):
    """einops "B (T S) N C -> (B S) N T C", built from per-frame slices: frame t is tokens t*S .. (t+1)*S - 1."""
    positions = x.shape[1] // num_frames
    frames = [x[:, t * positions:(t + 1) * positions] for t in range(num_frames)]  # each [B, S, N, C]
    return torch.stack(frames, dim=3).flatten(0, 1)  # [B, S, N, T, C] -> [(B S), N, T, C]


def kj_scores(q, k, num_frames, weight, num_heads=12):
    """KJNodes get_feta_scores: [B, ST, N, C] (Wan) or [B, ST, N*C] (LTX), frame-major."""
    if q.ndim == 3:
        q, k = (x.view(x.shape[0], x.shape[1], num_heads, -1) for x in (q, k))
    return node_feta_score(frame_major(q, num_frames), frame_major(k, num_frames), q.shape[-1], num_frames, weight)


def cog_wrapper_scores(q, k, num_frames, weight, text_len):
    """CogVideoXWrapper get_feta_scores: q/k [B, N, text + (T S), C], text dropped first, "B N (T S) C" frame-major."""
    q, k = (frame_major(x[:, :, text_len:].transpose(1, 2), num_frames) for x in (q, k))
    return node_feta_score(q, k, q.shape[-1], num_frames, weight)


def spatial_first_scores(q, k, num_frames, weight):
    """The Hunyuan/Wan wrappers' get_feta_scores: [B, S, N, C] reshaped to [B, S/F, F, N, C] (spatial-first)."""
    b, s, n, c = q.shape
    q, k = (x.reshape(b, s // num_frames, num_frames, n, c).transpose(2, 3).flatten(0, 1) for x in (q, k))
    return node_feta_score(q, k, c, num_frames, weight)


def static_tokens(batch, frames, positions, heads, dim, seed=0):
    """Frame-major tokens [B, F*S, N, d] of a clip whose frames are identical (one random vector per position)."""
    per_position = torch.randn(batch, 1, positions, heads, dim, generator=torch.Generator().manual_seed(seed))
    return per_position.expand(batch, frames, positions, heads, dim).reshape(batch, frames * positions, heads, dim)


def test_kjnodes_score_is_vboost_score():
    g = torch.Generator().manual_seed(0)
    # Wan layout [B, F*S, N, C]: batched CFG halves, 5 frames, 6 positions.
    q, k = torch.randn(2, 30, 12, 8, generator=g), torch.randn(2, 30, 12, 8, generator=g)
    torch.testing.assert_close(kj_scores(q, k, 5, 2.0), vboost_score(q, k, 5, 2.0, heads_first=False), rtol=1e-6, atol=0)
    # LTX layout [B, F*S, N*C] after RoPE, as LTXVEnhanceAVideoKJ hands it over with self.heads.
    q3, k3 = q.flatten(2), k.flatten(2)
    torch.testing.assert_close(kj_scores(q3, k3, 5, 4.0, num_heads=12), vboost_score(q, k, 5, 4.0, heads_first=False),
                               rtol=1e-6, atol=0)


def test_cogvideox_wrapper_score_is_vboost_score():
    g = torch.Generator().manual_seed(1)
    text_len, frames, positions = 7, 4, 6
    q = torch.randn(2, 3, text_len + frames * positions, 16, generator=g)
    k = torch.randn(2, 3, text_len + frames * positions, 16, generator=g)
    ours = vboost_score(q[:, :, text_len:], k[:, :, text_len:], frames, 3.4, heads_first=True)
    torch.testing.assert_close(cog_wrapper_scores(q, k, frames, 3.4, text_len), ours, rtol=1e-6, atol=0)


def test_spatial_first_wrappers_compute_another_quantity():
    # Identical frames: each position attends uniformly across frames, so the official score is exactly 1 + w / F;
    # grouped spatial-first, the "frames" are neighbouring positions and the score clamps to 1.
    frames, weight = 9, 4.0
    q = static_tokens(1, frames, 18, 4, 64)
    ours = vboost_score(q, q, frames, weight, heads_first=False)
    assert ours.item() == pytest.approx(1 + weight / frames, abs=1e-6)  # 1.4444
    assert spatial_first_scores(q, q, frames, weight).item() == 1.0


def test_cogvideox_1_5_wrapper_score_differs_even_translated():
    # F = 11 latent frames in attention; the wrapper groups the same tokens as 22 half-frames, weight x 2.
    frames, weight, text_len = 11, 3.4, 5
    video = static_tokens(1, frames, 8, 2, 64).transpose(1, 2)  # [B, N, F*S, d]
    tokens = torch.cat([torch.zeros(1, 2, text_len, 64), video], dim=2)
    ours = vboost_score(video, video, frames, weight, heads_first=True)
    theirs = cog_wrapper_scores(tokens, tokens, 2 * frames, 2 * weight, text_len)
    assert ours.item() == pytest.approx(1 + weight / frames, abs=1e-6)  # 1.3091
    assert theirs.item() == pytest.approx((1 - 1 / frames) / (2 * frames - 1) * (2 * frames + 2 * weight), abs=1e-3)
    assert ours.item() - theirs.item() > 0.05


def test_ltx_feta_enhance_scales_before_to_out():
    g = torch.Generator().manual_seed(2)
    to_out = torch.nn.Linear(8, 8)
    out, score = torch.randn(3, 8, generator=g), torch.tensor(1.3)
    before, after = to_out(out * score), to_out(out) * score  # LTXFetaEnhance vs vboost (and LTXVEnhanceAVideoKJ)
    torch.testing.assert_close(after - before, (score - 1) * to_out.bias.expand(3, 8))


# --- FreeInit: AnimateDiff-Evolved against diffusers --------------------------------------------------------------

def ade_filter(shape, filter_type, n, d_s, d_t):
    """animatediff/freeinit.py get_freq_filter on a [T, C, H, W] latent."""
    t_len, h_len, w_len = shape[-4], shape[-2], shape[-1]
    mask = torch.zeros(shape)
    for t in range(t_len):
        for h in range(h_len):
            for w in range(w_len):
                d_square = ((d_s / d_t) * (2 * t / t_len - 1)) ** 2 + (2 * h / h_len - 1) ** 2 + (2 * w / w_len - 1) ** 2
                if filter_type == "gaussian":
                    mask[t, ..., h, w] = math.exp(-1 / (2 * d_s**2) * d_square)
                elif filter_type == "butterworth":
                    mask[t, ..., h, w] = 1 / (1 + (d_square / d_s**2) ** n)
                else:
                    mask[t, ..., h, w] = 1 if d_square <= d_s * 2 else 0
    return mask


def ade_freq_mix(x, noise, lpf):
    """animatediff/freeinit.py freq_mix_3d over (T, H, W) of a [T, C, H, W] latent."""
    dims = (-4, -2, -1)
    x_freq = torch.fft.fftshift(torch.fft.fftn(x, dim=dims), dim=dims)
    noise_freq = torch.fft.fftshift(torch.fft.fftn(noise, dim=dims), dim=dims)
    mixed = x_freq * lpf + noise_freq * (1 - lpf)
    return torch.fft.ifftn(torch.fft.ifftshift(mixed, dim=dims), dim=dims).real


@pytest.mark.parametrize("filter_type", ["gaussian", "butterworth", "ideal"])
def test_ade_free_init_filter_and_mix_are_diffusers(filter_type):
    g = torch.Generator().manual_seed(3)
    latent = torch.randn(1, 4, 6, 8, 10, generator=g)  # diffusers [B, C, T, H, W]
    noise = torch.randn(1, 4, 6, 8, 10, generator=g)
    ours = FreeInitMixin._get_free_init_freq_filter(None, (1, 4, 6, 8, 10), "cpu", filter_type, 3, 0.3, 0.2)
    comfy = ade_filter((6, 4, 8, 10), filter_type, 3, 0.3, 0.2)  # ComfyUI [T, C, H, W]
    torch.testing.assert_close(comfy, ours[0].permute(1, 0, 2, 3), rtol=0, atol=0)
    mixed = FreeInitMixin._apply_freq_filter(None, latent, noise, ours)
    comfy_mixed = ade_freq_mix(latent[0].permute(1, 0, 2, 3), noise[0].permute(1, 0, 2, 3), comfy)
    torch.testing.assert_close(comfy_mixed, mixed[0].permute(1, 0, 2, 3), rtol=1e-5, atol=1e-5)


def test_ade_renoise_normalisation_and_third_pass():
    # Re-noising at sigma: ADE normalises with the latent scale factor s, diffusers (add_noise) with 1.
    scheduler = DDIMScheduler(**ANIMATEDIFF_SCHEDULER)
    alpha = scheduler.alphas_cumprod[999].double()
    sigma, s = ((1 - alpha) / alpha).sqrt(), 0.18215
    g = torch.Generator().manual_seed(4)
    z0, eps = torch.randn(4, 1, 4, 4, generator=g, dtype=torch.float64), torch.randn(4, 1, 4, 4, generator=g, dtype=torch.float64)
    diffusers_noised = scheduler.add_noise(s * z0, eps, torch.tensor([999])).double()  # in the model's (scaled) space
    ade_sigma = sigma / s  # sigma / latent_format.scale_factor, on the unscaled latent z0
    a = 1 / (ade_sigma**2 + 1)
    ade_noised = z0 * a.sqrt() + eps * (1 - a).sqrt()
    torch.testing.assert_close(ade_noised / diffusers_noised, ((sigma**2 + 1) / (sigma**2 + s**2)).sqrt().expand(4, 1, 4, 4))
    sd15 = ((torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2)).neg().add(1).cumprod(0)
    sd15_sigma = ((1 - sd15[-1]) / sd15[-1]).sqrt()  # ComfyUI's SD1.5 sigma_max
    assert sd15_sigma.item() == pytest.approx(14.61, abs=0.01)
    assert ((sd15_sigma**2 + 1) / (sd15_sigma**2 + s**2)).sqrt().item() == pytest.approx(1.0023, abs=1e-4)

    # Three passes with a toy sampler: diffusers' real _apply_free_init re-noises every pass with the first noise;
    # ADE's loop (animatediff/sampling.py) hands each pass the previous pass's starting noise.
    shape = (1, 1, 4, 4, 4)
    pipe = types.SimpleNamespace(
        scheduler=scheduler, _free_init_method="gaussian", _free_init_order=4, _free_init_spatial_stop_frequency=0.25,
        _free_init_temporal_stop_frequency=0.25, _free_init_use_fast_sampling=False, _free_init_num_iters=3,
    )
    for name in ("_get_free_init_freq_filter", "_apply_freq_filter"):
        setattr(pipe, name, types.MethodType(getattr(FreeInitMixin, name), pipe))
    first = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    randoms = torch.Generator().manual_seed(6)
    starts, latents = [], first
    for i in range(3):
        latents, _ = FreeInitMixin._apply_free_init(pipe, latents, i, 2, "cpu", torch.float32, randoms)
        starts.append(latents)
        latents = 0.5 * latents + 0.1  # the toy sampler
    z_rands = torch.Generator().manual_seed(6)
    lpf = pipe._get_free_init_freq_filter((1, *shape[1:]), "cpu", "gaussian", 4, 0.25, 0.25)
    sqrt_a, sqrt_1ma = alpha.float().sqrt(), (1 - alpha.float()).sqrt()
    noise, ade_starts = first, [first]
    output = 0.5 * first + 0.1
    for _ in range(2):  # ADE with diffusers' normalisation, to isolate the noise bookkeeping
        noised = output * sqrt_a + noise * sqrt_1ma
        noise = pipe._apply_freq_filter(noised, torch.randn(shape, generator=z_rands), lpf)
        ade_starts.append(noise)
        output = 0.5 * noise + 0.1
    torch.testing.assert_close(ade_starts[1], starts[1])
    assert (ade_starts[2] - starts[2]).abs().max() > 0.01


# --- what an export writes --------------------------------------------------------------------------------------

def test_export_writes_loadable_comfyui_workflows(tmp_path):
    study_dir = tmp_path / "s"
    study_dir.mkdir()
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{study_dir / 'study.db'}", directions=["maximize"])
    context = {"targets": ["proxy/temporal_flickering"], "method": "enhance_a_video", "backbone": "ltx_video",
               "checkpoint": None, "num_frames": 9, "steps": 3, "fps": 24, "prompts": ["a cat"], "seeds": [0]}
    for key, value in context.items():
        study.set_user_attr(key, value)
    study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={"role": "baseline"}))
    study.add_trial(optuna.trial.create_trial(
        value=0.6, params={"weight_per_frame": 1.6},
        distributions={"weight_per_frame": optuna.distributions.FloatDistribution(0.02, 3.0)},
        user_attrs={"role": "search", "knobs": {"weight": 3.2, "start": 0.0, "end": 1.0, "layers": None}},
    ))
    (item,) = export_study(study_dir).alternatives  # not validated: exported, marked as such
    folder = item.files["readme"].parent
    workflow = json.loads((folder / "comfyui" / "LTXVEnhanceAVideoKJ.json").read_text())
    assert workflow["nodes"][0]["widgets_values"] == [3.2] and workflow["version"] == 0.4
    assert not (folder / "comfyui" / "LTXFetaEnhance.json").exists()
    values = json.loads((folder / "comfyui.json").read_text())
    assert [(n["node"], n["exported"]) for n in values["nodes"]] == [("LTXVEnhanceAVideoKJ", True), ("LTXFetaEnhance", False)]
    assert "comfyui/LTXVEnhanceAVideoKJ.json" in (folder / "README.md").read_text()
