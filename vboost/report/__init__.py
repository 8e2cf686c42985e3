"""Per-study reports: Pareto plots, an interactive page, side-by-side videos and a paired-difference summary."""

from vboost.report._report import Report, make_report
from vboost.report._summary import paired_differences, per_video_scores
from vboost.report._video import label_band, side_by_side

__all__ = ["Report", "label_band", "make_report", "paired_differences", "per_video_scores", "side_by_side"]
