"""Best settings of a sweep out: vboost presets, diffusers snippets and ComfyUI node values."""

from vboost.export._export import ExportedSetting, export_study, preset_for_trial
from vboost.export._secrets import SecretScrubber, mask_url
from vboost.export._study import Objective, StudyRun, VideoRecord, open_study_run

__all__ = [
    "ExportedSetting",
    "Objective",
    "SecretScrubber",
    "StudyRun",
    "VideoRecord",
    "export_study",
    "mask_url",
    "open_study_run",
    "preset_for_trial",
]
