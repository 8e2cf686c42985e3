"""The released checkpoint format of Open-Sora v1.2: a directory with ``config.json`` and ``model.safetensors``.

``hpcai-tech/OpenSora-STDiT-v3`` and ``hpcai-tech/OpenSora-VAE-v1.2`` are saved this way by the original code
(transformers' ``save_pretrained`` of its ``STDiT3`` and ``VideoAutoencoderPipeline``); tensor names are the
module paths of those classes, which the ports keep. Models are built without initialising their weights and
take the file's tensors (copied into the requested dtype). Nothing pickled is ever read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL
from safetensors import safe_open
from safetensors.torch import save_file

from vboost.backbones.opensora._stdit3 import STDiT3
from vboost.backbones.opensora._vae import SDXL_VAE_CONFIG, TEMPORAL_VAE_SD_CONFIG, OpenSoraVAE

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
SDXL_VAE_ID = "PixArt-alpha/pixart_sigma_sdxlvae_T5_diffusers"
_PICKLED = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")

# STDiT3Config keys the forward does not depend on (training switches, kernels with the same math).
_STDIT3_RELEASE_ONLY = {
    "input_size": [None, None, None],
    "class_dropout_prob": 0.1,
    "drop_path": 0.0,
    "enable_flash_attn": False,
    "enable_layernorm_kernel": False,
    "enable_sequence_parallelism": False,
    "only_train_temporal": False,
    "freeze_y_embedder": True,
    "skip_y_embedder": False,
}
_STDIT3_KEYS = (
    "input_sq_size",
    "in_channels",
    "patch_size",
    "hidden_size",
    "depth",
    "num_heads",
    "mlp_ratio",
    "pred_sigma",
    "caption_channels",
    "model_max_length",
    "qk_norm",
)


def read_config(directory: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a released directory; raises ``FileNotFoundError`` naming the missing file."""
    path = Path(directory).expanduser() / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} not found: {str(directory)!r} is not a released Open-Sora model directory"
        )
    return json.loads(path.read_text())


def read_weights(directory: str | Path, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Every tensor of ``model.safetensors``, each copied to fresh memory in ``dtype``.

    Raises ``FileNotFoundError`` naming the missing file, and naming any pickled checkpoint found instead (it is
    never unpickled: convert it to safetensors first).
    """
    directory = Path(directory).expanduser()
    path = directory / WEIGHTS_FILE
    if not path.is_file():
        pickled = sorted(p.name for pattern in _PICKLED for p in directory.glob(pattern))
        found = (
            f"; found {', '.join(pickled)}, which would need unpickling: convert it to {WEIGHTS_FILE}"
            if pickled
            else ""
        )
        raise FileNotFoundError(f"{str(path)!r} not found{found}")
    with safe_open(str(path), framework="pt") as file:
        return {name: file.get_tensor(name).to(dtype=dtype, copy=True) for name in file.keys()}


def _load_into(module: torch.nn.Module, directory: Path, dtype: torch.dtype) -> torch.nn.Module:
    state = read_weights(directory, dtype)
    expected = module.state_dict().keys()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{str(directory / WEIGHTS_FILE)!r} does not match the model its config describes: "
            f"missing {missing[:5]} ({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)})"
        )
    module.load_state_dict(state, strict=True, assign=True)
    return module.to(dtype).eval()  # buffers made at construction (not in the file) take the dtype too


def load_stdit3(directory: str | Path, dtype: torch.dtype = torch.float32) -> STDiT3:
    """STDiT3 from a released directory (``hpcai-tech/OpenSora-STDiT-v3``).

    Raises ``FileNotFoundError`` for a missing file, and ``ValueError`` naming the key when the config is not an
    STDiT3 one, lacks a key, asks for what the port does not compute (``skip_y_embedder``), or the tensors differ
    from the modules the config describes.
    """
    directory = Path(directory).expanduser()
    config = read_config(directory)
    if config.get("model_type") != "STDiT3":
        raise ValueError(
            f"{str(directory / CONFIG_FILE)!r}: model_type={config.get('model_type')!r}, expected 'STDiT3'"
        )
    if config.get("skip_y_embedder"):
        raise ValueError(
            f"{str(directory / CONFIG_FILE)!r}: skip_y_embedder=true (pre-embedded captions) is not supported"
        )
    missing = [key for key in _STDIT3_KEYS if key not in config]
    if missing:
        raise ValueError(f"{str(directory / CONFIG_FILE)!r} lacks {', '.join(missing)}")
    with init_empty_weights(include_buffers=False):  # buffers outside the file stay real
        model = STDiT3(**{key: config[key] for key in _STDIT3_KEYS})
    return _load_into(model, directory, dtype)


def save_stdit3(model: STDiT3, directory: str | Path) -> None:
    """Write ``model`` as the original code saves an STDiT3: its config keys and ``model.safetensors``."""
    config = {key: model.config[key] for key in _STDIT3_KEYS}
    config["patch_size"] = list(config["patch_size"])
    _write(directory, {"architectures": ["STDiT3"], "model_type": "STDiT3", **_STDIT3_RELEASE_ONLY, **config}, model)


def load_vae(directory: str | Path, dtype: torch.dtype = torch.float32) -> OpenSoraVAE:
    """The video VAE from a released directory (``hpcai-tech/OpenSora-VAE-v1.2``).

    The spatial VAE's architecture comes from ``vae_2d.from_pretrained``: the SDXL VAE of the release, or a local
    diffusers ``AutoencoderKL`` directory (relative paths are relative to ``directory``) whose ``config.json`` is
    read (its weights are not: the pipeline's file holds them all). Raises ``FileNotFoundError`` for a missing
    file and ``ValueError`` naming the key of a configuration the port does not compute.
    """
    directory = Path(directory).expanduser()
    config = read_config(directory)
    where = str(directory / CONFIG_FILE)
    if config.get("model_type") != "VideoAutoencoderPipeline":
        raise ValueError(f"{where!r}: model_type={config.get('model_type')!r}, expected 'VideoAutoencoderPipeline'")
    if config.get("cal_loss"):
        raise ValueError(f"{where!r}: cal_loss=true (training outputs) is not supported")
    if not isinstance(config.get("micro_frame_size"), int):
        raise ValueError(
            f"{where!r}: micro_frame_size={config.get('micro_frame_size')!r}; the port needs a frame count"
        )
    spatial = config.get("vae_2d") or {}
    if spatial.get("type") != "VideoAutoencoderKL":
        raise ValueError(f"{where!r}: vae_2d.type={spatial.get('type')!r}, expected 'VideoAutoencoderKL'")
    with init_empty_weights(include_buffers=False):  # buffers outside the file stay real
        vae = OpenSoraVAE(
            spatial_config=_spatial_config(spatial, directory, where),
            temporal_config=_temporal_config(config.get("vae_temporal") or {}, where),
            shift=config["shift"],
            scale=config["scale"],
            micro_frame_size=config["micro_frame_size"],
            micro_batch_size=spatial.get("micro_batch_size"),
        )
    return _load_into(vae, directory, dtype)


def save_vae(vae: OpenSoraVAE, directory: str | Path) -> None:
    """Write ``vae`` as the original saves a ``VideoAutoencoderPipeline``; a spatial VAE other than the SDXL one
    gets its diffusers config in ``spatial_vae/`` beside it, which ``vae_2d.from_pretrained`` names."""
    directory = Path(directory).expanduser()
    spatial_config = dict(vae.spatial_vae.module.config)
    if all(_same(spatial_config.get(key), value) for key, value in SDXL_VAE_CONFIG.items()):
        spatial_source = SDXL_VAE_ID
    else:
        spatial_source = "spatial_vae"
        vae.spatial_vae.module.save_config(directory / spatial_source)
    temporal = vae.temporal_vae.config
    if all(_same(temporal[key], value) for key, value in TEMPORAL_VAE_SD_CONFIG.items()):
        temporal_entry = {"type": "VAE_Temporal_SD", "from_pretrained": None}
    else:
        temporal_entry = {
            "type": "VAE_Temporal",
            "from_pretrained": None,
            **{k: _plain(v) for k, v in temporal.items()},
        }
    config = {
        "architectures": ["VideoAutoencoderPipeline"],
        "model_type": "VideoAutoencoderPipeline",
        "cal_loss": False,
        "freeze_vae_2d": False,
        "from_pretrained": None,
        "micro_frame_size": vae.micro_frame_size,
        "scale": vae.scale.flatten().tolist(),
        "shift": vae.shift.flatten().tolist(),
        "vae_2d": {
            "type": "VideoAutoencoderKL",
            "from_pretrained": spatial_source,
            "subfolder": None,
            "micro_batch_size": vae.spatial_vae.micro_batch_size,
            "local_files_only": False,
        },
        "vae_temporal": temporal_entry,
    }
    _write(directory, config, vae)


def _spatial_config(entry: dict[str, Any], directory: Path, where: str) -> dict[str, Any]:
    source = entry.get("from_pretrained")
    if source == SDXL_VAE_ID:
        return dict(SDXL_VAE_CONFIG)
    if not source:
        raise ValueError(f"{where!r}: vae_2d.from_pretrained is empty; name the spatial VAE")
    path = Path(source).expanduser()
    path = (path if path.is_absolute() else directory / path) / (entry.get("subfolder") or "")
    if not (path / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{where!r}: vae_2d.from_pretrained={source!r} has no {str(path / CONFIG_FILE)!r}")
    return dict(AutoencoderKL.load_config(path))


def _temporal_config(entry: dict[str, Any], where: str) -> dict[str, Any]:
    kind = entry.get("type")
    kwargs = {key: value for key, value in entry.items() if key not in ("type", "from_pretrained")}
    if kind == "VAE_Temporal_SD" and not kwargs:
        return dict(TEMPORAL_VAE_SD_CONFIG)
    if kind == "VAE_Temporal":
        if kwargs.pop("activation_fn", "swish") != "swish":
            raise ValueError(
                f"{where!r}: vae_temporal.activation_fn={entry['activation_fn']!r}; only 'swish' is ported"
            )
        return kwargs
    raise ValueError(
        f"{where!r}: vae_temporal={entry!r}; expected type VAE_Temporal_SD or VAE_Temporal with its arguments"
    )


def _write(directory: str | Path, config: dict[str, Any], module: torch.nn.Module) -> None:
    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    weights = {name: tensor.detach().contiguous().cpu() for name, tensor in module.state_dict().items()}
    dtypes = {str(tensor.dtype).removeprefix("torch.") for tensor in weights.values()}
    (directory / CONFIG_FILE).write_text(
        json.dumps({**config, "torch_dtype": "/".join(sorted(dtypes))}, indent=2) + "\n"
    )
    save_file(weights, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _same(a: Any, b: Any) -> bool:
    return _plain(a) == _plain(b)
