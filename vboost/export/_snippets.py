"""Runnable Python files that apply a preset to the user's own local diffusers pipeline."""

from __future__ import annotations

from vboost.methods.base import Method
from vboost.methods.preset import Preset

# The parts every snippet shares: load a local pipeline, generate inside `apply(pipe)`, write an mp4.
_COMMON = '''
import argparse
{stdlib}
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import export_to_video
{imports}

NUM_FRAMES = {num_frames!r}  # what the sweep generated with; the setting is tuned for this length
STEPS = {steps!r}


{apply}


def load_pipeline(path, dtype=None, device=None):
    """The diffusers pipeline saved in the local directory ``path`` (nothing is downloaded)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, dtype) if dtype else (torch.bfloat16 if device == "cuda" else torch.float32)
    pipe = DiffusionPipeline.from_pretrained(path, torch_dtype=dtype, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def generate(pipe, prompt, *, seed=0, num_frames=NUM_FRAMES, steps=STEPS, **pipe_kwargs):
    """Frames ``[T, H, W, 3]`` (float in [0, 1]) of one clip, with the preset applied."""
    kwargs = {{key: value for key, value in pipe_kwargs.items() if value is not None}}
    if num_frames is not None:
        kwargs["num_frames"] = num_frames
    if steps is not None:
        kwargs["num_inference_steps"] = steps
    generator = torch.Generator("cpu").manual_seed(seed)
    with apply(pipe):
        return pipe(prompt=prompt, generator=generator, output_type="np", **kwargs).frames[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline", help="local diffusers pipeline directory (save_pretrained layout)")
    parser.add_argument("--prompt", default="a red panda eating bamboo, cinematic")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-frames", type=int, default=NUM_FRAMES)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--guidance", type=float)
    parser.add_argument("--dtype", help="torch dtype name, e.g. bfloat16")
    parser.add_argument("--fps", type=int, default=8)
    parser.add_argument("--out", default="output.mp4")
    args = parser.parse_args(argv)
    pipe = load_pipeline(args.pipeline, args.dtype)
    frames = generate(
        pipe, args.prompt, seed=args.seed, num_frames=args.num_frames, steps=args.steps,
        height=args.height, width=args.width, guidance_scale=args.guidance,
    )
    export_to_video(list(frames), args.out, fps=args.fps)
    print(f"wrote {{args.out}}")


if __name__ == "__main__":
    main()
'''

_VBOOST_APPLY = '''METHOD = {constructor}


def apply(pipe):
    """Attach the method for the duration of a ``with`` block; the pipeline is restored after it."""
    return METHOD.attached(pipe)'''

_FREE_INIT_APPLY = '''FREE_INIT = {kwargs!r}


@contextlib.contextmanager
def apply(pipe):
    """diffusers' own FreeInit (AnimateDiff pipelines), switched off again after the block."""
    pipe.enable_free_init(**FREE_INIT)
    try:
        yield pipe
    finally:
        pipe.disable_free_init()'''


def _header(preset: Preset, how: str) -> str:
    tuned = ", ".join(
        part for part in (
            preset.backbone and f"backbone {preset.backbone}",
            preset.checkpoint and f"weights {preset.checkpoint}",
            preset.num_frames and f"{preset.num_frames} frames",
            preset.steps and f"{preset.steps} steps",
        ) if part
    )
    source = f"study {preset.study!r}, trial {preset.trial}" if preset.study is not None else "a vboost preset"
    return (
        f'"""Generate a clip with {preset.method} as tuned by vboost ({source}), {how}.\n\n'
        f"Tuned on: {tuned or 'unknown setting'}.\n"
        "Usage: python THIS_FILE /path/to/local/diffusers/pipeline --prompt \"...\" [--num-frames N --steps S]\n"
        '"""\n'
    )


def vboost_snippet(preset: Preset, method: Method) -> str:
    """A script applying ``method`` (built from ``preset``) with ``vboost.methods`` around ``pipe(...)``."""
    args = ", ".join(f"{key}={value!r}" for key, value in preset.params.items())
    cls = type(method).__name__
    body = _COMMON.format(
        stdlib="",
        imports=f"from vboost.methods import {cls}",
        num_frames=preset.num_frames,
        steps=preset.steps,
        apply=_VBOOST_APPLY.format(constructor=f"{cls}({args})"),
    )
    return _header(preset, "with vboost.methods") + body


def diffusers_native_snippet(preset: Preset) -> str | None:
    """The same setting with plain diffusers, or ``None`` when diffusers has no equivalent of the method.

    Only FreeInit has one (``pipe.enable_free_init``, whose arguments vboost's FreeInit knobs mirror).
    """
    if preset.method != "free_init":
        return None
    body = _COMMON.format(
        stdlib="import contextlib\n", imports="", num_frames=preset.num_frames, steps=preset.steps, apply=_FREE_INIT_APPLY.format(kwargs=dict(preset.params)))
    return _header(preset, "with plain diffusers (no vboost needed)") + body
