"""HunyuanVideo text-to-video through diffusers' ``HunyuanVideoPipeline``."""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKLHunyuanVideo,
    FlowMatchEulerDiscreteScheduler,
    HunyuanVideoPipeline,
    HunyuanVideoTransformer3DModel,
)
from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import (
    DEFAULT_PROMPT_TEMPLATE,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    LlamaConfig,
    LlamaModel,
)

from vboost.backbones._dit import DiTBackbone, tiny_tokenizer
from vboost.backbones._specs import SPECS
from vboost.backbones.base import GenerationDefaults


def _tiny_clip_tokenizer() -> CLIPTokenizer:
    # Byte-pair vocabulary of single letters (word-final ones carry "</w>"), no merges.
    letters = list("abcdefghijklmnopqrstuvwxyz.,")
    vocab = {token: i for i, token in enumerate(["<|startoftext|>", "<|endoftext|>"] + letters + [c + "</w>" for c in letters])}
    return CLIPTokenizer(vocab=vocab, merges=[])


class HunyuanVideoBackbone(DiTBackbone):
    """HunyuanVideo; ``guidance`` is the embedded (distilled) guidance, so there is one denoiser call per step."""

    spec = SPECS["hunyuan_video"]
    pipeline_class = HunyuanVideoPipeline

    @classmethod
    def tiny(cls, *, seed: int = 0) -> "HunyuanVideoBackbone":
        # The pipeline drops the first crop_start=95 tokens (the template as Llama tokenizes it) and keeps 256.
        # With the template's long words in the vocabulary the template is 112 tiny tokens, so the prompt
        # lands inside the kept window (as it does with the real tokenizer).
        tokenizer = tiny_tokenizer(" ".join(w for w in DEFAULT_PROMPT_TEMPLATE["template"].split() if len(w) >= 6))
        tokenizer_2 = _tiny_clip_tokenizer()
        torch.manual_seed(seed)
        text_encoder = LlamaModel(
            LlamaConfig(
                vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                num_attention_heads=2, num_key_value_heads=2, head_dim=8, max_position_embeddings=512,
            )
        ).eval()
        text_encoder_2 = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer_2), hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                num_attention_heads=2, projection_dim=8, max_position_embeddings=77,
                bos_token_id=0, eos_token_id=1, pad_token_id=1,
            )
        ).eval()
        transformer = HunyuanVideoTransformer3DModel(**cls.spec.tiny_denoiser)
        vae = AutoencoderKLHunyuanVideo(
            latent_channels=4, down_block_types=("HunyuanVideoDownBlock3D",) * 4,
            up_block_types=("HunyuanVideoUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
            norm_num_groups=4, spatial_compression_ratio=8, temporal_compression_ratio=4,
        )
        # The scheduler of hunyuanvideo-community/HunyuanVideo.
        scheduler = FlowMatchEulerDiscreteScheduler(shift=7.0)
        pipe = HunyuanVideoPipeline(
            text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer, vae=vae, scheduler=scheduler,
            text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2,
        )
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, GenerationDefaults(num_frames=9, height=32, width=32, steps=3, guidance=6.0, fps=24))

    def _encode_prompt(self, prompt: str, cfg: bool) -> dict[str, torch.Tensor | None]:
        # Guidance is embedded in the model (guidance_scale conditions it): there is no negative prompt.
        embeds, pooled, mask = self.pipe.encode_prompt(prompt, device=self.device)
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled, "prompt_attention_mask": mask}
