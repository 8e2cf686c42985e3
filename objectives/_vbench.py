"""VBench's protocols with the same networks, in transformers' formats, from a local weights directory.

The weights directory's layout is in ``_weights.py``; nothing is ever downloaded.

Preprocessing follows ``vbench/utils.py``, whose transforms run on float tensors of 0..255 values:
DINO ``Resize(224, antialias=False)`` (bilinear, shorter side to 224, longer ``int(224 * long / short)``,
no crop), ``/255``, ImageNet mean/std; CLIP ``Resize(224, bicubic, antialias=False)``, centre crop 224,
``/255``, CLIP mean/std. torchvision is not installed here, so the same ``F.interpolate`` calls that
torchvision makes for tensors are made directly.
"""

from __future__ import annotations

import functools
import math
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ._rules import pair_consistency
from ._weights import weights_path

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
_SIZE = 224
_BATCH = 16  # frames per forward; VBench runs DINO one frame at a time, which only changes speed

# --- preprocessing ------------------------------------------------------------------------------------

def _as_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float32 [T, 3, H, W] holding 0..255, as VBench's ``load_video`` returns."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()


def _shorter_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """torchvision ``Resize(int)``: the shorter side becomes ``size``, the longer ``int(size * long / short)``."""
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def _normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    return (x / 255.0 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def dino_preprocess(frames: np.ndarray) -> torch.Tensor:
    """VBench ``dino_transform(224)``: bilinear resize of the shorter side to 224 (no antialias, no crop),
    ``/255``, ImageNet mean/std. Returns float32 ``[T, 3, h, w]``."""
    x = _as_tensor(frames)
    x = F.interpolate(x, size=_shorter_side_size(*x.shape[-2:], _SIZE), mode="bilinear", align_corners=False)
    return _normalize(x, IMAGENET_MEAN, IMAGENET_STD)


def clip_preprocess(frames: np.ndarray) -> torch.Tensor:
    """VBench ``clip_transform(224)``: bicubic resize of the shorter side to 224 (no antialias, no clamping),
    centre crop 224 (torchvision's rounding), ``/255``, CLIP mean/std. Returns float32 ``[T, 3, 224, 224]``."""
    x = _as_tensor(frames)
    x = F.interpolate(x, size=_shorter_side_size(*x.shape[-2:], _SIZE), mode="bicubic", align_corners=False)
    h, w = x.shape[-2:]
    top, left = int(round((h - _SIZE) / 2.0)), int(round((w - _SIZE) / 2.0))
    return _normalize(x[..., top : top + _SIZE, left : left + _SIZE], CLIP_MEAN, CLIP_STD)


# --- networks -----------------------------------------------------------------------------------------

def _dino_pos_encoding(self, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """DINO's own position-embedding interpolation (bicubic by ``scale_factor`` with its +0.1 offset);
    transformers interpolates ``size=`` instead, which gives slightly different embeddings off 224x224."""
    num_patches, num_positions = embeddings.shape[1] - 1, self.position_embeddings.shape[1] - 1
    if num_patches == num_positions and height == width:
        return self.position_embeddings
    side = math.sqrt(num_positions)
    grid = self.position_embeddings[:, 1:].reshape(1, int(side), int(side), -1).permute(0, 3, 1, 2)
    h0, w0 = height // self.patch_size + 0.1, width // self.patch_size + 0.1
    grid = F.interpolate(grid, scale_factor=(h0 / side, w0 / side), mode="bicubic")
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, embeddings.shape[-1])
    return torch.cat((self.position_embeddings[:, :1], grid), dim=1)


def _load_strict(cls: type, path: Path, **kwargs) -> torch.nn.Module:
    """``cls.from_pretrained`` that fails on missing or mis-shaped weights (transformers would re-initialise
    them with a warning) and stays quiet about the unused text tower of a full CLIP checkpoint."""
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        model, info = cls.from_pretrained(path, local_files_only=True, output_loading_info=True, **kwargs)
    finally:
        logging.set_verbosity(verbosity)
    bad = sorted(info["missing_keys"]) + sorted(str(k) for k in info["mismatched_keys"])
    if bad:
        raise ValueError(f"{str(path)!r} does not hold a {cls.__name__}: missing or mis-shaped {bad[:5]}")
    return model


@functools.lru_cache(maxsize=4)
def _load_dino(weights_dir: str, device: str) -> torch.nn.Module:
    from transformers import ViTModel

    # DINO's LayerNorms use eps 1e-6 whatever the converted config says.
    model = _load_strict(ViTModel, weights_path(weights_dir, "dino-vitb16"), add_pooling_layer=False, layer_norm_eps=1e-6)
    model.embeddings.interpolate_pos_encoding = types.MethodType(_dino_pos_encoding, model.embeddings)
    return model.to(device).eval()


@functools.lru_cache(maxsize=4)
def _load_clip(weights_dir: str, name: str, device: str) -> torch.nn.Module:
    from transformers import CLIPConfig, CLIPVisionModelWithProjection

    path = weights_path(weights_dir, name)
    # The projection size lives in the top-level CLIPConfig; a saved vision_config may carry a stale default.
    config = CLIPConfig.from_pretrained(path, local_files_only=True)
    config.vision_config.projection_dim = config.projection_dim
    return _load_strict(CLIPVisionModelWithProjection, path, config=config.vision_config).to(device).eval()


@functools.lru_cache(maxsize=4)
def _load_aesthetic_head(weights_dir: str, projection_dim: int, device: str) -> torch.nn.Linear:
    path = weights_path(weights_dir, "sa_0_4_vit_l_14_linear.pth")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if set(state) != {"weight", "bias"} or state["weight"].shape != (1, projection_dim):
        shapes = {k: tuple(v.shape) for k, v in state.items()}
        raise ValueError(f"{str(path)!r} is not a Linear({projection_dim}, 1) state dict: {shapes}")
    head = torch.nn.Linear(projection_dim, 1)
    head.load_state_dict(state)
    return head.to(device).eval()


@torch.inference_mode()
def _embed(forward: Callable[[torch.Tensor], torch.Tensor], pixels: torch.Tensor, device: str) -> torch.Tensor:
    """Run ``forward`` over frame batches; return L2-normalised float32 features on the CPU."""
    feats = [forward(chunk.to(device)).float().cpu() for chunk in pixels.split(_BATCH)]
    return F.normalize(torch.cat(feats), dim=-1, p=2)


def subject_consistency(weights_dir: str, device: str) -> Callable[[np.ndarray, float], dict[str, float]]:
    """VBench ``subject_consistency``: DINO ViT-B/16 CLS token (after the final LayerNorm) per frame."""
    model = _load_dino(weights_dir, device)

    def score(frames: np.ndarray, fps: float) -> dict[str, float]:
        forward = lambda x: model(pixel_values=x, interpolate_pos_encoding=True).last_hidden_state[:, 0]  # noqa: E731
        total, pairs = pair_consistency(_embed(forward, dino_preprocess(frames), device).numpy())
        return {"": total / pairs, "/sum": total, "/pairs": float(pairs)}

    return score


def background_consistency(weights_dir: str, device: str) -> Callable[[np.ndarray, float], dict[str, float]]:
    """VBench ``background_consistency``: CLIP ViT-B/32 projected image embeddings (``encode_image``)."""
    model = _load_clip(weights_dir, "clip-vit-base-patch32", device)

    def score(frames: np.ndarray, fps: float) -> dict[str, float]:
        forward = lambda x: model(pixel_values=x).image_embeds  # noqa: E731
        total, pairs = pair_consistency(_embed(forward, clip_preprocess(frames), device).numpy())
        return {"": total / pairs, "/sum": total, "/pairs": float(pairs)}

    return score


def aesthetic_quality(weights_dir: str, device: str) -> Callable[[np.ndarray, float], dict[str, float]]:
    """VBench ``aesthetic_quality``: CLIP ViT-L/14 embeddings, L2-normalised, LAION linear head, ``/10``,
    mean over frames. (VBench on a GPU runs CLIP in float16; this runs float32.)"""
    model = _load_clip(weights_dir, "clip-vit-large-patch14", device)
    head = _load_aesthetic_head(weights_dir, model.config.projection_dim, device)

    def score(frames: np.ndarray, fps: float) -> dict[str, float]:
        feats = _embed(lambda x: model(pixel_values=x).image_embeds, clip_preprocess(frames), device)
        with torch.inference_mode():
            per_frame = head(feats.to(device)).squeeze(-1).float().cpu() / 10.0
        return {"": per_frame.mean().item()}

    return score
