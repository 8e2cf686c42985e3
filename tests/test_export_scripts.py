"""Presets that carry the generation setting they were tuned at."""

from __future__ import annotations

import json

import optuna
import pytest

from vboost.export import SecretScrubber, StudyRun, preset_for_trial
from vboost.methods import EnhanceAVideo
from vboost.methods.preset import Preset

# --- presets ----------------------------------------------------------------------------------------------------

def test_preset_keeps_the_generation_setting_and_reads_version_1(tmp_path):
    preset = Preset.from_method(
        EnhanceAVideo(weight=2.5), searched={"weight_per_frame": 0.5}, backbone="cogvideox", checkpoint="/m/cog",
        num_frames=9, height=32, width=48, steps=2, guidance=6.0, fps=8, dtype="float32", latent_frames=5,
        prompts=["a cat"], seeds=[0, 3], study="s", trial=1,
    )
    for write in (preset.to_yaml, preset.to_json):
        path = tmp_path / f"preset.{'yaml' if write == preset.to_yaml else 'json'}"
        write(path)
        assert Preset.load(path) == preset
    assert preset.format_version == 2
    # A version 1 file (what earlier exports wrote): no setting beyond backbone, frames and steps.
    v1 = {"method": "enhance_a_video", "params": {"weight": 3.4}, "backbone": "cogvideox", "checkpoint": None,
          "num_frames": 49, "steps": 50, "objectives": [], "study": "old", "trial": 4, "format_version": 1}
    (tmp_path / "v1.json").write_text(json.dumps(v1))
    old = Preset.load(tmp_path / "v1.json")
    assert (old.num_frames, old.steps, old.format_version) == (49, 50, 1)
    assert (old.height, old.width, old.guidance, old.fps, old.dtype, old.latent_frames, old.prompts, old.searched) == (None,) * 8
    assert old.build() == EnhanceAVideo(weight=3.4)
    with pytest.raises(ValueError, match="format_version 3"):
        Preset.from_dict({**v1, "format_version": 3})
    with pytest.raises(ValueError, match="height must be a positive int; got 0"):
        Preset("enhance_a_video", {"weight": 1.0}, height=0)
    with pytest.raises(ValueError, match=r"seeds must be a list of ints; got \['a'\]"):
        Preset("enhance_a_video", {"weight": 1.0}, seeds=["a"])


def test_preset_for_trial_copies_the_recorded_setting():
    study = optuna.create_study(study_name="s", directions=["maximize"])
    study.add_trial(optuna.trial.create_trial(
        value=0.5, params={"weight_per_frame": 0.25},
        distributions={"weight_per_frame": optuna.distributions.FloatDistribution(0.02, 1.5, log=True)},
        user_attrs={"role": "search", "knobs": {"weight": 2.75, "start": 0.0, "end": 1.0, "layers": None}},
    ))
    context = {"method": "enhance_a_video", "backbone": "cogvideox", "checkpoint": None, "num_frames": 81,
               "height": 768, "width": 1360, "steps": 50, "guidance": 6.0, "fps": 16, "dtype": "bfloat16",
               "latent_frames": 11, "prompts": ["a cat", "a dog"], "seeds": [0, 1]}
    run = StudyRun(study=study, directory=None, storage="memory", scrubber=SecretScrubber([]), context=context)
    preset = preset_for_trial(run, study.trials[0])
    assert preset.params == {"weight": 2.75, "start": 0.0, "end": 1.0, "layers": None}
    assert preset.searched == {"weight_per_frame": 0.25}
    assert {key: getattr(preset, key) for key in context if key != "method"} == {k: v for k, v in context.items() if k != "method"}
