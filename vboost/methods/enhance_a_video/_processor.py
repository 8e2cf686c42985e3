"""What the per-family Enhance-A-Video processors share: call state, the step gate and the score."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from vboost.methods.base import MethodHandle
from vboost.ops.feta import clip_intensities, score_from_intensity


@dataclasses.dataclass
class FetaState:
    """Shared by every swapped processor of one attach: the knobs, the handle and the current latent frames."""

    weight: float
    start: float
    end: float
    handle: MethodHandle
    # Post-patchify latent frame count of the denoiser call in progress (set by a forward pre-hook).
    num_frames: int | None = None
    # How the call's batch is laid out (set by the same hook): rows (half, clip, position), ``halves`` 2 when the call
    # batches classifier-free guidance as [uncond, cond]. Each clip gets its own score, pooled over its own rows, so a
    # clip generated in a batch gets the score it gets alone; one clip of one half pools the whole batch.
    clips: int = 1
    halves: int = 1


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
    # Whether the family's pipelines batch classifier-free guidance into one denoiser call ([uncond, cond]).
    cfg_in_one_call: bool = True
    # The denoiser forward's latents argument (its first axis is the call's batch).
    latents: Callable[[tuple, dict], torch.Tensor] = lambda args, kwargs: hidden_states_arg(args, kwargs)


def clip_layout(family: Family, target: Any, args: tuple, kwargs: dict) -> tuple[int, int]:
    """``(clips, halves)`` of a denoiser call of ``family`` made by ``target``: a pipeline says whether it runs
    classifier-free guidance (``do_classifier_free_guidance``, else ``guidance_scale > 1``); a bare module's batch
    is pooled as one clip.

    Raises ``ValueError`` naming the batch when it does not split into the guidance halves.
    """
    if isinstance(target, torch.nn.Module):
        return 1, 1
    cfg = getattr(target, "do_classifier_free_guidance", None)
    if cfg is None:  # CogVideoXPipeline keeps the switch local: it batches both halves when guidance_scale > 1
        cfg = getattr(target, "guidance_scale", 1.0) > 1.0
    halves = 2 if family.cfg_in_one_call and cfg else 1
    batch = family.latents(args, kwargs).shape[0]
    if batch % halves:
        raise ValueError(f"a batch of {batch} does not split into classifier-free guidance's [uncond, cond] halves")
    return batch // halves, halves


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

    @torch.compiler.disable  # eager under torch.compile: the knobs and the records never enter a compiled graph
    def score(self, query: torch.Tensor, key: torch.Tensor, *, heads_first: bool) -> torch.Tensor:
        """The gain for this call from the video-token q/k (``[B, N, L, d]`` or ``[B, L, N, d]``): a 0-dim float32
        tensor when the call holds one clip, else ``[rows, 1, 1]`` in the q/k dtype, one gain per row of the leading
        axis (each clip's on its rows). Nothing is read back from the device: the record keeps the tensors.

        Raises ``ValueError`` when the video token count is not a multiple of the latent frame count.
        """
        num_frames = self.state.num_frames
        if num_frames is None:
            raise RuntimeError(f"{self.layer}: latent frame count unknown; call the denoiser, not its attention modules")
        tokens = query.shape[2 if heads_first else 1]
        if tokens % num_frames:
            raise ValueError(f"{self.layer}: {tokens} video tokens are not divisible by F={num_frames} latent frames")
        clips, halves = self.state.clips, self.state.halves
        cfi = clip_intensities(
            _frame_major(query, num_frames, heads_first), _frame_major(key, num_frames, heads_first),
            clips=clips, halves=halves,
        )
        gain = score_from_intensity(cfi, num_frames, self.state.weight)
        self.state.handle.record(layer=self.layer, num_frames=num_frames, cfi=cfi, score=gain)
        if clips == 1:
            return gain[0]
        # The leading axis is (half, clip) or, where each row is one position of a video, (half, clip, position).
        rows = gain.repeat(halves).repeat_interleave(query.shape[0] // (halves * clips))
        return rows.to(query.dtype).view(-1, 1, 1)


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


def packed_latent_frames(denoiser: torch.nn.Module, args: tuple, kwargs: dict, position: int) -> int:
    """The latent frames of a denoiser whose latents arrive packed (``[B, L, C]``, as LTX-Video's and LTX-2's): its
    ``num_frames`` argument (keyword, or positional at ``position``) over its temporal patch. Raises ``ValueError``
    naming the denoiser when it was called without one."""
    num_frames = kwargs["num_frames"] if "num_frames" in kwargs else (args[position] if len(args) > position else None)
    if num_frames is None:
        raise ValueError(f"EnhanceAVideo needs {type(denoiser).__name__} to be called with num_frames")
    return num_frames // denoiser.config.patch_size_t


def with_text_stream(
    attn: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, encoder_hidden_states: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The video ``query``, ``key`` and ``value`` (``[B, L, N, d]``) with the text tokens of a dual-stream joint
    attention appended: ``encoder_hidden_states`` through the module's added projections and norms, as HunyuanVideo's
    and HunyuanVideo 1.5's processors make them."""
    projected = [getattr(attn, name)(encoder_hidden_states).unflatten(2, (attn.heads, -1))
                 for name in ("add_q_proj", "add_k_proj", "add_v_proj")]
    for i, norm in enumerate((attn.norm_added_q, attn.norm_added_k)):
        if norm is not None:
            projected[i] = norm(projected[i])
    return tuple(torch.cat([own, text], dim=1) for own, text in zip((query, key, value), projected))
