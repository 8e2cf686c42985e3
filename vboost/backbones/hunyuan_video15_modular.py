"""HunyuanVideo 1.5 text-to-video through diffusers' ``HunyuanVideo15ModularPipeline``."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import (
    AutoencoderKLHunyuanVideo15,
    FlowMatchEulerDiscreteScheduler,
    HunyuanVideo15ModularPipeline,
    HunyuanVideo15Transformer3DModel,
)
from diffusers.modular_pipelines.hunyuan_video1_5.encoders import HunyuanVideo15TextEncoderStep
from diffusers.modular_pipelines.hunyuan_video1_5.modular_blocks_hunyuan_video1_5 import HunyuanVideo15Blocks
from tokenizers import pre_tokenizers
from transformers import (
    ByT5Tokenizer,
    Qwen2_5_VLTextConfig,
    Qwen2_5_VLTextModel,
    Qwen2Tokenizer,
    T5Config,
    T5EncoderModel,
)

from vboost.backbones._modular import ModularBackbone
from vboost.backbones._specs import SPECS
from vboost.backbones.base import GenerationDefaults

# ChatML, the conversation format of Qwen2.5-VL's tokenizer, for the plain-text messages the text block sends.
_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tiny_qwen_tokenizer(words_of: tuple[str, ...]) -> Qwen2Tokenizer:
    """A byte-level BPE tokenizer with Qwen2's pre-tokenizer and chat markers: every byte is a token, and merges make
    each word of the texts ``words_of`` one token."""
    vocab = {byte: i for i, byte in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    split = Qwen2Tokenizer(vocab=dict(vocab)).backend_tokenizer.pre_tokenizer
    merges = []
    for text in words_of:
        for word, _ in split.pre_tokenize_str(text):
            for end in range(2, len(word) + 1):
                if word[:end] not in vocab:
                    merges.append((word[:end - 1], word[end - 1]))
                    vocab[word[:end]] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, extra_special_tokens=["<|im_start|>", "<|im_end|>"])
    tokenizer.chat_template = _CHAT_TEMPLATE
    return tokenizer


class HunyuanVideo15ModularBackbone(ModularBackbone):
    """HunyuanVideo 1.5 (text-to-video) on ``HunyuanVideo15ModularPipeline`` with its text-to-video blocks; the
    prompt is encoded by Qwen2.5-VL and, for quoted text in it, by a ByT5 glyph encoder. Classifier-free guidance
    runs as separate denoiser calls per step."""

    spec = SPECS["hunyuan_video15_modular"]
    pipeline_class = HunyuanVideo15ModularPipeline

    @classmethod
    def new_pipeline(cls, **kwargs: Any) -> HunyuanVideo15ModularPipeline:
        # The class's default blocks also run image-to-video and expect a SigLIP image encoder, which a text-to-video
        # checkpoint does not have.
        return cls.pipeline_class(blocks=HunyuanVideo15Blocks(), **kwargs)

    @classmethod
    def tiny(cls, *, seed: int = 0) -> "HunyuanVideo15ModularBackbone":
        pipe = cls.new_pipeline()
        # The text block drops the first 108 tokens (the chat template before the prompt, as Qwen's tokenizer makes
        # it). With the template's words in the vocabulary that is 123 tiny tokens, so the whole prompt lands inside
        # the kept window, as it does with the real tokenizer.
        tokenizer = _tiny_qwen_tokenizer((pipe.system_message, "system", "user", "assistant"))
        tokenizer_2 = ByT5Tokenizer()  # bytes: no vocabulary file
        torch.manual_seed(seed)
        # The text block takes the hidden states three layers from the end; mrope_section splits the head's 4 rotary
        # frequencies between time, height and width, as Qwen2.5-VL's [16, 24, 24] splits its 64.
        text_encoder = Qwen2_5_VLTextModel(
            Qwen2_5_VLTextConfig(
                vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
                bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
                eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 1, 1]},
            )
        ).eval()
        text_encoder_2 = T5EncoderModel(
            T5Config(
                vocab_size=len(tokenizer_2), d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2,
                relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
            )
        ).eval()
        # Its input is the noisy latents, the conditioning latents and their mask (4 + 4 + 1 channels).
        transformer = HunyuanVideo15Transformer3DModel(**cls.spec.tiny_denoiser)
        # Five levels: 16x in space, as the real VAE; 4x in time.
        vae = AutoencoderKLHunyuanVideo15(latent_channels=4, block_out_channels=(8, 8, 8, 8, 8), layers_per_block=1)
        scheduler = FlowMatchEulerDiscreteScheduler(shift=5.0)  # the flow shift of the 480p text-to-video model
        pipe.update_components(
            tokenizer=tokenizer, text_encoder=text_encoder, tokenizer_2=tokenizer_2, text_encoder_2=text_encoder_2,
            transformer=transformer, vae=vae, scheduler=scheduler,
        )
        return cls(pipe, GenerationDefaults(num_frames=9, height=32, width=32, steps=3, guidance=6.0, fps=24))

    def _encode_prompt(self, prompt: str) -> dict[str, torch.Tensor]:
        # In the denoiser's dtype, as the text block casts them; the negative prompt is the block's default (none).
        dtype = self.pipe.transformer.dtype
        embeds, mask, embeds_2, mask_2 = HunyuanVideo15TextEncoderStep.encode_prompt(
            self.pipe, prompt, device=self.device, dtype=dtype,
        )
        negative, negative_mask, negative_2, negative_mask_2 = HunyuanVideo15TextEncoderStep.encode_prompt(
            self.pipe, None, device=self.device, dtype=dtype,
        )
        return {
            "prompt_embeds": embeds,
            "prompt_embeds_mask": mask,
            "prompt_embeds_2": embeds_2,
            "prompt_embeds_mask_2": mask_2,
            "negative_prompt_embeds": negative,
            "negative_prompt_embeds_mask": negative_mask,
            "negative_prompt_embeds_2": negative_2,
            "negative_prompt_embeds_mask_2": negative_mask_2,
        }
