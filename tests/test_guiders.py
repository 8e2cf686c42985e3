"""Guider methods on tiny modular pipelines: every step's prediction is the guider's formula applied by hand to the
conditional, unconditional and skip predictions the denoiser made (restated from the papers' definitions, not through
diffusers' guider code); the skip prediction is the denoiser run again by hand with the block bypassed; detaching
restores the pipeline bit for bit."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import diffusers
import pytest
import torch

from vboost.backbones import backbone_spec, get_backbone_class
from vboost.methods import (
    AdaptiveProjectedGuidance,
    ClassifierFreeGuidance,
    ClassifierFreeZeroStarGuidance,
    SkipLayerGuidance,
    UnsupportedModelError,
)
from vboost.methods.guiders import BLOCK_STACKS, SKIPS
from vboost.methods.preset import Preset

PROMPT = "a red car in the city at night"
FAMILIES = ["wan_modular", "ltx_modular", "hunyuan_video15_modular"]
# Where each denoiser keeps a block's feed-forwards (what skip="feed_forward" bypasses: HunyuanVideo 1.5's text stream
# has one of its own).
FEED_FORWARD = {"WanTransformer3DModel": ("ffn",), "LTXVideoTransformer3DModel": ("ff",),
                "HunyuanVideo15Transformer3DModel": ("ff", "ff_context")}


@pytest.fixture(scope="module", params=FAMILIES)
def backbone(request):
    return get_backbone_class(request.param).tiny(seed=0)


class Recorder:
    """Every denoiser call of a generation (its inputs, output and step) and every step's guided prediction (what the
    scheduler's ``step`` receives)."""

    def __init__(self, backbone) -> None:
        self.backbone, self.calls, self.guided = backbone, [], []

    def __enter__(self) -> "Recorder":
        pipe = self.backbone.pipe
        self.hook = pipe.transformer.register_forward_hook(self._on_call, with_kwargs=True)
        step = pipe.scheduler.step

        def recording_step(model_output, *args, **kwargs):
            self.guided.append(model_output.detach().clone())
            return step(model_output, *args, **kwargs)

        pipe.scheduler.step = recording_step
        return self

    def _on_call(self, module, args, kwargs, output) -> None:
        self.calls.append({"step": len(self.guided), "args": args, "kwargs": dict(kwargs), "out": output[0].detach().clone()})

    def __exit__(self, *exc) -> None:
        self.hook.remove()
        vars(self.backbone.pipe.scheduler).pop("step")

    def predictions(self, step: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The conditional-prompt predictions (in call order) and the unconditional ones of ``step``."""
        positive = self.backbone._prompt_cache[PROMPT]["prompt_embeds"]
        calls = [c for c in self.calls if c["step"] == step]
        cond = [c for c in calls if torch.equal(c["kwargs"]["encoder_hidden_states"], positive)]
        uncond = [c for c in calls if not any(c is other for other in cond)]
        return cond, uncond


def generate(backbone):
    with Recorder(backbone) as recorder:
        frames = backbone.generate(PROMPT, 0).frames
    return frames, recorder


def rerun_skipping(backbone, call, layer: int, skip: str) -> torch.Tensor:
    """The denoiser's output for ``call``'s inputs with block ``layer`` (or its feed-forward) bypassed by hand."""
    denoiser = backbone.pipe.transformer
    name = type(denoiser).__name__
    block = denoiser.get_submodule(BLOCK_STACKS[name].fqn)[layer]
    bypassed = [block] if skip == "block" else [getattr(block, ff) for ff in FEED_FORWARD[name]]

    def identity(module, args, kwargs, output):
        return kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]

    hooks = [module.register_forward_hook(identity, with_kwargs=True) for module in bypassed]
    try:
        with torch.no_grad():
            return denoiser(*call["args"], **call["kwargs"])[0]
    finally:
        for hook in hooks:
            hook.remove()


def first_skip(backbone) -> str:
    """The first skip kind diffusers' hooks can apply to the backbone's blocks (``block`` where whole blocks can be
    skipped)."""
    return BLOCK_STACKS[type(backbone.denoiser).__name__].skips[0]


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual.float(), expected.float(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("skip", ["block", "feed_forward"])
def test_skip_layer_guidance_is_u_plus_g_shift_plus_s_skip_shift(backbone, skip):
    if skip not in BLOCK_STACKS[type(backbone.denoiser).__name__].skips:
        # What diffusers cannot skip in this model's blocks is refused on attach (the error's own test is
        # test_bad_knobs_fail_on_attach_before_generation); the stack table's test checks diffusers refuses it too.
        with pytest.raises(ValueError, match=f"skip={skip!r}"):
            SkipLayerGuidance(layers=1, skip=skip).attach(backbone.pipe)
        return
    steps, g, s = backbone.defaults.steps, backbone.defaults.guidance, 1.7
    method = SkipLayerGuidance(layers=1, skip=skip, skip_layer_guidance_scale=s,
                               skip_layer_guidance_start=0.0, skip_layer_guidance_stop=1.0)
    with method.attached(backbone.pipe):
        _, recorder = generate(backbone)
    for i in range(steps):
        cond, (uncond,) = recorder.predictions(i)
        c, u = cond[0]["out"], uncond["out"]
        if 0 < i < steps:  # strict on both sides: int(0 N) < i < int(1 N)
            c_call, skip_call = cond
            close(skip_call["out"], rerun_skipping(backbone, c_call, 1, skip))
            close(recorder.guided[i], u + g * (c - u) + s * (c - skip_call["out"]))
        else:
            assert len(cond) == 1
            close(recorder.guided[i], u + g * (c - u))


def test_classifier_free_guidance_window_and_scale(backbone):
    steps, g = backbone.defaults.steps, 6.5
    method = ClassifierFreeGuidance(guidance_scale=g, stop=0.67)
    with method.attached(backbone.pipe):
        _, recorder = generate(backbone)
    guided = int(0.67 * steps)
    for i in range(steps):
        cond, uncond = recorder.predictions(i)
        c = cond[0]["out"]
        if i < guided:
            close(recorder.guided[i], uncond[0]["out"] + g * (c - uncond[0]["out"]))
        else:
            assert uncond == []  # outside the window the unconditional prediction is not even computed
            close(recorder.guided[i], c)


def test_cfg_zero_star_zeroes_then_projects(backbone):
    g = backbone.defaults.guidance
    with ClassifierFreeZeroStarGuidance(zero_init_steps=1).attached(backbone.pipe):
        _, recorder = generate(backbone)
    assert torch.count_nonzero(recorder.guided[0]) == 0
    for i in range(1, backbone.defaults.steps):
        cond, (uncond,) = recorder.predictions(i)
        c, u = cond[0]["out"].float(), uncond["out"].float()
        alpha = (c * u).flatten(1).sum(1) / ((u * u).flatten(1).sum(1) + 1e-8)
        alpha = alpha.view(-1, *[1] * (c.ndim - 1))
        close(recorder.guided[i], alpha * u + g * (c - alpha * u))


def test_adaptive_projected_guidance_caps_and_projects(backbone):
    g, eta, cap = 4.0, 0.25, 0.5
    method = AdaptiveProjectedGuidance(guidance_scale=g, eta=eta, adaptive_projected_guidance_rescale=cap)
    with method.attached(backbone.pipe):
        _, recorder = generate(backbone)
    for i in range(backbone.defaults.steps):
        cond, (uncond,) = recorder.predictions(i)
        c, u = cond[0]["out"].double(), uncond["out"].double()
        dims = list(range(1, c.ndim))
        diff = c - u
        diff = diff * torch.clamp(cap / torch.linalg.vector_norm(diff, dim=dims, keepdim=True), max=1.0)
        unit = c / torch.linalg.vector_norm(c, dim=dims, keepdim=True)
        parallel = (diff * unit).sum(dim=dims, keepdim=True) * unit
        close(recorder.guided[i], u + g * ((diff - parallel) + eta * parallel))


@pytest.mark.parametrize("method", [
    SkipLayerGuidance(layers=0, skip_layer_guidance_stop=1.0), ClassifierFreeGuidance(guidance_scale=9.0),
    ClassifierFreeZeroStarGuidance(zero_init_steps=2), AdaptiveProjectedGuidance(guidance_scale=8.0, eta=0.0),
], ids=lambda m: m.name)
def test_detach_restores_bit_identical_output(backbone, method):
    if isinstance(method, SkipLayerGuidance):
        method = dataclasses.replace(method, skip=first_skip(backbone))
    plain = backbone.generate(PROMPT, 3).frames
    guider = backbone.pipe.guider
    with method.attached(backbone.pipe):
        assert backbone.pipe.guider is not guider
        changed = backbone.generate(PROMPT, 3).frames
    assert backbone.pipe.guider is guider
    assert (changed != plain).any()
    assert (backbone.generate(PROMPT, 3).frames == plain).all()


def test_guidance_scale_none_keeps_the_backbones(backbone):
    with SkipLayerGuidance(layers=0, skip=first_skip(backbone)).attached(backbone.pipe):
        assert backbone.pipe.guider.guidance_scale == backbone.defaults.guidance
        with pytest.raises(ValueError, match="attached guider method sets the guidance"):
            backbone.generate(PROMPT, 0, guidance=backbone.defaults.guidance + 1)
    with SkipLayerGuidance(layers=0, skip=first_skip(backbone), guidance_scale=2.5).attached(backbone.pipe):
        assert backbone.pipe.guider.guidance_scale == 2.5
        assert backbone.pipe.guider.skip_layer_config[0].fqn == BLOCK_STACKS[type(backbone.denoiser).__name__].fqn


def test_second_expert_gets_its_own_guider():
    backbone = get_backbone_class("wan22_modular").tiny(seed=0)
    first, second = backbone.pipe.guider, backbone.pipe.guider_2
    assert (first.guidance_scale, second.guidance_scale) == (4.0, 3.0)
    with SkipLayerGuidance(layers=1).attached(backbone.pipe, "transformer_2"):
        assert backbone.pipe.guider is first and type(backbone.pipe.guider_2).__name__ == "SkipLayerGuidance"
        assert backbone.pipe.guider_2.guidance_scale == 3.0  # the expert's own scale is kept
    with ClassifierFreeGuidance(guidance_scale=6.0).attached(backbone.pipe):  # no component: both experts
        assert backbone.pipe.guider.guidance_scale == backbone.pipe.guider_2.guidance_scale == 6.0
    assert (backbone.pipe.guider, backbone.pipe.guider_2) == (first, second)


def test_non_modular_backbones_are_refused_with_the_reason():
    with pytest.raises(UnsupportedModelError, match="modular pipeline; backbone 'wan' is not one"):
        SkipLayerGuidance.check_backbone(backbone_spec("wan"))
    SkipLayerGuidance.check_backbone(backbone_spec("wan_modular"))
    with pytest.raises(UnsupportedModelError, match="does not support UNetMotionModel"):
        ClassifierFreeGuidance.check_backbone(backbone_spec("animatediff"))
    plain = get_backbone_class("wan").tiny(seed=0)
    with pytest.raises(UnsupportedModelError, match="WanPipeline is not one"):
        ClassifierFreeGuidance(guidance_scale=3.0).attach(plain.pipe)
    assert "step" not in vars(plain.pipe.scheduler)  # the failed attach left the scheduler alone


def test_ltx2_keeps_its_own_guider_and_says_why():
    spec = backbone_spec("ltx2_modular")
    guiders = (ClassifierFreeGuidance, ClassifierFreeZeroStarGuidance, AdaptiveProjectedGuidance, SkipLayerGuidance)
    for method in guiders:
        with pytest.raises(UnsupportedModelError, match="runs LTX2Guidance only"):
            method.check_backbone(spec)
    backbone = get_backbone_class("ltx2_modular").tiny(seed=0)
    guider = backbone.pipe.guider
    with pytest.raises(UnsupportedModelError, match="cannot guide LTX2VideoTransformer3DModel"):
        ClassifierFreeGuidance(guidance_scale=3.0).attach(backbone.pipe)
    assert backbone.pipe.guider is guider and "step" not in vars(backbone.pipe.scheduler)
    # What the refusal spares: diffusers' generic guider set by hand fails in LTX-2's denoise step.
    backbone.pipe.update_components(guider=diffusers.ClassifierFreeGuidance(guidance_scale=3.0))
    with pytest.raises(AttributeError, match="spatio_temporal_guidance_blocks"):
        backbone.generate(PROMPT, 0, steps=1)


def test_bad_knobs_fail_on_attach_before_generation(backbone):
    guider = backbone.pipe.guider
    with pytest.raises(ValueError, match="index 5 is beyond the denoiser's 2 blocks"):
        SkipLayerGuidance(layers=5, skip=first_skip(backbone)).attach(backbone.pipe)
    for skip in sorted(set(SKIPS) - set(BLOCK_STACKS[type(backbone.denoiser).__name__].skips)):
        with pytest.raises(ValueError, match=f"skip={skip!r}"):
            SkipLayerGuidance(layers=0, skip=skip).attach(backbone.pipe)
    assert backbone.pipe.guider is guider
    for kwargs, knob in [({"zero_init_steps": -1}, "zero_init_steps"), ({"stop": 1.5}, "stop"),
                         ({"guidance_scale": float("nan")}, "guidance_scale")]:
        with pytest.raises(ValueError, match=knob):
            ClassifierFreeZeroStarGuidance(**kwargs)


@pytest.mark.parametrize("denoiser_class", sorted(BLOCK_STACKS))
@pytest.mark.parametrize("skip", sorted(SKIPS))
def test_block_stack_table_is_what_diffusers_hooks_can_do(denoiser_class, skip):
    from diffusers import LayerSkipConfig
    from diffusers.hooks.layer_skip import _apply_layer_skip_hook

    family = {"WanTransformer3DModel": "wan_modular", "LTXVideoTransformer3DModel": "ltx_modular",
              "HunyuanVideo15Transformer3DModel": "hunyuan_video15_modular"}[denoiser_class]
    backbone = get_backbone_class(family).tiny(seed=0)
    config = LayerSkipConfig(indices=[0], fqn=BLOCK_STACKS[denoiser_class].fqn, **SKIPS[skip])
    with Recorder(backbone) as recorder:
        backbone.generate(PROMPT, 0)
    call = recorder.calls[0]
    try:
        _apply_layer_skip_hook(backbone.pipe.transformer, config, name="probe")
        with torch.no_grad():
            backbone.pipe.transformer(*call["args"], **call["kwargs"])
        works = True
    except (ValueError, AttributeError):
        works = False
    assert works == (skip in BLOCK_STACKS[denoiser_class].skips)


def test_guider_config_json_is_diffusers_own_and_loads_back(tmp_path: Path):
    from diffusers import SkipLayerGuidance as DiffusersSLG

    method = SkipLayerGuidance(layers=[2], skip_layer_guidance_scale=2.0, skip_layer_guidance_stop=1.0)
    setting = Preset.from_method(method, backbone="wan22_modular", guidance=4.0)
    code = method.diffusers_code(setting)
    assert sorted(code.files) == ["guider/guider_config.json", "guider_2/guider_config.json"]
    for name, text in code.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    loaded = DiffusersSLG.from_pretrained(tmp_path, subfolder="guider")
    expected = method.build_guider("WanTransformer3DModel", 4.0)
    for knob in ("guidance_scale", "skip_layer_guidance_scale", "skip_layer_guidance_start", "skip_layer_guidance_stop",
                 "guidance_rescale", "skip_layer_config"):
        assert getattr(loaded, knob) == getattr(expected, knob), knob
    assert loaded.skip_layer_config[0].indices == [2] and loaded.skip_layer_config[0].fqn == "blocks"
    assert math.isclose(loaded.guidance_scale, 4.0)
    # The second expert's guider keeps that expert's untouched scale, as attaching does.
    assert math.isclose(DiffusersSLG.from_pretrained(tmp_path, subfolder="guider_2").guidance_scale, 3.0)
    assert "pipe.update_components(" in code.apply[0] and 'subfolder="guider_2"' in code.apply[0]
