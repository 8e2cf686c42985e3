"""STDiT3, the denoiser of Open-Sora v1.2 (hpcai-tech/Open-Sora, ``opensora/models/stdit/stdit3.py``).

Module and parameter names are those of the released checkpoint ``hpcai-tech/OpenSora-STDiT-v3``, so its
``model.safetensors`` loads as is. The forward is the original's for text-to-video: per layer, a spatial block
(self-attention over the patches of each frame) then a temporal block (self-attention over the frames of each
patch position, with rotary position embedding); q and k are RMS-normalised per head before RoPE; text enters by
cross-attention on the prompt's own tokens; the timestep embedding plus an fps embedding modulates every block;
the spatial position embedding is scaled by the pixel resolution. What the original's inference does not use is
left out: frame masks for image conditioning, sequence parallelism, fused kernels (the same math).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import get_timestep_embedding
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import RMSNorm
from torch import nn


class RotaryEmbedding(nn.Module):
    """Rotary position embedding over frames with interleaved pairs (``rotary-embedding-torch`` 0.5.3, as Open-Sora
    uses it). ``freqs`` is a checkpoint parameter, so it takes the model dtype like every weight."""

    def __init__(self, dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        self.freqs = nn.Parameter(
            1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim)), requires_grad=False
        )

    def forward(self, seq_len: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cos, sin)`` of the angles of positions ``0 .. seq_len-1``, each ``[seq_len, dim]``.

        Positions are made in ``dtype`` (the activations'), angles in the dtype of ``freqs``, as in the original.
        """
        positions = torch.arange(seq_len, device=self.freqs.device, dtype=dtype).to(self.freqs.dtype)
        angles = (positions[:, None] * self.freqs[None, :]).repeat_interleave(2, dim=-1)
        return angles.cos(), angles.sin()


def apply_rotary_emb(x: torch.Tensor, rotary_emb: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate ``x [..., seq, dim]`` by ``(cos, sin)``: each pair ``(a, b)`` of channels turns into ``(-b, a)``."""
    cos, sin = rotary_emb
    first, second = x.unflatten(-1, (-1, 2)).unbind(-1)
    rotated = torch.stack((-second, first), dim=-1).flatten(-2)
    return x * cos + rotated * sin


class STDiT3AttnProcessor:
    """The self-attention of an STDiT3 block: projections, per-head q/k norm (and RoPE), attention, output."""

    def __call__(
        self,
        attn: "STDiT3Attention",
        hidden_states: torch.Tensor,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        query, key, value = attn.project_qkv(hidden_states, rotary_emb)
        return attn.attend(query, key, value)


class STDiT3Attention(nn.Module):
    """Open-Sora's ``Attention`` (one fused ``qkv`` projection) with a swappable processor, as in diffusers."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool) -> None:
        super().__init__()
        self.heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.q_norm = RMSNorm(head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.processor: object = STDiT3AttnProcessor()

    def set_processor(self, processor: object) -> None:
        self.processor = processor

    def forward(
        self, hidden_states: torch.Tensor, rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        return self.processor(self, hidden_states, rotary_emb)

    def project_qkv(
        self, hidden_states: torch.Tensor, rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v ``[B, heads, L, head_dim]`` as the attention kernel gets them: q/k normed, then rotated."""
        batch, length, _ = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        query, key, value = qkv.unbind(0)
        query, key = self.q_norm(query), self.k_norm(key)
        if rotary_emb is not None:
            query, key = apply_rotary_emb(query, rotary_emb), apply_rotary_emb(key, rotary_emb)
        return query, key, value

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """Softmax attention of ``[B, heads, L, head_dim]`` q/k/v, heads merged, output projection: ``[B, L, dim]``."""
        out = F.scaled_dot_product_attention(query, key, value)
        return self.proj(out.transpose(1, 2).flatten(2))


class STDiT3CrossAttention(nn.Module):
    """Open-Sora's ``MultiHeadCrossAttention``: each video attends to its own prompt's valid tokens only."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.heads = num_heads
        self.q_linear = nn.Linear(dim, dim)
        self.kv_linear = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, hidden_states: torch.Tensor, cond: torch.Tensor, cond_mask: torch.Tensor | None) -> torch.Tensor:
        """``hidden_states [B, N, dim]`` attending to ``cond [B, L, dim]`` where ``cond_mask [B, L]`` (bool) holds."""
        batch, length, dim = hidden_states.shape
        query = self.q_linear(hidden_states).view(batch, length, self.heads, -1).transpose(1, 2)
        key, value = self.kv_linear(cond).view(batch, cond.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        attn_mask = None if cond_mask is None else cond_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask)
        return self.proj(out.transpose(1, 2).reshape(batch, length, dim))


class Mlp(nn.Module):
    """timm's ``Mlp`` as Open-Sora builds it: ``fc1``, tanh-approximated GELU, ``fc2``."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def t2i_modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class STDiT3Block(nn.Module):
    """One spatial or temporal block: modulated self-attention, cross-attention to the prompt, modulated MLP."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, qk_norm: bool, temporal: bool) -> None:
        super().__init__()
        self.temporal = temporal
        self.norm1 = nn.LayerNorm(hidden_size, eps=1e-6, elementwise_affine=False)
        self.attn = STDiT3Attention(hidden_size, num_heads, qk_norm)
        self.cross_attn = STDiT3CrossAttention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, eps=1e-6, elementwise_affine=False)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.scale_shift_table = nn.Parameter(torch.randn(6, hidden_size) / hidden_size**0.5)

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        t: torch.Tensor,
        y_mask: torch.Tensor | None,
        num_frames: int,
        num_patches: int,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``x [B, T*S, C]`` (frame-major tokens) -> same shape; ``t [B, 6C]`` is the modulation of every block."""
        batch, _, channels = x.shape
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            self.scale_shift_table[None] + t.reshape(batch, 6, -1)
        ).chunk(6, dim=1)

        x_m = t2i_modulate(self.norm1(x), shift_msa, scale_msa)
        if self.temporal:  # attention over frames, one sequence per patch position: B (T S) C -> (B S) T C
            x_m = x_m.view(batch, num_frames, num_patches, channels).transpose(1, 2).reshape(-1, num_frames, channels)
            x_m = self.attn(x_m, rotary_emb)
            x_m = x_m.view(batch, num_patches, num_frames, channels).transpose(1, 2).reshape(batch, -1, channels)
        else:  # attention over the patches of each frame: B (T S) C -> (B T) S C
            x_m = self.attn(x_m.reshape(-1, num_patches, channels)).view(batch, -1, channels)
        x = x + gate_msa * x_m

        x = x + self.cross_attn(x, y, y_mask)

        x_m = t2i_modulate(self.norm2(x), shift_mlp, scale_mlp)
        return x + gate_mlp * self.mlp(x_m)


class PatchEmbed3D(nn.Module):
    """Latents ``[B, C, T, H, W]`` zero-padded to whole patches, one token per patch: ``[B, T*H*W, dim]``."""

    def __init__(self, patch_size: tuple[int, int, int], in_channels: int, dim: int) -> None:
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.proj = nn.Conv3d(in_channels, dim, kernel_size=self.patch_size, stride=self.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pt, ph, pw = self.patch_size
        _, _, frames, height, width = x.shape
        x = F.pad(x, (0, -width % pw, 0, -height % ph, 0, -frames % pt))
        return self.proj(x).flatten(2).transpose(1, 2)


class TimestepEmbedder(nn.Module):
    """Sinusoidal embedding (cos first, 256 channels) of a scalar per sample, then an MLP (timestep, and fps)."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256) -> None:
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
        )

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        freq = get_timestep_embedding(
            values, self.frequency_embedding_size, flip_sin_to_cos=True, downscale_freq_shift=0
        )
        return self.mlp(freq.to(self.mlp[0].weight.dtype))


class CaptionEmbedder(nn.Module):
    """Projects T5 features to the model width; ``y_embedding`` is the learned "no prompt" sequence for CFG."""

    def __init__(self, caption_channels: int, hidden_size: int, token_num: int) -> None:
        super().__init__()
        self.y_proj = Mlp(caption_channels, hidden_size, hidden_size)
        self.register_buffer("y_embedding", torch.randn(token_num, caption_channels) / caption_channels**0.5)

    def forward(self, caption: torch.Tensor) -> torch.Tensor:
        return self.y_proj(caption)


class PositionEmbedding2D(nn.Module):
    """Sin-cos embedding of the patch grid, its coordinates stretched to ``base_size`` and divided by ``scale``.

    As in the original, the first half of the channels encodes the column (x) and the second half the row.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        half_dim = dim // 2
        # Not in the checkpoint; a floating buffer, so it takes the model dtype as in the original.
        self.register_buffer(
            "inv_freq", 1.0 / (10000 ** (torch.arange(0, half_dim, 2).float() / half_dim)), persistent=False
        )

    def _sin_cos(self, positions: torch.Tensor) -> torch.Tensor:
        angles = positions[:, None] * self.inv_freq[None, :].float()
        return torch.cat((angles.sin(), angles.cos()), dim=-1)

    def forward(self, height: int, width: int, scale: float, base_size: int, dtype: torch.dtype) -> torch.Tensor:
        """``[1, height*width, dim]`` in ``dtype`` for a row-major ``height x width`` patch grid."""
        device = self.inv_freq.device
        rows = torch.arange(height, device=device) / scale * (base_size / height)
        cols = torch.arange(width, device=device) / scale * (base_size / width)
        col_of_token = cols.repeat(height)
        row_of_token = rows.repeat_interleave(width)
        return torch.cat((self._sin_cos(col_of_token), self._sin_cos(row_of_token)), dim=-1)[None].to(dtype)


class T2IFinalLayer(nn.Module):
    """PixArt's final layer: modulated LayerNorm and a linear map to the patch's output channels."""

    def __init__(self, hidden_size: int, num_patch: int, out_channels: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, num_patch * out_channels)
        self.scale_shift_table = nn.Parameter(torch.randn(2, hidden_size) / hidden_size**0.5)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        shift, scale = (self.scale_shift_table[None] + t[:, None]).chunk(2, dim=1)
        return self.linear(t2i_modulate(self.norm_final(x), shift, scale))


class STDiT3(ModelMixin, ConfigMixin):
    """Open-Sora v1.2's spatial-temporal DiT; configuration keys as in the released ``config.json``.

    ``forward(x, timestep, y, mask, fps, height, width)`` takes latents ``x [B, C, T, H, W]``, timesteps ``[B]`` in
    ``[0, 1000]``, T5 features ``y [B, 1, L, caption_channels]`` with their attention ``mask [B or n, L]`` (repeated
    to the batch, as for classifier-free guidance), and per-sample ``fps``, ``height`` and ``width`` in pixels.
    It returns ``[B, out_channels, T, H, W]`` in float32; with ``pred_sigma`` the first ``in_channels`` are the
    velocity. Like the original, it computes in the dtype of its weights and reads only the first ``height`` and
    ``width`` (the spatial position embedding's scale).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        input_sq_size: int = 512,
        in_channels: int = 4,
        patch_size: tuple[int, int, int] = (1, 2, 2),
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        pred_sigma: bool = True,
        caption_channels: int = 4096,
        model_max_length: int = 300,
        qk_norm: bool = True,
    ) -> None:
        super().__init__()
        patch_size = tuple(patch_size)
        self.out_channels = in_channels * 2 if pred_sigma else in_channels
        self.pos_embed = PositionEmbedding2D(hidden_size)
        self.rope = RotaryEmbedding(hidden_size // num_heads)
        self.x_embedder = PatchEmbed3D(patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.fps_embedder = TimestepEmbedder(hidden_size)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))
        self.y_embedder = CaptionEmbedder(caption_channels, hidden_size, model_max_length)
        self.spatial_blocks = nn.ModuleList(
            STDiT3Block(hidden_size, num_heads, mlp_ratio, qk_norm, temporal=False) for _ in range(depth)
        )
        self.temporal_blocks = nn.ModuleList(
            STDiT3Block(hidden_size, num_heads, mlp_ratio, qk_norm, temporal=True) for _ in range(depth)
        )
        self.final_layer = T2IFinalLayer(hidden_size, patch_size[0] * patch_size[1] * patch_size[2], self.out_channels)

    def forward(
        self,
        x: torch.Tensor,
        timestep: torch.Tensor,
        y: torch.Tensor,
        mask: torch.Tensor | None = None,
        fps: torch.Tensor | None = None,
        height: torch.Tensor | None = None,
        width: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if fps is None or height is None or width is None:
            raise ValueError("STDiT3 needs fps, height and width (per-sample tensors, pixels) besides the latents")
        dtype = self.x_embedder.proj.weight.dtype
        batch, _, frames_in, height_in, width_in = x.shape
        x, timestep, y = x.to(dtype), timestep.to(dtype), y.to(dtype)
        pt, ph, pw = self.config.patch_size
        frames, rows, cols = -(-frames_in // pt), -(-height_in // ph), -(-width_in // pw)
        patches = rows * cols

        # The spatial position embedding: grid stretched to a square of the same area, scaled by the resolution.
        scale = (height[0].item() * width[0].item()) ** 0.5 / self.config.input_sq_size
        pos_emb = self.pos_embed(rows, cols, scale, round(patches**0.5), dtype)

        t = self.t_embedder(timestep) + self.fps_embedder(fps.reshape(-1).repeat(batch // fps.numel()))
        t_mlp = self.t_block(t)
        y, y_mask = self._encode_text(y, mask)

        x = self.x_embedder(x).view(batch, frames, patches, -1) + pos_emb[:, None]
        x = x.flatten(1, 2)
        rotary_emb = self.rope(frames, dtype)
        for spatial_block, temporal_block in zip(self.spatial_blocks, self.temporal_blocks):
            x = spatial_block(x, y, t_mlp, y_mask, frames, patches)
            x = temporal_block(x, y, t_mlp, y_mask, frames, patches, rotary_emb)
        x = self.final_layer(x, t)
        return self._unpatchify(x, frames, rows, cols)[:, :, :frames_in, :height_in, :width_in].float()

    def _encode_text(self, y: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Projected prompt tokens ``[B, L', C]`` and which are valid (``None``: all); token columns no sample
        uses are dropped (the original packs the valid tokens of each sample instead)."""
        y = self.y_embedder(y).squeeze(1)
        if mask is None:
            return y, None
        valid = (mask != 0).repeat(y.shape[0] // mask.shape[0], 1)
        used = valid.any(dim=0)
        return y[:, used], valid[:, used]

    def _unpatchify(self, x: torch.Tensor, frames: int, rows: int, cols: int) -> torch.Tensor:
        """``[B, T*H*W, pt*ph*pw*C]`` tokens -> ``[B, C, T*pt, H*ph, W*pw]``."""
        pt, ph, pw = self.config.patch_size
        x = x.view(x.shape[0], frames, rows, cols, pt, ph, pw, self.out_channels)
        return x.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(
            x.shape[0], self.out_channels, frames * pt, rows * ph, cols * pw
        )
