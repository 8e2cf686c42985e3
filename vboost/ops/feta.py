"""Enhance-A-Video's cross-frame intensity score (docs/methods.md; arXiv 2502.07508)."""

from __future__ import annotations

import torch


def cross_frame_intensity(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Mean off-diagonal weight of the frame-to-frame attention maps, pooled over rows and heads.

    ``query, key``: ``[M, N, F, d]``. Returns a 0-dim float32 tensor (``1/F`` for uniform attention).
    Raises ``ValueError`` naming the shapes when they are not 4-D and equal, or when ``F < 2``.
    """
    return _offdiagonal_means(query, key).mean()


def clip_intensities(query: torch.Tensor, key: torch.Tensor, *, clips: int, halves: int = 1) -> torch.Tensor:
    """:func:`cross_frame_intensity` of each clip of a batched call: ``[clips]`` float32.

    Rows of ``query, key`` (``[M, N, F, d]``) are ordered (half, clip, position): ``halves`` is 2 when the call
    batches classifier-free guidance as ``[uncond, cond]`` (each clip then pools its two halves, as one clip alone
    does), else 1. Raises ``ValueError`` as :func:`cross_frame_intensity`, and naming ``M`` when it does not split
    into ``halves x clips`` equal parts.
    """
    means = _offdiagonal_means(query, key)
    if clips < 1 or halves < 1 or means.shape[0] % (clips * halves):
        raise ValueError(f"{means.shape[0]} rows do not split into {halves} halves x {clips} clips")
    # [halves, clips, rest] -> [clips, halves * rest]: each clip's rows in the order one clip alone has them.
    per_clip = means.reshape(halves, clips, -1).transpose(0, 1).reshape(clips, -1)
    return per_clip.mean(dim=1)


def _offdiagonal_means(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """``[M, N]`` float32: each row's and head's mean off-diagonal weight of its softmaxed ``F x F`` map."""
    if query.ndim != 4 or key.ndim != 4:
        raise ValueError(f"query and key must be [M, N, F, d]; got shapes {tuple(query.shape)} and {tuple(key.shape)}")
    if query.shape != key.shape:
        raise ValueError(f"query and key shapes differ: {tuple(query.shape)} vs {tuple(key.shape)}")
    num_frames, head_dim = query.shape[-2], query.shape[-1]
    if num_frames < 2:
        raise ValueError(f"the score needs at least 2 frames; got F={num_frames} (shape {tuple(query.shape)})")
    # Logits in the input dtype, as the official code does; only the softmax is upcast.
    logits = (query * head_dim**-0.5) @ key.transpose(-1, -2)
    attn = logits.float().softmax(dim=-1)
    diagonal = attn.diagonal(dim1=-2, dim2=-1).sum(-1)
    return (attn.sum(dim=(-2, -1)) - diagonal) / (num_frames * num_frames - num_frames)


def feta_score(query: torch.Tensor, key: torch.Tensor, weight: float) -> torch.Tensor:
    """The Enhance-A-Video gain ``clamp(CFI * (F + weight), min=1)`` for one attention call.

    ``query, key``: ``[M, N, F, d]`` (``M`` = videos x spatial positions), in the model dtype. Returns a 0-dim
    float32 tensor. Raises ``ValueError`` naming the shapes when they are not 4-D and equal, or when ``F < 2``.
    """
    return score_from_intensity(cross_frame_intensity(query, key), query.shape[-2], weight)


def score_from_intensity(cfi: torch.Tensor, num_frames: int, weight: float) -> torch.Tensor:
    """``clamp(cfi * (num_frames + weight), min=1)``: the official code's temperature is ``F + weight``."""
    return (cfi * (num_frames + weight)).clamp(min=1.0)
