"""Clip geometry: which clip sizes a backbone takes, and the latent grid its denoiser's attention sees for a clip.

Plain data and arithmetic, no diffusers import: the sweep checks a config with it before anything loads, methods
check their knobs against it (``Method.check_clip``), and the export translates per-frame values with it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class ClipGeometry:
    """A clip of ``num_frames`` x ``height`` x ``width`` as a backbone's denoiser sees it.

    ``vae_frames`` latent frames come out of the VAE; the denoiser's temporal patch groups ``temporal_patch`` of them
    (pipelines pad to a whole patch), so its attention sees ``latent_frames`` (F) frames of ``tokens_per_frame``
    tokens. ``num_layers`` is the denoiser's block count when its config says (else None); ``denoiser_class`` the
    class name of the denoiser that sees the clip, where known (methods check class-specific knobs against it).
    """

    num_frames: int
    height: int
    width: int
    vae_frames: int
    temporal_patch: int
    spatial_factor: int  # pixels per token side: the VAE's spatial compression times the spatial patch
    num_layers: int | None = None
    denoiser_class: str | None = None

    @property
    def latent_frames(self) -> int:
        return -(-self.vae_frames // self.temporal_patch)

    @property
    def tokens_per_frame(self) -> int:
        return (self.height // self.spatial_factor) * (self.width // self.spatial_factor)


def _no_patch(config: dict[str, Any]) -> tuple[int, int]:
    return 1, 1


def _unlimited(config: dict[str, Any]) -> tuple[int | None, int | None]:
    return None, None


@dataclasses.dataclass(frozen=True)
class FrameRule:
    """What a backbone family's VAE and denoiser make of a clip.

    ``temporal_compression``: frames per latent frame; ``causal`` VAEs take ``k * temporal_compression + 1`` frames.
    ``patch(config) -> (temporal, spatial)`` reads the denoiser's patch sizes from its config;
    ``max_positions(config) -> (frames, side)`` the most latent frames and token rows/columns its position tables
    hold (None: no limit).
    ``vae_frames``/``valid_frames``/``frames_rule`` replace the default arithmetic for a VAE of its own kind.
    """

    temporal_compression: int = 1
    causal: bool = False
    spatial_compression: int = 8
    patch: Callable[[dict[str, Any]], tuple[int, int]] = _no_patch
    max_positions: Callable[[dict[str, Any]], tuple[int | None, int | None]] = _unlimited
    num_layers_key: str | None = "num_layers"
    spatial_multiple: int | None = None  # what height and width must be multiples of (None: the spatial factor)
    vae_frames: Callable[[int], int] | None = None
    valid_frames: Callable[[int], bool] | None = None
    frames_rule: str | None = None  # says what valid_frames accepts

    def geometry(self, num_frames: int, height: int, width: int, config: dict[str, Any]) -> ClipGeometry:
        """The clip's geometry under a denoiser ``config`` (no check: see :meth:`check`)."""
        temporal, spatial = self.patch(config)
        if self.vae_frames is not None:
            vae_frames = self.vae_frames(num_frames)
        else:
            vae_frames = (num_frames - 1) // self.temporal_compression + 1
        layers = config.get(self.num_layers_key) if self.num_layers_key else None
        return ClipGeometry(num_frames, height, width, vae_frames, temporal, self.spatial_compression * spatial, layers)

    def check(self, family: str, num_frames: int, height: int, width: int, config: dict[str, Any]) -> ClipGeometry:
        """The clip's geometry; raises ``ValueError`` naming the bad setting and the nearest valid values when the
        backbone cannot take it."""
        if num_frames < 1:
            raise ValueError(f"backbone.num_frames={num_frames} must be at least 1")
        if self.valid_frames is not None:
            if not self.valid_frames(num_frames):
                raise ValueError(f"backbone.num_frames={num_frames}: {family} takes {self.frames_rule}")
        elif self.causal and (num_frames - 1) % self.temporal_compression:
            r = self.temporal_compression
            below = (num_frames - 1) // r * r + 1
            raise ValueError(f"backbone.num_frames={num_frames}: {family} takes {r}k+1 frames; nearest: {below} or {below + r}")
        geometry = self.geometry(num_frames, height, width, config)
        m = self.spatial_multiple or geometry.spatial_factor
        for key, value in (("height", height), ("width", width)):
            if value < m or value % m:
                below = max(m, value // m * m)
                nearest = f"{below}" if below >= value else f"{below} or {below + m}"
                patch = m // self.spatial_compression
                why = "" if self.spatial_multiple is not None else (
                    f" (its VAE compresses {self.spatial_compression}x" + (f", its denoiser's patch is {patch}" if patch > 1 else "") + ")"
                )
                raise ValueError(f"backbone.{key}={value}: {family} takes multiples of {m}{why}; nearest: {nearest}")
        frames, side = self.max_positions(config)
        if frames is not None and geometry.latent_frames > frames:
            raise ValueError(
                f"backbone.num_frames={num_frames} gives {geometry.latent_frames} latent frames; the {family} denoiser "
                f"has positions for {frames} at most"
            )
        for key, value in (("height", height), ("width", width)):
            if side is not None and value // geometry.spatial_factor > side:
                raise ValueError(
                    f"backbone.{key}={value} gives {value // geometry.spatial_factor} tokens; the {family} denoiser has "
                    f"positions for {side} at most (backbone.{key} <= {side * geometry.spatial_factor})"
                )
        return geometry


def causal_video(temporal_compression: int, **kwargs: Any) -> FrameRule:
    """The rule of a causal video VAE (``k * r + 1`` frames) in front of a patchifying transformer."""
    return FrameRule(temporal_compression=temporal_compression, causal=True, **kwargs)


def patch_from(temporal_key: str | None, spatial_key: str) -> Callable[[dict[str, Any]], tuple[int, int]]:
    """Read ``(temporal, spatial)`` patch sizes from config keys (a missing or null temporal key means 1)."""

    def patch(config: dict[str, Any]) -> tuple[int, int]:
        return (config.get(temporal_key) or 1) if temporal_key else 1, config.get(spatial_key) or 1

    return patch


def patch_tuple(config: dict[str, Any]) -> tuple[int, int]:
    """``patch_size = (t, h, w)`` as Wan and Open-Sora keep it."""
    t, h, _ = config.get("patch_size") or (1, 1, 1)
    return t, h


def opensora_vae_frames(num_frames: int, micro_frame_size: int = 17, time_downsample: int = 4) -> int:
    """Latent frames of Open-Sora v1.2's VAE: each run of ``micro_frame_size`` frames (and the shorter rest) is padded
    up to a multiple of ``time_downsample`` and divided by it (17 -> 5, 51 -> 15, 102 -> 30, 20 -> 6)."""
    full, rest = divmod(num_frames, micro_frame_size)
    return full * math.ceil(micro_frame_size / time_downsample) + math.ceil(rest / time_downsample)
