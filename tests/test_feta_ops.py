"""feta_score against closed forms and hand-rolled references (docs/methods.md; arXiv 2502.07508)."""

from __future__ import annotations

import math

import pytest
import torch

from vboost.ops.feta import feta_score


def _loop_score(query: torch.Tensor, key: torch.Tensor, weight: float, logits_dtype: torch.dtype) -> float:
    """Entry-by-entry reference: logits rounded to ``logits_dtype``, softmax and averages in float64."""
    rows, heads, frames, dim = query.shape
    scaled_q = query * dim**-0.5  # the scaling happens in the input dtype, as in the official code
    total = 0.0
    for m in range(rows):
        for n in range(heads):
            logits = [
                [float((scaled_q[m, n, i].double() * key[m, n, j].double()).sum().to(logits_dtype)) for j in range(frames)]
                for i in range(frames)
            ]
            offdiag = 0.0
            for i in range(frames):
                peak = max(logits[i])
                exps = [math.exp(x - peak) for x in logits[i]]
                offdiag += sum(e for j, e in enumerate(exps) if j != i) / sum(exps)
            total += offdiag / (frames * frames - frames)
    cfi = total / (rows * heads)
    return max(1.0, cfi * (frames + weight))


@pytest.mark.parametrize("frames,weight", [(2, 0.0), (3, 4.0), (13, 3.4), (33, 4.0)])
def test_uniform_attention_gives_one_plus_weight_over_frames(frames, weight):
    query = torch.zeros(5, 2, frames, 8)
    key = torch.randn(5, 2, frames, 8)
    score = feta_score(query, key, weight)
    assert score.dtype == torch.float32 and score.ndim == 0
    assert score.item() == pytest.approx(1.0 + weight / frames, rel=1e-6)


def test_matches_loop_reference_on_random_inputs():
    torch.manual_seed(0)
    query, key = torch.randn(6, 3, 5, 8, dtype=torch.float64), torch.randn(6, 3, 5, 8, dtype=torch.float64)
    for weight in (0.5, 4.0):
        expected = _loop_score(query, key, weight, torch.float64)
        assert feta_score(query, key, weight).item() == pytest.approx(expected, rel=1e-6)
    # float32 inputs: same number up to float32 rounding.
    expected = _loop_score(query, key, 4.0, torch.float64)
    assert feta_score(query.float(), key.float(), 4.0).item() == pytest.approx(expected, rel=1e-5)


def test_bf16_logits_are_computed_in_bf16():
    torch.manual_seed(1)
    # Large logits, so rounding them to bf16 visibly moves the softmax.
    query = (3 * torch.randn(4, 2, 6, 16)).bfloat16()
    key = (3 * torch.randn(4, 2, 6, 16)).bfloat16()
    weight = 4.0
    score = feta_score(query, key, weight)
    assert score.dtype == torch.float32
    bf16_reference = _loop_score(query, key, weight, torch.bfloat16)
    fp32_reference = _loop_score(query, key, weight, torch.float64)
    assert score.item() == pytest.approx(bf16_reference, rel=1e-6)
    # Float32 logits would give a visibly different score (about 2e-4 apart here, 100x the tolerance above).
    assert abs(score.item() - fp32_reference) > 1e-4


def test_clamps_at_one_when_frames_attend_to_themselves():
    frames = 4
    # Each frame's query/key is a large multiple of its own basis vector: attention is the identity.
    basis = 50.0 * torch.eye(frames, 8)
    query = basis.expand(3, 2, frames, 8).clone()
    assert feta_score(query, query.clone(), 2.0).item() == 1.0


@pytest.mark.parametrize(
    "query_shape,key_shape,message",
    [((4, 2, 8), (4, 2, 8), r"\[M, N, F, d\]"), ((2, 2, 3, 8), (2, 2, 4, 8), r"differ"), ((2, 2, 1, 8), (2, 2, 1, 8), r"F=1")],
)
def test_bad_shapes_raise_naming_the_shape(query_shape, key_shape, message):
    with pytest.raises(ValueError, match=message):
        feta_score(torch.zeros(query_shape), torch.zeros(key_shape), 1.0)
