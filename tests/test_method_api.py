"""The public method API: undo work registered with ``on_detach``, one step tracker per pipeline shared by stacked
methods, knobs checked against the clip geometry, and the export hooks (a method's code rebuilds it)."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, ClassVar

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from vboost.backbones import backbone_spec
from vboost.methods import METHODS, Combined, EnhanceAVideo, FreeU, Member, Method, SkipLayerGuidance
from vboost.methods.base import find_denoisers


@dataclasses.dataclass
class StepSpy(Method):
    """Records, at every denoiser call, the step its handle's tracker reads; scales the input by ``1 + gain``."""

    gain: float = 0.0
    name: ClassVar[str] = "step_spy"
    supported_denoisers: ClassVar[tuple[str, ...]] = ("Linear",)

    def _attach(self, target: Any, denoiser: torch.nn.Module, handle: Any) -> None:
        def spy(module: torch.nn.Module, args: tuple) -> tuple:
            handle.record(seen=handle.steps.step_index)
            return (args[0] * (1 + self.gain),)

        hook = denoiser.register_forward_pre_hook(spy)
        handle.on_detach(hook.remove)


class Pipe:
    """A pipeline as methods see one: a denoiser component and a diffusers scheduler."""

    def __init__(self) -> None:
        self.transformer = torch.nn.Linear(2, 2)
        self.scheduler = FlowMatchEulerDiscreteScheduler()

    def __call__(self, steps: int) -> None:
        self.scheduler.set_timesteps(steps)
        sample = torch.zeros(1, 2)
        for t in self.scheduler.timesteps:
            self.scheduler.step(self.transformer(sample), t, sample)


def test_stacked_methods_share_one_tracker_and_survive_the_inner_detach():
    pipe = Pipe()
    outer = StepSpy(0.1).attach(pipe)
    inner = StepSpy(0.2).attach(pipe)
    assert outer.steps is inner.steps
    pipe(3)
    assert [r["seen"] for r in outer.records] == [r["seen"] for r in inner.records] == [0, 1, 2]
    inner.detach()
    # The case: after the inner method leaves, a new loop is still followed for the outer one.
    pipe.scheduler.set_timesteps(4)
    pipe.scheduler.step(torch.zeros(1, 2), pipe.scheduler.timesteps[0], torch.zeros(1, 2))
    assert outer.steps.step_index == 1 and outer.steps.num_steps == 4
    outer.detach()
    # The last user unwraps the scheduler: its class methods are back.
    assert "step" not in vars(pipe.scheduler) and "set_timesteps" not in vars(pipe.scheduler)
    assert outer.steps.step_index is None


def test_a_copy_of_a_tracked_scheduler_steps_on_its_own():
    # LTX-2's pipeline deep-copies its scheduler to step the audio latents: the copy's steps are not the video's.
    pipe = Pipe()
    handle = StepSpy(0.1).attach(pipe)
    pipe.scheduler.set_timesteps(3)
    twin = copy.deepcopy(pipe.scheduler)
    twin.set_timesteps(5)
    sample = torch.zeros(1, 2)
    twin.step(sample, twin.timesteps[0], sample)
    assert (handle.steps.step_index, handle.steps.num_steps) == (0, 3)
    assert twin.step_index == 1 and len(twin.timesteps) == 5  # the class's own methods ran on the copy
    pipe.scheduler.step(sample, pipe.scheduler.timesteps[0], sample)
    assert (handle.steps.step_index, handle.steps.num_steps) == (1, 3)
    handle.detach()


def test_undo_runs_in_reverse_and_a_failed_attach_leaves_nothing():
    pipe, order = Pipe(), []

    @dataclasses.dataclass
    class Failing(StepSpy):
        def _attach(self, target: Any, denoiser: torch.nn.Module, handle: Any) -> None:
            handle.on_detach(lambda: order.append("first"))
            handle.on_detach(lambda: order.append("second"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        Failing().attach(pipe)
    assert order == ["second", "first"] and "step" not in vars(pipe.scheduler)


def test_component_picks_one_denoiser_and_bad_components_are_named():
    pipe = Pipe()
    pipe.transformer_2 = torch.nn.Linear(2, 2)
    assert find_denoisers(pipe) == [pipe.transformer, pipe.transformer_2]
    assert find_denoisers(pipe, "transformer_2") == [pipe.transformer_2]
    with pytest.raises(TypeError, match="transformer_3"):
        StepSpy().attach(pipe, "transformer_3")
    handle = StepSpy().attach(pipe, "transformer_2")
    pipe.transformer(torch.zeros(1, 2))
    assert handle.records == []  # only the second denoiser is entered
    pipe.transformer_2(torch.zeros(1, 2))
    assert len(handle.records) == 1
    handle.detach()


def test_clip_geometry_names_the_denoiser_and_its_depth():
    geometry = backbone_spec("wan_modular").geometry(9, 32, 32)
    assert geometry.denoiser_class == "WanTransformer3DModel" and geometry.num_layers == 2  # the tiny config
    assert backbone_spec("wan22_modular").denoisers == ("transformer", "transformer_2")
    assert backbone_spec("ltx_modular").modular and not backbone_spec("ltx_video").modular


def test_skip_layer_guidance_checks_layers_and_skips_against_the_geometry():
    geometry = dataclasses.replace(backbone_spec("wan_modular").geometry(9, 32, 32), num_layers=30)
    SkipLayerGuidance(layers=[0, 29]).check_clip(geometry)
    with pytest.raises(ValueError, match="index 30 is beyond the denoiser's 30 blocks"):
        SkipLayerGuidance(layers=[2, 30]).check_clip(geometry)
    with pytest.raises(ValueError, match="skip='attention_scores'.*WanTransformer3DModel"):
        SkipLayerGuidance(layers=2, skip="attention_scores").check_clip(geometry)
    with pytest.raises(ValueError, match="skip must be one of"):
        SkipLayerGuidance(layers=2, skip="heads")
    with pytest.raises(ValueError, match="layers"):
        SkipLayerGuidance(layers=[])


def test_every_method_rebuilds_from_its_params_and_its_code():
    methods = [
        EnhanceAVideo(weight=3.4, layers=[0]), FreeU(1.5, 1.6, 0.9, 0.2), SkipLayerGuidance(layers=[2], skip="feed_forward"),
        Combined({"eav": EnhanceAVideo(weight=4.0), "slg": Member(SkipLayerGuidance(layers=1), "transformer_2")}),
    ]
    for method in methods:
        assert METHODS[method.name].from_params(method.params()) == method
        expression, imports = method.code()
        namespace: dict[str, Any] = {}
        exec("\n".join(imports), namespace)  # the imports an exported script writes
        assert eval(expression, namespace) == method


def test_combination_is_flat_namespaced_knobs():
    combo = Combined({"eav": EnhanceAVideo(weight=4.0), "low": Member(EnhanceAVideo(weight=2.0), "transformer_2")})
    flat = combo.params()
    assert flat["eav"] == "enhance_a_video" and flat["low"] == "enhance_a_video@transformer_2"
    assert flat["eav.weight"] == 4.0 and flat["low.weight"] == 2.0
    assert Combined(**flat) == combo
    with pytest.raises(ValueError, match="names no member"):
        Combined(**{"eav": "enhance_a_video", "eav.weight": 1.0, "other.weight": 2.0})
    with pytest.raises(ValueError, match="unknown method 'no_such'"):
        Combined(eav="no_such")
    with pytest.raises(ValueError, match="both set the guider"):
        Combined({"a": SkipLayerGuidance(layers=1), "b": Member(SkipLayerGuidance(layers=0), "transformer_2")})
    Combined({"a": Member(SkipLayerGuidance(layers=1), "transformer"), "b": Member(SkipLayerGuidance(layers=0), "transformer_2")})
