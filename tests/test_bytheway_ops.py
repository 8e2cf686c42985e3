"""bytheway_edit against closed forms and an independent float64 numpy implementation of the edit (docs/methods.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vboost.ops import bytheway_edit


def random_maps(rows: int, frames: int, seed: int, sharpness: float = 2.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (sharpness * torch.randn(rows, frames, frames, generator=gen, dtype=torch.float64)).softmax(-1)


def numpy_reference(probs, anchor, alpha, beta, tau, clip_negative, cfg_batched):
    """The edit (docs/methods.md) written out with numpy.fft in float64."""
    p, a = np.asarray(probs, dtype=np.float64), np.asarray(anchor, dtype=np.float64)
    rows, f = p.shape[0], p.shape[-1]
    cond = slice(rows // 2, rows) if cfg_batched else slice(0, rows)

    def energy(x):
        return float(np.mean(np.sum(x[cond] ** 2, axis=-1)))

    high = [k for k in range(f) if f // 2 - tau <= k <= f // 2 + tau]
    low = [k for k in range(f) if k not in high]
    e1 = energy(p)
    p2 = p + alpha * (a - p)
    e2 = energy(p2)
    spec = np.fft.fft(p2, axis=-1)
    e2_h = float(np.mean(np.sum(np.abs(spec[cond][..., high]) ** 2, axis=-1) / f))
    e2_l = float(np.mean(np.sum(np.abs(spec[cond][..., low]) ** 2, axis=-1) / f))
    with np.errstate(invalid="ignore", divide="ignore"):
        beta_c = float(np.sqrt((e1 - e2_l) / e2_h))
    gain = beta if math.isnan(beta_c) else max(beta, beta_c)
    spec[..., high] *= gain
    p3 = np.fft.ifft(spec, axis=-1).real
    if clip_negative:
        p3 = np.where(p3 > 0, p3, 0.0)
    p3 = p3 / p3.sum(-1, keepdims=True)
    return p3, {"E1": e1, "E2": e2, "E2_h": e2_h, "E2_l": e2_l, "beta_c": beta_c, "beta": gain, "E3": energy(p3)}


@pytest.mark.parametrize("beta", [1.5, 10.0])
def test_all_but_dc_band_is_an_affine_gain_around_uniform(beta):
    probs, anchor = random_maps(8, 16, 0), random_maps(8, 16, 1)
    alpha = 0.6
    edited, stats = bytheway_edit(probs, anchor, alpha=alpha, beta=beta, tau=7)
    p2 = probs + alpha * (anchor - probs)
    expected = 1 / 16 + stats["beta"] * (p2 - 1 / 16)
    assert stats["beta"] >= beta
    torch.testing.assert_close(edited, expected, rtol=0, atol=1e-12)


def test_parseval_splits_the_energy_of_the_guided_map():
    probs, anchor = random_maps(12, 16, 2), random_maps(12, 16, 3)
    _, stats = bytheway_edit(probs, anchor, alpha=0.3, beta=1.5, tau=3)
    assert stats["E2_h"] + stats["E2_l"] == pytest.approx(stats["E2"], rel=1e-12)
    assert stats["E2_h"] > 0 and stats["E2_l"] > 0


def test_nan_gain_falls_back_to_beta():
    # Uniform maps guided fully onto one-hot maps: E1 = 1/F is below the low-band energy of the one-hots.
    frames = 16
    probs = torch.full((4, frames, frames), 1 / frames, dtype=torch.float64)
    anchor = torch.eye(frames, dtype=torch.float64).expand(4, frames, frames).clone()
    edited, stats = bytheway_edit(probs, anchor, alpha=1.0, beta=1.5, tau=2)
    assert stats["E1"] < stats["E2_l"]
    assert math.isnan(stats["beta_c"])
    assert stats["beta"] == 1.5
    assert torch.isfinite(edited).all()
    reference, _ = numpy_reference(probs, anchor, 1.0, 1.5, 2, False, True)
    np.testing.assert_allclose(edited.numpy(), reference, rtol=0, atol=1e-12)


def test_infinite_gain_falls_back_to_beta():
    # Full guidance onto uniform maps empties the high band (E2_h = 0) while E1 > E2_l = 1/F.
    frames = 8
    probs = random_maps(4, frames, 15)
    anchor = torch.full_like(probs, 1 / frames)
    edited, stats = bytheway_edit(probs, anchor, alpha=1.0, beta=1.5, tau=3)
    assert stats["E2_h"] == pytest.approx(0.0, abs=1e-15)
    assert stats["beta_c"] == math.inf
    assert stats["beta"] == 1.5
    torch.testing.assert_close(edited, anchor, rtol=0, atol=1e-12)


def test_clip_variant_is_a_distribution_and_the_current_one_is_not():
    probs, anchor = random_maps(8, 16, 4), random_maps(8, 16, 5)
    current, _ = bytheway_edit(probs, anchor, alpha=0.6, beta=1.5, tau=7)
    clipped, _ = bytheway_edit(probs, anchor, alpha=0.6, beta=1.5, tau=7, clip_negative=True)
    assert (current < 0).any()  # the published variant produces negative weights at its defaults
    assert (clipped >= 0).all()
    torch.testing.assert_close(clipped.sum(-1), torch.ones(8, 16, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("frames", "alpha", "beta", "tau", "clip_negative", "cfg_batched"),
    [
        (16, 0.6, 1.5, 7, False, True),
        (16, 0.1, 10.0, 4, False, True),
        (16, 0.6, 1.01, 3, True, True),
        (15, 0.4, 1.2, 5, False, True),
        (8, 0.0, 1.5, 2, False, False),
        (9, 1.0, 2.0, 1, True, False),
    ],
)
def test_matches_numpy_reference(frames, alpha, beta, tau, clip_negative, cfg_batched):
    probs, anchor = random_maps(12, frames, frames), random_maps(12, frames, frames + 100)
    edited, stats = bytheway_edit(
        probs, anchor, alpha=alpha, beta=beta, tau=tau, clip_negative=clip_negative, cfg_batched=cfg_batched
    )
    reference, expected = numpy_reference(probs, anchor, alpha, beta, tau, clip_negative, cfg_batched)
    np.testing.assert_allclose(edited.numpy(), reference, rtol=0, atol=1e-10)
    for key, value in expected.items():
        if math.isnan(value):
            assert math.isnan(stats[key]), key
        else:
            assert stats[key] == pytest.approx(value, rel=1e-9), key


def test_adaptive_gain_wins_when_larger_than_beta():
    probs, anchor = random_maps(8, 16, 6, sharpness=4.0), random_maps(8, 16, 7, sharpness=0.5)
    _, stats = bytheway_edit(probs, anchor, alpha=0.9, beta=1.01, tau=7)
    assert stats["beta_c"] > 1.01
    assert stats["beta"] == stats["beta_c"]


def test_energies_use_only_the_conditional_half():
    probs, anchor = random_maps(8, 8, 8), random_maps(8, 8, 9)
    probs_other_uncond = probs.clone()
    probs_other_uncond[:4] = random_maps(4, 8, 10)
    _, stats = bytheway_edit(probs, anchor, alpha=0.5, beta=1.5, tau=2)
    _, stats_other = bytheway_edit(probs_other_uncond, anchor, alpha=0.5, beta=1.5, tau=2)
    for key in ("E1", "E2", "E2_h", "E2_l", "beta_c", "beta"):
        assert stats[key] == stats_other[key], key
    _, stats_all = bytheway_edit(probs, anchor, alpha=0.5, beta=1.5, tau=2, cfg_batched=False)
    assert stats_all["E1"] == pytest.approx(float(probs.square().sum(-1).mean()), rel=1e-12)


def test_half_precision_is_upcast_and_cast_back():
    probs, anchor = random_maps(8, 16, 11).half(), random_maps(8, 16, 12).half()
    edited, stats = bytheway_edit(probs, anchor, alpha=0.6, beta=1.5, tau=7)
    assert edited.dtype == torch.float16
    reference, expected = numpy_reference(probs.double(), anchor.double(), 0.6, 1.5, 7, False, True)
    np.testing.assert_allclose(edited.double().numpy(), reference, rtol=0, atol=2e-3)
    assert stats["E1"] == pytest.approx(expected["E1"], rel=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tau": 8}, "tau=8 exceeds 7 for F=16"),
        ({"tau": -1}, "tau must be a non-negative int; got -1"),
        ({"tau": 2.0}, "tau must be a non-negative int; got 2.0"),
        ({"alpha": 1.5}, "alpha must be in [0, 1]; got 1.5"),
        ({"beta": 0.0}, "beta must be a finite positive number; got 0.0"),
        ({"beta": float("nan")}, "beta must be a finite positive number; got nan"),
    ],
)
def test_bad_knobs_name_the_value(kwargs, message):
    probs = random_maps(4, 16, 13)
    knobs = {"alpha": 0.6, "beta": 1.5, "tau": 7, **kwargs}
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        bytheway_edit(probs, probs, **knobs)


def test_bad_shapes_name_the_shapes():
    probs = random_maps(4, 16, 14)
    with pytest.raises(ValueError, match=r"anchor shape \(4, 16, 8\)"):
        bytheway_edit(probs, probs[..., :8], alpha=0.6, beta=1.5, tau=7)
    with pytest.raises(ValueError, match=r"got shape \(16, 16\)"):
        bytheway_edit(probs[0], probs[0], alpha=0.6, beta=1.5, tau=7)
    with pytest.raises(ValueError, match="even number of rows; got 3"):
        bytheway_edit(probs[:3], probs[:3], alpha=0.6, beta=1.5, tau=7)
