"""objectives/ vbench tier, in this process (no torchvision): VBench's cache layout and its one-line errors,
the readers of VBench's files (DINO and CLIP checked against hand-rolled numpy forwards of the original
architectures, OpenAI's TorchScript archives read without executing code), AMT-S, and each dimension's
protocol (sampling, transforms, padding, aggregation) against hand computations, with the flow, interpolation
and quality networks replaced by fakes whose output is known.

RAFT and MUSIQ need torchvision: their loaders are tested in test_objectives_vbench_torchvision.py."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import objectives
from objectives import _amt, _checkpoints, _networks, _preprocess, _vbench, _weights

from _vbench_checkpoints import WIDTH, dino_state, key_shapes, write_clip_archive

IMAGENET = (np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]))
CLIP = (np.array([0.48145466, 0.4578275, 0.40821073]), np.array([0.26862954, 0.26130258, 0.27577711]))


def _frames(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


@pytest.fixture(autouse=True)
def fresh_networks():
    """Networks are cached per (directory, device); every test writes its own files."""
    for loader in (_networks.dino, _networks.clip_vision, _networks.aesthetic_head, _networks.amt_s):
        loader.cache_clear()


# --- tiny checkpoints in the original formats -----------------------------------------------------------

@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """VBench's cache layout with tiny random DINO, CLIP B/32 and L/14 archives, LAION head and AMT-S."""
    generator = torch.Generator().manual_seed(0)
    root = tmp_path_factory.mktemp("vbench_cache")
    dino = dino_state(generator)
    (root / "dino_model").mkdir()
    torch.save(dino, root / _weights.DINO.path)
    clip_b = write_clip_archive(root / _weights.CLIP_B32.path, 32, 16, generator)
    clip_l = write_clip_archive(root / _weights.CLIP_L14.path, 14, 24, generator)
    head = torch.nn.Linear(24, 1)
    (root / _weights.AESTHETIC.path).parent.mkdir(parents=True)
    torch.save(head.state_dict(), root / _weights.AESTHETIC.path)
    (root / "amt_model").mkdir()
    torch.save({"state_dict": _amt.AMTS().state_dict()}, root / _weights.AMT_S.path)
    return {"root": root, "dino": dino, "clip_b": clip_b, "clip_l": clip_l, "head": head.state_dict()}


# --- hand-rolled forwards of the original architectures, in float64 numpy --------------------------------

def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _layer_norm(x, weight, bias, eps):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _attention(x, wqkv, bqkv, wout, bout, heads):
    n, d = x.shape
    q, k, v = np.split(x @ wqkv.T + bqkv, 3, axis=-1)
    split = lambda a: a.reshape(n, heads, d // heads).transpose(1, 0, 2)  # noqa: E731
    logits = split(q) @ split(k).transpose(0, 2, 1) / math.sqrt(d // heads)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return (weights @ split(v)).transpose(1, 0, 2).reshape(n, d) @ wout.T + bout


def _gelu(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def _patchify(image, weight, patch):
    c, h, w = image.shape
    grid = image.reshape(c, h // patch, patch, w // patch, patch).transpose(1, 3, 0, 2, 4).reshape(-1, c * patch * patch)
    return grid @ weight.reshape(weight.shape[0], -1).T


def _np_dino_cls(image: np.ndarray, s: dict) -> np.ndarray:
    """DINO's VisionTransformer.forward (CLS token after the final norm) at 224x224 (no interpolation)."""
    x = _patchify(image, _np(s["patch_embed.proj.weight"]), 16) + _np(s["patch_embed.proj.bias"])
    x = np.concatenate([_np(s["cls_token"])[0], x]) + _np(s["pos_embed"])[0]
    for i in range(len({k.split(".")[1] for k in s if k.startswith("blocks.")})):
        p = lambda name: _np(s[f"blocks.{i}.{name}"])  # noqa: E731
        x = x + _attention(_layer_norm(x, p("norm1.weight"), p("norm1.bias"), 1e-6), p("attn.qkv.weight"),
                           p("attn.qkv.bias"), p("attn.proj.weight"), p("attn.proj.bias"), WIDTH // 64)
        hidden = _gelu(_layer_norm(x, p("norm2.weight"), p("norm2.bias"), 1e-6) @ p("mlp.fc1.weight").T + p("mlp.fc1.bias"))
        x = x + hidden @ p("mlp.fc2.weight").T + p("mlp.fc2.bias")
    return _layer_norm(x[0], _np(s["norm.weight"]), _np(s["norm.bias"]), 1e-6)


def _np_clip_image(image: np.ndarray, s: dict) -> np.ndarray:
    """OpenAI CLIP's VisionTransformer.forward: ``encode_image`` of one preprocessed image."""
    v = lambda name: _np(s[f"visual.{name}"])  # noqa: E731
    patch = s["visual.conv1.weight"].shape[-1]
    x = np.concatenate([v("class_embedding")[None], _patchify(image, v("conv1.weight"), patch)]) + v("positional_embedding")
    x = _layer_norm(x, v("ln_pre.weight"), v("ln_pre.bias"), 1e-5)
    b = lambda name: v(f"transformer.resblocks.0.{name}")  # noqa: E731
    x = x + _attention(_layer_norm(x, b("ln_1.weight"), b("ln_1.bias"), 1e-5), b("attn.in_proj_weight"),
                       b("attn.in_proj_bias"), b("attn.out_proj.weight"), b("attn.out_proj.bias"), WIDTH // 64)
    hidden = _layer_norm(x, b("ln_2.weight"), b("ln_2.bias"), 1e-5) @ b("mlp.c_fc.weight").T + b("mlp.c_fc.bias")
    x = x + (hidden / (1 + np.exp(-1.702 * hidden))) @ b("mlp.c_proj.weight").T + b("mlp.c_proj.bias")
    return _layer_norm(x[0], v("ln_post.weight"), v("ln_post.bias"), 1e-5) @ v("proj")


# --- an independent resampler: PyTorch's documented half-pixel, edge-clamped kernels, in numpy ----------

def _keys(x: np.ndarray, a: float = -0.75) -> np.ndarray:
    x = np.abs(x)
    return np.where(x <= 1, (a + 2) * x**3 - (a + 3) * x**2 + 1,
                    np.where(x < 2, a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a, 0.0))


def _resample_matrix(n_in: int, n_out: int, cubic: bool) -> np.ndarray:
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    if not cubic:
        src = np.maximum(src, 0.0)  # PyTorch clamps negative source coordinates for linear modes
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


def _shorter_224(h: int, w: int) -> tuple[int, int]:
    return (224, int(224 * w / h)) if h <= w else (int(224 * h / w), 224)


def _np_dino(frames: np.ndarray) -> np.ndarray:
    x = _np_resize(frames, *_shorter_224(*frames.shape[1:3]), cubic=False) / 255.0
    return ((x - IMAGENET[0]) / IMAGENET[1]).transpose(0, 3, 1, 2)


def _np_clip(frames: np.ndarray) -> np.ndarray:
    size = _shorter_224(*frames.shape[1:3])
    x = _np_resize(frames, *size, cubic=True)
    top, left = int(round((size[0] - 224) / 2)), int(round((size[1] - 224) / 2))
    x = x[:, top : top + 224, left : left + 224] / 255.0
    return ((x - CLIP[0]) / CLIP[1]).transpose(0, 3, 1, 2)


def _np_consistency(features: np.ndarray) -> float:
    f = features / np.linalg.norm(features, axis=1, keepdims=True)
    per_frame = [(max(0.0, f[t] @ f[t - 1]) + max(0.0, f[t] @ f[0])) / 2 for t in range(1, len(f))]
    return float(np.mean(per_frame))


@pytest.mark.parametrize("shape", [(2, 40, 56), (2, 300, 260), (1, 224, 224)])
def test_dino_and_clip_transforms_match_vbench_torchvision_transforms(shape):
    frames = _frames(*shape, 3)
    dino = _preprocess.dino(_preprocess.as_tensor(frames)).numpy()
    assert dino.shape[-2:] == _np_dino(frames).shape[-2:]  # shorter side 224, longer int(224 * long / short)
    np.testing.assert_allclose(dino, _np_dino(frames), atol=2e-4)
    clip = _preprocess.clip(_preprocess.as_tensor(frames)).numpy()
    assert clip.shape[-2:] == (224, 224)
    np.testing.assert_allclose(clip, _np_clip(frames), atol=2e-4)


@pytest.mark.parametrize(("shape", "resized"), [((2, 300, 700), (219, 512)), ((1, 512, 300), (512, 300)),
                                                  ((1, 90, 60), (90, 60))])
def test_musiq_transform_shrinks_the_longer_side_to_512_only_when_larger(shape, resized):
    frames = _frames(*shape, 4)
    got = _preprocess.musiq(_preprocess.as_tensor(frames)).numpy()
    assert got.shape[-2:] == resized  # (int(s * H), int(s * W)) with s = 512 / longer
    expected = _np_resize(frames, *resized, cubic=False) if resized != shape[1:] else frames.astype(np.float64)
    # float32 source coordinates: about 0.005 grey levels off the float64 reference at 700 -> 512
    np.testing.assert_allclose(got, expected.transpose(0, 3, 1, 2) / 255.0, atol=5e-5)


def test_replicate_padding_splits_like_raft_and_amt():
    x = torch.arange(2 * 3 * 13 * 10, dtype=torch.float32).view(2, 3, 13, 10)
    padded = _preprocess.pad_replicate(x, 8)
    assert padded.shape[-2:] == (16, 16)  # 13 -> 1 above, 2 below; 10 -> 3 left, 3 right
    torch.testing.assert_close(padded[..., 1:14, 3:13], x)
    torch.testing.assert_close(padded[..., 0, 3:13], x[..., 0, :])
    torch.testing.assert_close(padded[..., 15, 3:13], x[..., 12, :])
    torch.testing.assert_close(padded[..., 1:14, 0], x[..., 0])
    torch.testing.assert_close(_preprocess.unpad(padded, 13, 10), x)
    assert _preprocess.pad_replicate(x, 16).shape[-2:] == (16, 16)


# --- VBench's cache layout: defaults and errors before anything loads -----------------------------------

def test_default_weights_dir_is_vbench_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("VBENCH_CACHE_DIR", str(tmp_path))
    assert objectives.default_weights_dir() == tmp_path
    monkeypatch.delenv("VBENCH_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert objectives.default_weights_dir() == tmp_path / "home" / ".cache" / "vbench"


@pytest.mark.parametrize("dimension", sorted(_weights.REQUIRED))
def test_each_missing_file_is_one_line_naming_path_and_dimension(dimension, tmp_path):
    with pytest.raises(objectives.MissingWeightsError) as err:
        objectives.check_weights([dimension], "vbench", tmp_path)
    message = str(err.value)
    first = _weights.REQUIRED[dimension][0]
    assert "\n" not in message and message.startswith(f"{dimension} (vbench tier) needs ")
    assert str(tmp_path / first.path) in message and first.source in message


def test_vbench_cache_file_names_are_vbench_0_1_5s():
    assert {f.path for files in _weights.REQUIRED.values() for f in files} == {
        "raft_model/models/raft-things.pth", "dino_model/dino_vitbase16_pretrain.pth", "clip_model/ViT-B-32.pt",
        "clip_model/ViT-L-14.pt", "aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth", "amt_model/amt-s.pth",
        "pyiqa_model/musiq_spaq_ckpt-358bb6af.pth"}


def test_check_weights_uses_the_cache_imports_no_torch_and_skips_other_tiers(tmp_path, cache):
    code = ("import sys, objectives; "
            "found = objectives.check_weights(['temporal_flickering', 'subject_consistency', 'dynamic_degree'], "
            "{'subject_consistency': 'vbench', 'dynamic_degree': 'proxy'}); "
            "print(sorted(found), 'torch' in sys.modules)")
    env = {"VBENCH_CACHE_DIR": str(cache["root"]), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                         cwd=Path(__file__).parents[1]).stdout
    assert out.split() == ["['subject_consistency']", "False"]
    assert objectives.check_weights(["dynamic_degree", "motion_smoothness"], "proxy", tmp_path) == {}


def test_missing_library_is_named_with_its_dimension(monkeypatch, tmp_path):
    for file in _weights.REQUIRED["imaging_quality"]:
        (tmp_path / file.path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / file.path).touch()
    monkeypatch.setattr(_weights.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(objectives.MissingDependencyError, match=r"^imaging_quality \(vbench tier\) needs the torchvision"):
        objectives.check_weights(["imaging_quality"], "vbench", tmp_path)


def test_scorer_fails_before_loading_any_network(monkeypatch, tmp_path, cache):
    def refuse(*args):
        raise AssertionError("a network was loaded")

    for name in ("dino", "clip_vision", "aesthetic_head", "amt_s", "raft", "musiq"):
        monkeypatch.setattr(_networks, name, refuse)
    (tmp_path / "clip_model").mkdir()
    (tmp_path / _weights.CLIP_L14.path).symlink_to(cache["root"] / _weights.CLIP_L14.path)
    with pytest.raises(objectives.MissingWeightsError, match="aesthetic_quality.*sa_0_4_vit_l_14_linear.pth"):
        objectives.Scorer(["subject_consistency", "aesthetic_quality"], backend={"aesthetic_quality": "vbench"},
                          weights_dir=tmp_path)


def test_every_dimension_has_a_vbench_tier_with_the_same_records():
    for name in objectives.DIMENSIONS:
        proxy, vbench = objectives.record_names(name, "proxy"), objectives.record_names(name, "vbench")
        assert [r.split("/", 1)[1] for r in proxy] == [r.split("/", 1)[1] for r in vbench]
    assert objectives.record_names("dynamic_degree", "vbench") == ["vbench/dynamic_degree",
                                                                   "vbench/dynamic_degree_magnitude"]
    assert objectives.record_name("temporal_flickering", "vbench") == "exact/temporal_flickering"


# --- readers of VBench's files ------------------------------------------------------------------------------

def test_torchscript_reader_returns_the_archives_tensors(tmp_path):
    expected = write_clip_archive(tmp_path / "m.pt", 32, 16, torch.Generator().manual_seed(1))
    tensors = _checkpoints.read_torchscript_tensors(tmp_path / "m.pt")
    assert tensors["visual.proj"].dtype == torch.float16  # as stored, cast by the mapping
    for key, value in expected.items():
        torch.testing.assert_close(tensors[key].float(), value, rtol=0, atol=0)
    assert "logit_scale" in tensors and "token_embedding.weight" in tensors


def test_archive_with_foreign_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (subprocess.call, (["touch", str(marker)],))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps({"visual.proj": Exploit()}, protocol=2))
    with pytest.raises(objectives.CheckpointError, match=r"evil\.pt.*call is not allowed"):
        _checkpoints.read_torchscript_tensors(path)
    torch.save({"w": Exploit()}, tmp_path / "evil.pth")
    with pytest.raises(objectives.CheckpointError, match=r"evil\.pth.*without executing pickled code"):
        _checkpoints.load_state_dict(tmp_path / "evil.pth")
    assert not marker.exists()


def test_dino_loader_matches_hand_rolled_dino_forward(cache):
    model = _networks.dino(str(cache["root"]), "cpu")
    assert model.layernorm.eps == 1e-6 and model.config.num_attention_heads == 2
    pixels = _preprocess.dino(_preprocess.as_tensor(_frames(2, 224, 224, 5)))
    with torch.no_grad():
        got = model(pixel_values=pixels, interpolate_pos_encoding=True).last_hidden_state[:, 0].double().numpy()
    expected = np.stack([_np_dino_cls(p, cache["dino"]) for p in pixels.double().numpy()])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_dino_position_embeddings_follow_dino_on_non_square_frames(cache):
    emb = _networks.dino(str(cache["root"]), "cpu").embeddings
    table = emb.position_embeddings
    # DINO's vision_transformer.interpolate_pos_encoding for a 224x313 input (14x19 patches).
    grid = table[:, 1:].reshape(1, 14, 14, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=(14.1 / math.sqrt(196), 19.1 / math.sqrt(196)), mode="bicubic")
    expected = torch.cat((table[:, :1], grid.permute(0, 2, 3, 1).reshape(1, 14 * 19, -1)), dim=1)
    torch.testing.assert_close(emb.interpolate_pos_encoding(torch.zeros(1, 1 + 14 * 19, WIDTH), 224, 313), expected)


@pytest.mark.parametrize(("file", "key"), [(_weights.CLIP_B32, "clip_b"), (_weights.CLIP_L14, "clip_l")])
def test_clip_loader_matches_hand_rolled_openai_encode_image(cache, file, key):
    model = _networks.clip_vision(str(cache["root"]), file.path, "cpu")
    assert next(model.parameters()).dtype == torch.float32  # VBench's CPU path: clip.load(...).float()
    pixels = _preprocess.clip(_preprocess.as_tensor(_frames(2, 230, 260, 6)))
    with torch.no_grad():
        got = model(pixel_values=pixels).image_embeds.double().numpy()
    expected = np.stack([_np_clip_image(p, cache[key]) for p in pixels.double().numpy()])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_wrong_files_are_named(tmp_path, cache):
    (tmp_path / "dino_model").mkdir()
    torch.save(dino_state(torch.Generator().manual_seed(2)) | {"head.weight": torch.zeros(3)},
               tmp_path / _weights.DINO.path)
    with pytest.raises(objectives.CheckpointError, match=r"dino_vitbase16_pretrain\.pth.*unexpected \['head.weight'\]"):
        _networks.dino(str(tmp_path), "cpu")
    (tmp_path / "clip_model").mkdir()
    (tmp_path / _weights.CLIP_B32.path).write_bytes(b"not a zip archive")
    with pytest.raises(objectives.CheckpointError, match=r"ViT-B-32\.pt.*cannot be read as a TorchScript"):
        _networks.clip_vision(str(tmp_path), _weights.CLIP_B32.path, "cpu")
    torch.save({"visual.proj": torch.zeros(2, 2)}, tmp_path / _weights.CLIP_B32.path)  # tensors, no image tower
    with pytest.raises(objectives.CheckpointError, match=r"ViT-B-32\.pt.*lacks 'class_embedding'"):
        _networks.clip_vision(str(tmp_path), _weights.CLIP_B32.path, "cpu")
    (tmp_path / _weights.AESTHETIC.path).parent.mkdir(parents=True)
    torch.save({"weight": torch.zeros(2, 24)}, tmp_path / _weights.AESTHETIC.path)
    with pytest.raises(objectives.CheckpointError, match=r"sa_0_4_vit_l_14_linear\.pth.*Linear\(n, 1\)"):
        _networks.aesthetic_head(str(tmp_path), "cpu")


# --- AMT-S ------------------------------------------------------------------------------------------------

def test_amt_s_has_the_published_checkpoints_tensors():
    assert {k: tuple(v.shape) for k, v in _amt.AMTS().state_dict().items()} == key_shapes("amt_s_keys.txt")


def test_amt_s_with_zero_weights_blends_the_two_frames():
    # Zero weights: zero flows, masks sigmoid(0) = 1/2, no residual, no correction -> (img0 + img1) / 2.
    model = _amt.AMTS().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        a, b = torch.rand(2, 3, 128, 144, generator=torch.Generator().manual_seed(3)).split(1)
        out = model(a, b, torch.full((1, 1, 1, 1), 0.5))
    # The zero-flow warp samples at linspace(-1, 1) grid points, a few 1e-6 off the pixel centres.
    torch.testing.assert_close(out, (a + b) / 2, atol=3e-5, rtol=0)


# --- each dimension's protocol, networks replaced by fakes of known output ----------------------------

def test_consistency_and_aesthetic_scores_follow_vbench_from_the_networks(cache):
    ramp = np.linspace(0, 255, 64, dtype=np.float32)
    frames = np.stack([np.broadcast_to(ramp[None, :, None], (64, 64, 3)), np.broadcast_to(ramp[:, None, None], (64, 64, 3)),
                       _frames(1, 64, 64, 1)[0], np.full((64, 64, 3), 230.0)]).astype(np.uint8)
    scorer = objectives.Scorer(["subject_consistency", "background_consistency", "aesthetic_quality"],
                               backend="vbench", weights_dir=cache["root"])
    records = scorer.score_video(frames, 8.0)
    root = str(cache["root"])
    with torch.no_grad():
        dino = _networks.dino(root, "cpu")(pixel_values=torch.from_numpy(_np_dino(frames)).float(),
                                           interpolate_pos_encoding=True).last_hidden_state[:, 0].numpy()
        clip_input = torch.from_numpy(_np_clip(frames)).float()
        background = _networks.clip_vision(root, _weights.CLIP_B32.path, "cpu")(pixel_values=clip_input).image_embeds.numpy()
        embeds = _networks.clip_vision(root, _weights.CLIP_L14.path, "cpu")(pixel_values=clip_input).image_embeds.numpy()
    unit = embeds / np.linalg.norm(embeds, axis=1, keepdims=True)
    aesthetic = np.mean(unit @ cache["head"]["weight"].numpy().T + cache["head"]["bias"].numpy()) / 10

    assert records["vbench/subject_consistency"] == pytest.approx(_np_consistency(dino), abs=1e-5)
    assert records["vbench/subject_consistency/pairs"] == 3
    assert records["vbench/background_consistency"] == pytest.approx(_np_consistency(background), abs=1e-5)
    assert records["vbench/aesthetic_quality"] == pytest.approx(aesthetic, abs=1e-5)
    assert max(_np_consistency(dino), _np_consistency(background)) < 0.999  # the frames differ to the networks


class _FakeRAFT(torch.nn.Module):
    """Uniform flow (k * mean intensity change, 0) per pair, on inputs RAFT-scaled to [-1, 1]."""

    def __init__(self, k: float):
        super().__init__()
        self.k, self.shapes = k, []

    def forward(self, a, b, num_flow_updates):
        assert num_flow_updates == 20 and a.min() >= -1 and a.max() <= 1
        self.shapes.append(tuple(a.shape[-2:]))
        change = ((b - a) * 255 / 2).mean(dim=(1, 2, 3))
        flow = torch.zeros(a.shape[0], 2, *a.shape[-2:])
        flow[:, 0] = (self.k * change)[:, None, None]
        return [flow * 0.5, flow]  # RAFT returns every update; VBench takes the last


def test_dynamic_degree_protocol(monkeypatch):
    fake = _FakeRAFT(k=1.0)
    monkeypatch.setattr(_networks, "raft", lambda *args: fake)
    score = _vbench.dynamic_degree("unused", "cpu")
    # 24 fps -> every 3rd frame; 27 frames -> 9 kept, 8 pairs; count round(4 * 9 / 16) = 2; thres 6 * 130 / 256.
    levels = np.zeros(27)
    levels[3], levels[6] = 10.0, 13.0  # kept pairs 0->1 (+10), 1->2 (+3), 2->3 (-13); the rest static
    frames = np.broadcast_to(levels[:, None, None, None], (27, 130, 140, 3)).astype(np.uint8)
    out = score(frames, 24.0)
    threshold = 6 * 130 / 256
    pair_scores = [10.0, 3.0, 13.0] + [0.0] * 5
    assert fake.shapes == [(136, 144)] * 2  # padded to multiples of 8; 8 pairs in batches of 4
    assert out["_magnitude"] == pytest.approx(np.mean(pair_scores) / threshold, rel=1e-5)
    assert out[""] == 1.0  # 10 and 13 exceed 3.05: two pairs, count 2
    levels[3:] = 10.0  # a single step: only kept pair 0->1 moves
    frames = np.broadcast_to(levels[:, None, None, None], (27, 130, 140, 3)).astype(np.uint8)
    assert score(frames, 24.0) == {"": 0.0, "_magnitude": pytest.approx(10.0 / 8 / threshold, rel=1e-5)}


@pytest.mark.parametrize(("steps", "dynamic"), [(3, 1.0), (2, 0.0)])
def test_dynamic_degree_counts_kept_frames_and_takes_the_threshold_of_the_unpadded_frame(monkeypatch, steps, dynamic):
    # Where the alternatives disagree. 33 frames at 24 fps keep every 3rd: 11 frames, 10 pairs; the count is
    # round(4 * 11 / 16) = 3 (counting pairs would give round(2.5) = 2). A +10 level step makes a pair score of
    # 0.31 * 10 = 3.1 px: above 6 * 130 / 256 = 3.05 for the 130-px frame, below 3.19 for the padded 136 px.
    fake = _FakeRAFT(k=0.31)
    monkeypatch.setattr(_networks, "raft", lambda *args: fake)
    score = _vbench.dynamic_degree("unused", "cpu")
    levels = np.zeros(33)
    for pair in range(steps):  # kept pair i runs from frame 3i to 3i + 3
        levels[3 * pair + 3:] += 10.0
    frames = np.broadcast_to(levels[:, None, None, None], (33, 130, 140, 3)).astype(np.uint8)
    assert score(frames, 24.0)[""] == dynamic


def test_flow_dimensions_refuse_frames_their_networks_cannot_take(monkeypatch, cache):
    scorer = objectives.Scorer(["motion_smoothness"], backend="vbench", weights_dir=cache["root"])
    with pytest.raises(ValueError, match=r"vbench/motion_smoothness needs frames of at least 113 px a side, got 112x200"):
        scorer.score_video(_frames(3, 112, 200), 8.0)
    assert objectives.min_side("dynamic_degree", "vbench") == 121 and objectives.min_side("dynamic_degree") == 1


class _FakeInterpolator(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.shapes = []

    def forward(self, a, b, embt):
        assert torch.all(embt == 0.5)
        self.shapes.append(tuple(a.shape))
        return (a + b) / 2


def test_motion_smoothness_protocol(monkeypatch):
    fake = _FakeInterpolator()
    monkeypatch.setattr(_networks, "amt_s", lambda *args: fake)
    frames = _frames(12, 120, 130, 7)  # 6 even frames, 5 interpolated middles, 6 odd frames (last unpaired)
    out = _vbench.motion_smoothness("unused", "cpu")(frames, 8.0)
    assert [s[-2:] for s in fake.shapes] == [(128, 144)] * 2 and [s[0] for s in fake.shapes] == [4, 1]
    even = frames[0::2].astype(np.float32) / np.float32(255)
    middles = ((even[:-1] + even[1:]) / np.float32(2) * np.float32(255)).clip(0, 255).astype(np.uint8)  # truncated
    diffs = [np.abs(middles[i].astype(int) - frames[2 * i + 1]).mean() for i in range(5)]
    assert out[""] == pytest.approx((255 - np.mean(diffs)) / 255, abs=1e-12)


def test_imaging_quality_protocol(monkeypatch):
    monkeypatch.setattr(_networks, "musiq", lambda *args: lambda x: x.mean() * 100)  # MOS = mean of the 0..1 input
    frames = _frames(3, 300, 700, 8)
    out = _vbench.imaging_quality("unused", "cpu")(frames, 8.0)
    expected = _np_resize(frames, 219, 512, cubic=False).mean(axis=(1, 2, 3)) / 255  # per frame MOS / 100
    assert out[""] == pytest.approx(expected.mean(), abs=1e-6)
