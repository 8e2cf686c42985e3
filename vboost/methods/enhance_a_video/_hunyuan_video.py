"""HunyuanVideo: dual-stream ``transformer_blocks.{i}.attn`` (image stream only) and single-stream
``single_transformer_blocks.{i}.attn`` (text tokens last); q/k ``[B, L, N, d]``."""

from __future__ import annotations

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.transformers.transformer_hunyuan_video import HunyuanVideoAttnProcessor2_0

from vboost.methods.enhance_a_video._processor import Family, FetaProcessor, hidden_states_arg, with_text_stream


class HunyuanVideoFetaProcessor(FetaProcessor):
    """``HunyuanVideoAttnProcessor2_0`` (diffusers 0.42) with the image-stream output scaled.

    Dual-stream modules scale the image output after ``to_out``; single-stream ones (no ``to_out``) scale the
    raw attention output of the image tokens. The text output is returned untouched.
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
        # Single-stream modules have no added projections: text rides at the end of the one sequence.
        single_stream = attn.add_q_proj is None and encoder_hidden_states is not None
        text_len = encoder_hidden_states.shape[1] if encoder_hidden_states is not None else 0
        if single_stream:
            hidden_states = torch.cat([hidden_states, encoder_hidden_states], dim=1)

        query = attn.to_q(hidden_states).unflatten(2, (attn.heads, -1))
        key = attn.to_k(hidden_states).unflatten(2, (attn.heads, -1))
        value = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if image_rotary_emb is not None:
            if single_stream:
                query = torch.cat(
                    [apply_rotary_emb(query[:, :-text_len], image_rotary_emb, sequence_dim=1), query[:, -text_len:]], dim=1
                )
                key = torch.cat(
                    [apply_rotary_emb(key[:, :-text_len], image_rotary_emb, sequence_dim=1), key[:, -text_len:]], dim=1
                )
            else:
                query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
                key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)

        video_len = query.shape[1] - (text_len if single_stream else 0)
        score = self.score(query[:, :video_len], key[:, :video_len], heads_first=False)

        if attn.add_q_proj is not None and encoder_hidden_states is not None:
            query, key, value = with_text_stream(attn, query, key, value, encoder_hidden_states)

        hidden_states = dispatch_attention_fn(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False,
            backend=self._attention_backend, parallel_config=self._parallel_config,
        )
        hidden_states = hidden_states.flatten(2, 3).to(query.dtype)

        if encoder_hidden_states is not None:
            hidden_states, encoder_hidden_states = hidden_states[:, :-text_len], hidden_states[:, -text_len:]
            if getattr(attn, "to_out", None) is not None:
                hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
            if getattr(attn, "to_add_out", None) is not None:
                encoder_hidden_states = attn.to_add_out(encoder_hidden_states)
        return hidden_states * score, encoder_hidden_states


def _latent_frames(denoiser: torch.nn.Module, args: tuple, kwargs: dict) -> int:
    # HunyuanVideo latents are [B, C, T, H, W].
    return hidden_states_arg(args, kwargs).shape[2] // denoiser.config.patch_size_t


HUNYUAN_VIDEO = Family(
    site_pattern=r"(single_)?transformer_blocks\.\d+\.attn",
    processor_class=HunyuanVideoAttnProcessor2_0,
    feta_processor=HunyuanVideoFetaProcessor,
    latent_frames=_latent_frames,
    cfg_in_one_call=False,  # the pipeline calls the denoiser once per guidance half
)
