"""How far a setting moved each objective from the baseline, video by video, so gains can be told from noise."""

from __future__ import annotations

import math

import pandas as pd
from optuna.trial import FrozenTrial

from vboost.export import StudyRun


def per_video_scores(run: StudyRun, trial: FrozenTrial) -> pd.DataFrame:
    """One row per clip of ``trial`` (index ``prompt, seed``), one column per objective with a per-video score."""
    names = [objective.name for objective in run.objectives]
    rows = [
        {"prompt": video.prompt, "seed": video.seed, **{name: video.scores[name] for name in names if name in video.scores}}
        for video in run.videos(trial)
    ]
    if not rows:
        return pd.DataFrame(columns=names, index=pd.MultiIndex.from_tuples([], names=["prompt", "seed"]))
    return pd.DataFrame(rows).set_index(["prompt", "seed"]).sort_index()


def paired_differences(run: StudyRun, trial: FrozenTrial, reference: FrozenTrial) -> pd.DataFrame:
    """Per-objective statistics of ``trial - reference`` over the clips both generated (same prompt and seed).

    Columns: ``direction``, ``reference`` and ``value`` (the trials' aggregated objective values), ``n``
    (paired clips), ``mean`` and ``std`` (sample std, ddof=1) of the per-clip differences, ``t`` (mean over its
    standard error: |t| well above 2 is unlikely to be noise), ``improved`` and ``worse`` (clips that moved in /
    against the objective's direction). Objectives without per-video scores get ``n = 0``.
    """
    ours, theirs = per_video_scores(run, trial), per_video_scores(run, reference)
    rows = []
    for i, objective in enumerate(run.objectives):
        if objective.name in ours and objective.name in theirs:
            diff = (ours[objective.name] - theirs[objective.name]).dropna()
        else:
            diff = pd.Series(dtype=float)
        n = len(diff)
        std = float(diff.std(ddof=1)) if n > 1 else math.nan
        mean = float(diff.mean()) if n else math.nan
        signed = objective.sign * diff
        rows.append({
            "objective": objective.name,
            "direction": objective.direction,
            "reference": reference.values[i] if reference.values else math.nan,
            "value": trial.values[i],
            "n": n,
            "mean": mean,
            "std": std,
            "t": mean / (std / math.sqrt(n)) if n > 1 and std > 0 else math.nan,
            "improved": int((signed > 0).sum()),
            "worse": int((signed < 0).sum()),
        })
    return pd.DataFrame(rows).set_index("objective")


def summary_markdown(run: StudyRun, best: FrozenTrial | None, comparisons: dict[str, pd.DataFrame], notes: list[str]) -> str:
    """The report's summary: what the best setting changed against the baseline, with its spread."""
    lines = [f"# Report of study `{run.name}`", "", f"Method `{run.method}`, storage `{run.storage}`."]
    completed = run.completed()
    lines.append(f"{len(completed)} completed trials; objectives: " + ", ".join(f"{o.name} ({o.direction})" for o in run.objectives) + ".")
    if best is not None:
        params = ", ".join(f"{key}={value!r}" for key, value in run.method_params(best).items())
        lines += ["", f"Best setting: trial {best.number} ({params})."]
    for title, table in comparisons.items():
        lines += ["", f"## {title}", "", "Per-video paired differences (same prompt and seed); `t` = mean / (std / sqrt(n)).", ""]
        if not table["n"].any():
            lines += ["Per-video scores were not recorded (trial attr `video_scores`): only the aggregates can be compared.", ""]
        lines.append("| objective | direction | reference | this | change | paired mean ± std | n | t | improved | worse |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for name, row in table.iterrows():
            lines.append(
                f"| {name} | {row['direction']} | {row['reference']:.4g} | {row['value']:.4g} | {row['value'] - row['reference']:+.4g} | "
                f"{row['mean']:+.4g} ± {row['std']:.3g} | {row['n']} | {row['t']:.2f} | {row['improved']}/{row['n']} | {row['worse']}/{row['n']} |"
            )
    if notes:
        lines += ["", "## Notes", "", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"
