"""LTX-Video text-to-video through diffusers' ``LTXPipeline``."""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKLLTXVideo,
    FlowMatchEulerDiscreteScheduler,
    LTXPipeline,
    LTXVideoTransformer3DModel,
)

from vboost.backbones._dit import DiTBackbone, tiny_t5_text_stack
from vboost.backbones._specs import SPECS
from vboost.backbones.base import GenerationDefaults


class LTXVideoBackbone(DiTBackbone):
    """LTX-Video; classifier-free guidance runs batched (``[uncond, cond]``) when guidance > 1."""

    spec = SPECS["ltx_video"]
    pipeline_class = LTXPipeline

    @classmethod
    def tiny(cls, *, seed: int = 0) -> "LTXVideoBackbone":
        tokenizer, text_encoder = tiny_t5_text_stack(seed=seed, d_model=16)
        torch.manual_seed(seed)
        transformer = LTXVideoTransformer3DModel(**cls.spec.tiny_denoiser)
        # Same compression as the real VAE (32x in space with patch_size 4, 8x in time).
        vae = AutoencoderKLLTXVideo(
            latent_channels=8, block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
            layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1), patch_size=4,
        )
        scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)  # as Lightricks/LTX-Video ships it
        pipe = LTXPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler)
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, GenerationDefaults(num_frames=9, height=64, width=64, steps=3, guidance=3.0, fps=24))

    def _encode_prompt(self, prompt: str, cfg: bool) -> dict[str, torch.Tensor | None]:
        embeds, mask, negative, negative_mask = self.pipe.encode_prompt(prompt, do_classifier_free_guidance=cfg, device=self.device)
        return {
            "prompt_embeds": embeds,
            "prompt_attention_mask": mask,
            "negative_prompt_embeds": negative,
            "negative_prompt_attention_mask": negative_mask,
        }
