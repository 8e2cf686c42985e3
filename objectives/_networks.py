"""VBench's networks, built by well-kept libraries from VBench's own weight files, once per process.

=====================  ===============================================  ===================================
dimension              network (file in VBench's cache)                  built by
=====================  ===============================================  ===================================
dynamic_degree         RAFT-large (``raft-things.pth``)                  ``torchvision`` ``raft_large``
subject_consistency    DINO ViT-B/16 (``dino_vitbase16_pretrain.pth``)   ``transformers`` ``ViTModel``
background_consistency CLIP ViT-B/32 image tower (``ViT-B-32.pt``)       ``transformers`` CLIP vision model
aesthetic_quality      CLIP ViT-L/14 (``ViT-L-14.pt``) + LAION head     ``transformers`` + ``nn.Linear``
motion_smoothness      AMT-S (``amt-s.pth``)                             this package (``_amt.py``)
imaging_quality        MUSIQ (``musiq_spaq_ckpt-358bb6af.pth``)          ``pyiqa`` ``MUSIQ``
=====================  ===============================================  ===================================

Each loader reads the file without executing pickled code (``_checkpoints.py``), loads it strictly, and
returns the network in eval mode on ``device``. Precision is VBench's: float32 everywhere except the two
CLIP towers on a GPU, which VBench runs in float16 (OpenAI's ``clip.load`` keeps the archive's half
weights on CUDA; its LayerNorms compute in float32).
"""

from __future__ import annotations

import functools
import math
import types
from pathlib import Path

import torch
import torch.nn.functional as F

from . import _weights
from ._checkpoints import (
    dino_vit_state_dict,
    load_state_dict,
    openai_clip_visual_state_dict,
    raft_things_state_dict,
    read_torchscript_tensors,
)
from ._weights import CheckpointError


def _strict(module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> torch.nn.Module:
    expected = module.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    shapes = [k for k in set(expected) & set(state) if expected[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{str(path)!r} does not fit {type(module).__name__}: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, mis-shaped {sorted(shapes)[:3]}"
        )
    module.load_state_dict(state)
    return module


def clip_uses_half(device: str) -> bool:
    """Whether VBench runs its CLIP towers in float16 on ``device`` (on CUDA, not on the CPU)."""
    return torch.device(device).type == "cuda"


# --- DINO -------------------------------------------------------------------------------------------------

def _dino_pos_encoding(self, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """DINO's own position-embedding interpolation (bicubic by ``scale_factor`` with its +0.1 offset);
    transformers interpolates with ``size=``, which gives slightly different embeddings off 224x224."""
    num_patches, num_positions = embeddings.shape[1] - 1, self.position_embeddings.shape[1] - 1
    if num_patches == num_positions and height == width:
        return self.position_embeddings
    side = math.sqrt(num_positions)
    grid = self.position_embeddings[:, 1:].reshape(1, int(side), int(side), -1).permute(0, 3, 1, 2)
    h0, w0 = height // self.patch_size + 0.1, width // self.patch_size + 0.1
    grid = F.interpolate(grid, scale_factor=(h0 / side, w0 / side), mode="bicubic")
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, embeddings.shape[-1])
    return torch.cat((self.position_embeddings[:, :1], grid), dim=1)


@functools.lru_cache(maxsize=2)
def dino(weights_dir: str, device: str) -> torch.nn.Module:
    """DINO ViT-B/16 as transformers ``ViTModel``; ``model(pixel_values=x, interpolate_pos_encoding=True)
    .last_hidden_state[:, 0]`` is DINO's output (the CLS token after the final LayerNorm)."""
    from transformers import ViTConfig, ViTModel

    path = _weights.weight_path(weights_dir, _weights.DINO, "subject_consistency")
    config, state = dino_vit_state_dict(load_state_dict(path), path)
    model = _strict(ViTModel(ViTConfig(**config), add_pooling_layer=False), state, path)
    model.embeddings.interpolate_pos_encoding = types.MethodType(_dino_pos_encoding, model.embeddings)
    return model.to(device).eval()


# --- CLIP ---------------------------------------------------------------------------------------------------

def _float32_layer_norm(module: torch.nn.LayerNorm) -> None:
    """OpenAI CLIP's LayerNorm: computed in float32 on the upcast input, cast back to the input's dtype."""
    module.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps).to(x.dtype)

    module.forward = types.MethodType(forward, module)


@functools.lru_cache(maxsize=4)
def clip_vision(weights_dir: str, file_name: str, device: str) -> torch.nn.Module:
    """An OpenAI CLIP image tower (``ViT-B-32.pt`` or ``ViT-L-14.pt``) as transformers
    ``CLIPVisionModelWithProjection``; ``model(pixel_values=x).image_embeds`` is ``encode_image(x)``. On CUDA
    it runs in float16 with float32 LayerNorms, as VBench does."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    file, dimension = {
        _weights.CLIP_B32.path: (_weights.CLIP_B32, "background_consistency"),
        _weights.CLIP_L14.path: (_weights.CLIP_L14, "aesthetic_quality"),
    }[file_name]
    path = _weights.weight_path(weights_dir, file, dimension)
    config, state = openai_clip_visual_state_dict(read_torchscript_tensors(path), path)
    model = _strict(CLIPVisionModelWithProjection(CLIPVisionConfig(**config)), state, path).eval()
    if clip_uses_half(device):
        model.half()
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                _float32_layer_norm(module)
    return model.to(device)


@functools.lru_cache(maxsize=2)
def aesthetic_head(weights_dir: str, device: str) -> torch.nn.Linear:
    """The LAION aesthetic predictor, ``Linear(768, 1)`` over L2-normalised CLIP ViT-L/14 embeddings."""
    path = _weights.weight_path(weights_dir, _weights.AESTHETIC, "aesthetic_quality")
    state = load_state_dict(path)
    if set(state) != {"weight", "bias"} or state["weight"].ndim != 2 or state["weight"].shape[0] != 1:
        raise CheckpointError(f"{str(path)!r} is not a Linear(n, 1) state dict: {sorted(state)}")
    head = torch.nn.Linear(state["weight"].shape[1], 1)
    return _strict(head, state, path).to(device).eval()


# --- RAFT, AMT-S, MUSIQ ----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=2)
def raft(weights_dir: str, device: str) -> torch.nn.Module:
    """RAFT-large as torchvision's ``raft_large`` with raft-things.pth's weights; it takes frames scaled to
    [-1, 1], as RAFT does internally, and returns the flow after every update (VBench takes the 20th)."""
    from torchvision.models.optical_flow import raft_large

    path = _weights.weight_path(weights_dir, _weights.RAFT, "dynamic_degree")
    state = raft_things_state_dict(load_state_dict(path), path)
    return _strict(raft_large(weights=None), state, path).to(device).eval()


@functools.lru_cache(maxsize=2)
def amt_s(weights_dir: str, device: str) -> torch.nn.Module:
    """AMT-S (``_amt.AMTS``) with amt-s.pth's ``state_dict``."""
    from ._amt import AMTS

    path = _weights.weight_path(weights_dir, _weights.AMT_S, "motion_smoothness")
    return _strict(AMTS(), load_state_dict(path, entry="state_dict"), path).to(device).eval()


@functools.lru_cache(maxsize=2)
def musiq(weights_dir: str, device: str) -> torch.nn.Module:
    """pyiqa's ``MUSIQ`` as VBench builds it (SPAQ: one output, the MOS on 0..100), with the checkpoint read
    here with ``weights_only=True`` rather than by pyiqa (which unpickles freely). Depth and width come
    from the file; heads are width / 64 (6 for the published 384-wide model)."""
    from pyiqa.archs.musiq_arch import MUSIQ

    path = _weights.weight_path(weights_dir, _weights.MUSIQ_SPAQ, "imaging_quality")
    state = load_state_dict(path)
    try:
        width = state["transformer_encoder.cls"].shape[-1]
        mlp = state["transformer_encoder.transformer.encoderblock_0.mlp.fc1.weight"].shape[0]
        outputs = state["head.weight"].shape[0]
    except KeyError as err:
        raise CheckpointError(f"{str(path)!r} is not a MUSIQ state dict: lacks {err}") from None
    layers = len({k.split(".")[2] for k in state if k.startswith("transformer_encoder.transformer.encoderblock_")})
    model = MUSIQ(num_class=outputs, hidden_size=width, mlp_dim=mlp, num_heads=max(1, width // 64),
                  num_layers=layers, pretrained=False)
    return _strict(model, state, path).to(device).eval()
