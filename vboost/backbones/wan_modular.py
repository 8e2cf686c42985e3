"""Wan 2.1 and Wan 2.2 (A14B: two experts) text-to-video through diffusers' ``WanModularPipeline`` and
``Wan22ModularPipeline``."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import Wan22ModularPipeline, WanModularPipeline, WanTransformer3DModel
from diffusers.modular_pipelines.wan.encoders import WanTextEncoderStep

from vboost.backbones._modular import ModularBackbone
from vboost.backbones._specs import SPECS
from vboost.backbones.base import GenerationDefaults
from vboost.backbones.wan import WanBackbone

_MAX_SEQUENCE_LENGTH = 512  # the text block's default, and WanPipeline.__call__'s


def _tiny_components(seed: int) -> dict[str, Any]:
    # The components of vboost's tiny Wan2.1 (WanBackbone.tiny), the modular pipeline's own guider aside.
    pipe = WanBackbone.tiny(seed=seed).pipe
    return {name: getattr(pipe, name) for name in ("tokenizer", "text_encoder", "vae", "transformer", "scheduler")}


class WanModularBackbone(ModularBackbone):
    """Wan2.1 on ``WanModularPipeline``; classifier-free guidance runs as separate denoiser calls per step."""

    spec = SPECS["wan_modular"]
    pipeline_class = WanModularPipeline

    @classmethod
    def tiny(cls, *, seed: int = 0) -> "WanModularBackbone":
        pipe = WanModularPipeline()
        pipe.update_components(**_tiny_components(seed))
        return cls(pipe, GenerationDefaults(num_frames=9, height=32, width=32, steps=3, guidance=5.0, fps=16))

    def _encode_prompt(self, prompt: str) -> dict[str, torch.Tensor]:
        embeds, negative = WanTextEncoderStep.encode_prompt(
            self.pipe, prompt, device=self.device, prepare_unconditional_embeds=True,
            max_sequence_length=_MAX_SEQUENCE_LENGTH,
        )
        return {"prompt_embeds": embeds, "negative_prompt_embeds": negative}


class Wan22ModularBackbone(WanModularBackbone):
    """Wan 2.2 A14B on ``Wan22ModularPipeline``: the high-noise expert ``transformer`` (guider ``guider``) denoises
    the steps with ``t >= boundary_ratio * 1000``, the low-noise expert ``transformer_2`` (guider ``guider_2``) the
    rest. ``guidance`` is the first expert's scale; the untouched second expert's is the model card's 3.0 (a
    ``classifier_free_guidance`` method on ``transformer_2`` tunes it)."""

    spec = SPECS["wan22_modular"]
    pipeline_class = Wan22ModularPipeline
    guider_components = ("guider", "guider_2")
    guidance_2 = 3.0  # Wan-AI/Wan2.2-T2V-A14B-Diffusers: guidance_scale 4.0, guidance_scale_2 3.0

    @classmethod
    def tiny(cls, *, seed: int = 0) -> "Wan22ModularBackbone":
        pipe = Wan22ModularPipeline()
        components = _tiny_components(seed)
        torch.manual_seed(seed + 1)  # the second expert: the same architecture, other weights
        components["transformer_2"] = WanTransformer3DModel(**cls.spec.tiny_denoiser)
        pipe.update_components(**components)
        return cls(pipe, GenerationDefaults(num_frames=9, height=32, width=32, steps=4, guidance=4.0, fps=16))

    @classmethod
    def base_guidance(cls, guider: str, guidance: float) -> float:
        return cls.guidance_2 if guider == "guider_2" else guidance
