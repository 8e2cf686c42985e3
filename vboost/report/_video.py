"""Side-by-side clips (baseline | paper default | best) with a label above each panel.

Layout: every panel keeps the first panel's size ``H x W`` (others are resized to it with area
interpolation); a black band of ``label_band(H)`` rows with the white label sits above each panel, so a frame
is ``[band + H, n * W, 3]`` and panel ``i`` fills rows ``band:``, columns ``i*W:(i+1)*W``, pixel for pixel.
Time: the output has as many frames as the longest panel; a shorter panel holds its last frame (padding,
never trimming, so no generated frame is hidden).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import imageio.v2 as imageio
import numpy as np


def label_band(height: int) -> int:
    """Rows of the label band above panels of ``height`` rows: 12% of it, at least 14, rounded up to even."""
    band = max(14, round(0.12 * height))
    return band + band % 2


def side_by_side(panels: Sequence[np.ndarray], labels: Sequence[str]) -> np.ndarray:
    """Stack uint8 clips ``[T_i, H_i, W_i, 3]`` left to right under their labels; returns ``[T, band+H, n*W, 3]``.

    Raises ``ValueError`` naming the offending panel when it is not a uint8 RGB clip, or when the
    number of labels differs from the number of panels.
    """
    if len(panels) != len(labels) or not panels:
        raise ValueError(f"need one label per panel; got {len(panels)} panels and {len(labels)} labels")
    for label, clip in zip(labels, panels):
        if clip.dtype != np.uint8 or clip.ndim != 4 or clip.shape[-1] != 3 or clip.shape[0] == 0:
            raise ValueError(f"panel {label!r} must be uint8 [T, H, W, 3] with T >= 1; got {clip.dtype} {clip.shape}")
    height, width = panels[0].shape[1:3]
    num_frames = max(clip.shape[0] for clip in panels)
    band = label_band(height)
    # One text size for every label (the largest that fits the longest), so no panel's label dominates.
    scale = min(_fitting_scale(label, band, width) for label in labels)
    out = np.zeros((num_frames, band + height, width * len(panels), 3), np.uint8)
    for i, (label, clip) in enumerate(zip(labels, panels)):
        if clip.shape[1:3] != (height, width):
            clip = np.stack([cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA) for frame in clip])
        padded = np.concatenate([clip, np.repeat(clip[-1:], num_frames - clip.shape[0], axis=0)])
        out[:, band:, i * width:(i + 1) * width] = padded
        out[:, :band, i * width:(i + 1) * width] = _label_image(label, band, width, scale)
    return out


def _fitting_scale(text: str, rows: int, cols: int) -> float:
    """The font scale for ``text`` in a band of ``rows`` x ``cols``: a third of the band high, shrunk to fit."""
    scale = rows / 32
    text_w = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0]
    return scale * min(1.0, (cols - 4) / text_w)


def _label_image(text: str, rows: int, cols: int, scale: float) -> np.ndarray:
    band = np.zeros((rows, cols, 3), np.uint8)
    (text_w, text_h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    origin = (max(2, (cols - text_w) // 2), (rows + text_h) // 2)
    cv2.putText(band, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return band


def read_video(path: str | os.PathLike) -> np.ndarray:
    """All frames of a video file as uint8 ``[T, H, W, 3]``."""
    return np.stack([frame[..., :3] for frame in imageio.mimread(path, memtest=False)])


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: float) -> Path:
    """H.264 mp4 at high quality; an odd height or width gets one black row/column (yuv420p needs even sizes)."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
    imageio.mimwrite(path, list(frames), fps=fps, codec="libx264", macro_block_size=1, ffmpeg_params=["-crf", "10"])
    return Path(path)


def write_gif(path: str | os.PathLike, frames: np.ndarray, fps: float) -> Path:
    """Looping GIF (palette-quantised, so colours are approximate)."""
    imageio.mimwrite(path, list(frames), format="GIF", duration=1000.0 / fps, loop=0)
    return Path(path)
