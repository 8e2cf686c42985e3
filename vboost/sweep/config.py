"""The structured config of ``python -m vboost.sweep``: one dataclass per config group, registered with Hydra.

Hydra merges every YAML file and command-line override onto these dataclasses, so an unknown key or a value of
the wrong type fails at composition, before anything loads. Checks that need the registries (a method's domain,
backbone compatibility) live in :mod:`vboost.sweep.validate`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclasses.dataclass
class MemoryConfig:
    """``backbone.memory``: diffusers' memory features (docs/gpu.md says which checkpoint needs which, per card size).

    ``cpu_offload``: ``model`` (each model moves to the GPU while it runs) or ``sequential`` (each layer does: the
    least GPU memory, the slowest). ``group_offload``: ``block_level`` (``group_offload_blocks`` blocks at a time) or
    ``leaf_level``, with ``group_offload_stream`` overlapping the transfers with compute on a CUDA stream; one kind of
    offloading at a time. ``vae_tiling`` decodes in overlapping spatial tiles (blended: a clip close to, not equal
    to, the untiled one); ``vae_slicing`` one clip at a time (the same clip).
    """

    cpu_offload: Optional[str] = None
    group_offload: Optional[str] = None
    group_offload_blocks: int = 1
    group_offload_stream: bool = False
    vae_tiling: bool = False
    vae_slicing: bool = False


@dataclasses.dataclass
class CompileConfig:
    """``backbone.compile``: ``torch.compile`` of the denoiser, applied after loading and offloading.

    ``scope``: ``blocks`` compiles the repeated transformer blocks one class at a time (diffusers' regional
    compilation: seconds to compile, the same speed), ``denoiser`` the whole module, ``auto`` blocks where the family
    has them. ``mode``, ``backend`` and ``dynamic`` are torch.compile's. Methods attached later take effect: the
    blocks holding a swapped attention processor are recompiled once, and the methods' computations run outside
    the compiled graphs.
    """

    enabled: bool = False
    scope: str = "auto"
    mode: str = "default"
    backend: str = "inductor"
    dynamic: Optional[bool] = None


@dataclasses.dataclass
class BackboneConfig:
    """``conf/backbone/*.yaml``: which adapter, which weights (``null`` builds the tiny random model), how to generate."""

    family: str = MISSING
    weights: Optional[str] = MISSING  # a default here would hide the "???" of the real checkpoints' files
    dtype: str = "bfloat16"
    num_frames: int = MISSING
    height: int = MISSING
    width: int = MISSING
    steps: int = MISSING
    guidance: float = MISSING
    fps: float = MISSING
    # The most frames the checkpoint's model card supports (null: no limit beyond what the model can take); raise it
    # explicitly to try longer clips.
    max_frames: Optional[int] = None
    # Extra keyword arguments of the adapter's from_pretrained, e.g. AnimateDiff's motion_adapter=/dir or
    # SparseCtrl's controlnet=/dir and conditioning_image=/image.png.
    load_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Clips (prompt x seed) generated in one pipeline call, where memory allows; each is the clip made alone.
    batch_size: int = 1
    # A dtype for some components of their own (model cards ask for e.g. {vae: float32}); the rest take dtype.
    component_dtypes: dict[str, str] = dataclasses.field(default_factory=dict)
    # One of diffusers' attention backends (set_attention_backend), for denoisers whose attention dispatches there.
    attention_backend: Optional[str] = None
    memory: MemoryConfig = dataclasses.field(default_factory=MemoryConfig)
    compile: CompileConfig = dataclasses.field(default_factory=CompileConfig)


@dataclasses.dataclass
class MethodConfig:
    """``conf/method/*.yaml``: a registered method, its fixed knobs, its search space and its published settings.

    ``search_space`` maps a knob to a Hydra sweep expression: ``interval(a,b)`` (float), ``range(a,b[,step])``
    (end-exclusive, as in Hydra), ``choice(a,b,...)``, wrapped in ``tag(log, ...)`` for a log scale and/or
    ``tag(per_frame, ...)`` to search the knob divided by the latent frame count F (the sampled value times F is
    what the method gets). ``paper_defaults`` maps a backbone family to the knobs its paper publishes.

    ``name: combined`` with ``members`` (method configs by member key, composed from this group) searches several
    methods at once; a member's ``component`` names the one pipeline denoiser it enters (``vboost.sweep.method_config``).
    """

    name: str = MISSING
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    search_space: dict[str, str] = dataclasses.field(default_factory=dict)
    paper_defaults: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    members: dict[str, Any] = dataclasses.field(default_factory=dict)
    component: Optional[str] = None


@dataclasses.dataclass
class TargetConfig:
    """One optimised quantity: a dimension's score, or one of its companion records (``companion: magnitude``
    reads ``<tier>/dynamic_degree_magnitude``). ``direction`` defaults to the dimension's own (all maximise).

    ``tolerance`` (relative to the baseline) is how much worse than the untouched model this objective may get in a
    recommended setting, when it is not the first (primary) objective: 0.01 accepts a loss of up to 1%.
    """

    dimension: str = MISSING
    companion: Optional[str] = None
    direction: Optional[str] = None
    tolerance: float = 0.0


@dataclasses.dataclass
class ConstraintConfig:
    """A floor on a record (feasibility, not an objective): ``value >= min_ratio_to_baseline * baseline`` and/or
    ``value >= min_value``."""

    dimension: str = MISSING
    companion: Optional[str] = None
    min_ratio_to_baseline: Optional[float] = None
    min_value: Optional[float] = None


@dataclasses.dataclass
class EarlyStopConfig:
    """Multi-objective early stop (Optuna's pruners are single-objective only).

    After at least ``after_prompts`` prompts, a trial whose running value is worse than the baseline's on the same
    prompts and seeds by more than ``margin`` (relative) on EVERY objective is stopped and marked PRUNED.
    """

    enabled: bool = True
    after_prompts: int = 1
    margin: float = 0.05


@dataclasses.dataclass
class ObjectiveConfig:
    """``conf/objective/*.yaml``: what a trial is scored on and how the study reads it."""

    targets: list[TargetConfig] = MISSING
    constraints: list[ConstraintConfig] = dataclasses.field(default_factory=list)
    backend: str = "proxy"
    weights_dir: Optional[str] = None
    device: str = "auto"  # where the vbench tier's networks run: auto is cuda when a GPU is visible
    early_stop: EarlyStopConfig = dataclasses.field(default_factory=EarlyStopConfig)


@dataclasses.dataclass
class PromptsConfig:
    """``conf/prompts/*.yaml``: every search trial generates each prompt with each seed (a paired comparison).

    ``heldout_prompts`` (and ``heldout_seeds``) are the set's clips for the validation stage, never searched on.
    """

    prompts: list[str] = MISSING
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0])
    heldout_prompts: list[str] = dataclasses.field(default_factory=list)
    heldout_seeds: Optional[list[int]] = None


@dataclasses.dataclass
class ValidationConfig:
    """The validation stage (docs/decision.md): the ``top_k`` best search candidates, the paper's setting and the
    baseline run again on held-out clips, and a setting is recommended only when its paired gain over the baseline
    there is clear of ``min_effect`` with intervals at ``confidence`` (Bonferroni-corrected over the candidates).

    ``prompts: null`` takes the prompt set's ``heldout_prompts``; ``seeds: null`` its ``heldout_seeds``, else as many
    fresh seeds as the search uses, numbered after its largest. ``top_k: 0`` turns the stage off (and with it any
    recommendation).
    """

    top_k: int = 3
    prompts: Optional[list[str]] = None
    seeds: Optional[list[int]] = None
    confidence: float = 0.95
    min_effect: float = 0.0


@dataclasses.dataclass
class LoggerConfig:
    """``conf/logger/*.yaml``: where per-trial params, metrics and videos are streamed (``csv``, ``wandb``,
    ``none``). ``mode``, ``project``, ``entity`` and ``tags`` are W&B's: ``offline`` needs no account or network."""

    name: str = "csv"
    mode: str = "offline"
    project: str = "vboost"
    entity: Optional[str] = None
    tags: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class StudyConfig:
    """The Optuna study.

    ``name`` defaults to ``<backbone>-<method>-<objective>`` (the config choices). ``storage`` is any Optuna RDB
    URL; ``null`` means ``sqlite:///<output_dir>/<name>/study.db``. ``n_trials`` counts the search stage's trials
    in the study (complete, pruned, failed or running, whoever ran them; the validation trials come on top), so
    re-running the same command resumes and never redoes a finished trial. ``sampler``/``pruner`` are ``_target_`` configs (``hydra.utils.instantiate``); the
    pruner acts on single-objective studies only. Heartbeats let a crashed worker's trial be marked failed (and
    retried ``max_retry`` times) when several workers share one storage.
    """

    name: Optional[str] = None
    storage: Optional[str] = None
    n_trials: int = 8
    sampler: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": 0}
    )
    pruner: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 3}
    )
    heartbeat_interval: Optional[int] = 60
    grace_period: Optional[int] = None
    max_retry: int = 2


@dataclasses.dataclass
class SweepConfig:
    """The primary config (``conf/sweep.yaml``)."""

    backbone: BackboneConfig = MISSING
    method: MethodConfig = MISSING
    objective: ObjectiveConfig = MISSING
    prompts: PromptsConfig = MISSING
    logger: LoggerConfig = dataclasses.field(default_factory=LoggerConfig)
    study: StudyConfig = dataclasses.field(default_factory=StudyConfig)
    validation: ValidationConfig = dataclasses.field(default_factory=ValidationConfig)
    output_dir: str = "outputs"
    # Print the plan (what the study will generate, and what is left of it) and exit before anything loads.
    dry_run: bool = False
    device: str = "auto"  # where the pipeline runs: auto is cuda when a GPU is visible, else cpu
    save_videos: bool = True
    # Also store each clip as an Optuna artifact (<output_dir>/<study>/artifacts) so optuna-dashboard shows it on
    # its trial. Optuna attaches artifacts to running trials only, so clips are then written before the trial ends
    # instead of in the background.
    optuna_artifacts: bool = False
    # Preset files (or directories of them) to evaluate as extra enqueued trials.
    presets: list[str] = dataclasses.field(default_factory=list)
    # Modules imported before validation, e.g. one that registers a custom Method or Backbone.
    imports: list[str] = dataclasses.field(default_factory=list)


def register_configs() -> None:
    """Register the schema as ``sweep_schema`` (the first entry of ``conf/sweep.yaml``'s defaults list)."""
    ConfigStore.instance().store(name="sweep_schema", node=SweepConfig)
