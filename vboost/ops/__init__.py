"""The pure tensor math of each method (imports torch only)."""

from vboost.ops.bytheway import bytheway_edit
from vboost.ops.feta import feta_score

__all__ = ["bytheway_edit", "feta_score"]
