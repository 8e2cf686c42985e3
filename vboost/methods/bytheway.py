"""ByTheWay for U-Nets with separate temporal attention: temporal self-guidance and Fourier motion enhancement.

Each temporal self-attention of the decoder's last three stages gets a processor that, during the first
``active_fraction`` of the denoising steps, computes the attention map explicitly, edits it with
:func:`vboost.ops.bytheway_edit` against the first of those stages' map of the same module and attention index,
and multiplies by V. Outside that window the module's original (fast) processor runs. Which modules those are in
each supported U-Net is the table ``_LAYOUTS``; docs/backbones.md explains the choice.
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
from vboost.ops.bytheway import bytheway_edit_clips, check_knobs, high_band


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Where one U-Net class keeps the temporal self-attentions ByTheWay edits.

    ``site`` matches an edited attention's full name; its group ``temporal`` names the temporal module whose input
    (``[(b f), c, h, w]`` in every supported class) gives the map's spatial size, and ``stage``/``module`` say which
    decoder stage (1, 2, 3: AnimateDiff's ``up_blocks.1-3``) and which module of it, unless ``position`` computes
    them. Stage 1 is the anchor. ``frame_axis`` is the frame axis of the denoiser's ``sample``. In every class the
    map's rows are ordered (cfg, video, y, x, head): the temporal module folds ``(b, y, x)`` into the batch,
    row-major, and the processor puts heads innermost.
    """

    site: re.Pattern
    frame_axis: int = 2
    position: Callable[[re.Match], tuple[int, int]] | None = None

    def stage_and_module(self, match: re.Match) -> tuple[int, int]:
        if self.position is not None:
            return self.position(match)
        return int(match["stage"]), int(match["module"])


def _output_block_position(match: re.Match) -> tuple[int, int]:
    """VideoCrafter2's ``output_blocks`` 3-5, 6-8, 9-11 are the stages of AnimateDiff's ``up_blocks.1``, 2, 3."""
    block = int(match["block"])
    return block // 3, block % 3


_UP_STAGE = r"up_blocks\.(?P<stage>[123])\."
_ATTENTION = r"\.transformer_blocks\.(?P<layer>\d+)\.attn(?P<attention>[12])"
_LAYOUTS: dict[str, _Layout] = {
    # AnimateDiff (diffusers): the motion modules of up_blocks.1-3, both self-attentions of each block.
    "UNetMotionModel": _Layout(re.compile(rf"(?P<temporal>{_UP_STAGE}motion_modules\.(?P<module>\d+)){_ATTENTION}")),
    # ModelScope / Zeroscope: the temporal transformers of up_blocks.1-3 (two self-attentions a block, as AnimateDiff's).
    "UNet3DConditionModel": _Layout(re.compile(rf"(?P<temporal>{_UP_STAGE}temp_attentions\.(?P<module>\d+)){_ATTENTION}")),
    # Stable Video Diffusion: the temporal blocks of up_blocks.1-3; only attn1 attends over frames (attn2 reads the image).
    "UNetSpatioTemporalConditionModel": _Layout(
        re.compile(
            rf"(?P<temporal>{_UP_STAGE}attentions\.(?P<module>\d+))\.temporal_transformer_blocks\.(?P<layer>\d+)\.attn(?P<attention>1)"
        ),
        frame_axis=1,
    ),
    # VideoCrafter2: the temporal transformer (third layer) of output_blocks 3-11.
    "VideoCrafter2UNet": _Layout(
        re.compile(r"(?P<temporal>output_blocks\.(?P<block>[3-9]|1[01])\.2)" + _ATTENTION), position=_output_block_position
    ),
}
_ANCHOR_STAGE = 1


@dataclasses.dataclass
class ByTheWay(Method):
    """ByTheWay on U-Nets with temporal attention: ``UNetMotionModel`` (AnimateDiff text-to-video and SparseCtrl
    image-to-video), ``UNet3DConditionModel`` (ModelScope, Zeroscope), ``UNetSpatioTemporalConditionModel`` (Stable
    Video Diffusion) and ``VideoCrafter2UNet``.

    Args:
        alpha: temporal self-guidance, ``P <- P + alpha * (A1 - P)`` towards the anchor stage's map (AnimateDiff's
            ``up_blocks.1``), in [0, 1].
        beta: least gain of the high temporal frequencies (the adaptive gain wins when larger), > 0.
        tau: half-width of the high band around Nyquist; at most ``F - 1 - F//2`` (7 for 16 frames).
        active_fraction: active during the first ``round(active_fraction * num_steps)`` steps.
        clip_negative: the 2024 variant, zeroing negative weights before renormalising.

    With classifier-free guidance batched by the pipeline (``guidance > 1``), energies come from the conditional
    half; a bare module call (or ``guidance <= 1``) treats every row as conditional. A pipeline must say whether
    it batches CFG through ``do_classifier_free_guidance`` (AnimateDiff's, SVD's and VideoCrafter2's do; ModelScope's
    ``TextToVideoSDPipeline`` does not, and attaching to it raises ``UnsupportedModelError``). Each active call
    records ``E1, E2, E3, beta`` (the gain used) and ``beta_c`` on the handle. Raises ``ValueError`` naming a bad knob.
    """

    alpha: float
    beta: float
    tau: int
    active_fraction: float = 0.2
    clip_negative: bool = False

    name: ClassVar[str] = "bytheway"
    supported_denoisers: ClassVar[tuple[str, ...]] = tuple(_LAYOUTS)

    def __post_init__(self) -> None:
        check_knobs(self.alpha, self.beta, self.tau)
        if not (isinstance(self.active_fraction, (int, float)) and 0.0 <= self.active_fraction <= 1.0):
            raise ValueError(f"active_fraction must be in [0, 1]; got {self.active_fraction!r}")

    def check_clip(self, geometry: ClipGeometry) -> None:
        """``tau`` must fit the frame count: at most ``F - 1 - F//2`` (7 for 16 frames)."""
        high_band(geometry.latent_frames, self.tau)

    def _attach(self, target: Any, denoiser: torch.nn.Module, handle: MethodHandle) -> None:
        layout = _LAYOUTS[type(denoiser).__name__]
        sites = _find_sites(denoiser, layout)
        if not isinstance(target, torch.nn.Module) and "do_classifier_free_guidance" not in dir(target):
            # Energies come from the conditional half; a pipeline that keeps its CFG switch to itself (ModelScope's
            # TextToVideoSDPipeline) would get them from the wrong rows.
            raise UnsupportedModelError(
                f"{type(target).__name__} does not say whether it batches classifier-free guidance (no "
                "do_classifier_free_guidance); set pipe.do_classifier_free_guidance = guidance_scale > 1 before attaching"
            )
        # The pipeline batches [uncond, cond] exactly when it says it does CFG; a bare module call has no such half.
        def cfg_batched() -> bool:
            return not isinstance(target, torch.nn.Module) and bool(getattr(target, "do_classifier_free_guidance", False))

        state = _State(method=self, handle=handle, cfg_batched=cfg_batched)

        def check_tau(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            # Fail at the first denoiser call, active or not, rather than at the first active step.
            sample = args[0] if args else kwargs["sample"]
            high_band(sample.shape[layout.frame_axis], self.tau)
            # The videos of this call: each takes its energies from its own rows (a bare module's batch is pooled).
            state.clips = 1 if isinstance(target, torch.nn.Module) else sample.shape[0] // (2 if cfg_batched() else 1)

        hook = denoiser.register_forward_pre_hook(check_tau, with_kwargs=True)
        handle.on_detach(hook.remove)
        by_temporal_module: dict[str, list[ByTheWayProcessor]] = {}
        for site in sites:
            original = site.attn.processor
            processor = ByTheWayProcessor(original, site.name, site.anchor_key, site.stage == _ANCHOR_STAGE, state)
            by_temporal_module.setdefault(site.temporal_module, []).append(processor)
            site.attn.set_processor(processor)
            handle.on_detach(lambda attn=site.attn, original=original: attn.set_processor(original))
        for temporal_module, processors in by_temporal_module.items():
            hook = denoiser.get_submodule(temporal_module).register_forward_pre_hook(
                _spatial_size_hook(processors), with_kwargs=True
            )
            handle.on_detach(hook.remove)
        handle.on_detach(state.anchors.clear)


@dataclasses.dataclass
class _State:
    """Shared by the processors of one attach: knobs, handle, CFG layout and the anchor stage's maps of this step."""

    method: ByTheWay
    handle: MethodHandle
    cfg_batched: Callable[[], bool]
    # (module, transformer layer, attention) -> (unedited map, h, w, heads) from the anchor stage in the current forward.
    anchors: dict[tuple[int, int, int], tuple[torch.Tensor, int, int, int]] = dataclasses.field(default_factory=dict)
    # Videos in the denoiser call in progress (set by a forward pre-hook).
    clips: int = 1

    @property
    def active(self) -> bool:
        return self.handle.steps.in_first(self.method.active_fraction)


class ByTheWayProcessor:
    """Runs ``original`` outside the active window; inside it, computes the temporal map explicitly and edits it.

    The explicit path is diffusers' ``AttnProcessor`` for plain self-attention with the edit between the
    softmax and the product with V. Rows of the map are ordered (cfg, video, y, x, head): the temporal module
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
        # (h, w) of the latent grid this module's temporal module sees, set by a pre-hook on every call.
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
        return self._explicit(attn, hidden_states, attention_mask)

    @torch.compiler.disable  # eager under torch.compile: the knobs, the anchor maps and the records stay out of graphs
    def _explicit(self, attn: Any, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
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
            state.anchors[self.anchor_key] = (probs, height, width, heads)
            anchor = probs
        else:
            anchor = _resize_map(*state.anchors[self.anchor_key], height, width, heads)
        method = state.method
        edited, stats = bytheway_edit_clips(
            probs,
            anchor,
            alpha=method.alpha,
            beta=method.beta,
            tau=method.tau,
            clip_negative=method.clip_negative,
            cfg_batched=state.cfg_batched(),
            clips=state.clips,
        )
        state.handle.record(
            layer=self.layer, E1=stats["E1"], E2=stats["E2"], E3=stats["E3"], beta=stats["beta"], beta_c=stats["beta_c"]
        )
        return edited


def _resize_map(
    anchor: torch.Tensor, height1: int, width1: int, heads1: int, height: int, width: int, heads: int
) -> torch.Tensor:
    """``[B*h1*w1*heads1, F, F] -> [B*h*w*heads, F, F]``: the anchor map at another stage's positions and heads.

    Positions are resampled nearest-neighbour over (y, x): the official snippet calls ``interpolate`` without a
    mode, torch's default is nearest, and every row stays an exact copy of a softmax row. Heads correspond one to
    one when the counts agree (AnimateDiff, ModelScope); where they differ (VideoCrafter2 and Stable Video
    Diffusion halve them from stage to stage) no head of one stage matches a head of another, so every head is
    guided by the anchor's mean over heads, itself a softmax-like map.
    """
    if (height1, width1, heads1) == (height, width, heads):
        return anchor
    rows, frames, _ = anchor.shape
    batch = rows // (height1 * width1 * heads1)
    grid = anchor.reshape(batch, height1, width1, heads1, frames * frames)
    if heads1 != heads:
        grid = grid.mean(dim=3, keepdim=True).expand(-1, -1, -1, heads, -1)
    grid = grid.reshape(batch, height1, width1, heads * frames * frames).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(height, width), mode="nearest")
    return grid.permute(0, 2, 3, 1).reshape(batch * height * width * heads, frames, frames)


def _spatial_size_hook(processors: list[ByTheWayProcessor]) -> Callable[..., None]:
    """A forward pre-hook for a temporal module (input ``[b*f, c, h, w]``) telling its processors ``(h, w)``."""

    def capture(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        hidden_states = args[0] if args else kwargs["hidden_states"]
        for processor in processors:
            processor.spatial_size = tuple(hidden_states.shape[-2:])

    return capture


@dataclasses.dataclass(frozen=True)
class _Site:
    """One edited attention: its name and module, its temporal module, its stage and its anchor key
    ``(module, transformer layer, attention)``, shared with its counterpart in the anchor stage."""

    name: str
    attn: Any
    temporal_module: str
    stage: int
    anchor_key: tuple[int, int, int]


def _find_sites(denoiser: torch.nn.Module, layout: _Layout) -> list[_Site]:
    """Every temporal self-attention ByTheWay edits in ``denoiser``, as ``layout`` places them.

    Raises ``UnsupportedModelError`` when a site runs a processor the explicit path does not reproduce, or when a
    site of stage 2 or 3 has no counterpart in the anchor stage; ``RuntimeError`` when already attached.
    """
    # The processors whose computation the explicit path reproduces (the plain and the SDPA one); imported here, so
    # that checking a config never imports diffusers.
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    reproduced = (AttnProcessor, AttnProcessor2_0)
    sites = []
    for name, module in denoiser.named_modules():
        match = layout.site.fullmatch(name)
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
        stage, index = layout.stage_and_module(match)
        key = (index, int(match["layer"]), int(match["attention"]))
        sites.append(_Site(name, module, match["temporal"], stage, key))
    if not sites:
        raise UnsupportedModelError(f"no temporal attention of {type(denoiser).__name__} matches {layout.site.pattern!r}")
    anchor_keys = {site.anchor_key for site in sites if site.stage == _ANCHOR_STAGE}
    for site in sites:
        if site.anchor_key not in anchor_keys:
            raise UnsupportedModelError(f"{site.name} has no counterpart in the anchor stage to guide it")
    return sites


__all__ = ["ByTheWay", "ByTheWayProcessor"]
