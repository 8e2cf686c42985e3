"""What diffusers' memory and speed features need, as plain data: a config is checked against it before diffusers
is imported (docs/gpu.md says what each feature does and which checkpoints need it)."""

from __future__ import annotations

import dataclasses

CPU_OFFLOAD = ("model", "sequential")  # enable_model_cpu_offload, enable_sequential_cpu_offload
GROUP_OFFLOAD = ("block_level", "leaf_level")  # enable_group_offload's offload_type
COMPILE_SCOPES = ("auto", "blocks", "denoiser")  # auto: the repeated blocks where the family names them
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's
COMPONENT_DTYPES = ("float32", "float16", "bfloat16")


@dataclasses.dataclass(frozen=True)
class AttentionBackend:
    """What one of diffusers' attention backends (``AttentionBackendName``) needs to run: a device type and,
    for a kernel library, the module it imports."""

    device: str | None = None  # None: any device torch runs on
    module: str | None = None


_CUDA = AttentionBackend("cuda")
_FLASH = AttentionBackend("cuda", "flash_attn")
_FLASH_3 = AttentionBackend("cuda", "flash_attn_interface")
_HUB = AttentionBackend("cuda", "kernels")  # a kernel from the Hugging Face Hub (its local cache, offline)
_SAGE = AttentionBackend("cuda", "sageattention")

# diffusers 0.42's AttentionBackendName values (a test keeps the two in step).
ATTENTION_BACKENDS: dict[str, AttentionBackend] = {
    "native": AttentionBackend(),
    "_native_math": AttentionBackend(),
    "flex": AttentionBackend(),
    "_native_cudnn": _CUDA,
    "_native_efficient": _CUDA,
    "_native_flash": _CUDA,
    "flash": _FLASH,
    "flash_varlen": _FLASH,
    "_flash_3": _FLASH_3,
    "_flash_varlen_3": _FLASH_3,
    "flash_hub": _HUB,
    "flash_varlen_hub": _HUB,
    "flash_4_hub": _HUB,
    "_flash_3_hub": _HUB,
    "_flash_3_varlen_hub": _HUB,
    "aiter_fa2_hub": _HUB,
    "sage_hub": _HUB,
    "sage_blackwell_hub": _HUB,
    "sage": _SAGE,
    "sage_varlen": _SAGE,
    "_sage_qk_int8_pv_fp8_cuda": _SAGE,
    "_sage_qk_int8_pv_fp8_cuda_sm90": _SAGE,
    "_sage_qk_int8_pv_fp16_cuda": _SAGE,
    "_sage_qk_int8_pv_fp16_triton": _SAGE,
    "xformers": AttentionBackend("cuda", "xformers"),
    "_native_npu": AttentionBackend("npu", "torch_npu"),
    "_native_xla": AttentionBackend("xla", "torch_xla"),
}
