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


# The statistics of one edit, in the order of the stats dict.
STATS = ("E1", "E2", "E2_h", "E2_l", "beta_c", "beta", "E3")


def _energies(maps: torch.Tensor, clips: int) -> torch.Tensor:
    """``[clips]``: each clip's mean over rows and query frames of the squared row norm (formula 4 of the paper);
    ``maps`` ``[clips * rows, F, F]``, rows of a clip contiguous."""
    flat = maps.reshape(clips, 1, -1)
    # One batched dot product per clip: no temporary of the map's size.
    return torch.bmm(flat, flat.transpose(1, 2)).reshape(clips) / (maps.shape[0] // clips * maps.shape[1])


def _band_energies(spectrum: torch.Tensor, clips: int, start: int, stop: int) -> torch.Tensor:
    """``[clips]``: each clip's mean over rows and query frames of ``sum |X_k|^2 / F`` over the bins
    ``start <= k < stop`` (Parseval's share of formula 4 in that band)."""
    rows, frames, _ = spectrum.shape
    band = torch.view_as_real(spectrum[..., start:stop]).reshape(clips, rows // clips, frames, stop - start, 2)
    return torch.linalg.vector_norm(band, dim=(1, 2, 3, 4)) ** 2 / (rows // clips * frames * frames)


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
    edited, stats = bytheway_edit_clips(
        probs, anchor, alpha=alpha, beta=beta, tau=tau, clip_negative=clip_negative, cfg_batched=cfg_batched
    )
    values = torch.cat([stats[name].double() for name in STATS]).tolist()  # one transfer for the seven
    return edited, dict(zip(STATS, values))


def bytheway_edit_clips(
    probs: torch.Tensor,
    anchor: torch.Tensor,
    *,
    alpha: float,
    beta: float,
    tau: int,
    clip_negative: bool = False,
    cfg_batched: bool = True,
    clips: int = 1,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`bytheway_edit` of a map holding ``clips`` videos, each edited with its own energies and gain, as it
    would be alone; nothing is read back from the device.

    Rows are ordered (cfg, video, y, x, head) with ``clips`` videos. Returns ``(edited, stats)``: ``stats`` maps
    each name of :data:`STATS` to a ``[clips]`` tensor (the energies in the maps' float dtype, ``beta_c`` and
    ``beta`` in float64). Raises ``ValueError`` as :func:`bytheway_edit`, and naming the rows when they do not
    split into the clips' halves.
    """
    if probs.ndim != 3 or probs.shape[-1] != probs.shape[-2]:
        raise ValueError(f"probs must be [rows, F, F]; got shape {tuple(probs.shape)}")
    if anchor.shape != probs.shape:
        raise ValueError(f"anchor shape {tuple(anchor.shape)} differs from probs shape {tuple(probs.shape)}")
    rows, num_frames = probs.shape[0], probs.shape[-1]
    halves = 2 if cfg_batched else 1
    if cfg_batched and rows % 2:
        raise ValueError(f"cfg_batched maps need an even number of rows; got {rows}")
    if clips < 1 or rows % (halves * clips):
        raise ValueError(f"{rows} map rows do not split into {halves} guidance halves x {clips} clips")
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
    e1, e2 = _energies(conditional(p), clips), _energies(conditional(p2), clips)
    e2_h = _band_energies(cond, clips, lo, hi)
    e2_l = _band_energies(cond, clips, 0, lo) + _band_energies(cond, clips, hi, num_frames)

    # Formula 7 in float64, as Python's floats compute it: NaN when E1 < E2_l or 0/0, +inf when only E2_h is 0.
    beta_c = ((e1.double() - e2_l.double()) / e2_h.double()).sqrt()
    # NaN falls back to beta; so does +inf (an empty high band has nothing to amplify, and 0 * inf is NaN).
    gain = torch.where(beta_c.isfinite(), beta_c.clamp(min=beta), torch.full_like(beta_c, beta))

    # Rows (cfg, video, rest): each video's band scaled by its own gain.
    spectrum.view(halves, clips, -1, num_frames, num_frames)[..., lo:hi] *= gain.to(work_dtype).view(1, clips, 1, 1, 1)
    p3 = torch.fft.ifft(spectrum, dim=-1).real
    if clip_negative:
        p3 = p3 * (p3 > 0)
    p3 = p3 / p3.sum(-1, keepdim=True)

    stats = {"E1": e1, "E2": e2, "E2_h": e2_h, "E2_l": e2_l, "beta_c": beta_c, "beta": gain,
             "E3": _energies(conditional(p3), clips)}
    return p3.to(probs.dtype), stats
