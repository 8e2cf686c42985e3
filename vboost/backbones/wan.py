"""Wan2.1 text-to-video (1.3B, 14B) through diffusers' ``WanPipeline``."""

from __future__ import annotations


import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel

from vboost.backbones._dit import DiTBackbone, tiny_t5_text_stack
from vboost.backbones._specs import SPECS
from vboost.backbones.base import GenerationDefaults


class WanBackbone(DiTBackbone):
    """Wan2.1; classifier-free guidance runs as two separate denoiser calls per step."""

    spec = SPECS["wan"]
    pipeline_class = WanPipeline
    max_sequence_length = 512  # WanPipeline.__call__'s text length (its encode_prompt defaults to 226)

    @classmethod
    def tiny(cls, *, seed: int = 0) -> "WanBackbone":
        tokenizer, text_encoder = tiny_t5_text_stack(seed=seed, d_model=16, umt5=True)
        torch.manual_seed(seed)
        transformer = WanTransformer3DModel(**cls.spec.tiny_denoiser)
        vae = AutoencoderKLWan(
            base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
        )
        # The scheduler of Wan-AI/Wan2.1-T2V-1.3B-Diffusers (flow_shift 3.0 is its 480p setting).
        scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
        pipe = WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler)
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, GenerationDefaults(num_frames=9, height=32, width=32, steps=3, guidance=5.0, fps=16))

    def _encode_prompt(self, prompt: str, cfg: bool) -> dict[str, torch.Tensor | None]:
        embeds, negative = self.pipe.encode_prompt(
            prompt, do_classifier_free_guidance=cfg, max_sequence_length=self.max_sequence_length, device=self.device
        )
        return {"prompt_embeds": embeds, "negative_prompt_embeds": negative}
