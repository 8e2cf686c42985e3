"""The sweep's side of guiders and combinations: configs composed by Hydra are planned (namespaced knobs, layer
indices over the real depth, merged published settings), incompatible pairs are refused with the reason, and a
multirun over backbone x method skips them and runs the rest."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from optuna.distributions import IntDistribution

from tests.test_sweep_cli import sweep
from vboost.sweep.config import register_configs
from vboost.sweep.errors import ConfigError, IncompatibleError
from vboost.sweep.validate import plan_sweep

CONF = Path(__file__).resolve().parents[1] / "conf"


def plan(*overrides: str):
    """The sweep plan of ``python -m vboost.sweep OVERRIDES``, composed in this process."""
    register_configs()
    with initialize_config_dir(str(CONF), version_base=None):
        cfg = compose("sweep", overrides=list(overrides), return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        return plan_sweep(cfg)


def test_combination_searches_both_methods_knobs_namespaced():
    p = plan("backbone=tiny_wan_modular", "method=enhance_a_video+skip_layer_guidance")
    assert p.method_cls.name == "combined"
    assert p.space.knobs == {"enhance_a_video.weight", "skip_layer_guidance.layers",
                             "skip_layer_guidance.skip_layer_guidance_scale", "skip_layer_guidance.skip_layer_guidance_stop"}
    assert p.fixed_knobs["enhance_a_video"] == "enhance_a_video" and p.fixed_knobs["skip_layer_guidance.skip"] == "block"
    layers = next(param for param in p.space.params if param.knob == "skip_layer_guidance.layers")
    assert layers.distribution == IntDistribution(0, p.geometry.num_layers - 1)  # the tiny Wan's 2 blocks
    # Wan2.1's published STG layer (2) is beyond the tiny model: the paper trial is left out, and said so.
    assert [ref.role for ref in p.references] == ["baseline"] and "index 2 is beyond" in p.notes[0]


def test_combination_of_published_settings_is_the_paper_trial():
    p = plan("backbone=tiny_animatediff", "method=bytheway+freeu")
    (paper,) = [ref for ref in p.references if ref.role == "paper"]
    assert paper.knobs["bytheway.alpha"] == 0.6 and paper.knobs["freeu.b1"] == 1.5 and paper.knobs["freeu"] == "freeu"
    assert p.method_cls(**paper.knobs).members["freeu"].method.b2 == 1.6


def test_members_enter_their_own_expert():
    p = plan("backbone=tiny_wan22_modular", "method=enhance_a_video_per_expert")
    assert (p.fixed_knobs["high"], p.fixed_knobs["low"]) == ("enhance_a_video@transformer", "enhance_a_video@transformer_2")
    assert {"high.weight", "low.weight"} <= p.space.knobs


def test_command_line_combination():
    p = plan("backbone=tiny_ltx_modular", "method=combined", "+method@method.members.zero=cfg_zero_star",
             "+method@method.members.eav=enhance_a_video")
    assert {"zero.zero_init_steps", "zero.guidance_scale", "eav.weight"} == p.space.knobs


@pytest.mark.parametrize("overrides,message", [
    (["backbone=tiny_wan", "method=skip_layer_guidance"], "modular pipeline; backbone 'wan' is not one"),
    (["backbone=tiny_wan", "method=enhance_a_video+skip_layer_guidance"], "member 'skip_layer_guidance'"),
    (["backbone=tiny_wan_modular", "method=bytheway+freeu"], "member 'bytheway'"),
    (["backbone=tiny_cogvideox", "method=freeu"], "FreeU does not support CogVideoXTransformer3DModel"),
])
def test_incompatible_pairs_say_why(overrides, message):
    with pytest.raises(IncompatibleError, match=message):
        plan(*overrides)


@pytest.mark.parametrize("overrides,message", [
    (["method=combined"], "needs method.members"),
    (["method.component=transformer_2"], "method.component='transformer_2'"),
    (["backbone=tiny_animatediff", "method=bytheway", "+method.members.x={name: freeu}"], "members need name: combined"),
    (["backbone=tiny_wan_modular", "method=skip_layer_guidance", "method.search_space.layers=\"tag(depth, interval(0.9, 1.0))\""],
     "holds no block index"),
    (["backbone=tiny_wan_modular", "method=skip_layer_guidance", "method.params.skip=attention"], "skip='attention'"),
    (["backbone=tiny_hunyuan_video15_modular", "method=skip_layer_guidance"], "skip='block'.*they can skip: feed_forward"),
])
def test_bad_method_configs_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        plan(*overrides)
    assert "\n" not in str(info.value)


def test_multirun_skips_incompatible_pairs_and_runs_both_methods_together(tmp_path):
    result = sweep(tmp_path, "backbone=tiny_wan,tiny_wan_modular", "method=skip_layer_guidance,enhance_a_video+skip_layer_guidance",
                   "study.n_trials=2", "validation.top_k=0", multirun=True)
    assert result.returncode == 0, result.stderr
    assert "skipped tiny_wan-skip_layer_guidance" in result.stdout
    assert "skipped tiny_wan-enhance_a_video+skip_layer_guidance" in result.stdout
    studies = sorted(p.parent.name for p in (tmp_path / "outputs").glob("*/study.db"))
    assert studies == ["tiny_wan_modular-enhance_a_video+skip_layer_guidance-motion_vs_consistency",
                       "tiny_wan_modular-skip_layer_guidance-motion_vs_consistency"]
    name = studies[0]
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'outputs' / name / 'study.db'}")
    (searched,) = [t for t in study.trials if t.user_attrs["role"] == "search"]
    knobs = searched.user_attrs["knobs"]
    assert knobs["enhance_a_video"] == "enhance_a_video" and knobs["skip_layer_guidance"] == "skip_layer_guidance"
    assert set(searched.params) == {"enhance_a_video.weight_per_frame", "skip_layer_guidance.layers",
                                    "skip_layer_guidance.skip_layer_guidance_scale", "skip_layer_guidance.skip_layer_guidance_stop"}
    # Enhance-A-Video ran inside the combination: its diagnostics are the trial's, namespaced by member.
    assert "method/enhance_a_video/score" in searched.user_attrs["scores"]
