"""Presets that carry the tuned generation setting, and exported scripts that generate the tuned clips again.

A tiny pipeline is saved to a temporary directory and loaded back as a sweep with real weights loads it; the clip the
sweep would have generated (through the backbone adapter, the method attached) is compared bit for bit with what
the exported script writes, run on its own with only the pipeline directory.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from vboost.backbones import GenerationDefaults, load_backbone
from vboost.backbones.animatediff import AnimateDiffBackbone
from vboost.backbones.cogvideox import CogVideoXBackbone
from vboost.export import preset_for_trial
from vboost.export._snippets import diffusers_native_snippet, vboost_snippet
from vboost.methods import EnhanceAVideo, FreeInit
from vboost.methods.preset import Preset
from vboost.record import StudyRun
from vboost.secrets import SecretScrubber

ROOT = Path(__file__).resolve().parents[1]


def run_script(script: Path, *args: str) -> subprocess.CompletedProcess:
    """``python SCRIPT ARGS`` in a fresh process that imports this checkout's vboost.

    It runs torch on as many CPU threads as this process does: CPU kernels split their sums by thread, so another
    thread count rounds differently (the same holds between a sweep and a script on one machine).
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def sweep_clips(backbone_cls, pipe_dir: Path, method, setting: dict, prompts: list[str], seeds: list[int]) -> dict:
    """The clips a sweep with ``backbone.weights=pipe_dir`` generates: ``{"p<i>_s<seed>": uint8 frames}``."""
    backbone = load_backbone(backbone_cls.family, pipe_dir, defaults=GenerationDefaults(**setting),
                             torch_dtype=torch.float32, device="cpu")
    with method.attached(backbone.pipe):
        return {f"p{i}_s{seed}": backbone.generate(prompt, seed).frames for i, prompt in enumerate(prompts) for seed in seeds}


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


# --- the exported scripts --------------------------------------------------------------------------------------

def test_vboost_script_regenerates_the_tuned_clips(tmp_path):
    pipe_dir = tmp_path / "tiny_cogvideox"
    CogVideoXBackbone.tiny(seed=0).save_pretrained(pipe_dir)
    setting = {"num_frames": 9, "height": 32, "width": 48, "steps": 2, "guidance": 6.0, "fps": 8}
    prompts, seeds = ["a cat walks on the beach", "ocean waves"], [1]
    method = EnhanceAVideo(weight=4.0, start=0.0, end=0.5)
    preset = Preset.from_method(method, backbone="cogvideox", **setting, dtype="float32", latent_frames=3,
                                prompts=prompts, seeds=seeds)
    script = tmp_path / "diffusers_vboost.py"
    script.write_text(vboost_snippet(preset, method))
    run_script(script, str(pipe_dir), "--device", "cpu", "--out-dir", str(tmp_path / "clips"), "--save-frames")
    expected = sweep_clips(CogVideoXBackbone, pipe_dir, method, setting, prompts, seeds)
    for key, frames in expected.items():
        assert (tmp_path / "clips" / f"{key}.mp4").is_file()
        np.testing.assert_array_equal(np.load(tmp_path / "clips" / f"{key}.npy"), frames)
    # The method is what made the clip: without it the pipeline gives other frames.
    plain = load_backbone("cogvideox", pipe_dir, defaults=GenerationDefaults(**setting), torch_dtype=torch.float32)
    assert not np.array_equal(plain.generate(prompts[0], seeds[0]).frames, expected["p0_s1"])


@pytest.mark.slow
def test_free_init_scripts_regenerate_the_tuned_clips(tmp_path):
    pipe_dir = tmp_path / "tiny_animatediff"
    AnimateDiffBackbone.tiny(seed=0).save_pretrained(pipe_dir)
    setting = {"num_frames": 8, "height": 32, "width": 48, "steps": 2, "guidance": 7.5, "fps": 8}
    prompts, seeds = ["a cat walks"], [2]
    method = FreeInit(num_iters=2, method="gaussian", spatial_stop_frequency=0.3, temporal_stop_frequency=0.2)
    preset = Preset.from_method(method, backbone="animatediff", **setting, dtype="float32", prompts=prompts, seeds=seeds)
    expected = sweep_clips(AnimateDiffBackbone, pipe_dir, method, setting, prompts, seeds)["p0_s2"]

    native = tmp_path / "diffusers_native.py"
    native.write_text(diffusers_native_snippet(preset))
    assert not [line for line in native.read_text().splitlines() if line.startswith(("import vboost", "from vboost"))]
    run_script(native, str(pipe_dir), "--device", "cpu", "--out-dir", str(tmp_path / "native"), "--save-frames")
    np.testing.assert_array_equal(np.load(tmp_path / "native" / "p0_s2.npy"), expected)

    # The vboost script, in this process (the subprocess path is checked above with CogVideoX).
    script = tmp_path / "diffusers_vboost.py"
    script.write_text(vboost_snippet(preset, method))
    runpy.run_path(str(script))["main"]([str(pipe_dir), "--device", "cpu", "--out-dir", str(tmp_path / "vb"), "--save-frames"])
    np.testing.assert_array_equal(np.load(tmp_path / "vb" / "p0_s2.npy"), expected)

    assert diffusers_native_snippet(Preset("enhance_a_video", {"weight": 1.0}, backbone="cogvideox")) is None
    assert diffusers_native_snippet(Preset.from_method(method, backbone="animatediff_sparsectrl")) is None


def test_script_of_an_old_preset_asks_for_what_it_lacks(tmp_path, capsys):
    method = EnhanceAVideo(weight=3.4)
    script = tmp_path / "diffusers_vboost.py"
    script.write_text(vboost_snippet(Preset.from_method(method, backbone="cogvideox", num_frames=49, steps=50), method))
    main = runpy.run_path(str(script))["main"]
    with pytest.raises(SystemExit):
        main([str(tmp_path)])
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.endswith("the preset does not record these; pass --height --width --guidance --fps --dtype --prompt --seed")
    with pytest.raises(ValueError, match="backbone family"):
        vboost_snippet(Preset.from_method(method), method)
