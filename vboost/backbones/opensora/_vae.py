"""The video VAE of Open-Sora v1.2 (``hpcai-tech/OpenSora-VAE-v1.2``, ``opensora/models/vae/``).

Two stages, with the module names of the released checkpoint: ``spatial_vae.module`` is an SDXL ``AutoencoderKL``
from diffusers applied frame by frame (8x8 spatial compression, Open-Sora's own latent scale 0.18215), and
``temporal_vae`` is Open-Sora's causal 3-D VAE on those latents (``VAE_Temporal_SD``: 4x along time), ported here
since no library has it. Videos go through the temporal VAE in runs of 17 frames (``micro_frame_size``), each
padded at the front to 20 frames and folded into 5 latent frames, and the latents are normalised per channel by
``shift`` and ``scale``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from torch import nn

from vboost.geometry import opensora_vae_frames

# The Stable Diffusion VAE latent scale Open-Sora multiplies by (not the SDXL VAE config's own 0.13025).
SPATIAL_SCALING_FACTOR = 0.18215

# PixArt-alpha/pixart_sigma_sdxlvae_T5_diffusers, subfolder vae: the spatial VAE the released config names.
SDXL_VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.13025,
    "force_upcast": False,
}

# VAE_Temporal_SD: the temporal VAE of the release.
TEMPORAL_VAE_SD_CONFIG = {
    "in_out_channels": 4,
    "latent_embed_dim": 4,
    "embed_dim": 4,
    "filters": 128,
    "num_res_blocks": 4,
    "channel_multipliers": (1, 2, 2, 4),
    "temporal_downsample": (False, True, True),
    "num_groups": 32,
}


class CausalConv3d(nn.Module):
    """A 3-D convolution that pads time on the past side only (and space symmetrically), so frame t sees <= t."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: Sequence[int] = (1, 1, 1),
        bias: bool = True,
    ) -> None:
        super().__init__()
        kt, kh, kw = (kernel_size,) * 3 if isinstance(kernel_size, int) else kernel_size
        time_pad = kt - stride[0]
        self.padding = (kw // 2, kw // 2, kh // 2, kh // 2, time_pad, 0)
        self.conv = nn.Conv3d(in_channels, out_channels, (kt, kh, kw), stride=tuple(stride), bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.padding))


class ResBlock(nn.Module):
    """GroupNorm, SiLU, causal 3x3x3 convolution, twice, plus a (1x1x1 projected) residual."""

    def __init__(self, in_channels: int, filters: int, num_groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups, in_channels)
        self.conv1 = CausalConv3d(in_channels, filters, 3, bias=False)
        self.norm2 = nn.GroupNorm(num_groups, filters)
        self.conv2 = CausalConv3d(filters, filters, 3, bias=False)
        self.conv3 = CausalConv3d(in_channels, filters, 1, bias=False) if in_channels != filters else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.conv3 is None else self.conv3(x)
        x = self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))
        return x + residual


@dataclasses.dataclass(frozen=True)
class TemporalStages:
    """The level structure the temporal encoder and decoder share (``VAE_Temporal``'s arguments)."""

    in_out_channels: int
    filters: int
    num_res_blocks: int
    channel_multipliers: tuple[int, ...]
    temporal_downsample: tuple[bool, ...]
    num_groups: int


class TemporalEncoder(nn.Module):
    """Open-Sora's temporal ``Encoder``: resblocks per level, a stride-2 causal convolution where time halves."""

    def __init__(self, stages: TemporalStages, latent_channels: int) -> None:
        super().__init__()
        filters, groups = stages.filters, stages.num_groups
        self.conv_in = CausalConv3d(stages.in_out_channels, filters, 3, bias=False)
        self.block_res_blocks = nn.ModuleList()
        self.conv_blocks = nn.ModuleList()
        prev = filters
        for level, multiplier in enumerate(stages.channel_multipliers):
            width = filters * multiplier
            blocks = nn.ModuleList()
            for _ in range(stages.num_res_blocks):
                blocks.append(ResBlock(prev, width, groups))
                prev = width
            self.block_res_blocks.append(blocks)
            if level < len(stages.channel_multipliers) - 1:
                downsample = stages.temporal_downsample[level]
                self.conv_blocks.append(CausalConv3d(prev, width, 3, stride=(2, 1, 1)) if downsample else nn.Identity())
        self.res_blocks = nn.ModuleList(ResBlock(prev, prev, groups) for _ in range(stages.num_res_blocks))
        self.norm1 = nn.GroupNorm(groups, prev)
        self.conv2 = CausalConv3d(prev, latent_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for level, blocks in enumerate(self.block_res_blocks):
            for block in blocks:
                x = block(x)
            if level < len(self.conv_blocks):
                x = self.conv_blocks[level](x)
        for block in self.res_blocks:
            x = block(x)
        return self.conv2(F.silu(self.norm1(x)))


class TemporalDecoder(nn.Module):
    """Open-Sora's temporal ``Decoder``: where the encoder halved time, a causal convolution doubles the channels
    and depth-to-space moves them into time (channel ``c * 2 + j`` becomes frame ``2t + j`` of channel ``c``)."""

    def __init__(self, stages: TemporalStages, latent_channels: int) -> None:
        super().__init__()
        filters, groups = stages.filters, stages.num_groups
        self.temporal_downsample = stages.temporal_downsample
        prev = filters * stages.channel_multipliers[-1]
        self.conv1 = CausalConv3d(latent_channels, prev, 3)
        self.res_blocks = nn.ModuleList(ResBlock(prev, prev, groups) for _ in range(stages.num_res_blocks))
        # Built from the deepest level up, indexed by level as in the original (conv_blocks[i - 1] follows level i).
        levels: list[nn.ModuleList] = []
        upsamplers: list[nn.Module] = []
        for level in reversed(range(len(stages.channel_multipliers))):
            width = filters * stages.channel_multipliers[level]
            blocks = nn.ModuleList()
            for _ in range(stages.num_res_blocks):
                blocks.append(ResBlock(prev, width, groups))
                prev = width
            levels.insert(0, blocks)
            if level > 0:
                upsample = stages.temporal_downsample[level - 1]
                upsamplers.insert(0, CausalConv3d(prev, prev * 2, 3) if upsample else nn.Identity())
        self.block_res_blocks = nn.ModuleList(levels)
        self.conv_blocks = nn.ModuleList(upsamplers)
        self.norm1 = nn.GroupNorm(groups, prev)
        self.conv_out = CausalConv3d(prev, stages.in_out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        for block in self.res_blocks:
            x = block(x)
        for level in reversed(range(len(self.block_res_blocks))):
            for block in self.block_res_blocks[level]:
                x = block(x)
            if level > 0:
                x = self.conv_blocks[level - 1](x)
                if self.temporal_downsample[level - 1]:
                    batch, channels, frames, height, width = x.shape
                    x = x.view(batch, channels // 2, 2, frames, height, width).transpose(2, 3)
                    x = x.reshape(batch, channels // 2, frames * 2, height, width)
        return self.conv_out(F.silu(self.norm1(x)))


class TemporalVAE(nn.Module):
    """Open-Sora's ``VAE_Temporal`` (same defaults): causal 3-D VAE over spatial latents, shorter in time by
    ``2 ** sum(temporal_downsample)``; ``config`` holds the arguments."""

    def __init__(
        self,
        in_out_channels: int = 4,
        latent_embed_dim: int = 4,
        embed_dim: int = 4,
        filters: int = 128,
        num_res_blocks: int = 4,
        channel_multipliers: Sequence[int] = (1, 2, 2, 4),
        temporal_downsample: Sequence[bool] = (True, True, False),
        num_groups: int = 32,
    ) -> None:
        super().__init__()
        stages = TemporalStages(
            in_out_channels, filters, num_res_blocks, tuple(channel_multipliers), tuple(temporal_downsample), num_groups
        )
        self.config = dict(latent_embed_dim=latent_embed_dim, embed_dim=embed_dim, **dataclasses.asdict(stages))
        self.time_downsample = 2 ** sum(bool(d) for d in temporal_downsample)
        self.out_channels = in_out_channels
        self.encoder = TemporalEncoder(stages, 2 * latent_embed_dim)
        self.quant_conv = CausalConv3d(2 * latent_embed_dim, 2 * embed_dim, 1)
        self.post_quant_conv = CausalConv3d(embed_dim, latent_embed_dim, 1)
        self.decoder = TemporalDecoder(stages, latent_embed_dim)

    def _time_padding(self, num_frames: int) -> int:
        return -num_frames % self.time_downsample

    def encode(self, x: torch.Tensor) -> DiagonalGaussianDistribution:
        """The posterior of spatial latents ``[B, C, T, H, W]``, zero-padded at the front to whole time steps."""
        x = F.pad(x, (0, 0, 0, 0, self._time_padding(x.shape[2]), 0))
        return DiagonalGaussianDistribution(self.quant_conv(self.encoder(x)).to(x.dtype))

    def decode(self, z: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``num_frames`` spatial-latent frames from ``z``; the frames standing for the front padding are dropped."""
        x = self.decoder(self.post_quant_conv(z))
        return x[:, :, self._time_padding(num_frames) :]


class SpatialVAE(nn.Module):
    """Open-Sora's ``VideoAutoencoderKL``: an image ``AutoencoderKL`` (``module``) on every frame, a few at a time."""

    def __init__(self, config: dict, micro_batch_size: int | None = 4) -> None:
        super().__init__()
        self.module = AutoencoderKL.from_config(config)
        self.micro_batch_size = micro_batch_size

    def _per_frame(self, x: torch.Tensor, code: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        batch = x.shape[0]
        frames = x.transpose(1, 2).flatten(0, 1)  # B C T H W -> (B T) C H W
        step = self.micro_batch_size or frames.shape[0]
        out = torch.cat([code(frames[i : i + step]) for i in range(0, frames.shape[0], step)])
        return out.unflatten(0, (batch, -1)).transpose(1, 2)

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Latents ``[B, 4, T, H/8, W/8]`` of pixels ``[B, 3, T, H, W]`` in [-1, 1] (sampled, times 0.18215)."""
        return self._per_frame(
            x, lambda frames: self.module.encode(frames).latent_dist.sample(generator) * SPATIAL_SCALING_FACTOR
        )

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self._per_frame(z, lambda frames: self.module.decode(frames / SPATIAL_SCALING_FACTOR).sample)


class OpenSoraVAE(nn.Module):
    """Open-Sora's ``VideoAutoencoderPipeline``: the spatial VAE, then the temporal VAE in 17-frame runs."""

    def __init__(
        self,
        spatial_config: dict,
        temporal_config: dict,
        shift: Sequence[float],
        scale: Sequence[float],
        micro_frame_size: int = 17,
        micro_batch_size: int | None = 4,
    ) -> None:
        super().__init__()
        self.spatial_vae = SpatialVAE(spatial_config, micro_batch_size)
        self.temporal_vae = TemporalVAE(**temporal_config)
        self.micro_frame_size = micro_frame_size
        self.micro_z_frame_size = opensora_vae_frames(
            micro_frame_size, micro_frame_size, self.temporal_vae.time_downsample
        )
        self.out_channels = self.temporal_vae.out_channels
        self.register_buffer("shift", torch.tensor(shift, dtype=torch.float32)[None, :, None, None, None])
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32)[None, :, None, None, None])

    def latent_frames(self, num_frames: int) -> int:
        """How many latent frames a clip of ``num_frames`` frames has."""
        return opensora_vae_frames(num_frames, self.micro_frame_size, self.temporal_vae.time_downsample)

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Normalised latents of pixels ``[B, 3, T, H, W]`` in [-1, 1] (both stages sampled)."""
        x_z = self.spatial_vae.encode(x, generator)
        runs = [
            self.temporal_vae.encode(x_z[:, :, i : i + self.micro_frame_size]).sample(generator)
            for i in range(0, x_z.shape[2], self.micro_frame_size)
        ]
        return (torch.cat(runs, dim=2) - self.shift) / self.scale

    def decode(self, z: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Pixels ``[B, 3, num_frames, 8h, 8w]`` (about [-1, 1]) from normalised latents ``z [B, 4, t, h, w]``.

        Raises ``ValueError`` naming both counts when ``z`` does not have the latent frames of ``num_frames``.
        """
        if z.shape[2] != self.latent_frames(num_frames):
            raise ValueError(
                f"{z.shape[2]} latent frames do not decode to {num_frames} frames ({self.latent_frames(num_frames)} do)"
            )
        z = z * self.scale.to(z.dtype) + self.shift.to(z.dtype)
        runs = []
        for start in range(0, z.shape[2], self.micro_z_frame_size):
            run_frames = min(self.micro_frame_size, num_frames - len(runs) * self.micro_frame_size)
            runs.append(self.temporal_vae.decode(z[:, :, start : start + self.micro_z_frame_size], run_frames))
        return self.spatial_vae.decode(torch.cat(runs, dim=2))
