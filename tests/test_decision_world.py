"""The recommendation in a synthetic world with a known truth (``tests/synthetic_world``), through the real CLI (run in
this process, ``in_process.py``) and vboost's public extension points only: ``imports=`` registers the world's backbone
and method, ``hydra.searchpath`` adds their configs.

The expected effects are recomputed here from the world's own formulas (its truth), not from vboost's code.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
WORLD = Path(__file__).resolve().parent / "synthetic_world"
sys.path.insert(0, str(WORLD))
import synthetic_world  # noqa: E402  -- the world's truth, for the independent expectations
from in_process import run_sweep  # noqa: E402

RECORD = "exact/temporal_flickering"
PROMPTS = yaml.safe_load((WORLD / "conf" / "prompts" / "synthetic.yaml").read_text())
KNOB = yaml.safe_load((WORLD / "conf" / "method" / "synthetic_knob.yaml").read_text())["params"]
PIXELS = 16 * 16 * 3  # conf/backbone/synthetic.yaml


def sweep(cwd: Path, *overrides: str, multirun: bool = False) -> subprocess.CompletedProcess:
    args = [
        *(["-m"] if multirun else []), f"output_dir={cwd / 'outputs'}",
        f"hydra.searchpath=[file://{WORLD / 'conf'}]", "imports=[synthetic_world]", "backbone=synthetic",
        "method=synthetic_knob", "objective=synthetic_flicker", "prompts=synthetic", "save_videos=false",
        "logger=none", "study.heartbeat_interval=null", *overrides,
    ]
    result = run_sweep(args, cwd, pythonpath=[WORLD])
    assert result.returncode == 0, result.stderr
    return result


def summary(cwd: Path, study: str) -> dict:
    return json.loads((cwd / "outputs" / study / "report" / "summary.json").read_text())


def flicker(amplitude: float) -> float:
    """VBench's temporal flickering of a world clip of this amplitude, as the world draws it (mean(D) quantised)."""
    mean_d = math.floor(amplitude) + round((amplitude - math.floor(amplitude)) * PIXELS) / PIXELS
    return (255.0 - mean_d) / 255.0


def held_out_differences(strength: float, **params: float) -> list[float]:
    knob = synthetic_world.SyntheticKnob(strength=strength, **{**KNOB, **params})
    return [
        flicker(knob.amplitude(p, s)) - flicker(synthetic_world.base_amplitude(p, s))
        for p in PROMPTS["heldout_prompts"] for s in PROMPTS["heldout_seeds"]
    ]


def test_a_real_effect_is_recommended_near_its_optimum_with_its_true_held_out_effect(tmp_path):
    result = sweep(tmp_path, "study.n_trials=16")
    report = summary(tmp_path, "synthetic-synthetic_knob-synthetic_flicker")
    rec = report["recommendation"]
    assert rec is not None, report["reason"]
    strength = rec["knobs"]["strength"]
    assert abs(strength - KNOB["optimum"]) < 0.1
    # The validated effect is the mean paired difference on the held-out clips, with a t interval corrected for the
    # candidates compared: recomputed from the world's truth.
    diffs = np.array(held_out_differences(strength))
    m = len(report["candidates"])
    level = 1 - 0.05 / m
    half = stats.t.ppf(0.5 + level / 2, len(diffs) - 1) * diffs.std(ddof=1) / math.sqrt(len(diffs))
    effect = rec["effects"][RECORD]
    assert effect["n"] == len(diffs) == 12
    assert effect["mean"] == pytest.approx(diffs.mean(), abs=1e-7)
    assert (effect["low"], effect["high"]) == pytest.approx((diffs.mean() - half, diffs.mean() + half), abs=1e-7)
    assert effect["low"] > 0 and report["corrected_confidence"] == pytest.approx(level)
    # It is the largest validated gain among the candidates that qualified.
    qualified = [c for c in report["candidates"] if not c["rejected"]]
    assert max(qualified, key=lambda c: c["effects"][RECORD]["mean"])["trial"] == rec["trial"]
    assert "recommendation: " in result.stdout and f"strength={strength!r}" in result.stdout


def test_a_knob_with_no_mean_effect_gets_none_in_most_independent_studies(tmp_path):
    worlds = range(10)
    sweep(
        tmp_path, "method.params.depth=0.0", "study.n_trials=12", f"method.params.world={','.join(map(str, worlds))}",
        "study.name=null_${method.params.world}", "study.sampler.seed=${method.params.world}", multirun=True,
    )
    reports = [summary(tmp_path, f"null_{w}") for w in worlds]
    assert sum(r["recommendation"] is not None for r in reports) <= 1
    for r in reports:
        if r["recommendation"] is None:
            assert r["reason"].startswith("no setting tried beat the untouched model")
    # The winner's curse the validation stage exists for: searched candidates were picked for beating the untouched
    # model on the search clips; on held-out clips that gain shrinks to noise around zero.
    searched = [c for r in reports for c in r["candidates"] if c["role"] == "search"]
    assert len(searched) >= 5
    picked_on = np.array([c["search_effects"][RECORD]["mean"] for c in searched])
    held_out = np.array([c["effects"][RECORD]["mean"] for c in searched])
    assert (picked_on > 0).all()
    assert held_out.mean() < picked_on.mean() / 2


def test_a_method_that_does_nothing_gets_none_and_nothing_is_validated_but_the_paper_setting(tmp_path):
    sweep(tmp_path, "method.params.depth=0.0", "method.params.noise=0.0", "study.n_trials=6")
    report = summary(tmp_path, "synthetic-synthetic_knob-synthetic_flicker")
    assert report["recommendation"] is None
    # Nothing beat the baseline on the search clips; the paper's setting is validated all the same, and its
    # held-out effect is exactly zero on every clip.
    assert [c["role"] for c in report["candidates"]] == ["paper"]
    effect = report["candidates"][0]["effects"][RECORD]
    assert (effect["mean"], effect["low"], effect["high"]) == (0.0, 0.0, 0.0)
    export = (tmp_path / "outputs" / "synthetic-synthetic_knob-synthetic_flicker" / "export")
    assert not (export / "recommended").exists()
    assert "**No recommendation**" in (export / "README.md").read_text()
