"""ByTheWay for AnimateDiff-style U-Nets: temporal self-guidance and Fourier motion enhancement (METHODS.md 2).

Each temporal self-attention of ``up_blocks.{1,2,3}`` gets a processor that, during the first ``active_fraction``
of the denoising steps, computes the attention map explicitly, edits it with :func:`vboost.ops.bytheway_edit`
against the ``up_blocks.1`` map of the same motion-module and attention index, and multiplies by V. Outside
that window the module's original (fast) processor runs.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from vboost.geometry import ClipGeometry
from vboost.methods.base import Method, MethodHandle, UnsupportedModelError
from vboost.ops.bytheway import bytheway_edit, check_knobs, high_band

# up_blocks.<block>.motion_modules.<module>.transformer_blocks.<layer>.attn<1|2>
_SITE = re.compile(r"up_blocks\.([123])\.motion_modules\.(\d+)\.transformer_blocks\.(\d+)\.attn([12])")
_ANCHOR_BLOCK = 1


@dataclasses.dataclass
class ByTheWay(Method):
    """ByTheWay on ``UNetMotionModel`` (AnimateDiff text-to-video and SparseCtrl image-to-video).

    Args:
        alpha: temporal self-guidance, ``P <- P + alpha * (A1 - P)`` towards the ``up_blocks.1`` map, in [0, 1].
        beta: least gain of the high temporal frequencies (the adaptive gain wins when larger), > 0.
        tau: half-width of the high band around Nyquist; at most ``F - 1 - F//2`` (7 for 16 frames).
        active_fraction: active during the first ``round(active_fraction * num_steps)`` steps.
        clip_negative: the 2024 variant, zeroing negative weights before renormalising.

    With classifier-free guidance batched by the pipeline (``guidance > 1``), energies come from the conditional
    half; a bare module call (or ``guidance <= 1``) treats every row as conditional. Each active call records
    ``E1, E2, E3, beta`` (the gain used) and ``beta_c`` on the handle. Raises ``ValueError`` naming a bad knob.
    """

    alpha: float
    beta: float
    tau: int
    active_fraction: float = 0.2
    clip_negative: bool = False

    name: ClassVar[str] = "bytheway"
    supported_denoisers: ClassVar[tuple[str, ...]] = ("UNetMotionModel",)

    def __post_init__(self) -> None:
        check_knobs(self.alpha, self.beta, self.tau)
        if not (isinstance(self.active_fraction, (int, float)) and 0.0 <= self.active_fraction <= 1.0):
            raise ValueError(f"active_fraction must be in [0, 1]; got {self.active_fraction!r}")

    def check_clip(self, geometry: ClipGeometry) -> None:
        """``tau`` must fit the frame count: at most ``F - 1 - F//2`` (7 for 16 frames)."""
        high_band(geometry.latent_frames, self.tau)

    def _attach(self, target: Any, denoiser: torch.nn.Module, handle: MethodHandle) -> None:
        sites = _find_sites(denoiser)
        # The pipeline batches [uncond, cond] exactly when it says it does CFG; a bare module call has no such half.
        def cfg_batched() -> bool:
            return not isinstance(target, torch.nn.Module) and bool(getattr(target, "do_classifier_free_guidance", False))

        state = _State(method=self, handle=handle, cfg_batched=cfg_batched)

        def check_tau(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            # Fail at the first denoiser call, active or not, rather than at the first active step.
            sample = args[0] if args else kwargs["sample"]
            high_band(sample.shape[2], self.tau)

        hook = denoiser.register_forward_pre_hook(check_tau, with_kwargs=True)
        handle._undo.append(hook.remove)
        by_motion_module: dict[str, list[ByTheWayProcessor]] = {}
        for name, attn, block, anchor_key in sites:
            original = attn.processor
            processor = ByTheWayProcessor(original, name, anchor_key, block == _ANCHOR_BLOCK, state)
            by_motion_module.setdefault(name.split(".transformer_blocks.")[0], []).append(processor)
            attn.set_processor(processor)
            handle._undo.append(lambda attn=attn, original=original: attn.set_processor(original))
        for motion_module, processors in by_motion_module.items():
            hook = denoiser.get_submodule(motion_module).register_forward_pre_hook(
                _spatial_size_hook(processors), with_kwargs=True
            )
            handle._undo.append(hook.remove)
        handle._undo.append(state.anchors.clear)


@dataclasses.dataclass
class _State:
    """Shared by the processors of one attach: knobs, handle, CFG layout and the ``up_blocks.1`` maps of this step."""

    method: ByTheWay
    handle: MethodHandle
    cfg_batched: Callable[[], bool]
    # (motion module, transformer layer, attention) -> (unedited map, h, w) from up_blocks.1 in the current forward.
    anchors: dict[tuple[int, int, int], tuple[torch.Tensor, int, int]] = dataclasses.field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.handle.steps.in_first(self.method.active_fraction)


class ByTheWayProcessor:
    """Runs ``original`` outside the active window; inside it, computes the temporal map explicitly and edits it.

    The explicit path is diffusers' ``AttnProcessor`` for plain self-attention with the edit between the
    softmax and the product with V. Rows of the map are ordered (cfg, video, y, x, head): the motion module
    folds ``(b h w)`` into the batch and ``head_to_batch_dim`` puts heads innermost.
    """

    def __init__(
        self, original: Any, layer: str, anchor_key: tuple[int, int, int], is_anchor: bool, state: _State
    ) -> None:
        self.original = original
        self.layer = layer
        self.anchor_key = anchor_key
        self.is_anchor = is_anchor
        self.state = state
        # (h, w) of the latent grid this module's motion module sees, set by a pre-hook on every call.
        self.spatial_size: tuple[int, int] | None = None

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        if not self.state.active:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        batch_rows, num_frames, _ = hidden_states.shape
        attention_mask = attn.prepare_attention_mask(attention_mask, num_frames, batch_rows)
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(hidden_states))
        value = attn.head_to_batch_dim(attn.to_v(hidden_states))
        probs = self._edit(attn.get_attention_scores(query, key, attention_mask), attn.heads)
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        out = attn.to_out[1](attn.to_out[0](out))
        return out / attn.rescale_output_factor

    def _edit(self, probs: torch.Tensor, heads: int) -> torch.Tensor:
        if self.spatial_size is None:
            raise RuntimeError(f"{self.layer}: spatial size unknown; call the denoiser, not its attention modules")
        height, width = self.spatial_size
        if probs.shape[0] % (height * width * heads):
            raise ValueError(f"{self.layer}: {probs.shape[0]} map rows do not split into {height}x{width} positions x {heads} heads")
        state = self.state
        if self.is_anchor:
            state.anchors[self.anchor_key] = (probs, height, width)
            anchor = probs
        else:
            anchor = _resize_map(*state.anchors[self.anchor_key], height, width, heads)
        method = state.method
        edited, stats = bytheway_edit(
            probs,
            anchor,
            alpha=method.alpha,
            beta=method.beta,
            tau=method.tau,
            clip_negative=method.clip_negative,
            cfg_batched=state.cfg_batched(),
        )
        state.handle.record(
            layer=self.layer, E1=stats["E1"], E2=stats["E2"], E3=stats["E3"], beta=stats["beta"], beta_c=stats["beta_c"]
        )
        return edited


def _resize_map(anchor: torch.Tensor, height1: int, width1: int, height: int, width: int, heads: int) -> torch.Tensor:
    """``[B*h1*w1*heads, F, F] -> [B*h*w*heads, F, F]``: nearest-neighbour resampling of the map over (y, x).

    The official snippet calls ``interpolate`` without a mode; torch's default is nearest, which also keeps
    every row an exact copy of a softmax row.
    """
    if (height1, width1) == (height, width):
        return anchor
    rows, frames, _ = anchor.shape
    batch = rows // (height1 * width1 * heads)
    grid = anchor.reshape(batch, height1, width1, heads * frames * frames).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(height, width), mode="nearest")
    return grid.permute(0, 2, 3, 1).reshape(batch * height * width * heads, frames, frames)


def _spatial_size_hook(processors: list[ByTheWayProcessor]) -> Callable[..., None]:
    """A forward pre-hook for a motion module (input ``[b*f, c, h, w]``) telling its processors ``(h, w)``."""

    def capture(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        hidden_states = args[0] if args else kwargs["hidden_states"]
        for processor in processors:
            processor.spatial_size = tuple(hidden_states.shape[-2:])

    return capture


def _find_sites(denoiser: torch.nn.Module) -> list[tuple[str, Any, int, tuple[int, int, int]]]:
    """``(name, attention module, up block, anchor key)`` of every temporal self-attention ByTheWay edits.

    Raises ``UnsupportedModelError`` when a site runs a processor the explicit path does not reproduce, or when a
    site of ``up_blocks.2/3`` has no counterpart in ``up_blocks.1``; ``RuntimeError`` when already attached.
    """
    # The processors whose computation the explicit path reproduces (the plain and the SDPA one); imported here, so
    # that checking a config never imports diffusers.
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    reproduced = (AttnProcessor, AttnProcessor2_0)
    sites = []
    for name, module in denoiser.named_modules():
        match = _SITE.fullmatch(name)
        if match is None:
            continue
        processor = getattr(module, "processor", None)
        if isinstance(processor, ByTheWayProcessor):
            raise RuntimeError(f"ByTheWay is already attached to {name}; detach it first")
        if type(processor) not in reproduced:
            names = ", ".join(cls.__name__ for cls in reproduced)
            raise UnsupportedModelError(f"{name} runs {type(processor).__name__}; ByTheWay reproduces {names} only")
        if module.is_cross_attention or module.spatial_norm is not None or module.group_norm is not None or module.residual_connection:
            raise UnsupportedModelError(f"{name} is not a plain temporal self-attention")
        block, motion_module, layer, attention = map(int, match.groups())
        sites.append((name, module, block, (motion_module, layer, attention)))
    if not sites:
        raise UnsupportedModelError(f"no temporal attention of {type(denoiser).__name__} matches {_SITE.pattern!r}")
    anchor_keys = {key for _, _, block, key in sites if block == _ANCHOR_BLOCK}
    for name, _, _, key in sites:
        if key not in anchor_keys:
            raise UnsupportedModelError(f"{name} has no counterpart in up_blocks.{_ANCHOR_BLOCK} to guide it")
    return sites


__all__ = ["ByTheWay", "ByTheWayProcessor"]
