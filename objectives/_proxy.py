"""Weight-free stand-ins for the dimensions whose VBench protocol needs a network.

These are NOT VBench numbers: they are recorded as ``proxy/<dimension>`` and never under a VBench name.
Where VBench's rule does not depend on the network (frame sampling, thresholds, pair weighting, the
``(255 - absdiff) / 255`` form) the proxy uses that rule unchanged (``_rules.py``); only the network is
replaced. What each measures and how it departs from VBench is in its docstring and in README.md.
"""

from __future__ import annotations

import cv2
import numpy as np

from ._rules import (
    absdiff_score,
    dynamic_count,
    dynamic_interval,
    dynamic_threshold,
    is_dynamic,
    pad_to_multiple_of_8,
    pair_consistency,
    top5_mean,
)

_FEATURE_SIDE = 128  # consistency features are computed on a 128x128 thumbnail: cheap, and motion-tolerant
_HOG_CELLS, _HOG_BINS = 8, 9
_COLOUR_LEVELS = 8  # per channel, so 512 joint RGB bins
_FLOW_SIDE = 256


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def _flow_estimator() -> cv2.DISOpticalFlow:
    # DIS (medium preset) is about 15x faster than Farneback and measures uniform shifts to within ~0.1 px;
    # one instance per video because it keeps state between calls.
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)


def _flow(a: np.ndarray, b: np.ndarray, dis: cv2.DISOpticalFlow) -> np.ndarray:
    """Dense flow a->b (grey uint8), in pixels of a's resolution, ``[H, W, 2]``.

    Frames whose shorter side exceeds 256 are shrunk to 256 for the estimate and the flow is scaled back,
    as RAFT itself estimates at 1/8 resolution and upsamples; this is 4x cheaper at 512 px and still
    measures shifts up to ~1/16 of the frame within ~0.2 px.
    """
    h, w = a.shape
    scale = _FLOW_SIDE / min(h, w)
    if scale >= 1.0:
        return dis.calc(a, b, None)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = dis.calc(cv2.resize(a, size, interpolation=cv2.INTER_AREA), cv2.resize(b, size, interpolation=cv2.INTER_AREA), None)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) / np.array([size[0] / w, size[1] / h], np.float32)


def dynamic_degree(frames: np.ndarray, fps: float) -> dict[str, float]:
    """VBench's dynamic-degree rule with DIS optical flow (OpenCV) in place of RAFT-large.

    Unchanged from VBench: every ``max(1, round(fps/8))``-th frame is kept (``N`` kept frames),
    ``thres = 6 * min(H, W) / 256``, ``count = round(4 * N / 16)``, frames replicate-padded to a multiple
    of 8, pair score = mean of the top 5% flow magnitudes of the padded frame, dynamic iff at least
    ``count`` pairs exceed ``thres``. Departs: the flow comes from DIS on the grey image, which finds the
    same displacement as RAFT on textured motion but is less reliable on large (> ~1/8 of the frame) or
    textureless motion. Records: ``""`` 1.0/0.0 (dynamic or not) and ``"_magnitude"``, the mean over
    kept pairs of pair score / ``thres`` (above 1 means the typical pair moves; 0.0 with no pair).
    """
    kept = frames[:: dynamic_interval(fps)]
    threshold = dynamic_threshold(*frames.shape[1:3])
    grays = [pad_to_multiple_of_8(_gray(f)) for f in kept]
    dis = _flow_estimator()
    scores = []
    for a, b in zip(grays[:-1], grays[1:]):
        flow = _flow(a, b, dis)
        scores.append(top5_mean(cv2.magnitude(flow[..., 0], flow[..., 1])))
    return {
        "": float(is_dynamic(scores, threshold, dynamic_count(len(kept)))),
        "_magnitude": float(np.mean(scores)) / threshold if scores else 0.0,
    }


def _hog(frame: np.ndarray) -> np.ndarray:
    """Gradient-orientation histograms (9 unsigned bins, magnitude-weighted) on an 8x8 grid, mean-centred."""
    g = cv2.resize(_gray(frame), (_FEATURE_SIDE, _FEATURE_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
    mag, ang = cv2.cartToPolar(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1), angleInDegrees=True)
    bins = np.minimum((ang % 180.0) * (_HOG_BINS / 180.0), _HOG_BINS - 1).astype(np.int64)
    cell = np.arange(_FEATURE_SIDE) * _HOG_CELLS // _FEATURE_SIDE
    index = (cell[:, None] * _HOG_CELLS + cell[None, :]) * _HOG_BINS + bins
    hist = np.bincount(index.ravel(), weights=mag.ravel(), minlength=_HOG_CELLS**2 * _HOG_BINS)
    return hist - hist.mean()  # centring turns the cosine into a correlation, so unrelated frames score ~0


def subject_consistency(frames: np.ndarray, fps: float) -> dict[str, float]:
    """VBench's pair rule on gradient-orientation histograms (HOG-like) instead of DINO ViT-B/16 CLS features.

    Measures whether the shapes and their layout persist (a 128x128 thumbnail, 16-px cells, so shifts of a
    few percent of the frame barely register). Departs: DINO is semantic and ignores appearance changes of
    the same object that this feature sees, and vice versa a different object with similar edges scores high
    here. Identical frames give 1, a cut to an unrelated scene drops the cut frames towards 0.
    """
    total, pairs = pair_consistency(np.stack([_hog(f) for f in frames]))
    return {"": total / pairs, "/sum": total, "/pairs": float(pairs)}


def _colour_histogram(frame: np.ndarray) -> np.ndarray:
    """Square root of the normalised 8x8x8 joint RGB histogram: unit-norm, so the cosine of two of them is
    the Bhattacharyya coefficient of the colour distributions, in [0, 1]."""
    small = cv2.resize(frame, (_FEATURE_SIDE, _FEATURE_SIDE), interpolation=cv2.INTER_AREA)
    q = (small.astype(np.int64) * _COLOUR_LEVELS) // 256
    index = (q[..., 0] * _COLOUR_LEVELS + q[..., 1]) * _COLOUR_LEVELS + q[..., 2]
    hist = np.bincount(index.ravel(), minlength=_COLOUR_LEVELS**3)
    return np.sqrt(hist / hist.sum())


def background_consistency(frames: np.ndarray, fps: float) -> dict[str, float]:
    """VBench's pair rule on global colour distributions instead of CLIP ViT-B/32 image features.

    Measures whether the scene's colours persist, independent of where things are (translation-invariant).
    Departs: CLIP encodes scene semantics; a recoloured but identical scene drops here and not in CLIP, and
    two different scenes with the same palette score high here. Identical frames give 1, a cut to a scene
    of other colours drops the cut frames towards 0.
    """
    total, pairs = pair_consistency(np.stack([_colour_histogram(f) for f in frames]))
    return {"": total / pairs, "/sum": total, "/pairs": float(pairs)}


def _midpoint(a: np.ndarray, b: np.ndarray, grid: np.ndarray, dis: cv2.DISOpticalFlow) -> np.ndarray:
    """Motion-compensated middle frame: flow a->b at each pixel, sample a half a step back and b half a step
    forward, average. Uses the flow at x as the motion through x (no occlusion handling)."""
    half = 0.5 * _flow(_gray(a), _gray(b), dis)
    back = cv2.remap(a, grid - half, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    forward = cv2.remap(b, grid + half, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.addWeighted(back, 0.5, forward, 0.5, 0.0)


def motion_smoothness(frames: np.ndarray, fps: float) -> dict[str, float]:
    """VBench's protocol with a DIS-flow midpoint interpolator in place of AMT-S.

    Unchanged: the even frames are interpolated pairwise, each middle is compared with the real odd frame
    between them, score ``(255 - mean absdiff) / 255`` (an unpaired last odd frame is skipped, as in VBench).
    Departs: one DIS flow and a half-step warp cannot model occlusions or curved motion the way AMT does,
    so the score is lower than AMT's near moving edges. Static clips give 1; brightness flicker between even
    and odd frames costs exactly its amplitude, as in VBench.
    """
    even, odd = frames[0::2], frames[1::2]
    h, w = frames.shape[1:3]
    grid = np.dstack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)))
    dis = _flow_estimator()
    diffs = [np.mean(cv2.absdiff(_midpoint(a, b, grid, dis), real)) for a, b, real in zip(even[:-1], even[1:], odd)]
    return {"": absdiff_score(float(np.mean(diffs)))}


def _shrink(frame: np.ndarray, longer: int) -> np.ndarray:
    h, w = frame.shape[:2]
    if max(h, w) <= longer:
        return frame
    scale = longer / max(h, w)
    return cv2.resize(frame, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)


def _aesthetic(frame: np.ndarray) -> float:
    rgb = _shrink(frame, 256).astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    colourfulness = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    luma = (0.299 * r + 0.587 * g + 0.114 * b) / 255.0
    contrast, exposure = luma.std(), 1.0 - 2.0 * abs(luma.mean() - 0.5)
    # Each term maps to [0, 1]; 33 is Hasler & Suesstrunk's "moderately colourful", 0.2 a typical photo's
    # luma standard deviation, so an ordinary well-exposed photo lands near 0.5 on each.
    return float((colourfulness / (colourfulness + 33.0) + contrast / (contrast + 0.2) + exposure) / 3.0)


def aesthetic_quality(frames: np.ndarray, fps: float) -> dict[str, float]:
    """NOT the LAION aesthetic predictor: mean over frames of (colourfulness + contrast + exposure) / 3.

    Colourfulness is Hasler & Suesstrunk's (2003) opponent-colour statistic, contrast the RMS contrast of
    luma, exposure ``1 - 2|mean luma - 0.5|``, each mapped to [0, 1]. It rewards vivid, contrasted,
    well-exposed frames, which the LAION head also tends to; it knows nothing of composition or content.
    """
    return {"": float(np.mean([_aesthetic(f) for f in frames]))}


_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


def _imaging(frame: np.ndarray) -> float:
    luma = _gray(_shrink(frame, 512)).astype(np.float32)
    gradient = np.mean(cv2.magnitude(cv2.Sobel(luma, cv2.CV_32F, 1, 0), cv2.Sobel(luma, cv2.CV_32F, 0, 1))) / 8.0
    # Immerkaer (1996) fast noise estimate: this kernel cancels smooth image structure, leaving the noise.
    noise = np.sqrt(np.pi / 2.0) * np.mean(np.abs(cv2.filter2D(luma, -1, _IMMERKAER)[1:-1, 1:-1])) / 6.0
    # Sharpness saturates at a mean slope of a few grey levels per pixel; noise of sigma 5 halves the score.
    return float(gradient / (gradient + 2.0) / (1.0 + (noise / 5.0) ** 2))


def imaging_quality(frames: np.ndarray, fps: float) -> dict[str, float]:
    """NOT MUSIQ: mean over frames of sharpness x noise-penalty, in [0, 1].

    Frames whose longer side exceeds 512 are shrunk to 512 first (VBench's 'longer' preprocessing).
    Sharpness is the mean gradient magnitude (grey levels per pixel) mapped by ``g / (g + 2)``; the noise
    penalty is ``1 / (1 + (sigma / 5)^2)`` with sigma from Immerkaer's estimator. It falls with blur and
    with noise, the two distortions MUSIQ is most sensitive to; it does not see compression artefacts,
    and fine texture raises its noise estimate.
    """
    return {"": float(np.mean([_imaging(f) for f in frames]))}
