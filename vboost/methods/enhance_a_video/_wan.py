"""Wan2.1: ``blocks.{i}.attn1`` (self-attention, all tokens are video), q/k ``[B, L, N, d]``."""

from __future__ import annotations

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.transformers.transformer_wan import WanAttention, WanAttnProcessor, _get_qkv_projections

from vboost.methods.base import UnsupportedModelError
from vboost.methods.enhance_a_video._processor import Family, FetaProcessor, hidden_states_arg


class WanFetaProcessor(FetaProcessor):
    """The self-attention path of ``WanAttnProcessor`` (diffusers 0.42) with the whole output scaled."""

    def __call__(
        self,
        attn: WanAttention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if not self.active:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        query, key, value = _get_qkv_projections(attn, hidden_states, encoder_hidden_states)
        query = attn.norm_q(query).unflatten(2, (attn.heads, -1))
        key = attn.norm_k(key).unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))
        if rotary_emb is not None:
            query = _apply_rotary_emb(query, *rotary_emb)
            key = _apply_rotary_emb(key, *rotary_emb)

        score = self.score(query, key, heads_first=False)

        hidden_states = dispatch_attention_fn(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False,
            backend=self._attention_backend, parallel_config=self._parallel_config,
        )
        hidden_states = hidden_states.flatten(2, 3).type_as(query)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        return hidden_states * score


def _apply_rotary_emb(hidden_states: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> torch.Tensor:
    # WanAttnProcessor keeps this helper local to its __call__, so it is restated here verbatim.
    x1, x2 = hidden_states.unflatten(-1, (-1, 2)).unbind(-1)
    cos = freqs_cos[..., 0::2]
    sin = freqs_sin[..., 1::2]
    out = torch.empty_like(hidden_states)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(hidden_states)


def _check_self_attention(name: str, module: torch.nn.Module) -> None:
    if module.is_cross_attention or module.add_k_proj is not None:
        raise UnsupportedModelError(f"{name} is not a plain self-attention; EnhanceAVideo only enters Wan's attn1")


def _latent_frames(denoiser: torch.nn.Module, args: tuple, kwargs: dict) -> int:
    # Wan latents are [B, C, T, H, W]; patch_size is (t, h, w).
    return hidden_states_arg(args, kwargs).shape[2] // denoiser.config.patch_size[0]


WAN = Family(
    site_pattern=r"blocks\.\d+\.attn1",
    processor_class=WanAttnProcessor,
    feta_processor=WanFetaProcessor,
    latent_frames=_latent_frames,
    check_site=_check_self_attention,
    cfg_in_one_call=False,  # the pipeline calls the denoiser once per guidance half
)
