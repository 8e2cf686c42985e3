"""This project's VideoCrafter2 against the original code (AILab-CVC/VideoCrafter), side by side on random weights.

    VENV/bin/python benchmarks/compare_videocrafter2.py /path/to/VideoCrafter [--frames 16] [--size 128] [--steps 10]

(from the repository root, with this checkout importable: an editable install or ``PYTHONPATH=.``).

The original's own ``configs/inference_t2v_512_v2.0.yaml`` is shrunk to tiny widths (same structure: four levels,
attention at 4, 2, 1, temporal convolutions, the extra temporal attention, fps conditioning, the latent scale) and
built with the original classes (``LatentDiffusion``, its ``UNetModel``, LDM ``AutoencoderKL``,
``FrozenOpenCLIPEmbedder`` on a tiny open_clip text tower). Its random weights are saved as an original-format
``model.ckpt`` with that ``config.yaml`` and a CLIP tokenizer folder written from open_clip's own vocabulary, and
loaded through ``VideoCrafter2Backbone.from_pretrained``, the code users run. Printed: max abs differences of the
schedule, tokens, text states, U-Net output, the temporal attention maps ByTheWay edits (``output_blocks`` 3-11),
the autoencoder's decode, and whole ``batch_ddim_sampling`` runs (CFG 12, fps 28, DDIM eta 1.0) from two seeds.

VENV holds the original's packages beside this project's and keeps the pinned torch:
``python3 -m venv --system-site-packages VENV; VENV/bin/pip install -c <(echo torch==2.13.0) einops
pytorch_lightning open_clip_torch==2.22.0 kornia torchvision decord``. The original pins open_clip 2.22.0; later
releases run the text tower batch-first, which its ``FrozenOpenCLIPEmbedder`` does not expect. PyPI's torchvision
is a CUDA build that the CPU torch cannot load; the two operator schemas it registers fake kernels for are declared
below first (benchmark code only). The original ``DDIMSampler`` moves its buffers to CUDA unconditionally; here
they stay on the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path

import torch

_torchvision_ops = torch.library.Library("torchvision", "DEF")
for _op in ("nms", "qnms"):
    _torchvision_ops.define(f"{_op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")

from omegaconf import OmegaConf  # noqa: E402
from torch.overrides import TorchFunctionMode  # noqa: E402

from vboost.backbones import GenerationDefaults  # noqa: E402
from vboost.backbones.videocrafter2 import VideoCrafter2Backbone  # noqa: E402
from vboost.backbones.videocrafter2._pipeline import video_to_uint8  # noqa: E402
from vboost.methods import ByTheWay  # noqa: E402

PROMPTS = ["a red sports car drives along a coastal road at sunset", "Fireworks & sparks over a lake!"]
SITES = [f"output_blocks.{i}.2.transformer_blocks.0.attn{a}" for i in range(3, 12) for a in (1, 2)]
TINY_ARCH = "vboost-tiny-text"


class _SoftmaxRecorder(TorchFunctionMode):
    """Keeps every ``softmax`` result computed while it is active (how both implementations form attention maps)."""

    def __init__(self) -> None:
        super().__init__()
        self.maps: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if getattr(func, "__name__", "") == "softmax":
            self.maps.append(out.detach().clone())
        return out


@contextlib.contextmanager
def recorded_maps(root: torch.nn.Module, names: list[str]):
    """``{name: [attention maps]}`` of the named attention modules of ``root`` while the block runs."""
    maps: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    hooks = []
    for name in names:
        recorder = _SoftmaxRecorder()

        def start(module, args, recorder=recorder):
            recorder.__enter__()

        def stop(module, args, output, recorder=recorder, name=name):
            recorder.__exit__(None, None, None)
            maps[name] += recorder.maps
            recorder.maps = []

        module = root.get_submodule(name)
        hooks += [module.register_forward_pre_hook(start), module.register_forward_hook(stop)]
    try:
        yield maps
    finally:
        for hook in hooks:
            hook.remove()


def build_original(checkout: Path, workdir: Path):
    """The original LatentDiffusion from its 512 v2.0 config at tiny widths, with random weights."""
    import open_clip
    from utils.utils import instantiate_from_config

    (workdir / f"{TINY_ARCH}.json").write_text(json.dumps({
        "embed_dim": 128,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 3},
    }))
    open_clip.add_model_config(workdir / f"{TINY_ARCH}.json")
    config = OmegaConf.load(checkout / "configs" / "inference_t2v_512_v2.0.yaml")
    params = config.model.params
    params.unet_config.params.update(
        model_channels=32, channel_mult=[1, 2, 2, 2], num_head_channels=16, context_dim=128, use_checkpoint=False
    )
    params.first_stage_config.params.ddconfig.update(ch=32, ch_mult=[1, 1, 2, 2], num_res_blocks=1, resolution=64)
    params.cond_stage_config.params.arch = TINY_ARCH
    torch.manual_seed(0)
    model = instantiate_from_config(config.model).eval()
    with torch.no_grad():
        for weight in model.parameters():
            if not weight.any():  # zero-initialised output layers (training grows them): random ones make them count
                weight.normal_(0.0, 0.05)
    return model, config


def write_checkpoint(model, config, directory: Path) -> None:
    """``model.ckpt`` (``{"state_dict": ...}``), ``config.yaml`` and a CLIP tokenizer folder of open_clip's BPE."""
    import open_clip
    from transformers import CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict()}, directory / "model.ckpt")
    OmegaConf.save(config, directory / "config.yaml")
    bpe = open_clip.tokenizer.SimpleTokenizer()
    start, end = bpe.all_special_ids  # open_clip 2.x names them <start_of_text>, <end_of_text>; CLIP's names follow
    vocab = {token: index for token, index in bpe.encoder.items() if index not in (start, end)}
    vocab.update({"<|startoftext|>": start, "<|endoftext|>": end})
    merges = sorted(bpe.bpe_ranks, key=bpe.bpe_ranks.get)  # (left, right) pairs in merge order
    CLIPTokenizer(vocab=vocab, merges=merges).save_pretrained(directory / "tokenizer")


def row(name: str, ours: torch.Tensor, original: torch.Tensor) -> None:
    diff = (ours.double() - original.double()).abs().max().item()
    print(f"| {name} | {tuple(original.shape)} | {original.abs().max().item():.4g} | {diff:.3g} |")


@torch.no_grad()
def compare(checkout: Path, frames: int, size: int, steps: int) -> None:
    sys.path.insert(0, str(checkout))
    sys.path.insert(0, str(checkout / "scripts" / "evaluation"))
    import open_clip
    from funcs import batch_ddim_sampling
    from lvdm.models.samplers.ddim import DDIMSampler
    from lvdm.models.utils_diffusion import make_ddim_timesteps

    def keep_on_device(sampler, name, value):
        setattr(sampler, name, value)

    DDIMSampler.register_buffer = keep_on_device

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model, config = build_original(checkout, workdir)
        write_checkpoint(model, config, workdir / "videocrafter2")
        defaults = GenerationDefaults(num_frames=frames, height=size, width=size, steps=steps, guidance=12.0, fps=10)
        backbone = VideoCrafter2Backbone.from_pretrained(workdir / "videocrafter2", defaults, torch_dtype=torch.float32)
    pipe = backbone.pipe
    unet = model.model.diffusion_model

    print("| compared | shape | max abs (original) | max abs difference |")
    print("|---|---|---|---|")
    row("alphas_cumprod (float64 numpy, float32 torch)", pipe.scheduler.alphas_cumprod, model.alphas_cumprod)
    pipe.scheduler.set_timesteps(50)
    original_steps = torch.from_numpy(make_ddim_timesteps("uniform", 50, 1000, verbose=False).copy()).flip(0)
    row("DDIM timesteps, 50 steps", pipe.scheduler.timesteps, original_steps)
    row("token ids", pipe.tokenize(PROMPTS + [""]), open_clip.tokenize(PROMPTS + [""]))
    text = model.get_learned_conditioning(PROMPTS)
    row("text states (penultimate + ln_final)", pipe.encode_prompt(PROMPTS), text)

    gen = torch.Generator().manual_seed(1)
    latent = size // 8
    x = torch.randn(2, 4, frames, latent, latent, generator=gen)
    t = torch.tensor([981, 421])
    fps = torch.tensor([28, 28])
    with recorded_maps(unet, SITES) as original_maps:
        expected = unet(x, t, context=text, fps=fps)
    row("U-Net output", pipe.unet(x, t, text, fps=fps).sample, expected)
    # alpha 0 and a gain below 1 leave the map as it is (the adaptive gain is 1): ByTheWay's own path, unedited.
    with ByTheWay(alpha=0.0, beta=0.5, tau=min(7, frames - 1 - frames // 2)).attached(pipe.unet):
        with recorded_maps(pipe.unet, SITES) as our_maps:
            ours = pipe.unet(x, t, text, fps=fps).sample
    row("U-Net output through ByTheWay's explicit maps (identity edit)", ours, expected)
    worst = max(SITES, key=lambda n: (our_maps[n][0].double() - original_maps[n][0].double()).abs().max().item())
    row(f"temporal maps at {len(SITES)} ByTheWay sites, worst: {worst}", our_maps[worst][0], original_maps[worst][0])

    z = torch.randn(1, 4, frames, latent, latent, generator=gen)
    row("autoencoder decode (per frame)", pipe.decode_latents(z), model.decode_first_stage_2DAE(z))

    captured = {}
    decode = model.decode_first_stage_2DAE

    def keep_latents(samples, **kwargs):
        captured["latents"] = samples
        return decode(samples, **kwargs)

    model.decode_first_stage_2DAE = keep_latents
    for seed in (0, 1):
        cond = {"c_crossattn": [text[:1]], "fps": torch.tensor([28])}
        torch.manual_seed(seed)
        with contextlib.redirect_stdout(sys.stderr):
            video = batch_ddim_sampling(model, cond, [1, 4, frames, latent, latent], 1, steps, 1.0, 12.0)[:, 0]
        out = pipe(PROMPTS[0], num_frames=frames, height=size, width=size, num_inference_steps=steps,
                   guidance_scale=12.0, fps=28, eta=1.0, generator=torch.Generator().manual_seed(seed), output_type="latent")
        row(f"batch_ddim_sampling latents, {steps} steps, seed {seed}", out.frames, captured["latents"])
        ours_uint8, original_uint8 = video_to_uint8(pipe.decode_latents(out.frames)), video_to_uint8(video)
        changed = (ours_uint8 != original_uint8).mean()
        ours_uint8, original_uint8 = torch.from_numpy(ours_uint8).int(), torch.from_numpy(original_uint8).int()
        row(f"uint8 frames, seed {seed} ({changed:.2%} of values differ)", ours_uint8, original_uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, help="a checkout of AILab-CVC/VideoCrafter")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=128, help="height and width in pixels (a multiple of 64)")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    if not (args.checkout / "lvdm" / "modules" / "networks" / "openaimodel3d.py").is_file():
        parser.error(f"{str(args.checkout)!r} is not a checkout of AILab-CVC/VideoCrafter")
    torch.set_num_threads(2)
    compare(args.checkout.resolve(), args.frames, args.size, args.steps)


if __name__ == "__main__":
    main()
