"""FreeU through diffusers' enable_freeu: vboost's method gives what diffusers' own pipeline call gives, restores the
U-Net's previous setting on detach, and is refused where there is no U-Net."""

from __future__ import annotations

import pytest

from vboost.backbones import backbone_spec, get_backbone_class
from vboost.methods import FreeU, UnsupportedModelError
from vboost.methods.preset import Preset

PROMPT = "a cat walks on the beach"
ANIMATEDIFF = FreeU(b1=1.5, b2=1.6, s1=0.9, s2=0.2)  # the published SD1.5 values


@pytest.fixture(scope="module")
def backbone():
    return get_backbone_class("animatediff").tiny(seed=0)


def test_freeu_is_diffusers_enable_freeu_and_detach_restores(backbone):
    plain = backbone.generate(PROMPT, 0).frames
    backbone.pipe.enable_freeu(s1=0.9, s2=0.2, b1=1.5, b2=1.6)  # diffusers' own pipeline call, by hand
    try:
        by_hand = backbone.generate(PROMPT, 0).frames
    finally:
        backbone.pipe.disable_freeu()
    with ANIMATEDIFF.attached(backbone.pipe):
        tuned = backbone.generate(PROMPT, 0).frames
    assert (tuned == by_hand).all() and (tuned != plain).any()
    assert (backbone.generate(PROMPT, 0).frames == plain).all()


def test_detach_puts_back_a_previous_setting(backbone):
    backbone.pipe.enable_freeu(s1=0.9, s2=0.2, b1=1.2, b2=1.4)  # ModelScope's published values
    try:
        before = backbone.generate(PROMPT, 1).frames
        with ANIMATEDIFF.attached(backbone.pipe):
            assert backbone.pipe.unet.up_blocks[0].b1 == 1.5
        assert backbone.pipe.unet.up_blocks[1].b2 == 1.4
        assert (backbone.generate(PROMPT, 1).frames == before).all()
    finally:
        backbone.pipe.disable_freeu()


def test_knobs_and_backbones_are_checked():
    with pytest.raises(ValueError, match="b2 must be a finite number"):
        FreeU(b1=1.5, b2=float("inf"), s1=0.9, s2=0.2)
    FreeU.check_backbone(backbone_spec("animatediff_sparsectrl"))
    with pytest.raises(UnsupportedModelError, match="WanTransformer3DModel"):
        FreeU.check_backbone(backbone_spec("wan_modular"))


def test_comfyui_says_why_no_values_are_given():
    export = ANIMATEDIFF.comfyui(Preset.from_method(ANIMATEDIFF, backbone="animatediff"))
    assert export.nodes == [] and "by channel count" in export.notes[0]
