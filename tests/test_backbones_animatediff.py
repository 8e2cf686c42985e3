"""AnimateDiff and SparseCtrl adapters on their tiny random-weight models, and the local loading paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
from PIL import Image

from vboost.backbones.animatediff import (
    AnimateDiffBackbone,
    AnimateDiffSparseCtrlBackbone,
    _tiny_components,
    synthetic_image,
)
from vboost.methods.bytheway import ByTheWay
from vboost.methods.free_init import FreeInit

PROMPT = "a sailing boat on a calm lake at sunset"
SMALL = {"num_frames": 4, "height": 32, "width": 32, "steps": 2}


@pytest.fixture(scope="module")
def animatediff() -> AnimateDiffBackbone:
    return AnimateDiffBackbone.tiny(seed=0)


@pytest.fixture(scope="module")
def sparsectrl() -> AnimateDiffSparseCtrlBackbone:
    return AnimateDiffSparseCtrlBackbone.tiny(seed=0)


def test_default_clip_shape_and_dtype(animatediff):
    video = animatediff.generate(PROMPT, 0)
    d = animatediff.defaults
    assert video.frames.shape == (d.num_frames, d.height, d.width, 3)
    assert video.frames.dtype == np.uint8
    assert video.fps == d.fps
    assert video.frames.std() > 0


def test_settings_override_defaults_and_seeds_decide(animatediff):
    first = animatediff.generate(PROMPT, 0, num_frames=3, height=40, width=24, steps=2, guidance=1.0).frames
    assert first.shape == (3, 40, 24, 3)
    again = animatediff.generate(PROMPT, 0, num_frames=3, height=40, width=24, steps=2, guidance=1.0).frames
    other_seed = animatediff.generate(PROMPT, 1, num_frames=3, height=40, width=24, steps=2, guidance=1.0).frames
    np.testing.assert_array_equal(first, again)
    assert np.abs(first.astype(int) - other_seed).mean() > 1


def test_cached_prompt_embeddings_give_the_pipelines_own_result(animatediff):
    pipe = animatediff.pipe
    encoder_calls = []
    hook = pipe.text_encoder.register_forward_pre_hook(lambda module, args: encoder_calls.append(1))
    try:
        ours = animatediff.generate("a prompt seen once", 4, **SMALL, guidance=7.5).frames
        calls_first = len(encoder_calls)
        animatediff.generate("a prompt seen once", 5, **SMALL, guidance=7.5)
    finally:
        hook.remove()
    assert calls_first == 2  # conditional and unconditional
    assert len(encoder_calls) == calls_first  # the second clip reused both
    direct = pipe(
        prompt="a prompt seen once", num_frames=4, height=32, width=32, num_inference_steps=2, guidance_scale=7.5,
        generator=torch.Generator().manual_seed(4), output_type="pil",
    ).frames[0]
    np.testing.assert_array_equal(ours, np.stack([np.asarray(frame) for frame in direct]))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"height": 60}, r"height=60: animatediff takes multiples of 8 \(its VAE compresses 8x\); nearest: 56 or 64$"),
        ({"width": 0}, "width=0: animatediff takes multiples of 8 .*; nearest: 8$"),
        ({"num_frames": 40}, "num_frames=40 gives 40 latent frames; the animatediff denoiser has positions for 32 at most"),
        ({"steps": 0}, "steps=0 must be at least 1"),
    ],
)
def test_bad_settings_name_the_value(animatediff, settings, message):
    with pytest.raises(ValueError, match=message):
        animatediff.generate(PROMPT, 0, **settings)


def test_saved_pipeline_loads_with_the_user_path(animatediff, tmp_path, same_weights):
    animatediff.save_pretrained(tmp_path)
    loaded = AnimateDiffBackbone.from_pretrained(tmp_path, animatediff.defaults, torch_dtype=torch.float32)
    same_weights(loaded.pipe, animatediff.pipe)
    np.testing.assert_array_equal(
        loaded.generate(PROMPT, 2, **SMALL).frames, animatediff.generate(PROMPT, 2, **SMALL).frames
    )


def test_base_plus_motion_adapter_loads_with_the_animatediff_sampler(animatediff, tmp_path, same_weights):
    components = _tiny_components(seed=0)  # the same random weights as the fixture
    base = StableDiffusionPipeline(
        vae=components["vae"], text_encoder=components["text_encoder"], tokenizer=components["tokenizer"],
        unet=components["unet"], scheduler=DDIMScheduler(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    base.save_pretrained(tmp_path / "base")
    components["motion_adapter"].save_pretrained(tmp_path / "adapter")
    with pytest.raises(ValueError, match="Stable Diffusion base without motion modules"):
        AnimateDiffBackbone.from_pretrained(tmp_path / "base", animatediff.defaults, torch_dtype=torch.float32)
    loaded = AnimateDiffBackbone.from_pretrained(
        tmp_path / "base", animatediff.defaults, torch_dtype=torch.float32, motion_adapter=tmp_path / "adapter"
    )
    assert type(loaded.pipe.unet).__name__ == "UNetMotionModel"
    assert loaded.pipe.scheduler.config.beta_schedule == "linear" and not loaded.pipe.scheduler.config.clip_sample
    same_weights(loaded.pipe, animatediff.pipe)
    np.testing.assert_array_equal(
        loaded.generate(PROMPT, 2, **SMALL).frames, animatediff.generate(PROMPT, 2, **SMALL).frames
    )


def test_missing_directories_are_named(animatediff, tmp_path):
    with pytest.raises(FileNotFoundError, match="no model_index.json"):
        AnimateDiffBackbone.from_pretrained(tmp_path, animatediff.defaults)
    animatediff.save_pretrained(tmp_path / "pipe")
    with pytest.raises(FileNotFoundError, match="motion_adapter directory .*nowhere"):
        AnimateDiffBackbone.from_pretrained(tmp_path / "pipe", animatediff.defaults, motion_adapter=tmp_path / "nowhere")


@pytest.mark.parametrize("family", ["animatediff", "sparsectrl"])
@pytest.mark.parametrize(
    "method", [ByTheWay(alpha=0.6, beta=1.5, tau=1, active_fraction=1.0), FreeInit(num_iters=2)], ids=["bytheway", "free_init"]
)
def test_methods_change_the_clip_and_detach_restores_it(family, method, request):
    backbone = request.getfixturevalue(family)
    plain = backbone.generate(PROMPT, 6, **SMALL).frames
    with method.attached(backbone.pipe):
        edited = backbone.generate(PROMPT, 6, **SMALL).frames
    assert not np.array_equal(edited, plain)
    np.testing.assert_array_equal(backbone.generate(PROMPT, 6, **SMALL).frames, plain)


def test_sparsectrl_conditions_on_the_image(sparsectrl, tmp_path):
    default = sparsectrl.generate(PROMPT, 0, **SMALL).frames
    assert default.shape == (4, 32, 32, 3) and default.dtype == np.uint8
    np.testing.assert_array_equal(sparsectrl.generate(PROMPT, 0, **SMALL).frames, default)
    card = synthetic_image(32, 32)
    np.testing.assert_array_equal(sparsectrl.generate(PROMPT, 0, **SMALL, conditioning_image=card).frames, default)
    flipped = np.ascontiguousarray(card[::-1, ::-1])
    Image.fromarray(flipped).save(tmp_path / "flipped.png")
    from_path = sparsectrl.generate(PROMPT, 0, **SMALL, conditioning_image=tmp_path / "flipped.png").frames
    np.testing.assert_array_equal(sparsectrl.generate(PROMPT, 0, **SMALL, conditioning_image=flipped).frames, from_path)
    assert not np.array_equal(from_path, default)
    with pytest.raises(FileNotFoundError, match="conditioning_image .*missing.png"):
        sparsectrl.generate(PROMPT, 0, **SMALL, conditioning_image=tmp_path / "missing.png")


def test_sparsectrl_saved_pipeline_loads_with_its_image(sparsectrl, tmp_path, same_weights):
    Image.fromarray(synthetic_image(32, 32)[::-1]).save(tmp_path / "image.png")
    sparsectrl.save_pretrained(tmp_path / "pipe")
    loaded = AnimateDiffSparseCtrlBackbone.from_pretrained(
        tmp_path / "pipe", sparsectrl.defaults, torch_dtype=torch.float32, conditioning_image=tmp_path / "image.png"
    )
    same_weights(loaded.pipe, sparsectrl.pipe)
    np.testing.assert_array_equal(
        loaded.generate(PROMPT, 1, **SMALL).frames,
        sparsectrl.generate(PROMPT, 1, **SMALL, conditioning_image=tmp_path / "image.png").frames,
    )
