"""CogVideoX (1.0 and 1.5): ``transformer_blocks.{i}.attn1``, text tokens first, q/k ``[B, N, L, d]``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, CogVideoXAttnProcessor2_0
from diffusers.models.embeddings import apply_rotary_emb

from vboost.methods.enhance_a_video._processor import Family, FetaProcessor, hidden_states_arg


class CogVideoXFetaProcessor(FetaProcessor):
    """``CogVideoXAttnProcessor2_0`` (diffusers 0.42) with the video output after ``to_out`` scaled."""

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.active:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        text_seq_length = encoder_hidden_states.size(1)
        hidden_states = torch.cat([encoder_hidden_states, hidden_states], dim=1)
        batch_size, sequence_length, _ = hidden_states.shape

        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])

        query = attn.to_q(hidden_states)
        key = attn.to_k(hidden_states)
        value = attn.to_v(hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if image_rotary_emb is not None:
            query[:, :, text_seq_length:] = apply_rotary_emb(query[:, :, text_seq_length:], image_rotary_emb)
            if not attn.is_cross_attention:
                key[:, :, text_seq_length:] = apply_rotary_emb(key[:, :, text_seq_length:], image_rotary_emb)

        score = self.score(query[:, :, text_seq_length:], key[:, :, text_seq_length:], heads_first=True)

        hidden_states = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False
        )
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        encoder_hidden_states, hidden_states = hidden_states.split(
            [text_seq_length, hidden_states.size(1) - text_seq_length], dim=1
        )
        return hidden_states * score, encoder_hidden_states


def _latent_frames(denoiser: torch.nn.Module, args: tuple, kwargs: dict) -> int:
    # CogVideoX latents are [B, T, C, H, W]; 1.5 patchifies time by patch_size_t.
    return hidden_states_arg(args, kwargs).shape[1] // (denoiser.config.patch_size_t or 1)


COGVIDEOX = Family(
    site_pattern=r"transformer_blocks\.\d+\.attn1",
    processor_class=CogVideoXAttnProcessor2_0,
    feta_processor=CogVideoXFetaProcessor,
    latent_frames=_latent_frames,
)
