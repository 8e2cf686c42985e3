"""The per-study report: the decision, plots, side-by-side clips and the summaries, in one directory."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

from optuna.trial import FrozenTrial

from vboost.record import REPORT_DIR, SUMMARY_JSON, Decision, StudyRun, TrialAttr, VideoRecord, decide, open_study_run
from vboost.report._plots import effects_png, interactive_html, pareto_png
from vboost.report._summary import summary_markdown
from vboost.report._video import read_video, side_by_side, write_gif, write_mp4


@dataclasses.dataclass
class Report:
    """What ``make_report`` wrote. ``side_by_side`` holds one ``(mp4, gif)`` pair per prompt."""

    directory: Path
    pareto_png: Path
    effects_png: Path
    html: Path
    summary: Path
    summary_json: Path
    side_by_side: list[tuple[Path, Path]]
    notes: list[str]


def make_report(
    study_or_dir: str | os.PathLike,
    *,
    storage: str | None = None,
    study_name: str | None = None,
    out: str | os.PathLike | None = None,
    fps: float = 8.0,
) -> Report:
    """Write the report of a sweep to ``out`` (default ``<study dir>/report``) and return its files.

    ``summary.md`` and ``summary.json`` (the recommendation or its absence, every candidate's effects on the search
    and held-out clips), ``effects.png``, ``pareto.png``, ``report.html`` and
    ``side_by_side/<i>_<prompt>_seed<seed>.{mp4,gif}`` (baseline | paper default | recommended, on the held-out
    clips when validated). ``fps`` is used when the sweep recorded none. Raises ``ValueError`` when the study has no
    completed trial.
    """
    run = open_study_run(study_or_dir, storage=storage, study_name=study_name)
    if out is None:
        if run.directory is None:
            raise ValueError("pass out=DIR: the study was given by storage URL and has no output directory")
        out = run.directory / REPORT_DIR
    return report_run(run, decide(run), Path(out), fps)


def report_run(run: StudyRun, decision: Decision, out: Path, fps: float = 8.0) -> Report:
    """:func:`make_report` for a study already open and decided."""
    if not run.completed():
        raise ValueError(f"study {run.name!r} has no completed trial to report")
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    if run.baseline is None:
        notes.append("no complete trial has role='baseline': no comparison against the untouched model")
    png = pareto_png(run, decision, out / "pareto.png")
    effects = effects_png(decision, out / "effects.png")
    page, skipped = interactive_html(run, out / "report.html")
    notes += [f"not in report.html: {item}" for item in skipped]
    clips = _side_by_side_clips(run, decision, out / "side_by_side", float(run.context.get("fps") or fps), notes)
    summary = out / "summary.md"
    summary.write_text(run.scrubber(summary_markdown(run, decision, notes)))
    summary_json = out / SUMMARY_JSON
    summary_json.write_text(run.scrubber(json.dumps(decision.to_json(run), indent=2) + "\n"))
    return Report(directory=out, pareto_png=png, effects_png=effects, html=page, summary=summary,
                  summary_json=summary_json, side_by_side=clips, notes=notes)


def _panels(run: StudyRun, decision: Decision) -> list[tuple[str, FrozenTrial]]:
    """``(label, trial whose clips are shown)``: baseline, paper default and the recommended setting (else the first
    candidate, labelled as not recommended), on the held-out clips when all of them were validated."""
    chosen = decision.recommendation or next(iter(decision.candidates), None)
    shown = [("baseline", run.baseline), ("paper default", run.paper)]
    if chosen is not None and chosen.trial.number != getattr(run.paper, "number", None):
        shown.append(("recommended" if chosen is decision.recommendation else "not recommended", chosen.trial))
    shown = [(label, t) for label, t in shown if t is not None]
    validations = {c.trial.number: c.validation for c in decision.candidates if c.validation is not None}
    if decision.baseline_validation is not None:
        validations[decision.baseline_validation.user_attrs[TrialAttr.CANDIDATE]] = decision.baseline_validation
    if all(t.number in validations for _, t in shown):
        return [(f"{label} (held out)", validations[t.number]) for label, t in shown]
    return shown


def _side_by_side_clips(
    run: StudyRun, decision: Decision, directory: Path, fps: float, notes: list[str]
) -> list[tuple[Path, Path]]:
    roles = _panels(run, decision)
    if len(roles) < 2:
        notes.append("side-by-side videos need at least two of baseline / paper default / a candidate")
        return []
    videos = {label: {(v.prompt, v.seed): v for v in run.videos(trial)} for label, trial in roles}
    prompts = list(dict.fromkeys(prompt for by_key in videos.values() for prompt, _ in by_key))  # prompt order
    clips = []
    for index, prompt in enumerate(prompts):
        panels: list[tuple[str, VideoRecord]] = []
        seeds = set.intersection(*[{seed for p, seed in by_key if p == prompt} for by_key in videos.values()])
        if not seeds:
            notes.append(f"prompt {prompt!r}: no seed generated by every compared trial; no side-by-side video")
            continue
        seed = min(seeds)
        for label, _ in roles:
            video = videos[label][(prompt, seed)]
            if video.path is None or not video.path.is_file():
                notes.append(f"prompt {prompt!r} seed {seed}: {label} video {str(video.path)!r} is missing; panel left out")
                continue
            panels.append((label, video))
        if len(panels) < 2:
            continue
        frames = side_by_side([read_video(v.path) for _, v in panels], [label for label, _ in panels])
        stem = f"{index:02d}_{_slug(prompt)}_seed{seed}"  # the index keeps prompts with equal slugs apart
        directory.mkdir(parents=True, exist_ok=True)
        clips.append((write_mp4(directory / f"{stem}.mp4", frames, fps), write_gif(directory / f"{stem}.gif", frames, fps)))
    return clips


def _slug(text: str, limit: int = 48) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:limit] or "prompt"
