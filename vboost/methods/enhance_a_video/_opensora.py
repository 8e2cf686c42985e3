"""Open-Sora v1.2 (STDiT3): the temporal blocks' self-attention ``temporal_blocks.{i}.attn``.

There attention runs over frames only, one sequence per spatial patch: q/k arrive as ``[(B S), N, T, d]`` after
the per-head RMS norm and RoPE, already the grouping of the score, so each row is one patch position's F x F map.
The official code has no Open-Sora integration; as it does for its other backbones, the whole output of the
attention module (after ``proj``) is scaled, before the block's gate.
"""

from __future__ import annotations

import torch

from vboost.backbones.opensora._stdit3 import STDiT3Attention, STDiT3AttnProcessor
from vboost.methods.enhance_a_video._processor import Family, FetaProcessor


class OpenSoraFetaProcessor(FetaProcessor):
    """``STDiT3AttnProcessor`` with its output scaled by the score of its q/k."""

    def __call__(
        self,
        attn: STDiT3Attention,
        hidden_states: torch.Tensor,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if not self.active:
            return self.original(attn, hidden_states, rotary_emb)
        query, key, value = attn.project_qkv(hidden_states, rotary_emb)
        score = self.score(query, key, heads_first=True)  # L = T frames of one patch position: S = 1
        return attn.attend(query, key, value) * score


def _latents(args: tuple, kwargs: dict) -> torch.Tensor:
    # STDiT3 latents are [B, C, T, H, W] (argument x).
    return args[0] if args else kwargs["x"]


def _latent_frames(denoiser: torch.nn.Module, args: tuple, kwargs: dict) -> int:
    # Time is padded up to whole patches.
    return -(-_latents(args, kwargs).shape[2] // denoiser.config.patch_size[0])


OPENSORA = Family(
    site_pattern=r"temporal_blocks\.\d+\.attn",
    processor_class=STDiT3AttnProcessor,
    feta_processor=OpenSoraFetaProcessor,
    latent_frames=_latent_frames,
    latents=_latents,
)
