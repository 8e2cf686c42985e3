"""Runnable Python files that generate a preset's tuning clips again on the user's own local diffusers pipeline.

Run with only the pipeline directory, each script generates the tuning prompts x seeds at the tuned setting: the
same frames the sweep generated, on the same device. ``diffusers_vboost.py`` goes through the backbone adapter the
sweep used (its prompt embeddings, CPU generator and uint8 rounding); ``diffusers_native.py`` restates that call in
plain diffusers where the method says how to set it there (its ``diffusers_code`` hook: FreeInit and FreeU on
AnimateDiff, guiders on the modular pipelines). ``docs/presets.md`` describes both.
"""

from __future__ import annotations

from typing import Any

from vboost.backbones import backbone_spec, get_backbone_class
from vboost.methods.base import Method
from vboost.methods.preset import Preset

# The generation settings a script takes, as vboost's GenerationDefaults names them, with their flag types.
_SETTING_TYPES = {
    "num_frames": "int", "height": "int", "width": "int", "steps": "int", "guidance": "float", "fps": "float",
}

# Shared by both scripts: what the tuned run generated with, and the command line that can change it.
_SETTING_BLOCK = '''
SETTING = {setting!r}  # None where the study did not record it (then the flag is required)
SETTING_TYPES = {types}
DTYPE = {dtype!r}
PROMPTS = {prompts!r}
SEEDS = {seeds!r}


def parse_args(argv, description):
    """The command line: the pipeline directory, then optional changes to the tuned setting."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("pipeline", help="local diffusers pipeline directory (save_pretrained layout)")
    parser.add_argument("--prompt", action="append", help="a prompt; repeat for several (default: the tuning prompts)")
    parser.add_argument("--seed", action="append", type=int, help="a seed; repeat for several (default: the tuning seeds)")
    for name, kind in SETTING_TYPES.items():
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=SETTING[name])
    parser.add_argument("--dtype", default=DTYPE, help="torch dtype name, e.g. bfloat16")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out-dir", default="clips", help="where p<prompt>_s<seed>.mp4 go")
    parser.add_argument("--save-frames", action="store_true", help="also write each clip's uint8 frames as .npy")
    args = parser.parse_args(argv)
    args.prompt, args.seed = args.prompt or PROMPTS, args.seed or SEEDS
    unset = [name for name in (*SETTING, "dtype", "prompt", "seed") if getattr(args, name) in (None, [])]
    missing = ["--" + name.replace("_", "-") for name in unset]
    if missing:
        parser.error("the preset does not record these; pass " + " ".join(missing))
    return args
'''

_VBOOST_SCRIPT = '''{header}
import argparse
from pathlib import Path

import numpy as np
import torch

from vboost.backbones import GenerationDefaults, get_backbone_class
{imports}
from vboost.sweep.artifacts import write_mp4

BACKBONE = {backbone!r}
METHOD = {constructor}
{setting_block}

def main(argv=None):
    args = parse_args(argv, __doc__.splitlines()[0])
    setting = GenerationDefaults(**{{name: getattr(args, name) for name in SETTING}})
    # The adapter the sweep generated with: same loading, prompt embeddings, generator and uint8 rounding.
    backbone = get_backbone_class(BACKBONE).from_pretrained(
        args.pipeline, setting, torch_dtype=getattr(torch, args.dtype), device=args.device
    )
    out = Path(args.out_dir)
    with METHOD.attached(backbone.pipe):
        for index, prompt in enumerate(args.prompt):
            for seed in args.seed:
                video = backbone.generate(prompt, seed)
                path = out / f"p{{index}}_s{{seed}}.mp4"
                write_mp4(path, video.frames, video.fps)
                if args.save_frames:
                    np.save(path.with_suffix(".npy"), video.frames)
                print(path)


if __name__ == "__main__":
    main()
'''

# A plain-diffusers script: the pipeline's own loading and call ({load}, {generate}), then the method's code.
_NATIVE_SCRIPT = '''{header}
import argparse
from pathlib import Path

import numpy as np
import torch
from diffusers import {pipeline_imports}
from diffusers.utils import export_to_video
{imports}
HERE = Path(__file__).resolve().parent
{setting_block}
{generate}

def main(argv=None):
    args = parse_args(argv, __doc__.splitlines()[0])
{load}
    # The tuned method, as plain diffusers sets it.
{apply}
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for index, prompt in enumerate(args.prompt):
        for seed in args.seed:
            frames = generate(pipe, prompt, seed, args)
            path = out / f"p{{index}}_s{{seed}}.mp4"
            export_to_video(list(frames / 255.0), str(path), fps=args.fps)
            if args.save_frames:
                np.save(path.with_suffix(".npy"), frames)
            print(path)


if __name__ == "__main__":
    main()
'''

_ANIMATEDIFF_GENERATE = '''
def generate(pipe, prompt, seed, args):
    """One clip as uint8 [T, H, W, 3], called as vboost's sweep calls the pipeline."""
    do_cfg = args.guidance > 1
    embeds, negative = pipe.encode_prompt(prompt, pipe._execution_device, 1, do_cfg, negative_prompt=None)
    output = pipe(
        prompt_embeds=embeds, negative_prompt_embeds=negative, num_frames=args.num_frames, height=args.height,
        width=args.width, num_inference_steps=args.steps, guidance_scale=args.guidance,
        generator=torch.Generator("cpu").manual_seed(seed), output_type="np",
    )
    return (np.asarray(output.frames[0]) * 255).round().astype(np.uint8)
'''

_ANIMATEDIFF_LOAD = '''    pipe = AnimateDiffPipeline.from_pretrained(
        args.pipeline, torch_dtype=getattr(torch, args.dtype), use_safetensors=True, local_files_only=True
    )
    pipe.to(args.device)
    pipe.set_progress_bar_config(disable=True)'''

_MODULAR_GENERATE = '''
def generate(pipe, prompt, seed, args):
    """One clip as uint8 [T, H, W, 3]: the pipeline's own blocks, from the prompt (the empty negative prompt)."""
    videos = pipe(
        prompt=prompt, num_frames=args.num_frames, height=args.height, width=args.width,
        num_inference_steps=args.steps, generator=torch.Generator("cpu").manual_seed(seed),
        output="videos", output_type="np",
    )
    return (np.clip(videos[0], 0.0, 1.0) * 255).round().astype(np.uint8)
'''

_MODULAR_LOAD = '''    pipe = {pipeline_class}(pretrained_model_name_or_path=args.pipeline, local_files_only=True)
    pipe.load_components(torch_dtype=getattr(torch, args.dtype), local_files_only=True)
    pipe.to(args.device)
    pipe.set_progress_bar_config(disable=True)
    # The untouched model's guiders (guider component: scale; --guidance for the first), which a guider method replaces.
    base_guiders = {base_guiders!r}
    pipe.update_components(**{{name: ClassifierFreeGuidance(guidance_scale=args.guidance if name == "guider" else scale)
                               for name, scale in base_guiders.items()}})'''


def vboost_snippet(preset: Preset, method: Method) -> str:
    """``diffusers_vboost.py``: ``method`` (built from ``preset``) attached through vboost's backbone adapter.

    Returns the script's text; run with the pipeline directory alone it generates ``preset``'s tuning clips.
    Raises ``ValueError`` when the preset records no backbone family (the script could not pick an adapter).
    """
    if preset.backbone is None:
        raise ValueError("a script needs the preset's backbone family, which this preset does not record")
    constructor, imports = method.code()
    return _VBOOST_SCRIPT.format(
        header=_header(preset, "with vboost", "diffusers_vboost.py"),
        imports="\n".join(imports),
        backbone=preset.backbone,
        constructor=constructor,
        setting_block=_setting_block(preset),
    )


def diffusers_native(preset: Preset, method: Method) -> tuple[str, dict[str, str]] | None:
    """``diffusers_native.py`` and the files it reads (path relative to the script -> text), generating the same
    clips with plain diffusers; ``None`` when the method has no plain-diffusers form (its ``diffusers_code``) or the
    backbone no plain-diffusers script.

    The scripts: AnimateDiff text-to-video (FreeInit, FreeU; SparseCtrl clips depend on vboost's conditioning image,
    so they have none) and the modular pipelines (guiders, loaded from the ``guider_config.json`` files beside it).
    """
    code = None if preset.backbone is None else method.diffusers_code(preset)
    if code is None:
        return None
    if preset.backbone == "animatediff":
        pipeline_imports, generate, load = "AnimateDiffPipeline", _ANIMATEDIFF_GENERATE, _ANIMATEDIFF_LOAD
    elif backbone_spec(preset.backbone).modular:
        pipeline_class = get_backbone_class(preset.backbone).pipeline_class.__name__
        pipeline_imports, generate = f"ClassifierFreeGuidance, {pipeline_class}", _MODULAR_GENERATE
        load = _MODULAR_LOAD.format(pipeline_class=pipeline_class, base_guiders=_base_guiders(preset))
    else:
        return None
    script = _NATIVE_SCRIPT.format(
        header=_header(preset, "with plain diffusers (no vboost needed)", "diffusers_native.py"),
        pipeline_imports=pipeline_imports,
        imports="\n".join(code.imports),
        generate=generate,
        load=load,
        apply="\n".join(f"    {line}" for line in code.apply),
        setting_block=_setting_block(preset),
    )
    return script, dict(code.files)


def diffusers_native_snippet(preset: Preset) -> str | None:
    """The text of ``diffusers_native.py`` for ``preset`` (see :func:`diffusers_native`), or ``None``."""
    native = diffusers_native(preset, preset.build())
    return None if native is None else native[0]


def _base_guiders(preset: Preset) -> dict[str, float]:
    """The untouched model's guider scales per guider component, as the backbone adapter sets them."""
    from vboost.methods.guiders import guider_component

    adapter = get_backbone_class(preset.backbone)
    return {
        guider_component(name): adapter.base_guidance(guider_component(name), preset.guidance)
        for name in backbone_spec(preset.backbone).denoisers
    }


def _setting_block(preset: Preset) -> str:
    setting: dict[str, Any] = {name: getattr(preset, name) for name in _SETTING_TYPES}
    return _SETTING_BLOCK.format(
        setting=setting, dtype=preset.dtype, prompts=preset.prompts, seeds=preset.seeds,
        types="{" + ", ".join(f"{name!r}: {kind}" for name, kind in _SETTING_TYPES.items()) + "}",
    )


def _header(preset: Preset, how: str, script: str) -> str:
    tuned = ", ".join(
        part for part in (
            preset.backbone and f"backbone {preset.backbone}",
            preset.checkpoint and f"weights {preset.checkpoint}",
            preset.num_frames and f"{preset.num_frames} frames",
            preset.height and preset.width and f"{preset.width}x{preset.height}",
            preset.steps and f"{preset.steps} steps",
            preset.guidance is not None and f"guidance {preset.guidance}",
            preset.dtype,
            preset.fps and f"{preset.fps} fps",
        ) if part
    )
    source = f"study {preset.study!r}, trial {preset.trial}" if preset.study is not None else "a vboost preset"
    return (
        f'"""Generate the clips of {preset.method} as tuned by vboost ({source}), {how}.\n\n'
        f"Tuned on: {tuned or 'unknown setting'}.\n"
        "Run with only the pipeline directory, this generates the tuning prompts x seeds at that setting, the frames\n"
        "the sweep generated (on the same device); flags change any of it.\n"
        f"Usage: python {script} /path/to/local/diffusers/pipeline [--prompt TEXT] [--seed N] [--out-dir DIR]\n"
        '"""\n'
    )
