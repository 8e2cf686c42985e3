"""EnhanceAVideo on the DiT families, checked against computations that do not use vboost's code.

The reference for a layer call: re-run the *original* diffusers attention module on the inputs the enhanced
module saw, capture the q/k that reach ``scaled_dot_product_attention``, pick the video tokens per docs/methods.md,
group them frame-major by explicit indexing and compute the score entry by entry in float64. The enhanced
output must equal the original output times that score on the video part, and equal it elsewhere.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from diffusers import CogVideoXTransformer3DModel, LTX2VideoTransformer3DModel
from torch.overrides import TorchFunctionMode

from vboost.backbones.cogvideox import CogVideoXBackbone
from vboost.backbones.hunyuan_video import HunyuanVideoBackbone
from vboost.backbones.ltx2_modular import LTX2ModularBackbone
from vboost.backbones.ltx_video import LTXVideoBackbone
from vboost.backbones.opensora import OpenSoraBackbone
from vboost.backbones.wan import WanBackbone
from vboost.methods.base import MethodHandle, UnsupportedModelError
from vboost.methods.enhance_a_video import EnhanceAVideo
from vboost.methods.enhance_a_video._processor import FetaProcessor, FetaState
from vboost.ops import feta_score

PROMPT = "a cat runs on the beach"
SITES = {
    "cogvideox": r"transformer_blocks\.\d+\.attn1",
    "hunyuan_video": r"(single_)?transformer_blocks\.\d+\.attn",
    "wan": r"blocks\.\d+\.attn1",
    "ltx_video": r"transformer_blocks\.\d+\.attn1",
    "ltx2_modular": r"transformer_blocks\.\d+\.attn1",  # the video self-attention; audio_attn1 is the audio's
    "opensora": r"temporal_blocks\.\d+\.attn",
}
BACKBONES = {
    cls.family: cls
    for cls in (CogVideoXBackbone, HunyuanVideoBackbone, WanBackbone, LTXVideoBackbone, OpenSoraBackbone,
                LTX2ModularBackbone)
}
# The tiny models' frame counts: 9 frames give 3 latent frames (4x temporal VAEs), 2 for LTX-Video and LTX-2 (8x);
# Open-Sora's tiny model makes 17 frames, one VAE run of 5 latent frames.
LATENT_FRAMES = {"cogvideox": 3, "hunyuan_video": 3, "wan": 3, "ltx_video": 2, "opensora": 5, "ltx2_modular": 2}


class SDPACapture(TorchFunctionMode):
    """Records the q/k of every ``scaled_dot_product_attention`` call (layout ``[B, N, L, d]``)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.scaled_dot_product_attention:
            query = kwargs["query"] if "query" in kwargs else args[0]
            key = kwargs["key"] if "key" in kwargs else args[1]
            self.calls.append((query.detach().clone(), key.detach().clone()))
        return func(*args, **kwargs)


def reference_score(query: torch.Tensor, key: torch.Tensor, frames: int, weight: float, *, frame_major: bool = True) -> float:
    """Score from video q/k ``[B, N, T*S, d]`` by explicit per-position indexing, in float64."""
    batch, heads, tokens, dim = query.shape
    spatial = tokens // frames
    q, k = query.double(), key.double()
    total, count = 0.0, 0
    for b in range(batch):
        for s in range(spatial):
            idx = [t * spatial + s for t in range(frames)] if frame_major else [s * frames + t for t in range(frames)]
            attn = torch.softmax((q[b, :, idx] * dim**-0.5) @ k[b, :, idx].transpose(-1, -2), dim=-1)  # [N, T, T]
            offdiag = attn.sum(dim=(-1, -2)) - attn.diagonal(dim1=-2, dim2=-1).sum(-1)
            total += float(offdiag.sum()) / (frames * frames - frames)
            count += heads
    return max(1.0, total / count * (frames + weight))


def _arg(args: tuple, kwargs: dict, name: str, position: int):
    return kwargs[name] if name in kwargs else (args[position] if len(args) > position else None)


def _video_tokens(family: str, query: torch.Tensor, args: tuple, kwargs: dict) -> slice:
    """Which key/query positions of the SDPA call are video tokens (docs/methods.md)."""
    if family == "cogvideox":  # text first
        return slice(_arg(args, kwargs, "encoder_hidden_states", 1).shape[1], None)
    if family == "hunyuan_video":  # image first in both block kinds; text is the encoder stream
        return slice(0, _arg(args, kwargs, "hidden_states", 0).shape[1])
    return slice(0, None)


def _split_output(output):
    """(video output, other outputs) of an attention module."""
    return (output[0], output[1:]) if isinstance(output, tuple) else (output, ())


def _capture_site_calls(denoiser: torch.nn.Module, family: str):

    pattern = re.compile(SITES[family])
    calls, hooks = [], []
    for name, module in denoiser.named_modules():
        if pattern.fullmatch(name):
            hooks.append(
                module.register_forward_hook(
                    lambda mod, args, kwargs, out, name=name: calls.append((name, mod, args, kwargs, out)), with_kwargs=True
                )
            )
    return calls, hooks


def check_against_reference(backbone, family: str, weight: float, frames: int, **generate_kwargs) -> list[float]:
    """Run the enhanced pipeline and check every attention call; returns |spatial-first - frame-major| scores."""
    calls, hooks = _capture_site_calls(backbone.denoiser, family)
    with EnhanceAVideo(weight).attached(backbone.pipe) as handle:
        backbone.generate(PROMPT, 0, steps=2, **generate_kwargs)
    for hook in hooks:
        hook.remove()
    assert len(calls) == len(handle.records) > 0
    grouping_gaps = []
    with torch.no_grad():
        for (name, module, args, kwargs, output), record in zip(calls, handle.records):
            with SDPACapture() as capture:
                plain = module(*args, **kwargs)  # the original processor is back after detach
            query, key = capture.calls[-1]
            video = _video_tokens(family, query, args, kwargs)
            expected = reference_score(query[:, :, video], key[:, :, video], frames, weight)
            spatial_first = reference_score(query[:, :, video], key[:, :, video], frames, weight, frame_major=False)
            grouping_gaps.append(abs(spatial_first - expected))
            assert record["layer"] == name and record["num_frames"] == frames
            assert record["score"] == pytest.approx(expected, rel=1e-5)
            out_video, out_rest = _split_output(output)
            plain_video, plain_rest = _split_output(plain)
            torch.testing.assert_close(out_video, plain_video * expected, rtol=1e-5, atol=1e-6)
            for enhanced, original in zip(out_rest, plain_rest):
                torch.testing.assert_close(enhanced, original, rtol=0, atol=1e-6)  # text outputs are never scaled
    return grouping_gaps


@pytest.fixture(scope="module")
def backbones():
    return {family: cls.tiny(seed=0) for family, cls in BACKBONES.items()}


@pytest.mark.parametrize("family", list(BACKBONES))
def test_output_is_original_times_reference_score(backbones, family):
    gaps = check_against_reference(backbones[family], family, weight=2.0, frames=LATENT_FRAMES[family])
    if family != "opensora":  # its temporal attention gets one patch position per row: nothing to regroup
        # The reference would have failed a spatial-first grouping: it gives different scores.
        assert max(gaps) > 1e-3


def test_ltx2_split_rotary_and_gated_attention():
    # The rotary layout and per-head gates the tiny LTX-2 lacks (LTX2AudioVideoAttnProcessor's other branches), on the
    # bare transformer: 3 latent frames of 2 x 3 tokens, 4 audio tokens, 5 text tokens.
    torch.manual_seed(0)
    config = {**LTX2ModularBackbone.spec.tiny_denoiser, "rope_type": "split", "gated_attn": True}
    transformer = LTX2VideoTransformer3DModel(**config).eval()
    frames, height, width = 3, 2, 3
    inputs = dict(
        hidden_states=torch.randn(1, frames * height * width, config["in_channels"]),
        audio_hidden_states=torch.randn(1, 4, config["audio_in_channels"]),
        encoder_hidden_states=torch.randn(1, 5, config["caption_channels"]),
        audio_encoder_hidden_states=torch.randn(1, 5, config["caption_channels"]),
        timestep=torch.tensor([500.0]), num_frames=frames, height=height, width=width, audio_num_frames=4,
        return_dict=False,
    )
    calls, hooks = _capture_site_calls(transformer, "ltx2_modular")
    with torch.no_grad(), EnhanceAVideo(weight=2.0).attached(transformer) as handle:
        boosted = transformer(**inputs)[0]
    for hook in hooks:
        hook.remove()
    assert len(calls) == len(handle.records) == config["num_layers"]
    with torch.no_grad():
        for (name, module, args, kwargs, output), record in zip(calls, handle.records):
            with SDPACapture() as capture:
                plain = module(*args, **kwargs)
            query, key = capture.calls[-1]  # [B, N, T*S, d] as the kernel got them
            positions = height * width
            regroup = [[t * positions + s for t in range(frames)] for s in range(positions)]  # frame-major
            expected = feta_score(torch.stack([query[0, :, i] for i in regroup]),
                                  torch.stack([key[0, :, i] for i in regroup]), 2.0)
            assert record["layer"] == name and record["num_frames"] == frames
            assert record["score"] == pytest.approx(float(expected), rel=1e-6)
            torch.testing.assert_close(output, plain * expected, rtol=1e-5, atol=1e-6)
        assert not torch.equal(boosted, transformer(**inputs)[0])


def test_cogvideox15_temporal_patch_divides_frames(backbones):
    backbone = CogVideoXBackbone.tiny(seed=0)
    torch.manual_seed(0)
    backbone.pipe.transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, time_embed_dim=16,
        text_embed_dim=16, num_layers=2, sample_width=4, sample_height=4, sample_frames=9, patch_size=2,
        patch_size_t=2, patch_bias=False, temporal_compression_ratio=4, use_rotary_positional_embeddings=True,
    )
    # 9 frames -> 3 latent frames, padded to 4 by the pipeline -> F = 4 / patch_size_t = 2.
    check_against_reference(backbone, "cogvideox", weight=2.0, frames=2)


@pytest.mark.parametrize("family", list(BACKBONES))
def test_uniform_attention_closed_form(family):
    backbone = BACKBONES[family].tiny(seed=1)

    pattern = re.compile(SITES[family])
    with torch.no_grad():
        for name, module in backbone.denoiser.named_modules():
            if pattern.fullmatch(name):  # q = 0 after every norm and RoPE: uniform attention, CFI = 1/F
                if hasattr(module, "to_q"):
                    module.to_q.weight.zero_()
                    module.to_q.bias.zero_()
                else:  # Open-Sora's fused projection: q is the first third of qkv
                    module.qkv.weight[: module.proj.in_features].zero_()
                    module.qkv.bias[: module.proj.in_features].zero_()
    plain = backbone.generate(PROMPT, 0, steps=2).frames
    frames = LATENT_FRAMES[family]
    with EnhanceAVideo(weight=2.0).attached(backbone.pipe) as handle:
        boosted = backbone.generate(PROMPT, 0, steps=2).frames
    assert all(r["score"] == pytest.approx(1.0 + 2.0 / frames, rel=1e-6) for r in handle.records)
    assert all(r["cfi"] == pytest.approx(1.0 / frames, rel=1e-6) for r in handle.records)
    assert (boosted != plain).any()
    # weight 0 on uniform attention: the gain is exactly clamp(1/F * F) = 1, so nothing changes.
    with EnhanceAVideo(weight=0.0).attached(backbone.pipe) as handle:
        unchanged = backbone.generate(PROMPT, 0, steps=2).frames
    assert all(r["score"] == pytest.approx(1.0, rel=1e-6) for r in handle.records)
    assert abs(unchanged.astype(int) - plain.astype(int)).max() <= 1


@pytest.mark.parametrize("family", list(BACKBONES))
def test_detach_restores_bit_identical_output(backbones, family):
    backbone = backbones[family]
    plain = backbone.generate(PROMPT, 3, steps=2).frames
    handle = EnhanceAVideo(weight=4.0).attach(backbone.pipe)
    boosted = backbone.generate(PROMPT, 3, steps=2).frames
    handle.detach()
    handle.detach()  # idempotent
    assert (boosted != plain).any()
    assert (backbone.generate(PROMPT, 3, steps=2).frames == plain).all()
    assert not any(isinstance(getattr(m, "processor", None), FetaProcessor) for m in backbone.denoiser.modules())
    assert not backbone.denoiser._forward_pre_hooks


def test_step_window(backbones):
    backbone = backbones["cogvideox"]
    plain = backbone.generate(PROMPT, 0, steps=3).frames
    # Steps 0, 1, 2 of 3 sit at 0, 1/3, 2/3: a window of [0.9, 1] contains none of them.
    with EnhanceAVideo(weight=4.0, start=0.9, end=1.0).attached(backbone.pipe) as handle:
        assert (backbone.generate(PROMPT, 0, steps=3).frames == plain).all()
    assert handle.records == []
    with EnhanceAVideo(weight=4.0, start=0.5, end=1.0).attached(backbone.pipe) as handle:
        late = backbone.generate(PROMPT, 0, steps=3).frames
    assert {r["step"] for r in handle.records} == {2}
    assert (late != plain).any()


def test_bare_denoiser_is_always_active(backbones):
    backbone = backbones["wan"]
    with EnhanceAVideo(weight=4.0).attached(backbone.denoiser) as handle:
        backbone.generate(PROMPT, 0, steps=2)
    # No scheduler tracking: every call of both layers, both CFG passes and both steps is enhanced.
    assert len(handle.records) == 2 * 2 * 2 and {r["step"] for r in handle.records} == {None}


def test_layer_selection(backbones):
    backbone = backbones["hunyuan_video"]

    def layers_seen(layers):
        with EnhanceAVideo(weight=4.0, layers=layers).attached(backbone.pipe) as handle:
            backbone.generate(PROMPT, 0, steps=2)
        return sorted({r["layer"] for r in handle.records})

    single = ["single_transformer_blocks.0.attn", "single_transformer_blocks.1.attn"]
    assert layers_seen(["single_transformer_blocks.*"]) == single
    assert layers_seen(["transformer_blocks.1"]) == ["transformer_blocks.1.attn"]
    assert layers_seen([0, 3]) == ["single_transformer_blocks.1.attn", "transformer_blocks.0.attn"]
    with pytest.raises(ValueError, match="double_blocks"):
        EnhanceAVideo(weight=4.0, layers=["double_blocks.*"]).attach(backbone.pipe)
    with pytest.raises(ValueError, match="7"):
        EnhanceAVideo(weight=4.0, layers=[7]).attach(backbone.pipe)
    # A failed attach leaves nothing behind: no hook, no swapped processor, no scheduler wrapper.
    assert not backbone.denoiser._forward_pre_hooks
    assert not any(isinstance(getattr(m, "processor", None), FetaProcessor) for m in backbone.denoiser.modules())
    assert "step" not in vars(backbone.pipe.scheduler)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"weight": float("nan")}, "weight"),
        ({"weight": 1.0, "start": 0.6, "end": 0.4}, "start=0.6"),
        ({"weight": 1.0, "end": 1.5}, "end=1.5"),
        ({"weight": 1.0, "start": -0.1}, "start=-0.1"),
        ({"weight": 1.0, "layers": [1.5]}, "1.5"),
        ({"weight": 1.0, "layers": [-1]}, "-1"),
    ],
)
def test_bad_knobs_raise_naming_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EnhanceAVideo(**kwargs)


def test_unsupported_model_and_double_attach(backbones):
    with pytest.raises(UnsupportedModelError, match="Linear"):
        EnhanceAVideo(weight=1.0).attach(torch.nn.Linear(2, 2))
    backbone = backbones["ltx_video"]
    with EnhanceAVideo(weight=1.0).attached(backbone.pipe):
        with pytest.raises(RuntimeError, match="already attached"):
            EnhanceAVideo(weight=1.0).attach(backbone.pipe)


def test_token_count_not_divisible_by_frames_is_an_error():
    state = FetaState(weight=1.0, start=0.0, end=1.0, handle=MethodHandle(method=None, target_name="x"), num_frames=3)
    processor = FetaProcessor(original=None, layer="blocks.0.attn1", state=state)
    with pytest.raises(ValueError, match="8 video tokens are not divisible by F=3"):
        processor.score(torch.zeros(1, 8, 2, 4), torch.zeros(1, 8, 2, 4), heads_first=False)


def test_bf16_output_stays_bf16():
    backbone = WanBackbone.tiny(seed=0)
    backbone.pipe.to(dtype=torch.bfloat16)
    calls, hooks = _capture_site_calls(backbone.denoiser, "wan")
    with EnhanceAVideo(weight=4.0).attached(backbone.pipe) as handle:
        backbone.generate(PROMPT, 0, steps=1, guidance=1.0)
    assert calls and all(out.dtype == torch.bfloat16 for *_, out in calls)
    assert all(math.isfinite(r["score"]) and r["score"] >= 1.0 for r in handle.records)
