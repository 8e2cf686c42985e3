"""Scorer: resolve tiers, load networks once, score videos, aggregate them the way VBench does."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from . import _exact, _proxy
from ._frames import check_fps, check_frames
from ._registry import DIMENSIONS, PAIR_COUNT, PAIR_SUM, resolve, tier_records
from ._weights import check_weights, weights_dir_or_default

ScoreFn = Callable[[np.ndarray, float], "dict[str, float]"]

# tier -> dimension -> score function; the vbench tier instead has factories (weights_dir, device) -> function
# in _vbench, imported only when needed so that weight-free scoring never imports torch.
_WEIGHT_FREE: dict[str, dict[str, ScoreFn]] = {
    "exact": {"temporal_flickering": _exact.temporal_flickering},
    "proxy": {
        name: getattr(_proxy, name)
        for name in ("dynamic_degree", "subject_consistency", "background_consistency", "motion_smoothness",
                     "aesthetic_quality", "imaging_quality")
    },
}


class Scorer:
    """Scores videos on some dimensions under one backend, loading each network once.

    Args:
        dimensions: dimension names, e.g. ``["temporal_flickering", "dynamic_degree"]``.
        backend: ``"proxy"`` (exact where an exact tier exists, else the weight-free proxy) or ``"vbench"``
            (exact where exact, else VBench's networks); or a mapping ``{dimension: backend}``.
        weights_dir: VBench's cache directory holding the networks' files in VBench's layout
            (``objectives/_weights.py``); ``None`` means VBench's default, ``$VBENCH_CACHE_DIR`` or
            ``~/.cache/vbench``. Read only when some dimension resolves to the ``vbench`` tier.
        device: torch device for the networks.

    Raises ``ValueError`` on an unknown or repeated dimension or an unknown backend,
    :class:`~objectives.TierUnavailableError` when a tier cannot be provided,
    :class:`~objectives.MissingWeightsError` naming a missing weight file and
    :class:`~objectives.MissingDependencyError` naming a missing library, all before any network loads;
    ``objectives.CheckpointError`` (a ``ValueError``) naming a file that does not hold its network.
    """

    def __init__(
        self,
        dimensions: Iterable[str] | str,
        backend: str | Mapping[str, str] = "proxy",
        weights_dir: str | Path | None = None,
        device: str = "cpu",
    ) -> None:
        self.tiers = resolve(dimensions, backend)
        vbench_dims = list(check_weights(list(self.tiers), backend, weights_dir))
        self._fns: dict[str, ScoreFn] = {
            name: _WEIGHT_FREE[tier][name] for name, tier in self.tiers.items() if tier != "vbench"
        }
        if vbench_dims:
            from . import _vbench

            weights = str(weights_dir_or_default(weights_dir))
            self._fns.update({name: getattr(_vbench, name)(weights, str(device)) for name in vbench_dims})
        self._min_frames = max(DIMENSIONS[name].min_frames for name in self.tiers)
        self._min_sides = {name: DIMENSIONS[name].min_side.get(tier, 1) for name, tier in self.tiers.items()}

    @property
    def record_names(self) -> list[str]:
        """Names of the records :meth:`aggregate` returns: each dimension's main record and companions."""
        return [rec for name, tier in self.tiers.items() for rec in tier_records(name, tier)]

    def score_video(self, frames: np.ndarray, fps: float) -> dict[str, float]:
        """Score one clip (``frames`` uint8 ``[T, H, W, 3]``).

        Returns ``{record name: value}``: per dimension its main record (VBench's per-video value; 1.0/0.0
        for dynamic degree), its companions, and for pair-weighted dimensions the parts
        ``"<tier>/<dimension>/sum"`` and ``"<tier>/<dimension>/pairs"`` that :meth:`aggregate` needs.
        Raises ``ValueError``/``TypeError`` on bad frames or fps.
        """
        frames = check_frames(frames, self._min_frames)
        fps = check_fps(fps)
        for name, side in self._min_sides.items():
            if min(frames.shape[1:3]) < side:
                raise ValueError(f"{self.tiers[name]}/{name} needs frames of at least {side} px a side, "
                                 f"got {frames.shape[1]}x{frames.shape[2]}")
        out: dict[str, float] = {}
        for name, tier in self.tiers.items():
            for suffix, value in self._fns[name](frames, fps).items():
                out[f"{tier}/{name}{suffix}"] = float(value)
        return out

    def aggregate(self, results: Sequence[Mapping[str, float]]) -> dict[str, float]:
        """Dimension scores over videos, as VBench aggregates them.

        Pair-weighted dimensions (the consistencies): sum of all videos' pair sums over all their pairs, so a
        longer video weighs more. Others: mean of the per-video values (for dynamic degree, the fraction of
        dynamic videos). Companions: mean over videos. Raises ``ValueError`` on no results or a result that
        lacks a record this scorer produces.
        """
        if not results:
            raise ValueError("aggregate needs at least one video result, got none")

        def column(key: str) -> np.ndarray:
            for i, result in enumerate(results):
                if key not in result:
                    raise ValueError(f"video result {i} lacks record {key!r}; was it scored by this Scorer?")
            return np.array([result[key] for result in results], dtype=np.float64)

        scores: dict[str, float] = {}
        for name, tier in self.tiers.items():
            main, *companions = tier_records(name, tier)
            if DIMENSIONS[name].aggregation == "pair_weighted":
                scores[main] = float(column(f"{main}/{PAIR_SUM}").sum() / column(f"{main}/{PAIR_COUNT}").sum())
            else:
                scores[main] = float(column(main).mean())
            scores.update({rec: float(column(rec).mean()) for rec in companions})
        return scores

