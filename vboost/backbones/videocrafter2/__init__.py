"""VideoCrafter2 (AILab-CVC/VideoCrafter, text-to-video 512 v2.0): its U-Net as this project's module, the rest from
diffusers and transformers, loaded from the original checkpoint. See ``docs/backbones.md``."""

from vboost.backbones.videocrafter2._backbone import TINY_CONFIG, VideoCrafter2Backbone
from vboost.backbones.videocrafter2._checkpoint import PickledCheckpointError
from vboost.backbones.videocrafter2._pipeline import VideoCrafter2Pipeline, VideoCrafter2PipelineOutput
from vboost.backbones.videocrafter2._unet import VideoCrafter2UNet

__all__ = [
    "TINY_CONFIG",
    "PickledCheckpointError",
    "VideoCrafter2Backbone",
    "VideoCrafter2Pipeline",
    "VideoCrafter2PipelineOutput",
    "VideoCrafter2UNet",
]
