"""Dimensions that need no network and are computed exactly as VBench computes them."""

from __future__ import annotations

import cv2
import numpy as np

from ._rules import absdiff_score


def temporal_flickering(frames: np.ndarray, fps: float) -> dict[str, float]:
    """VBench ``temporal_flickering``: ``(255 - mean_t mean|I_t - I_{t+1}|) / 255``.

    Same arithmetic as ``vbench/temporal_flickering.py``: each pair's mean absolute difference in float32
    (``cv2.absdiff``), the float32 mean over pairs, then the score. Real motion lowers it too.
    """
    pair_means = [
        np.mean(cv2.absdiff(frames[t].astype(np.float32), frames[t + 1].astype(np.float32)))
        for t in range(len(frames) - 1)
    ]
    return {"": absdiff_score(np.mean(np.array(pair_means)).item())}
