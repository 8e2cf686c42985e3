"""What the sweep knows about each backbone family before anything heavy is imported: where its adapter class lives,
its denoiser's class name, its clip geometry, and the denoiser config its tiny random model is built from.

Plain data (no diffusers import), so a config is checked in about the time Python, torch and Hydra take to start.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vboost.geometry import (
    ClipGeometry,
    FrameRule,
    causal_video,
    opensora_vae_frames,
    patch_from,
    patch_tuple,
)

if TYPE_CHECKING:
    from vboost.backbones.base import Backbone


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """One backbone family: ``target`` (``"module:Class"``) is its adapter, imported only to build or load a model.

    ``tiny_denoiser`` is the denoiser config of the family's tiny random model (its ``tiny()`` builds from it), so its
    geometry is known without building it. ``modular``: the pipeline is a diffusers ``ModularPipeline`` (its guider is
    a component that guider methods replace); ``experts``: denoiser components beside the main one (Wan 2.2's
    low-noise ``transformer_2``).
    """

    family: str
    target: str
    denoiser_class: str
    denoiser_subfolder: str = "transformer"
    rule: FrameRule = FrameRule()
    tiny_denoiser: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Reads the denoiser's config from a weights directory (default: <denoiser_subfolder>/config.json).
    config_reader: Callable[[Path], dict[str, Any]] | None = None
    modular: bool = False
    experts: tuple[str, ...] = ()
    # What diffusers' memory and speed features reach in this family (docs/gpu.md):
    components: tuple[str, ...] = ()  # the pipeline components that can be given a dtype of their own
    offload: bool = False  # a diffusers pipeline: model, sequential and group CPU offloading
    vae_tiling: bool = False  # its VAE decodes in tiles and in slices (enable_tiling, enable_slicing)
    attention_dispatch: bool = False  # its denoiser's attention runs through diffusers' attention dispatch
    repeated_blocks: tuple[str, ...] = ()  # the denoiser's block classes, compiled once each (regional compilation)

    @property
    def denoisers(self) -> tuple[str, ...]:
        """The pipeline components holding a denoiser, the main one first."""
        return (self.denoiser_subfolder or "transformer", *self.experts)

    def load(self) -> type[Backbone]:
        """The adapter class (imports its module, and with it diffusers)."""
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module), name)

    def denoiser_config(self, weights: str | Path | None) -> dict[str, Any]:
        """The denoiser's config: ``<weights>/<denoiser_subfolder>/config.json`` (nothing is loaded), or the tiny
        model's. Raises ``FileNotFoundError`` naming the file when ``weights`` has none."""
        if weights is None:
            return dict(self.tiny_denoiser)
        if self.config_reader is not None:
            return self.config_reader(Path(weights).expanduser())
        path = Path(weights).expanduser() / self.denoiser_subfolder / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"{str(path)!r} not found: {str(weights)!r} is not a {self.family} checkpoint directory")
        return json.loads(path.read_text())

    def geometry(self, num_frames: int, height: int, width: int, weights: str | Path | None = None) -> ClipGeometry:
        """The clip's geometry for this family (the checkpoint's config when ``weights`` is given); raises
        ``ValueError`` naming the setting and the nearest valid values when the backbone cannot take the clip, and
        ``FileNotFoundError`` as :meth:`denoiser_config`."""
        geometry = self.rule.check(self.family, num_frames, height, width, self.denoiser_config(weights))
        return dataclasses.replace(geometry, denoiser_class=self.denoiser_class)

    @classmethod
    def of_class(cls, backbone: type[Backbone]) -> "BackboneSpec":
        """The spec of an adapter class registered directly (e.g. one a user's ``imports=`` module defines): its own
        ``spec`` if it has one, else one read from its class attributes (a VAE folding ``temporal_compression``
        frames, causal when more than 1, no patch)."""
        own = getattr(backbone, "spec", None)
        if isinstance(own, BackboneSpec):
            return own
        r = backbone.temporal_compression
        return cls(
            family=backbone.family,
            target=f"{backbone.__module__}:{backbone.__qualname__}",
            denoiser_class=backbone.denoiser_class,
            denoiser_subfolder=backbone.denoiser_subfolder,
            rule=causal_video(r) if r > 1 else FrameRule(spatial_compression=1),
        )


VIDEOCRAFTER2_CHECKPOINTS = ("model.safetensors", "model.ckpt")


def videocrafter2_checkpoint(directory: str | os.PathLike) -> Path:
    """The checkpoint file in ``directory`` (``model.safetensors``, else ``model.ckpt``).

    Raises ``FileNotFoundError`` naming the directory and the file names looked for.
    """
    directory = Path(directory).expanduser()
    for name in VIDEOCRAFTER2_CHECKPOINTS:
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(
        f"{str(directory)!r} holds neither of {', '.join(VIDEOCRAFTER2_CHECKPOINTS)} (VideoCrafter2's checkpoint)"
    )


def _videocrafter2_config(directory: Path) -> dict[str, Any]:
    # One checkpoint file holds every part; its presence is all a config check needs (sizes follow the 512 v2.0 U-Net).
    videocrafter2_checkpoint(directory)
    return {}


def _motion_positions(config: dict[str, Any]) -> tuple[int | None, int | None]:
    return config.get("motion_max_seq_length", 32), None  # UNetMotionModel's default


def _wan_positions(config: dict[str, Any]) -> tuple[int | None, int | None]:
    length = config.get("rope_max_seq_len", 1024)
    return length, length


# Text-to-video DiT pipelines of diffusers: offloading, a VAE that tiles and slices, and these components.
_DIFFUSERS_DIT = dict(components=("text_encoder", "transformer", "vae"), offload=True, vae_tiling=True)
_ANIMATEDIFF = dict(components=("text_encoder", "unet", "vae", "motion_adapter"), offload=True, vae_tiling=True)

SPECS: dict[str, BackboneSpec] = {
    spec.family: spec
    for spec in (
        BackboneSpec(
            "cogvideox", "vboost.backbones.cogvideox:CogVideoXBackbone", "CogVideoXTransformer3DModel",
            rule=causal_video(4, patch=patch_from("patch_size_t", "patch_size")),
            tiny_denoiser=dict(
                num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, time_embed_dim=16,
                text_embed_dim=16, num_layers=2, sample_width=4, sample_height=4, sample_frames=9, patch_size=2,
                temporal_compression_ratio=4, use_rotary_positional_embeddings=True,
            ),
            **_DIFFUSERS_DIT, repeated_blocks=("CogVideoXBlock",),
        ),
        BackboneSpec(
            "hunyuan_video", "vboost.backbones.hunyuan_video:HunyuanVideoBackbone", "HunyuanVideoTransformer3DModel",
            rule=causal_video(4, patch=patch_from("patch_size_t", "patch_size")),
            tiny_denoiser=dict(
                in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=10, num_layers=2,
                num_single_layers=2, num_refiner_layers=1, patch_size=1, patch_size_t=1, guidance_embeds=True,
                text_embed_dim=16, pooled_projection_dim=8, rope_axes_dim=(2, 4, 4),
            ),
            **{**_DIFFUSERS_DIT, "components": ("text_encoder", "text_encoder_2", "transformer", "vae")},
            attention_dispatch=True,
            repeated_blocks=("HunyuanVideoTransformerBlock", "HunyuanVideoSingleTransformerBlock"),
        ),
        BackboneSpec(
            "wan", "vboost.backbones.wan:WanBackbone", "WanTransformer3DModel",
            rule=causal_video(4, patch=patch_tuple, max_positions=_wan_positions),
            tiny_denoiser=dict(
                patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
                text_dim=16, freq_dim=32, ffn_dim=32, num_layers=2, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
            ),
            **_DIFFUSERS_DIT, attention_dispatch=True, repeated_blocks=("WanTransformerBlock",),
        ),
        BackboneSpec(
            "ltx_video", "vboost.backbones.ltx_video:LTXVideoBackbone", "LTXVideoTransformer3DModel",
            rule=causal_video(8, spatial_compression=32, patch=patch_from("patch_size_t", "patch_size")),
            tiny_denoiser=dict(
                in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=2, attention_head_dim=8,
                cross_attention_dim=16, num_layers=2, caption_channels=16,
            ),
            **_DIFFUSERS_DIT, attention_dispatch=True, repeated_blocks=("LTXVideoTransformerBlock",),
        ),
        BackboneSpec(
            "animatediff", "vboost.backbones.animatediff:AnimateDiffBackbone", "UNetMotionModel", "unet",
            rule=FrameRule(max_positions=_motion_positions, num_layers_key=None),
            tiny_denoiser=dict(motion_max_seq_length=32), **_ANIMATEDIFF,
        ),
        BackboneSpec(
            "animatediff_sparsectrl", "vboost.backbones.animatediff:AnimateDiffSparseCtrlBackbone", "UNetMotionModel",
            "unet", rule=FrameRule(max_positions=_motion_positions, num_layers_key=None),
            tiny_denoiser=dict(motion_max_seq_length=32),
            **{**_ANIMATEDIFF, "components": (*_ANIMATEDIFF["components"], "controlnet")},
        ),
        BackboneSpec(
            "videocrafter2", "vboost.backbones.videocrafter2:VideoCrafter2Backbone", "VideoCrafter2UNet", "",
            # Every frame is a latent frame (an image autoencoder); the U-Net halves the latent grid three times.
            rule=FrameRule(num_layers_key=None, spatial_multiple=64),
            config_reader=_videocrafter2_config,
            # A diffusers pipeline whose image autoencoder decodes each latent frame (tiles and slices apply there).
            components=("text_encoder", "unet", "vae"), offload=True, vae_tiling=True,
        ),
        BackboneSpec(
            "opensora", "vboost.backbones.opensora:OpenSoraBackbone", "STDiT3",
            # Height and width are floored to the VAE's 8 and the patch padded, so any size of at least 8 works.
            rule=FrameRule(
                temporal_compression=4, patch=patch_tuple, num_layers_key="depth", spatial_multiple=1,
                vae_frames=opensora_vae_frames, valid_frames=lambda n: n == 1 or n >= 17,
                frames_rule="1 frame or at least 17 (its VAE encodes runs of 17 frames)",
            ),
            tiny_denoiser=dict(hidden_size=32, depth=2, num_heads=2, mlp_ratio=2.0, caption_channels=16, patch_size=(1, 2, 2)),
            # Its own pipeline class (no diffusers offloading) and VAE (fixed runs of 17 frames, no tiles).
            components=("text_encoder", "transformer", "vae"), repeated_blocks=("STDiT3Block",),
        ),
    )
}


def _modular(family: str, target: str, like: str, **kwargs: Any) -> BackboneSpec:
    """A diffusers modular pipeline of the same model as the family ``like``: its denoiser, clip geometry and tiny
    model; its guider is a component that guider methods replace."""
    plain = SPECS[like]
    # Its denoisers and VAE are the plain family's: attention dispatch, VAE tiles and compiled blocks reach them. A
    # ModularPipeline has no CPU offloading of its own (diffusers offloads one through a ComponentsManager).
    return BackboneSpec(family, target, plain.denoiser_class, rule=plain.rule, tiny_denoiser=plain.tiny_denoiser,
                        modular=True, vae_tiling=plain.vae_tiling, attention_dispatch=plain.attention_dispatch,
                        repeated_blocks=plain.repeated_blocks, **kwargs)


SPECS.update({
    spec.family: spec
    for spec in (
        _modular("wan_modular", "vboost.backbones.wan_modular:WanModularBackbone", "wan"),
        _modular("wan22_modular", "vboost.backbones.wan_modular:Wan22ModularBackbone", "wan", experts=("transformer_2",)),
        _modular("ltx_modular", "vboost.backbones.ltx_modular:LTXModularBackbone", "ltx_video"),
        # LTX-2 (video with audio) runs on the modular pipeline only. Its video VAE compresses 32x in space and 8x in
        # time (causal), as LTX-Video's; the transformer's patch is 1 x 1 and its RoPE positions are fractions of the
        # checkpoint's base size (no limit). The audio latents' length follows the clip's duration.
        BackboneSpec(
            "ltx2_modular", "vboost.backbones.ltx2_modular:LTX2ModularBackbone", "LTX2VideoTransformer3DModel",
            rule=causal_video(8, spatial_compression=32, patch=patch_from("patch_size_t", "patch_size")),
            tiny_denoiser=dict(
                in_channels=8, out_channels=8, num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16,
                audio_in_channels=8, audio_out_channels=8, audio_num_attention_heads=2, audio_attention_head_dim=4,
                audio_cross_attention_dim=8, num_layers=2, caption_channels=16,
            ),
            modular=True, vae_tiling=True, attention_dispatch=True, repeated_blocks=("LTX2VideoTransformerBlock",),
        ),
        # HunyuanVideo 1.5 runs on the modular pipeline only (no plain family here). Its VAE compresses 16x in space
        # and 4x in time (causal); the transformer's patch is 1 x 1 x 1 and its RoPE is computed per clip (no limit).
        BackboneSpec(
            "hunyuan_video15_modular", "vboost.backbones.hunyuan_video15_modular:HunyuanVideo15ModularBackbone",
            "HunyuanVideo15Transformer3DModel",
            rule=causal_video(4, spatial_compression=16, patch=patch_from("patch_size_t", "patch_size")),
            tiny_denoiser=dict(
                in_channels=9, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=2,
                num_refiner_layers=1, mlp_ratio=2.0, text_embed_dim=16, text_embed_2_dim=16, image_embed_dim=8,
                rope_axes_dim=(2, 2, 4),
            ),
            modular=True, vae_tiling=True, attention_dispatch=True, repeated_blocks=("HunyuanVideo15TransformerBlock",),
        ),
    )
})
