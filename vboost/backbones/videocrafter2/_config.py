"""The original inference config (``configs/inference_t2v_512_v2.0.yaml`` layout) read into what each part needs.

A checkpoint directory may hold a ``config.yaml`` in the original layout (``model.params``: the U-Net, the
autoencoder's ``ddconfig``, the text encoder's layer, the noise schedule and VideoCrafter's latent scale); without
one the text-to-video 512 v2.0 config applies. Options the original code offers but this port does not compute
(relative temporal positions, causal temporal attention, scale-shift norms, ...) are refused by name rather than
ignored.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

# The parts of configs/inference_t2v_512_v2.0.yaml (model.params) that decide what the model computes.
T2V_512_V2: dict[str, Any] = {
    "linear_start": 0.00085,
    "linear_end": 0.012,
    "timesteps": 1000,
    "conditioning_key": "crossattn",
    "channels": 4,
    "scale_factor": 0.18215,
    "uncond_type": "empty_seq",
    "use_scale": True,
    "scale_b": 0.7,
    "unet_config": {
        "target": "lvdm.modules.networks.openaimodel3d.UNetModel",
        "params": {
            "in_channels": 4,
            "out_channels": 4,
            "model_channels": 320,
            "attention_resolutions": [4, 2, 1],
            "num_res_blocks": 2,
            "channel_mult": [1, 2, 4, 4],
            "num_head_channels": 64,
            "transformer_depth": 1,
            "context_dim": 1024,
            "use_linear": True,
            "use_checkpoint": True,
            "temporal_conv": True,
            "temporal_attention": True,
            "temporal_selfatt_only": True,
            "use_relative_position": False,
            "use_causal_attention": False,
            "temporal_length": 16,
            "addition_attention": True,
            "fps_cond": True,
        },
    },
    "first_stage_config": {
        "target": "lvdm.models.autoencoder.AutoencoderKL",
        "params": {
            "embed_dim": 4,
            "ddconfig": {
                "double_z": True,
                "z_channels": 4,
                "resolution": 512,
                "in_channels": 3,
                "out_ch": 3,
                "ch": 128,
                "ch_mult": [1, 2, 4, 4],
                "num_res_blocks": 2,
                "attn_resolutions": [],
                "dropout": 0.0,
            },
        },
    },
    "cond_stage_config": {
        "target": "lvdm.modules.encoders.condition.FrozenOpenCLIPEmbedder",
        "params": {"freeze": True, "layer": "penultimate"},
    },
}

# The original UNetModel's defaults for the options this port computes (a config may leave them out).
_UNET_DEFAULTS: dict[str, Any] = {
    "temporal_conv": False,
    "temporal_attention": True,
    "addition_attention": False,
    "fps_cond": False,
    "transformer_depth": 1,
    "temporal_transformer_depth": 1,
    "channel_mult": [1, 2, 4, 8],
}
_UNET_REQUIRED = (
    "in_channels", "out_channels", "model_channels", "num_res_blocks", "attention_resolutions", "num_head_channels", "context_dim"
)
# Options whose only supported value is given (the original's default when absent is the second element).
_UNET_FIXED: dict[str, tuple[Any, Any]] = {
    "use_linear": (True, False),
    "temporal_selfatt_only": (True, True),
    "use_relative_position": (False, True),
    "use_causal_attention": (False, False),
    "use_scale_shift_norm": (False, False),
    "resblock_updown": (False, False),
    "conv_resample": (True, True),
    "dims": (2, 2),
    "num_heads": (-1, -1),
    "use_image_attention": (False, False),
    "tempspatial_aware": (False, False),
}
# Options that change nothing at inference: memory tricks, training dropout, and the frame count that only
# relative positions and causal masks (refused above) would use.
_UNET_NO_EFFECT = {"use_checkpoint", "use_fp16", "dropout", "temporal_length"}


@dataclasses.dataclass(frozen=True)
class LatentScale:
    """VideoCrafter's scaled latents: a clean latent enters step ``t`` multiplied by ``scale(t)``, which goes
    linearly from ``scale_a`` at ``t = 0`` to ``scale_b`` at ``t = mid_step`` and stays there."""

    scale_a: float = 1.0
    scale_b: float = 0.3
    mid_step: int = 400

    def __call__(self, timestep: int) -> float:
        """``scale(t)`` as float32 (the original's buffers are float32); ``t < 0`` reads ``scale(0)``."""
        ramp = np.linspace(self.scale_a, self.scale_b, self.mid_step)
        value = ramp[max(timestep, 0)] if timestep < self.mid_step else self.scale_b
        return float(np.float32(value))


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the original config decides: each part's constructor arguments and the sampler's schedule."""

    unet: dict[str, Any]
    vae: dict[str, Any]
    # Text-encoder blocks the original skips at the end (1 for its "penultimate" layer).
    text_layers_skipped: int
    num_train_timesteps: int
    beta_start: float
    beta_end: float
    latent_scale: LatentScale | None


def read_settings(config_dir: str | os.PathLike | None) -> Settings:
    """The settings of ``<config_dir>/config.yaml`` (original layout), or of the 512 v2.0 config when the
    directory has none or is ``None``. Raises ``ValueError`` naming an option or value this port does not compute."""
    config = T2V_512_V2
    if config_dir is not None:
        path = Path(config_dir).expanduser() / "config.yaml"
        if path.is_file():
            loaded = yaml.safe_load(path.read_text())
            try:
                config = loaded["model"]["params"]
            except (KeyError, TypeError):
                raise ValueError(f"{str(path)!r} has no model.params (expected VideoCrafter's inference config layout)") from None
    return settings_from_config(config)


def settings_from_config(params: Mapping[str, Any]) -> Settings:
    """:class:`Settings` from the ``model.params`` mapping of an original inference config.

    Raises ``ValueError`` naming the option and its value when the config asks for something this port does not
    compute, and ``KeyError`` naming a required option that is missing.
    """
    _expect(params, "parameterization", "eps")
    _expect(params, "beta_schedule", "linear")
    _expect(params, "conditioning_key", "crossattn")
    _expect(params, "uncond_type", "empty_seq")
    _expect(params.get("unet_config", {}), "target", "lvdm.modules.networks.openaimodel3d.UNetModel", "unet_config.")
    _expect(params.get("cond_stage_config", {}), "target", "lvdm.modules.encoders.condition.FrozenOpenCLIPEmbedder", "cond_stage_config.")
    layer = params["cond_stage_config"].get("params", {}).get("layer", "last")
    if layer not in ("last", "penultimate"):
        raise ValueError(f"cond_stage_config.params.layer={layer!r} is not one of 'last', 'penultimate'")
    latent_scale = None
    if params.get("use_scale", False):
        latent_scale = LatentScale(
            scale_a=params.get("scale_a", 1.0), scale_b=params.get("scale_b", 0.3), mid_step=params.get("mid_step", 400)
        )
    return Settings(
        unet=_unet_arguments(params["unet_config"]["params"]),
        vae=_vae_config(params["first_stage_config"]["params"], params.get("scale_factor", 1.0)),
        text_layers_skipped=1 if layer == "penultimate" else 0,
        num_train_timesteps=params.get("timesteps", 1000),
        beta_start=params.get("linear_start", 1e-4),
        beta_end=params.get("linear_end", 2e-2),
        latent_scale=latent_scale,
    )


def _expect(params: Mapping[str, Any], key: str, supported: Any, prefix: str = "") -> None:
    value = params.get(key, supported)
    if value != supported:
        raise ValueError(f"{prefix}{key}={value!r} is not supported (only {supported!r})")


def _unet_arguments(params: Mapping[str, Any]) -> dict[str, Any]:
    """``VideoCrafter2UNet`` keyword arguments from the original ``unet_config.params``."""
    for key, (supported, original_default) in _UNET_FIXED.items():
        value = params.get(key, original_default)
        if value != supported:
            raise ValueError(f"unet_config.params.{key}={value!r} is not supported (only {supported!r})")
    known = set(_UNET_DEFAULTS) | set(_UNET_REQUIRED) | set(_UNET_FIXED) | _UNET_NO_EFFECT
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"unet_config.params.{unknown[0]}={params[unknown[0]]!r} is not an option this port knows")
    missing = [key for key in _UNET_REQUIRED if params.get(key) is None]
    if missing:
        raise KeyError(f"unet_config.params.{missing[0]} is required")
    arguments = {key: params.get(key, default) for key, default in _UNET_DEFAULTS.items()}
    arguments.update({key: params[key] for key in _UNET_REQUIRED})
    for key in ("channel_mult", "attention_resolutions"):
        arguments[key] = tuple(arguments[key])
    return arguments


def _vae_config(params: Mapping[str, Any], scale_factor: float) -> dict[str, Any]:
    """diffusers ``AutoencoderKL`` config from the original ``first_stage_config.params`` (the LDM autoencoder)."""
    dd = params["ddconfig"]
    if dd.get("attn_resolutions"):
        raise ValueError(f"first_stage_config.params.ddconfig.attn_resolutions={dd['attn_resolutions']!r} is not supported (only [])")
    if params["embed_dim"] != dd["z_channels"] or not dd.get("double_z", True):
        raise ValueError(
            f"first_stage_config: embed_dim={params['embed_dim']!r} with z_channels={dd['z_channels']!r} and "
            f"double_z={dd.get('double_z', True)!r} is not supported (only embed_dim == z_channels, double_z)"
        )
    levels = len(dd["ch_mult"])
    return {
        "in_channels": dd["in_channels"],
        "out_channels": dd["out_ch"],
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "up_block_types": ["UpDecoderBlock2D"] * levels,
        "block_out_channels": [dd["ch"] * mult for mult in dd["ch_mult"]],
        "layers_per_block": dd["num_res_blocks"],
        "latent_channels": dd["z_channels"],
        "norm_num_groups": 32,  # the LDM autoencoder's Normalize()
        "sample_size": dd["resolution"],
        "scaling_factor": scale_factor,
    }
