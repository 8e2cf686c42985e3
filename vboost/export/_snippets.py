"""Runnable Python files that generate a preset's tuning clips again on the user's own local diffusers pipeline.

Run with only the pipeline directory, each script generates the tuning prompts x seeds at the tuned setting: the
same frames the sweep generated, on the same device. ``diffusers_vboost.py`` goes through the backbone adapter the
sweep used (its prompt embeddings, CPU generator and uint8 rounding); ``diffusers_native.py`` (FreeInit on
AnimateDiff) restates that call in plain diffusers. ``docs/presets.md`` describes both.
"""

from __future__ import annotations

from typing import Any

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
from vboost.methods import {method_class}
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

_NATIVE_SCRIPT = '''{header}
import argparse
from pathlib import Path

import numpy as np
import torch
from diffusers import AnimateDiffPipeline
from diffusers.utils import export_to_video

FREE_INIT = {free_init!r}  # pipe.enable_free_init's arguments
{setting_block}

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


def main(argv=None):
    args = parse_args(argv, __doc__.splitlines()[0])
    pipe = AnimateDiffPipeline.from_pretrained(
        args.pipeline, torch_dtype=getattr(torch, args.dtype), use_safetensors=True, local_files_only=True
    )
    pipe.to(args.device)
    pipe.set_progress_bar_config(disable=True)
    pipe.enable_free_init(**FREE_INIT)
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


def vboost_snippet(preset: Preset, method: Method) -> str:
    """``diffusers_vboost.py``: ``method`` (built from ``preset``) attached through vboost's backbone adapter.

    Returns the script's text; run with the pipeline directory alone it generates ``preset``'s tuning clips.
    Raises ``ValueError`` when the preset records no backbone family (the script could not pick an adapter).
    """
    if preset.backbone is None:
        raise ValueError("a script needs the preset's backbone family, which this preset does not record")
    args = ", ".join(f"{key}={value!r}" for key, value in preset.params.items())
    method_class = type(method).__name__
    return _VBOOST_SCRIPT.format(
        header=_header(preset, "with vboost", "diffusers_vboost.py"),
        method_class=method_class,
        backbone=preset.backbone,
        constructor=f"{method_class}({args})",
        setting_block=_setting_block(preset),
    )


def diffusers_native_snippet(preset: Preset) -> str | None:
    """``diffusers_native.py``: the same clips with plain diffusers, or ``None`` when diffusers has no equivalent.

    Only FreeInit on AnimateDiff text-to-video has one (``pipe.enable_free_init``, whose arguments vboost's FreeInit
    knobs mirror); SparseCtrl clips depend on vboost's conditioning image, so they have none.
    """
    if preset.method != "free_init" or preset.backbone != "animatediff":
        return None
    return _NATIVE_SCRIPT.format(
        header=_header(preset, "with plain diffusers (no vboost needed)", "diffusers_native.py"),
        free_init=dict(preset.params),
        setting_block=_setting_block(preset),
    )


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
