"""ByTheWay on VideoCrafter2's U-Net, ModelScope's UNet3DConditionModel and Stable Video Diffusion's U-Net (tiny,
random weights), against temporal attention rebuilt by hand from the module weights."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from diffusers import TextToVideoSDPipeline, UNet3DConditionModel, UNetSpatioTemporalConditionModel
from diffusers.models.attention_processor import Attention
from test_bytheway import KNOBS, capture_attention_calls, check_against_hand_rolled

from vboost.backbones.animatediff import _tiny_components
from vboost.backbones.videocrafter2 import VideoCrafter2Backbone
from vboost.methods.base import UnsupportedModelError
from vboost.methods.bytheway import ByTheWay

FRAMES, LATENT = 4, 8  # up stages 1, 2, 3 see 2x2, 4x4 and 8x8 positions


@dataclass
class Case:
    """A tiny U-Net, a bare call of it on ``batch`` videos, its sites and the anchor rule written out by hand."""

    unet: torch.nn.Module
    call: Callable[[torch.nn.Module], torch.Tensor]
    sites: re.Pattern
    anchor_of: Callable[[str], str]
    count: int
    batch: int = 2


def _videocrafter2() -> Case:
    unet = VideoCrafter2Backbone.tiny(seed=0).pipe.unet
    gen = torch.Generator().manual_seed(0)
    sample, text = torch.randn(2, 4, FRAMES, LATENT, LATENT, generator=gen), torch.randn(2, 77, 128, generator=gen)

    def call(unet):
        return unet(sample, torch.tensor([901, 301]), text, fps=28).sample

    # output_blocks 3-5 anchor 6-8 and 9-11, block for block; heads halve from stage to stage (4, 4, 2 here).
    def anchor_of(name):
        return re.sub(r"^output_blocks\.(\d+)", lambda m: f"output_blocks.{3 + int(m[1]) % 3}", name)

    return Case(unet, call, re.compile(r"output_blocks\.([3-9]|1[01])\.2\.transformer_blocks\.0\.attn[12]"), anchor_of, 18)


def _up_blocks_anchor(name: str) -> str:
    return re.sub(r"^up_blocks\.\d", "up_blocks.1", name)


def _modelscope() -> Case:
    torch.manual_seed(0)
    unet = UNet3DConditionModel(
        sample_size=LATENT, block_out_channels=(32, 64, 64, 64), layers_per_block=1, cross_attention_dim=32,
        attention_head_dim=2, norm_num_groups=32,
    ).eval()
    gen = torch.Generator().manual_seed(0)
    sample, text = torch.randn(2, 4, FRAMES, LATENT, LATENT, generator=gen), torch.randn(2, 7, 32, generator=gen)

    def call(unet):
        return unet(sample, 500, encoder_hidden_states=text).sample

    return Case(unet, call, re.compile(r"up_blocks\.[123]\.temp_attentions\.\d\.transformer_blocks\.0\.attn[12]"), _up_blocks_anchor, 12)


def _stable_video_diffusion() -> Case:
    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        sample_size=LATENT, block_out_channels=(32, 64, 64, 64), layers_per_block=1, cross_attention_dim=32,
        num_attention_heads=(1, 2, 4, 4), addition_time_embed_dim=8, projection_class_embeddings_input_dim=24, num_frames=FRAMES,
    ).eval()
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(2, FRAMES, 8, LATENT, LATENT, generator=gen)  # frames on axis 1
    image, time_ids = torch.randn(2, 1, 32, generator=gen), torch.tensor([[6.0, 127.0, 0.02]] * 2)

    def call(unet):
        return unet(sample, 1.5, encoder_hidden_states=image, added_time_ids=time_ids).sample

    # Only attn1 of a temporal block attends over frames (attn2 reads the image embedding); heads are 4, 2, 1.
    return Case(
        unet, call, re.compile(r"up_blocks\.[123]\.attentions\.\d\.temporal_transformer_blocks\.0\.attn1"), _up_blocks_anchor, 6
    )


CASES = {
    "VideoCrafter2UNet": _videocrafter2,
    "UNet3DConditionModel": _modelscope,
    "UNetSpatioTemporalConditionModel": _stable_video_diffusion,
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request) -> Case:
    return CASES[request.param]()


def test_every_decoder_temporal_self_attention_matches_the_hand_rolled_edit(case):
    before = {name: module.processor for name, module in case.unet.named_modules() if isinstance(module, Attention)}
    with ByTheWay(**KNOBS).attached(case.unet) as handle:
        modules = case.unet.named_modules()
        swapped = {name for name, module in modules if isinstance(module, Attention) and module.processor is not before[name]}
        calls, hooks = capture_attention_calls(case.unet)
        try:
            with torch.no_grad():
                case.call(case.unet)
        finally:
            for hook in hooks:
                hook.remove()
    assert swapped == {name for name in before if case.sites.fullmatch(name)}
    assert len(swapped) == case.count
    assert sorted(r["layer"] for r in handle.records) == sorted(swapped)
    # A bare module call has no CFG halves: every row is conditional.
    check_against_hand_rolled(case.unet, calls, handle.records, case.batch, False, sites=case.sites, anchor_of=case.anchor_of)


def test_detach_restores_the_bit_identical_output(case):
    with torch.no_grad():
        plain = case.call(case.unet)
        with ByTheWay(**KNOBS).attached(case.unet):
            edited = case.call(case.unet)
        restored = case.call(case.unet)
    assert (edited - plain).abs().max() > 1e-4
    assert torch.equal(restored, plain)


def test_tau_is_checked_against_the_frames_of_the_sample(case):
    with ByTheWay(alpha=0.6, beta=1.5, tau=2).attached(case.unet):
        with pytest.raises(ValueError, match=f"tau=2 exceeds 1 for F={FRAMES}"):
            with torch.no_grad():
                case.call(case.unet)


def test_videocrafter2_pipeline_edits_with_cfg_halves_in_its_step_window():
    backbone = VideoCrafter2Backbone.tiny(seed=0)
    pipe, case = backbone.pipe, _videocrafter2()
    settings = {"num_frames": FRAMES, "height": 64, "width": 64, "guidance": 12.0}
    with ByTheWay(**KNOBS, active_fraction=1.0).attached(pipe) as handle:
        calls, hooks = capture_attention_calls(pipe.unet)
        try:
            backbone.generate("a red car in the city at night", 0, steps=1, **settings)
        finally:
            for hook in hooks:
                hook.remove()
    # The pipeline batches [uncond, cond]: energies come from the second half of the rows.
    check_against_hand_rolled(pipe.unet, calls, handle.records, 2, True, sites=case.sites, anchor_of=case.anchor_of)
    # Two steps with the first half active: the pipeline's scheduler drives the step window.
    plain = backbone.generate("a red car in the city at night", 0, steps=2, **settings).frames
    with ByTheWay(**KNOBS, active_fraction=0.5).attached(pipe) as handle:
        edited = backbone.generate("a red car in the city at night", 0, steps=2, **settings).frames
    assert {(r["step"], r["num_steps"]) for r in handle.records} == {(0, 2)}
    assert not np.array_equal(edited, plain)


def test_a_pipeline_that_does_not_say_whether_it_batches_cfg_is_refused():
    # ModelScope's pipeline keeps its CFG switch local: energies would silently include the unconditional rows.
    parts = {name: part for name, part in _tiny_components(0).items() if name != "motion_adapter"}
    unet = _modelscope().unet
    pipe = TextToVideoSDPipeline(**{**parts, "unet": unet})
    processors = {name: module.processor for name, module in unet.named_modules() if isinstance(module, Attention)}
    with pytest.raises(UnsupportedModelError, match="TextToVideoSDPipeline does not say whether it batches classifier-free guidance"):
        ByTheWay(**KNOBS).attach(pipe)
    assert all(module.processor is processors[name] for name, module in unet.named_modules() if isinstance(module, Attention))
    assert "step" not in vars(pipe.scheduler)  # the step tracker is gone again
    pipe.do_classifier_free_guidance = True  # what the message asks for
    ByTheWay(**KNOBS).attach(pipe).detach()
