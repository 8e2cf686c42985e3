"""vboost's Open-Sora v1.2 port against the original code, on random weights at a tiny size of the real structure.

    python benchmarks/compare_opensora.py /path/to/Open-Sora    # a checkout of branch opensora/v1.2

The original STDiT3 and video VAE are built with the original classes, given random weights, saved with their
own ``save_pretrained`` (the released format: ``config.json`` + ``model.safetensors``) and loaded through
``vboost.backbones.opensora.load_stdit3``/``load_vae``, the loaders ``OpenSoraBackbone.from_pretrained`` uses.
Then both compute the same inputs in float32 and the maximum absolute differences are printed: the denoiser's
output, the q/k of every temporal attention (after q/k norm and RoPE: what Enhance-A-Video reads) and the score
computed from them, the VAE's decode and encode, the sampler's timestep schedules, and whole sampling loops
(original ``RFLOW.sample`` vs ``OpenSoraPipeline``, classifier-free guidance included).

The original imports more than these modules use. Run it where ``timm==0.9.16`` (which needs torchvision),
``rotary-embedding-torch==0.5.3``, ``einops``, ``ftfy`` and ``beautifulsoup4`` are installed (a virtual
environment with ``--system-site-packages``); this script then stands in for what cannot be installed on a CPU
machine or is not used by the compared code:
- torchvision's compiled operators: only their schemas are declared (timm imports torchvision; the CUDA wheel
  has no CPU kernels), as the test-only shim in the README describes;
- ``xformers.ops.memory_efficient_attention`` with ``BlockDiagonalMask``, which the original cross-attention
  calls: replaced by plain float32 softmax attention over each sample's own text tokens (xformers has no CPU
  kernel). This is the one compared computation that is not the original's own code;
- mmengine's ``Registry`` (a name -> class table that builds the VAE's two stages from their config dicts),
  ``opensora.utils.ckpt_utils`` (checkpoint download helpers, never called with ``from_pretrained=None``),
  ``opensora.datasets`` (``IMG_FPS = 120`` only), and the packages' ``__init__`` files that import every model.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import tempfile
import types
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def declare_torchvision_operators() -> torch.library.Library:
    """Declare the compiled operators a CUDA torchvision wheel registers, so that it imports on a CPU torch
    (transformers, diffusers and timm import it when present). Benchmark-only; keep the returned library alive."""
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    return lib


def install_stand_ins(checkout: Path) -> None:
    """Make the original's compared modules importable from ``checkout`` (see the module docstring)."""

    def module(name: str, path: Path | None = None) -> types.ModuleType:
        mod = types.ModuleType(name)
        if path is not None:
            mod.__path__ = [str(path)]
        sys.modules[name] = mod
        return mod

    for name in (
        "opensora",
        "opensora.models",
        "opensora.models.stdit",
        "opensora.models.vae",
        "opensora.models.layers",
        "opensora.models.text_encoder",
        "opensora.schedulers",
        "opensora.schedulers.iddpm",
        "opensora.utils",
    ):
        module(name, checkout / name.replace(".", "/"))
    datasets = module("opensora.datasets", checkout / "opensora/datasets")
    datasets.IMG_FPS = 120
    module("opensora.datasets.utils").read_from_path = None

    class Registry:
        def __init__(self) -> None:
            self.entries: dict[str, object] = {}

        def register_module(self, name=None, force=False, module=None):
            def register(obj):
                self.entries[name or obj.__name__] = obj
                return obj

            return register

        def build(self, cfg: dict):
            cfg = dict(cfg)
            return self.entries[cfg.pop("type")](**cfg)

    registry = module("opensora.registry")
    registry.MODELS, registry.SCHEDULERS = Registry(), Registry()
    registry.build_module = lambda mod, builder, **kw: builder.build({**mod, **kw}) if isinstance(mod, dict) else mod
    module("opensora.utils.ckpt_utils").load_checkpoint = None

    class BlockDiagonalMask:
        def __init__(self, q_seqlen: list[int], kv_seqlen: list[int]) -> None:
            self.q_seqlen, self.kv_seqlen = list(q_seqlen), list(kv_seqlen)

        @classmethod
        def from_seqlens(cls, q_seqlen, kv_seqlen):
            return cls(q_seqlen, kv_seqlen)

    def memory_efficient_attention(query, key, value, p=0.0, attn_bias=None):
        # [1, M, heads, d] layout; query block i attends key/value block i only.
        q_lens = attn_bias.q_seqlen if attn_bias else [query.shape[1]]
        kv_lens = attn_bias.kv_seqlen if attn_bias else [key.shape[1]]
        outs, q0, k0 = [], 0, 0
        for q_len, kv_len in zip(q_lens, kv_lens):
            q = query[:, q0 : q0 + q_len].transpose(1, 2).float()
            k = key[:, k0 : k0 + kv_len].transpose(1, 2).float()
            v = value[:, k0 : k0 + kv_len].transpose(1, 2).float()
            weights = (q * q.shape[-1] ** -0.5 @ k.transpose(-1, -2)).softmax(-1)
            outs.append((weights @ v).transpose(1, 2).to(query.dtype))
            q0, k0 = q0 + q_len, k0 + kv_len
        return torch.cat(outs, dim=1)

    xformers, ops, fmha = module("xformers"), module("xformers.ops"), module("xformers.ops.fmha")
    xformers.ops, ops.fmha = ops, fmha
    fmha.BlockDiagonalMask = BlockDiagonalMask
    ops.memory_efficient_attention = memory_efficient_attention


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Random values everywhere, so that no zero-initialised projection hides a path (the original zeroes the
    temporal blocks' output projections and the fps MLP's last layer)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name == "rope.freqs":
                continue  # the frequencies are fixed, not learned
            param.copy_(param + 0.3 * torch.randn(param.shape, generator=generator))


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


class Report:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str]] = []

    def add(self, what: str, value: float | str) -> None:
        text = value if isinstance(value, str) else f"{value:.3g}"
        self.rows.append((what, text))
        print(f"{what:<100} {text}")


@contextlib.contextmanager
def recording_qk(original, ours):
    """Record the temporal attention q/k of both models: the original's from its RoPE calls (q then k, after
    the q/k norm), ours from ``project_qkv``."""
    original_qk, our_qk, undo = [], [], []
    for block in original.temporal_blocks:
        rotate = block.attn.rotary_emb

        def recording_rotate(t, rotate=rotate):
            out = rotate(t)
            original_qk.append(out.detach().clone())
            return out

        block.attn.rotary_emb = recording_rotate
        undo.append(lambda attn=block.attn, rotate=rotate: setattr(attn, "rotary_emb", rotate))
    for block in ours.temporal_blocks:
        project = block.attn.project_qkv

        def recording_project(*args, project=project, **kwargs):
            q, k, v = project(*args, **kwargs)
            our_qk.extend([q.detach().clone(), k.detach().clone()])
            return q, k, v

        block.attn.project_qkv = recording_project
        undo.append(lambda attn=block.attn: vars(attn).pop("project_qkv"))
    try:
        yield original_qk, our_qk
    finally:
        for fn in undo:
            fn()


@contextlib.contextmanager
def original_attention_arithmetic():
    """Within the block, ``scaled_dot_product_attention`` computes as the original's attention code does: self-
    attention by explicit matmuls with a float32 softmax (``Attention``), cross-attention in float32 over each
    sample's valid tokens only (the stand-in above). Used to show that everything else in the port is bitwise
    the original's."""
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def explicit(query, key, value, attn_mask=None, **kwargs):
        scale = query.shape[-1] ** -0.5
        if attn_mask is None:
            weights = (query * scale @ key.transpose(-2, -1)).to(torch.float32).softmax(-1).to(query.dtype)
            return weights @ value
        outs = []
        for b in range(query.shape[0]):
            valid = attn_mask[b].flatten()
            q, k, v = query[b].float(), key[b][:, valid].float(), value[b][:, valid].float()
            outs.append(((q * scale @ k.transpose(-1, -2)).softmax(-1) @ v).to(query.dtype))
        return torch.stack(outs)

    torch.nn.functional.scaled_dot_product_attention = explicit
    try:
        yield
    finally:
        torch.nn.functional.scaled_dot_product_attention = sdpa


def compare_stdit3(report: Report, workdir: Path):
    from opensora.models.stdit.stdit3 import STDiT3 as OriginalSTDiT3
    from opensora.models.stdit.stdit3 import STDiT3Config

    from vboost.backbones.opensora import load_stdit3
    from vboost.methods import EnhanceAVideo
    from vboost.ops import feta_score

    torch.manual_seed(0)
    config = STDiT3Config(depth=2, hidden_size=64, num_heads=4, caption_channels=32, model_max_length=12, qk_norm=True)
    original = OriginalSTDiT3(config).eval()
    randomize(original, seed=1)
    original.save_pretrained(workdir / "transformer")
    ours = load_stdit3(workdir / "transformer", torch.float32)
    same_keys = set(original.state_dict()) - {"pos_embed.inv_freq"} == set(ours.state_dict()) - {"pos_embed.inv_freq"}
    report.add("STDiT3: state-dict keys identical (besides the non-persistent pos_embed.inv_freq)", str(same_keys))

    generator = torch.Generator().manual_seed(2)
    # 7 latent frames, 9x14 latents (the odd height is padded to whole patches, then cropped).
    x = torch.randn(2, 4, 7, 9, 14, generator=generator)
    y = torch.randn(2, 1, 12, 32, generator=generator)
    mask = torch.tensor([[1] * 5 + [0] * 7, [1] * 9 + [0] * 3])
    cond = dict(
        fps=torch.tensor([24.0, 12.0]), height=torch.tensor([720.0, 720.0]), width=torch.tensor([1280.0, 1280.0])
    )
    timestep = torch.tensor([912.5, 301.25])
    with torch.no_grad(), recording_qk(original, ours) as (original_qk, our_qk):
        expected = original(x, timestep, y, mask=mask, **cond)
        got = ours(x, timestep, y, mask=mask, **cond)
    report.add(
        "STDiT3 forward, float32, 2 prompts with different token counts: max |ours - original|", max_diff(got, expected)
    )
    report.add("  output scale (max |original|)", expected.abs().max().item())
    qk_gap = max(max_diff(a, b) for a, b in zip(our_qk, original_qk))
    report.add(f"  temporal attention q/k after norm and RoPE, {len(our_qk)} tensors: max |ours - original|", qk_gap)
    with torch.no_grad(), recording_qk(original, ours) as (original_qk, our_qk), original_attention_arithmetic():
        got = ours(x, timestep, y, mask=mask, **cond)
        expected = original(x, timestep, y, mask=mask, **cond)
    report.add(
        "  same, both attention kernels computing as the original's code: max |ours - original|",
        max_diff(got, expected),
    )
    qk_gap = max(max_diff(a, b) for a, b in zip(our_qk, original_qk))
    report.add("  ... and the temporal q/k: max |ours - original|", qk_gap)

    # Classifier-free guidance layout: one prompt's mask for [prompt, no prompt]; the original's frame mask of
    # text-to-video (all frames True, as apply_mask_strategy gives it) against our model, which has none.
    cfg_mask = mask[:1]
    x_mask = torch.ones(2, 7, dtype=torch.bool)
    with torch.no_grad():
        expected = original(x, timestep, y, mask=cfg_mask, x_mask=x_mask, **cond)
        got = ours(x, timestep, y, mask=cfg_mask, **cond)
    report.add(
        "STDiT3 forward, one mask for the CFG batch, original with its all-True frame mask", max_diff(got, expected)
    )

    # Enhance-A-Video on our port, one temporal layer at a time (a scaled layer changes the inputs of the next):
    # the score it applied vs the score of the original's q/k at that layer.
    weight, gaps = 2.0, []
    with torch.no_grad(), recording_qk(original, ours) as (original_qk, _):
        original(x, timestep, y, mask=mask, **cond)
        for layer in range(len(ours.temporal_blocks)):
            with EnhanceAVideo(weight=weight, layers=[layer]).attached(ours) as handle:
                ours(x, timestep, y, mask=mask, **cond)
            (record,) = handle.records
            gaps.append(
                abs(record["score"] - feta_score(original_qk[2 * layer], original_qk[2 * layer + 1], weight).item())
            )
    report.add("Enhance-A-Video score per temporal layer (weight 2): max |ours - feta_score(original q/k)|", max(gaps))
    report.add(
        "  the scores",
        ", ".join(f"{feta_score(q, k, weight).item():.4f}" for q, k in zip(original_qk[0::2], original_qk[1::2])),
    )

    # bfloat16 (the release's inference dtype): not bitwise, the original attends in explicit matmuls. The
    # original caches its RoPE angles at the first call; inference converts before that call, so must this.
    original_bf16, ours_bf16 = copy.deepcopy(original).to(torch.bfloat16), copy.deepcopy(ours).to(torch.bfloat16)
    original_bf16.rope.cached_freqs = None
    with torch.no_grad():
        expected = original_bf16(x, timestep, y, mask=mask, **cond)
        got = ours_bf16(x, timestep, y, mask=mask, **cond)
    report.add("STDiT3 forward, bfloat16 (SDPA vs explicit attention): max |ours - original|", max_diff(got, expected))
    with torch.no_grad(), original_attention_arithmetic():
        got = ours_bf16(x, timestep, y, mask=mask, **cond)
    report.add(
        "  same, both attention kernels computing as the original's code: max |ours - original|",
        max_diff(got, expected),
    )
    return original, ours


def compare_vae(report: Report, workdir: Path):
    from diffusers import AutoencoderKL
    from opensora.models.vae.vae import VideoAutoencoderKL, VideoAutoencoderPipeline, VideoAutoencoderPipelineConfig
    from opensora.models.vae.vae_temporal import VAE_Temporal

    import opensora.registry as registry
    from vboost.backbones.opensora import latent_frame_count, load_vae

    registry.MODELS.entries.update(VideoAutoencoderKL=VideoAutoencoderKL, VAE_Temporal=VAE_Temporal)
    torch.manual_seed(3)
    AutoencoderKL(
        block_out_channels=(16, 16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=4,
        latent_channels=4,
    ).save_pretrained(workdir / "spatial")
    temporal = dict(
        type="VAE_Temporal",
        in_out_channels=4,
        latent_embed_dim=4,
        embed_dim=4,
        filters=16,
        num_res_blocks=2,
        channel_multipliers=(1, 2, 2, 4),
        temporal_downsample=(False, True, True),
        num_groups=4,
    )
    config = VideoAutoencoderPipelineConfig(
        vae_2d=dict(type="VideoAutoencoderKL", from_pretrained=str(workdir / "spatial"), micro_batch_size=4),
        vae_temporal=temporal,
        micro_frame_size=17,
        shift=(-0.10, 0.34, 0.27, 0.98),
        scale=(3.85, 2.32, 2.33, 3.06),
    )
    original = VideoAutoencoderPipeline(config).eval()
    randomize(original, seed=4)
    original.save_pretrained(workdir / "vae")
    ours = load_vae(workdir / "vae", torch.float32)

    frames = range(1, 120)
    report.add(
        "VAE latent frame count, 1..119 frames: all equal to the original's get_latent_size",
        str(all(original.get_latent_size([n, None, None])[0] == latent_frame_count(n) for n in frames)),
    )
    generator = torch.Generator().manual_seed(5)
    for num_frames in (17, 20, 51):
        z = torch.randn(1, 4, latent_frame_count(num_frames), 4, 6, generator=generator)
        with torch.no_grad():
            expected = original.decode(z, num_frames=num_frames)
            got = ours.decode(z, num_frames)
        report.add(
            f"VAE decode, {num_frames} frames ({tuple(got.shape)}): max |ours - original|", max_diff(got, expected)
        )
    spatial_latents = torch.randn(1, 4, 17, 4, 6, generator=generator)
    with torch.no_grad():
        expected = original.temporal_vae.encode(spatial_latents)
        got = ours.temporal_vae.encode(spatial_latents)
    report.add(
        "temporal VAE encode, 17 frames: max |ours - original| of posterior mean, logvar",
        max(max_diff(got.mean, expected.mean), max_diff(got.logvar, expected.logvar)),
    )
    pixels = torch.rand(1, 3, 20, 32, 48, generator=generator) * 2 - 1
    with torch.no_grad():
        torch.manual_seed(6)  # both stages draw their posterior noise from the global generator, in this order
        expected = original.encode(pixels)
        torch.manual_seed(6)
        got = ours.encode(pixels)
    report.add(
        "VAE encode, 20 frames, both posteriors sampled with the same noise: max |ours - original|",
        max_diff(got, expected),
    )
    return ours


def compare_sampler(report: Report, original_model, our_model, our_vae) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler
    from opensora.datasets.aspect import get_image_size, get_num_frames
    from opensora.schedulers.rf import RFLOW
    from opensora.schedulers.rf.rectified_flow import timestep_transform as original_transform
    from opensora.utils.inference_utils import prepare_multi_resolution_info

    from vboost.backbones.opensora import OpenSoraPipeline, RFlowScheduler

    def original_schedule(steps: int, info: dict) -> torch.Tensor:
        # RFLOW.sample's schedule, built as it builds it.
        ts = [torch.tensor([(1.0 - i / steps) * 1000]) for i in range(steps)]
        return torch.cat([original_transform(t, info, num_timesteps=1000) for t in ts])

    gaps = []
    for resolution, duration, dtype in (
        ("720p", "4s", torch.bfloat16),
        ("480p", "4s", torch.bfloat16),
        ("240p", "2s", torch.bfloat16),
        ("720p", "4s", torch.float32),
        ("360p", 1, torch.bfloat16),
    ):
        height, width = get_image_size(resolution, "9:16")
        num_frames = get_num_frames(duration)
        info = prepare_multi_resolution_info("STDiT2", 1, (height, width), num_frames, 24, "cpu", dtype)
        scheduler = RFlowScheduler()
        scheduler.set_timesteps(30, height=info["height"], width=info["width"], num_frames=info["num_frames"])
        gaps.append(max_diff(scheduler.timesteps, original_schedule(30, info)))
    report.add(
        "timestep schedule, 30 steps: 720p/480p/240p 9:16 at 4s/4s/2s in bf16, 720p 4s fp32, an image", max(gaps)
    )
    nine = prepare_multi_resolution_info("STDiT2", 1, (240, 426), 9, 24, "cpu", torch.float32)
    report.add(
        "  original schedule at 9 frames, first timestep (ours refuses 2..16 frames)",
        str(original_schedule(30, nine)[0].item()),
    )

    class PromptFeatures:
        """The original sampler's text encoder interface, returning fixed T5-like features."""

        def __init__(self, y, mask, y_embedder):
            self.y, self.mask, self.y_embedder = y, mask, y_embedder

        def encode(self, prompts):
            return dict(y=self.y, mask=self.mask)

        def null(self, n):
            return self.y_embedder.y_embedding[None].repeat(n, 1, 1)[:, None]

    generator = torch.Generator().manual_seed(7)
    num_frames, height, width, steps, guidance = 20, 48, 64, 6, 7.0
    y = torch.randn(1, 1, 12, 32, generator=generator)
    mask = torch.tensor([[1] * 7 + [0] * 5])
    z0 = torch.randn(1, 4, our_vae.latent_frames(num_frames), height // 8, width // 8, generator=generator)
    rflow = RFLOW(num_sampling_steps=steps, cfg_scale=guidance, use_timestep_transform=True)

    def original_sample(model, dtype, frame_mask=None):
        info = prepare_multi_resolution_info("STDiT2", 1, (height, width), num_frames, 24, "cpu", dtype)
        text = PromptFeatures(y, mask, model.y_embedder)
        return rflow.sample(
            model,
            text,
            z=z0.clone().to(dtype),
            prompts=["p"],
            device="cpu",
            additional_args=info,
            progress=False,
            mask=frame_mask,
        )

    def our_sample(model):
        pipe = OpenSoraPipeline(
            tokenizer=None, text_encoder=None, transformer=model, vae=our_vae, scheduler=RFlowScheduler()
        )
        return pipe(
            y,
            mask,
            num_frames=num_frames,
            height=height,
            width=width,
            num_inference_steps=steps,
            guidance_scale=guidance,
            fps=24,
            latents=z0.clone().to(model.dtype),
            output_type="latent",
        )

    def as_original(model):
        # Our STDiT3 behind the original's call (it passes num_frames and ar, which STDiT3 does not read).
        def call(x, timestep, y, mask=None, fps=None, height=None, width=None, **unused):
            return model(x, timestep, y, mask=mask, fps=fps, height=height, width=width)

        call.y_embedder = model.y_embedder
        return call

    all_frames = torch.ones(1, z0.shape[2])  # apply_mask_strategy's mask for plain text to video
    with torch.no_grad():
        expected = original_sample(original_model, torch.float32)
        got = our_sample(our_model)
        report.add(
            f"sampling, {steps} steps, CFG 7, {num_frames} frames, fp32: max |OpenSoraPipeline - RFLOW.sample|",
            max_diff(got, expected),
        )
        report.add("  latent scale (max |original|)", expected.abs().max().item())
        same_model = original_sample(as_original(our_model), torch.float32)
        report.add(
            "  RFLOW.sample driving our STDiT3 (sampler and CFG alone): max |difference|", max_diff(got, same_model)
        )
        our_bf16 = copy.deepcopy(our_model).to(torch.bfloat16)
        report.add(
            "  bf16 with the inference script's all-ones frame mask, our STDiT3 in both: max |difference|",
            max_diff(our_sample(our_bf16), original_sample(as_original(our_bf16), torch.bfloat16, all_frames)),
        )
        masked = original_sample(as_original(our_model), torch.float32, all_frames)
        report.add(
            "  fp32 with that mask: max |difference| (the original skips step 0 when t'_0 rounds above 1000)",
            max_diff(got, masked),
        )
        info = prepare_multi_resolution_info("STDiT2", 1, (height, width), num_frames, 24, "cpu", torch.float32)
        report.add("    t'_0 - 1000 of this fp32 schedule", (original_schedule(steps, info)[0] - 1000).item())

        # The same loop through diffusers' flow-matching Euler scheduler, shifted by the same ratio.
        ratio = (info["height"] * info["width"] / 512**2).sqrt() * (info["num_frames"] // 17 * 5).sqrt()
        flow = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=ratio.item())
        flow.set_timesteps(sigmas=[1.0 - i / steps for i in range(steps)])
        z = z0.clone()
        cond = {k: info[k] for k in ("fps", "height", "width")}
        null = our_model.y_embedder.y_embedding[None, None]
        for t in flow.timesteps:
            out = our_model(torch.cat([z, z]), t.repeat(2), torch.cat([y, null]), mask=mask, **cond)[:, :4]
            c, u = out.chunk(2)
            z = flow.step(-(u + guidance * (c - u)), t, z).prev_sample  # diffusers' flow output is noise - x0
    report.add(
        "  FlowMatchEulerDiscreteScheduler, same shift, same model: max |latents - RFLOW.sample|",
        max_diff(z, same_model),
    )
    scheduler = RFlowScheduler()
    scheduler.set_timesteps(steps, height=info["height"], width=info["width"], num_frames=info["num_frames"])
    report.add("    its timesteps: max |FlowMatchEuler - RFLOW|", max_diff(flow.timesteps, scheduler.timesteps))


def compare_caption_cleaning(report: Report) -> None:
    from opensora.models.text_encoder.t5 import text_preprocessing

    prompts = []
    for path in sorted((ROOT / "conf/prompts").glob("*.yaml")):
        prompts += yaml.safe_load(path.read_text())["prompts"]
    changed = [p for p in prompts if text_preprocessing(f"{p} aesthetic score: 6.5.") != f"{p} aesthetic score: 6.5."]
    report.add(
        f"caption cleaner of Open-Sora's inference on conf/prompts ({len(prompts)} prompts + score): changed",
        str(changed),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, help="a checkout of hpcai-tech/Open-Sora at branch opensora/v1.2")
    args = parser.parse_args(argv)
    if not (args.checkout / "opensora/models/stdit/stdit3.py").is_file():
        parser.error(f"{str(args.checkout)!r} has no opensora/models/stdit/stdit3.py (check out branch opensora/v1.2)")
    torchvision_operators = declare_torchvision_operators()  # noqa: F841 (kept alive for the whole run)
    # Before the stand-ins exist: diffusers and transformers probe for xformers when they are first imported.
    import vboost.backbones.opensora  # noqa: F401
    import vboost.methods  # noqa: F401

    install_stand_ins(args.checkout.resolve())
    torch.set_num_threads(2)
    report = Report()
    with tempfile.TemporaryDirectory() as tmp:
        original_model, our_model = compare_stdit3(report, Path(tmp))
        our_vae = compare_vae(report, Path(tmp))
        compare_sampler(report, original_model, our_model, our_vae)
    compare_caption_cleaning(report)


if __name__ == "__main__":
    main()
