"""The ``vbench`` tier: VBench 0.1.5's protocols with its own networks and weight files.

One factory per dimension, ``factory(weights_dir, device) -> score(frames, fps) -> {suffix: value}``; the
factory loads its networks once (``_networks.py``), the score function runs them on one clip. Frame
sampling, transforms and aggregation are VBench's (``vbench/<dimension>.py``, ``vbench/utils.py``); the
rules shared with the proxy tier are in ``_rules.py``. Frames go through the networks in batches, which
changes only the speed (and float rounding, far below 1e-4).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from . import _networks, _preprocess
from ._rules import (
    absdiff_score,
    dynamic_count,
    dynamic_interval,
    dynamic_threshold,
    is_dynamic,
    pair_consistency,
    top5_mean,
)
from ._weights import CLIP_B32, CLIP_L14

ScoreFn = Callable[[np.ndarray, float], "dict[str, float]"]

FRAME_BATCH = 16  # frames per DINO/CLIP forward
PAIR_BATCH = 4  # frame pairs per RAFT/AMT forward (RAFT's correlation volume grows with (H*W)^2)
RAFT_ITERS = 20


@torch.inference_mode()
def _embed(forward: Callable[[torch.Tensor], torch.Tensor], pixels: torch.Tensor, dtype: torch.dtype,
           device: str) -> torch.Tensor:
    """``forward`` over frame batches (moved to ``device`` in ``dtype``); L2-normalised features, on the CPU."""
    feats = [forward(chunk.to(device, dtype)).cpu() for chunk in pixels.split(FRAME_BATCH)]
    return F.normalize(torch.cat(feats), dim=-1, p=2)


def _consistency(features: torch.Tensor) -> dict[str, float]:
    total, pairs = pair_consistency(features.double().numpy())
    return {"": total / pairs, "/sum": total, "/pairs": float(pairs)}


def subject_consistency(weights_dir: str, device: str) -> ScoreFn:
    """VBench ``subject_consistency``: DINO ViT-B/16 CLS token per frame (``dino_transform(224)``), the pair
    rule of ``_rules.pair_consistency``; records the per-video mean and the parts of the pair-weighted mean."""
    model = _networks.dino(weights_dir, device)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return model(pixel_values=x, interpolate_pos_encoding=True).last_hidden_state[:, 0]

    def score(frames: np.ndarray, fps: float) -> dict[str, float]:
        pixels = _preprocess.dino(_preprocess.as_tensor(frames))
        return _consistency(_embed(forward, pixels, torch.float32, device).float())

    return score


def _clip_encoder(file_name: str, weights_dir: str, device: str) -> tuple[Callable, torch.dtype]:
    """``encode_image`` of one of OpenAI's CLIP archives, and the dtype its inputs take on ``device``."""
    model = _networks.clip_vision(weights_dir, file_name, device)

    def encode_image(x: torch.Tensor) -> torch.Tensor:
        return model(pixel_values=x).image_embeds

    return encode_image, torch.float16 if _networks.clip_uses_half(device) else torch.float32


def background_consistency(weights_dir: str, device: str) -> ScoreFn:
    """VBench ``background_consistency``: CLIP ViT-B/32 ``encode_image`` per frame (``clip_transform(224)``),
    normalised in the model's precision, then the pair rule."""
    forward, dtype = _clip_encoder(CLIP_B32.path, weights_dir, device)

    def score(frames: np.ndarray, fps: float) -> dict[str, float]:
        pixels = _preprocess.clip(_preprocess.as_tensor(frames))
        return _consistency(_embed(forward, pixels, dtype, device).float())

    return score


def aesthetic_quality(weights_dir: str, device: str) -> ScoreFn:
    """VBench ``aesthetic_quality``: CLIP ViT-L/14 ``encode_image`` in float32, L2-normalised, the LAION
    linear head, ``/10``, mean over frames."""
    forward, dtype = _clip_encoder(CLIP_L14.path, weights_dir, device)
    head = _networks.aesthetic_head(weights_dir, device)

    def score(frames: np.ndarray, fps: float) -> dict[str, float]:
        pixels = _preprocess.clip(_preprocess.as_tensor(frames))
        feats = _embed(lambda x: forward(x).float(), pixels, dtype, device)  # normalised in float32, as VBench
        with torch.inference_mode():
            per_frame = head(feats.to(device)).squeeze(-1).cpu() / 10
        return {"": torch.mean(per_frame).item()}

    return score


def imaging_quality(weights_dir: str, device: str) -> ScoreFn:
    """VBench ``imaging_quality``: MUSIQ-SPAQ per frame on frames shrunk to a longer side of 512 when
    larger ('longer' mode), mean MOS over frames, ``/100``."""
    model = _networks.musiq(weights_dir, device)

    def score(frames: np.ndarray, fps: float) -> dict[str, float]:
        images = _preprocess.musiq(_preprocess.as_tensor(frames))
        with torch.inference_mode():
            total = sum(float(model(image[None].to(device))) for image in images)
        return {"": total / len(images) / 100.0}

    return score


def dynamic_degree(weights_dir: str, device: str) -> ScoreFn:
    """VBench ``dynamic_degree``: RAFT-large (20 updates) between consecutive kept frames (every
    ``round(fps/8)``-th), replicate-padded to a multiple of 8; pair score = mean of the top 5% flow
    magnitudes of the padded frame; dynamic iff ``round(4N/16)`` pairs exceed ``6 * min(H, W) / 256``.
    Records ``""`` 1.0/0.0 and ``"_magnitude"``, the mean pair score over the threshold (0.0 with no pair)."""
    model = _networks.raft(weights_dir, device)

    def score(frames: np.ndarray, fps: float) -> dict[str, float]:
        kept = frames[:: dynamic_interval(fps)]
        threshold = dynamic_threshold(*frames.shape[1:3])
        x = _preprocess.pad_replicate(_preprocess.as_tensor(kept).to(device), 8)
        x = 2 * (x / 255.0) - 1.0  # RAFT's own input scaling
        scores = []
        with torch.inference_mode():
            for start in range(0, len(kept) - 1, PAIR_BATCH):
                stop = min(start + PAIR_BATCH, len(kept) - 1)
                flow = model(x[start:stop], x[start + 1 : stop + 1], num_flow_updates=RAFT_ITERS)[-1]
                magnitude = torch.sqrt(flow[:, 0] ** 2 + flow[:, 1] ** 2).cpu().numpy()
                scores.extend(top5_mean(m) for m in magnitude)
        return {
            "": float(is_dynamic(scores, threshold, dynamic_count(len(kept)))),
            "_magnitude": float(np.mean(scores)) / threshold if scores else 0.0,
        }

    return score


def motion_smoothness(weights_dir: str, device: str) -> ScoreFn:
    """VBench ``motion_smoothness``: AMT-S interpolates the middle of each pair of consecutive even frames
    (padded to a multiple of 16), rounded down to uint8 as VBench's ``tensor2img``; each is compared with
    the real odd frame between them: ``(255 - mean |diff|) / 255``."""
    model = _networks.amt_s(weights_dir, device)

    def score(frames: np.ndarray, fps: float) -> dict[str, float]:
        even, odd = frames[0::2], frames[1::2]
        h, w = frames.shape[1:3]
        x = _preprocess.pad_replicate(_preprocess.as_tensor(even).to(device) / 255.0, 16)
        middles = []
        with torch.inference_mode():
            for start in range(0, len(even) - 1, PAIR_BATCH):
                stop = min(start + PAIR_BATCH, len(even) - 1)
                embt = torch.full((stop - start, 1, 1, 1), 0.5, device=device)
                pred = _preprocess.unpad(model(x[start:stop], x[start + 1 : stop + 1], embt), h, w)
                middles.extend((pred * 255.0).permute(0, 2, 3, 1).cpu().numpy().clip(0, 255).astype(np.uint8))
        diffs = [np.mean(cv2.absdiff(real, middle)) for real, middle in zip(odd, middles)]
        return {"": absdiff_score(float(np.mean(np.array(diffs))))}

    return score
