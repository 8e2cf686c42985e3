"""HunyuanVideo 1.5 on its modular pipeline, beyond what every modular backbone shares (tests/test_backbones_modular.py):
the glyph text encoder, a standard diffusers directory saved by diffusers' plain pipeline, the plain-diffusers export,
and Enhance-A-Video checked against the q/k that the original diffusers processor hands to the attention kernel."""

from __future__ import annotations

import re
import runpy

import numpy as np
import pytest
import torch
from diffusers import HunyuanVideo15Pipeline
from test_export_guiders import sweep_frames, write_native
from torch.overrides import TorchFunctionMode

from vboost.backbones._dit import to_videos
from vboost.backbones.hunyuan_video15_modular import HunyuanVideo15ModularBackbone
from vboost.methods import EnhanceAVideo, SkipLayerGuidance
from vboost.methods.enhance_a_video._processor import FetaProcessor
from vboost.methods.preset import Preset
from vboost.ops import feta_score

PROMPT = "a red car in the city at night"
GLYPH_PROMPT = 'a sign saying "open" at night'  # quoted text: the ByT5 glyph encoder runs too
SITES = re.compile(r"transformer_blocks\.\d+\.attn")


@pytest.fixture(scope="module")
def backbone():
    return HunyuanVideo15ModularBackbone.tiny(seed=0)


def test_quoted_text_goes_through_the_glyph_encoder(backbone):
    calls = []
    hook = backbone.pipe.text_encoder_2.register_forward_hook(lambda *_: calls.append(1))
    try:
        video = backbone.generate(GLYPH_PROMPT, 1)
    finally:
        hook.remove()
    assert calls == [1]  # the quoted text; the empty negative prompt has none
    embeds = backbone._prompt_cache[GLYPH_PROMPT]
    assert embeds["prompt_embeds_mask_2"].sum() > 0 and embeds["negative_prompt_embeds_mask_2"].sum() == 0
    d = backbone.defaults
    own = backbone.pipe(
        prompt=GLYPH_PROMPT, num_frames=d.num_frames, height=d.height, width=d.width, num_inference_steps=d.steps,
        generator=torch.Generator("cpu").manual_seed(1), output="videos", output_type="np",
    )
    np.testing.assert_array_equal(to_videos(own, d.fps)[0].frames, video.frames)


def test_the_prompt_lands_inside_the_kept_window(backbone):
    # The text block keeps the tokens after the first 108 (the template before the prompt, with the real tokenizer):
    # the tiny tokenizer's template is longer, so every prompt token is kept and valid.
    encoded = backbone._encode_prompt(PROMPT)
    embeds, mask = encoded["prompt_embeds"], encoded["prompt_embeds_mask"]
    tokens = backbone.pipe.tokenizer(PROMPT).input_ids
    assert embeds.shape[1] == mask.shape[1] == 1000
    assert len(tokens) < int(mask.sum()) < 1000 and mask[0, : int(mask.sum())].all()


def test_a_standard_diffusers_directory_loads_as_the_modular_pipeline(backbone, tmp_path, same_weights):
    # Released checkpoints are standard diffusers directories: save diffusers' plain pipeline with the same parts so.
    parts = ("tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2", "transformer", "vae", "scheduler", "guider")
    plain = HunyuanVideo15Pipeline(**{name: getattr(backbone.pipe, name) for name in parts})
    plain.set_progress_bar_config(disable=True)
    plain.save_pretrained(tmp_path)
    assert (tmp_path / "model_index.json").is_file() and not (tmp_path / "modular_model_index.json").exists()
    loaded = HunyuanVideo15ModularBackbone.from_pretrained(tmp_path, backbone.defaults, torch_dtype=torch.float32)
    same_weights(loaded.pipe, backbone.pipe)
    expected = backbone.generate(PROMPT, 3).frames
    assert (loaded.generate(PROMPT, 3).frames == expected).all()
    # The plain pipeline, guided by the same scale, makes the same clip.
    d = backbone.defaults
    frames = plain(prompt=PROMPT, num_frames=d.num_frames, height=d.height, width=d.width, num_inference_steps=d.steps,
                   generator=torch.Generator("cpu").manual_seed(3), output_type="np").frames
    np.testing.assert_array_equal(to_videos(frames, d.fps)[0].frames, expected)


def test_the_plain_diffusers_export_regenerates_the_sweeps_clip(backbone, tmp_path):
    # The script builds the pipeline with the class's default blocks (text- and image-to-video): their text-to-video
    # route makes the clip the backbone's text-to-video blocks make.
    pipe_dir = tmp_path / "pipe"
    backbone.save_pretrained(pipe_dir)
    setting = {"num_frames": 9, "height": 32, "width": 32, "steps": 3, "guidance": 6.0, "fps": 24}
    method = SkipLayerGuidance(layers=1, skip="feed_forward", skip_layer_guidance_scale=2.0,
                               skip_layer_guidance_start=0.0, skip_layer_guidance_stop=1.0)
    preset = Preset.from_method(method, backbone=backbone.family, **setting, dtype="float32", prompts=["a cat"], seeds=[4])
    native = write_native(tmp_path / "export", preset, method)
    runpy.run_path(str(native))["main"]([str(pipe_dir), "--device", "cpu", "--out-dir", str(tmp_path / "n"), "--save-frames"])
    expected = sweep_frames(backbone.family, pipe_dir, method, setting, "a cat", 4)
    np.testing.assert_array_equal(np.load(tmp_path / "n" / "p0_s4.npy"), expected)


class KernelCapture(TorchFunctionMode):
    """The q, k (``[B, N, L, d]``) and mask of every ``scaled_dot_product_attention`` call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.scaled_dot_product_attention:
            query = kwargs["query"] if "query" in kwargs else args[0]
            key = kwargs["key"] if "key" in kwargs else args[1]
            self.calls.append((query.detach().clone(), key.detach().clone(), kwargs["attn_mask"].detach().clone()))
        return func(*args, **kwargs)


def frame_major(x: torch.Tensor, frames: int) -> torch.Tensor:
    """``B N (T S) d -> (B S) N T d`` by explicit indexing: token ``t * S + s`` is frame ``t``, position ``s``."""
    batch, heads, tokens, dim = x.shape
    spatial = tokens // frames
    rows = [x[b, :, [t * spatial + s for t in range(frames)]] for b in range(batch) for s in range(spatial)]
    return torch.stack(rows)


def spatial_first(x: torch.Tensor, frames: int) -> torch.Tensor:
    """The grouping the score must not use: token ``s * T + t`` as frame ``t``."""
    batch, heads, tokens, dim = x.shape
    spatial = tokens // frames
    return torch.stack([x[b, :, s * frames: (s + 1) * frames] for b in range(batch) for s in range(spatial)])


def test_video_output_is_the_original_times_the_score_of_the_kernels_video_qk(backbone):
    weight, frames = 2.0, 3  # 9 frames: 3 latent frames
    calls, hooks = [], []
    for name, module in backbone.denoiser.named_modules():
        if SITES.fullmatch(name):
            hooks.append(module.register_forward_hook(
                lambda mod, args, kwargs, out, name=name: calls.append((name, mod, kwargs, out)), with_kwargs=True
            ))
    try:
        with EnhanceAVideo(weight).attached(backbone.pipe) as handle:
            backbone.generate(GLYPH_PROMPT, 0, steps=2)
    finally:
        for hook in hooks:
            hook.remove()
    # 2 steps x (conditional, unconditional) x 2 blocks, each scored once.
    assert len(calls) == len(handle.records) == 8
    gaps = []
    with torch.no_grad():
        for (name, module, kwargs, (video_out, text_out)), record in zip(calls, handle.records):
            with KernelCapture() as capture:
                plain_video, plain_text = module(**kwargs)  # the original processor is back after detach
            (query, key, mask), = capture.calls
            video, text = kwargs["hidden_states"].shape[1], kwargs["encoder_hidden_states"].shape[1]
            # Video tokens first, then the text tokens; no video pair is masked.
            assert query.shape[2] == video + text and mask[:, :, :video, :video].all()
            q, k = query[:, :, :video], key[:, :, :video]
            expected = float(feta_score(frame_major(q, frames), frame_major(k, frames), weight))
            gaps.append(abs(float(feta_score(spatial_first(q, frames), spatial_first(k, frames), weight)) - expected))
            assert record["layer"] == name and record["num_frames"] == frames
            assert record["score"] == pytest.approx(expected, rel=1e-6) and expected > 1.0
            torch.testing.assert_close(video_out, plain_video * expected, rtol=1e-5, atol=1e-6)
            assert torch.equal(text_out, plain_text)  # the text stream is never scaled
    assert max(gaps) > 1e-3  # a spatial-first grouping would have given other scores


def test_uniform_attention_gives_the_closed_form_and_detach_restores(backbone):
    plain = backbone.generate(PROMPT, 0, steps=2).frames
    with EnhanceAVideo(weight=4.0).attached(backbone.pipe):
        boosted = backbone.generate(PROMPT, 0, steps=2).frames
    assert (boosted != plain).any()
    assert (backbone.generate(PROMPT, 0, steps=2).frames == plain).all()
    assert not any(isinstance(getattr(m, "processor", None), FetaProcessor) for m in backbone.denoiser.modules())
    assert not backbone.denoiser._forward_pre_hooks

    uniform = HunyuanVideo15ModularBackbone.tiny(seed=1)
    with torch.no_grad():
        for name, module in uniform.denoiser.named_modules():
            if SITES.fullmatch(name):  # video q = 0 after QK-norm and RoPE: uniform attention between frames
                module.to_q.weight.zero_()
                module.to_q.bias.zero_()
    with EnhanceAVideo(weight=2.0).attached(uniform.pipe) as handle:
        uniform.generate(PROMPT, 0, steps=2)
    assert handle.records and all(r["cfi"] == pytest.approx(1 / 3, rel=1e-6) for r in handle.records)
    assert all(r["score"] == pytest.approx(1 + 2 / 3, rel=1e-6) for r in handle.records)
