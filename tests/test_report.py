"""``vboost.report`` on a study built directly with Optuna (see ``build_sweep_dir`` in test_export.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from test_export import (
    HEIGHT, OBJECTIVES, PROMPTS, SECRET, SEEDS, TRIALS, WIDTH, all_written_text, build_sweep_dir, clip, per_video_scores,
)
from vboost.report import label_band, make_report, side_by_side
from vboost.report.__main__ import main as report_main
from vboost.report._video import read_video

BEST = 5  # on the front, and far better than the baseline on both objectives (3 and 7 trade one for the other)


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
    page = report.html.read_text()
    assert "Pareto front" in page and "Parallel coordinates" in page and "Parameter importances" in page
    assert page.count("plotly.js v") <= 1  # the library is inlined once
    assert report.summary.read_text().startswith("# Report of study")


def test_report_side_by_side_videos(report):
    assert len(report.side_by_side) == len(PROMPTS)
    band = label_band(HEIGHT)
    for index, (mp4, gif) in enumerate(sorted(report.side_by_side)):
        seed = min(SEEDS)
        sources = [clip(trial, index, seed, TRIALS[trial][3]) for trial in (0, 1, BEST)]
        frames = read_video(mp4)
        assert frames.shape == (max(len(s) for s in sources), band + HEIGHT, 3 * WIDTH, 3)
        assert read_video(gif).shape == frames.shape
        # H.264 is lossy: each decoded panel must still be the source clip (padded with its last frame) to within noise.
        for i, source in enumerate(sources):
            padded = np.concatenate([source, np.repeat(source[-1:], len(frames) - len(source), axis=0)])
            panel = frames[:, band:, i * WIDTH:(i + 1) * WIDTH].astype(float)
            assert np.abs(panel - padded).mean() < 3.0


def test_summary_matches_an_independent_pandas_computation(report):
    rows = []
    for trial in (0, BEST):
        for (prompt, seed), scores in per_video_scores(trial).items():
            rows += [{"trial": trial, "prompt": prompt, "seed": seed, "objective": k, "score": v} for k, v in scores.items()]
    table = pd.DataFrame(rows).pivot_table(index=["objective", "prompt", "seed"], columns="trial", values="score")
    diff = (table[BEST] - table[0]).groupby(level="objective")
    expected = pd.DataFrame({"mean": diff.mean(), "std": diff.std(), "n": diff.size(), "improved": diff.apply(lambda d: int((d > 0).sum()))})

    text = report.summary.read_text()
    assert f"Best setting: trial {BEST}" in text
    section = text.split(f"## Best (trial {BEST}) vs baseline")[1].split("##")[0]
    for name, _ in OBJECTIVES:
        row = expected.loc[name]
        line = next(line for line in section.splitlines() if line.startswith(f"| {name} |"))
        assert f"{row['mean']:+.4g} ± {row['std']:.3g}" in line
        assert f"| {int(row['improved'])}/{int(row['n'])} |" in line
        assert int(row["n"]) == len(PROMPTS) * len(SEEDS)


def test_no_password_in_report_files(report, capsys):
    assert SECRET not in all_written_text(report.directory)
    assert report_main([str(report.directory.parent), "--out", str(report.directory.parent / "again")]) == 0
    assert SECRET not in all_written_text(report.directory.parent / "again") + capsys.readouterr().out


def test_single_objective_study_with_few_trials(tmp_path):
    study_dir = build_sweep_dir(tmp_path, objectives=OBJECTIVES[:1])
    report = make_report(study_dir, out=tmp_path / "r")
    page = report.html.read_text()
    assert "Optimisation history" in page
    # the best of one objective is trial 3 (0.95); its clips were not kept, so its panel is left out and noted
    assert "Best setting: trial 3" in report.summary.read_text()
    assert report.pareto_png.is_file()
    assert any("best video" in note and "missing" in note for note in report.notes)
    assert all(read_video(mp4).shape[2] == 2 * WIDTH for mp4, _ in report.side_by_side)
