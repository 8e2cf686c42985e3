"""``vboost.report`` on a study built directly with Optuna (tests/study_builder.py); every number the report shows is
recomputed here from the per-clip scores written there."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from study_builder import (
    CANDIDATES, HEIGHT, HELD_OUT_PROMPTS, HELD_OUT_SEEDS, OBJECTIVES, RECOMMENDED, SECRET, TRIALS,
    VALIDATION, WIDTH, all_written_text, build_sweep_dir, clip, per_video_scores,
)
from vboost.report import label_band, make_report, side_by_side
from vboost.report.__main__ import main as report_main
from vboost.report._video import read_video

VALIDATION_OF = {candidate: number for number, (candidate, _) in VALIDATION.items()}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    study_dir = build_sweep_dir(tmp_path_factory.mktemp("sweep"))
    return make_report(study_dir)


def test_side_by_side_layout_and_pixels():
    a, b, c = clip(0, 0, 0, 5), clip(1, 1, 0, 3), clip(2, 0, 1, 7)
    out = side_by_side([a, b, c], ["baseline", "paper default", "best"])
    band = label_band(HEIGHT)
    assert out.shape == (7, band + HEIGHT, 3 * WIDTH, 3)
    for i, panel in enumerate((a, b, c)):
        shown = out[:, band:, i * WIDTH:(i + 1) * WIDTH]
        np.testing.assert_array_equal(shown[: len(panel)], panel)
        np.testing.assert_array_equal(shown[len(panel):], np.broadcast_to(panel[-1], shown[len(panel):].shape))
        assert shown.shape[1:] == panel.shape[1:]
    labels = out[:, :band]
    assert labels.max() > 0 and (labels == labels[0]).all()  # a drawn label, the same on every frame
    with pytest.raises(ValueError, match="one label per panel"):
        side_by_side([a, b], ["only one"])


def test_report_files(report):
    assert Image.open(report.pareto_png).size[0] > 100
    assert Image.open(report.effects_png).size[0] > 100
    page = report.html.read_text()
    assert "Pareto front" in page and "Parallel coordinates" in page and "Parameter importances" in page
    assert page.count("plotly.js v") <= 1  # the library is inlined once
    assert report.summary.read_text().startswith("# Report of study")


def test_report_side_by_side_videos_show_the_held_out_clips_of_baseline_paper_and_recommended(report):
    assert len(report.side_by_side) == len(HELD_OUT_PROMPTS)
    band = label_band(HEIGHT)
    panels = [VALIDATION_OF[0], VALIDATION_OF[1], VALIDATION_OF[RECOMMENDED]]
    for index, (mp4, gif) in enumerate(sorted(report.side_by_side)):
        seed = min(HELD_OUT_SEEDS)
        sources = [clip(trial, index, seed, TRIALS[VALIDATION[trial][0]][3]) for trial in panels]
        frames = read_video(mp4)
        assert frames.shape == (max(len(s) for s in sources), band + HEIGHT, 3 * WIDTH, 3)
        assert read_video(gif).shape == frames.shape
        # H.264 is lossy: each decoded panel must be its own source clip (padded with its last frame) and be
        # clearly farther from every other panel's source.
        for i, source in enumerate(sources):
            panel = frames[:, band:, i * WIDTH:(i + 1) * WIDTH].astype(float)

            def distance(other: np.ndarray) -> float:
                padded = np.concatenate([other, np.repeat(other[-1:], len(frames) - len(other), axis=0)])
                return float(np.abs(panel - padded).mean())

            assert distance(source) < 3.0
            assert all(distance(other) > 3 * distance(source) + 3.0 for j, other in enumerate(sources) if j != i)


def expected_effect(trial: int, name: str, confidence: float) -> tuple[float, float, float]:
    """Mean and t interval of the held-out per-clip differences of ``trial``'s validation vs the baseline's."""
    ours, theirs = per_video_scores(VALIDATION_OF[trial]), per_video_scores(VALIDATION_OF[0])
    diffs = np.array([ours[k][name] - theirs[k][name] for k in sorted(ours)])
    half = stats.t.ppf(0.5 + confidence / 2, len(diffs) - 1) * diffs.std(ddof=1) / math.sqrt(len(diffs))
    return diffs.mean(), diffs.mean() - half, diffs.mean() + half


def test_summary_json_holds_the_decision_recomputed_independently(report):
    summary = json.loads(report.summary_json.read_text())
    assert summary["recommendation"]["trial"] == RECOMMENDED
    assert [c["trial"] for c in summary["candidates"]] == list(CANDIDATES)
    level = 1 - 0.05 / len(CANDIDATES)
    assert summary["corrected_confidence"] == pytest.approx(level)
    for candidate in summary["candidates"]:
        assert candidate["validation_trial"] == VALIDATION_OF[candidate["trial"]]
        for name, _ in OBJECTIVES:
            effect = candidate["effects"][name]
            assert (effect["mean"], effect["low"], effect["high"]) == pytest.approx(expected_effect(candidate["trial"], name, level))
            assert effect["n"] == len(HELD_OUT_PROMPTS) * len(HELD_OUT_SEEDS)
        # The search-stage effect: the same statistics on the search clips, uncorrected.
        ours, theirs = per_video_scores(candidate["trial"]), per_video_scores(0)
        diffs = [ours[k][OBJECTIVES[0][0]] - theirs[k][OBJECTIVES[0][0]] for k in sorted(ours)]
        assert candidate["search_effects"][OBJECTIVES[0][0]]["mean"] == pytest.approx(np.mean(diffs))
    assert summary["recommendation"]["effects"][OBJECTIVES[0][0]]["low"] > 0
    paper = next(c for c in summary["candidates"] if c["role"] == "paper")
    assert paper["rejected"] and not paper["recommended"]


def test_summary_markdown_leads_with_the_recommendation_and_shows_both_stages(report):
    text = report.summary.read_text()
    head = text.split("## How it was decided")[0]
    assert "**Use `weight=4.0" in head and f"trial {RECOMMENDED}" in head
    rows = [line for line in text.splitlines() if line.startswith(f"| {RECOMMENDED} |")]
    mean, low, high = expected_effect(RECOMMENDED, OBJECTIVES[0][0], 1 - 0.05 / len(CANDIDATES))
    assert rows and f"{mean:+.4g} [{low:+.4g}, {high:+.4g}]" in rows[0]
    # The per-clip table of the recommended setting, each difference recomputed.
    ours, theirs = per_video_scores(VALIDATION_OF[RECOMMENDED]), per_video_scores(VALIDATION_OF[0])
    for (prompt, seed), scores in ours.items():
        name = OBJECTIVES[0][0]
        assert f"| {prompt} | {seed} | {theirs[(prompt, seed)][name]:.4g} | {scores[name]:.4g} | " \
               f"{scores[name] - theirs[(prompt, seed)][name]:+.4g} |" in text


def test_no_password_in_report_files(report, capsys):
    assert SECRET not in all_written_text(report.directory)
    assert report_main([str(report.directory.parent), "--out", str(report.directory.parent / "again")]) == 0
    assert SECRET not in all_written_text(report.directory.parent / "again") + capsys.readouterr().out


def test_an_unvalidated_single_objective_study_says_no_recommendation(tmp_path):
    study_dir = build_sweep_dir(tmp_path, objectives=OBJECTIVES[:1], validated=False)
    report = make_report(study_dir, out=tmp_path / "r")
    page = report.html.read_text()
    assert "Optimisation history" in page
    summary = json.loads(report.summary_json.read_text())
    assert summary["recommendation"] is None and "validation stage has not completed" in summary["reason"]
    # One objective: the three best by value (3, 5, 6) and the paper's setting, none validated.
    assert [c["trial"] for c in summary["candidates"]] == [3, 5, 6, 1]
    assert "**No recommendation.**" in report.summary.read_text()
    # Panels: baseline, paper default and the first candidate (3), whose clips were not kept: left out and noted.
    assert any("not recommended video" in note and "missing" in note for note in report.notes)
    assert report.pareto_png.is_file()


def test_the_plots_show_the_right_points(tmp_path):
    """The figures' data, read back from matplotlib: every point where the study puts it."""
    import matplotlib.pyplot as plt

    from vboost.record import decide, open_study_run
    from vboost.report._plots import effects_figure, pareto_figure

    run = open_study_run(build_sweep_dir(tmp_path))
    decision = decide(run)
    fig = pareto_figure(run, decision)
    (ax,) = fig.axes
    series = {}
    for artist in [*ax.collections, *ax.lines]:
        points = artist.get_offsets() if hasattr(artist, "get_offsets") else list(zip(*artist.get_data()))
        series[artist.get_label()] = sorted(map(tuple, np.asarray(points).tolist()))
    values = {n: v for n, (_, _, v, _) in TRIALS.items()}
    # The front with the baseline as a contender, by brute force: {3, 5, 7}; the baseline (0) is dominated by 5.
    assert series["Pareto front (baseline included)"] == sorted(values[n] for n in (3, 5, 7))
    assert series["trials"] == sorted(values[n] for n in (0, 1, 2, 4, 6))
    assert series["baseline (no method) (#0)"] == [values[0]] and series[f"recommended (#{RECOMMENDED})"] == [values[RECOMMENDED]]
    assert series["validated on held-out clips"] == sorted(values[n] for n in CANDIDATES)
    plt.close(fig)
    fig = effects_figure(decision)
    assert [a.get_title() for a in fig.axes] == [name for name, _ in OBJECTIVES]
    for ax, (name, _) in zip(fig.axes, OBJECTIVES):
        # Held-out effects at row - 0.15: the points' x are the candidates' validated mean changes, in order.
        points = [line for line in ax.lines if line.get_marker() == "o"]  # not the interval's caps
        held_out = sorted((y, x) for line in points for x, y in zip(*line.get_data()) if y % 1 > 0.5)
        level = 1 - 0.05 / len(CANDIDATES)
        assert [x for _, x in held_out] == pytest.approx([expected_effect(c, name, level)[0] for c in CANDIDATES])
    plt.close(fig)
