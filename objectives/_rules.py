"""VBench's decision rules, independent of which network or proxy produced the inputs.

Every tier funnels through these, so the frame sampling, thresholds and pair weighting are written once,
exactly as in Vchitect/VBench (``vbench/core/dynamic_degree.py``, ``subject_consistency.py``,
``motion_smoothness.py``).
"""

from __future__ import annotations

import numpy as np


# --- dynamic degree -----------------------------------------------------------------------------------

def dynamic_interval(fps: float) -> int:
    """Keep every ``max(1, round(fps / 8))``-th frame (Python rounding: 12 fps -> 2, 20 fps -> 2)."""
    return max(1, round(fps / 8))


def dynamic_threshold(height: int, width: int) -> float:
    """Flow magnitude (pixels) a pair must exceed: ``6 * min(H, W) / 256`` of the unpadded frame."""
    return 6.0 * (min(height, width) / 256.0)


def dynamic_count(kept_frames: int) -> int:
    """Pairs that must exceed the threshold: ``round(4 * N / 16)``, ``N`` = number of KEPT frames (not pairs),
    Python rounding (N = 2 -> 0, N = 6 -> 2, N = 10 -> 2)."""
    return round(4 * (kept_frames / 16.0))


def padding(size: int, multiple: int) -> tuple[int, int]:
    """Replicate padding (before, after) that RAFT's and AMT's ``InputPadder`` add to a side of ``size``
    pixels to reach a multiple of ``multiple``: split evenly, the odd pixel after."""
    total = (-size) % multiple
    return total // 2, total - total // 2


def pad_to_multiple_of_8(image: np.ndarray) -> np.ndarray:
    """RAFT's ``InputPadder`` in 'sintel' mode on an ``[H, W, ...]`` array (see :func:`padding`). The flow
    score is taken over the padded image, as in VBench."""
    pads = (padding(image.shape[0], 8), padding(image.shape[1], 8)) + ((0, 0),) * (image.ndim - 2)
    return np.pad(image, pads, mode="edge")


def top5_mean(magnitude: np.ndarray) -> float:
    """Mean of the largest ``int(h * w * 0.05)`` flow magnitudes (at least one, for images under 20 px)."""
    flat = magnitude.ravel()
    cut = max(1, int(magnitude.shape[0] * magnitude.shape[1] * 0.05))
    return float(np.partition(flat, flat.size - cut)[flat.size - cut:].mean())


def is_dynamic(pair_scores: list[float], threshold: float, count: int) -> bool:
    """VBench's ``check_move``: dynamic iff at least ``count`` pairs exceed ``threshold``. Its loop returns
    True after the first pair when ``count == 0`` and False when there is no pair; both are kept."""
    return bool(pair_scores) and sum(score > threshold for score in pair_scores) >= count


# --- consistency --------------------------------------------------------------------------------------

def pair_consistency(features: np.ndarray) -> tuple[float, int]:
    """VBench's consistency sum over one video and its number of frame pairs.

    For frame ``t >= 1``: ``(max(0, cos(f_t, f_{t-1})) + max(0, cos(f_t, f_0))) / 2``. Returns
    ``(sum over t, T - 1)``; the dimension score is the sum over all videos divided by all pairs.
    A zero feature vector (possible for weight-free features of a flat frame) counts as identical to
    another zero vector and unrelated to anything else.
    """
    feats = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    norms = np.linalg.norm(feats, axis=1)
    zero = norms == 0
    unit = feats / np.where(zero, 1.0, norms)[:, None]

    def cos(i: int, j: int) -> float:
        if zero[i] or zero[j]:
            return float(zero[i] and zero[j])
        return max(0.0, float(unit[i] @ unit[j]))

    total = sum((cos(t, t - 1) + cos(t, 0)) / 2 for t in range(1, len(feats)))
    return total, len(feats) - 1


# --- frame-difference scores --------------------------------------------------------------------------

def absdiff_score(mean_absdiff: float) -> float:
    """``(255 - mean |a - b|) / 255``: the form of temporal flickering and motion smoothness."""
    return (255.0 - mean_absdiff) / 255.0
