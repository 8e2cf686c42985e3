"""objectives/ vbench tier: loading tiny random-weight networks from a local directory, VBench's
preprocessing against an independent numpy resampler, and the scores against a hand-rolled pipeline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPModel, ViTConfig, ViTModel

import objectives
from objectives import _vbench

IMAGENET = (np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]))
CLIP = (np.array([0.48145466, 0.4578275, 0.40821073]), np.array([0.26862954, 0.26130258, 0.27577711]))


def _tiny_vit(layer_norm_eps: float = 1e-6) -> ViTModel:
    config = ViTConfig(image_size=224, patch_size=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, layer_norm_eps=layer_norm_eps)
    return ViTModel(config, add_pooling_layer=False)


def _tiny_clip(patch_size: int) -> CLIPModel:
    tiny = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    config = CLIPConfig(text_config=dict(tiny, vocab_size=50, max_position_embeddings=8),
                        vision_config=dict(tiny, image_size=224, patch_size=patch_size), projection_dim=8)
    return CLIPModel(config)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("weights")
    _tiny_vit().save_pretrained(root / "dino-vitb16")
    _tiny_clip(32).save_pretrained(root / "clip-vit-base-patch32")
    _tiny_clip(14).save_pretrained(root / "clip-vit-large-patch14")
    torch.save(torch.nn.Linear(8, 1).state_dict(), root / "sa_0_4_vit_l_14_linear.pth")
    return root


def _frames(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


# --- an independent resampler: PyTorch's documented half-pixel, edge-clamped kernels, in numpy ----------

def _keys(x: np.ndarray, a: float = -0.75) -> np.ndarray:
    x = np.abs(x)
    return np.where(x <= 1, (a + 2) * x**3 - (a + 3) * x**2 + 1,
                    np.where(x < 2, a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a, 0.0))


def _resample_matrix(n_in: int, n_out: int, cubic: bool) -> np.ndarray:
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    base = np.floor(src).astype(int)
    taps = np.arange(-1, 3) if cubic else np.arange(0, 2)
    m = np.zeros((n_out, n_in))
    for tap in taps:
        idx = base + tap
        weight = _keys(src - idx) if cubic else np.maximum(0.0, 1 - np.abs(src - idx))
        np.add.at(m, (np.arange(n_out), np.clip(idx, 0, n_in - 1)), weight)
    return m


def _np_resize(frames: np.ndarray, h: int, w: int, cubic: bool) -> np.ndarray:
    rows, cols = _resample_matrix(frames.shape[1], h, cubic), _resample_matrix(frames.shape[2], w, cubic)
    x = np.einsum("yh,thwc->tywc", rows, frames.astype(np.float64), optimize=True)
    return np.einsum("tywc,xw->tyxc", x, cols, optimize=True)


def _np_dino(frames: np.ndarray) -> np.ndarray:
    t, h, w, _ = frames.shape
    size = (224, int(224 * w / h)) if h <= w else (int(224 * h / w), 224)
    x = _np_resize(frames, *size, cubic=False) / 255.0
    return ((x - IMAGENET[0]) / IMAGENET[1]).transpose(0, 3, 1, 2)


def _np_clip(frames: np.ndarray) -> np.ndarray:
    t, h, w, _ = frames.shape
    size = (224, int(224 * w / h)) if h <= w else (int(224 * h / w), 224)
    x = _np_resize(frames, *size, cubic=True)
    top, left = int(round((size[0] - 224) / 2)), int(round((size[1] - 224) / 2))
    x = x[:, top : top + 224, left : left + 224] / 255.0
    return ((x - CLIP[0]) / CLIP[1]).transpose(0, 3, 1, 2)


def _np_consistency(features: np.ndarray) -> float:
    f = features / np.linalg.norm(features, axis=1, keepdims=True)
    per_frame = [(max(0.0, f[t] @ f[t - 1]) + max(0.0, f[t] @ f[0])) / 2 for t in range(1, len(f))]
    return float(np.mean(per_frame))


@pytest.mark.parametrize("shape", [(2, 40, 56), (2, 300, 260), (1, 224, 224)])
def test_preprocessing_matches_vbench_transforms(shape):
    frames = _frames(*shape, 3)
    dino = _vbench.dino_preprocess(frames).numpy()
    assert dino.shape[-2:] == _np_dino(frames).shape[-2:]  # shorter side 224, longer int(224 * long / short)
    np.testing.assert_allclose(dino, _np_dino(frames), atol=2e-4)
    clip = _vbench.clip_preprocess(frames).numpy()
    assert clip.shape[-2:] == (224, 224)
    np.testing.assert_allclose(clip, _np_clip(frames), atol=2e-4)


def test_vbench_tier_loads_from_directory_and_matches_hand_pipeline(weights):
    # Square (no position-embedding interpolation on either side) and structurally different frames.
    ramp = np.linspace(0, 255, 64, dtype=np.float32)
    frames = np.stack([np.broadcast_to(ramp[None, :, None], (64, 64, 3)), np.broadcast_to(ramp[:, None, None], (64, 64, 3)),
                       _frames(1, 64, 64, 1)[0], np.full((64, 64, 3), 230.0)]).astype(np.uint8)
    scorer = objectives.Scorer(["subject_consistency", "background_consistency", "aesthetic_quality",
                                "temporal_flickering"], backend="vbench", weights_dir=weights)
    records = scorer.score_video(frames, 8.0)
    assert scorer.tiers["temporal_flickering"] == "exact"

    with torch.no_grad():
        vit = ViTModel.from_pretrained(weights / "dino-vitb16", add_pooling_layer=False).eval()
        dino = vit(pixel_values=torch.from_numpy(_np_dino(frames)).float()).last_hidden_state[:, 0].numpy()
        clip_b = CLIPModel.from_pretrained(weights / "clip-vit-base-patch32").eval()
        clip_input = torch.from_numpy(_np_clip(frames)).float()
        background = clip_b.get_image_features(pixel_values=clip_input).pooler_output.numpy()
        clip_l = CLIPModel.from_pretrained(weights / "clip-vit-large-patch14").eval()
        embeds = clip_l.get_image_features(pixel_values=clip_input).pooler_output.numpy()
    head = torch.load(weights / "sa_0_4_vit_l_14_linear.pth")
    unit = embeds / np.linalg.norm(embeds, axis=1, keepdims=True)
    aesthetic = np.mean(unit @ head["weight"].numpy().T + head["bias"].numpy()) / 10

    assert records["vbench/subject_consistency"] == pytest.approx(_np_consistency(dino), abs=1e-5)
    assert records["vbench/subject_consistency/pairs"] == 3
    assert records["vbench/background_consistency"] == pytest.approx(_np_consistency(background), abs=1e-5)
    assert records["vbench/aesthetic_quality"] == pytest.approx(aesthetic, abs=1e-5)
    # The frames really differ to the networks (by far more than the tolerances above).
    assert max(_np_consistency(dino), _np_consistency(background)) < 0.999


def test_dino_position_embeddings_follow_dino_on_non_square_frames(weights):
    model = _vbench._load_dino(str(weights), "cpu")
    emb = model.embeddings
    table = emb.position_embeddings
    # DINO's vision_transformer.interpolate_pos_encoding for a 224x313 input (14x19 patches).
    grid = table[:, 1:].reshape(1, 14, 14, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=(14.1 / math.sqrt(196), 19.1 / math.sqrt(196)), mode="bicubic")
    expected = torch.cat((table[:, :1], grid.permute(0, 2, 3, 1).reshape(1, 14 * 19, -1)), dim=1)
    got = emb.interpolate_pos_encoding(torch.zeros(1, 1 + 14 * 19, 16), 224, 313)
    torch.testing.assert_close(got, expected)
    value = objectives.subject_consistency(_frames(3, 40, 56, 2), 8.0, backend="vbench", weights_dir=weights)
    assert 0.0 <= value <= 1.0


def test_dino_layernorm_eps_is_dino_s(tmp_path):
    _tiny_vit(layer_norm_eps=1e-12).save_pretrained(tmp_path / "dino-vitb16")
    model = _vbench._load_dino(str(tmp_path), "cpu")
    assert model.layernorm.eps == 1e-6 and model.layers[0].layernorm_before.eps == 1e-6


def test_missing_or_wrong_weights_are_named(tmp_path, weights):
    with pytest.raises(ValueError, match="needs weights_dir"):
        objectives.Scorer(["subject_consistency"], backend="vbench")
    with pytest.raises(objectives.MissingWeightsError, match="dino-vitb16.*facebook/dino-vitb16"):
        objectives.Scorer(["subject_consistency"], backend="vbench", weights_dir=tmp_path)
    (tmp_path / "clip-vit-large-patch14").symlink_to(weights / "clip-vit-large-patch14")
    with pytest.raises(objectives.MissingWeightsError, match="sa_0_4_vit_l_14_linear.pth.*LAION-AI/aesthetic-predictor"):
        objectives.Scorer(["aesthetic_quality"], backend="vbench", weights_dir=tmp_path)
    torch.save(torch.nn.Linear(768, 1).state_dict(), tmp_path / "sa_0_4_vit_l_14_linear.pth")
    with pytest.raises(ValueError, match=r"not a Linear\(8, 1\) state dict"):
        objectives.Scorer(["aesthetic_quality"], backend="vbench", weights_dir=tmp_path)
