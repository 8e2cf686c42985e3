"""diffusers' memory and speed features as backbone options: the plain data they are checked against, their
validation (one line naming the key and value, before anything loads) and what they do on a CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from diffusers.models.attention_dispatch import AttentionBackendName
from omegaconf import OmegaConf

from vboost.backbones import BACKBONES, backbone_spec, get_backbone_class, load_backbone
from vboost.backbones._options import ATTENTION_BACKENDS
from vboost.methods import EnhanceAVideo
from vboost.sweep.config import BackboneConfig
from vboost.sweep.errors import ConfigError
from vboost.sweep.validate import check_runtime_options

PROMPTS, SEEDS = ["a cat runs on the beach", "a red car in the city at night"], [0, 1]


def test_attention_backend_table_names_diffusers_backends():
    assert set(ATTENTION_BACKENDS) == {member.value for member in AttentionBackendName}


@pytest.fixture(scope="module")
def tiny_backbones():
    return {family: get_backbone_class(family).tiny(seed=0) for family in BACKBONES}


@pytest.mark.parametrize("family", sorted(BACKBONES))
def test_each_familys_plain_data_matches_its_pipeline(tiny_backbones, family):
    spec, backbone = backbone_spec(family), tiny_backbones[family]
    pipe, denoiser = backbone.pipe, backbone.denoiser
    assert set(spec.components) <= {name for name, c in pipe.components.items() if isinstance(c, torch.nn.Module)}
    assert spec.offload == (isinstance(pipe, DiffusionPipeline) and bool(pipe.model_cpu_offload_seq))
    vae = pipe.components["vae"]
    assert spec.vae_tiling == (hasattr(vae, "enable_tiling") and hasattr(vae, "enable_slicing"))
    # set_attention_backend reaches the processors that carry an _attention_backend (those that dispatch).
    dispatching = [m for m in denoiser.modules() if hasattr(getattr(m, "processor", None), "_attention_backend")]
    assert spec.attention_dispatch == bool(dispatching)
    assert set(spec.repeated_blocks) <= {type(m).__name__ for m in denoiser.modules()}


def node(family: str = "cogvideox", **options):
    """The ``backbone`` config node of a tiny ``family`` with ``options`` merged over the schema's defaults."""
    base = OmegaConf.structured(BackboneConfig(family=family, weights=None, num_frames=9, height=32, width=32,
                                               steps=2, guidance=6.0, fps=8))
    return OmegaConf.merge(base, options)


def check(family: str = "cogvideox", device: str = "cpu", **options) -> None:
    check_runtime_options(backbone_spec(family), node(family, **options), device)


@pytest.mark.parametrize(
    "family,options,message",
    [
        ("cogvideox", {"batch_size": 0}, "backbone.batch_size=0 must be at least 1"),
        ("cogvideox", {"component_dtypes": {"unet": "float32"}}, "cogvideox has no component 'unet' (components: text_enc"),
        ("wan", {"component_dtypes": {"vae": "float64"}}, "backbone.component_dtypes.vae='float64' is not one of"),
        ("cogvideox", {"memory": {"cpu_offload": "everything"}}, "backbone.memory.cpu_offload='everything' is not one of"),
        ("cogvideox", {"memory": {"cpu_offload": "model"}}, "offloads to a CUDA device, and the pipeline runs on cpu"),
        ("opensora", {"memory": {"group_offload": "leaf_level"}}, "opensora's pipeline has no CPU offloading"),
        ("cogvideox", {"memory": {"group_offload_stream": True}}, "set backbone.memory.group_offload"),
        ("cogvideox", {"memory": {"group_offload_blocks": 0}}, "group_offload_blocks=0 must be at least 1"),
        ("opensora", {"memory": {"vae_tiling": True}}, "opensora's VAE does not decode in tiles or slices"),
        ("wan", {"attention_backend": "flash_attention"}, "'flash_attention' is not one of diffusers' attention backends"),
        ("cogvideox", {"attention_backend": "native"}, "calls torch's attention directly"),
        ("wan", {"attention_backend": "_native_cudnn"}, "runs on cuda only; the pipeline runs on cpu"),
        ("wan", {"compile": {"enabled": True, "scope": "layers"}}, "backbone.compile.scope='layers' is not one of"),
        ("animatediff", {"compile": {"enabled": True, "scope": "blocks"}}, "UNetMotionModel has no repeated blocks"),
        ("wan", {"compile": {"enabled": True, "mode": "fast"}}, "backbone.compile.mode='fast' is not one of"),
        ("wan", {"compile": {"enabled": True, "mode": "reduce-overhead"}}, "records CUDA graphs; the pipeline runs on cpu"),
        ("wan", {"compile": {"enabled": True, "backend": "tensorrt-ish"}}, "'tensorrt-ish' is not a torch.compile backend"),
    ],
)
def test_an_option_the_family_or_machine_cannot_use_is_one_line_naming_it(family, options, message):
    with pytest.raises(ConfigError) as err:
        check(family, **options)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_cuda_only_options_name_what_is_missing_on_a_cuda_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # device=auto resolves to cuda
    check("wan", device="auto", memory={"group_offload": "block_level", "group_offload_stream": True},
          attention_backend="_native_flash")
    with pytest.raises(ConfigError, match="one kind of offloading at a time"):
        check("wan", device="auto", memory={"cpu_offload": "model", "group_offload": "leaf_level"})
    with pytest.raises(ConfigError, match="needs the flash_attn package, which is not installed"):
        check("wan", device="auto", attention_backend="flash")


def test_options_a_cpu_can_use_pass():
    check("cogvideox", batch_size=4, component_dtypes={"vae": "float32"}, memory={"vae_tiling": True, "vae_slicing": True},
          compile={"enabled": True})
    check("wan", attention_backend="_native_math", compile={"enabled": True, "scope": "blocks", "backend": "aot_eager"})
    check("animatediff", compile={"enabled": True, "mode": "max-autotune-no-cudagraphs"})


def test_the_sweep_refuses_an_option_before_anything_loads(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "vboost.sweep", f"output_dir={tmp_path}", "device=cpu", "backbone.memory.cpu_offload=model"],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert result.returncode == 2, result.stderr
    assert "backbone.memory.cpu_offload='model' offloads to a CUDA device" in result.stderr
    assert not list(tmp_path.rglob("study.db"))


# --- what the options do on a CPU ------------------------------------------------------------------------------


def frames_of(videos):
    return [video.frames.astype(int) for video in videos]


def test_vae_slicing_decodes_a_batch_into_the_same_clips():
    plain = load_backbone("cogvideox", None)
    sliced = load_backbone("cogvideox", None, memory={"vae_slicing": True})
    assert sliced.pipe.vae.use_slicing and not plain.pipe.vae.use_slicing
    for a, b in zip(frames_of(plain.generate_batch(PROMPTS, SEEDS, steps=2)), frames_of(sliced.generate_batch(PROMPTS, SEEDS, steps=2))):
        assert np.abs(a - b).max() <= 1  # one clip at a time through the same convolutions: float rounding only


def test_vae_tiling_decodes_tile_by_tile_close_to_the_whole_frame():
    plain = load_backbone("animatediff", None)
    tiled = load_backbone("animatediff", None, memory={"vae_tiling": True})
    calls = []
    hook = tiled.pipe.vae.decoder.register_forward_hook(lambda module, args, out: calls.append(args[0].shape))
    # 96x96 frames are 12x12 latents: over the VAE's 8-latent tile, so each frame decodes as overlapping tiles.
    reference = plain.generate("a cat", 0, steps=2, height=96, width=96).frames.astype(int)
    got = tiled.generate("a cat", 0, steps=2, height=96, width=96).frames.astype(int)
    hook.remove()
    # Tiles start every 6 latents (8 with an overlap of a quarter): four per frame, none the whole 12x12.
    assert len(calls) == 4 and all(max(shape[-2:]) <= 8 for shape in calls)
    # Tiles are blended over their overlap: close to the whole frame, not equal (diffusers documents as much).
    difference = np.abs(got - reference)
    assert 0 < difference.mean() < 8 and np.median(difference) <= 4


def test_attention_backend_reaches_the_processors_and_the_method_keeps_it():
    backbone = load_backbone("wan", None, attention_backend="_native_math")
    processors = [m.processor for m in backbone.denoiser.modules() if hasattr(getattr(m, "processor", None), "_attention_backend")]
    assert processors and {p._attention_backend for p in processors} == {AttentionBackendName._NATIVE_MATH}
    plain = load_backbone("wan", None)
    assert (backbone.generate("a cat", 0, steps=2).frames == plain.generate("a cat", 0, steps=2).frames).all()
    with EnhanceAVideo(weight=4.0).attached(backbone.pipe):
        swapped = [m.processor for m in backbone.denoiser.modules() if type(getattr(m, "processor", None)).__name__ == "WanFetaProcessor"]
        assert swapped and {p._attention_backend for p in swapped} == {AttentionBackendName._NATIVE_MATH}


def test_options_reach_both_experts_of_a_modular_wan22_pipeline():
    backbone = load_backbone("wan22_modular", None, attention_backend="_native_math",
                             compile={"enabled": True, "backend": "eager"})
    for name in ("transformer", "transformer_2"):
        expert = getattr(backbone.pipe, name)
        backends = {m.processor._attention_backend for m in expert.modules() if hasattr(getattr(m, "processor", None), "_attention_backend")}
        assert backends == {AttentionBackendName._NATIVE_MATH}, name
        assert all(block._compiled_call_impl is not None for block in expert.blocks), name
    with pytest.raises(ConfigError, match="wan22_modular's pipeline has no CPU offloading"):
        check("wan22_modular", device="cuda", memory={"cpu_offload": "model"})

@pytest.mark.parametrize("family", ["cogvideox", "opensora"])
def test_a_float32_vae_decodes_a_bfloat16_denoisers_latents(family):
    # CogVideoXPipeline and Open-Sora's hand bfloat16 latents to the VAE; the backbone casts them to the VAE's dtype.
    backbone = load_backbone(family, None, component_dtypes={"transformer": "bfloat16", "text_encoder": "bfloat16"})
    assert backbone.denoiser.dtype == torch.bfloat16 and next(backbone.pipe.vae.parameters()).dtype == torch.float32
    video = backbone.generate("a cat", 0, steps=2)
    assert video.frames.std() > 0


def test_component_dtypes_load_from_a_saved_pipeline(tmp_path):
    backbone = get_backbone_class("wan").tiny(seed=0)
    backbone.save_pretrained(tmp_path)
    loaded = load_backbone("wan", tmp_path, defaults=backbone.defaults, torch_dtype=torch.bfloat16, component_dtypes={"vae": "float32"})
    assert loaded.denoiser.dtype == torch.bfloat16 and loaded.pipe.vae.dtype == torch.float32
    assert loaded.pipe.vae.decoder.conv_in.weight.dtype == torch.float32  # read as stored, not cast from bfloat16


def test_group_offload_hooks_compose_with_a_method():
    # On a CPU the onload device is the CPU itself: the hooks run, nothing moves; the clip must not change.
    plain = load_backbone("cogvideox", None)
    offloaded = get_backbone_class("cogvideox").tiny(seed=0)
    offloaded.pipe.enable_group_offload(onload_device=torch.device("cpu"), offload_type="leaf_level")
    method = EnhanceAVideo(weight=4.0)
    with method.attached(plain.pipe):
        expected = plain.generate("a cat", 0, steps=2).frames
    with method.attached(offloaded.pipe) as handle:
        got = offloaded.generate("a cat", 0, steps=2).frames
    assert handle.records and (got == expected).all()


def test_a_method_attached_after_compilation_takes_effect_without_recompiling_for_new_knobs():
    from torch._dynamo.utils import counters

    eager = load_backbone("cogvideox", None)
    compiled = load_backbone("cogvideox", None, compile={"enabled": True, "scope": "blocks", "backend": "aot_eager"})
    assert (compiled.generate("a cat", 0, steps=3).frames == eager.generate("a cat", 0, steps=3).frames).all()
    graphs = []
    for weight in (4.0, 2.0, 3.0):
        with EnhanceAVideo(weight=weight).attached(eager.pipe):
            expected = eager.generate("a cat", 0, steps=3).frames
        with EnhanceAVideo(weight=weight).attached(compiled.pipe) as handle:
            got = compiled.generate("a cat", 0, steps=3).frames
        assert handle.records and (got == expected).all()
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[0] == graphs[1] == graphs[2]  # the first method trial compiled its blocks; other weights reuse them
