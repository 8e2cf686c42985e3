"""Exporting guiders, FreeU and combinations: the plain-diffusers scripts (a modular pipeline loading the guider's
``guider_config.json``; AnimateDiff with ``enable_freeu``) regenerate the sweep's clips bit for bit, a combination's
export carries both methods, and the ComfyUI skip-layer window selects the steps diffusers' window selects."""

from __future__ import annotations

import json
import runpy

import numpy as np
import optuna
import pytest
import torch

from vboost.backbones import GenerationDefaults, get_backbone_class, load_backbone
from vboost.export import export_study
from vboost.export._snippets import diffusers_native, vboost_snippet
from vboost.methods import ClassifierFreeZeroStarGuidance, Combined, EnhanceAVideo, FreeU, SkipLayerGuidance
from vboost.methods.preset import Preset

SETTING = {"num_frames": 9, "height": 32, "width": 32, "steps": 3, "guidance": 5.0, "fps": 16}


def sweep_frames(family: str, pipe_dir, method, setting: dict, prompt: str, seed: int) -> np.ndarray:
    """The clip a sweep with ``backbone.weights=pipe_dir`` generates with ``method`` attached."""
    backbone = load_backbone(family, pipe_dir, defaults=GenerationDefaults(**setting), torch_dtype=torch.float32)
    with method.attached(backbone.pipe):
        return backbone.generate(prompt, seed).frames


def write_native(tmp_path, preset, method):
    script, files = diffusers_native(preset, method)
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    path = tmp_path / "diffusers_native.py"
    path.write_text(script)
    assert not [line for line in script.splitlines() if line.startswith(("import vboost", "from vboost"))]
    return path


SLG = SkipLayerGuidance(layers=1, skip_layer_guidance_scale=2.0, skip_layer_guidance_start=0.0, skip_layer_guidance_stop=1.0)


@pytest.mark.parametrize("family,method,steps", [
    ("wan_modular", SLG, 3),
    ("wan_modular", ClassifierFreeZeroStarGuidance(zero_init_steps=1, guidance_scale=6.0), 3),
    ("wan22_modular", SLG, 4),  # both experts' guiders, each keeping its own untouched scale
], ids=["wan-slg", "wan-cfg_zero_star", "wan22-slg"])
def test_modular_script_loads_the_guider_config_and_regenerates_the_clip(tmp_path, family, method, steps):
    pipe_dir = tmp_path / "pipe"
    get_backbone_class(family).tiny(seed=0).save_pretrained(pipe_dir)
    setting = {**SETTING, "steps": steps}
    preset = Preset.from_method(method, backbone=family, **setting, dtype="float32", prompts=["a cat"], seeds=[4])
    native = write_native(tmp_path / "export", preset, method)
    assert (tmp_path / "export" / "guider" / "guider_config.json").is_file()
    runpy.run_path(str(native))["main"]([str(pipe_dir), "--device", "cpu", "--out-dir", str(tmp_path / "n"), "--save-frames"])
    expected = sweep_frames(family, pipe_dir, method, setting, "a cat", 4)
    np.testing.assert_array_equal(np.load(tmp_path / "n" / "p0_s4.npy"), expected)
    vboost = tmp_path / "diffusers_vboost.py"
    vboost.write_text(vboost_snippet(preset, method))
    runpy.run_path(str(vboost))["main"]([str(pipe_dir), "--device", "cpu", "--out-dir", str(tmp_path / "v"), "--save-frames"])
    np.testing.assert_array_equal(np.load(tmp_path / "v" / "p0_s4.npy"), expected)


def test_freeu_script_regenerates_the_clip(tmp_path):
    pipe_dir = tmp_path / "pipe"
    get_backbone_class("animatediff").tiny(seed=0).save_pretrained(pipe_dir)
    setting = {"num_frames": 8, "height": 32, "width": 32, "steps": 2, "guidance": 7.5, "fps": 8}
    method = FreeU(b1=1.5, b2=1.6, s1=0.9, s2=0.2)
    preset = Preset.from_method(method, backbone="animatediff", **setting, dtype="float32", prompts=["a cat"], seeds=[1])
    native = write_native(tmp_path, preset, method)
    assert "pipe.enable_freeu(s1=0.9, s2=0.2, b1=1.5, b2=1.6)" in native.read_text()
    runpy.run_path(str(native))["main"]([str(pipe_dir), "--device", "cpu", "--out-dir", str(tmp_path / "n"), "--save-frames"])
    expected = sweep_frames("animatediff", pipe_dir, method, setting, "a cat", 1)
    np.testing.assert_array_equal(np.load(tmp_path / "n" / "p0_s1.npy"), expected)


def test_a_combination_exports_both_methods(tmp_path):
    combo = Combined({"eav": EnhanceAVideo(weight=3.0), "slg": SkipLayerGuidance(layers=0, skip_layer_guidance_stop=1.0)})
    study_dir = tmp_path / "s"
    study_dir.mkdir()
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{study_dir / 'study.db'}", directions=["maximize"])
    context = {"targets": ["proxy/temporal_flickering"], "method": "combined", "backbone": "wan_modular",
               "checkpoint": None, **SETTING, "dtype": "float32", "latent_frames": 3, "prompts": ["a cat"], "seeds": [0]}
    for key, value in context.items():
        study.set_user_attr(key, value)
    study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={"role": "baseline"}))
    study.add_trial(optuna.trial.create_trial(
        value=0.6, params={"slg.layers": 0}, distributions={"slg.layers": optuna.distributions.IntDistribution(0, 1)},
        user_attrs={"role": "search", "knobs": combo.params()},
    ))
    (item,) = export_study(study_dir).alternatives
    folder = item.files["readme"].parent
    assert Preset.load(folder / "preset.yaml").build() == combo
    script = (folder / "diffusers_vboost.py").read_text()
    assert "Combined({'eav': EnhanceAVideo(" in script and "'slg': SkipLayerGuidance(" in script
    assert not (folder / "diffusers_native.py").exists()  # Enhance-A-Video has no plain-diffusers form
    nodes = [n["node"] for n in json.loads((folder / "comfyui.json").read_text())["nodes"]]
    assert nodes == ["WanVideoEnhanceAVideoKJ", "WanVideoEnhanceAVideo", "SkipLayerGuidanceDiT", "SkipLayerGuidanceWanVideo"]


def _comfy_sigma(percent: float, shift: float) -> float:
    """ComfyUI's ``ModelSamplingDiscreteFlow.percent_to_sigma``."""
    if percent <= 0.0:
        return 1.0
    if percent >= 1.0:
        return 0.0
    t = 1.0 - percent
    return shift * t / (1 + (shift - 1) * t)


@pytest.mark.parametrize("steps", [3, 20, 30, 40, 50, 77])
def test_comfyui_window_selects_diffusers_steps(steps):
    shift = 5.0
    for start, stop in [(0.0, 1.0), (0.01, 0.2), (0.1, 0.9), (0.05, 0.5), (0.33, 0.67)]:
        slg = SkipLayerGuidance(layers=2, skip_layer_guidance_start=start, skip_layer_guidance_stop=stop)
        export = slg.comfyui(Preset.from_method(slg, backbone="wan_modular", steps=steps)).nodes
        diffusers_steps = {i for i in range(steps) if int(start * steps) < i < int(stop * steps)}
        if not diffusers_steps:
            assert export[0].values is None
            continue
        values = export[0].values
        # Step i sits at ComfyUI's sigma of percent i / N on a flow schedule with the same shift.
        high, low = _comfy_sigma(values["start_percent"], shift), _comfy_sigma(values["end_percent"], shift)
        comfy_steps = {i for i in range(steps) if low < _comfy_sigma(i / steps, shift) <= high}
        assert comfy_steps == diffusers_steps, (start, stop)
        assert values["double_layers"] == "2" and values["single_layers"] == "" and values["rescaling_scale"] == 0.0


def test_comfyui_refuses_what_the_nodes_cannot_take():
    for slg, reason in [(SkipLayerGuidance(layers=1, skip="feed_forward"), "skips whole blocks"),
                        (SkipLayerGuidance(layers=1, guidance_rescale=0.5), "rescaling")]:
        dit, kj = slg.comfyui(Preset.from_method(slg, backbone="wan_modular", steps=50)).nodes
        assert dit.values is None and reason in dit.notes[-1] and kj.values is None
    slg = SkipLayerGuidance(layers=1, skip_layer_guidance_scale=2.04)
    (dit, _) = slg.comfyui(Preset.from_method(slg, backbone="wan_modular", steps=50)).nodes
    assert dit.values["scale"] == 2.0 and any("rounded" in note for note in dit.notes)
    assert slg.comfyui(Preset.from_method(slg, backbone="ltx_modular", steps=50)).nodes == []
    zero = ClassifierFreeZeroStarGuidance(zero_init_steps=3)
    (node,) = zero.comfyui(Preset.from_method(zero, backbone="ltx_modular")).nodes
    # diffusers zeroes steps i < 3; the node zeroes i <= zero_init_steps.
    assert node.values == {"use_zero_init": True, "zero_init_steps": 2}
    assert ClassifierFreeZeroStarGuidance(zero_init_steps=0).comfyui(Preset("x", {})).nodes[0].values == {
        "use_zero_init": False, "zero_init_steps": 0}
    windowed = ClassifierFreeZeroStarGuidance(stop=0.5)
    assert windowed.comfyui(Preset("x", {})).nodes[0].values is None
