"""HunyuanVideo 1.5: dual-stream ``transformer_blocks.{i}.attn`` (joint attention, text tokens last), q/k
``[B, L, N, d]``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.transformers.transformer_hunyuan_video15 import HunyuanVideo15AttnProcessor2_0

from vboost.methods.base import UnsupportedModelError
from vboost.methods.enhance_a_video._processor import Family, FetaProcessor, hidden_states_arg, with_text_stream


class HunyuanVideo15FetaProcessor(FetaProcessor):
    """``HunyuanVideo15AttnProcessor2_0`` (diffusers 0.42) with the video output after ``to_out`` scaled.

    The video tokens come first in the joint sequence and all of them are valid (the mask pads only the text tokens,
    per sample), so the kernel's video q/k are the first ``L - text`` rows for every sample. The text output is
    returned untouched.
    """

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.active:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        query = attn.norm_q(attn.to_q(hidden_states).unflatten(2, (attn.heads, -1)))
        key = attn.norm_k(attn.to_k(hidden_states).unflatten(2, (attn.heads, -1)))
        value = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1))
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
            key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)

        score = self.score(query, key, heads_first=False)

        if encoder_hidden_states is not None:
            query, key, value = with_text_stream(attn, query, key, value, encoder_hidden_states)

        # The per-sample text mask, padded with True over the video tokens, as a [B, 1, L, L] pairwise mask.
        batch_size, seq_len = query.shape[:2]
        attention_mask = F.pad(attention_mask, (seq_len - attention_mask.shape[1], 0), value=True).bool()
        rows = attention_mask.view(batch_size, 1, 1, seq_len).repeat(1, 1, seq_len, 1)
        attention_mask = rows & rows.transpose(2, 3)

        hidden_states = dispatch_attention_fn(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False,
            backend=self._attention_backend, parallel_config=self._parallel_config,
        )
        hidden_states = hidden_states.flatten(2, 3).to(query.dtype)

        if encoder_hidden_states is not None:
            text_len = encoder_hidden_states.shape[1]
            hidden_states, encoder_hidden_states = hidden_states[:, :-text_len], hidden_states[:, -text_len:]
            if getattr(attn, "to_out", None) is not None:
                hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
            if getattr(attn, "to_add_out", None) is not None:
                encoder_hidden_states = attn.to_add_out(encoder_hidden_states)
        return hidden_states * score, encoder_hidden_states


def _check_joint_attention(name: str, module: torch.nn.Module) -> None:
    if module.add_q_proj is None:
        raise UnsupportedModelError(f"{name} has no text projections; EnhanceAVideo enters HunyuanVideo 1.5's joint attention only")


def _latent_frames(denoiser: torch.nn.Module, args: tuple, kwargs: dict) -> int:
    # HunyuanVideo 1.5 latents are [B, C, T, H, W].
    return hidden_states_arg(args, kwargs).shape[2] // denoiser.config.patch_size_t


HUNYUAN_VIDEO15 = Family(
    site_pattern=r"transformer_blocks\.\d+\.attn",
    processor_class=HunyuanVideo15AttnProcessor2_0,
    feta_processor=HunyuanVideo15FetaProcessor,
    latent_frames=_latent_frames,
    check_site=_check_joint_attention,
    cfg_in_one_call=False,  # the guider calls the denoiser once per prediction
)
