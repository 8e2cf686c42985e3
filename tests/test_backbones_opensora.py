"""The Open-Sora v1.2 backbone: the released checkpoint format, the RFLOW sampler, generation on the tiny model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from vboost.backbones import get_backbone_class, load_backbone
from vboost.backbones.opensora import (
    OpenSoraBackbone,
    OpenSoraPipeline,
    RFlowScheduler,
    STDiT3,
    load_stdit3,
    load_vae,
    save_stdit3,
)

PROMPT = "a cat walks on the beach"

# The keys of hpcai-tech/OpenSora-STDiT-v3/config.json and hpcai-tech/OpenSora-VAE-v1.2/config.json as released
# (besides transformers_version, which only transformers writes).
RELEASED_STDIT3_KEYS = {
    "architectures",
    "caption_channels",
    "class_dropout_prob",
    "depth",
    "drop_path",
    "enable_flash_attn",
    "enable_layernorm_kernel",
    "enable_sequence_parallelism",
    "freeze_y_embedder",
    "hidden_size",
    "in_channels",
    "input_size",
    "input_sq_size",
    "mlp_ratio",
    "model_max_length",
    "model_type",
    "num_heads",
    "only_train_temporal",
    "patch_size",
    "pred_sigma",
    "qk_norm",
    "skip_y_embedder",
    "torch_dtype",
}
RELEASED_VAE_KEYS = {
    "architectures",
    "cal_loss",
    "freeze_vae_2d",
    "from_pretrained",
    "micro_frame_size",
    "model_type",
    "scale",
    "shift",
    "torch_dtype",
    "vae_2d",
    "vae_temporal",
}


@pytest.fixture(scope="module")
def backbone() -> OpenSoraBackbone:
    return OpenSoraBackbone.tiny(seed=0)


def test_registered_and_generates_a_uint8_clip(backbone):
    assert get_backbone_class("opensora") is OpenSoraBackbone
    assert type(backbone.denoiser).__name__ == OpenSoraBackbone.denoiser_class
    d = backbone.defaults
    video = backbone.generate(PROMPT, 0)
    assert video.frames.dtype == np.uint8 and video.fps == d.fps
    assert video.frames.shape == (d.num_frames, d.height, d.width, 3)
    assert video.frames.std() > 0


def test_deterministic_per_seed_and_prompt(backbone):
    first = backbone.generate(PROMPT, 7).frames
    assert (backbone.generate(PROMPT, 7).frames == first).all()
    assert (backbone.generate(PROMPT, 8).frames != first).any()
    assert (backbone.generate("a dog runs on the beach", 7).frames != first).any()


def test_prompt_is_encoded_once_with_the_release_score_suffix(backbone):
    texts = []
    tokenizer = backbone.pipe.tokenizer
    original_call = type(tokenizer).__call__

    def recording_call(self, text, *args, **kwargs):
        texts.extend(text)
        return original_call(self, text, *args, **kwargs)

    type(tokenizer).__call__ = recording_call
    try:
        backbone.generate("the ocean waves at night", 1)
        backbone.generate("the ocean waves at night", 2)
    finally:
        type(tokenizer).__call__ = original_call
    assert texts == ["the ocean waves at night aesthetic score: 6.5."]
    assert backbone.prompt_text("a cat aesthetic score: 5.0.") == "a cat aesthetic score: 5.0."


def test_frame_counts_and_latent_frames(backbone):
    seen = []
    hook = backbone.denoiser.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[2]))
    try:
        video = backbone.generate(PROMPT, 0, num_frames=20, steps=1)
    finally:
        hook.remove()
    assert video.frames.shape[0] == 20
    assert seen == [OpenSoraBackbone.latent_frames(20)] == [6]  # 5 for the first 17 frames, 1 for the other 3
    assert OpenSoraBackbone.latent_frames(102) == 30 and OpenSoraBackbone.latent_frames(51) == 15
    with pytest.raises(ValueError, match="num_frames=9"):
        backbone.generate(PROMPT, 0, num_frames=9)


def test_latent_frames_divide_by_the_checkpoint_temporal_patch(tmp_path):
    (tmp_path / "transformer").mkdir()
    (tmp_path / "transformer" / "config.json").write_text(json.dumps({"patch_size": [2, 2, 2]}))
    assert OpenSoraBackbone.latent_frames(102, tmp_path) == 15
    with pytest.raises(FileNotFoundError, match="config.json"):
        OpenSoraBackbone.latent_frames(102, tmp_path / "elsewhere")


def test_save_and_load_in_the_released_layout(backbone, tmp_path, same_weights):
    expected = backbone.generate(PROMPT, 2).frames
    backbone.save_pretrained(tmp_path)
    for component in ("transformer", "vae"):
        assert {p.name for p in (tmp_path / component).iterdir()} >= {"config.json", "model.safetensors"}
    assert set(json.loads((tmp_path / "transformer/config.json").read_text())) == RELEASED_STDIT3_KEYS
    assert set(json.loads((tmp_path / "vae/config.json").read_text())) == RELEASED_VAE_KEYS
    loaded = OpenSoraBackbone.from_pretrained(tmp_path, backbone.defaults, torch_dtype=torch.float32)
    same_weights(loaded.pipe, backbone.pipe)
    assert (loaded.generate(PROMPT, 2).frames == expected).all()


def test_loads_a_checkpoint_written_as_the_release_is(tmp_path):
    # The released config verbatim, sizes shrunk; tensors named as the original STDiT3 names them.
    torch.manual_seed(0)
    tiny = STDiT3(hidden_size=32, depth=2, num_heads=2, caption_channels=16, model_max_length=10)
    config = {
        "architectures": ["STDiT3"],
        "caption_channels": 16,
        "class_dropout_prob": 0.1,
        "depth": 2,
        "drop_path": 0.0,
        "enable_flash_attn": True,
        "enable_layernorm_kernel": True,
        "enable_sequence_parallelism": False,
        "freeze_y_embedder": True,
        "hidden_size": 32,
        "in_channels": 4,
        "input_size": [None, None, None],
        "input_sq_size": 512,
        "mlp_ratio": 4.0,
        "model_max_length": 10,
        "model_type": "STDiT3",
        "num_heads": 2,
        "only_train_temporal": False,
        "patch_size": [1, 2, 2],
        "pred_sigma": True,
        "qk_norm": True,
        "skip_y_embedder": False,
        "torch_dtype": "float32",
        "transformers_version": "4.36.2",
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    state = {k: v for k, v in tiny.state_dict().items() if k != "pos_embed.inv_freq"}
    assert {"rope.freqs", "y_embedder.y_embedding", "temporal_blocks.1.attn.q_norm.weight", "t_block.1.weight"} <= set(
        state
    )
    save_file(state, str(tmp_path / "model.safetensors"))
    loaded = load_stdit3(tmp_path, torch.bfloat16)
    assert loaded.dtype == torch.bfloat16 and loaded.pos_embed.inv_freq.dtype == torch.bfloat16
    assert all(torch.equal(loaded.state_dict()[k], v.to(torch.bfloat16)) for k, v in state.items())


def test_refuses_pickles_and_configurations_it_does_not_compute(tmp_path):
    torch.save({}, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "STDiT3"}))
    with pytest.raises(ValueError, match="lacks input_sq_size"):
        load_stdit3(tmp_path)
    save_stdit3(STDiT3(hidden_size=32, depth=1, num_heads=2, caption_channels=16, model_max_length=4), tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors' not found; found pytorch_model.bin"):
        load_stdit3(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "skip_y_embedder": True}))
    with pytest.raises(ValueError, match="skip_y_embedder"):
        load_stdit3(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "STDiT2"}))
    with pytest.raises(ValueError, match="model_type='STDiT2'"):
        load_stdit3(tmp_path)
    with pytest.raises(ValueError, match="expected 'VideoAutoencoderPipeline'"):
        load_vae(tmp_path)
    save_stdit3(STDiT3(hidden_size=32, depth=1, num_heads=2, caption_channels=16, model_max_length=4), tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "depth": 2}))
    with pytest.raises(ValueError, match="missing .*spatial_blocks.1"):
        load_stdit3(tmp_path)


def test_missing_component_is_named(tmp_path):
    (tmp_path / "transformer").mkdir()
    with pytest.raises(FileNotFoundError, match="vae' not found: put hpcai-tech/OpenSora-VAE-v1.2 there"):
        OpenSoraBackbone.from_pretrained(tmp_path, OpenSoraBackbone.tiny().defaults)


def _closed_form_schedule(steps: int, height: float, width: float, frames: int) -> list[float]:
    ratio = math.sqrt(height * width / 512**2) * (math.sqrt(frames // 17 * 5) if frames > 1 else 1.0)
    return [ratio * t / (1 + (ratio - 1) * t) * 1000 for t in (1 - i / steps for i in range(steps))]


def _schedule(steps: int, height: float, width: float, frames: int, dtype=torch.float32) -> torch.Tensor:
    scheduler = RFlowScheduler()
    value = lambda v: torch.tensor([v], dtype=dtype)  # noqa: E731
    scheduler.set_timesteps(steps, height=value(height), width=value(width), num_frames=value(frames))
    return scheduler.timesteps


@pytest.mark.parametrize(
    "steps,height,width,frames", [(30, 720, 1280, 102), (10, 480, 848, 51), (5, 240, 426, 17), (4, 64, 64, 1)]
)
def test_timestep_transform_matches_its_closed_form(steps, height, width, frames):
    torch.testing.assert_close(
        _schedule(steps, height, width, frames),
        torch.tensor(_closed_form_schedule(steps, height, width, frames)),
        rtol=2e-6,
        atol=1e-4,
    )


def test_timestep_transform_rounds_the_ratio_in_the_conditioning_dtype():
    # 720p, 102 frames: sqrt(720 * 1280 / 512**2) = 1.875 exactly; sqrt(30) = 5.4772 is 5.46875 in bfloat16, and
    # 1.875 * 5.46875 = 10.2539 is 10.25: Open-Sora's bf16 inference samples with ratio 10.25, not 10.2698.
    t = torch.tensor([1 - i / 30 for i in range(30)], dtype=torch.float64)
    expected = (10.25 * t / (1 + 9.25 * t) * 1000).float()
    torch.testing.assert_close(_schedule(30, 720, 1280, 102, torch.bfloat16), expected, rtol=1e-6, atol=1e-4)
    assert (_schedule(30, 720, 1280, 102, torch.float32) - expected)[1:].abs().min() > 1e-3  # ratio 10.2698


def test_schedule_refuses_frame_counts_where_the_shift_is_zero_over_zero():
    with pytest.raises(ValueError, match="num_frames=16"):
        _schedule(10, 240, 426, 16)
    with pytest.raises(ValueError, match="num_inference_steps must be at least 1; got 0"):
        _schedule(0, 240, 426, 17)


class LinearVelocityModel(torch.nn.Module):
    """Stands in for STDiT3: velocity ``0.5 z + 1`` for the prompt, ``-0.25 z + 2`` for "no prompt"; records calls."""

    def __init__(self) -> None:
        super().__init__()
        self.config = type("Config", (), {"in_channels": 4, "model_max_length": 6})()
        self.y_embedder = torch.nn.Module()
        self.y_embedder.register_buffer("y_embedding", torch.full((6, 3), -5.0))
        self.device, self.dtype = torch.device("cpu"), torch.float32
        self.calls = []

    def forward(self, x, timestep, y, mask=None, fps=None, height=None, width=None):
        self.calls.append((x.clone(), timestep.clone(), y.clone(), mask.clone()))
        half = x.shape[0] // 2 if y.shape[0] == 2 * mask.shape[0] else x.shape[0]
        velocity = torch.cat([0.5 * x[:half] + 1.0, -0.25 * x[half:] + 2.0]).float()
        return torch.cat([velocity, torch.full_like(velocity, float("nan"))], dim=1)  # sigma channels: unused


def _pipeline(model) -> OpenSoraPipeline:
    vae = OpenSoraBackbone.tiny(seed=0).pipe.vae
    return OpenSoraPipeline(tokenizer=None, text_encoder=None, transformer=model, vae=vae, scheduler=RFlowScheduler())


@pytest.mark.parametrize("guidance", [7.0, 1.0])
def test_sampling_loop_is_euler_over_the_schedule_with_cfg(guidance):
    model = LinearVelocityModel()
    steps, frames, size = 4, 17, 16
    z0 = torch.randn(1, 4, 5, size // 8, size // 8, generator=torch.Generator().manual_seed(0))
    embeds, mask = torch.ones(1, 1, 6, 3), torch.tensor([[1, 1, 0, 0, 0, 0]])
    out = _pipeline(model)(
        embeds,
        mask,
        num_frames=frames,
        height=size,
        width=size,
        num_inference_steps=steps,
        guidance_scale=guidance,
        fps=24,
        latents=z0,
        output_type="latent",
    )
    # Hand-rolled reference in float64: t'_i from the closed form, z += v(z) * (t'_i - t'_{i+1}) / 1000.
    ts = _closed_form_schedule(steps, size, size, frames) + [0.0]
    z = z0.double()
    for i in range(steps):
        cond, uncond = 0.5 * z + 1.0, -0.25 * z + 2.0
        velocity = uncond + guidance * (cond - uncond) if guidance > 1 else cond
        z = z + velocity * (ts[i] - ts[i + 1]) / 1000
    torch.testing.assert_close(out.double(), z, rtol=1e-5, atol=1e-5)
    assert len(model.calls) == steps
    for (x, timestep, y, call_mask), t in zip(model.calls, ts):
        assert timestep.tolist() == pytest.approx([t] * x.shape[0], rel=1e-6)
        torch.testing.assert_close(call_mask, mask)
        if guidance > 1:  # [prompt, no prompt]: the same latents twice, the learned null sequence second
            assert x.shape[0] == 2 and torch.equal(x[0], x[1])
            assert torch.equal(y[0], embeds[0]) and torch.equal(y[1, 0], model.y_embedder.y_embedding)
        else:
            assert x.shape[0] == 1 and y.shape[0] == 1


def test_load_backbone_builds_the_tiny_model():
    backbone = load_backbone("opensora", None, seed=0)
    assert isinstance(backbone, OpenSoraBackbone) and backbone.device.type == "cpu"
