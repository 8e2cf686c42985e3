"""ByTheWay on a tiny AnimateDiff U-Net, against a temporal attention hand-rolled from the module weights."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention
from test_bytheway_ops import numpy_reference

from vboost.backbones.animatediff import AnimateDiffBackbone
from vboost.methods.base import UnsupportedModelError
from vboost.methods.bytheway import ByTheWay

PROMPT = "a red car drives along a coast road"
FRAMES, SIZE = 4, 64  # 64 px -> 8x8 latents: up_blocks.1/2/3 see 2x2, 4x4 and 8x8 positions
KNOBS = {"alpha": 0.6, "beta": 1.5, "tau": 1}
SITE_NAME = re.compile(r"up_blocks\.[123]\.motion_modules\.\d+\.transformer_blocks\.0\.attn[12]")


@pytest.fixture(scope="module")
def backbone() -> AnimateDiffBackbone:
    return AnimateDiffBackbone.tiny(seed=0)


@pytest.fixture(scope="module")
def plain(backbone) -> np.ndarray:
    return generate(backbone)


def generate(backbone: AnimateDiffBackbone, steps: int = 2, guidance: float = 7.5) -> np.ndarray:
    return backbone.generate(PROMPT, 3, num_frames=FRAMES, height=SIZE, width=SIZE, steps=steps, guidance=guidance).frames


def capture_attention_calls(unet: torch.nn.Module) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], list]:
    """Input and output of the first call of every attention module."""
    calls: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = []
    for name, module in unet.named_modules():
        if isinstance(module, Attention):

            def keep(module, args, output, name=name):
                calls.setdefault(name, (args[0].detach().clone(), output.detach().clone()))

            hooks.append(module.register_forward_hook(keep))
    return calls, hooks


def temporal_attention_by_hand(attn: Attention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax maps ``[B*h*w, heads, F, F]`` and values ``[B*h*w, heads, F, d]`` in float64, from the weights."""
    x = x.double()
    q, k, v = (x @ layer.weight.double().T for layer in (attn.to_q, attn.to_k, attn.to_v))
    rows, frames, inner = q.shape

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(rows, frames, attn.heads, inner // attn.heads).transpose(1, 2)

    q, k, v = split(q), split(k), split(v)
    probs = (q @ k.transpose(-1, -2) * (inner // attn.heads) ** -0.5).softmax(-1)
    return probs, v


def nearest_resize(maps: torch.Tensor, batch: int, size_from: int, size_to: int) -> torch.Tensor:
    """``[B*s*s, heads, F, F] -> [B*t*t, heads, F, F]`` taking position ``floor(y * s / t)`` (torch's 'nearest')."""
    grid = maps.reshape(batch, size_from, size_from, *maps.shape[1:])
    index = torch.arange(size_to) * size_from // size_to
    return grid[:, index][:, :, index].reshape(batch * size_to * size_to, *maps.shape[1:])


def animatediff_anchor(name: str) -> str:
    """The site of ``up_blocks.1`` that guides ``name`` (same motion module, layer and attention)."""
    return re.sub(r"^up_blocks\.\d", "up_blocks.1", name)


@torch.no_grad()
def check_against_hand_rolled(
    unet, calls, records, batch: int, cfg_batched: bool, sites: re.Pattern = SITE_NAME, anchor_of=animatediff_anchor
) -> None:
    """Every site's output and diagnostics against the edit recomputed from its weights and captured input.

    ``anchor_of(name)`` names the anchor-stage site that guides ``name`` (itself for an anchor). The anchor's map is
    averaged over heads where the two stages' head counts differ, then resized nearest over positions.
    """
    reference_maps = {}
    names = sorted((n for n in calls if sites.fullmatch(n)), key=lambda n: (anchor_of(n) != n, n))  # anchors first
    for name in names:
        attn = unet.get_submodule(name)
        x, output = calls[name]
        probs, values = temporal_attention_by_hand(attn, x)
        size = math.isqrt(x.shape[0] // batch)
        assert x.shape[0] == batch * size * size
        if anchor_of(name) == name:
            reference_maps[name] = (probs, size)
        anchor, anchor_size = reference_maps[anchor_of(name)]
        rows, heads = probs.shape[0], probs.shape[1]
        if anchor.shape[1] != heads:
            anchor = anchor.mean(1, keepdim=True).expand(-1, heads, -1, -1)
        anchor = nearest_resize(anchor, batch, anchor_size, size)
        edited, stats = numpy_reference(
            probs.flatten(0, 1), anchor.flatten(0, 1), clip_negative=False, cfg_batched=cfg_batched, **KNOBS
        )
        frames = probs.shape[-1]
        out = torch.from_numpy(edited).reshape(rows, heads, frames, frames) @ values
        out = out.transpose(1, 2).reshape(rows, frames, -1)
        out = out @ attn.to_out[0].weight.double().T + attn.to_out[0].bias.double()
        torch.testing.assert_close(output.double(), out, rtol=1e-4, atol=1e-5)
        (record,) = [r for r in records if r["layer"] == name]
        for key in ("E1", "E2", "E3", "beta", "beta_c"):
            if math.isnan(stats[key]):
                assert math.isnan(record[key]), (name, key)
            else:
                assert record[key] == pytest.approx(stats[key], rel=1e-4), (name, key)


def test_pipeline_matches_hand_rolled_attention_with_cfg_halves(backbone):
    unet = backbone.pipe.unet
    with ByTheWay(**KNOBS, active_fraction=1.0).attached(backbone.pipe) as handle:
        calls, hooks = capture_attention_calls(unet)
        try:
            generate(backbone, steps=1)
        finally:
            for hook in hooks:
                hook.remove()
    sites = sorted(n for n in calls if SITE_NAME.fullmatch(n))
    assert len(sites) == 12  # 3 up blocks x 2 motion modules x attn1/attn2
    assert sorted(r["layer"] for r in handle.records) == sites
    check_against_hand_rolled(unet, calls, handle.records, batch=2, cfg_batched=True)


def test_bare_module_is_active_and_treats_every_row_as_conditional(backbone):
    unet = backbone.pipe.unet
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 4, FRAMES, SIZE // 8, SIZE // 8, generator=gen)
    text = torch.randn(2 * FRAMES, 77, 32, generator=gen)
    with ByTheWay(**KNOBS).attached(unet) as handle:
        calls, hooks = capture_attention_calls(unet)
        try:
            with torch.no_grad():
                unet(sample, 500, encoder_hidden_states=text)
        finally:
            for hook in hooks:
                hook.remove()
    check_against_hand_rolled(unet, calls, handle.records, batch=2, cfg_batched=False)


def test_only_up_block_temporal_attention_is_swapped_and_detach_restores(backbone, plain):
    unet = backbone.pipe.unet
    before = {name: module.processor for name, module in unet.named_modules() if isinstance(module, Attention)}
    with ByTheWay(**KNOBS, active_fraction=1.0).attached(backbone.pipe):
        swapped = {name for name, module in unet.named_modules() if isinstance(module, Attention) and module.processor is not before[name]}
        assert swapped == {name for name in before if SITE_NAME.fullmatch(name)}
        edited = generate(backbone)
    assert not np.array_equal(edited, plain)
    assert all(module.processor is before[name] for name, module in unet.named_modules() if isinstance(module, Attention))
    np.testing.assert_array_equal(generate(backbone), plain)


def test_inactive_steps_run_the_original_processors(backbone, plain):
    # round(0.2 * 2) = 0 active steps: the default fraction at two steps never edits.
    with ByTheWay(**KNOBS).attached(backbone.pipe) as handle:
        np.testing.assert_array_equal(generate(backbone), plain)
    assert handle.records == []
    # round(0.5 * 2) = 1 active step of 2
    with ByTheWay(**KNOBS, active_fraction=0.5).attached(backbone.pipe) as handle:
        generate(backbone)
    assert [r["step"] for r in handle.records] == [0] * 12


def test_guidance_one_means_no_unconditional_half(backbone):
    with ByTheWay(**KNOBS, active_fraction=1.0).attached(backbone.pipe) as handle:
        calls, hooks = capture_attention_calls(backbone.pipe.unet)
        try:
            generate(backbone, steps=1, guidance=1.0)
        finally:
            for hook in hooks:
                hook.remove()
    check_against_hand_rolled(backbone.pipe.unet, calls, handle.records, batch=1, cfg_batched=False)


def test_tau_beyond_the_frame_count_names_the_limit(backbone):
    # Checked at the first denoiser call even though round(0.2 * 1) = 0 steps would be active.
    with ByTheWay(alpha=0.6, beta=1.5, tau=7).attached(backbone.pipe):
        with pytest.raises(ValueError, match="tau=7 exceeds 1 for F=4"):
            generate(backbone, steps=1)


def test_attaching_twice_is_refused(backbone):
    with ByTheWay(**KNOBS).attached(backbone.pipe):
        with pytest.raises(RuntimeError, match="already attached"):
            ByTheWay(**KNOBS).attach(backbone.pipe.unet)


def test_a_dit_is_not_supported():
    from diffusers import CogVideoXTransformer3DModel

    dit = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, time_embed_dim=8, text_embed_dim=8, num_layers=1,
        sample_width=8, sample_height=8, sample_frames=5, max_text_seq_length=8,
    )
    with pytest.raises(UnsupportedModelError, match="CogVideoXTransformer3DModel.*UNetMotionModel"):
        ByTheWay(**KNOBS).attach(dit)


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"alpha": -0.1}, r"alpha must be in \[0, 1\]; got -0.1"),
        ({"beta": -1.0}, "beta must be a finite positive number; got -1.0"),
        ({"tau": 1.5}, "tau must be a non-negative int; got 1.5"),
        ({"active_fraction": 1.2}, r"active_fraction must be in \[0, 1\]; got 1.2"),
    ],
)
def test_bad_knobs_name_the_value(knobs, message):
    with pytest.raises(ValueError, match=message):
        ByTheWay(**{**KNOBS, **knobs})
