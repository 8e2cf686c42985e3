"""LTX-Video: ``transformer_blocks.{i}.attn1`` (self-attention, all tokens are video), q/k ``[B, L, N, d]``."""

from __future__ import annotations

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.transformers.transformer_ltx import LTXAttention, LTXVideoAttnProcessor, apply_rotary_emb

from vboost.methods.enhance_a_video._processor import Family, FetaProcessor, packed_latent_frames


class LTXVideoFetaProcessor(FetaProcessor):
    """``LTXVideoAttnProcessor`` (diffusers 0.42) with the whole output after ``to_out`` scaled."""

    def __call__(
        self,
        attn: LTXAttention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if not self.active:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        batch_size, sequence_length, _ = hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states

        query = attn.norm_q(attn.to_q(hidden_states))
        key = attn.norm_k(attn.to_k(encoder_hidden_states))
        value = attn.to_v(encoder_hidden_states)
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb)
            key = apply_rotary_emb(key, image_rotary_emb)
        query = query.unflatten(2, (attn.heads, -1))
        key = key.unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))

        score = self.score(query, key, heads_first=False)

        hidden_states = dispatch_attention_fn(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False,
            backend=self._attention_backend, parallel_config=self._parallel_config,
        )
        hidden_states = hidden_states.flatten(2, 3).to(query.dtype)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        return hidden_states * score


def _latent_frames(denoiser: torch.nn.Module, args: tuple, kwargs: dict) -> int:
    return packed_latent_frames(denoiser, args, kwargs, position=4)  # num_frames: the 5th positional argument


LTX_VIDEO = Family(
    site_pattern=r"transformer_blocks\.\d+\.attn1",
    processor_class=LTXVideoAttnProcessor,
    feta_processor=LTXVideoFetaProcessor,
    latent_frames=_latent_frames,
)
