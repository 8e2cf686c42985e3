"""End-to-end: the real ``python -m vboost.sweep`` on tiny backbones, in temporary directories (in this process, see
``in_process.py``; Ctrl-C in a process of its own)."""

import gc
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import imageio.v3 as iio
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from in_process import run_sweep
from vboost.methods.preset import Preset

REPO = Path(__file__).resolve().parents[1]
PROMPT = "prompts.prompts=[a cat walks on the beach]"
# The smallest run that still exercises everything: one prompt, one seed, two denoising steps, 9 frames at 32x32,
# and two held-out clips per validation trial.
TINY = ["backbone.steps=2", "backbone.num_frames=9", "backbone.height=32", "backbone.width=32", PROMPT,
        "study.heartbeat_interval=null", "validation.prompts=[a dog runs on the beach]", "validation.seeds=[1,2]"]
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
STUDY = "tiny_cogvideox-enhance_a_video-motion_vs_consistency"
LATENT_FRAMES = (9 - 1) // 4 + 1  # 9 frames, CogVideoX's 4x temporal VAE


def sweep(cwd: Path, *overrides: str, multirun: bool = False, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    args = [*(["-m"] if multirun else []), f"output_dir={cwd / 'outputs'}", *TINY, *overrides]
    return run_sweep(args, cwd, env=env, pythonpath=[cwd])


def load(cwd: Path, name: str = STUDY) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{cwd / 'outputs' / name / 'study.db'}")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """One three-trial study (baseline, paper, one searched trial) that several tests read."""
    cwd = tmp_path_factory.mktemp("base")
    result = sweep(cwd, "study.n_trials=3")
    assert result.returncode == 0, result.stderr
    return cwd, result


def test_study_runs_references_first_then_searches_then_validates(base):
    cwd, result = base
    trials = load(cwd).get_trials()
    search = [t for t in trials if t.user_attrs["role"] != "validation"]
    assert [t.user_attrs["role"] for t in search] == ["baseline", "paper", "search"]
    baseline, paper, searched = search
    assert baseline.state == TrialState.COMPLETE and baseline.params == {} and "knobs" not in baseline.user_attrs
    assert paper.state == TrialState.COMPLETE
    # The paper trial runs Enhance-A-Video's published CogVideoX weight, searched as weight / F.
    assert paper.user_attrs["knobs"]["weight"] == 3.4
    assert paper.params == {"weight_per_frame": pytest.approx(3.4 / LATENT_FRAMES)}
    assert searched.state in (TrialState.COMPLETE, TrialState.PRUNED)
    sample = searched.params["weight_per_frame"]
    assert 0.02 <= sample <= 1.5 and searched.user_attrs["knobs"]["weight"] == pytest.approx(sample * LATENT_FRAMES)
    # Two objectives, as configured, never NaN.
    assert len(baseline.values) == 2 and all(v == v for t in (baseline, paper) for v in t.values)
    # The validation stage comes after every search trial: the baseline first, the paper's setting always.
    validation = trials[3:]
    assert [t.user_attrs["role"] for t in validation] == ["validation"] * len(validation)
    assert validation[0].user_attrs["candidate"] == baseline.number and "knobs" not in validation[0].user_attrs
    assert paper.number in [t.user_attrs["candidate"] for t in validation]
    assert min(t.datetime_start for t in validation) > max(t.datetime_complete for t in search)
    for t in validation:
        assert t.state == TrialState.COMPLETE and set(t.user_attrs["video_scores"]) == {"p0_s1", "p0_s2"}
    assert str(cwd / "outputs" / STUDY) in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("recommendation: ")
    # The cost, printed before anything loads (3 trials x 1 clip; the baseline, the paper's setting and 3 candidates
    # x 2 held-out clips), then the time left once the baseline has run.
    assert f"{STUDY}: plan: 3 search trials x 1 clips + validation: up to 5 trials x 2 held-out clips = up to 13 clips" in result.stdout
    assert re.search(rf"{STUDY}: 1 clips took [0-9.]+ s: about .* for the 12 left", result.stdout)


def test_a_dry_run_prints_the_plan_and_what_is_left_and_loads_nothing(base, tmp_path):
    cwd, _ = base
    fresh = sweep(tmp_path, "dry_run=true", "study.n_trials=4")
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.strip().splitlines()[-1] == (
        f"{STUDY}: plan: 4 search trials x 1 clips + validation: up to 5 trials x 2 held-out clips = up to 14 clips"
    )
    assert not list(tmp_path.rglob("study.db")) and "trial " not in fresh.stdout
    # On the base study (its trials all done): what a bigger study would still need.
    done = load(cwd).get_trials()
    resumed = sweep(cwd, "dry_run=true", "study.n_trials=5")
    assert resumed.returncode == 0 and len(load(cwd).get_trials()) == len(done)
    made = sum(len(t.user_attrs.get("video_scores", {})) for t in done if t.state.name in ("COMPLETE", "PRUNED"))
    assert resumed.stdout.strip().endswith(f"= up to 15 clips, {15 - made} left")


def test_results_directory_holds_videos_table_and_the_decision(base):
    cwd, _ = base
    out = cwd / "outputs" / STUDY
    frames = iio.imread(out / "videos" / "trial_0000" / "p0_s0.mp4")
    assert frames.shape == (9, 32, 32, 3)  # the clips TINY asks for
    table = pd.read_csv(out / "trials.csv")
    trials = load(cwd).get_trials()
    assert list(table["number"]) == [t.number for t in trials]
    paper = trials[1]
    base_value = trials[0].values[0]
    expected = (paper.values[0] - base_value) / abs(base_value)
    assert table.loc[1, "dynamic_degree_magnitude_vs_baseline"] == pytest.approx(expected)
    summary = json.loads((out / "report" / "summary.json").read_text())
    presets = {Preset.load(p).trial for p in (out / "export").glob("*/preset.yaml")}
    presets |= {Preset.load(p).trial for p in (out / "export").glob("alternatives/*/preset.yaml")}
    # Every validated candidate is exported: the recommended one under recommended/, the others as alternatives.
    assert presets == {c["trial"] for c in summary["candidates"]}
    recommended = summary["recommendation"]
    assert (out / "export" / "recommended").is_dir() == (recommended is not None)
    assert list(table.loc[table["recommended"], "number"]) == ([] if recommended is None else [recommended["trial"]])
    for path in (out / "export").rglob("preset.yaml"):
        preset = Preset.load(path)
        assert preset.params == {**preset.params, **trials[preset.trial].user_attrs["knobs"]}
        assert preset.build().params() == preset.params


def test_preset_round_trip_is_evaluated_as_an_enqueued_trial(base, tmp_path):
    cwd, _ = base
    export = cwd / "outputs" / STUDY / "export"
    presets = sorted(export.glob("recommended/preset.yaml")) + sorted(export.glob("alternatives/trial_*/preset.yaml"))
    assert presets, "the base study exports at least the paper's setting"
    chosen = [Preset.load(p) for p in presets]
    # The whole export directory goes back in: each of its presets becomes an enqueued trial.
    n_trials = 1 + len(presets)
    result = sweep(tmp_path, f"presets=[{export}]", f"study.n_trials={n_trials}", "~method.paper_defaults.cogvideox",
                   "validation.top_k=0")
    assert result.returncode == 0, result.stderr
    trials = load(tmp_path).get_trials()
    assert [t.user_attrs["role"] for t in trials] == ["baseline"] + ["preset"] * len(presets)
    originals = load(cwd).get_trials()
    for trial, preset in zip(trials[1:], chosen):
        assert trial.user_attrs["knobs"] == preset.params
        # Same setting, same clips: the scores of the original trial are reproduced.
        assert trial.values == pytest.approx(originals[preset.trial].values)


def test_resume_adds_trials_and_redoes_none(base):
    cwd, _ = base
    before = load(cwd).get_trials()
    result = sweep(cwd, "study.n_trials=4")
    assert result.returncode == 0, result.stderr
    after = load(cwd).get_trials()
    search = [t for t in after if t.user_attrs["role"] != "validation" and not t.user_attrs.get("surplus")]
    assert len(search) == 4
    assert [(t.number, t.datetime_start, t.values) for t in after[: len(before)]] == [
        (t.number, t.datetime_start, t.values) for t in before
    ]
    assert [t.user_attrs["role"] for t in after].count("baseline") == 1
    # The grown search stage is validated again: finished validation trials of candidates still chosen are reused.
    validated = [t for t in after if t.user_attrs["role"] == "validation" and t.state == TrialState.COMPLETE]
    keys = [t.user_attrs["reference"] for t in validated]
    assert len(keys) == len(set(keys))
    # A full study resumes to nothing: no new trial, no model loaded.
    again = sweep(cwd, "study.n_trials=4")
    assert again.returncode == 0 and len(load(cwd).get_trials()) == len(after)
    assert "trial " not in again.stdout.split("study ")[0]


def test_multirun_makes_one_study_per_compatible_pair(tmp_path):
    result = sweep(
        tmp_path, "backbone=tiny_cogvideox,tiny_wan", "method=enhance_a_video,bytheway", "study.n_trials=1", multirun=True
    )
    assert result.returncode == 0, result.stderr
    studies = sorted(p.parent.name for p in (tmp_path / "outputs").glob("*/study.db"))
    assert studies == ["tiny_cogvideox-enhance_a_video-motion_vs_consistency", "tiny_wan-enhance_a_video-motion_vs_consistency"]
    # ByTheWay needs a U-Net with temporal attention: both DiT pairs are reported and skipped.
    assert "skipped tiny_cogvideox-bytheway" in result.stdout and "skipped tiny_wan-bytheway" in result.stdout


def test_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path):
    # A user method registered through `imports`, failing whenever its knob says so.
    (tmp_path / "flaky_method.py").write_text(textwrap.dedent("""
        import dataclasses
        from vboost.methods import METHODS, EnhanceAVideo

        @dataclasses.dataclass
        class FlakyEnhanceAVideo(EnhanceAVideo):
            name = "flaky_enhance_a_video"
            fail: bool = False

            def _attach(self, target, denoiser, handle):
                if self.fail:
                    raise RuntimeError("injected failure")
                super()._attach(target, denoiser, handle)

        METHODS[FlakyEnhanceAVideo.name] = FlakyEnhanceAVideo
    """))
    result = sweep(tmp_path, "imports=[flaky_method]", "method.name=flaky_enhance_a_video", "+method.paper_defaults.cogvideox.fail=true", "study.n_trials=3")
    assert result.returncode == 0, result.stderr
    trials = load(tmp_path).get_trials()
    assert [t.state for t in trials[:2]] == [TrialState.COMPLETE, TrialState.FAIL]
    assert "injected failure" in trials[1].user_attrs["fail_reason"]
    assert trials[1].values is None
    assert trials[2].state in (TrialState.COMPLETE, TrialState.PRUNED)


def test_out_of_memory_is_recorded_its_memory_freed_and_the_next_trial_runs(tmp_path):
    # The GPU path's out-of-memory error, raised on the CPU by a user method that first takes a large tensor (as a
    # failing forward pass would). The next trial's method reports whether that tensor is still alive.
    (tmp_path / "oom_method.py").write_text(textwrap.dedent("""
        import dataclasses, gc, os, weakref
        import torch
        from vboost.methods import METHODS, EnhanceAVideo

        gc.disable()  # no automatic collection: only what the sweep does after the error may free the tensor
        TAKEN = []

        @dataclasses.dataclass
        class HungryEnhanceAVideo(EnhanceAVideo):
            name = "hungry_enhance_a_video"
            oom: bool = False

            def _attach(self, target, denoiser, handle):
                if self.oom:
                    activations = torch.ones(25_000_000)  # 100 MB, held by this frame when the error leaves it
                    TAKEN.append(weakref.ref(activations))
                    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
                with open(os.environ["HUNGRY_REPORT"], "a") as report:
                    report.write(f"{sum(ref() is not None for ref in TAKEN)} of {len(TAKEN)} alive\\n")
                super()._attach(target, denoiser, handle)

        METHODS[HungryEnhanceAVideo.name] = HungryEnhanceAVideo
    """))
    report = tmp_path / "report.txt"
    try:
        result = sweep(tmp_path, "imports=[oom_method]", "method.name=hungry_enhance_a_video",
                       "+method.paper_defaults.cogvideox.oom=true", "study.n_trials=3", "validation.top_k=0",
                       env={"HUNGRY_REPORT": str(report)})
    finally:
        gc.enable()  # the method's module turned automatic collection off in this process
    assert result.returncode == 0, result.stderr
    trials = load(tmp_path).get_trials()
    assert [t.state for t in trials[:2]] == [TrialState.COMPLETE, TrialState.FAIL]
    assert trials[1].user_attrs["fail_reason"].startswith("out of memory: CUDA out of memory")
    assert trials[2].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert report.read_text().splitlines()[0] == "0 of 1 alive"


@pytest.mark.slow
def test_ctrl_c_fails_the_running_trial_and_the_next_run_resumes(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "vboost.sweep", f"output_dir={tmp_path / 'outputs'}", *TINY, "study.n_trials=3",
           "validation.top_k=0"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("trial   0"):  # the baseline is done: interrupt the paper trial once it runs
            while not load(tmp_path).get_trials(states=(TrialState.RUNNING,)):
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            break
    proc.communicate(timeout=300)
    assert proc.returncode == 130
    interrupted = load(tmp_path).get_trials(states=COUNTED)
    assert not load(tmp_path).get_trials(states=(TrialState.RUNNING,)), "no trial is left running"
    failed = [t for t in interrupted if t.state == TrialState.FAIL]
    assert len(failed) == 1 and "KeyboardInterrupt" in failed[0].user_attrs["fail_reason"]
    result = sweep(tmp_path, f"study.n_trials={len(interrupted) + 1}", "validation.top_k=0")
    assert result.returncode == 0, result.stderr
    resumed = load(tmp_path).get_trials(states=COUNTED)
    # One more trial; nothing that was there is redone or changed.
    assert len(resumed) == len(interrupted) + 1 and resumed[-1].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert [(t.number, t.state, t.datetime_start) for t in resumed[:-1]] == [(t.number, t.state, t.datetime_start) for t in interrupted]


@pytest.mark.slow
def test_single_objective_with_a_constraint_against_the_baseline(tmp_path):
    result = sweep(tmp_path, "objective=motion_within_consistency", "study.n_trials=3")
    assert result.returncode == 0, result.stderr
    study = load(tmp_path, "tiny_cogvideox-enhance_a_video-motion_within_consistency")
    assert len(study.directions) == 1
    trials = study.get_trials()
    # Each stage's constraint is relative to its own baseline: the search's, or the held-out baseline trial.
    record = "proxy/subject_consistency"
    search_baseline = trials[0]
    held_out_baseline = next(t for t in trials if t.user_attrs["role"] == "validation" and t.user_attrs["candidate"] == 0)
    for t in trials:
        if t.state == TrialState.COMPLETE:
            baseline = held_out_baseline if t.user_attrs["role"] == "validation" else search_baseline
            base = baseline.user_attrs["scores"][record]
            value = t.user_attrs["scores"][record]
            assert t.user_attrs["constraints"] == pytest.approx([0.99 * base - value])
            assert t.constraints == pytest.approx({record: 0.99 * base - value})  # what Optuna's samplers read
    table = pd.read_csv(tmp_path / "outputs" / study.study_name / "trials.csv")
    assert bool(table.loc[0, "feasible"])


def test_real_checkpoint_config_loads_weights_from_a_local_directory(tmp_path):
    """The path a user with real weights takes: a real backbone config, ``backbone.weights`` a saved pipeline."""
    from vboost.backbones import CogVideoXBackbone

    import objectives

    from vboost.backbones import GenerationDefaults

    weights = tmp_path / "CogVideoX-2b"
    CogVideoXBackbone.tiny().save_pretrained(weights)
    result = sweep(
        tmp_path, "backbone=cogvideox_2b", f"backbone.weights={weights}", "backbone.dtype=float32",
        "backbone.num_frames=9", "backbone.height=32", "backbone.width=32", "study.n_trials=2", "validation.top_k=0",
    )
    assert result.returncode == 0, result.stderr
    study = load(tmp_path, "cogvideox_2b-enhance_a_video-motion_vs_consistency")
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 2
    assert study.user_attrs["checkpoint"] == str(weights)
    # The saved random model reloads to the same weights, so its baseline clip is the tiny model's own: generated here
    # from the model built in code, it scores exactly what the sweep recorded for the clip it loaded from disk.
    tiny = CogVideoXBackbone.tiny()
    tiny.defaults = GenerationDefaults(num_frames=9, height=32, width=32, steps=2, guidance=6.0, fps=8)
    clip = tiny.generate("a cat walks on the beach", 0)
    frames = iio.imread(tmp_path / "outputs" / "cogvideox_2b-enhance_a_video-motion_vs_consistency" / "videos" / "trial_0000" / "p0_s0.mp4")
    assert frames.shape == clip.frames.shape == (9, 32, 32, 3)
    scorer = objectives.Scorer(["dynamic_degree", "subject_consistency"])
    expected = {k: v for k, v in scorer.score_video(clip.frames, clip.fps).items()}
    assert study.trials[0].user_attrs["video_scores"]["p0_s0"] == expected
