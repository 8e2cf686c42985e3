"""Step-time cost of each method over a whole generation: method / plain, measured side by side in one run.

The denoiser is driven through ``steps`` denoising steps exactly as a pipeline drives it (batched CFG, the step
index set on the method's handle so step windows apply: ByTheWay is active in its first 20% only), plain and
with the method attached, alternating repeat by repeat so drift hits both alike. Random weights, real
architectures. On a CPU the models keep the real token layout at reduced width; with ``--full`` (meant for a
GPU) they are the full-size CogVideoX-2b transformer at 49 frames 480x720 and the AnimateDiff SD1.5 U-Net at 16
frames 512x512, in bf16, and peak memory is printed too.

    python benchmarks/bench_methods.py            # CPU, reduced width
    python benchmarks/bench_methods.py --full     # GPU, full size
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import CogVideoXTransformer3DModel, MotionAdapter, UNet2DConditionModel, UNetMotionModel

from vboost.methods import ByTheWay, EnhanceAVideo, Method


@dataclass
class Workload:
    name: str
    denoiser: torch.nn.Module
    inputs: dict[str, torch.Tensor]
    methods: dict[str, Method]


def cogvideox_workload(full: bool, device: str, dtype: torch.dtype) -> Workload:
    # 49 frames -> 13 latent frames; 480x720 -> 60x90 latents (full) or 160x240 -> 20x30 (reduced).
    heads, layers, text_dim, time_dim, (h, w) = (30, 30, 4096, 512, (60, 90)) if full else (4, 2, 64, 64, (20, 30))
    model = CogVideoXTransformer3DModel(
        num_attention_heads=heads, attention_head_dim=64, in_channels=16, out_channels=16, time_embed_dim=time_dim,
        text_embed_dim=text_dim, num_layers=layers, sample_height=h, sample_width=w, sample_frames=49,
    )
    inputs = {
        "hidden_states": torch.randn(2, 13, 16, h, w),
        "encoder_hidden_states": torch.randn(2, 226, text_dim),
        "timestep": torch.tensor([500, 500]),
    }
    return Workload("CogVideoX-2b" + ("" if full else " (reduced width, 13x20x30 latents)"), model, inputs,
                    {"enhance_a_video(3.4)": EnhanceAVideo(weight=3.4)})


def animatediff_workload(full: bool, device: str, dtype: torch.dtype) -> Workload:
    # 16 frames; 512x512 -> 64x64 latents (full) or 128x128 -> 16x16 (reduced).
    channels, cross_dim, size = ((320, 640, 1280, 1280), 768, 64) if full else ((32, 64, 128, 128), 64, 16)
    unet = UNet2DConditionModel(
        block_out_channels=channels, cross_attention_dim=cross_dim, layers_per_block=2, attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )
    adapter = MotionAdapter(block_out_channels=channels, motion_layers_per_block=2, motion_max_seq_length=32)
    model = UNetMotionModel.from_unet2d(unet, adapter)
    inputs = {
        "sample": torch.randn(2, 4, 16, size, size),
        # The pipeline repeats the text embeddings per frame before the U-Net sees them.
        "encoder_hidden_states": torch.randn(2 * 16, 77, cross_dim),
        "timestep": torch.tensor([500, 500]),
    }
    return Workload("AnimateDiff SD1.5" + ("" if full else " (reduced width, 16x16x16 latents)"), model, inputs,
                    {"bytheway(0.6,1.5,7)": ByTheWay(alpha=0.6, beta=1.5, tau=7)})


def generation_time(denoiser: torch.nn.Module, inputs: dict, steps: int, method: Method | None, device: str) -> float:
    """Seconds spent in ``steps`` denoiser calls, stepping the method's handle as a pipeline would."""
    handle = method.attach(denoiser) if method is not None else None
    try:
        sync(device)
        start = time.perf_counter()
        for i in range(steps):
            if handle is not None:
                handle.steps.num_steps, handle.steps.step_index = steps, i
            denoiser(**inputs, return_dict=False)
        sync(device)
        return time.perf_counter() - start
    finally:
        if handle is not None:
            handle.detach()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_memory(device: str, run: Callable[[], object]) -> float:
    """Peak GiB allocated on ``device`` during ``run`` (0 on a CPU)."""
    if not device.startswith("cuda"):
        run()
        return 0.0
    torch.cuda.reset_peak_memory_stats()
    run()
    return torch.cuda.max_memory_allocated() / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full-size architectures in bf16 (needs a GPU)")
    parser.add_argument("--steps", type=int, default=10, help="denoising steps per generation")
    parser.add_argument("--repeats", type=int, default=3, help="alternating plain/method repeats (median taken)")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.full and device == "cpu":
        parser.error("--full needs a GPU (full-size models in bf16); drop it to run the reduced models on the CPU")
    dtype = torch.bfloat16 if args.full else torch.float32
    torch.manual_seed(0)
    gpu = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"device: {gpu}, threads: {torch.get_num_threads()}, dtype: {dtype}, steps: {args.steps}, repeats: {args.repeats}")
    print(f"{'model':<52} {'method':<22} {'plain s':>9} {'method s':>9} {'ratio':>7} {'peak GiB plain/method':>22}")
    for build in (cogvideox_workload, animatediff_workload):
        work = build(args.full, device, dtype)
        denoiser = work.denoiser.to(device, dtype).eval()
        inputs = {k: v.to(device, dtype if v.is_floating_point() else v.dtype) for k, v in work.inputs.items()}
        with torch.inference_mode():
            generation_time(denoiser, inputs, 1, None, device)  # warm-up: kernels, allocator
            for label, method in work.methods.items():
                generation_time(denoiser, inputs, 1, method, device)
                plain, with_method = [], []
                for _ in range(args.repeats):
                    plain.append(generation_time(denoiser, inputs, args.steps, None, device))
                    with_method.append(generation_time(denoiser, inputs, args.steps, method, device))
                mem_plain = peak_memory(device, lambda: generation_time(denoiser, inputs, 1, None, device))
                mem_method = peak_memory(device, lambda: generation_time(denoiser, inputs, 1, method, device))
                p, m = statistics.median(plain), statistics.median(with_method)
                print(f"{work.name:<52} {label:<22} {p:>9.3f} {m:>9.3f} {m / p:>7.3f} {mem_plain:>10.2f}/{mem_method:<10.2f}")


if __name__ == "__main__":
    main()
