"""What every backbone adapter shares: loading, the denoiser, and deterministic generation."""

from __future__ import annotations

import abc
import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from vboost.geometry import ClipGeometry
from vboost.backbones._specs import BackboneSpec


@dataclasses.dataclass
class Video:
    """A generated clip: ``frames`` uint8 ``[T, H, W, 3]`` and its frame rate."""

    frames: np.ndarray
    fps: float


@dataclasses.dataclass(frozen=True)
class GenerationDefaults:
    """The usual settings of a checkpoint (what its model card generates with)."""

    num_frames: int
    height: int
    width: int
    steps: int
    guidance: float
    fps: float


class Backbone(abc.ABC):
    """One pipeline family: build or load it, name its denoiser, generate clips.

    A built-in adapter names its :class:`~vboost.backbones.BackboneSpec` (``spec``), which gives ``family`` (the
    registry key ``conf/backbone/*.yaml`` names), ``denoiser_class`` (the class name of its denoiser, so method
    compatibility is known before any weight loads), ``denoiser_subfolder`` and its clip geometry. A class without a
    spec (e.g. one a user registers) sets those attributes itself.
    """

    spec: ClassVar[BackboneSpec | None] = None
    family: ClassVar[str]
    pipeline_class: ClassVar[type]
    denoiser_class: ClassVar[str]
    # Without a spec: frames the video VAE folds into one latent frame (1: the denoiser sees every frame).
    temporal_compression: ClassVar[int] = 1
    # The pipeline component holding the denoiser (its config sits in ``<weights>/<subfolder>/config.json``).
    denoiser_subfolder: ClassVar[str] = "transformer"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.spec is not None:
            cls.family, cls.denoiser_class, cls.denoiser_subfolder = (
                cls.spec.family, cls.spec.denoiser_class, cls.spec.denoiser_subfolder
            )

    def __init__(self, pipe: Any, defaults: GenerationDefaults) -> None:
        self.pipe = pipe
        self.defaults = defaults

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.pipe.transformer if hasattr(self.pipe, "transformer") else self.pipe.unet

    @classmethod
    def latent_frames(cls, num_frames: int, weights: str | os.PathLike | None = None) -> int:
        """The frame count F that the denoiser's attention sees for a clip of ``num_frames`` (the checkpoint's
        temporal patch read from its config when ``weights`` is given; nothing is loaded). Raises
        ``FileNotFoundError`` naming the config file when it is missing."""
        spec = BackboneSpec.of_class(cls)
        return spec.rule.geometry(num_frames, 1, 1, spec.denoiser_config(weights)).latent_frames

    def check_clip(self, num_frames: int, height: int, width: int) -> ClipGeometry:
        """The clip's geometry under the loaded denoiser's config; raises ``ValueError`` naming the setting and the
        nearest valid values when this model cannot take it."""
        return BackboneSpec.of_class(type(self)).rule.check(self.family, num_frames, height, width, dict(self.denoiser.config))

    @property
    def device(self) -> torch.device:
        """Where the pipeline computes: the accelerator its offloading hooks load onto, else its denoiser's device."""
        execution = getattr(self.pipe, "_execution_device", None)
        return execution if isinstance(execution, torch.device) else self.denoiser.device

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        defaults: GenerationDefaults,
        *,
        torch_dtype: torch.dtype = torch.bfloat16,
        device: str | torch.device = "cpu",
        component_dtypes: Mapping[str, torch.dtype] | None = None,
        **load_kwargs: Any,
    ) -> "Backbone":
        """Load the pipeline from a local diffusers directory (never from a hub), each component in ``torch_dtype``
        unless ``component_dtypes`` names its own (e.g. ``{"vae": torch.float32}``).

        Raises ``FileNotFoundError`` naming the path when it is not a diffusers pipeline directory.
        """
        path = Path(path).expanduser()
        if not (path / "model_index.json").is_file():
            raise FileNotFoundError(f"weights directory {str(path)!r} has no model_index.json (expected a local diffusers pipeline)")
        dtypes = {"default": torch_dtype, **component_dtypes} if component_dtypes else torch_dtype
        pipe = cls.pipeline_class.from_pretrained(
            path, torch_dtype=dtypes, use_safetensors=True, local_files_only=True, **load_kwargs
        )
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, defaults)

    @classmethod
    @abc.abstractmethod
    def tiny(cls, *, seed: int = 0) -> "Backbone":
        """A random-weight pipeline of this family with the real module names, built in code in seconds."""

    @abc.abstractmethod
    def generate(
        self,
        prompt: str,
        seed: int,
        *,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        **kwargs: Any,
    ) -> Video:
        """One clip for ``prompt``; the same seed on the same device gives the same frames."""

    def generate_batch(self, prompts: Sequence[str], seeds: Sequence[int], **kwargs: Any) -> list[Video]:
        """One clip per pair ``(prompts[i], seeds[i])``, in order, each the clip ``generate(prompts[i], seeds[i],
        **kwargs)`` gives (to float rounding).

        The built-in adapters make them in one pipeline call, every clip from its own noise generator, with the
        methods' statistics kept per clip; the caller sizes the batch to the memory it has (``backbone.batch_size``
        in a sweep config). This default, for adapters that do not batch, makes them one by one. Raises
        ``ValueError`` when the two lists are empty or differ in length.
        """
        check_batch(prompts, seeds)
        return [self.generate(prompt, seed, **kwargs) for prompt, seed in zip(prompts, seeds)]

    def save_pretrained(self, path: str | os.PathLike) -> None:
        self.pipe.save_pretrained(path, safe_serialization=True)

    def _generator(self, seed: int) -> torch.Generator:
        # Generators on the CPU give the same noise on every device, so a seed means one clip everywhere.
        return torch.Generator("cpu").manual_seed(seed)

    def _generators(self, seeds: Sequence[int]) -> torch.Generator | list[torch.Generator]:
        """One generator per clip (diffusers draws each clip's noise from its own), a bare one for a single clip."""
        generators = [self._generator(seed) for seed in seeds]
        return generators[0] if len(generators) == 1 else generators


class BatchedBackbone(Backbone):
    """An adapter whose pipeline generates several clips in one call: ``generate`` is a batch of one."""

    def generate(self, prompt: str, seed: int, **kwargs: Any) -> Video:
        """One clip for ``prompt`` (:meth:`generate_batch` of one); the same seed on the same device gives the same
        frames. Raises ``ValueError`` naming a setting the model cannot take, before any denoising."""
        return self.generate_batch([prompt], [seed], **kwargs)[0]

    @abc.abstractmethod
    def generate_batch(self, prompts: Sequence[str], seeds: Sequence[int], **kwargs: Any) -> list[Video]:
        """As :meth:`Backbone.generate_batch`, in one pipeline call."""


def stack_clips(tensors: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
    """Per-clip inputs (one prompt's embeddings each) stacked along the batch; ``None`` where there are none."""
    if tensors[0] is None:
        return None
    return torch.cat(list(tensors)) if len(tensors) > 1 else tensors[0]


def check_batch(prompts: Sequence[str], seeds: Sequence[int]) -> None:
    """Raise ``ValueError`` naming the lengths unless ``prompts`` and ``seeds`` pair up, one clip each, and are not
    empty."""
    if len(prompts) != len(seeds) or not prompts:
        raise ValueError(f"generate_batch needs one seed per prompt and at least one clip; got {len(prompts)} prompts "
                         f"and {len(seeds)} seeds")
