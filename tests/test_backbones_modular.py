"""The modular-pipeline backbones: tiny pipelines with the real module names, generation equal to diffusers' own
``pipe(prompt=...)``, the loading paths (a modular save and a standard diffusers directory), the base guider
(LTX-2's own), and Enhance-A-Video on their transformers (both experts of Wan 2.2)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from diffusers import LTX2Guidance, LTX2ModularPipeline, LTX2Pipeline

from vboost.backbones import get_backbone_class
from vboost.backbones._dit import to_videos
from vboost.methods import Combined, EnhanceAVideo, Member

PROMPT = "a red car in the city at night"
FAMILIES = ["wan_modular", "wan22_modular", "ltx_modular", "hunyuan_video15_modular", "ltx2_modular"]
# Denoiser calls per step where not 2 (conditional and unconditional): LTX-2's guiders add an STG and a
# modality-isolation pass.
PASSES = {"ltx2_modular": 4}


@pytest.fixture(scope="module", params=FAMILIES)
def backbone(request):
    return get_backbone_class(request.param).tiny(seed=0)


def test_generates_what_the_pipeline_itself_generates(backbone):
    d = backbone.defaults
    video = backbone.generate(PROMPT, 5)
    assert video.frames.dtype == np.uint8 and video.frames.shape == (d.num_frames, d.height, d.width, 3)
    assert video.frames.std() > 0 and type(backbone.denoiser).__name__ == backbone.denoiser_class
    assert isinstance(backbone.pipe, backbone.pipeline_class)
    # diffusers' own call from the prompt: text encoder, denoising loop and decoder in its blocks.
    own = backbone.pipe(
        prompt=PROMPT, num_frames=d.num_frames, height=d.height, width=d.width, num_inference_steps=d.steps,
        generator=torch.Generator("cpu").manual_seed(5), output="videos", output_type="np",
    )
    np.testing.assert_array_equal(to_videos(own, d.fps)[0].frames, video.frames)
    assert (backbone.generate(PROMPT, 6).frames != video.frames).any()


def test_prompt_is_encoded_once(backbone):
    calls = []
    hook = backbone.pipe.text_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        first = backbone.generate("the ocean waves at night", 1).frames
        encoded = len(calls)
        second = backbone.generate("the ocean waves at night", 1).frames
    finally:
        hook.remove()
    assert encoded == 2 and len(calls) == 2 and (first == second).all()  # prompt and empty negative prompt


def test_modular_save_loads_back_identically(backbone, tmp_path, same_weights):
    expected = backbone.generate(PROMPT, 2).frames
    backbone.save_pretrained(tmp_path)
    assert (tmp_path / "modular_model_index.json").is_file()
    loaded = type(backbone).from_pretrained(tmp_path, backbone.defaults, torch_dtype=torch.float32)
    same_weights(loaded.pipe, backbone.pipe)
    assert (loaded.generate(PROMPT, 2).frames == expected).all()


@pytest.mark.parametrize("family,plain", [("wan_modular", "wan"), ("ltx_modular", "ltx_video")])
def test_a_standard_diffusers_directory_loads_as_a_modular_pipeline(family, plain, tmp_path, same_weights):
    # Released checkpoints are standard diffusers directories (model_index.json): save the plain tiny pipeline so.
    standard = get_backbone_class(plain).tiny(seed=0)
    standard.save_pretrained(tmp_path)
    assert (tmp_path / "model_index.json").is_file() and not (tmp_path / "modular_model_index.json").exists()
    modular = get_backbone_class(family)
    loaded = modular.from_pretrained(tmp_path, standard.defaults, torch_dtype=torch.float32)
    same_weights(loaded.pipe, standard.pipe)
    built = modular.tiny(seed=0)  # the same components, built in code
    built.defaults = standard.defaults
    assert (loaded.generate(PROMPT, 3).frames == built.generate(PROMPT, 3).frames).all()


def settings(guider) -> dict:
    """A guider's arguments (its config without diffusers' bookkeeping, whose lists have no fixed order)."""
    return {key: value for key, value in guider.config.items() if not key.startswith("_")}


def test_a_standard_ltx2_directory_loads_as_a_modular_pipeline(tmp_path, same_weights):
    # LTX-2 has no plain family here: save diffusers' own LTX2Pipeline of the tiny components (no prompt enhancer,
    # processor or duration head, as LTX-2.0's directory has none).
    built = get_backbone_class("ltx2_modular").tiny(seed=0)
    names = ("scheduler", "vae", "audio_vae", "text_encoder", "tokenizer", "connectors", "transformer", "vocoder")
    LTX2Pipeline(**{name: built.pipe.components[name] for name in names}).save_pretrained(tmp_path)
    assert (tmp_path / "model_index.json").is_file() and not (tmp_path / "modular_model_index.json").exists()
    loaded = type(built).from_pretrained(tmp_path, built.defaults, torch_dtype=torch.float32)
    same_weights(loaded.pipe, built.pipe)
    assert loaded.pipe.duration_head is None and settings(loaded.pipe.guider) == settings(built.pipe.guider)
    assert (loaded.generate(PROMPT, 3).frames == built.generate(PROMPT, 3).frames).all()


def test_ltx2_base_guider_is_the_pipelines_own_at_the_backbones_scale():
    backbone = get_backbone_class("ltx2_modular").tiny(seed=0)
    defaults = LTX2ModularPipeline().components
    default_guider, default_audio_guider = defaults["guider"], defaults["audio_guider"]
    assert type(backbone.pipe.guider) is LTX2Guidance
    # Only the video CFG scale is the backbone's; STG, modality and rescale scales and the audio guider are untouched.
    assert settings(backbone.pipe.guider) == {**settings(default_guider), "guidance_scale": backbone.defaults.guidance}
    assert settings(backbone.pipe.audio_guider) == settings(default_audio_guider)
    backbone.defaults = dataclasses.replace(backbone.defaults, guidance=1.0)
    assert backbone.pipe.guider.guidance_scale == 1.0 and backbone.pipe.guider.stg_scale == default_guider.stg_scale


def test_missing_index_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither modular_model_index.json nor model_index.json"):
        get_backbone_class("wan_modular").from_pretrained(tmp_path, get_backbone_class("wan_modular").tiny().defaults)


def test_guidance_is_the_base_guiders_scale(backbone):
    assert backbone.pipe.guider.guidance_scale == backbone.defaults.guidance
    plain = backbone.generate(PROMPT, 4).frames
    stronger = backbone.generate(PROMPT, 4, guidance=backbone.defaults.guidance * 3).frames
    assert (stronger != plain).any()
    assert backbone.pipe.guider.guidance_scale == backbone.defaults.guidance  # put back after the call
    assert (backbone.generate(PROMPT, 4).frames == plain).all()


def test_enhance_a_video_enters_every_transformer_and_detaches(backbone):
    plain = backbone.generate(PROMPT, 4).frames
    with EnhanceAVideo(weight=4.0).attached(backbone.pipe) as handle:
        boosted = backbone.generate(PROMPT, 4).frames
    layers = {record["layer"] for record in handle.records}
    assert handle.records and (boosted != plain).any()
    assert (backbone.generate(PROMPT, 4).frames == plain).all()
    per_step = {}
    for record in handle.records:
        per_step[record["step"]] = per_step.get(record["step"], 0) + 1
    # Every step scores every layer once per denoiser call (2 calls a step with classifier-free guidance).
    calls = PASSES.get(backbone.family, 2)
    assert sorted(per_step) == list(range(backbone.defaults.steps)) and set(per_step.values()) == {calls * len(layers)}


def test_wan22_experts_take_their_own_enhance_a_video_knobs():
    backbone = get_backbone_class("wan22_modular").tiny(seed=0)
    seen = {"transformer": set(), "transformer_2": set()}
    for name in seen:
        getattr(backbone.pipe, name).register_forward_pre_hook(
            lambda module, args, kwargs, name=name: seen[name].add(float(kwargs["timestep"][0])), with_kwargs=True
        )
    both = Combined({"high": Member(EnhanceAVideo(weight=4.0), "transformer"),
                     "low": Member(EnhanceAVideo(weight=0.5), "transformer_2")})
    with both.attached(backbone.pipe) as handle:
        backbone.generate(PROMPT, 0)
    high, low = handle.members["high"], handle.members["low"]
    assert seen["transformer"] and seen["transformer_2"]  # the tiny schedule crosses the 875 boundary
    # Each member scored only its expert's steps: the high-noise ones first, then the low-noise ones.
    high_steps, low_steps = {r["step"] for r in high.records}, {r["step"] for r in low.records}
    assert high_steps and low_steps and max(high_steps) < min(low_steps)
    assert len(high_steps) == len(seen["transformer"]) and len(low_steps) == len(seen["transformer_2"])
    summary = handle.summary()
    assert summary["high/score"] != summary["low/score"]
