"""Guidance knobs as methods: a diffusers guider built from the method's knobs, set on a modular pipeline with
``pipe.update_components(guider=...)`` and put back on detach.

The guidance itself is diffusers' own (``diffusers.guiders``); these classes only say which guider, with which
arguments, on which component. A modular pipeline's guider pairs with its denoiser: ``transformer`` with ``guider``
and, in Wan 2.2, the low-noise expert ``transformer_2`` with ``guider_2``. What each guider computes: docs/methods.md.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from vboost.geometry import ClipGeometry
from vboost.methods.base import DiffusersCode, Method, MethodHandle, UnsupportedModelError, component_name

if TYPE_CHECKING:
    from vboost.backbones import BackboneSpec
    from vboost.export._comfyui import ComfyExport
    from vboost.methods.preset import Preset


@dataclasses.dataclass(frozen=True)
class BlockStack:
    """Where a denoiser keeps the transformer blocks a ``LayerSkipConfig`` indexes (``fqn``), and which of
    :data:`SKIPS` diffusers' layer-skip hooks can apply to them (diffusers 0.42: a whole block needs the block class
    in its ``TransformerBlockRegistry``, attention and attention scores need the attention processor in its
    ``AttentionProcessorRegistry``, a feed-forward skip needs a ``FeedForward`` module)."""

    fqn: str
    skips: tuple[str, ...]


# Denoisers of the modular video pipelines. ``fqn`` is set explicitly: diffusers' "auto" takes the first name of a
# set that has the attribute, and a set's order changes from run to run.
BLOCK_STACKS: dict[str, BlockStack] = {
    "WanTransformer3DModel": BlockStack("blocks", ("block", "feed_forward")),
    "LTXVideoTransformer3DModel": BlockStack("transformer_blocks", ("block", "feed_forward")),
    # Neither HunyuanVideo 1.5's block nor its attention processor is registered: only the feed-forwards of both of a
    # block's streams (video and text) can be skipped.
    "HunyuanVideo15Transformer3DModel": BlockStack("transformer_blocks", ("feed_forward",)),
}

# What a skip kind skips, as LayerSkipConfig flags: the whole block (STG-R, the block passes its input through), its
# self-attention, the attention map replaced by identity (STG-A: the values pass through), or its feed-forward.
SKIPS: dict[str, dict[str, bool]] = {
    "block": {"skip_attention": True, "skip_attention_scores": False, "skip_ff": True},
    "attention": {"skip_attention": True, "skip_attention_scores": False, "skip_ff": False},
    "attention_scores": {"skip_attention": False, "skip_attention_scores": True, "skip_ff": False},
    "feed_forward": {"skip_attention": False, "skip_attention_scores": False, "skip_ff": True},
}

# Denoisers whose modular pipeline's denoise step needs a guider class of its own, and why diffusers' generic guiders
# cannot stand in for it there (docs/modular-pipelines.md).
OWN_GUIDERS: dict[str, str] = {
    "LTX2VideoTransformer3DModel": (
        "LTX2ModularPipeline's denoise step runs LTX2Guidance only: it reads the guider's "
        "spatio_temporal_guidance_blocks and active_predictions(), which the generic guiders lack, and guides video and "
        "audio with two guiders in x0 space"
    ),
}


def guider_component(denoiser_component: str) -> str:
    """The guider component paired with a denoiser component (``transformer_2`` -> ``guider_2``)."""
    return "guider" + denoiser_component.removeprefix("transformer").removeprefix("unet")


class GuiderMethod(Method):
    """A method that installs a diffusers guider (``guider_class``) on a modular pipeline.

    ``guidance_scale`` ``None`` keeps the scale of the guider it replaces (the backbone's ``guidance``). Detach puts
    the previous guider object back, so the pipeline then generates exactly as before.
    """

    guider_class: ClassVar[str]
    supported_denoisers: ClassVar[tuple[str, ...]] = tuple(BLOCK_STACKS)
    guidance_scale: float | None

    @classmethod
    def check_backbone(cls, spec: "BackboneSpec") -> None:
        """Raise :class:`UnsupportedModelError` unless ``spec`` is a modular pipeline with a supported denoiser."""
        super().check_backbone(spec)
        if not spec.modular:
            raise UnsupportedModelError(
                f"{cls.__name__} sets the guider of a diffusers modular pipeline; backbone {spec.family!r} is not one"
            )

    @classmethod
    def check_supports(cls, denoiser_class_name: str) -> None:
        """Raise :class:`UnsupportedModelError` saying why, unless this guider can guide that denoiser's pipeline."""
        reason = OWN_GUIDERS.get(denoiser_class_name)
        if reason is not None:
            raise UnsupportedModelError(f"{cls.__name__} cannot guide {denoiser_class_name}: {reason}")
        super().check_supports(denoiser_class_name)

    def _check_guidance(self) -> None:
        """Raise ``ValueError`` naming the knob unless ``guidance_scale`` (``None`` or a number), ``guidance_rescale``
        (in [0, 1]) and, where the guider has them, ``start``/``stop`` (``0 <= start < 1``, ``start <= stop <= 1``)
        are valid."""
        _check_number("guidance_scale", self.guidance_scale, optional=True)
        _check_fraction("guidance_rescale", self.guidance_rescale)
        if hasattr(self, "start"):
            _check_window(self.start, self.stop)

    def guider_kwargs(self, denoiser_class: str) -> dict[str, Any]:
        """The guider's keyword arguments for a denoiser of class ``denoiser_class``, ``guidance_scale`` aside."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "guidance_scale"}

    def build_guider(self, denoiser_class: str, guidance_scale: float) -> Any:
        """The diffusers guider of this setting, with ``guidance_scale`` where the knob is ``None``."""
        import diffusers

        scale = guidance_scale if self.guidance_scale is None else self.guidance_scale
        return getattr(diffusers, self.guider_class)(guidance_scale=scale, **self.guider_kwargs(denoiser_class))

    def _attach(self, target: Any, denoiser: torch.nn.Module, handle: MethodHandle) -> None:
        if isinstance(target, torch.nn.Module) or not hasattr(target, "update_components"):
            raise UnsupportedModelError(
                f"{type(self).__name__} sets the guider of a diffusers modular pipeline; {type(target).__name__} is not one"
            )
        name = guider_component(component_name(target, denoiser))
        previous = getattr(target, name, None)
        if previous is None:
            raise UnsupportedModelError(f"{type(target).__name__} has no {name!r} component to replace")
        self._check_denoiser(denoiser)
        target.update_components(**{name: self.build_guider(type(denoiser).__name__, previous.guidance_scale)})
        handle.on_detach(lambda: target.update_components(**{name: previous}))

    def _check_denoiser(self, denoiser: torch.nn.Module) -> None:
        """Raise ``ValueError`` when a knob does not fit ``denoiser`` (the default accepts every one)."""

    def diffusers_code(self, setting: "Preset") -> DiffusersCode:
        """The guider saved by diffusers' ``save_pretrained`` (``guider/guider_config.json``, and ``guider_2/`` for
        Wan 2.2's second expert) and the ``update_components`` call that loads it into a modular pipeline."""
        from vboost.backbones import backbone_spec, get_backbone_class

        spec, adapter = backbone_spec(setting.backbone), get_backbone_class(setting.backbone)
        files, updates = {}, []
        for component in spec.denoisers:
            name = guider_component(component)
            # The scale a guidance_scale of None keeps: the untouched model's for this guider, as on attach.
            guider = self.build_guider(spec.denoiser_class, adapter.base_guidance(name, setting.guidance))
            with tempfile.TemporaryDirectory() as directory:
                guider.save_pretrained(directory)
                files[f"{name}/guider_config.json"] = (Path(directory) / "guider_config.json").read_text()
            updates.append(f'{name}={self.guider_class}.from_pretrained(HERE, subfolder="{name}")')
        return DiffusersCode(
            imports=(f"from diffusers import {self.guider_class}",),
            apply=(f"pipe.update_components({', '.join(updates)})",),
            files=files,
        )


def _check_fraction(name: str, value: Any, *, below_one: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0
    if not ok or (below_one and value >= 1.0):
        raise ValueError(f"{name} must be in [0, {'1)' if below_one else '1]'}; got {value!r}")


def _check_number(name: str, value: Any, *, optional: bool = False, minimum: float | None = None) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value!r}")


def _check_window(start: float, stop: float, prefix: str = "") -> None:
    _check_fraction(f"{prefix}start", start, below_one=True)
    _check_fraction(f"{prefix}stop", stop)
    if stop < start:
        raise ValueError(f"need {prefix}start <= {prefix}stop; got {prefix}start={start!r}, {prefix}stop={stop!r}")


@dataclasses.dataclass
class ClassifierFreeGuidance(GuiderMethod):
    """Classifier-free guidance through diffusers' ``ClassifierFreeGuidance``: ``u + g (c - u)`` for steps
    ``int(start N) <= i < int(stop N)``, the conditional prediction ``c`` elsewhere.

    Args:
        guidance_scale: ``g``; ``None`` keeps the pipeline's current scale.
        guidance_rescale: ``rescale_noise_cfg`` factor (0: off).
        start, stop: the guided fraction of the steps.
    """

    guidance_scale: float | None = None
    guidance_rescale: float = 0.0
    start: float = 0.0
    stop: float = 1.0

    name: ClassVar[str] = "classifier_free_guidance"
    guider_class: ClassVar[str] = "ClassifierFreeGuidance"

    def __post_init__(self) -> None:
        self._check_guidance()


@dataclasses.dataclass
class ClassifierFreeZeroStarGuidance(GuiderMethod):
    """CFG-Zero* (arXiv 2503.18886) through diffusers' ``ClassifierFreeZeroStarGuidance``: the prediction is zero for
    the first ``zero_init_steps`` steps; after that ``alpha u + g (c - alpha u)`` with ``alpha = <c, u> / ||u||^2``
    per sample.

    Args:
        guidance_scale: ``g``; ``None`` keeps the pipeline's current scale.
        zero_init_steps: steps whose prediction is zeroed (the authors: about 4% of the steps, 2 of 50 for Wan2.1).
        guidance_rescale, start, stop: as :class:`ClassifierFreeGuidance`.
    """

    guidance_scale: float | None = None
    zero_init_steps: int = 1
    guidance_rescale: float = 0.0
    start: float = 0.0
    stop: float = 1.0

    name: ClassVar[str] = "cfg_zero_star"
    guider_class: ClassVar[str] = "ClassifierFreeZeroStarGuidance"

    def comfyui(self, setting: "Preset") -> "ComfyExport":
        """KJNodes' ``CFGZeroStarAndInit`` (diffusers' ``k`` zeroed steps are its ``k - 1``), where the tuned setting
        has no step window and no rescaling."""
        from vboost.export._comfyui import INSTEAD, ComfyExport, checked_values, not_exported
        from vboost.export._comfyui_nodes import CFG_ZERO_STAR_AND_INIT as node

        if (self.start, self.stop) != (0.0, 1.0) or self.guidance_rescale:
            return ComfyExport([not_exported(
                node, f"not exported: tuned with a step window or guidance_rescale, which this node has not; {INSTEAD}"
            )], [])
        wanted = {"use_zero_init": self.zero_init_steps > 0, "zero_init_steps": max(self.zero_init_steps - 1, 0)}
        notes = [node.caveat]
        if self.guidance_scale is not None:
            notes.append(f"set the sampler's cfg to {self.guidance_scale!r}")
        return ComfyExport([checked_values(node, wanted, notes)], [])

    def __post_init__(self) -> None:
        self._check_guidance()
        if isinstance(self.zero_init_steps, bool) or not isinstance(self.zero_init_steps, int) or self.zero_init_steps < 0:
            raise ValueError(f"zero_init_steps must be an int >= 0; got {self.zero_init_steps!r}")


@dataclasses.dataclass
class AdaptiveProjectedGuidance(GuiderMethod):
    """APG (arXiv 2410.02416) through diffusers' ``AdaptiveProjectedGuidance``: the guidance update ``c - u``
    (optionally averaged with momentum, and its norm capped at ``adaptive_projected_guidance_rescale``) is split into
    its parts parallel and orthogonal to ``c``; ``u + g (orthogonal + eta * parallel)``.

    Args:
        guidance_scale: ``g``; ``None`` keeps the pipeline's current scale.
        adaptive_projected_guidance_momentum: momentum of the running update (``None``: off).
        adaptive_projected_guidance_rescale: the norm cap (0: none).
        eta: weight of the parallel part (1: plain CFG's direction).
        guidance_rescale, start, stop: as :class:`ClassifierFreeGuidance`.
    """

    guidance_scale: float | None = None
    adaptive_projected_guidance_momentum: float | None = None
    adaptive_projected_guidance_rescale: float = 15.0
    eta: float = 1.0
    guidance_rescale: float = 0.0
    start: float = 0.0
    stop: float = 1.0

    name: ClassVar[str] = "adaptive_projected_guidance"
    guider_class: ClassVar[str] = "AdaptiveProjectedGuidance"

    def __post_init__(self) -> None:
        self._check_guidance()
        _check_number("adaptive_projected_guidance_momentum", self.adaptive_projected_guidance_momentum, optional=True)
        _check_number("adaptive_projected_guidance_rescale", self.adaptive_projected_guidance_rescale, minimum=0.0)
        _check_number("eta", self.eta)


@dataclasses.dataclass
class SkipLayerGuidance(GuiderMethod):
    """Skip-layer / spatio-temporal guidance (SLG; STG, arXiv 2411.18664) through diffusers' ``SkipLayerGuidance``:
    a third prediction ``c_skip``, the conditional one with ``skip`` applied to blocks ``layers``, and
    ``u + g (c - u) + s (c - c_skip)``; the skip term only for ``int(start N) < i < int(stop N)`` (strict: never at
    step 0).

    Args:
        layers: block index or indices (``LayerSkipConfig.indices``), below the denoiser's depth.
        skip_layer_guidance_scale: ``s``.
        skip_layer_guidance_start, skip_layer_guidance_stop: the skip term's window, as fractions of the steps.
        skip: what is skipped in those blocks: ``block`` (STG-R), ``attention``, ``attention_scores`` (STG-A) or
            ``feed_forward``; which of them diffusers can apply depends on the denoiser (:data:`BLOCK_STACKS`).
        guidance_scale: ``g``; ``None`` keeps the pipeline's current scale.
        guidance_rescale: ``rescale_noise_cfg`` factor (0: off).

    Raises ``ValueError`` naming the bad knob; on attach (and in :meth:`check_clip`) when a layer is beyond the
    denoiser's depth or ``skip`` is one diffusers cannot apply to it.
    """

    layers: int | list[int]
    skip_layer_guidance_scale: float = 2.8
    skip_layer_guidance_start: float = 0.01
    skip_layer_guidance_stop: float = 0.2
    skip: str = "block"
    guidance_scale: float | None = None
    guidance_rescale: float = 0.0

    name: ClassVar[str] = "skip_layer_guidance"
    guider_class: ClassVar[str] = "SkipLayerGuidance"

    def __post_init__(self) -> None:
        indices = self.indices
        if not indices or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in indices):
            raise ValueError(f"layers must be a block index >= 0 or a non-empty list of them; got {self.layers!r}")
        _check_number("skip_layer_guidance_scale", self.skip_layer_guidance_scale)
        _check_window(self.skip_layer_guidance_start, self.skip_layer_guidance_stop, "skip_layer_guidance_")
        if self.skip not in SKIPS:
            raise ValueError(f"skip must be one of {', '.join(SKIPS)}; got {self.skip!r}")
        self._check_guidance()

    @property
    def indices(self) -> list[int]:
        """``layers`` as a list."""
        return [self.layers] if isinstance(self.layers, int) else list(self.layers or [])

    def check_clip(self, geometry: ClipGeometry) -> None:
        """Every layer index must lie below the denoiser's depth, and ``skip`` be one diffusers applies to it."""
        if geometry.denoiser_class is not None:
            self._check_skip(geometry.denoiser_class)
        if geometry.num_layers is not None:
            self._check_depth(geometry.num_layers)

    def guider_kwargs(self, denoiser_class: str) -> dict[str, Any]:
        from diffusers import LayerSkipConfig

        config = LayerSkipConfig(indices=self.indices, fqn=BLOCK_STACKS[denoiser_class].fqn, **SKIPS[self.skip])
        return {
            "skip_layer_guidance_scale": self.skip_layer_guidance_scale,
            "skip_layer_guidance_start": self.skip_layer_guidance_start,
            "skip_layer_guidance_stop": self.skip_layer_guidance_stop,
            "skip_layer_config": config,
            "guidance_rescale": self.guidance_rescale,
        }

    def _check_denoiser(self, denoiser: torch.nn.Module) -> None:
        denoiser_class = type(denoiser).__name__
        self._check_skip(denoiser_class)
        self._check_depth(len(denoiser.get_submodule(BLOCK_STACKS[denoiser_class].fqn)))

    def _check_skip(self, denoiser_class: str) -> None:
        stack = BLOCK_STACKS.get(denoiser_class)
        if stack is not None and self.skip not in stack.skips:
            raise ValueError(
                f"skip={self.skip!r}: diffusers' layer-skip hooks cannot skip that in {denoiser_class}'s blocks; "
                f"they can skip: {', '.join(stack.skips)}"
            )

    def _check_depth(self, depth: int) -> None:
        beyond = [i for i in self.indices if i >= depth]
        if beyond:
            raise ValueError(f"layers {self.layers!r}: index {beyond[0]} is beyond the denoiser's {depth} blocks (0 to {depth - 1})")

    def comfyui(self, setting: "Preset") -> "ComfyExport":
        """ComfyUI's ``SkipLayerGuidanceDiT`` on Wan (whole blocks, no rescaling), its window translated from
        diffusers' strict one at the tuned step count; KJNodes' ``SkipLayerGuidanceWanVideo`` computes another
        quantity."""
        from vboost.export._comfyui import INSTEAD, ComfyExport, checked_values, not_exported
        from vboost.export._comfyui_nodes import SKIP_LAYER_GUIDANCE_DIT as dit
        from vboost.export._comfyui_nodes import SKIP_LAYER_GUIDANCE_WAN_VIDEO as kj

        if setting.backbone not in ("wan_modular", "wan22_modular"):
            return ComfyExport([], [f"no ComfyUI skip-layer guidance node is checked for backbone {setting.backbone!r}"])
        refused = _not_settable_in_dit(self, setting.steps)
        if refused is not None:
            return ComfyExport([not_exported(dit, f"not exported: {refused}; {INSTEAD}"), not_exported(kj)], [])
        steps = setting.steps
        first, stop = int(self.skip_layer_guidance_start * steps) + 1, int(self.skip_layer_guidance_stop * steps)
        wanted = {
            "double_layers": ", ".join(str(i) for i in self.indices),
            "single_layers": "",
            "scale": self.skip_layer_guidance_scale,
            # Floored to the widget's 0.001: still above the previous step's i / N, at most this step's.
            "start_percent": math.floor(first / steps * 1000 + 1e-9) / 1000,
            "end_percent": math.floor(stop / steps * 1000 + 1e-9) / 1000,
            "rescaling_scale": 0.0,
        }
        notes = [dit.caveat, f"guided steps {first} to {stop - 1} of {steps}: start_percent {first}/{steps}, "
                             f"end_percent {stop}/{steps}"]
        if self.guidance_scale is not None:
            notes.append(f"set the sampler's cfg to {self.guidance_scale!r}")
        if setting.backbone == "wan22_modular":
            notes.append("Wan 2.2: put the node on both experts' models")
        return ComfyExport([checked_values(dit, wanted, notes), not_exported(kj)], [])


def _not_settable_in_dit(slg: SkipLayerGuidance, steps: int | None) -> str | None:
    """Why ``SkipLayerGuidanceDiT`` cannot take ``slg`` at ``steps`` steps, or ``None``."""
    if slg.skip != "block":
        return f"tuned with skip={slg.skip!r}, and the node skips whole blocks"
    if slg.guidance_rescale:
        return (f"tuned with guidance_rescale={slg.guidance_rescale!r}; the node's rescaling acts only in its window, "
                "by the whole batch's standard deviation")
    if steps is None:
        return "the study records no step count, which translating the step window needs"
    if int(slg.skip_layer_guidance_start * steps) + 1 >= int(slg.skip_layer_guidance_stop * steps):
        return f"the skip term is active at none of the {steps} steps"
    return None


GUIDERS: tuple[type[GuiderMethod], ...] = (
    ClassifierFreeGuidance, ClassifierFreeZeroStarGuidance, AdaptiveProjectedGuidance, SkipLayerGuidance,
)

__all__ = [
    "BLOCK_STACKS",
    "OWN_GUIDERS",
    "SKIPS",
    "AdaptiveProjectedGuidance",
    "ClassifierFreeGuidance",
    "ClassifierFreeZeroStarGuidance",
    "GuiderMethod",
    "SkipLayerGuidance",
    "guider_component",
]
