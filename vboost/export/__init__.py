"""A study's decision out as files: the recommended preset (or a plain "none"), diffusers scripts and ComfyUI values."""

from vboost.export._export import Export, ExportedSetting, export_run, export_study, preset_for_trial

__all__ = ["Export", "ExportedSetting", "export_run", "export_study", "preset_for_trial"]
