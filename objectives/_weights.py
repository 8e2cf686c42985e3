"""Where the ``vbench`` tier finds its weights; checked before anything loads (no torch needed here).

Layout of ``weights_dir`` (nothing is ever downloaded):

=============================  ===========================================================================
``dino-vitb16/``               HF ``facebook/dino-vitb16`` (the weights of VBench's torch.hub
                               ``facebookresearch/dino`` ``dino_vitb16``, dino_vitbase16_pretrain.pth)
``clip-vit-base-patch32/``     HF ``openai/clip-vit-base-patch32`` (VBench: OpenAI CLIP ``ViT-B-32.pt``)
``clip-vit-large-patch14/``    HF ``openai/clip-vit-large-patch14`` (VBench: OpenAI CLIP ``ViT-L-14.pt``)
``sa_0_4_vit_l_14_linear.pth`` LAION aesthetic head, a ``Linear(768, 1)`` state dict
=============================  ===========================================================================
"""

from __future__ import annotations

from pathlib import Path

_SOURCES = {
    "dino-vitb16": "HF facebook/dino-vitb16 (VBench loads the same weights through torch.hub "
    "facebookresearch/dino 'dino_vitb16', https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/"
    "dino_vitbase16_pretrain.pth); save it with save_pretrained",
    "clip-vit-base-patch32": "HF openai/clip-vit-base-patch32 (VBench: OpenAI CLIP ViT-B-32.pt from "
    "openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt)",
    "clip-vit-large-patch14": "HF openai/clip-vit-large-patch14 (VBench: OpenAI CLIP ViT-L-14.pt from "
    "openaipublic.azureedge.net/clip/models/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt)",
    "sa_0_4_vit_l_14_linear.pth": "https://github.com/LAION-AI/aesthetic-predictor/blob/main/"
    "sa_0_4_vit_l_14_linear.pth?raw=true (VBench keeps it in pretrained/aesthetic_model/emb_reader/)",
}


class MissingWeightsError(FileNotFoundError):
    """A weight file or directory the ``vbench`` tier needs is not in ``weights_dir``; the message names
    the expected path and where VBench publishes it."""


REQUIRED = {
    "subject_consistency": ("dino-vitb16",),
    "background_consistency": ("clip-vit-base-patch32",),
    "aesthetic_quality": ("clip-vit-large-patch14", "sa_0_4_vit_l_14_linear.pth"),
}
"""What each dimension's ``vbench`` tier reads from ``weights_dir``."""


def check_weights(dimension: str, weights_dir: str | Path | None) -> None:
    """Raise :class:`MissingWeightsError` (or ``ValueError`` without a directory) before anything loads."""
    for name in REQUIRED[dimension]:
        weights_path(weights_dir, name)


def weights_path(weights_dir: str | Path | None, name: str) -> Path:
    """``weights_dir / name`` if present (a ``.pth`` file, or a directory with ``config.json``); raises
    ``ValueError`` without ``weights_dir`` and :class:`MissingWeightsError` naming the path otherwise."""
    if weights_dir is None:
        raise ValueError("backend 'vbench' needs weights_dir, a local directory holding the networks' weights")
    path = Path(weights_dir).expanduser() / name
    present = path.is_file() if name.endswith(".pth") else (path / "config.json").is_file()
    if not present:
        raise MissingWeightsError(f"missing {str(path)!r}: get {_SOURCES[name]}")
    return path
