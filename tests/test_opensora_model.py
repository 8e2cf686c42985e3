"""Open-Sora v1.2's ported modules against properties that follow from the architecture, and closed forms.

Equality with the original code itself (random weights, both in float32 and bfloat16) is measured by
``benchmarks/compare_opensora.py``; these tests check what must hold whatever the weights: which tokens a block
mixes, the rotary and sin-cos embeddings, the text mask, the VAE's 17-frame runs.
"""

from __future__ import annotations

import math

import pytest
import torch

from vboost.geometry import opensora_vae_frames
from vboost.backbones.opensora import OpenSoraBackbone, STDiT3
from vboost.backbones.opensora._stdit3 import PositionEmbedding2D, RotaryEmbedding, STDiT3Block, apply_rotary_emb

FRAMES, PATCHES, DIM = 4, 6, 32


@pytest.fixture(scope="module")
def model() -> STDiT3:
    torch.manual_seed(0)
    return STDiT3(hidden_size=DIM, depth=1, num_heads=2, mlp_ratio=2.0, caption_channels=16, model_max_length=8).eval()


def _block_inputs(seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, FRAMES * PATCHES, DIM, generator=generator)
    y = torch.randn(2, 5, DIM, generator=generator)
    t = torch.randn(2, 6 * DIM, generator=generator)
    return x, y, t


@torch.no_grad()
def _run_block(temporal: bool, x: torch.Tensor, y, t) -> torch.Tensor:
    torch.manual_seed(2)
    block = STDiT3Block(DIM, num_heads=2, mlp_ratio=2.0, qk_norm=True, temporal=temporal).eval()
    rope = RotaryEmbedding(DIM // 2)(FRAMES, x.dtype) if temporal else None
    return block(x, y, t, None, FRAMES, PATCHES, rope).view(2, FRAMES, PATCHES, DIM)


def test_temporal_block_mixes_frames_of_one_patch_position_only():
    # Tokens are frame-major: token f * S + s is patch s of frame f. Perturb patch 3 of frame 0.
    x, y, t = _block_inputs()
    moved = x.clone()
    moved[0, 3] += torch.randn(DIM)  # not a constant: the LayerNorm in front would remove that
    before, after = _run_block(True, x, y, t), _run_block(True, moved, y, t)
    changed = (after - before).abs().amax(dim=-1)  # [B, T, S]
    assert (changed[0, :, 3] > 1e-4).all()  # every frame of that patch position sees it
    torch.testing.assert_close(after[0, :, [0, 1, 2, 4, 5]], before[0, :, [0, 1, 2, 4, 5]], rtol=0, atol=1e-6)
    torch.testing.assert_close(after[1], before[1], rtol=0, atol=0)


def test_spatial_block_mixes_patches_of_one_frame_only():
    x, y, t = _block_inputs()
    moved = x.clone()
    moved[0, 3] += torch.randn(DIM)  # frame 0, patch 3
    before, after = _run_block(False, x, y, t), _run_block(False, moved, y, t)
    changed = (after - before).abs().amax(dim=-1)
    assert (changed[0, 0] > 1e-4).all()
    torch.testing.assert_close(after[0, 1:], before[0, 1:], rtol=0, atol=1e-6)


def test_rotary_embedding_rotates_interleaved_pairs_by_position_times_frequency():
    rope = RotaryEmbedding(8)
    cos, sin = rope(5, torch.float32)
    x = torch.randn(1, 1, 5, 8)
    out = apply_rotary_emb(x, (cos, sin))
    for pos in range(5):
        for pair in range(4):
            theta = pos * 10000 ** (-2 * pair / 8)
            a, b = x[0, 0, pos, 2 * pair].item(), x[0, 0, pos, 2 * pair + 1].item()
            assert out[0, 0, pos, 2 * pair].item() == pytest.approx(a * math.cos(theta) - b * math.sin(theta), abs=1e-5)
            assert out[0, 0, pos, 2 * pair + 1].item() == pytest.approx(
                b * math.cos(theta) + a * math.sin(theta), abs=1e-5
            )


def test_rotary_scores_depend_on_frame_distance_only():
    rope = RotaryEmbedding(16)
    cos, sin = rope(6, torch.float32)
    q = apply_rotary_emb(torch.randn(16).expand(1, 1, 6, 16), (cos, sin))
    k = apply_rotary_emb(torch.randn(16).expand(1, 1, 6, 16), (cos, sin))
    scores = (q @ k.transpose(-1, -2))[0, 0]
    for shift in range(-5, 6):
        diagonal = scores.diagonal(shift)
        torch.testing.assert_close(diagonal, diagonal[:1].expand_as(diagonal), rtol=1e-5, atol=1e-5)


def test_position_embedding_closed_form():
    # Open-Sora's grid: coordinates divided by the resolution scale, stretched to base_size, the column (x) first.
    dim, rows, cols, scale, base = 16, 3, 5, 1.875, 4
    emb = PositionEmbedding2D(dim)(rows, cols, scale, base, torch.float32)[0]
    freqs = [10000 ** (-2 * i / (dim // 2)) for i in range(dim // 4)]
    for r in range(rows):
        for c in range(cols):
            x, y = c / scale * base / cols, r / scale * base / rows
            expected = (
                [math.sin(x * f) for f in freqs]
                + [math.cos(x * f) for f in freqs]
                + [math.sin(y * f) for f in freqs]
                + [math.cos(y * f) for f in freqs]
            )
            torch.testing.assert_close(emb[r * cols + c], torch.tensor(expected), rtol=1e-5, atol=1e-5)


def _forward(model, y, mask, *, fps=24.0, height=(720.0, 720.0), x=None):
    x = torch.randn(2, 4, 3, 5, 6, generator=torch.Generator().manual_seed(3)) if x is None else x
    with torch.no_grad():
        return model(
            x,
            torch.tensor([900.0, 100.0]),
            y,
            mask=mask,
            fps=torch.tensor([fps]),
            height=torch.tensor(height),
            width=torch.tensor([1280.0, 1280.0]),
        )


def test_text_padding_tokens_do_not_matter(model):
    y = torch.randn(2, 1, 8, 16, generator=torch.Generator().manual_seed(4))
    mask = torch.tensor([[1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0, 0, 0]])
    out = _forward(model, y, mask)
    padded = y.clone()
    padded[0, :, 3:] = 7.0
    padded[1, :, 5:] = -7.0
    torch.testing.assert_close(_forward(model, padded, mask), out, rtol=0, atol=1e-6)
    valid = y.clone()
    valid[0, :, 1] += 1.0
    assert (_forward(model, valid, mask)[0] - out[0]).abs().max() > 1e-4


def test_output_keeps_the_latent_shape_with_patch_padding_and_predicts_sigma(model):
    x = torch.randn(2, 4, 3, 5, 7)  # odd latent height and width: padded to whole 2x2 patches, then cropped
    y = torch.randn(2, 1, 8, 16)
    out = _forward(model, y, None, x=x)
    assert out.shape == (2, 8, 3, 5, 7) and out.dtype == torch.float32  # pred_sigma: velocity and variance


def test_fps_conditions_and_only_the_first_height_is_read(model):
    y = torch.randn(2, 1, 8, 16)
    out = _forward(model, y, None)
    assert (_forward(model, y, None, fps=12.0) - out).abs().max() > 1e-4
    # The original scales the position embedding by height[0] * width[0]; other entries are not read.
    torch.testing.assert_close(_forward(model, y, None, height=(720.0, 480.0)), out, rtol=0, atol=0)
    assert (_forward(model, y, None, height=(480.0, 720.0)) - out).abs().max() > 1e-4


@pytest.mark.parametrize("num_frames,expected", [(1, 1), (16, 4), (17, 5), (20, 6), (51, 15), (102, 30), (120, 36)])
def test_latent_frame_count(num_frames, expected):
    # Each 17-frame run is padded at the front to 20 frames and divided by 4; the rest is padded to whole 4s.
    assert opensora_vae_frames(num_frames) == expected


def test_vae_decodes_each_17_frame_run_on_its_own():
    # The temporal VAE's GroupNorms pool over time, so frames within a run see each other; runs do not.
    vae = OpenSoraBackbone.tiny(seed=0).pipe.vae
    z = torch.randn(1, 4, opensora_vae_frames(37), 4, 4)  # runs of 17, 17 and 3 frames: 5 + 5 + 1 latents
    with torch.no_grad():
        frames = vae.decode(z, 37)
        second_run = z.clone()
        second_run[:, :, 5] += 1.0  # the first latent of the second run
        moved = vae.decode(second_run, 37)
    assert frames.shape == (1, 3, 37, 32, 32)
    torch.testing.assert_close(moved[:, :, :17], frames[:, :, :17], rtol=0, atol=0)
    torch.testing.assert_close(moved[:, :, 34:], frames[:, :, 34:], rtol=0, atol=0)
    assert (moved[:, :, 17:34] - frames[:, :, 17:34]).abs().amax(dim=(0, 1, 3, 4)).min() > 1e-4


def test_vae_rejects_latents_of_another_length():
    vae = OpenSoraBackbone.tiny(seed=0).pipe.vae
    with pytest.raises(ValueError, match="5 latent frames do not decode to 20 frames"):
        vae.decode(torch.zeros(1, 4, 5, 4, 4), 20)
