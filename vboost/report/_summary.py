"""The report's summary: the recommendation (or its absence) first, then every candidate's effect on the search
clips beside its effect on the held-out clips, so the shrinkage from one to the other is in plain view."""

from __future__ import annotations

from vboost.record import Candidate, Decision, StudyRun, TrialAttr


def summary_markdown(run: StudyRun, decision: Decision, notes: list[str]) -> str:
    """``summary.md``: what to use (or that nothing qualified, and why), how that was decided, the candidates."""
    settings = decision.settings
    lines = [f"# Report of study `{run.name}`", "", f"Method `{run.method}`, storage `{run.storage}`.", ""]
    rec = decision.recommendation
    lines.append("## Recommendation")
    lines.append("")
    if rec is None:
        lines.append(f"**No recommendation.** {decision.reason[0].upper()}{decision.reason[1:]}.")
    else:
        knobs = ", ".join(f"{k}={v!r}" for k, v in rec.knobs.items())
        lines.append(f"**Use `{knobs}`** (trial {rec.trial.number}, {rec.role}; export/recommended/). {decision.reason}.")
    lines += ["", "## How it was decided", ""]
    objectives = ", ".join(f"`{o.name}` ({o.direction})" for o in decision.objectives)
    lines.append(
        f"Objectives {objectives}; the first is primary. Candidates: the best {settings.top_k} search-stage settings "
        "that beat the baseline (Pareto members with the baseline as a contender when there are several objectives), "
        "plus the paper's setting. Each, and the baseline, ran again on held-out clips"
        + (f" ({len(run.validation_prompts)} prompts x {len(run.validation_seeds)} seeds)" if run.validation_prompts else "")
        + ". Per record, paired differences (candidate - baseline on the same prompt and seed) get a two-sided "
        f"Student t interval at {settings.confidence:.0%}"
        + (f", corrected to {decision.corrected_confidence:.2%} for {len(decision.candidates)} candidates (Bonferroni)"
           if decision.corrected_confidence is not None else "")
        + f". A candidate qualifies when the primary objective's interval is clear of {settings.min_effect:g}, no other "
        "objective is worse beyond its tolerance"
        + (f" ({', '.join(f'{r}: {t:.1%}' for r, t in settings.tolerances.items())})" if settings.tolerances else " (0)")
        + ", and every constraint holds on the held-out clips; the largest validated gain wins. See docs/decision.md."
    )
    if decision.candidates:
        lines += ["", "## Candidates: search clips vs held-out clips", ""]
        lines.append("Change vs the untouched model, mean [interval] (confidence, clips). The search-stage numbers are "
                     "those the setting was picked on; only the held-out ones decide.")
        lines += ["", "| trial | role | knobs | record | search clips | held-out clips | verdict |", "|---|---|---|---|---|---|---|"]
        for c in decision.candidates:
            lines += _candidate_rows(c, decision)
        shown = rec or next((c for c in decision.candidates if c.validation is not None), None)
        if shown is not None and decision.baseline_validation is not None:
            lines += ["", *_per_clip_table(run, shown, decision)]
    if notes:
        lines += ["", "## Notes", "", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"


def _candidate_rows(c: Candidate, decision: Decision) -> list[str]:
    knobs = ", ".join(f"{k}={v!r}" for k, v in c.knobs.items())
    verdict = "**recommended**" if c is decision.recommendation else ("; ".join(c.rejected) or "qualifies (smaller gain)")
    rows = []
    for i, record in enumerate(decision.records):
        held_out = c.effects.get(record)
        head = f"| {c.trial.number} | {c.role} | {knobs} |" if i == 0 else "| | | |"
        rows.append(f"{head} {record} | {c.search_effects[record].text()} | {held_out.text() if held_out else 'not validated'} | "
                    f"{verdict if i == 0 else ''} |")
    return rows


def _per_clip_table(run: StudyRun, c: Candidate, decision: Decision) -> list[str]:
    """The primary record per held-out clip: baseline, candidate and their difference."""
    record = decision.primary.name
    theirs = decision.baseline_validation.user_attrs.get(TrialAttr.VIDEO_SCORES, {})
    lines = [f"### `{record}` per held-out clip, trial {c.trial.number} vs the baseline", "",
             "| prompt | seed | baseline | this setting | difference |", "|---|---|---|---|---|"]
    for video in run.videos(c.validation):
        base = theirs.get(video.key, {}).get(record)
        value = video.scores.get(record)
        if base is None or value is None:
            continue
        lines.append(f"| {video.prompt} | {video.seed} | {base:.4g} | {value:.4g} | {value - base:+.4g} |")
    return lines
