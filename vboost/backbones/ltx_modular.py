"""LTX-Video text-to-video through diffusers' ``LTXModularPipeline``."""

from __future__ import annotations

import torch
from diffusers import LTXModularPipeline
from diffusers.modular_pipelines.ltx.encoders import LTXTextEncoderStep

from vboost.backbones._modular import ModularBackbone
from vboost.backbones._specs import SPECS
from vboost.backbones.base import GenerationDefaults
from vboost.backbones.ltx_video import LTXVideoBackbone

_MAX_SEQUENCE_LENGTH = 128  # the text block's default, and LTXPipeline.__call__'s


class LTXModularBackbone(ModularBackbone):
    """LTX-Video on ``LTXModularPipeline``; its guider runs the conditional and unconditional predictions as
    separate denoiser calls (``LTXPipeline`` batches them)."""

    spec = SPECS["ltx_modular"]
    pipeline_class = LTXModularPipeline

    @classmethod
    def tiny(cls, *, seed: int = 0) -> "LTXModularBackbone":
        # The components of vboost's tiny LTX-Video (LTXVideoBackbone.tiny), the modular pipeline's own guider aside.
        plain = LTXVideoBackbone.tiny(seed=seed).pipe
        pipe = LTXModularPipeline()
        pipe.update_components(**{name: getattr(plain, name) for name in ("tokenizer", "text_encoder", "vae", "transformer", "scheduler")})
        return cls(pipe, GenerationDefaults(num_frames=9, height=64, width=64, steps=3, guidance=3.0, fps=24))

    def _encode_prompt(self, prompt: str) -> dict[str, torch.Tensor]:
        embeds, mask, negative, negative_mask = LTXTextEncoderStep.encode_prompt(
            self.pipe, prompt, device=self.device, prepare_unconditional_embeds=True,
            max_sequence_length=_MAX_SEQUENCE_LENGTH,
        )
        return {
            "prompt_embeds": embeds,
            "prompt_attention_mask": mask,
            "negative_prompt_embeds": negative,
            "negative_prompt_attention_mask": negative_mask,
        }
