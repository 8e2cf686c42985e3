"""Reading clips from disk with their real frame rate."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

VIDEO_SUFFIXES = (".mp4", ".gif")


def read_video(path: str | Path) -> tuple[np.ndarray, float]:
    """Return ``(frames uint8 [T, H, W, 3] RGB, fps)`` of an mp4 or gif.

    Reads with imageio (ffmpeg for mp4, Pillow for gif: fps = 1000 / frame duration in ms), falling back
    to OpenCV. Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file when
    neither reader can decode it or it has no frame rate.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video {str(path)!r} does not exist")
    try:
        frames, fps = _read_imageio(path)
    except Exception as first:  # imageio raises many types depending on the plugin; OpenCV gets a try
        try:
            frames, fps = _read_opencv(path)
        except ValueError as second:
            raise ValueError(f"cannot read video {str(path)!r}: {first}; OpenCV: {second}") from None
    if frames.ndim == 3:  # greyscale gif
        frames = np.repeat(frames[..., None], 3, axis=-1)
    return np.ascontiguousarray(frames[..., :3]), fps


def _read_imageio(path: Path) -> tuple[np.ndarray, float]:
    import imageio.v3 as iio

    meta = iio.immeta(path)
    if meta.get("fps"):
        fps = float(meta["fps"])
    elif meta.get("duration"):
        fps = 1000.0 / float(meta["duration"])
    else:
        raise ValueError("no fps or frame duration in its metadata")
    return np.asarray(iio.imread(path, index=None), dtype=np.uint8), fps


def _read_opencv(path: Path) -> tuple[np.ndarray, float]:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    if not frames or not fps > 0:
        raise ValueError("no decodable frames" if not frames else f"no frame rate (got {fps})")
    return np.stack(frames), float(fps)


def find_videos(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and directories (searched recursively for .mp4/.gif, sorted) into video paths.

    Raises ``FileNotFoundError`` naming a path that does not exist and ``ValueError`` when nothing is found.
    """
    paths = list(paths)
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()))
        elif path.exists():
            found.append(path)
        else:
            raise FileNotFoundError(f"video or directory {str(path)!r} does not exist")
    if not found:
        raise ValueError(f"no .mp4 or .gif video found in {[str(p) for p in paths]}")
    return found
