"""What every backbone adapter shares: loading, the denoiser, and deterministic generation."""

from __future__ import annotations

import abc
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch


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
    """One diffusers pipeline family: build or load it, name its denoiser, generate clips.

    ``family`` is the registry key (``conf/backbone/*.yaml`` names it); ``denoiser_class`` is the diffusers
    class name of its denoiser, so method compatibility is known before any weight loads.
    """

    family: ClassVar[str]
    pipeline_class: ClassVar[type]
    denoiser_class: ClassVar[str]
    # Frames the video VAE folds into one latent frame (1: the denoiser sees every frame).
    temporal_compression: ClassVar[int] = 1
    # The pipeline component holding the denoiser (its config sits in ``<weights>/<subfolder>/config.json``).
    denoiser_subfolder: ClassVar[str] = "transformer"

    def __init__(self, pipe: Any, defaults: GenerationDefaults) -> None:
        self.pipe = pipe
        self.defaults = defaults

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.pipe.transformer if hasattr(self.pipe, "transformer") else self.pipe.unet

    @classmethod
    def latent_frames(cls, num_frames: int, weights: str | os.PathLike | None = None) -> int:
        """The frame count F that the denoiser's attention sees for a clip of ``num_frames``.

        ``(num_frames - 1) // temporal_compression + 1`` latent frames, divided by the denoiser's temporal patch
        size and rounded up (pipelines pad the latents to a whole patch, as CogVideoX 1.5's does). The patch size
        is read from the checkpoint's denoiser config when ``weights`` is given (nothing is loaded), and is 1 for
        the tiny models. Raises ``FileNotFoundError`` naming the config file when it is missing.
        """
        patch = 1
        if weights is not None:
            path = Path(weights).expanduser() / cls.denoiser_subfolder / "config.json"
            if not path.is_file():
                raise FileNotFoundError(f"{str(path)!r} not found: {str(weights)!r} is not a diffusers {cls.family} pipeline")
            patch = cls._temporal_patch(json.loads(path.read_text()))
        return -(-((num_frames - 1) // cls.temporal_compression + 1) // patch)

    @staticmethod
    def _temporal_patch(denoiser_config: dict[str, Any]) -> int:
        return denoiser_config.get("patch_size_t") or 1

    @property
    def device(self) -> torch.device:
        return self.denoiser.device

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        defaults: GenerationDefaults,
        *,
        torch_dtype: torch.dtype = torch.bfloat16,
        device: str | torch.device = "cpu",
        **load_kwargs: Any,
    ) -> "Backbone":
        """Load the pipeline from a local diffusers directory (never from a hub).

        Raises ``FileNotFoundError`` naming the path when it is not a diffusers pipeline directory.
        """
        path = Path(path).expanduser()
        if not (path / "model_index.json").is_file():
            raise FileNotFoundError(f"weights directory {str(path)!r} has no model_index.json (expected a local diffusers pipeline)")
        pipe = cls.pipeline_class.from_pretrained(
            path, torch_dtype=torch_dtype, use_safetensors=True, local_files_only=True, **load_kwargs
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

    def save_pretrained(self, path: str | os.PathLike) -> None:
        self.pipe.save_pretrained(path, safe_serialization=True)

    def _generator(self, seed: int) -> torch.Generator:
        # Generators on the CPU give the same noise on every device, so a seed means one clip everywhere.
        return torch.Generator("cpu").manual_seed(seed)
