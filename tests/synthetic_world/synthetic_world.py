"""A synthetic world with a known truth, plugged into vboost only through its public extension points.

``imports=[synthetic_world]`` registers a backbone (family ``synthetic``) and a method (``synthetic_knob``);
``hydra.searchpath=[file://<this dir>/conf]`` adds their configs. Nothing here edits vboost.

The backbone's clips flicker: frame ``t`` is a grey background plus ``(t odd) * D``, where the integer image ``D``
has mean ``a``, so VBench's temporal flickering of the clip is exactly ``(255 - mean(D)) / 255``. The flicker
amplitude of clip (prompt, seed) under knob value ``k`` is

    a = base(prompt, seed) * (1 - depth * exp(-((k - optimum) / width) ** 2)) * (1 + noise * z(prompt, seed, k))

``base`` is a per-clip level in [10, 30]; the bump is the knob's true effect (``depth = 0``: none); ``z`` is a
standard normal draw fixed per (prompt, seed, k), so every setting perturbs every clip by a zero-mean amount (the
noise that makes the best of many searched settings look better than it is). The untouched model (no method) has
``a = base``, the same in every world. ``world`` seeds ``z``, so studies of different worlds are independent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Any, ClassVar

import numpy as np
import torch

from vboost.backbones import BACKBONES, Backbone, GenerationDefaults, Video
from vboost.methods import METHODS, Method

BACKGROUND = 100


def _rng(*key: Any) -> np.random.Generator:
    digest = hashlib.sha256(repr(key).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def base_amplitude(prompt: str, seed: int) -> float:
    """The untouched model's flicker amplitude of a clip."""
    return 10.0 + 20.0 * float(_rng("base", prompt, seed).random())


def true_gain(k: float, depth: float, optimum: float, width: float) -> float:
    """The knob's true relative reduction of the flicker amplitude at ``k``."""
    return depth * math.exp(-(((k - optimum) / width) ** 2))


@dataclasses.dataclass
class SyntheticKnob(Method):
    """A knob with a known effect (see the module docstring); attaching sets it on the synthetic pipeline."""

    strength: float
    depth: float = 0.3
    optimum: float = 0.6
    width: float = 0.15
    noise: float = 0.05
    world: int = 0

    name: ClassVar[str] = "synthetic_knob"
    supported_denoisers: ClassVar[tuple[str, ...]] = ("SyntheticDenoiser",)

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1]; got {self.strength!r}")

    def amplitude(self, prompt: str, seed: int) -> float:
        base = base_amplitude(prompt, seed)
        z = float(_rng("z", self.world, prompt, seed, round(self.strength, 12)).standard_normal())
        return base * (1.0 - true_gain(self.strength, self.depth, self.optimum, self.width)) * (1.0 + self.noise * z)

    def _attach(self, target: Any, denoiser: torch.nn.Module, handle: Any) -> None:
        target.knob = self
        handle.on_detach(lambda: setattr(target, "knob", None))


class SyntheticDenoiser(torch.nn.Module):
    """Stands where a diffusers transformer would: methods find the pipeline's denoiser by its class name."""


class _Scheduler:
    """The two calls vboost's step tracking follows."""

    timesteps: list[int] = []

    def set_timesteps(self, num_steps: int) -> None:
        self.timesteps = list(range(num_steps))

    def step(self) -> None:
        pass


class SyntheticPipeline:
    def __init__(self) -> None:
        self.transformer = SyntheticDenoiser()
        self.scheduler = _Scheduler()
        self.knob: SyntheticKnob | None = None

    def to(self, device: Any) -> "SyntheticPipeline":
        return self


class SyntheticBackbone(Backbone):
    """Clips whose flicker amplitude the attached :class:`SyntheticKnob` sets (the untouched model: ``base``)."""

    family = "synthetic"
    pipeline_class = SyntheticPipeline
    denoiser_class = "SyntheticDenoiser"

    @classmethod
    def tiny(cls, *, seed: int = 0) -> "SyntheticBackbone":
        defaults = GenerationDefaults(num_frames=8, height=16, width=16, steps=1, guidance=1.0, fps=8)
        return cls(SyntheticPipeline(), defaults)

    def generate(self, prompt: str, seed: int, **kwargs: Any) -> Video:
        d, knob = self.defaults, self.pipe.knob
        self.pipe.scheduler.set_timesteps(d.steps)
        amplitude = base_amplitude(prompt, seed) if knob is None else knob.amplitude(prompt, seed)
        pixels = d.height * d.width * 3
        # D: floor(a) everywhere, plus 1 on a fixed share of pixels, so that mean(D) is a to 1 / pixels.
        extra = (np.arange(pixels) < round((amplitude - math.floor(amplitude)) * pixels)).astype(np.int64)
        delta = (math.floor(amplitude) + _rng("pattern").permutation(extra)).reshape(d.height, d.width, 3)
        frames = np.full((d.num_frames, d.height, d.width, 3), BACKGROUND, dtype=np.int64)
        frames[1::2] += delta
        return Video(frames=frames.astype(np.uint8), fps=d.fps)


BACKBONES[SyntheticBackbone.family] = SyntheticBackbone
METHODS[SyntheticKnob.name] = SyntheticKnob
