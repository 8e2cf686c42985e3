"""What the per-family Enhance-A-Video processors share: call state, the step gate and the score."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from vboost.methods.base import MethodHandle
from vboost.ops.feta import cross_frame_intensity, score_from_intensity


@dataclasses.dataclass
class FetaState:
    """Shared by every swapped processor of one attach: the knobs, the handle and the current latent frames."""

    weight: float
    start: float
    end: float
    handle: MethodHandle
    # Post-patchify latent frame count of the denoiser call in progress (set by a forward pre-hook).
    num_frames: int | None = None


@dataclasses.dataclass(frozen=True)
class Family:
    """How Enhance-A-Video enters one diffusers transformer class."""

    site_pattern: str  # regex on fully-qualified module names of the attention modules to swap
    processor_class: type  # the diffusers processor those modules must be running
    feta_processor: type["FetaProcessor"]
    # Latent frames after temporal patchify, from the denoiser's forward (module, args, kwargs).
    latent_frames: Callable[[torch.nn.Module, tuple, dict], int]
    # Raises UnsupportedModelError when a matched module is a variant the processor does not reimplement.
    check_site: Callable[[str, torch.nn.Module], None] = lambda name, module: None


class FetaProcessor:
    """Base of the swapped processors: runs ``original`` outside the step window, scores inside it.

    Subclasses define ``__call__`` with the original's exact signature (diffusers filters keyword arguments
    by it) and reimplement the original's body, calling :meth:`score` on the q/k handed to the kernel.
    """

    def __init__(self, original: Any, layer: str, state: FetaState) -> None:
        self.original = original
        self.layer = layer
        self.state = state

    # Attention backends are set on processors (``set_attention_backend``); keep them on the original.
    @property
    def _attention_backend(self) -> Any:
        return self.original._attention_backend

    @_attention_backend.setter
    def _attention_backend(self, value: Any) -> None:
        self.original._attention_backend = value

    @property
    def _parallel_config(self) -> Any:
        return self.original._parallel_config

    @_parallel_config.setter
    def _parallel_config(self, value: Any) -> None:
        self.original._parallel_config = value

    @property
    def active(self) -> bool:
        return self.state.handle.steps.in_window(self.state.start, self.state.end)

    def score(self, query: torch.Tensor, key: torch.Tensor, *, heads_first: bool) -> torch.Tensor:
        """The 0-dim float32 gain for this call from the video-token q/k (``[B, N, L, d]`` or ``[B, L, N, d]``).

        Raises ``ValueError`` when the video token count is not a multiple of the latent frame count.
        """
        num_frames = self.state.num_frames
        if num_frames is None:
            raise RuntimeError(f"{self.layer}: latent frame count unknown; call the denoiser, not its attention modules")
        tokens = query.shape[2 if heads_first else 1]
        if tokens % num_frames:
            raise ValueError(f"{self.layer}: {tokens} video tokens are not divisible by F={num_frames} latent frames")
        cfi = cross_frame_intensity(_frame_major(query, num_frames, heads_first), _frame_major(key, num_frames, heads_first))
        gain = score_from_intensity(cfi, num_frames, self.state.weight)
        # One device sync per call (both values in one transfer) so that records stay plain floats.
        cfi_value, gain_value = torch.stack([cfi, gain]).tolist()
        self.state.handle.record(layer=self.layer, num_frames=num_frames, cfi=cfi_value, score=gain_value)
        return gain


def _frame_major(x: torch.Tensor, num_frames: int, heads_first: bool) -> torch.Tensor:
    """``B N (T S) d -> (B S) N T d`` (or from ``B (T S) N d``): video tokens are frame-major (T outer)."""
    if heads_first:
        x = x.unflatten(2, (num_frames, -1)).permute(0, 3, 1, 2, 4)
    else:
        x = x.unflatten(1, (num_frames, -1)).permute(0, 2, 3, 1, 4)
    return x.reshape(-1, x.shape[2], num_frames, x.shape[4])


def hidden_states_arg(args: tuple, kwargs: dict) -> torch.Tensor:
    """The ``hidden_states`` argument of a denoiser forward, positional or keyword."""
    return args[0] if args else kwargs["hidden_states"]
