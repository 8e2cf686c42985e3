"""Reading VideoCrafter2's original checkpoint (``model.ckpt``, or its safetensors copy) into the pipeline's parts.

The file holds one state dict (inside ``{"state_dict": ...}`` for a ``.ckpt``) with three prefixes: the U-Net
under ``model.diffusion_model.`` keeps its key names (:class:`VideoCrafter2UNet` is built to match them), the LDM
autoencoder under ``first_stage_model.`` and the OpenCLIP text tower under ``cond_stage_model.model.`` go through
diffusers' own single-file converters into ``AutoencoderKL`` and transformers' ``CLIPTextModel``. A ``.ckpt`` is
read with ``torch.load(weights_only=True)``: nothing pickled is executed.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import safetensors.torch
import torch
from diffusers import AutoencoderKL
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint, convert_open_clip_checkpoint
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from vboost.backbones.videocrafter2._config import Settings
from vboost.backbones.videocrafter2._unet import VideoCrafter2UNet

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.model."
# Looked for in this order in a weights directory.
# open_clip's text towers use 64-wide attention heads (ViT-H-14: width 1024, 16 heads).
_OPEN_CLIP_HEAD_WIDTH = 64
_RESBLOCK = re.compile(re.escape(TEXT_PREFIX) + r"transformer\.resblocks\.(\d+)\.")


class PickledCheckpointError(ValueError):
    """The checkpoint holds pickled objects beyond tensors, which loading will not execute."""


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The flat state dict of a ``.safetensors`` file or of a ``.ckpt`` (``{"state_dict": {...}}`` or flat).

    Raises :class:`PickledCheckpointError` naming the file and the one-time conversion command when a ``.ckpt``
    cannot be read with ``weights_only=True``, and ``ValueError`` when it holds no state dict.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        return safetensors.torch.load_file(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise PickledCheckpointError(
            f"{str(path)!r} holds pickled objects beyond tensors; convert it once with "
            f"`python -m vboost.backbones.videocrafter2.convert {str(path)!r}` (see docs/backbones.md)"
        ) from None
    state = data.get("state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not any(isinstance(value, torch.Tensor) for value in state.values()):
        raise ValueError(f"{str(path)!r} holds no state dict of tensors")
    return {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}


def _part(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    part = {key: value for key, value in state.items() if key.startswith(prefix)}
    if not part:
        raise ValueError(f"the checkpoint has no {prefix}* keys (expected VideoCrafter's LatentDiffusion state dict)")
    return part


def load_unet(state: dict[str, torch.Tensor], settings: Settings, dtype: torch.dtype) -> VideoCrafter2UNet:
    """The U-Net holding the checkpoint's ``model.diffusion_model.*`` weights under their own names.

    The only change is the shape of the extra temporal transformer's 1x1 ``Conv1d`` projections, which are the
    ``Linear`` weights of diffusers' temporal transformer. Raises ``RuntimeError`` naming missing or unexpected keys.
    """
    weights = {}
    for key, value in _part(state, UNET_PREFIX).items():
        key = key[len(UNET_PREFIX) :]
        if key.startswith("init_attn.") and value.ndim == 3:  # Conv1d [out, in, 1] -> Linear [out, in]
            value = value[..., 0]
        weights[key] = value.to(dtype)
    with torch.device("meta"):  # no random initialisation of a 1.4B-parameter model that is overwritten at once
        unet = VideoCrafter2UNet(**settings.unet)
    unet.load_state_dict(weights, strict=True, assign=True)
    return unet.eval()


def load_vae(state: dict[str, torch.Tensor], settings: Settings, dtype: torch.dtype) -> AutoencoderKL:
    """diffusers ``AutoencoderKL`` from the checkpoint's LDM autoencoder (``first_stage_model.*``).

    Raises ``RuntimeError`` naming missing or unexpected keys.
    """
    vae = AutoencoderKL(**settings.vae)
    vae.load_state_dict(convert_ldm_vae_checkpoint(_part(state, VAE_PREFIX), vae.config), strict=True)
    return vae.to(dtype).eval()


def load_text_encoder(
    state: dict[str, torch.Tensor], settings: Settings, tokenizer: CLIPTokenizer, dtype: torch.dtype
) -> CLIPTextModel:
    """transformers ``CLIPTextModel`` whose ``last_hidden_state`` is what VideoCrafter2's ``FrozenOpenCLIPEmbedder``
    returns: the blocks up to the configured layer (all but the last for "penultimate"), then the final layer norm.

    The tower's sizes come from the weights; the blocks the original skips are left out of the model. Raises
    ``ValueError`` for a width that is not a multiple of open_clip's 64-wide heads, ``RuntimeError`` naming
    missing or unexpected keys.
    """
    text = _part(state, TEXT_PREFIX)
    blocks = 1 + max(int(match[1]) for key in text if (match := _RESBLOCK.match(key)))
    kept = blocks - settings.text_layers_skipped
    text = {key: value for key, value in text.items() if not ((m := _RESBLOCK.match(key)) and int(m[1]) >= kept)}
    vocab, width = text[TEXT_PREFIX + "token_embedding.weight"].shape
    if width % _OPEN_CLIP_HEAD_WIDTH:
        raise ValueError(f"text tower width {width} is not a multiple of open_clip's {_OPEN_CLIP_HEAD_WIDTH}-wide heads")
    config = CLIPTextConfig(
        vocab_size=vocab,
        hidden_size=width,
        intermediate_size=text[TEXT_PREFIX + "transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        num_hidden_layers=kept,
        num_attention_heads=width // _OPEN_CLIP_HEAD_WIDTH,
        max_position_embeddings=text[TEXT_PREFIX + "positional_embedding"].shape[0],
        hidden_act="gelu",  # open_clip's nn.GELU (ViT-H-14 is not a QuickGELU model)
        layer_norm_eps=1e-5,
        projection_dim=width,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    text_encoder = CLIPTextModel(config)
    weights = convert_open_clip_checkpoint(text_encoder, text, prefix=TEXT_PREFIX)
    if not hasattr(text_encoder, "text_model"):  # transformers >= 5.6 flattened CLIPTextModel (as diffusers handles it)
        weights = {key.removeprefix("text_model."): value for key, value in weights.items()}
    text_encoder.load_state_dict(weights, strict=True)
    return text_encoder.to(dtype).eval()


def load_tokenizer(directory: str | os.PathLike) -> CLIPTokenizer:
    """The CLIP BPE tokenizer in ``<directory>/tokenizer`` (open_clip's ViT-H-14 uses CLIP's vocabulary).

    Raises ``FileNotFoundError`` naming the folder when it is missing.
    """
    folder = Path(directory).expanduser() / "tokenizer"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{str(folder)!r} not found: VideoCrafter2 needs a CLIP tokenizer folder (vocab.json, merges.txt) beside "
            "its checkpoint, e.g. the tokenizer files of laion/CLIP-ViT-H-14-laion2B-s32B-b79K (see docs/backbones.md)"
        )
    return CLIPTokenizer.from_pretrained(folder, local_files_only=True)
