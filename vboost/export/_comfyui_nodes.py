"""The ComfyUI nodes that expose vboost's methods' knobs (Enhance-A-Video, FreeInit, skip-layer guidance, CFG-Zero*),
as read in their source: plain data.

Each entry restates one node class's ``INPUT_TYPES`` (names, order, types, default/min/max/step, optional inputs)
from the repository commit named beside it, with where the node's code uses each input, and one caveat saying in
plain words how the node's computation compares with vboost's (``docs/comfyui.md`` has the same tables). Nothing
here imports ComfyUI.
"""

from __future__ import annotations

import dataclasses
from typing import Any

# Input types that ComfyUI's frontend draws as widgets (and serialises into ``widgets_values``); any other type
# (MODEL, LATENT, ...) is a link slot.
WIDGET_TYPES = ("FLOAT", "INT", "BOOLEAN", "STRING", "COMBO")


@dataclasses.dataclass(frozen=True)
class NodeInput:
    """One entry of a node's ``INPUT_TYPES``; ``None`` where the node declares no bound, ``choices`` for a COMBO."""

    name: str
    type: str
    used_at: str  # where the node's code reads the value
    default: Any = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    optional: bool = False

    @property
    def is_widget(self) -> bool:
        return self.type in WIDGET_TYPES


@dataclasses.dataclass(frozen=True)
class NodeSource:
    """A ComfyUI node class as read at ``commit`` of ``package`` (a GitHub ``owner/repo``), file ``path``."""

    class_name: str
    display_name: str
    package: str
    commit: str
    path: str
    inputs: tuple[NodeInput, ...]  # required then optional, each in INPUT_TYPES order
    outputs: tuple[tuple[str, str], ...]  # (name, type)
    caveat: str

    def input(self, name: str) -> NodeInput:
        """The input called ``name``; raises ``KeyError`` naming the node's inputs when there is none."""
        for entry in self.inputs:
            if entry.name == name:
                return entry
        raise KeyError(f"{self.class_name} has no input {name!r}; its inputs: {[entry.name for entry in self.inputs]}")


_HY = "kijai/ComfyUI-HunyuanVideoWrapper"
_HY_COMMIT = "3ce9640497139b14462910b0dbf2be1df855c1d6"
_WAN = "kijai/ComfyUI-WanVideoWrapper"
_WAN_COMMIT = "721cd65e7b5224c70a3d20446d9d561f1732216b"
_COG = "kijai/ComfyUI-CogVideoXWrapper"
_COG_COMMIT = "fdb8abd2790b5459ddc7066c31861bb0b62e988b"
_KJ = "kijai/ComfyUI-KJNodes"
_KJ_COMMIT = "3f20054214fec9f9234fd3841ae6f1e4287948f6"
_LTX = "Lightricks/ComfyUI-LTXVideo"
_LTX_COMMIT = "aceeae9635f6d493f2893ba3c411a1c36031788a"
_ADE = "Kosinkadink/ComfyUI-AnimateDiff-Evolved"
_ADE_COMMIT = "d8d163cd90b1111f6227495e3467633676fbb346"
_ADE_BIG = 2**53 - 1  # animatediff/utils_model.py BIGMAX (BIGMIN is its negative)
_COMFY = "Comfy-Org/ComfyUI"
_COMFY_COMMIT = "39c19fbab4f2edc58ecda199b1d27c77a1318b8b"
_KJ_GUIDANCE_COMMIT = "02d530ab4b14d2d40974f769d7b0ae8c524ca11e"  # KJNodes' guidance nodes were read at this commit


def _wrapper_weight(default: float) -> NodeInput:
    return NodeInput("weight", "FLOAT", "enhance_a_video/enhance.py feta_score: mean * (num_frames + weight)",
                     default=default, min=0.0, max=100.0, step=0.01)


def _wrapper_window(pipeline: str) -> tuple[NodeInput, NodeInput]:
    used = f"{pipeline}: active iff start_percent <= step / steps <= end_percent"
    return (
        NodeInput("start_percent", "FLOAT", used, default=0.0, min=0.0, max=1.0, step=0.01),
        NodeInput("end_percent", "FLOAT", used, default=1.0, min=0.0, max=1.0, step=0.01),
    )


def _kj_inputs(patched: str, *, default: float, maximum: float) -> tuple[NodeInput, ...]:
    """The inputs of KJNodes' Enhance-A-Video nodes for ComfyUI's native models (they differ in default and max)."""
    return (
        NodeInput("model", "MODEL", f"patched: {patched}"),
        NodeInput("latent", "LATENT", "enhance: num_frames = latent['samples'].shape[2]"),
        NodeInput("weight", "FLOAT", "feta_score: mean * (num_frames + weight); weight == 0 returns the model unpatched",
                  default=default, min=0.0, max=maximum, step=0.001),
    )


HY_VIDEO_ENHANCE = NodeSource(
    class_name="HyVideoEnhanceAVideo",
    display_name="HunyuanVideo Enhance A Video",
    package=_HY,
    commit=_HY_COMMIT,
    path="nodes.py",
    inputs=(
        _wrapper_weight(2.0),
        NodeInput("single_blocks", "BOOLEAN", "hyvideo/modules/models.py single-stream block: attn *= feta_scores",
                  default=True),
        NodeInput("double_blocks", "BOOLEAN", "hyvideo/modules/models.py double-stream block: img_attn *= feta_scores",
                  default=True),
        *_wrapper_window("hyvideo/diffusion/pipelines/pipeline_hunyuan_video.py"),
    ),
    outputs=(("feta_args", "FETAARGS"),),
    caveat=(
        "DIFFERENT QUANTITY: the wrapper groups the frame-major video tokens spatial-first (a [B, S, F, N, C] "
        "reshape), so its score compares neighbouring tokens of one frame instead of one position across frames; it "
        "also scales the double-stream image output before its projection and the whole single-stream output, text "
        "tokens included. No weight translates into it, so none is exported; no ComfyUI node computes the official "
        "HunyuanVideo score: use the diffusers script."
    ),
)

WAN_VIDEO_ENHANCE = NodeSource(
    class_name="WanVideoEnhanceAVideo",
    display_name="WanVideo Enhance A Video",
    package=_WAN,
    commit=_WAN_COMMIT,
    path="nodes.py",
    inputs=(
        _wrapper_weight(2.0),
        *_wrapper_window("nodes.py WanVideoSampler"),
    ),
    outputs=(("feta_args", "FETAARGS"),),
    caveat=(
        "DIFFERENT QUANTITY: the wrapper's get_feta_scores (the same as HunyuanVideoWrapper's) groups the frame-major "
        "video tokens spatial-first, so its score compares neighbouring tokens of one frame instead of one position "
        "across frames (at this commit it also scores q/k before RoPE and scales before the output projection o). No "
        "weight translates into it, so none is exported: use WanVideoEnhanceAVideoKJ (ComfyUI's native Wan model), "
        "which computes vboost's score."
    ),
)

COG_VIDEO_ENHANCE = NodeSource(
    class_name="CogVideoEnhanceAVideo",
    display_name="CogVideo Enhance-A-Video",
    package=_COG,
    commit=_COG_COMMIT,
    path="nodes.py",
    inputs=(
        _wrapper_weight(1.0),
        *_wrapper_window("pipeline_cogvideox.py (step / num_inference_steps)"),
    ),
    outputs=(("feta_args", "FETAARGS"),),
    caveat=(
        "Same score as vboost for CogVideoX 1.0: q/k after RoPE with the text tokens dropped first, frame-major "
        "grouping, the video output scaled after to_out, one score for the batched CFG halves, and the same step "
        "window. For CogVideoX 1.5 it takes F as the latent frame count before the temporal patch (22 at 81 frames, "
        "where the transformer sees 11), so its score pairs half-frames: a different quantity, into which the weight "
        "is translated to keep weight / F."
    ),
)

WAN_VIDEO_ENHANCE_KJ = NodeSource(
    class_name="WanVideoEnhanceAVideoKJ",
    display_name="WanVideo Enhance A Video (native)",
    package=_KJ,
    commit=_KJ_COMMIT,
    path="nodes/model_optimization_nodes.py",
    inputs=_kj_inputs("diffusion_model.blocks.{i}.self_attn.forward", default=2.0, maximum=10.0),
    outputs=(("model", "MODEL"),),
    caveat=(
        "Same score as vboost: q/k after norm and RoPE, frame-major grouping, F from the latent's frame axis, the "
        "output scaled after the projection o. It has no step window and no layer choice, its weight stops at 10, "
        "and weight 0 switches it off. ComfyUI runs the conditional and unconditional passes in one batch when "
        "memory allows, and then one score is pooled over both, where diffusers' Wan pipeline scores each pass."
    ),
)

LTXV_ENHANCE_KJ = NodeSource(
    class_name="LTXVEnhanceAVideoKJ",
    display_name="LTXV Enhance A Video KJ",
    package=_KJ,
    commit=_KJ_COMMIT,
    path="nodes/model_optimization_nodes.py",
    inputs=_kj_inputs("diffusion_model.transformer_blocks.{i}.attn1.forward", default=4.0, maximum=100.0),
    outputs=(("model", "MODEL"),),
    caveat=(
        "Same score as vboost: q/k after q_norm/k_norm and RoPE, frame-major grouping, F from the latent's frame "
        "axis; since KJNodes 1f15f37 ('LTX2.3: Fix enhance-a-video') the output is scaled after to_out, as vboost "
        "does. It has no step window and no layer choice, and weight 0 switches it off."
    ),
)

LTX_FETA_ENHANCE = NodeSource(
    class_name="LTXFetaEnhance",
    display_name="LTX Feta Enhance",
    package=_LTX,
    commit=_LTX_COMMIT,
    path="tricks/nodes/ltx_feta_enhance_node.py",
    inputs=(
        NodeInput("model", "MODEL", "apply: model.model_options['transformer_options']"),
        NodeInput("feta_weight", "FLOAT",
                  "tricks/modules/ltx_model.py: scored only if feta_weight > 0; feta_score: mean * (num_frames + weight)",
                  default=4, min=-100.0, max=100.0, step=0.01),
        NodeInput("attn_override", "ATTN_OVERRIDE",
                  "tricks/modules/ltx_model.py: block idx in attn_override['layers'] (default: blocks 0-99)",
                  optional=True),
    ),
    outputs=(("MODEL", "MODEL"),),
    caveat=(
        "Does not run in current ComfyUI: the weight is only read by the attention that the Modify LTX Model node "
        "swaps in (without that node it is ignored), and that attention then reads transformer_options"
        "['original_shape'], which ComfyUI's LTX model never sets, so sampling stops with KeyError 'original_shape' "
        "(Lightricks/ComfyUI-LTXVideo issue 133). Where it would run it scales the attention output before to_out "
        "(so the to_out bias is not scaled, unlike vboost), feta_weight <= 0 switches it off, and attn_override "
        "(from LTX Attention Override's comma-separated block indices) picks the blocks. Nothing is exported: use "
        "LTXVEnhanceAVideoKJ."
    ),
)

LTX_ATTN_OVERRIDE = NodeSource(
    class_name="LTXAttnOverride",
    display_name="LTX Attention Override",
    package=_LTX,
    commit=_LTX_COMMIT,
    path="tricks/nodes/attn_override_node.py",
    inputs=(
        NodeInput("layers", "STRING", "build: comma-separated block indices -> {'layers': set of ints}"),
    ),
    outputs=(("ATTN_OVERRIDE", "ATTN_OVERRIDE"),),
    caveat="Feeds LTXFetaEnhance's attn_override, which does not run (see there); nothing is exported.",
)

ADE_FREE_INIT = NodeSource(
    class_name="ADE_IterationOptsFreeInit",
    display_name="FreeInit Iteration Options",
    package=_ADE,
    commit=_ADE_COMMIT,
    path="animatediff/nodes_sample.py",
    inputs=(
        NodeInput("iterations", "INT", "animatediff/sampling.py: for curr_i in range(iterations), the first pass included",
                  default=2, min=1),
        NodeInput("filter", "COMBO", "animatediff/freeinit.py get_freq_filter",
                  choices=("gaussian", "butterworth", "ideal", "box")),
        NodeInput("d_s", "FLOAT", "animatediff/freeinit.py: spatial stop frequency of the low-pass filter",
                  default=0.25, min=0.0, max=1.0, step=0.001),
        NodeInput("d_t", "FLOAT", "animatediff/freeinit.py: temporal stop frequency of the low-pass filter",
                  default=0.25, min=0.0, max=1.0, step=0.001),
        NodeInput("n_butterworth", "INT", "animatediff/freeinit.py butterworth_low_pass_filter: order n",
                  default=4, min=1, max=100),
        NodeInput("sigma_step", "INT", "animatediff/sample_settings.py: re-noise at model sigma index step - 1000",
                  default=999, min=1, max=999),
        NodeInput("apply_to_1st_iter", "BOOLEAN", "animatediff/sample_settings.py: re-initialise before the first pass too",
                  default=False),
        NodeInput("init_type", "COMBO", "animatediff/sample_settings.py: which sigma re-noises (sampler's or model's)",
                  choices=("FreeInit [sampler sigma]", "FreeInit [model sigma]", "DinkInit_v1")),
        NodeInput("iter_batch_offset", "INT", "animatediff/sample_settings.py: noise batch offset per iteration",
                  default=0, min=0, max=_ADE_BIG, optional=True),
        NodeInput("iter_seed_offset", "INT", "animatediff/sample_settings.py: high-frequency noise seed offset per iteration",
                  default=1, min=-_ADE_BIG, max=_ADE_BIG, optional=True),
    ),
    outputs=(("ITERATION_OPTS", "ITERATION_OPTS"),),
    caveat=(
        "With up to 2 iterations, the same FreeInit as diffusers' enable_free_init: iterations counts the first pass "
        "as num_iters does, the same low-pass filters and cut-offs, the same frequency mix, the first pass untouched "
        "(apply_to_1st_iter false) and the next re-noised at the last training step (sigma_step 999 with the model's "
        "sigma). From the third pass on it differs: it re-noises with the previous pass's starting noise, where "
        "diffusers re-noises every pass with the first pass's noise. Even at 2 iterations the clips are not "
        "pixel-identical: the high-frequency noise comes from ComfyUI's seeded noise (seed + iter_seed_offset per "
        "pass), the sampler is ComfyUI's, and the re-noised latent is normalised with the SD latent scale factor (1.0023 "
        "times diffusers' at SD1.5's largest sigma, 14.61). diffusers' use_fast_sampling has no input here."
    ),
)

SKIP_LAYER_GUIDANCE_DIT = NodeSource(
    class_name="SkipLayerGuidanceDiT",
    display_name="SkipLayerGuidanceDiT",
    package=_COMFY,
    commit=_COMFY_COMMIT,
    path="comfy_extras/nodes_slg.py",
    inputs=(
        NodeInput("model", "MODEL", "patched: a post-CFG function adds scale * (cond - cond with the blocks skipped)"),
        NodeInput("double_layers", "STRING", "re.findall(r'\\d+'): indices of ('dit', 'double_block', i) replaced by identity",
                  default="7, 8, 9"),
        NodeInput("single_layers", "STRING", "re.findall(r'\\d+'): indices of ('dit', 'single_block', i) replaced by identity",
                  default="7, 8, 9"),
        NodeInput("scale", "FLOAT", "cfg_result + (cond_pred - slg) * scale, skipped when scale is 0",
                  default=3.0, min=0.0, max=10.0, step=0.1),
        NodeInput("start_percent", "FLOAT", "active iff percent_to_sigma(end_percent) < sigma <= percent_to_sigma(start_percent)",
                  default=0.01, min=0.0, max=1.0, step=0.001),
        NodeInput("end_percent", "FLOAT", "as start_percent", default=0.15, min=0.0, max=1.0, step=0.001),
        NodeInput("rescaling_scale", "FLOAT", "inside the window: result *= rescaling_scale * std(cond) / std(result) + 1 - rescaling_scale",
                  default=0.0, min=0.0, max=10.0, step=0.01),
    ),
    outputs=(("MODEL", "MODEL"),),
    caveat=(
        "Diffusers' skip-layer guidance with whole blocks skipped: the same third prediction (the conditional one with "
        "the blocks replaced by identity, ComfyUI's Wan model honours ('double_block', i)) and the same "
        "u + g (c - u) + s (c - c_skip), g being the sampler's cfg. Its window is in sigma: start_percent <= i / N < "
        "end_percent for a flow model sampled with its own shift on ComfyUI's linear ('simple') schedule, which "
        "vboost's exported percents turn into diffusers' strict window int(start N) < i < int(stop N). The clips are "
        "not pixel-identical: ComfyUI's sampler and noise are its own."
    ),
)

SKIP_LAYER_GUIDANCE_WAN_VIDEO = NodeSource(
    class_name="SkipLayerGuidanceWanVideo",
    display_name="SkipLayerGuidanceWanVideo",
    package=_KJ,
    commit=_KJ_GUIDANCE_COMMIT,
    path="nodes/model_optimization_nodes.py",
    inputs=(
        NodeInput("model", "MODEL", "patched: ('dit', 'double_block', i) of the listed blocks"),
        NodeInput("blocks", "STRING", "comma-separated block indices", default="10"),
        NodeInput("start_percent", "FLOAT", "skips iff start_percent <= current_percent <= end_percent",
                  default=0.2, min=0.0, max=1.0, step=0.001),
        NodeInput("end_percent", "FLOAT", "as start_percent", default=1.0, min=0.0, max=1.0, step=0.001),
    ),
    outputs=(("MODEL", "MODEL"),),
    caveat=(
        "DIFFERENT QUANTITY (and deprecated): it skips the blocks in the unconditional prediction itself, "
        "u_skip + g (c - u_skip), with no third prediction and no scale of its own; no skip-layer-guidance setting "
        "translates into it, so none is exported: use SkipLayerGuidanceDiT."
    ),
)

CFG_ZERO_STAR_AND_INIT = NodeSource(
    class_name="CFGZeroStarAndInit",
    display_name="CFGZeroStarAndInit",
    package=_KJ,
    commit=_KJ_GUIDANCE_COMMIT,
    path="nodes/model_optimization_nodes.py",
    inputs=(
        NodeInput("model", "MODEL", "patched: set_model_sampler_cfg_function(cfg_zerostar)"),
        NodeInput("use_zero_init", "BOOLEAN", "zero-init on or off", default=True),
        NodeInput("zero_init_steps", "INT", "returns cond * 0 iff the step index <= zero_init_steps", default=0, min=0),
    ),
    outputs=(("MODEL", "MODEL"),),
    caveat=(
        "Diffusers' CFG-Zero*: the prediction is zero while the step index (found in the sampler's sigmas) is <= "
        "zero_init_steps, so diffusers' zero_init_steps k is this node's k - 1 with use_zero_init on; then "
        "alpha u + g (c - alpha u), alpha = <c, u> / (|u|^2 + 1e-8) per sample, g being the sampler's cfg (the node "
        "computes alpha in the model's dtype, diffusers in float32). It has no step window and no rescaling."
    ),
)

NODES: dict[str, NodeSource] = {
    node.class_name: node
    for node in (
        HY_VIDEO_ENHANCE, WAN_VIDEO_ENHANCE, COG_VIDEO_ENHANCE, WAN_VIDEO_ENHANCE_KJ, LTXV_ENHANCE_KJ,
        LTX_FETA_ENHANCE, LTX_ATTN_OVERRIDE, ADE_FREE_INIT, SKIP_LAYER_GUIDANCE_DIT, SKIP_LAYER_GUIDANCE_WAN_VIDEO,
        CFG_ZERO_STAR_AND_INIT,
    )
}
