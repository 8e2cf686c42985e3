"""VBench quality dimensions as objectives, in three labelled tiers.

``exact`` (weight-free, identical to VBench), ``proxy`` (weight-free stand-ins, NOT VBench numbers) and
``vbench`` (VBench's protocols and networks, read from VBench's own cache: ``$VBENCH_CACHE_DIR`` or
``~/.cache/vbench`` unless ``weights_dir`` says otherwise). Every record name carries
its tier, e.g. ``"exact/temporal_flickering"``, ``"proxy/dynamic_degree"``, ``"vbench/subject_consistency"``.

>>> import objectives
>>> objectives.temporal_flickering(frames, fps=8)                     # one clip, one float
>>> objectives.evaluate([(frames, 8)], ["dynamic_degree"]).scores      # aggregated as VBench does
>>> objectives.record_name("subject_consistency", backend="vbench")   # validate a config, load nothing
>>> objectives.check_weights(["dynamic_degree"], "vbench")           # files and libraries present? no torch

This package never imports vboost.
"""

from ._dimensions import per_video as _per_video
from ._evaluate import Evaluation, evaluate
from ._io import find_videos, read_video
from ._registry import (
    BACKENDS,
    DIMENSIONS,
    TIERS,
    Dimension,
    TierUnavailableError,
    available,
    direction,
    min_side,
    record_name,
    record_names,
    resolve,
    tier,
)
from ._scorer import Scorer
from ._weights import CheckpointError, MissingDependencyError, MissingWeightsError, check_weights, default_weights_dir

temporal_flickering = _per_video("temporal_flickering")
dynamic_degree = _per_video("dynamic_degree")
subject_consistency = _per_video("subject_consistency")
background_consistency = _per_video("background_consistency")
motion_smoothness = _per_video("motion_smoothness")
aesthetic_quality = _per_video("aesthetic_quality")
imaging_quality = _per_video("imaging_quality")

__all__ = [
    "BACKENDS",
    "CheckpointError",
    "DIMENSIONS",
    "TIERS",
    "Dimension",
    "Evaluation",
    "MissingDependencyError",
    "MissingWeightsError",
    "Scorer",
    "TierUnavailableError",
    "aesthetic_quality",
    "available",
    "background_consistency",
    "check_weights",
    "default_weights_dir",
    "direction",
    "dynamic_degree",
    "evaluate",
    "find_videos",
    "imaging_quality",
    "min_side",
    "motion_smoothness",
    "read_video",
    "record_name",
    "record_names",
    "resolve",
    "subject_consistency",
    "temporal_flickering",
    "tier",
]
