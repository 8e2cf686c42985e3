"""Input checks shared by every dimension: one-line errors that name the bad value, before any work."""

from __future__ import annotations

import math
from numbers import Real

import numpy as np


def check_frames(frames: object, min_frames: int = 2) -> np.ndarray:
    """Return ``frames`` as a ``uint8 [T, H, W, 3]`` array with ``T >= min_frames``.

    Raises ``TypeError`` for a non-array, ``ValueError`` for a wrong dtype, shape or frame count.
    """
    if not isinstance(frames, np.ndarray):
        if not hasattr(frames, "__array__"):
            raise TypeError(f"frames must be a uint8 array [T, H, W, 3], got {type(frames).__name__}")
        frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must have dtype uint8, got {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise ValueError(f"frames must have shape [T, H, W, 3], got {tuple(frames.shape)}")
    if frames.shape[0] < min_frames:
        raise ValueError(f"frames must hold at least {min_frames} frames, got {frames.shape[0]}")
    return frames


def check_fps(fps: object) -> float:
    """Return ``fps`` as a float; raises ``ValueError`` unless it is a finite positive number."""
    if isinstance(fps, bool) or not isinstance(fps, Real) or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a finite positive number, got {fps!r}")
    return float(fps)
