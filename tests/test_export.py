"""``vboost.export`` and presets, checked against a study built directly with Optuna (tests/study_builder.py): the
expected candidates, values and parameters come from the numbers written there, not from the code under test."""

from __future__ import annotations

import json
import runpy
import sys

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from vboost.export import export_study
from vboost.export.__main__ import main as export_main
from vboost.methods.enhance_a_video import EnhanceAVideo
from vboost.methods.preset import ObjectiveValue, Preset
from vboost.secrets import mask_url

from study_builder import (
    CANDIDATES,
    NUM_FRAMES,
    OBJECTIVES,
    RECOMMENDED,
    SECRET,
    STEPS,
    STORAGE_WITH_PASSWORD,
    TRIALS,
    all_written_text,
    build_sweep_dir,
)


# --- presets ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_preset_round_trip_builds_an_equal_method(tmp_path, suffix):
    method = EnhanceAVideo(weight=2.5, start=0.1, end=0.9, layers=["transformer_blocks.1", 0])
    preset = Preset.from_method(
        method, backbone="cogvideox", num_frames=49, steps=50, study="s", trial=3,
        objectives=[ObjectiveValue("proxy/temporal_flickering", "maximize", 0.95, 0.9)],
    )
    path = tmp_path / f"preset{suffix}"
    (preset.to_yaml if suffix == ".yaml" else preset.to_json)(path)
    loaded = Preset.load(path)
    assert loaded == preset
    rebuilt = loaded.build()
    assert type(rebuilt) is EnhanceAVideo and rebuilt == method


def test_preset_errors_name_the_bad_value(tmp_path):
    with pytest.raises(KeyError, match="no_such_method"):
        Preset("no_such_method", {"weight": 1.0}).build()
    with pytest.raises(ValueError, match="strength"):
        Preset("enhance_a_video", {"weight": 1.0, "strength": 2}).build()
    with pytest.raises(ValueError, match="weight"):
        Preset("enhance_a_video", {"start": 0.1}).build()
    with pytest.raises(ValueError, match="start"):
        Preset("enhance_a_video", {"weight": 1.0, "start": 0.9, "end": 0.1}).build()
    with pytest.raises(ValueError, match="colour"):
        Preset.from_dict({"method": "enhance_a_video", "params": {}, "colour": "red"})
    with pytest.raises(ValueError, match="sideways"):
        ObjectiveValue("x", "sideways", 1.0)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        Preset.load(tmp_path / "missing.yaml")


# --- export ----------------------------------------------------------------------------------------------

def test_export_writes_the_recommended_setting_and_the_other_candidates_as_alternatives(tmp_path):
    study_dir = build_sweep_dir(tmp_path)
    export = export_study(study_dir)
    assert export.recommended.trial == RECOMMENDED and export.recommended.status == "recommended"
    assert [(a.trial, a.status) for a in export.alternatives] == [(n, "not recommended") for n in CANDIDATES if n != RECOMMENDED]
    baseline_values = TRIALS[0][2]
    for item, folder in [(export.recommended, study_dir / "export" / "recommended"),
                         *[(a, study_dir / "export" / "alternatives" / f"trial_{a.trial:04d}") for a in export.alternatives]]:
        for name in ("preset.yaml", "preset.json", "diffusers_vboost.py", "comfyui.json", "README.md"):
            assert (folder / name).is_file(), name
        assert not (folder / "diffusers_native.py").exists()  # diffusers has no Enhance-A-Video
        expected = EnhanceAVideo(weight=TRIALS[item.trial][1])
        for name in ("preset.yaml", "preset.json"):
            preset = Preset.load(folder / name)
            assert preset.build() == expected
            assert (preset.study, preset.trial, preset.backbone, preset.num_frames, preset.steps) == (
                study_dir.name, item.trial, "cogvideox", NUM_FRAMES, STEPS)
            assert [(o.name, o.direction, o.value, o.baseline) for o in preset.objectives] == [
                (n, d, TRIALS[item.trial][2][i], baseline_values[i]) for i, (n, d) in enumerate(OBJECTIVES)
            ]
        readme = (folder / "README.md").read_text()
        assert ("**RECOMMENDED.**" in readme) == (item.status == "recommended")
        assert ("**NOT RECOMMENDED.**" in readme) == (item.status == "not recommended")
    index = (study_dir / "export" / "README.md").read_text()
    assert "Use [`recommended/`]" in index and "alternatives/trial_0001/README.md" in index


def test_export_of_an_unvalidated_study_recommends_nothing(tmp_path):
    study_dir = build_sweep_dir(tmp_path, validated=False)
    export = export_study(study_dir)
    assert export.recommended is None and not (study_dir / "export" / "recommended").exists()
    assert [(a.trial, a.status) for a in export.alternatives] == [(n, "unvalidated") for n in CANDIDATES]
    assert "**No recommendation**" in (study_dir / "export" / "README.md").read_text()
    assert "**UNVALIDATED.**" in (study_dir / "export" / "alternatives" / "trial_0005" / "README.md").read_text()


def test_a_new_export_replaces_an_old_one(tmp_path):
    study_dir = build_sweep_dir(tmp_path, validated=False)
    export_study(study_dir)
    (study_dir / "export" / "trial_0003").mkdir()  # what an earlier version wrote
    export_study(study_dir)
    assert sorted(p.name for p in (study_dir / "export").iterdir()) == ["README.md", "alternatives"]


def test_comfyui_values_and_notes(tmp_path):
    study_dir = build_sweep_dir(tmp_path, backbone="wan")
    export_study(study_dir, out=tmp_path / "out")
    comfy = json.loads((tmp_path / "out" / "recommended" / "comfyui.json").read_text())
    nodes = {node["node"]: node for node in comfy["nodes"]}
    assert nodes["WanVideoEnhanceAVideo"]["inputs"] == {"weight": 4.0, "start_percent": 0.0, "end_percent": 1.0}
    assert any("DIFFERENT QUANTITY" in note for note in nodes["WanVideoEnhanceAVideo"]["notes"])
    assert nodes["WanVideoEnhanceAVideoKJ"]["inputs"] == {"weight": 4.0}
    # weight / F at the tuned length: 9 frames -> 3 latent frames with Wan's 4x temporal VAE.
    assert any(f"weight / F = {4.0 / 3:.4g}" in note for note in comfy["notes"])

    from vboost.export._comfyui import comfyui_values

    hunyuan = comfyui_values(Preset("enhance_a_video", {"weight": 2.0, "start": 0.2, "end": 0.8, "layers": ["single_transformer_blocks.*"]},
                                    backbone="hunyuan_video", num_frames=33))
    assert hunyuan["nodes"][0]["inputs"] == {"weight": 2.0, "single_blocks": True, "double_blocks": False, "start_percent": 0.2, "end_percent": 0.8}
    ltx = comfyui_values(Preset("enhance_a_video", {"weight": 4.0, "start": 0.0, "end": 0.5}, backbone="ltx_video"))
    assert any("before to_out" in note for note in ltx["nodes"][0]["notes"])
    assert any("no step window" in note for note in ltx["nodes"][0]["notes"])


def test_no_password_in_any_exported_file(tmp_path, capsys):
    study_dir = build_sweep_dir(tmp_path)
    assert export_main([str(study_dir), "--out", str(tmp_path / "out")]) == 0
    text = all_written_text(tmp_path / "out")
    assert "README.md" in {p.name for p in (tmp_path / "out").iterdir()}
    assert SECRET not in text and SECRET not in capsys.readouterr().out
    assert mask_url(STORAGE_WITH_PASSWORD) == "postgresql://vboost:***@db.example.org:5432/sweeps"


def test_export_errors_are_one_line_and_masked(tmp_path, capsys):
    assert export_main([str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert export_main(["some_study", "--storage", f"sqlite:///{tmp_path / 'empty.db'}"]) == 2
    assert "some_study" in capsys.readouterr().err


# --- the snippet on a real (tiny) pipeline ---------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_cogvideox_dir(tmp_path_factory):
    from vboost.backbones.cogvideox import CogVideoXBackbone

    path = tmp_path_factory.mktemp("tiny_cogvideox")
    CogVideoXBackbone.tiny(seed=0).save_pretrained(path)
    return path


def test_diffusers_snippet_runs_and_applies_the_setting(tmp_path, tiny_cogvideox_dir, monkeypatch):
    study_dir = build_sweep_dir(tmp_path)
    export_study(study_dir)
    snippet = study_dir / "export" / "recommended" / "diffusers_vboost.py"

    # As a script: loads the local pipeline, generates, writes an mp4.
    out_mp4 = tmp_path / "snippet.mp4"
    argv = [str(snippet), str(tiny_cogvideox_dir), "--prompt", "a cat", "--steps", "2", "--num-frames", "9",
            "--height", "32", "--width", "32", "--out", str(out_mp4)]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(snippet), run_name="__main__")
    assert len(imageio.mimread(out_mp4)) == NUM_FRAMES

    # Its frames equal those of the same pipeline with EnhanceAVideo(weight=4.0) attached by hand, and differ without it.
    module = runpy.run_path(str(snippet))
    pipe = module["load_pipeline"](str(tiny_cogvideox_dir), "float32", "cpu")
    ours = module["generate"](pipe, "a cat", seed=3, num_frames=9, steps=2, height=32, width=32)

    def by_hand(method):
        generator = torch.Generator("cpu").manual_seed(3)
        kwargs = dict(prompt="a cat", num_frames=9, num_inference_steps=2, height=32, width=32, generator=generator, output_type="np")
        if method is None:
            return pipe(**kwargs).frames[0]
        with method.attached(pipe):
            return pipe(**kwargs).frames[0]

    np.testing.assert_array_equal(ours, by_hand(EnhanceAVideo(weight=4.0)))
    assert np.abs(ours - by_hand(None)).max() > 1e-4


@pytest.mark.slow
def test_free_init_native_snippet_matches_the_vboost_one(tmp_path):
    from vboost.backbones.animatediff import AnimateDiffBackbone
    from vboost.export._snippets import diffusers_native_snippet, vboost_snippet
    from vboost.methods.free_init import FreeInit

    pipe_dir = tmp_path / "tiny_animatediff"
    AnimateDiffBackbone.tiny(seed=0).save_pretrained(pipe_dir)
    method = FreeInit(num_iters=2, method="gaussian", spatial_stop_frequency=0.3, temporal_stop_frequency=0.2)
    preset = Preset.from_method(method, backbone="animatediff", num_frames=4, steps=2)
    frames = {}
    for kind, text in (("native", diffusers_native_snippet(preset)), ("vboost", vboost_snippet(preset, method))):
        assert ("enable_free_init" in text) == (kind == "native")
        path = tmp_path / f"{kind}.py"
        path.write_text(text)
        module = runpy.run_path(str(path))
        pipe = module["load_pipeline"](str(pipe_dir), "float32", "cpu")
        frames[kind] = module["generate"](pipe, "a cat", seed=1, height=32, width=32)
        assert not getattr(pipe, "_free_init_num_iters", None)  # switched off again after the call
    np.testing.assert_array_equal(frames["native"], frames["vboost"])
    assert diffusers_native_snippet(Preset("enhance_a_video", {"weight": 1.0})) is None
