"""LTX-2: ``transformer_blocks.{i}.attn1``, the video self-attention (all tokens are video: the audio tokens attend in
``audio_attn1`` and meet the video only in the audio-video cross-attentions), q/k ``[B, L, N, d]``."""

from __future__ import annotations

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.transformers.transformer_ltx2 import (
    LTX2Attention,
    LTX2AudioVideoAttnProcessor,
    apply_interleaved_rotary_emb,
    apply_split_rotary_emb,
)

from vboost.methods.enhance_a_video._processor import Family, FetaProcessor, packed_latent_frames

_ROTARY = {"interleaved": apply_interleaved_rotary_emb, "split": apply_split_rotary_emb}


class LTX2FetaProcessor(FetaProcessor):
    """``LTX2AudioVideoAttnProcessor`` (diffusers 0.42) on a video self-attention, the whole output after ``to_out``
    scaled. Raises ``ValueError`` on a masked call (in-context reference tokens), whose attention the score does not
    describe."""

    def __call__(
        self,
        attn: LTX2Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        query_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        key_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if not self.active:
            return self.original(
                attn, hidden_states, encoder_hidden_states, attention_mask, query_rotary_emb, key_rotary_emb
            )
        if attention_mask is not None:
            raise ValueError(f"{self.layer}: EnhanceAVideo scores unmasked video self-attention; this call is masked")
        if attn.to_gate_logits is not None:
            gate_logits = attn.to_gate_logits(hidden_states)
        query = attn.norm_q(attn.to_q(hidden_states))
        key = attn.norm_k(attn.to_k(hidden_states))
        value = attn.to_v(hidden_states)
        rotate = _ROTARY.get(attn.rope_type)
        if query_rotary_emb is not None and rotate is not None:
            query = rotate(query, query_rotary_emb)
            key = rotate(key, key_rotary_emb if key_rotary_emb is not None else query_rotary_emb)
        query = query.unflatten(2, (attn.heads, -1))
        key = key.unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))

        score = self.score(query, key, heads_first=False)

        hidden_states = dispatch_attention_fn(
            query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
            backend=self._attention_backend, parallel_config=self._parallel_config,
        )
        hidden_states = hidden_states.flatten(2, 3).to(query.dtype)
        if attn.to_gate_logits is not None:  # per-head gates, where the checkpoint has them
            gates = 2.0 * torch.sigmoid(gate_logits)
            hidden_states = (hidden_states.unflatten(2, (attn.heads, -1)) * gates.unsqueeze(-1)).flatten(2, 3)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        return hidden_states * score


def _latent_frames(denoiser: torch.nn.Module, args: tuple, kwargs: dict) -> int:
    return packed_latent_frames(denoiser, args, kwargs, position=10)  # num_frames: the 11th positional argument


LTX2 = Family(
    site_pattern=r"transformer_blocks\.\d+\.attn1",
    processor_class=LTX2AudioVideoAttnProcessor,
    feta_processor=LTX2FetaProcessor,
    latent_frames=_latent_frames,
    cfg_in_one_call=False,  # the modular pipeline calls the denoiser once per guidance pass
)
