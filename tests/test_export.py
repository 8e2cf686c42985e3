"""``vboost.export`` and presets, checked against a study built directly with Optuna (tests/study_builder.py): the
expected candidates, values and parameters come from the numbers written there, not from the code under test."""

from __future__ import annotations


import optuna
import pytest

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
            assert preset.status == item.status
            assert preset.held_out["proxy/temporal_flickering"]["low"] is not None
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


def test_a_study_written_by_vboost_0_1_still_exports(tmp_path, capsys):
    """The record as version 0.1 wrote it: no decision settings, no validation stage, constraints as a user attr list,
    the run context without size, guidance, dtype or latent frames; an even older one named the paper role
    ``paper_default``."""
    study_dir = tmp_path / "old"
    study_dir.mkdir()
    study = optuna.create_study(study_name="old", storage=f"sqlite:///{study_dir / 'study.db'}", directions=["maximize"])
    for key, value in {"targets": ["proxy/dynamic_degree_magnitude"], "method": "enhance_a_video", "backbone": "cogvideox",
                       "checkpoint": None, "num_frames": 9, "steps": 2, "fps": 8, "prompts": ["a cat"], "seeds": [0]}.items():
        study.set_user_attr(key, value)
    knobs = {"start": 0.0, "end": 1.0, "layers": None}
    for role, weight, value, feasible in (("baseline", None, 1.0, 0.0), ("paper_default", 3.4, 1.1, 0.0),
                                          ("search", 2.0, 1.3, -0.1), ("search", 5.0, 1.4, 0.2)):
        attrs = {"role": role, "scores": {"proxy/dynamic_degree_magnitude": value}, "constraints": [feasible],
                 "video_scores": {"p0_s0": {"proxy/dynamic_degree_magnitude": value}}}
        if weight is not None:
            attrs["knobs"] = {**knobs, "weight": weight}
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs=attrs))
    assert export_main([str(study_dir)]) == 0
    printed = capsys.readouterr().out
    assert "no recommendation" in printed and "validation stage has not completed" in printed
    # The infeasible trial 3 (constraint 0.2 > 0) is no candidate; trial 2 and the paper's setting (read as "paper").
    alternatives = sorted((study_dir / "export" / "alternatives").iterdir())
    assert [p.name for p in alternatives] == ["trial_0001", "trial_0002"]
    preset = Preset.load(alternatives[1] / "preset.yaml")
    assert preset.params["weight"] == 2.0 and preset.status == "unvalidated" and preset.latent_frames is None
