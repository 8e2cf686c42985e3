"""Reading VBench's weight files without executing pickled code, and renaming their tensors for the
libraries that run them.

- plain ``torch.save`` files (RAFT, DINO, the LAION head, AMT-S, MUSIQ): ``torch.load(weights_only=True)``,
  whose unpickler only builds tensors and plain containers;
- OpenAI's CLIP ``.pt`` files are TorchScript archives (a zip whose ``data.pkl`` pickles the module tree as
  ``__torch__.*`` objects). :func:`read_torchscript_tensors` reads them with a restricted unpickler: it
  builds tensors from the archive's storage records, turns every ``__torch__`` object into an inert
  attribute holder, and refuses any other global. No TorchScript is loaded and no archive code runs.

Each ``*_state_dict`` function maps an original state dict onto a library's module names and returns the
library config it implies; a key it does not expect, or one it misses, is an error naming the file.
"""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from pathlib import Path

import torch

from ._weights import CheckpointError


def load_state_dict(path: Path, entry: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a ``torch.save`` file read with ``weights_only=True`` (``entry``: the dict key holding
    them, e.g. ``"state_dict"``), with a ``module.`` prefix (DataParallel) stripped. Raises
    :class:`CheckpointError` naming the file if it needs more than tensors and plain containers."""
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError or zip errors depending on the file
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{str(path)!r} cannot be read as tensors without executing pickled code: {reason}") from None
    if entry is not None:
        if not isinstance(content, dict) or entry not in content:
            raise CheckpointError(f"{str(path)!r} has no {entry!r} entry")
        content = content[entry]
    if not isinstance(content, dict) or not all(isinstance(v, torch.Tensor) for v in content.values()):
        raise CheckpointError(f"{str(path)!r} does not hold a state dict (name -> tensor)")
    return {k.removeprefix("module."): v for k, v in content.items()}


# --- TorchScript archives ---------------------------------------------------------------------------------

class _ScriptObject:
    """Stand-in for a pickled ``__torch__`` module: holds the attributes the archive gives it, runs nothing."""

    def __setstate__(self, state: object) -> None:
        self.__dict__["_state"] = state


def _rebuild_tensor(storage: torch.Tensor, offset: int, size, stride, *_ignored) -> torch.Tensor:
    return storage.as_strided(tuple(size), tuple(stride), offset)


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


class _ArchiveUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript ``data.pkl`` into ``_ScriptObject`` trees of tensors; refuses other globals."""

    _ALLOWED = {("collections", "OrderedDict"): dict, ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor}

    def __init__(self, archive: zipfile.ZipFile, prefix: str, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self._archive, self._prefix = archive, prefix

    def find_class(self, module: str, name: str):
        if module == "__torch__" or module.startswith("__torch__."):
            return _ScriptObject
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]  # a storage type stands for its dtype in persistent ids
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a weights archive")

    def persistent_load(self, pid):
        kind, dtype, key, _location, numel = pid
        if kind != "storage" or not isinstance(dtype, torch.dtype):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        raw = bytearray(self._archive.read(f"{self._prefix}/data/{key}"))
        return torch.frombuffer(raw, dtype=dtype)[:numel] if raw else torch.empty(0, dtype=dtype)


def _collect(node: object, prefix: str, out: dict[str, torch.Tensor]) -> None:
    state = node.__dict__.get("_state", node.__dict__) if isinstance(node, _ScriptObject) else node
    if not isinstance(state, dict):
        return
    for name, value in state.items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, (_ScriptObject, dict)):
            _collect(value, f"{prefix}{name}.", out)


def read_torchscript_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor attribute of the module tree pickled in a TorchScript archive, by dotted name
    (``visual.conv1.weight``, ...): parameters, buffers and plain tensor attributes alike.

    Raises :class:`CheckpointError` naming the file when it is not such an archive or pickles anything but
    modules, tensors and dicts."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if re.fullmatch(r"[^/]+/data\.pkl", n)]
            if len(pickles) != 1:
                raise CheckpointError(f"{str(path)!r} is not a TorchScript archive (no single <name>/data.pkl)")
            prefix = pickles[0].split("/")[0]
            root = _ArchiveUnpickler(archive, prefix, archive.read(pickles[0])).load()
    except (zipfile.BadZipFile, pickle.UnpicklingError, KeyError, ValueError, EOFError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"{str(path)!r} cannot be read as a TorchScript weights archive: {err}") from None
    tensors: dict[str, torch.Tensor] = {}
    _collect(root, "", tensors)
    return {name: tensor.clone() for name, tensor in tensors.items()}


# --- name mappings -------------------------------------------------------------------------------------

def _take(state: dict[str, torch.Tensor], key: str, path: Path) -> torch.Tensor:
    try:
        return state.pop(key)
    except KeyError:
        raise CheckpointError(f"{str(path)!r} lacks {key!r}") from None


def _layer_count(state: dict[str, torch.Tensor], pattern: str) -> int:
    indices = {int(m.group(1)) for k in state if (m := re.fullmatch(pattern, k))}
    return max(indices) + 1 if indices else 0


def _no_leftovers(state: dict[str, torch.Tensor], path: Path, what: str) -> None:
    if state:
        raise CheckpointError(f"{str(path)!r} is not {what}: unexpected {sorted(state)[:5]}")


def dino_vit_state_dict(state: dict[str, torch.Tensor], path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """DINO's ``vision_transformer.VisionTransformer`` (``blocks.i.attn.qkv`` ...) -> transformers
    ``ViTModel`` without pooler. Returns ``(ViTConfig kwargs, state dict)``. Heads are width / 64, as in
    every DINO ViT; the LayerNorm eps is DINO's 1e-6."""
    state = dict(state)
    cls_token = _take(state, "cls_token", path)
    width = cls_token.shape[-1]
    depth = _layer_count(state, r"blocks\.(\d+)\..*")
    out = {
        "embeddings.cls_token": cls_token,
        "embeddings.position_embeddings": _take(state, "pos_embed", path),
        "embeddings.patch_embeddings.projection.weight": _take(state, "patch_embed.proj.weight", path),
        "embeddings.patch_embeddings.projection.bias": _take(state, "patch_embed.proj.bias", path),
        "layernorm.weight": _take(state, "norm.weight", path),
        "layernorm.bias": _take(state, "norm.bias", path),
    }
    for i in range(depth):
        src, dst = f"blocks.{i}.", f"layers.{i}."
        for part in ("weight", "bias"):
            q, k, v = _take(state, f"{src}attn.qkv.{part}", path).chunk(3)
            out |= {f"{dst}attention.q_proj.{part}": q, f"{dst}attention.k_proj.{part}": k,
                    f"{dst}attention.v_proj.{part}": v}
            for old, new in (("attn.proj", "attention.o_proj"), ("norm1", "layernorm_before"),
                             ("norm2", "layernorm_after"), ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2")):
                out[f"{dst}{new}.{part}"] = _take(state, f"{src}{old}.{part}", path)
    _no_leftovers(state, path, "a DINO ViT state dict")
    patch = out["embeddings.patch_embeddings.projection.weight"].shape[-1]
    grid = round((out["embeddings.position_embeddings"].shape[1] - 1) ** 0.5)
    config = dict(hidden_size=width, num_hidden_layers=depth, num_attention_heads=max(1, width // 64),
                  intermediate_size=out["layers.0.mlp.fc1.weight"].shape[0] if depth else 4 * width,
                  patch_size=patch, image_size=patch * grid, layer_norm_eps=1e-6, qkv_bias=True,
                  hidden_act="gelu")
    return config, out


def openai_clip_visual_state_dict(tensors: dict[str, torch.Tensor], path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The image tower of OpenAI's CLIP (``visual.*`` of its archive) -> transformers
    ``CLIPVisionModelWithProjection``, in float32. Returns ``(CLIPVisionConfig kwargs, state dict)``; heads
    are width / 64 as in OpenAI's ``build_model``. The text tower is ignored."""
    state = {k.removeprefix("visual."): v.float() for k, v in tensors.items() if k.startswith("visual.")}
    if "proj" not in state:
        raise CheckpointError(f"{str(path)!r} holds no ViT image tower (no visual.proj)")
    depth = _layer_count(state, r"transformer\.resblocks\.(\d+)\..*")
    out = {
        "vision_model.embeddings.class_embedding": _take(state, "class_embedding", path),
        "vision_model.embeddings.patch_embedding.weight": _take(state, "conv1.weight", path),
        "vision_model.embeddings.position_embedding.weight": _take(state, "positional_embedding", path),
        "visual_projection.weight": _take(state, "proj", path).t().contiguous(),
    }
    for old, new in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        for part in ("weight", "bias"):
            out[f"vision_model.{new}.{part}"] = _take(state, f"{old}.{part}", path)
    for i in range(depth):
        src, dst = f"transformer.resblocks.{i}.", f"vision_model.encoder.layers.{i}."
        q, k, v = _take(state, f"{src}attn.in_proj_weight", path).chunk(3)
        qb, kb, vb = _take(state, f"{src}attn.in_proj_bias", path).chunk(3)
        out |= {f"{dst}self_attn.q_proj.weight": q, f"{dst}self_attn.k_proj.weight": k,
                f"{dst}self_attn.v_proj.weight": v, f"{dst}self_attn.q_proj.bias": qb,
                f"{dst}self_attn.k_proj.bias": kb, f"{dst}self_attn.v_proj.bias": vb}
        for old, new in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                         ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
            for part in ("weight", "bias"):
                out[f"{dst}{new}.{part}"] = _take(state, f"{src}{old}.{part}", path)
    _no_leftovers(state, path, "an OpenAI CLIP ViT image tower")
    width = out["vision_model.embeddings.class_embedding"].shape[0]
    patch = out["vision_model.embeddings.patch_embedding.weight"].shape[-1]
    grid = round((out["vision_model.embeddings.position_embedding.weight"].shape[0] - 1) ** 0.5)
    config = dict(hidden_size=width, num_hidden_layers=depth, num_attention_heads=max(1, width // 64),
                  intermediate_size=out["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0] if depth else 4 * width,
                  patch_size=patch, image_size=patch * grid, projection_dim=out["visual_projection.weight"].shape[0],
                  hidden_act="quick_gelu", layer_norm_eps=1e-5)
    return config, out


# raft-things.pth (princeton-vl/RAFT module names) -> torchvision.models.optical_flow.RAFT, as regexes.
_RAFT_RENAMES = (
    (r"([fc])net\.conv1\.", lambda m: f"{_ENCODER[m[1]]}.convnormrelu.0."),
    (r"cnet\.norm1\.", lambda m: "context_encoder.convnormrelu.1."),
    (r"([fc])net\.conv2\.", lambda m: f"{_ENCODER[m[1]]}.conv."),
    (r"([fc])net\.layer(\d)\.(\d)\.conv([12])\.",
     lambda m: f"{_ENCODER[m[1]]}.layer{m[2]}.{m[3]}.convnormrelu{m[4]}.0."),
    (r"([fc])net\.layer(\d)\.(\d)\.norm([12])\.",
     lambda m: f"{_ENCODER[m[1]]}.layer{m[2]}.{m[3]}.convnormrelu{m[4]}.1."),
    (r"([fc])net\.layer(\d)\.(\d)\.downsample\.([01])\.",
     lambda m: f"{_ENCODER[m[1]]}.layer{m[2]}.{m[3]}.downsample.{m[4]}."),
    (r"update_block\.encoder\.conv([cf])([12])\.",
     lambda m: f"update_block.motion_encoder.conv{'corr' if m[1] == 'c' else 'flow'}{m[2]}.0."),
    (r"update_block\.encoder\.conv\.", lambda m: "update_block.motion_encoder.conv.0."),
    (r"update_block\.gru\.conv([zrq])([12])\.", lambda m: f"update_block.recurrent_block.convgru{m[2]}.conv{m[1]}."),
    (r"update_block\.flow_head\.conv([12])\.", lambda m: f"update_block.flow_head.conv{m[1]}."),
    (r"update_block\.mask\.0\.", lambda m: "mask_predictor.convrelu.0."),
    (r"update_block\.mask\.2\.", lambda m: "mask_predictor.conv."),
)
_ENCODER = {"f": "feature_encoder", "c": "context_encoder"}


def raft_things_state_dict(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """raft-things.pth (the RAFT authors' module names, ``module.`` already stripped) -> torchvision's
    ``raft_large`` module names. Raises :class:`CheckpointError` naming the file on a key it does not know."""
    out = {}
    for key, value in state.items():
        # The authors' residual blocks register their downsampling norm twice (norm3 is downsample.1).
        if m := re.fullmatch(r"(.*\.layer\d\.\d\.)norm3\.(.*)", key):
            if (twin := state.get(f"{m[1]}downsample.1.{m[2]}")) is None or not torch.equal(twin, value):
                raise CheckpointError(f"{str(path)!r}: {key!r} differs from its alias downsample.1.{m[2]}")
            continue
        for pattern, rename in _RAFT_RENAMES:
            if m := re.match(pattern, key):
                out[rename(m) + key[m.end():]] = value
                break
        else:
            raise CheckpointError(f"{str(path)!r} is not a RAFT state dict: unexpected {key!r}")
    return out
