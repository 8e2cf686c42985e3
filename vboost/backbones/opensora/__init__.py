"""Open-Sora v1.2 (hpcai-tech/Open-Sora): its STDiT3 denoiser and temporal VAE ported, the rest from libraries.

See ``docs/backbones.md`` for the weights layout and what is computed.
"""

from vboost.backbones.opensora._backbone import OpenSoraBackbone
from vboost.backbones.opensora._checkpoint import load_stdit3, load_vae, save_stdit3, save_vae
from vboost.backbones.opensora._pipeline import OpenSoraPipeline
from vboost.backbones.opensora._rflow import RFlowScheduler, timestep_transform
from vboost.backbones.opensora._stdit3 import STDiT3, STDiT3AttnProcessor
from vboost.backbones.opensora._vae import OpenSoraVAE, TemporalVAE

__all__ = [
    "OpenSoraBackbone",
    "OpenSoraPipeline",
    "OpenSoraVAE",
    "RFlowScheduler",
    "STDiT3",
    "STDiT3AttnProcessor",
    "TemporalVAE",
    "load_stdit3",
    "load_vae",
    "save_stdit3",
    "save_vae",
    "timestep_transform",
]
