"""Step-time cost of each method over a whole generation: method / plain, measured side by side in one run.

The denoiser is driven through ``steps`` denoising steps exactly as a pipeline drives it (classifier-free guidance
batched, or two calls a step for Wan, whose pipeline makes two; the step index set on the method's handle so step
windows apply: ByTheWay is active in its first 20% only), plain and with the method attached, alternating repeat by
repeat so drift hits both alike. Random weights, real architectures. On a CPU the models keep the real token layout
at reduced width; with ``--full`` (meant for a GPU) they are the full-size CogVideoX-2b transformer at 49 frames
480x720, the Wan2.1-1.3B transformer at 81 frames 480x832 and the AnimateDiff SD1.5 U-Net at 16 frames 512x512,
built from their released configs, in bf16, and peak memory is printed too.

``--records`` also times each method with its diagnostics read back on every attention call (as an implementation
that turns each score into a Python float does) against read back once when the records are read (vboost's), and
counts the read-backs; each one waits for the device to finish all the work queued before it.

    python benchmarks/bench_methods.py [--records]            # CPU, reduced width
    python benchmarks/bench_methods.py --full [--records]     # GPU, full size
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable
from unittest import mock

import torch
from diffusers import (
    CogVideoXTransformer3DModel,
    MotionAdapter,
    UNet2DConditionModel,
    UNetMotionModel,
    WanTransformer3DModel,
)

from vboost.methods import ByTheWay, EnhanceAVideo, Method, _records


@dataclasses.dataclass
class Workload:
    name: str
    denoiser: torch.nn.Module
    inputs: dict[str, torch.Tensor]
    methods: dict[str, Method]
    calls_per_step: int = 1  # denoiser calls a pipeline makes per step (Wan: one per guidance half)
    target: str = "step"  # what the method's cost target is stated against: one step, or a whole generation
    limit: float = 1.01


def cogvideox_workload(full: bool) -> Workload:
    # THUDM/CogVideoX-2b transformer/config.json (CogVideoXTransformer3DModel's defaults). 49 frames -> 13 latent
    # frames; 480x720 -> 60x90 latents (full) or 160x240 -> 20x30 (reduced).
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


def wan_workload(full: bool) -> Workload:
    # Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json. 81 frames -> 21 latent frames; 480x832 -> 60x104
    # latents (full) or 128x208 -> 16x26 (reduced); the pipeline calls the transformer once per guidance half.
    heads, head_dim, ffn, layers, text_dim, freq_dim, (h, w) = (
        (12, 128, 8960, 30, 4096, 256, (60, 104)) if full else (2, 32, 128, 2, 64, 32, (16, 26))
    )
    model = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=head_dim, in_channels=16, out_channels=16,
        text_dim=text_dim, freq_dim=freq_dim, ffn_dim=ffn, num_layers=layers, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024,
    )
    inputs = {
        "hidden_states": torch.randn(1, 16, 21, h, w),
        "encoder_hidden_states": torch.randn(1, 512, text_dim),
        "timestep": torch.tensor([500]),
    }
    return Workload("Wan2.1-1.3B" + ("" if full else " (reduced width, 21x16x26 latents)"), model, inputs,
                    {"enhance_a_video(4)": EnhanceAVideo(weight=4.0)}, calls_per_step=2)


def animatediff_workload(full: bool) -> Workload:
    # runwayml SD1.5 unet/config.json + guoyww/animatediff-motion-adapter-v1-5-3 config.json. 16 frames;
    # 512x512 -> 64x64 latents (full) or 128x128 -> 16x16 (reduced).
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
                    {"bytheway(0.6,1.5,7)": ByTheWay(alpha=0.6, beta=1.5, tau=7)}, target="generation", limit=1.05)


WORKLOADS = (cogvideox_workload, wan_workload, animatediff_workload)


def generation_time(work: Workload, steps: int, method: Method | None, device: str) -> float:
    """Seconds spent in ``steps`` denoising steps, stepping the method's handle as a pipeline would."""
    handle = method.attach(work.denoiser) if method is not None else None
    try:
        sync(device)
        start = time.perf_counter()
        for i in range(steps):
            if handle is not None:
                handle.steps.num_steps, handle.steps.step_index = steps, i
            for _ in range(work.calls_per_step):
                work.denoiser(**work.inputs, return_dict=False)
        sync(device)
        if handle is not None:
            handle.records  # reading the records is part of the method's cost
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


@dataclasses.dataclass
class Row:
    model: str
    method: str
    plain_s: float
    method_s: float
    peak_plain: float
    peak_method: float
    target: str
    limit: float

    @property
    def ratio(self) -> float:
        return self.method_s / self.plain_s

    @property
    def memory_ratio(self) -> float:
        return self.peak_method / self.peak_plain if self.peak_plain else 1.0


def prepare(build: Callable[[bool], Workload], full: bool, device: str) -> Workload:
    dtype = torch.bfloat16 if full else torch.float32
    with torch.device(device):  # full-size weights are created on the GPU directly: seconds, not minutes
        work = build(full)
    work.denoiser = work.denoiser.to(device, dtype).eval()
    work.inputs = {k: v.to(device, dtype if v.is_floating_point() else v.dtype) for k, v in work.inputs.items()}
    return work


@torch.inference_mode()
def measure(work: Workload, steps: int, repeats: int, device: str) -> list[Row]:
    """Median seconds of ``steps`` steps plain and with each method (alternating), and peak memory of one step."""
    generation_time(work, 1, None, device)  # warm-up: kernels, allocator
    rows = []
    for label, method in work.methods.items():
        generation_time(work, 1, method, device)
        plain, with_method = [], []
        for _ in range(repeats):
            plain.append(generation_time(work, steps, None, device))
            with_method.append(generation_time(work, steps, method, device))
        # One step with the method active (ByTheWay's window holds step 0), to see the memory of its explicit maps.
        mem_plain = peak_memory(device, lambda: generation_time(work, 1, None, device))
        mem_method = peak_memory(device, lambda: generation_time(work, 1, method, device))
        rows.append(Row(work.name, label, statistics.median(plain), statistics.median(with_method), mem_plain,
                        mem_method, work.target, work.limit))
    return rows


@torch.inference_mode()
def measure_read_backs(work: Workload, steps: int, repeats: int, device: str) -> list[tuple[str, int, int, int, float, float]]:
    """Per method: attention calls recorded, read-backs per generation when every call reads its values back and
    when the records are read once, and the median seconds of both (alternating)."""
    rows = []
    for label, method in work.methods.items():
        counts = {}
        for mode, pending in (("per call", 1), ("deferred", _records._MAX_PENDING)):
            with mock.patch.object(_records, "_MAX_PENDING", pending), \
                    mock.patch.object(_records.RecordLog, "_read_back", autospec=True,
                                      side_effect=_records.RecordLog._read_back) as read_back:
                handle = method.attach(work.denoiser)
                for i in range(steps):
                    handle.steps.num_steps, handle.steps.step_index = steps, i
                    for _ in range(work.calls_per_step):
                        work.denoiser(**work.inputs, return_dict=False)
                calls = len(handle.records)
                handle.detach()
                counts[mode] = read_back.call_count
        times: dict[str, list[float]] = {"per call": [], "deferred": []}
        for _ in range(repeats):
            for mode, pending in (("per call", 1), ("deferred", _records._MAX_PENDING)):
                with mock.patch.object(_records, "_MAX_PENDING", pending):
                    times[mode].append(generation_time(work, steps, method, device))
        rows.append((f"{work.name} {label}", calls, counts["per call"], counts["deferred"],
                     statistics.median(times["per call"]), statistics.median(times["deferred"])))
    return rows


def print_rows(rows: list[Row]) -> None:
    print(f"{'model':<52} {'method':<22} {'plain s':>9} {'method s':>9} {'ratio':>7} {'target':>14} "
          f"{'peak GiB plain/method':>22}")
    for r in rows:
        verdict = "ok" if r.ratio <= r.limit else "OVER"
        print(f"{r.model:<52} {r.method:<22} {r.plain_s:>9.3f} {r.method_s:>9.3f} {r.ratio:>7.3f} "
              f"{f'<={r.limit} {r.target}':>14} {r.peak_plain:>10.2f}/{r.peak_method:<10.2f} {verdict}")


def print_read_backs(rows: list[tuple[str, int, int, int, float, float]]) -> None:
    print(f"{'model and method':<60} {'calls':>6} {'read-backs per call/deferred':>29} {'s per call':>11} "
          f"{'s deferred':>11} {'ratio':>7}")
    for name, calls, per_call, deferred, t_call, t_deferred in rows:
        print(f"{name:<60} {calls:>6} {f'{per_call}/{deferred}':>29} {t_call:>11.3f} {t_deferred:>11.3f} "
              f"{t_call / t_deferred:>7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full-size architectures in bf16 (needs a GPU)")
    parser.add_argument("--steps", type=int, default=10, help="denoising steps per generation")
    parser.add_argument("--repeats", type=int, default=3, help="alternating plain/method repeats (median taken)")
    parser.add_argument("--records", action="store_true", help="also time read-backs per call against deferred ones")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.full and device == "cpu":
        parser.error("--full needs a GPU (full-size models in bf16); drop it to run the reduced models on the CPU")
    torch.manual_seed(0)
    gpu = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"device: {gpu}, threads: {torch.get_num_threads()}, steps: {args.steps}, repeats: {args.repeats}")
    rows, read_backs = [], []
    for build in WORKLOADS:
        work = prepare(build, args.full, device)
        rows += measure(work, args.steps, args.repeats, device)
        if args.records:
            read_backs += measure_read_backs(work, args.steps, args.repeats, device)
        del work
    print_rows(rows)
    if read_backs:
        print_read_backs(read_backs)


if __name__ == "__main__":
    main()
