"""Write a study's decision as files: the recommended preset (or none, said plainly) and the unvalidated or rejected
alternatives, each with its diffusers scripts, ComfyUI values and a README."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

from optuna.trial import FrozenTrial

from vboost.export._comfyui import comfyui_export, workflow_fragment
from vboost.export._snippets import diffusers_native, vboost_snippet
from vboost.methods.preset import SETTING_FIELDS, ObjectiveValue, Preset
from vboost.record import (
    ALTERNATIVES_DIR,
    EXPORT_DIR,
    RECOMMENDED_DIR,
    Candidate,
    Decision,
    Effect,
    StudyRun,
    decide,
    open_study_run,
)
from vboost.secrets import SecretScrubber


@dataclasses.dataclass
class ExportedSetting:
    """What the export wrote for one trial: its preset, its status and the files, by kind."""

    trial: int
    preset: Preset
    status: str  # "recommended", "not recommended" (validated, rejected) or "unvalidated"
    files: dict[str, Path]


@dataclasses.dataclass
class Export:
    """An export directory: the recommended setting (or None) and the alternatives."""

    directory: Path
    decision: Decision
    recommended: ExportedSetting | None
    alternatives: list[ExportedSetting]

    @property
    def summary(self) -> str:
        """A short line: what was written."""
        head = f"recommended: trial {self.recommended.trial}" if self.recommended else "no recommendation"
        return f"{head}; {len(self.alternatives)} alternative(s) not recommended"


def preset_for_trial(run: StudyRun, trial: FrozenTrial, status: str | None = None,
                     held_out: dict[str, Effect] | None = None) -> Preset:
    """The preset of ``trial``: the study's method with the trial's knobs (as the method takes them, and as searched),
    the generation setting the sweep recorded in the study (``SETTING_FIELDS``; ``None`` where not recorded) and, when
    given, the study's verdict on it and its validated effects on the held-out clips.

    Raises ``ValueError`` when the study records no method name.
    """
    if not run.method:
        raise ValueError(f"study {run.name!r} has no 'method' user attr; cannot tell which method trial {trial.number} ran")
    baseline = run.baseline
    objectives = [
        ObjectiveValue(
            name=objective.name,
            direction=objective.direction,
            value=trial.values[i],
            baseline=baseline.values[i] if baseline is not None and baseline.values else None,
        )
        for i, objective in enumerate(run.objectives)
    ]
    return Preset(
        method=run.method,
        params=run.method_params(trial),
        searched=dict(trial.params),
        **{key: run.context.get(key) for key in SETTING_FIELDS},
        objectives=objectives,
        study=run.name,
        trial=trial.number,
        status=status,
        held_out={record: effect.to_dict() for record, effect in held_out.items()} if held_out else None,
    )


def export_study(
    study_or_dir: str | os.PathLike,
    *,
    storage: str | None = None,
    study_name: str | None = None,
    out: str | os.PathLike | None = None,
) -> Export:
    """Export a finished sweep's decision (``vboost.record.decide``) to ``out`` (default ``<study dir>/export``).

    Writes ``recommended/`` when a setting is recommended and ``alternatives/trial_<n>/`` for every other candidate,
    each with ``preset.yaml``, ``preset.json``, ``diffusers_vboost.py``, ``diffusers_native.py`` (where the method has
    a plain-diffusers form: FreeInit and FreeU on AnimateDiff, guiders on the modular pipelines, with the guiders'
    ``guider/guider_config.json`` beside it), ``comfyui.json``, ``comfyui/<Node>.json`` (a ComfyUI workflow per node that takes the setting) and
    ``README.md``, plus ``README.md`` saying what is recommended, or that nothing is and why. A storage password never
    reaches a written file. Raises ``ValueError`` when the study has no completed trial.
    """
    run = open_study_run(study_or_dir, storage=storage, study_name=study_name)
    if out is None:
        if run.directory is None:
            raise ValueError("pass --out DIR: the study was given by storage URL and has no output directory")
        out = run.directory / EXPORT_DIR
    return export_run(run, decide(run), Path(out))


def export_run(run: StudyRun, decision: Decision, out: Path) -> Export:
    """:func:`export_study` for a study already open and decided; what an earlier export left in ``out`` is replaced.

    Raises ``ValueError`` when the study has no completed trial.
    """
    if not run.completed():
        raise ValueError(f"study {run.name!r} has nothing to export: no completed trial")
    for stale in [out / RECOMMENDED_DIR, out / ALTERNATIVES_DIR, *out.glob("trial_*")]:  # trial_*: older layouts
        if stale.is_dir():
            shutil.rmtree(stale)
    recommended, alternatives = None, []
    for candidate in decision.candidates:
        if candidate is decision.recommendation:
            recommended = _export_trial(run, decision, candidate, "recommended", out / RECOMMENDED_DIR)
        else:
            status = "not recommended" if candidate.validation is not None else "unvalidated"
            directory = out / ALTERNATIVES_DIR / f"trial_{candidate.trial.number:04d}"
            alternatives.append(_export_trial(run, decision, candidate, status, directory))
    export = Export(out, decision, recommended, alternatives)
    _write(out / "README.md", _index_readme(run, export), run.scrubber)
    return export


def _export_trial(run: StudyRun, decision: Decision, candidate: Candidate, status: str, directory: Path) -> ExportedSetting:
    trial = candidate.trial
    preset = preset_for_trial(run, trial, status, candidate.effects)
    method = preset.build()  # fail here, naming the bad knob, rather than in the user's script
    scrub = run.scrubber
    files = {
        "preset_yaml": _write(directory / "preset.yaml", preset.to_yaml(), scrub),
        "preset_json": _write(directory / "preset.json", preset.to_json(), scrub),
        "diffusers_vboost": _write(directory / "diffusers_vboost.py", vboost_snippet(preset, method), scrub),
    }
    native = diffusers_native(preset, method)
    if native is not None:
        script, native_files = native
        files["diffusers_native"] = _write(directory / "diffusers_native.py", script, scrub)
        for name, text in native_files.items():  # e.g. a guider's guider_config.json, which the script loads
            files[f"native:{name}"] = _write(directory / name, text, scrub)
    comfy = comfyui_export(preset)
    files["comfyui"] = _write(directory / "comfyui.json", json.dumps(comfy.to_dict(), indent=2) + "\n", scrub)
    for node in comfy.nodes:
        if node.values is not None:  # a UI workflow holding the node, to load or drag into ComfyUI
            name = node.node.class_name
            fragment = json.dumps(workflow_fragment(node), indent=2) + "\n"
            files[f"comfyui_{name}"] = _write(directory / "comfyui" / f"{name}.json", fragment, scrub)
    readme = _trial_readme(run, decision, preset, candidate, status, comfy.to_dict(), sorted(files))
    files["readme"] = _write(directory / "README.md", readme, scrub)
    return ExportedSetting(trial=trial.number, preset=preset, status=status, files=files)


def _write(path: Path, text: str, scrub: SecretScrubber) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(scrub(text))
    return path


def _objective_table(preset: Preset) -> list[str]:
    lines = ["| objective | direction | this setting | baseline | change |", "|---|---|---|---|---|"]
    for obj in preset.objectives:
        change = "" if obj.baseline is None else f"{obj.value - obj.baseline:+.4g}"
        baseline = "" if obj.baseline is None else f"{obj.baseline:.4g}"
        lines.append(f"| {obj.name} | {obj.direction} | {obj.value:.4g} | {baseline} | {change} |")
    return lines


_STATUS_LINES = {
    "recommended": "**RECOMMENDED.** Validated on held-out clips: {reason}",
    "not recommended": "**NOT RECOMMENDED.** Run again on held-out clips, it did not qualify: {reason}",
    "unvalidated": "**UNVALIDATED.** Never checked on held-out clips ({reason}): do not read its search-stage numbers "
    "as a gain over the untouched model",
}


def _trial_readme(
    run: StudyRun, decision: Decision, preset: Preset, candidate: Candidate, status: str, comfy: dict, files: list[str]
) -> str:
    params = ", ".join(f"`{key}={value!r}`" for key, value in preset.params.items())
    reason = decision.reason if status == "recommended" else "; ".join(candidate.rejected) or "validation was off"
    lines = [
        f"# {preset.method}: study `{run.name}`, trial {preset.trial} ({status})",
        "",
        _STATUS_LINES[status].format(reason=reason),
        "",
        f"Parameters: {params}",
        f"Tuned on backbone `{preset.backbone}` (weights `{preset.checkpoint}`), {preset.num_frames} frames, "
        f"{preset.steps} steps. Settings rarely transfer to another frame or step count unchanged.",
        "",
        *_effects_table(candidate),
        "",
        "## Use it",
        "- vboost: `Preset.load('preset.yaml').build()` gives the method; "
        "`with method.attached(pipe): pipe(...)` applies it.",
        "- `python diffusers_vboost.py /path/to/local/pipeline` generates the tuning clips again (same prompts, seeds, "
        "size, frames, steps, guidance, dtype and fps; `--help` for other prompts or settings).",
    ]
    if "diffusers_native" in files:
        lines.append("- `diffusers_native.py` does the same with plain diffusers (no vboost needed).")
    lines += [f"- `{name.split(':', 1)[1]}`: read by `diffusers_native.py` (diffusers' own `save_pretrained` format)"
              for name in files if name.startswith("native:")]
    lines += ["", "## ComfyUI"]
    for node in comfy["nodes"]:
        if node["exported"]:
            values = ", ".join(f"`{key}` = {value!r}" for key, value in node["values"].items())
            lines.append(f"- **{node['node']}** ({node['package']}): {values} (workflow: `comfyui/{node['node']}.json`)")
        else:
            lines.append(f"- **{node['node']}** ({node['package']}): nothing exported")
        lines += [f"  - note: {note}" for note in node["notes"]]
    lines += [f"- {note}" for note in comfy["notes"]]
    return "\n".join(lines) + "\n"


def _effects_table(candidate: Candidate) -> list[str]:
    """Per record: the paired change vs the baseline on the search clips and on the held-out clips."""
    lines = ["| record | search clips: change [interval] | held-out clips: change [corrected interval] |", "|---|---|---|"]
    for record, search in candidate.search_effects.items():
        held_out: Effect | None = candidate.effects.get(record)
        lines.append(f"| {record} | {search.text()} | {held_out.text() if held_out else 'not validated'} |")
    return lines


def _index_readme(run: StudyRun, export: Export) -> str:
    decision = export.decision
    lines = [f"# Export of study `{run.name}`", "", f"Storage: `{run.storage}`; method `{run.method}`.", ""]
    if export.recommended is not None:
        knobs = ", ".join(f"{k}={v!r}" for k, v in decision.recommendation.knobs.items())
        lines += [f"**Use [`recommended/`](recommended/README.md): `{knobs}`** (trial {export.recommended.trial}).",
                  "", f"Why: {decision.reason}."]
    else:
        lines += [f"**No recommendation**: {decision.reason}."]
    if export.alternatives:
        lines += ["", "## Alternatives (not recommended)", "", "| trial | status | parameters | why not |", "|---|---|---|---|"]
        for item, candidate in zip(export.alternatives, [c for c in decision.candidates if c is not decision.recommendation]):
            params = ", ".join(f"{key}={value!r}" for key, value in item.preset.params.items())
            why = "; ".join(candidate.rejected) or "validation was off"
            lines.append(f"| [{item.trial}]({ALTERNATIVES_DIR}/trial_{item.trial:04d}/README.md) | {item.status} | {params} | {why} |")
    return "\n".join(lines) + "\n"
