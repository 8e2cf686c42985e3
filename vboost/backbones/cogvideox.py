"""CogVideoX (2B, 5B, 1.5-5B) through diffusers' ``CogVideoXPipeline``."""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKLCogVideoX,
    CogVideoXDDIMScheduler,
    CogVideoXPipeline,
    CogVideoXTransformer3DModel,
)

from vboost.backbones._dit import DiTBackbone, tiny_t5_text_stack
from vboost.backbones._specs import SPECS
from vboost.backbones.base import GenerationDefaults


class CogVideoXBackbone(DiTBackbone):
    """CogVideoX text-to-video; classifier-free guidance runs batched (``[uncond, cond]``) when guidance > 1."""

    spec = SPECS["cogvideox"]
    pipeline_class = CogVideoXPipeline

    @classmethod
    def tiny(cls, *, seed: int = 0) -> "CogVideoXBackbone":
        tokenizer, text_encoder = tiny_t5_text_stack(seed=seed)
        torch.manual_seed(seed)
        transformer = CogVideoXTransformer3DModel(**cls.spec.tiny_denoiser)
        vae = AutoencoderKLCogVideoX(
            down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4,
            block_out_channels=(8, 8, 8, 8), latent_channels=4, layers_per_block=1, norm_num_groups=2,
            temporal_compression_ratio=4,
        )
        # The scheduler settings of THUDM/CogVideoX-2b.
        scheduler = CogVideoXDDIMScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
            prediction_type="v_prediction", rescale_betas_zero_snr=True, set_alpha_to_one=True,
            snr_shift_scale=3.0, timestep_spacing="trailing",
        )
        pipe = CogVideoXPipeline(
            tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
        )
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, GenerationDefaults(num_frames=9, height=32, width=32, steps=3, guidance=6.0, fps=8))

    def _encode_prompt(self, prompt: str, cfg: bool) -> dict[str, torch.Tensor | None]:
        embeds, negative = self.pipe.encode_prompt(prompt, do_classifier_free_guidance=cfg, device=self.device)
        return {"prompt_embeds": embeds, "negative_prompt_embeds": negative}
