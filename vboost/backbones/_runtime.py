"""diffusers' memory and speed features applied to a built or loaded backbone (docs/gpu.md).

Order matters and is fixed here: component dtypes are given at load time (:func:`vboost.backbones.load_backbone`);
then the attention backend, VAE tiling and slicing, CPU or group offloading, and last ``torch.compile``, so that it
compiles the offloading hooks with the model. Methods attach per trial, afterwards: swapping an attention processor
makes torch.compile recompile the blocks holding it once (its guards see the new processor), and the methods' own
computations run outside the compiled graphs, so later trials with other knobs reuse the compiled code.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import torch

from vboost.backbones._specs import BackboneSpec


def apply_runtime_options(
    backbone: Any,
    spec: BackboneSpec,
    device: str | torch.device,
    *,
    memory: Mapping[str, Any] | None = None,
    attention_backend: str | None = None,
    compile: Mapping[str, Any] | None = None,  # noqa: A002 -- the config key's name
) -> None:
    """Apply the ``memory`` options (``cpu_offload``, ``group_offload``, ``group_offload_blocks``,
    ``group_offload_stream``, ``vae_tiling``, ``vae_slicing``), the attention backend and ``compile`` options
    (``enabled``, ``scope``, ``mode``, ``backend``, ``dynamic``) to ``backbone``, whose pipeline sits on the CPU when
    it is to be offloaded to ``device``. The options are those ``vboost.sweep`` validates; raises what diffusers
    raises for one this pipeline cannot take."""
    memory = dict(memory or {})
    pipe = backbone.pipe
    denoisers = [backbone.denoiser, *(getattr(pipe, name) for name in spec.experts)]  # Wan 2.2: both experts
    if attention_backend is not None:
        for denoiser in denoisers:
            denoiser.set_attention_backend(attention_backend)
    if memory.get("vae_tiling"):
        pipe.vae.enable_tiling()
    if memory.get("vae_slicing"):
        pipe.vae.enable_slicing()
    offload = memory.get("cpu_offload")
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    group = memory.get("group_offload")
    if group is not None:
        pipe.enable_group_offload(
            onload_device=torch.device(device),
            offload_device=torch.device("cpu"),
            offload_type=group,
            num_blocks_per_group=memory.get("group_offload_blocks", 1) if group == "block_level" else None,
            use_stream=bool(memory.get("group_offload_stream", False)),
        )
    if compile is not None and compile.get("enabled"):
        for denoiser in denoisers:
            compile_denoiser(denoiser, spec, **{k: v for k, v in compile.items() if k != "enabled"})


def compile_denoiser(
    denoiser: torch.nn.Module,
    spec: BackboneSpec,
    *,
    scope: str = "auto",
    mode: str | None = None,
    backend: str = "inductor",
    dynamic: bool | None = None,
) -> None:
    """``torch.compile`` the denoiser in place: its repeated blocks one class at a time (diffusers' regional
    compilation: one compiled block serves every block of its class) for ``scope`` ``blocks`` (``auto`` where the
    family names its blocks), else the whole module."""
    options = {"mode": None if mode == "default" else mode, "backend": backend, "dynamic": dynamic}
    options = {key: value for key, value in options.items() if value is not None}
    if scope == "denoiser" or (scope == "auto" and not spec.repeated_blocks):
        denoiser.compile(**options)
        return
    if not getattr(denoiser, "_repeated_blocks", None):
        denoiser._repeated_blocks = list(spec.repeated_blocks)  # what compile_repeated_blocks reads
    denoiser.compile_repeated_blocks(**options)


def cast_vae_inputs(vae: torch.nn.Module) -> None:
    """Make ``vae.encode``/``vae.decode`` take their input in the VAE's own dtype: a VAE kept in float32 beside a
    bfloat16 denoiser (as Wan's model card has it) then decodes the denoiser's latents wherever a pipeline hands
    them over uncast (CogVideoX's, AnimateDiff's)."""
    for name in ("encode", "decode"):
        method = getattr(vae, name)

        @functools.wraps(method)
        def cast(x: torch.Tensor, *args: Any, _method: Any = method, **kwargs: Any) -> Any:
            return _method(x.to(module_dtype(vae)), *args, **kwargs)

        setattr(vae, name, cast)  # an instance attribute: the class's method is untouched


def module_dtype(module: torch.nn.Module) -> torch.dtype:
    """The dtype of ``module``'s first parameter (plain torch modules, such as Open-Sora's VAE, have no ``dtype``)."""
    return next(module.parameters()).dtype
