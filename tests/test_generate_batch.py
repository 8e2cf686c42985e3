"""Batched generation: each clip of a ``generate_batch`` call is the clip ``generate`` makes alone.

The tiny pipelines run in float64, where the only difference between a batched call and single ones (the batch size
the kernels see) rounds far below a uint8 level: frames must then be identical, and the methods' per-clip records
equal to the last digits. A method that pooled its statistics over the batch instead of per clip would give every
clip of a batch one score (one gain), which the records and the frames would show.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vboost.backbones import get_backbone_class
from vboost.backbones.base import check_batch
from vboost.methods import ByTheWay, EnhanceAVideo

PROMPTS = ["a cat runs on the beach", "a red car in the city at night", "a cat runs on the beach"]
SEEDS = [0, 1, 2]  # the third clip repeats the first prompt with another seed
DIT_FAMILIES = ["cogvideox", "hunyuan_video", "wan", "ltx_video", "opensora"]
UNET_FAMILIES = ["animatediff", "animatediff_sparsectrl", "videocrafter2"]
# Two steps each; VideoCrafter2's tiny U-Net (the slowest) at 8 frames.
SETTINGS = {family: {"steps": 2} for family in DIT_FAMILIES + UNET_FAMILIES} | {"videocrafter2": {"steps": 2, "num_frames": 8}}


def tiny_float64(family: str):
    backbone = get_backbone_class(family).tiny(seed=0)
    for component in backbone.pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.to(torch.float64)
    return backbone


def method_for(family: str):
    if family in DIT_FAMILIES:
        return EnhanceAVideo(weight=4.0)
    return ByTheWay(alpha=0.6, beta=1.5, tau=3, active_fraction=1.0)


@pytest.fixture(scope="module", params=DIT_FAMILIES + UNET_FAMILIES)
def family_backbone(request):
    return request.param, tiny_float64(request.param)


def test_plain_batch_equals_clips_alone(family_backbone):
    family, backbone = family_backbone
    settings = SETTINGS[family]
    batch = backbone.generate_batch(PROMPTS, SEEDS, **settings)
    alone = [backbone.generate(prompt, seed, **settings) for prompt, seed in zip(PROMPTS, SEEDS)]
    assert len(batch) == len(PROMPTS)
    for one, reference in zip(batch, alone):
        assert one.fps == reference.fps
        np.testing.assert_array_equal(one.frames, reference.frames)
    assert (batch[0].frames != batch[2].frames).any()  # another seed, another clip


def test_method_in_a_batch_keeps_each_clips_statistics(family_backbone):
    family, backbone = family_backbone
    settings, method = SETTINGS[family], method_for(family)
    with method.attached(backbone.pipe) as handle:
        batch = backbone.generate_batch(PROMPTS, SEEDS, **settings)
    batched_records = handle.records
    alone, alone_records = [], []
    for prompt, seed in zip(PROMPTS, SEEDS):
        with method.attached(backbone.pipe) as single:
            alone.append(backbone.generate(prompt, seed, **settings))
        alone_records.append(single.records)
    for clip, (one, reference) in enumerate(zip(batch, alone)):
        np.testing.assert_array_equal(one.frames, reference.frames)
        mine = [r for r in batched_records if r["clip"] == clip]
        assert len(mine) == len(alone_records[clip]) > 0
        for got, expected in zip(mine, alone_records[clip]):
            assert got.keys() == expected.keys()
            for key, value in expected.items():
                if key != "clip":
                    assert got[key] == (pytest.approx(value, rel=1e-9, nan_ok=True) if isinstance(value, float) else value)
    # The clips' statistics differ, so one pooled over the batch would have matched none of them.
    key = "cfi" if isinstance(method, EnhanceAVideo) else "E1"
    first_call = {r["clip"]: r[key] for r in batched_records[:3]}
    assert len(first_call) == 3 and abs(first_call[0] - first_call[1]) > 1e-6 * abs(first_call[0])
    # The summary of a batched trial is the summary of the same clips made one by one (equal records per clip).
    summaries = [summary_by_hand(records) for records in alone_records]
    for name, value in handle.summary().items():
        assert value == pytest.approx(np.mean([summary[name] for summary in summaries]), rel=1e-9, nan_ok=True), name


def summary_by_hand(records):
    """``MethodHandle.summary`` of ``records``, computed by hand: the mean of every numeric diagnostic."""
    names = {k for r in records for k, v in r.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "num_steps", "clip")}
    return {name: float(np.mean([r[name] for r in records])) for name in names}


def test_float32_batch_matches_clips_alone_to_rounding():
    backbone = get_backbone_class("cogvideox").tiny(seed=0)
    with EnhanceAVideo(weight=4.0).attached(backbone.pipe):
        batch = backbone.generate_batch(PROMPTS[:2], SEEDS[:2], steps=3)
        alone = [backbone.generate(prompt, seed, steps=3) for prompt, seed in zip(PROMPTS[:2], SEEDS[:2])]
    for one, reference in zip(batch, alone):
        assert np.abs(one.frames.astype(int) - reference.frames.astype(int)).max() <= 1


@pytest.mark.parametrize("prompts,seeds", [([], []), (["a cat"], [0, 1]), (["a cat", "a dog"], [0])])
def test_a_batch_needs_one_seed_per_prompt(prompts, seeds):
    with pytest.raises(ValueError, match=f"got {len(prompts)} prompts and {len(seeds)} seeds"):
        check_batch(prompts, seeds)
