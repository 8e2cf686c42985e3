"""VBench's frame transforms, reproduced on tensors without torchvision.

``vbench/utils.py`` and the dimension modules apply torchvision transforms to float tensors of 0..255
values (``load_video`` returns ``torch.Tensor(frames)``), so no rounding or clamping happens between
steps; torchvision's tensor ``Resize`` is one ``F.interpolate`` call, made here directly:

- DINO ``dino_transform(224)``: bilinear resize of the shorter side to 224 (longer ``int(224 * long / short)``),
  no antialias, no crop; ``/255``; ImageNet mean/std.
- CLIP ``clip_transform(224)``: the same resize but bicubic (unclamped), centre crop 224
  (``int(round((side - 224) / 2))``), ``/255``, CLIP mean/std.
- MUSIQ (``imaging_quality.transform``, mode ``longer``): when the longer side exceeds 512, bilinear resize
  (no antialias) to ``(int(s * H), int(s * W))`` with ``s = 512 / longer``; ``/255``.
- RAFT and AMT pad with replicated edges to a multiple of 8 (RAFT's ``InputPadder``, 'sintel' mode) or 16
  (AMT's), the odd pixel at the bottom/right.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ._rules import padding

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
SIZE = 224
MUSIQ_LONGER = 512


def as_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` -> float32 ``[T, 3, H, W]`` holding 0..255, as VBench's ``load_video`` returns."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()


def shorter_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """torchvision ``Resize(int)``: the shorter side becomes ``size``, the longer ``int(size * long / short)``."""
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def _normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    mean_t, std_t = torch.tensor(mean, device=x.device), torch.tensor(std, device=x.device)
    return (x / 255.0 - mean_t.view(1, 3, 1, 1)) / std_t.view(1, 3, 1, 1)


def dino(x: torch.Tensor) -> torch.Tensor:
    """VBench ``dino_transform(224)`` of float 0..255 frames ``[T, 3, H, W]``; returns ``[T, 3, h, w]``."""
    x = F.interpolate(x, size=shorter_side_size(*x.shape[-2:], SIZE), mode="bilinear", align_corners=False)
    return _normalize(x, IMAGENET_MEAN, IMAGENET_STD)


def clip(x: torch.Tensor) -> torch.Tensor:
    """VBench ``clip_transform(224)`` of float 0..255 frames ``[T, 3, H, W]``; returns ``[T, 3, 224, 224]``."""
    x = F.interpolate(x, size=shorter_side_size(*x.shape[-2:], SIZE), mode="bicubic", align_corners=False)
    h, w = x.shape[-2:]
    top, left = int(round((h - SIZE) / 2.0)), int(round((w - SIZE) / 2.0))
    return _normalize(x[..., top : top + SIZE, left : left + SIZE], CLIP_MEAN, CLIP_STD)


def musiq(x: torch.Tensor) -> torch.Tensor:
    """VBench's ``imaging_quality`` transform in its default 'longer' mode; returns 0..1 frames."""
    h, w = x.shape[-2:]
    if max(h, w) > MUSIQ_LONGER:
        scale = MUSIQ_LONGER / max(h, w)
        x = F.interpolate(x, size=(int(scale * h), int(scale * w)), mode="bilinear", align_corners=False)
    return x / 255.0


def pad_replicate(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad H and W of ``[..., H, W]`` up to a multiple of ``multiple``, split evenly with the odd
    pixel at the bottom/right (RAFT's and AMT's ``InputPadder``)."""
    (top, bottom), (left, right) = padding(x.shape[-2], multiple), padding(x.shape[-1], multiple)
    return F.pad(x, [left, right, top, bottom], mode="replicate")


def unpad(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Undo :func:`pad_replicate` for frames that were ``height x width``."""
    top, left = (x.shape[-2] - height) // 2, (x.shape[-1] - width) // 2  # the "before" halves of padding()
    return x[..., top : top + height, left : left + width]
