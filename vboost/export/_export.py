"""Write the best setting (or each Pareto member) of a sweep as preset, snippets, ComfyUI values and a README."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

from optuna.trial import FrozenTrial

from vboost.export._comfyui import comfyui_export, workflow_fragment
from vboost.export._secrets import SecretScrubber
from vboost.export._snippets import diffusers_native_snippet, vboost_snippet
from vboost.export._study import StudyRun, open_study_run
from vboost.methods.preset import SETTING_FIELDS, ObjectiveValue, Preset


@dataclasses.dataclass
class ExportedSetting:
    """What ``export_study`` wrote for one trial: its preset and the files, by kind."""

    trial: int
    preset: Preset
    files: dict[str, Path]


def preset_for_trial(run: StudyRun, trial: FrozenTrial) -> Preset:
    """The preset of ``trial``: the study's method with the trial's knobs (as the method takes them, and as searched)
    and the generation setting the sweep recorded in the study (``SETTING_FIELDS``; ``None`` where not recorded).

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
    )


def export_study(
    study_or_dir: str | os.PathLike,
    *,
    storage: str | None = None,
    study_name: str | None = None,
    out: str | os.PathLike | None = None,
) -> list[ExportedSetting]:
    """Export the best trial (one objective) or every Pareto member of a finished sweep.

    Writes ``<out>/trial_<n>/`` with ``preset.yaml``, ``preset.json``, ``diffusers_vboost.py``,
    ``diffusers_native.py`` (FreeInit on AnimateDiff), ``comfyui.json``, ``comfyui/<Node>.json`` (a ComfyUI workflow
    per node that takes the setting) and ``README.md``, plus ``<out>/README.md``.
    ``out`` defaults to ``<study dir>/export``; a ``trial_<n>/`` there from an earlier export whose trial is no
    longer best is removed. A storage password never reaches a written file.
    Returns one :class:`ExportedSetting` per trial; raises ``ValueError`` when there is no best setting to export.
    """
    run = open_study_run(study_or_dir, storage=storage, study_name=study_name)
    trials = run.best_trials()
    if not trials:
        raise ValueError(f"study {run.name!r} has nothing to export: no completed trial, or none that the baseline does not dominate")
    if out is None:
        if run.directory is None:
            raise ValueError("pass --out DIR: the study was given by storage URL and has no output directory")
        out = run.directory / "export"
    out = Path(out)
    best = run.representative_best()
    exported = [_export_trial(run, trial, out / f"trial_{trial.number:04d}") for trial in trials]
    _write(out / "README.md", _index_readme(run, exported, best.number if best else None), run.scrubber)
    current = {item.files["readme"].parent for item in exported}
    for stale in out.glob("trial_*"):  # a resumed study's front may have moved
        if stale.is_dir() and stale not in current:
            shutil.rmtree(stale, ignore_errors=True)
    return exported


def _export_trial(run: StudyRun, trial: FrozenTrial, directory: Path) -> ExportedSetting:
    preset = preset_for_trial(run, trial)
    method = preset.build()  # fail here, naming the bad knob, rather than in the user's script
    scrub = run.scrubber
    files = {
        "preset_yaml": _write(directory / "preset.yaml", preset.to_yaml(), scrub),
        "preset_json": _write(directory / "preset.json", preset.to_json(), scrub),
        "diffusers_vboost": _write(directory / "diffusers_vboost.py", vboost_snippet(preset, method), scrub),
    }
    native = diffusers_native_snippet(preset)
    if native is not None:
        files["diffusers_native"] = _write(directory / "diffusers_native.py", native, scrub)
    comfy = comfyui_export(preset)
    files["comfyui"] = _write(directory / "comfyui.json", json.dumps(comfy.to_dict(), indent=2) + "\n", scrub)
    for node in comfy.nodes:
        if node.values is not None:  # a UI workflow holding the node, to load or drag into ComfyUI
            name = node.node.class_name
            fragment = json.dumps(workflow_fragment(node), indent=2) + "\n"
            files[f"comfyui_{name}"] = _write(directory / "comfyui" / f"{name}.json", fragment, scrub)
    files["readme"] = _write(directory / "README.md", _trial_readme(run, preset, comfy.to_dict(), sorted(files)), scrub)
    return ExportedSetting(trial=trial.number, preset=preset, files=files)


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


def _trial_readme(run: StudyRun, preset: Preset, comfy: dict, files: list[str]) -> str:
    params = ", ".join(f"`{key}={value!r}`" for key, value in preset.params.items())
    lines = [
        f"# {preset.method}: study `{run.name}`, trial {preset.trial}",
        "",
        f"Parameters: {params}",
        f"Tuned on backbone `{preset.backbone}` (weights `{preset.checkpoint}`), {preset.num_frames} frames, "
        f"{preset.steps} steps. Settings rarely transfer to another frame or step count unchanged.",
        "",
        *_objective_table(preset),
        "",
        "## Use it",
        "- vboost: `Preset.load('preset.yaml').build()` gives the method; "
        "`with method.attached(pipe): pipe(...)` applies it.",
        "- `python diffusers_vboost.py /path/to/local/pipeline` generates the tuning clips again (same prompts, seeds, "
        "size, frames, steps, guidance, dtype and fps; `--help` for other prompts or settings).",
    ]
    if "diffusers_native" in files:
        lines.append("- `diffusers_native.py` does the same with plain diffusers (`pipe.enable_free_init`).")
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


def _index_readme(run: StudyRun, exported: list[ExportedSetting], best: int | None) -> str:
    lines = [
        f"# Export of study `{run.name}`",
        "",
        f"Storage: `{run.storage}`; method `{run.method}`; "
        f"{'best trial' if len(run.objectives) == 1 else f'{len(exported)} Pareto-optimal settings'}.",
        "",
        "| trial | parameters | " + " | ".join(o.name for o in run.objectives) + " |",
        "|---|---|" + "---|" * len(run.objectives),
    ]
    for item in exported:
        mark = " (shown as best)" if item.trial == best and len(exported) > 1 else ""
        params = ", ".join(f"{key}={value!r}" for key, value in item.preset.params.items())
        values = " | ".join(f"{o.value:.4g}" for o in item.preset.objectives)
        lines.append(f"| [{item.trial}](trial_{item.trial:04d}/README.md){mark} | {params} | {values} |")
    baseline = run.baseline
    if baseline is not None and baseline.values:
        lines.append(f"| baseline ({baseline.number}) | no method | " + " | ".join(f"{v:.4g}" for v in baseline.values) + " |")
    return "\n".join(lines) + "\n"
