"""Tiny weight files in the formats of VBench's cache, written in code for the vbench-tier tests: DINO's
state dict, OpenAI's CLIP TorchScript archive (traced, float16, OpenAI's attribute names), raft-things.pth
from the published key list; and the published key lists themselves (tests/data, taken from the original
networks' code)."""

from __future__ import annotations

import collections
from pathlib import Path

import torch

DATA = Path(__file__).parent / "data"
WIDTH = 128  # two heads of 64, as the loaders infer


def key_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of a published checkpoint, from ``tests/data/<name>``."""
    lines = (DATA / name).read_text().splitlines()
    return {key: tuple(eval(shape)) for key, shape in (line.split(" ", 1) for line in lines if not line.startswith("#"))}


def dino_state(generator: torch.Generator, depth: int = 1) -> dict[str, torch.Tensor]:
    """A DINO ViT (facebookresearch/dino vision_transformer names) of width 128, patch 16, 224 px."""
    def r(*shape, scale=0.05):
        return torch.randn(shape, generator=generator) * scale

    state = {"cls_token": r(1, 1, WIDTH), "pos_embed": r(1, 197, WIDTH), "patch_embed.proj.weight": r(WIDTH, 3, 16, 16),
             "patch_embed.proj.bias": r(WIDTH), "norm.weight": 1 + r(WIDTH), "norm.bias": r(WIDTH)}
    for i in range(depth):
        b = f"blocks.{i}."
        state |= {b + "norm1.weight": 1 + r(WIDTH), b + "norm1.bias": r(WIDTH), b + "attn.qkv.weight": r(3 * WIDTH, WIDTH),
                  b + "attn.qkv.bias": r(3 * WIDTH), b + "attn.proj.weight": r(WIDTH, WIDTH), b + "attn.proj.bias": r(WIDTH),
                  b + "norm2.weight": 1 + r(WIDTH), b + "norm2.bias": r(WIDTH), b + "mlp.fc1.weight": r(64, WIDTH),
                  b + "mlp.fc1.bias": r(64), b + "mlp.fc2.weight": r(WIDTH, 64), b + "mlp.fc2.bias": r(WIDTH)}
    return state


class _QuickGELU(torch.nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class _ResidualAttentionBlock(torch.nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.attn = torch.nn.MultiheadAttention(width, width // 64)
        self.ln_1, self.ln_2 = torch.nn.LayerNorm(width), torch.nn.LayerNorm(width)
        self.mlp = torch.nn.Sequential(collections.OrderedDict(
            c_fc=torch.nn.Linear(width, 2 * width), gelu=_QuickGELU(), c_proj=torch.nn.Linear(2 * width, width)))


class _Transformer(torch.nn.Module):
    def __init__(self, width: int, layers: int):
        super().__init__()
        self.resblocks = torch.nn.Sequential(*[_ResidualAttentionBlock(width) for _ in range(layers)])


class _VisionTransformer(torch.nn.Module):
    def __init__(self, width: int, patch: int, embed: int):
        super().__init__()
        grid = 224 // patch
        self.conv1 = torch.nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = torch.nn.Parameter(torch.randn(width) * 0.1)
        self.positional_embedding = torch.nn.Parameter(torch.randn(grid * grid + 1, width) * 0.1)
        self.ln_pre, self.ln_post = torch.nn.LayerNorm(width), torch.nn.LayerNorm(width)
        self.transformer = _Transformer(width, 1)
        self.proj = torch.nn.Parameter(torch.randn(width, embed) * 0.1)


class _OpenAICLIP(torch.nn.Module):
    """OpenAI's CLIP attribute names (clip/model.py), tiny; the text tower is there to be ignored."""

    def __init__(self, patch: int, embed: int):
        super().__init__()
        self.visual = _VisionTransformer(WIDTH, patch, embed)
        self.transformer = _Transformer(64, 1)
        self.token_embedding = torch.nn.Embedding(10, 64)
        self.positional_embedding = torch.nn.Parameter(torch.randn(8, 64))
        self.ln_final = torch.nn.LayerNorm(64)
        self.text_projection = torch.nn.Parameter(torch.randn(64, embed))
        self.logit_scale = torch.nn.Parameter(torch.ones([]))

    def forward(self, x):
        return x * self.logit_scale + self.visual.proj.sum()


def write_clip_archive(path: Path, patch: int, embed: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A TorchScript archive as OpenAI ships CLIP (traced, float16 weights); returns its visual tensors."""
    model = _OpenAICLIP(patch, embed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    traced = torch.jit.trace(model, torch.zeros(1)).half()
    path.parent.mkdir(parents=True, exist_ok=True)
    traced.save(str(path))
    return {k: v.float() for k, v in traced.state_dict().items() if k.startswith("visual.")}


def raft_things(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A raft-things.pth: every tensor of the published file (names, shapes, ``module.`` prefix), seeded,
    with the residual blocks' ``norm3`` the same tensors as their ``downsample.1`` (one module, two names)."""
    state = {}
    for key, shape in key_shapes("raft_things_keys.txt").items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.02
    for key in [k for k in state if ".norm3." in k]:
        state[key] = state[key.replace(".norm3.", ".downsample.1.")]
    return state
