"""The VideoCrafter2 text-to-video U-Net (``lvdm/modules/networks/openaimodel3d.py`` of AILab-CVC/VideoCrafter).

The modules carry the original attribute names, so the checkpoint's ``model.diffusion_model.*`` keys load as they
are (the original's misspelt ``temopral_conv`` included). The transformer parts are diffusers' own classes, which
compute what the original ones do and name their weights the same way: ``Transformer2DModel`` with linear
projections is the original ``SpatialTransformer``, ``TransformerTemporalModel`` (two self-attentions per block) is
its ``TemporalTransformer`` with ``temporal_selfatt_only``, and ``TemporalConvLayer`` is its ``TemporalConvBlock``.
Their attention modules are diffusers ``Attention`` layers, so attention processors (and methods built on them)
apply unchanged. See ``docs/backbones.md``.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import get_timestep_embedding
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.resnet import TemporalConvLayer
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel
from diffusers.models.unets.unet_3d_condition import UNet3DConditionOutput
from torch import nn

# Every normalisation of the original U-Net has 32 groups.
_GROUPS = 32
# The original's extra temporal transformer after the first convolution has eight heads of num_head_channels.
_INIT_ATTENTION_HEADS = 8


class GroupNorm32(nn.GroupNorm):
    """A 32-group norm computed in float32 and cast back, as the original's ``normalization()`` layers are."""

    def __init__(self, channels: int) -> None:
        super().__init__(_GROUPS, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight.float(), self.bias.float()  # CPU kernels refuse half weights on float input
        return nn.functional.group_norm(x.float(), self.num_groups, weight, bias, self.eps).type(x.dtype)


class ResBlock(nn.Module):
    """The original ``ResBlock`` (no scale-shift norm, no up/down sampling) with its temporal convolution."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None, temporal_conv: bool = True) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.in_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(
            GroupNorm32(out_channels), nn.SiLU(), nn.Dropout(0.0), nn.Conv2d(out_channels, out_channels, 3, padding=1)
        )
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        # The checkpoint's keys spell it this way.
        self.temopral_conv = TemporalConvLayer(out_channels, out_channels, dropout=0.1) if temporal_conv else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor, num_frames: int) -> torch.Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).type(h.dtype)[..., None, None]
        h = self.skip_connection(x) + self.out_layers(h)
        if self.temopral_conv is not None:
            h = self.temopral_conv(h, num_frames=num_frames)
        return h


class Downsample(nn.Module):
    """A stride-2 3x3 convolution (the original ``Downsample`` with ``use_conv``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest-neighbour 2x upsampling then a 3x3 convolution (the original ``Upsample`` with ``use_conv``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(nn.functional.interpolate(x, scale_factor=2, mode="nearest"))


class TimestepEmbedSequential(nn.Sequential):
    """One U-Net block: hands each layer what it takes (time embedding, text, frame count). Frames stay folded
    into the batch, ``[(b f), c, h, w]``, throughout."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, num_frames: int) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb, num_frames)
            elif isinstance(layer, Transformer2DModel):
                x = layer(x, encoder_hidden_states=context, return_dict=False)[0]
            elif isinstance(layer, TransformerTemporalModel):
                x = layer(x, num_frames=num_frames, return_dict=False)[0]
            else:
                x = layer(x)
        return x


class VideoCrafter2UNet(ModelMixin, ConfigMixin):
    """The VideoCrafter2 3-D U-Net; the defaults are ``configs/inference_t2v_512_v2.0.yaml``'s ``unet_config``.

    Takes ``sample [b, c, f, h, w]``, a timestep per video (or one for all), text ``encoder_hidden_states
    [b, tokens, context_dim]`` and the frame rate the clip is conditioned on; returns the predicted noise.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 4,
        model_channels: int = 320,
        num_res_blocks: int = 2,
        attention_resolutions: tuple[int, ...] = (4, 2, 1),
        channel_mult: tuple[int, ...] = (1, 2, 4, 4),
        num_head_channels: int = 64,
        transformer_depth: int = 1,
        temporal_transformer_depth: int = 1,
        context_dim: int = 1024,
        temporal_conv: bool = True,
        temporal_attention: bool = True,
        addition_attention: bool = True,
        fps_cond: bool = True,
    ) -> None:
        super().__init__()
        time_dim = model_channels * 4
        self.time_embed = _embedding_mlp(model_channels, time_dim)
        self.fps_embedding = _embedding_mlp(model_channels, time_dim) if fps_cond else None

        def attention_layers(channels: int) -> list[nn.Module]:
            heads = channels // num_head_channels
            layers: list[nn.Module] = [
                Transformer2DModel(
                    num_attention_heads=heads,
                    attention_head_dim=num_head_channels,
                    in_channels=channels,
                    num_layers=transformer_depth,
                    cross_attention_dim=context_dim,
                    use_linear_projection=True,
                    norm_num_groups=_GROUPS,
                )
            ]
            if temporal_attention:
                layers.append(_temporal_transformer(channels, heads, num_head_channels, temporal_transformer_depth))
            return layers

        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(in_channels, model_channels, 3, padding=1))])
        self.init_attn = (
            TimestepEmbedSequential(
                _temporal_transformer(model_channels, _INIT_ATTENTION_HEADS, num_head_channels, transformer_depth)
            )
            if addition_attention
            else None
        )
        skip_channels = [model_channels]
        channels, scale = model_channels, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [ResBlock(channels, time_dim, mult * model_channels, temporal_conv)]
                channels = mult * model_channels
                if scale in attention_resolutions:
                    layers += attention_layers(channels)
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_channels.append(channels)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(channels)))
                skip_channels.append(channels)
                scale *= 2

        self.middle_block = TimestepEmbedSequential(
            ResBlock(channels, time_dim, temporal_conv=temporal_conv),
            *attention_layers(channels),
            ResBlock(channels, time_dim, temporal_conv=temporal_conv),
        )

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(channels + skip_channels.pop(), time_dim, mult * model_channels, temporal_conv)]
                channels = mult * model_channels
                if scale in attention_resolutions:
                    layers += attention_layers(channels)
                if level and i == num_res_blocks:
                    layers.append(Upsample(channels))
                    scale //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(GroupNorm32(channels), nn.SiLU(), nn.Conv2d(model_channels, out_channels, 3, padding=1))

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        encoder_hidden_states: torch.Tensor,
        fps: torch.Tensor | int = 16,
        return_dict: bool = True,
    ) -> UNet3DConditionOutput | tuple[torch.Tensor]:
        """The noise predicted for ``sample`` (``[b, c, f, h, w]``), as ``UNet3DConditionOutput`` (or a 1-tuple).

        ``timestep`` and ``fps`` are one value per video or a single value for all; ``fps`` is ignored by a model
        built without ``fps_cond``. Raises ``ValueError`` naming the shape when ``sample`` is not 5-D.
        """
        if sample.ndim != 5:
            raise ValueError(f"sample must be [batch, channels, frames, height, width]; got shape {tuple(sample.shape)}")
        batch, _, num_frames, height, width = sample.shape
        emb = self.time_embed(self._sinusoid(timestep, batch, sample.device))
        if self.fps_embedding is not None:
            emb = emb + self.fps_embedding(self._sinusoid(fps, batch, sample.device))
        # Every frame is a batch entry of the 2-D layers: text and time embedding repeat per frame.
        context = encoder_hidden_states.repeat_interleave(num_frames, dim=0)
        emb = emb.repeat_interleave(num_frames, dim=0)
        h = sample.permute(0, 2, 1, 3, 4).reshape(batch * num_frames, -1, height, width).to(self.dtype)
        skips = []
        for index, block in enumerate(self.input_blocks):
            h = block(h, emb, context, num_frames)
            if index == 0 and self.init_attn is not None:
                h = self.init_attn(h, emb, context, num_frames)
            skips.append(h)
        h = self.middle_block(h, emb, context, num_frames)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, context, num_frames)
        out = self.out(h).to(sample.dtype)
        out = out.reshape(batch, num_frames, *out.shape[1:]).permute(0, 2, 1, 3, 4)
        return UNet3DConditionOutput(sample=out) if return_dict else (out,)

    def _sinusoid(self, values: torch.Tensor | int, batch: int, device: torch.device) -> torch.Tensor:
        """``[batch, model_channels]`` cos-then-sin embeddings of a timestep or frame rate, in the model's dtype."""
        values = torch.as_tensor(values, device=device)
        values = values.expand(batch) if values.ndim == 0 else values
        embedding = get_timestep_embedding(values, self.config.model_channels, flip_sin_to_cos=True, downscale_freq_shift=0)
        return embedding.to(self.dtype)


def _embedding_mlp(in_features: int, out_features: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, out_features), nn.SiLU(), nn.Linear(out_features, out_features))


def _temporal_transformer(channels: int, heads: int, head_dim: int, depth: int) -> TransformerTemporalModel:
    """Self-attention over frames at every spatial position (both attentions of each block are self-attention)."""
    return TransformerTemporalModel(
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        in_channels=channels,
        num_layers=depth,
        norm_num_groups=_GROUPS,
        double_self_attention=True,
    )
