"""The per-video functions ``objectives.<dimension>(frames, fps)``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ._registry import DIMENSIONS, record_name
from ._scorer import Scorer


def per_video(name: str) -> Callable[..., float]:
    """Build ``objectives.<name>``: one clip's main record under ``backend`` (networks are cached)."""
    dim = DIMENSIONS[name]

    def score(
        frames: np.ndarray,
        fps: float,
        *,
        backend: str = "proxy",
        weights_dir: str | Path | None = None,
        device: str = "cpu",
    ) -> float:
        scorer = Scorer([name], backend=backend, weights_dir=weights_dir, device=device)
        return scorer.score_video(frames, fps)[record_name(name, backend)]

    score.__name__ = score.__qualname__ = name
    score.__doc__ = (
        f"Score one clip on {name} (frames uint8 [T, H, W, 3], T >= {dim.min_frames}; fps > 0).\n\n"
        f"Returns VBench's per-video value under ``backend`` (tiers: {', '.join(dim.tiers)}; "
        "``objectives.record_name`` gives the record it is logged as"
        + ("; 1.0 if dynamic else 0.0" if name == "dynamic_degree" else "")
        + "). Raises ``ValueError``/``TypeError`` on bad input, ``TierUnavailableError`` or "
        "``MissingWeightsError`` when the tier cannot run."
    )
    return score
