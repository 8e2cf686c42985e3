"""ByTheWay's edit of a temporal attention map (docs/methods.md; arXiv 2410.06241)."""

from __future__ import annotations

import math

import torch


def check_knobs(alpha: float, beta: float, tau: int) -> None:
    """Raise ``ValueError`` naming the value unless ``0 <= alpha <= 1``, ``beta`` is finite and positive and
    ``tau`` is an int >= 0 (its upper limit depends on the frame count: :func:`high_band`)."""
    # alpha interpolates towards the anchor map; outside [0, 1] it would extrapolate away from it.
    if not (isinstance(alpha, (int, float)) and 0.0 <= alpha <= 1.0):
        raise ValueError(f"alpha must be in [0, 1]; got {alpha!r}")
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0.0):
        raise ValueError(f"beta must be a finite positive number; got {beta!r}")
    if isinstance(tau, bool) or not isinstance(tau, int) or tau < 0:
        raise ValueError(f"tau must be a non-negative int; got {tau!r}")


def high_band(num_frames: int, tau: int) -> list[int]:
    """The frequency bins ``F//2 - tau <= k <= F//2 + tau`` (centred on Nyquist) that the gain scales.

    Raises ``ValueError`` naming ``tau`` and its limit ``F - 1 - F//2`` when the band leaves ``[0, F-1]``.
    """
    limit = num_frames - 1 - num_frames // 2
    if tau > limit:
        raise ValueError(f"tau={tau} exceeds {limit} for F={num_frames}")
    centre = num_frames // 2
    return list(range(centre - tau, centre + tau + 1))


def _energy(maps: torch.Tensor) -> torch.Tensor:
    """Mean over rows and query frames of the squared row norm (formula 4 of the paper), as a 0-dim tensor."""
    flat = maps.reshape(-1)
    return torch.dot(flat, flat) / (maps.shape[0] * maps.shape[1])  # one pass, no temporary


def _band_energy(spectrum: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Mean over rows and query frames of ``sum |X_k|^2 / F`` over the bins ``start <= k < stop`` (Parseval's
    share of formula 4 in that band), as a 0-dim tensor."""
    rows, frames, _ = spectrum.shape
    return torch.linalg.vector_norm(torch.view_as_real(spectrum[..., start:stop])) ** 2 / (rows * frames * frames)


def bytheway_edit(
    probs: torch.Tensor,
    anchor: torch.Tensor,
    *,
    alpha: float,
    beta: float,
    tau: int,
    clip_negative: bool = False,
    cfg_batched: bool = True,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Temporal self-guidance then Fourier motion enhancement of one temporal attention map.

    ``probs, anchor``: ``[rows, F, F]`` softmax maps, rows ordered (cfg, video, y, x, head); ``anchor`` is the
    ``up_blocks.1`` map already resized to ``probs``' spatial size (``probs`` itself inside ``up_blocks.1``).
    Energies are taken over the conditional rows (the second half when ``cfg_batched``, else all rows); the
    edits apply to every row. ``clip_negative`` zeroes negative weights before renormalising (the 2024 variant).

    Returns ``(edited, stats)``: ``edited`` has ``probs``' shape and dtype; ``stats`` holds the floats ``E1, E2,
    E2_h, E2_l, beta_c, beta`` (the gain actually used) and ``E3`` (energy of ``edited``). Raises ``ValueError``
    naming the value for a bad shape, ``alpha``, ``beta`` or ``tau`` (``tau <= F - 1 - F//2``).
    """
    if probs.ndim != 3 or probs.shape[-1] != probs.shape[-2]:
        raise ValueError(f"probs must be [rows, F, F]; got shape {tuple(probs.shape)}")
    if anchor.shape != probs.shape:
        raise ValueError(f"anchor shape {tuple(anchor.shape)} differs from probs shape {tuple(probs.shape)}")
    rows, num_frames = probs.shape[0], probs.shape[-1]
    if cfg_batched and rows % 2:
        raise ValueError(f"cfg_batched maps need an even number of rows; got {rows}")
    check_knobs(alpha, beta, tau)
    band = high_band(num_frames, tau)

    # torch.fft has no half precision on CPU; float64 maps keep their precision.
    work_dtype = torch.float64 if probs.dtype == torch.float64 else torch.float32
    p = probs.to(work_dtype)
    a = anchor.to(work_dtype)

    def conditional(x: torch.Tensor) -> torch.Tensor:
        return x[rows // 2 :] if cfg_batched else x

    p2 = (a - p).mul_(alpha).add_(p)  # p + alpha * (a - p), without temporaries
    spectrum = torch.fft.fft(p2, dim=-1)
    lo, hi = band[0], band[-1] + 1  # the band is contiguous: slices, not masks, avoid copies
    cond = conditional(spectrum)
    # One device sync for the four energies the gain needs.
    e1, e2, e2_h, e2_l = torch.stack(
        [
            _energy(conditional(p)),
            _energy(conditional(p2)),
            _band_energy(cond, lo, hi),
            _band_energy(cond, 0, lo) + _band_energy(cond, hi, num_frames),
        ]
    ).tolist()

    beta_c = _adaptive_gain(e1, e2_l, e2_h)
    # NaN (E1 < E2_l) falls back to beta; so does +inf (an empty high band has nothing to amplify, and 0 * inf is NaN).
    gain = max(beta, beta_c) if math.isfinite(beta_c) else beta

    spectrum[..., lo:hi] *= gain
    p3 = torch.fft.ifft(spectrum, dim=-1).real
    if clip_negative:
        p3 = p3 * (p3 > 0)
    p3 = p3 / p3.sum(-1, keepdim=True)

    stats = {"E1": e1, "E2": e2, "E2_h": e2_h, "E2_l": e2_l, "beta_c": beta_c, "beta": gain, "E3": _energy(conditional(p3)).item()}
    return p3.to(probs.dtype), stats


def _adaptive_gain(e1: float, e2_l: float, e2_h: float) -> float:
    """``sqrt((E1 - E2_l) / E2_h)`` (formula 7), NaN when negative or 0/0, +inf when only ``E2_h`` is 0."""
    numerator = e1 - e2_l
    if e2_h == 0.0:
        return math.inf if numerator > 0 else math.nan
    ratio = numerator / e2_h
    return math.sqrt(ratio) if ratio >= 0 else math.nan
