"""The Pareto-front picture (matplotlib PNG) and the interactive page (Optuna's plotly figures)."""

from __future__ import annotations

import html
import math
import os
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # reports are made on headless workers
import matplotlib.pyplot as plt
import optuna
from optuna.trial import FrozenTrial, TrialState

from vboost.record import Decision, Effect, StudyRun, TrialAttr, search_front

# Parameter importances need a few trials to say anything; fewer gives a misleading bar chart.
MIN_TRIALS_FOR_IMPORTANCE = 5


def pareto_png(run: StudyRun, decision: Decision, path: str | os.PathLike) -> Path:
    """Save :func:`pareto_figure` to ``path``; returns ``path``."""
    return _save(pareto_figure(run, decision), path)


def effects_png(decision: Decision, path: str | os.PathLike) -> Path:
    """Save :func:`effects_figure` to ``path``; returns ``path``."""
    return _save(effects_figure(decision), path)


def _save(fig: Any, path: str | os.PathLike) -> Path:
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def pareto_figure(run: StudyRun, decision: Decision) -> Any:
    """Objective 1 vs objective 2 of every completed search-stage trial, the front joined, references marked.

    The front is computed with the untouched model as a contender (it is on the front when nothing beats it). With
    one objective, the value per trial number instead. Baseline: red cross; paper default: orange diamond;
    validated candidates: black rings; the recommended setting: green star. Every series carries its legend label.
    """
    objectives, trials = run.objectives, run.completed()
    front = {t.number for t in search_front(run)}
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=110)

    def xy(trial: FrozenTrial) -> tuple[float, float]:
        return (trial.values[0], trial.values[1]) if len(objectives) > 1 else (trial.number, trial.values[0])

    others = [xy(t) for t in trials if t.number not in front]
    if others:
        ax.scatter(*zip(*others), s=18, c="0.65", label="trials")
    members = sorted(xy(t) for t in trials if t.number in front)
    if members:
        ax.plot(*zip(*members), "o-" if len(objectives) > 1 else "o", c="tab:blue", ms=5,
                label="Pareto front (baseline included)" if len(objectives) > 1 else "best")
    validated = [xy(c.trial) for c in decision.candidates if c.validation is not None]
    if validated:
        ax.scatter(*zip(*validated), s=120, facecolors="none", edgecolors="k", linewidths=1.0, zorder=4,
                   label="validated on held-out clips")
    recommended = decision.recommendation.trial if decision.recommendation is not None else None
    for trial, style, label in (
        (run.baseline, dict(marker="X", c="tab:red", s=110), "baseline (no method)"),
        (run.paper, dict(marker="D", c="tab:orange", s=70), "paper default"),
        (recommended, dict(marker="*", c="tab:green", s=220), "recommended"),
    ):
        if trial is not None and trial.values:
            ax.scatter(*xy(trial), zorder=5, edgecolors="k", linewidths=0.6, label=f"{label} (#{trial.number})", **style)

    def axis_label(i: int) -> str:
        return f"{objectives[i].name} ({'higher' if objectives[i].direction == 'maximize' else 'lower'} is better)"

    verdict = "no recommendation" if recommended is None else f"recommended: trial {recommended.number}"
    if len(objectives) > 1:
        ax.set_xlabel(axis_label(0))
        ax.set_ylabel(axis_label(1))
        shown = "" if len(objectives) == 2 else f" (first 2 of {len(objectives)} objectives)"
        ax.set_title(f"{run.name}\nsearch stage, Pareto front{shown}; {verdict}", fontsize=9)
    else:
        ax.set_xlabel("trial")
        ax.set_ylabel(axis_label(0))
        ax.set_title(f"{run.name}\nsearch stage, objective per trial; {verdict}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def effects_figure(decision: Decision) -> Any:
    """Per record (one axes each), each candidate's change vs the untouched model with its interval: on the search
    clips (grey, uncorrected, at ``row + 0.15``) and on the held-out clips (corrected, at ``row - 0.15``; green
    recommended, blue qualifying, red rejected). The zero line is the untouched model; a dashed line marks a
    tolerance."""
    records = decision.records
    candidates = decision.candidates
    fig, axes = plt.subplots(1, len(records), figsize=(4.2 * len(records), 0.9 + 0.55 * max(1, len(candidates))),
                             dpi=110, squeeze=False)
    labels = [f"trial {c.trial.number} ({c.role})" for c in candidates]
    for ax, record in zip(axes[0], records):
        for row, c in enumerate(candidates):
            search = c.search_effects[record]
            _bar(ax, row + 0.15, search, "0.6", "search clips" if row == 0 else None)
            held_out = c.effects.get(record)
            if held_out is not None:
                colour = "tab:green" if c is decision.recommendation else ("tab:blue" if not c.rejected else "tab:red")
                _bar(ax, row - 0.15, held_out, colour, None)
        ax.axvline(0.0, c="k", lw=0.8)
        tolerance = decision.settings.tolerances.get(record)
        if tolerance and decision.baseline_validation is not None:
            base = decision.baseline_validation.user_attrs.get(TrialAttr.SCORES, {}).get(record)
            if base:
                sign = next((o.sign for o in decision.objectives if o.name == record), 1.0)
                ax.axvline(-sign * tolerance * abs(base), c="k", ls="--", lw=0.8)
        ax.set_yticks(range(len(candidates)), labels, fontsize=7)
        ax.set_title(record, fontsize=8)
        ax.set_xlabel("change vs the untouched model", fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(alpha=0.3, axis="x")
        ax.invert_yaxis()
    verdict = "no recommendation" if decision.recommendation is None else f"recommended: trial {decision.recommendation.trial.number}"
    fig.suptitle(f"grey: search clips; colour: held-out clips (green recommended, red rejected); {verdict}", fontsize=8)
    fig.tight_layout()
    return fig


def _bar(ax: Any, y: float, effect: Effect, colour: str, label: str | None) -> None:
    """One effect as a point with its interval bar (an infinite interval, from a single clip, is left out)."""
    if not math.isfinite(effect.mean):
        return
    low = effect.low if math.isfinite(effect.low) else effect.mean
    high = effect.high if math.isfinite(effect.high) else effect.mean
    ax.errorbar([effect.mean], [y], xerr=[[effect.mean - low], [high - effect.mean]], fmt="o", ms=4, c=colour,
                capsize=3, label=label)


def _plot_copy(run: StudyRun) -> optuna.Study:
    """An in-memory copy of the completed trials with only params and values.

    Optuna's hover texts print every user attr; the copy keeps attrs (video lists, storage URLs) off the page. A
    reference's value outside the searched range (a paper default the search space leaves out) is left out of the copy:
    Optuna's figures take in-range values only.
    """
    study = optuna.create_study(directions=run.study.directions, study_name=run.name)
    references = {t.number: role for role, t in (("baseline", run.baseline), ("paper default", run.paper)) if t}
    for trial in run.completed():
        params = {k: v for k, v in trial.params.items() if _in_range(trial.distributions[k], v)}
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.COMPLETE,
            values=trial.values,
            params=params,
            distributions={k: trial.distributions[k] for k in params},
            user_attrs={"role": references[trial.number]} if trial.number in references else {},
        ))
    return study


def _in_range(distribution: optuna.distributions.BaseDistribution, value: Any) -> bool:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return value in distribution.choices
    return distribution.low <= value <= distribution.high


def interactive_html(run: StudyRun, path: str | os.PathLike) -> tuple[Path, list[str]]:
    """One self-contained page (plotly inlined once, works offline) with Optuna's figures.

    Pareto front (or optimisation history for one objective), parallel coordinates per objective, and
    parameter importances per objective when at least ``MIN_TRIALS_FOR_IMPORTANCE`` trials finished.
    A figure that fails is replaced by its reason. Returns the path and the list of skipped figures.
    """
    from optuna import visualization as vis

    study, objectives = _plot_copy(run), run.objectives
    figures: list[tuple[str, object]] = []
    skipped: list[str] = []

    def add(title: str, make) -> None:
        try:
            with warnings.catch_warnings():  # small-sample and experimental warnings would drown the sweep's log
                warnings.simplefilter("ignore")
                figures.append((title, make()))
        except Exception as err:  # a plot is a nicety; the report must still be written
            skipped.append(f"{title}: {type(err).__name__}: {err}")

    if len(objectives) > 1:
        add("Pareto front", lambda: vis.plot_pareto_front(study, target_names=[o.name for o in objectives]))
    else:
        add("Optimisation history", lambda: vis.plot_optimization_history(study, target_name=objectives[0].name))
    has_params = any(t.params for t in study.trials)
    for i, objective in enumerate(objectives):
        def target(t: FrozenTrial, i: int = i) -> float:
            return t.values[i]

        if has_params:
            add(f"Parallel coordinates: {objective.name}", lambda: vis.plot_parallel_coordinate(study, target=target, target_name=objective.name))
        if len(study.trials) < MIN_TRIALS_FOR_IMPORTANCE or not has_params:
            skipped.append(f"Parameter importances ({objective.name}): needs >= {MIN_TRIALS_FOR_IMPORTANCE} completed trials with parameters")
        else:
            # Optuna's default evaluator ranks parameters by how they reach LOW target values.
            def badness(t: FrozenTrial, i: int = i, sign: float = objective.sign) -> float:
                return -sign * t.values[i]

            add(f"Parameter importances: {objective.name}", lambda: vis.plot_param_importances(study, target=badness, target_name=objective.name))
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(run.name)}</title></head><body>"]
    parts.append(f"<h1>Study {html.escape(run.name)}</h1>")
    for index, (title, fig) in enumerate(figures):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=index == 0))
    if skipped:
        parts.append("<h2>Not shown</h2><ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in skipped) + "</ul>")
    parts.append("</body></html>")
    path = Path(path)
    path.write_text(run.scrubber("\n".join(parts)))
    return path, skipped
