"""One-time conversion of VideoCrafter2's ``model.ckpt`` to ``model.safetensors`` (same keys, tensors only).

    python -m vboost.backbones.videocrafter2.convert /models/VideoCrafter2/model.ckpt [--trust-pickled-code]

The checkpoint is read with ``torch.load(weights_only=True)``, which executes nothing. A checkpoint that also
pickles other objects (a training run's callbacks or hyper-parameters) cannot be read that way; only with
``--trust-pickled-code``, and only for a file from a source you trust, is it read with ``weights_only=False``,
which runs the code its pickles name. The safetensors file beside it keeps the U-Net, autoencoder and text-encoder
tensors, and is what the backbone loads first from then on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import safetensors.torch
import torch

from vboost.backbones.videocrafter2._checkpoint import (
    TEXT_PREFIX,
    UNET_PREFIX,
    VAE_PREFIX,
    PickledCheckpointError,
    read_checkpoint,
)


def convert(checkpoint: str | Path, output: str | Path | None = None, *, trust_pickled_code: bool = False) -> Path:
    """Write the U-Net, autoencoder and text-encoder tensors of ``checkpoint`` to ``output`` (default
    ``model.safetensors`` beside it) and return its path.

    Raises :class:`PickledCheckpointError` when the file needs ``weights_only=False`` and ``trust_pickled_code``
    is not set, ``FileNotFoundError`` naming a missing file, ``ValueError`` when it holds no VideoCrafter state dict.
    """
    checkpoint = Path(checkpoint).expanduser()
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{str(checkpoint)!r} does not exist")
    output = checkpoint.with_name("model.safetensors") if output is None else Path(output).expanduser()
    try:
        state = read_checkpoint(checkpoint)
    except PickledCheckpointError:
        if not trust_pickled_code:
            raise PickledCheckpointError(
                f"{str(checkpoint)!r} pickles objects beyond tensors; reading it runs code named in the file. "
                "Only if you trust its source, run again with --trust-pickled-code"
            ) from None
        data = torch.load(checkpoint, map_location="cpu", weights_only=False)
        state = data.get("state_dict", data)
    tensors = {
        key: value.contiguous()
        for key, value in state.items()
        if isinstance(value, torch.Tensor) and key.startswith((UNET_PREFIX, VAE_PREFIX, TEXT_PREFIX))
    }
    if not tensors:
        raise ValueError(f"{str(checkpoint)!r} holds no {UNET_PREFIX}*, {VAE_PREFIX}* or {TEXT_PREFIX}* tensors")
    safetensors.torch.save_file(tensors, output)
    return output


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (2 with a one-line message on an error)."""
    parser = argparse.ArgumentParser(prog="python -m vboost.backbones.videocrafter2.convert", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="VideoCrafter2's model.ckpt")
    parser.add_argument("--output", help="where to write (default: model.safetensors beside the checkpoint)")
    parser.add_argument(
        "--trust-pickled-code",
        action="store_true",
        help="read a checkpoint that needs weights_only=False (runs code named in the file: trusted sources only)",
    )
    args = parser.parse_args(argv)
    try:
        output = convert(args.checkpoint, args.output, trust_pickled_code=args.trust_pickled_code)
    except (OSError, ValueError) as err:
        print(f"convert: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
