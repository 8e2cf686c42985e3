"""One call from a set of clips to per-video records and dimension scores."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ._scorer import Scorer


@dataclasses.dataclass
class Evaluation:
    """``per_video``: one ``{record name: value}`` dict per clip, in input order (see
    :meth:`Scorer.score_video`); ``scores``: ``{record name: aggregated value}`` (see :meth:`Scorer.aggregate`)."""

    per_video: list[dict[str, float]]
    scores: dict[str, float]


def _unpack(video: Any, index: int) -> tuple[np.ndarray, float]:
    if hasattr(video, "frames") and hasattr(video, "fps"):
        return video.frames, video.fps
    if isinstance(video, tuple) and len(video) == 2:
        return video
    raise TypeError(f"video {index} must be a (frames, fps) pair or have .frames and .fps, got {type(video).__name__}")


def evaluate(
    videos: Iterable[Any],
    dimensions: Iterable[str] | str,
    backend: str | Mapping[str, str] = "proxy",
    weights_dir: str | Path | None = None,
    device: str = "cpu",
) -> Evaluation:
    """Score clips on ``dimensions`` and aggregate them as VBench does.

    ``videos`` yields ``(frames, fps)`` pairs or objects with ``.frames`` (uint8 ``[T, H, W, 3]``) and ``.fps``.
    ``backend``, ``weights_dir`` and ``device`` are as for :class:`Scorer`. Returns an :class:`Evaluation`.
    Raises what :class:`Scorer` raises (before any clip is scored), ``TypeError``/``ValueError`` naming the
    index of a bad clip, and ``ValueError`` when ``videos`` is empty.
    """
    scorer = Scorer(dimensions, backend=backend, weights_dir=weights_dir, device=device)
    per_video = []
    for index, video in enumerate(videos):
        frames, fps = _unpack(video, index)
        try:
            per_video.append(scorer.score_video(frames, fps))
        except (TypeError, ValueError) as err:
            raise type(err)(f"video {index}: {err}") from None
    if not per_video:
        raise ValueError("videos is empty; expected at least one (frames, fps) clip")
    return Evaluation(per_video=per_video, scores=scorer.aggregate(per_video))
