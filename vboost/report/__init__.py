"""Per-study reports: the recommendation, effect and Pareto plots, an interactive page and side-by-side videos."""

from vboost.report._report import Report, make_report, report_run
from vboost.report._video import label_band, side_by_side

__all__ = ["Report", "label_band", "make_report", "report_run", "side_by_side"]
