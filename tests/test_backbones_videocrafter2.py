"""VideoCrafter2: loading a tiny checkpoint in the original format, the original sampler's arithmetic, the adapter."""

from __future__ import annotations

import argparse
import re

import numpy as np
import pytest
import torch
import yaml

from vboost.backbones import GenerationDefaults, load_backbone
from vboost.backbones.videocrafter2 import TINY_CONFIG, PickledCheckpointError, VideoCrafter2Backbone
from vboost.backbones.videocrafter2._pipeline import video_to_uint8
from vboost.backbones.videocrafter2.convert import main as convert_main

PROMPT = "a red car drives along a coast road"
SMALL = {"num_frames": 4, "height": 64, "width": 64, "steps": 2}


@pytest.fixture(scope="module")
def tiny() -> VideoCrafter2Backbone:
    return VideoCrafter2Backbone.tiny(seed=0)


# --- the original checkpoint format, written here from the original code's module names -----------------------


def _vae_to_ldm(key: str, levels: int) -> str:
    """diffusers AutoencoderKL name -> the LDM autoencoder's (``lvdm/modules/networks/ae_modules.py``)."""
    key = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
    key = re.sub(r"mid_block\.resnets\.(\d)", lambda m: f"mid.block_{int(m[1]) + 1}", key)
    key = key.replace("mid_block.attentions.0.", "mid.attn_1.")
    for ours, theirs in (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")):
        key = key.replace(f"attn_1.{ours}.", f"attn_1.{theirs}.")
    key = re.sub(r"down_blocks\.(\d+)\.resnets\.", r"down.\1.block.", key)
    key = re.sub(r"down_blocks\.(\d+)\.downsamplers\.0\.", r"down.\1.downsample.", key)
    # The decoder's up blocks are numbered from the lowest resolution in diffusers, from the highest in LDM.
    key = re.sub(r"up_blocks\.(\d+)\.resnets\.", lambda m: f"up.{levels - 1 - int(m[1])}.block.", key)
    return re.sub(r"up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: f"up.{levels - 1 - int(m[1])}.upsample.", key)


def _open_clip_text(text_encoder: torch.nn.Module) -> dict[str, torch.Tensor]:
    """open_clip text-tower names (``CLIP.transformer.resblocks`` etc.) of a CLIPTextModel, plus a random last block."""
    src = {key.removeprefix("text_model."): value for key, value in text_encoder.state_dict().items()}
    out = {
        "token_embedding.weight": src["embeddings.token_embedding.weight"],
        "positional_embedding": src["embeddings.position_embedding.weight"],
        "ln_final.weight": src["final_layer_norm.weight"],
        "ln_final.bias": src["final_layer_norm.bias"],
        "text_projection": torch.randn(src["final_layer_norm.weight"].shape[0], 16),
        "logit_scale": torch.tensor(4.6),
    }
    layers = text_encoder.config.num_hidden_layers
    for i in range(layers):
        p, q = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for part in ("weight", "bias"):
            out[q + f"attn.in_proj_{part}"] = torch.cat([src[p + f"self_attn.{x}_proj.{part}"] for x in "qkv"])
            out[q + f"attn.out_proj.{part}"] = src[p + f"self_attn.out_proj.{part}"]
            for ours, theirs in (("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
                out[q + f"{theirs}.{part}"] = src[p + f"{ours}.{part}"]
    # The tower's last block, which the original's "penultimate" layer never runs.
    gen = torch.Generator().manual_seed(7)
    first = {key: value for key, value in out.items() if key.startswith("transformer.resblocks.0.")}
    out.update({key.replace(".0.", f".{layers}.", 1): torch.randn(value.shape, generator=gen) for key, value in first.items()})
    return out


def original_state_dict(backbone: VideoCrafter2Backbone) -> dict[str, torch.Tensor]:
    """The ``LatentDiffusion`` state dict the original code would hold for ``backbone``'s weights."""
    pipe = backbone.pipe
    state = {}
    for key, value in pipe.unet.state_dict().items():
        if key.startswith("init_attn.") and key.endswith(("proj_in.weight", "proj_out.weight")):
            value = value[..., None]  # the original's extra temporal transformer projects with 1x1 Conv1d
        state["model.diffusion_model." + key] = value
    levels = len(pipe.vae.config.block_out_channels)
    for key, value in pipe.vae.state_dict().items():
        if ".attentions.0." in key and value.ndim == 2:
            value = value[..., None, None]  # LDM's attention projects with 1x1 convolutions
        state["first_stage_model." + _vae_to_ldm(key, levels)] = value
    text = _open_clip_text(pipe.text_encoder)
    state.update({"cond_stage_model.model." + key: value for key, value in text.items()})
    state["betas"] = torch.zeros(1000)  # LatentDiffusion's own buffers sit at the top level
    return state


def write_original_directory(backbone: VideoCrafter2Backbone, directory, checkpoint: dict | None = None) -> None:
    """``model.ckpt`` (``{"state_dict": ...}``), the original-layout ``config.yaml`` and a ``tokenizer/`` folder."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint or {"state_dict": original_state_dict(backbone)}, directory / "model.ckpt")
    (directory / "config.yaml").write_text(yaml.safe_dump({"model": {"params": TINY_CONFIG}}))
    backbone.pipe.tokenizer.save_pretrained(directory / "tokenizer")


@pytest.fixture(scope="module")
def original_dir(tiny, tmp_path_factory):
    directory = tmp_path_factory.mktemp("videocrafter2")
    write_original_directory(tiny, directory)
    return directory


@pytest.fixture(scope="module")
def loaded(original_dir) -> VideoCrafter2Backbone:
    return VideoCrafter2Backbone.from_pretrained(original_dir, VideoCrafter2Backbone.tiny_defaults, torch_dtype=torch.float32)


def test_loaded_checkpoint_holds_the_original_weights(tiny, loaded):
    for name in ("unet", "vae", "text_encoder"):
        expected, got = getattr(tiny.pipe, name).state_dict(), getattr(loaded.pipe, name).state_dict()
        assert got.keys() == expected.keys(), name
        assert [key for key in expected if not torch.equal(got[key], expected[key])] == [], name


def test_loaded_checkpoint_generates_what_the_model_built_in_code_does(tiny, loaded):
    np.testing.assert_array_equal(loaded.generate(PROMPT, 3, **SMALL).frames, tiny.generate(PROMPT, 3, **SMALL).frames)


@torch.no_grad()
def open_clip_penultimate(state: dict[str, torch.Tensor], ids: torch.Tensor, heads: int) -> torch.Tensor:
    """The original embedder by hand from open_clip-format weights: token + position embedding, every pre-norm
    block but the last (causal ``nn.MultiheadAttention``, GELU MLP), then ``ln_final``."""
    p = "cond_stage_model.model."
    x = state[p + "token_embedding.weight"][ids] + state[p + "positional_embedding"]
    width = x.shape[-1]
    blocks = 1 + max(int(m[1]) for key in state if (m := re.match(re.escape(p) + r"transformer\.resblocks\.(\d+)\.", key)))
    mask = torch.full((ids.shape[1], ids.shape[1]), float("-inf")).triu(1)
    for i in range(blocks - 1):
        b = f"{p}transformer.resblocks.{i}."
        attention = torch.nn.MultiheadAttention(width, heads, batch_first=True)
        parts = ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")
        attention.load_state_dict({part: state[b + "attn." + part] for part in parts})
        h = torch.nn.functional.layer_norm(x, (width,), state[b + "ln_1.weight"], state[b + "ln_1.bias"])
        x = x + attention(h, h, h, attn_mask=mask, need_weights=False)[0]
        h = torch.nn.functional.layer_norm(x, (width,), state[b + "ln_2.weight"], state[b + "ln_2.bias"])
        h = torch.nn.functional.gelu(h @ state[b + "mlp.c_fc.weight"].T + state[b + "mlp.c_fc.bias"])
        x = x + h @ state[b + "mlp.c_proj.weight"].T + state[b + "mlp.c_proj.bias"]
    return torch.nn.functional.layer_norm(x, (width,), state[p + "ln_final.weight"], state[p + "ln_final.bias"])


def test_text_states_are_the_penultimate_layer_then_the_final_norm(tiny, loaded, original_dir):
    state = torch.load(original_dir / "model.ckpt", weights_only=True)["state_dict"]
    ids = loaded.pipe.tokenize([PROMPT, ""])
    assert ids[1, :2].tolist() == [tiny.pipe.tokenizer.bos_token_id, tiny.pipe.tokenizer.eos_token_id]
    assert (ids[1, 2:] == 0).all()  # open_clip pads with 0
    expected = open_clip_penultimate(state, ids, heads=loaded.pipe.text_encoder.config.num_attention_heads)
    torch.testing.assert_close(loaded.pipe.encode_prompt([PROMPT, ""]), expected, rtol=1e-5, atol=1e-5)


def test_a_config_option_the_port_does_not_compute_is_refused_by_name(tiny, tmp_path):
    config = yaml.safe_load(yaml.safe_dump(TINY_CONFIG))
    config["unet_config"]["params"]["use_relative_position"] = True
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"model": {"params": config}}))
    with pytest.raises(ValueError, match=r"unet_config\.params\.use_relative_position=True is not supported"):
        VideoCrafter2Backbone.from_pretrained(tmp_path, VideoCrafter2Backbone.tiny_defaults)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither of model.safetensors, model.ckpt"):
        VideoCrafter2Backbone.latent_frames(16, tmp_path)
    torch.save({"state_dict": {}}, tmp_path / "model.ckpt")
    assert VideoCrafter2Backbone.latent_frames(16, tmp_path) == 16
    with pytest.raises(FileNotFoundError, match="tokenizer.*CLIP tokenizer folder"):
        VideoCrafter2Backbone.from_pretrained(tmp_path, VideoCrafter2Backbone.tiny_defaults)


def test_a_pickled_checkpoint_is_refused_then_converted_on_request(tiny, original_dir, tmp_path, capsys):
    # A training checkpoint also pickles objects (here hyper-parameters): weights_only=True cannot read it.
    state = torch.load(original_dir / "model.ckpt", weights_only=True)
    write_original_directory(tiny, tmp_path, {**state, "hyper_parameters": argparse.Namespace(lr=1e-5)})
    ckpt = tmp_path / "model.ckpt"
    with pytest.raises(PickledCheckpointError, match=f"{re.escape(str(ckpt))}.*python -m vboost.backbones.videocrafter2.convert"):
        VideoCrafter2Backbone.from_pretrained(tmp_path, VideoCrafter2Backbone.tiny_defaults)
    assert convert_main([str(ckpt)]) == 2
    assert "--trust-pickled-code" in capsys.readouterr().err
    assert not (tmp_path / "model.safetensors").exists()
    assert convert_main([str(ckpt), "--trust-pickled-code"]) == 0
    converted = VideoCrafter2Backbone.from_pretrained(tmp_path, VideoCrafter2Backbone.tiny_defaults)  # reads model.safetensors
    expected = tiny.pipe.unet.state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in converted.pipe.unet.state_dict().items())


# --- the original sampler, restated from lvdm/models/samplers/ddim.py and ddpm3d.py --------------------------


@torch.no_grad()
def original_ddim(pipe, prompt: str, seed: int, frames: int, size: int, steps: int, guidance: float, fps: int, eta: float):
    """``batch_ddim_sampling`` by hand: float64 LDM schedule, steps ``range(0, 1000, 1000 // steps) + 1``, two
    U-Net calls per step (conditional, then the empty prompt), VideoCrafter's latent scale in the update."""
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    alphas_cumprod = torch.tensor(np.cumprod(1.0 - betas), dtype=torch.float32)
    scale = torch.tensor(np.concatenate([np.linspace(1.0, 0.7, 400), np.full(1000, 0.7)]), dtype=torch.float32)
    timesteps = np.arange(0, 1000, 1000 // steps) + 1
    cond, uncond = pipe.encode_prompt(prompt), pipe.encode_prompt("")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 4, frames, size // 8, size // 8, generator=gen)
    for index in reversed(range(steps)):
        t = int(timesteps[index])
        a_t = alphas_cumprod[t]
        a_prev = alphas_cumprod[int(timesteps[index - 1])] if index else alphas_cumprod[0]
        s_t = scale[t]
        s_prev = scale[int(timesteps[index - 1])] if index else scale[0]
        sigma = eta * torch.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
        ts, fps_t = torch.tensor([t]), torch.tensor([fps])
        e_c = pipe.unet(x, ts, cond, fps=fps_t).sample
        e_u = pipe.unet(x, ts, uncond, fps=fps_t).sample
        e = e_u + guidance * (e_c - e_u)
        pred_x0 = (x - torch.sqrt(1 - a_t) * e) / torch.sqrt(a_t) / s_t
        direction = torch.sqrt(1 - a_prev - sigma**2) * e
        x = torch.sqrt(a_prev) * s_prev * pred_x0 + direction + sigma * torch.randn(x.shape, generator=gen)
    return x


def test_sampling_is_the_original_ddim_with_cfg_fps_and_latent_scale(tiny):
    # 128 px: at 64 px the tiny U-Net's deepest 32-group norms see 2 values each, which turns rounding into noise.
    # Four steps (751, 501, 251, 1) cross the latent scale's ramp below t = 400; eta 1 draws noise at every step.
    expected = original_ddim(tiny.pipe, PROMPT, 5, 4, 128, 4, 12.0, fps=28, eta=1.0)
    out = tiny.pipe(
        PROMPT, num_frames=4, height=128, width=128, num_inference_steps=4, guidance_scale=12.0, fps=28, eta=1.0,
        generator=torch.Generator().manual_seed(5), output_type="latent",
    )
    torch.testing.assert_close(out.frames, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


def test_scheduler_follows_the_original_schedule(tiny):
    scheduler = tiny.pipe.scheduler
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    np.testing.assert_allclose(scheduler.alphas_cumprod.numpy(), np.cumprod(1.0 - betas), rtol=2e-6)
    scheduler.set_timesteps(50)
    assert scheduler.timesteps.tolist() == list(range(981, 0, -20))


def test_frames_are_written_as_the_original_script_writes_them():
    video = torch.tensor([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0]).reshape(1, 1, 6, 1, 1).expand(1, 3, 6, 1, 1)
    # clamp, (x + 1) / 2 * 255, truncated: 127.5 -> 127 and 191.25 -> 191
    assert video_to_uint8(video)[0, :, 0, 0, 0].tolist() == [0, 0, 127, 191, 255, 255]


# --- the adapter ----------------------------------------------------------------------------------------------


def test_tiny_clip_shape_seeds_and_registry(tiny):
    video = tiny.generate(PROMPT, 0, **SMALL)
    assert video.frames.shape == (4, 64, 64, 3) and video.frames.dtype == np.uint8
    assert video.fps == tiny.defaults.fps == 10
    assert video.frames.std() > 0
    np.testing.assert_array_equal(tiny.generate(PROMPT, 0, **SMALL).frames, video.frames)
    assert np.abs(tiny.generate(PROMPT, 1, **SMALL).frames.astype(int) - video.frames).mean() > 1
    built = load_backbone("videocrafter2", None)
    assert isinstance(built, VideoCrafter2Backbone) and built.defaults == VideoCrafter2Backbone.tiny_defaults


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"height": 96}, "height=96 must be a positive multiple of 64"),
        ({"width": 0}, "width=0 must be a positive multiple of 64"),
        ({"num_frames": 0}, "num_frames=0 must be at least 1"),
        ({"steps": 30}, "steps=30: the original DDIM sampler would take 31 steps"),
    ],
)
def test_bad_settings_name_the_value(tiny, settings, message):
    with pytest.raises(ValueError, match=message):
        tiny.generate(PROMPT, 0, **{**SMALL, **settings})


def test_bad_sampler_knobs_name_the_value(tiny):
    with pytest.raises(ValueError, match="conditioning_fps must be a positive int; got 0"):
        VideoCrafter2Backbone(tiny.pipe, tiny.defaults, conditioning_fps=0)
    with pytest.raises(ValueError, match="ddim_eta must be a non-negative number; got -1"):
        VideoCrafter2Backbone(tiny.pipe, tiny.defaults, ddim_eta=-1)


def test_a_clip_is_conditioned_on_the_configured_frame_rate(tiny):
    at_28 = tiny.generate(PROMPT, 0, **SMALL).frames
    at_8 = VideoCrafter2Backbone(tiny.pipe, GenerationDefaults(4, 64, 64, 2, 12.0, 10), conditioning_fps=8).generate(PROMPT, 0).frames
    assert np.abs(at_8.astype(int) - at_28).mean() > 0.1
