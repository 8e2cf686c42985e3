"""The four DiT backbone adapters: tiny pipelines, deterministic generation, the loading path, frame rules."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vboost.backbones.base import Backbone
from vboost.backbones.cogvideox import CogVideoXBackbone
from vboost.backbones.hunyuan_video import HunyuanVideoBackbone
from vboost.backbones.ltx_video import LTXVideoBackbone
from vboost.backbones.wan import WanBackbone
from vboost.methods.enhance_a_video import EnhanceAVideo

FAMILIES = [CogVideoXBackbone, HunyuanVideoBackbone, WanBackbone, LTXVideoBackbone]
PROMPT = "a red car in the city at night"


@pytest.fixture(scope="module", params=FAMILIES, ids=lambda cls: cls.family)
def backbone(request) -> Backbone:
    return request.param.tiny(seed=0)


def test_generates_uint8_clip_of_requested_shape(backbone):
    d = backbone.defaults
    video = backbone.generate(PROMPT, 0)
    assert video.frames.dtype == np.uint8
    assert video.frames.shape == (d.num_frames, d.height, d.width, 3)
    assert video.fps == d.fps
    assert video.frames.std() > 0  # not a blank clip
    assert type(backbone.denoiser).__name__ == backbone.denoiser_class
    assert isinstance(backbone.pipe, backbone.pipeline_class)


def test_deterministic_per_seed_and_prompt(backbone):
    first = backbone.generate(PROMPT, 7).frames
    assert (backbone.generate(PROMPT, 7).frames == first).all()
    assert (backbone.generate(PROMPT, 8).frames != first).any()
    assert (backbone.generate("a dog walks on the beach", 7).frames != first).any()


def test_text_embeddings_are_encoded_once_per_prompt(backbone):
    calls = []
    hook = backbone.pipe.text_encoder.register_forward_hook(lambda *_: calls.append(1))
    prompt = "the ocean waves at night"
    try:
        first = backbone.generate(prompt, 1).frames
        encodes_per_clip = len(calls)  # 1, or 2 with classifier-free guidance (prompt and negative prompt)
        second = backbone.generate(prompt, 1).frames
    finally:
        hook.remove()
    assert encodes_per_clip in (1, 2) and len(calls) == encodes_per_clip and (first == second).all()


def test_save_and_load_generates_identically(backbone, tmp_path, same_weights):
    expected = backbone.generate(PROMPT, 2).frames
    backbone.save_pretrained(tmp_path)
    loaded = type(backbone).from_pretrained(tmp_path, backbone.defaults, torch_dtype=torch.float32)
    same_weights(loaded.pipe, backbone.pipe)
    assert (loaded.generate(PROMPT, 2).frames == expected).all()


def test_enhance_a_video_changes_output_and_detach_restores_it(backbone):
    plain = backbone.generate(PROMPT, 4).frames
    with EnhanceAVideo(weight=4.0).attached(backbone.pipe) as handle:
        boosted = backbone.generate(PROMPT, 4).frames
    assert handle.records and (boosted != plain).any()
    assert (backbone.generate(PROMPT, 4).frames == plain).all()


@pytest.mark.parametrize(
    "cls,num_frames,rule,nearest",
    [(CogVideoXBackbone, 10, r"4k\+1", "9 or 13"), (WanBackbone, 8, r"4k\+1", "5 or 9"),
     (HunyuanVideoBackbone, 11, r"4k\+1", "9 or 13"), (LTXVideoBackbone, 13, r"8k\+1", "9 or 17")],
)
def test_bad_frame_count_raises_before_generation(cls, num_frames, rule, nearest):
    backbone = cls.tiny(seed=0)
    with pytest.raises(ValueError, match=f"num_frames={num_frames}: {cls.family} takes {rule} frames; nearest: {nearest}$"):
        backbone.generate(PROMPT, 0, num_frames=num_frames)


def test_missing_weights_directory_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        WanBackbone.from_pretrained(tmp_path / "nowhere", WanBackbone.tiny().defaults)


@pytest.mark.parametrize(
    ("backbone", "num_frames", "config", "expected"),
    [
        (CogVideoXBackbone, 49, {"patch_size_t": None}, 13),  # CogVideoX 1.0: 49 frames -> 13 latent frames
        (CogVideoXBackbone, 81, {"patch_size_t": 2}, 11),  # 1.5: 21 latent frames padded to 22, patchified by 2
        (HunyuanVideoBackbone, 129, {"patch_size_t": 1}, 33),
        (WanBackbone, 81, {"patch_size": [1, 2, 2]}, 21),
        (LTXVideoBackbone, 161, {"patch_size_t": 1}, 21),
    ],
)
def test_latent_frames_read_the_temporal_patch_from_the_checkpoint_config(tmp_path, backbone, num_frames, config, expected):
    (tmp_path / "transformer").mkdir()
    (tmp_path / "transformer" / "config.json").write_text(json.dumps(config))
    assert backbone.latent_frames(num_frames, tmp_path) == expected


def test_latent_frames_of_a_tiny_model_match_what_its_denoiser_sees():
    backbone = WanBackbone.tiny()
    seen = []
    hook = backbone.denoiser.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs["hidden_states"].shape[2]), with_kwargs=True)
    backbone.generate("a cat", 0, num_frames=9)
    hook.remove()
    assert seen and seen[0] // backbone.denoiser.config.patch_size[0] == WanBackbone.latent_frames(9)
