"""Turn a composed config into a :class:`SweepPlan`, checking everything that can be checked before a model loads."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

import optuna
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from vboost.geometry import ClipGeometry
from vboost.record import ALTERNATIVES_DIR, RECOMMENDED_DIR, STUDY_DB, ConstraintSpec, DecisionSettings, Role, clip_set_id
from vboost.sweep.errors import ConfigError, IncompatibleError
from vboost.sweep.loggers import LOGGERS
from vboost.sweep.method_config import MethodSetting, method_setting
from vboost.sweep.space import SearchSpace, parse_search_space

_DTYPES = ("float32", "float16", "bfloat16")


@dataclasses.dataclass(frozen=True)
class Target:
    """One optimised scorer record (``proxy/dynamic_degree_magnitude``) and its direction."""

    record: str
    direction: str

    @property
    def short(self) -> str:
        return self.record.split("/", 1)[-1]


@dataclasses.dataclass(frozen=True)
class Reference:
    """An enqueued trial every result is read against: ``role`` baseline (no method), paper or preset."""

    role: Role
    key: str
    knobs: dict[str, Any] | None  # None for the baseline: the untouched model


@dataclasses.dataclass(frozen=True)
class ValidationPlan:
    """The held-out clips of the validation stage (empty when ``validation.top_k`` is 0) and their id."""

    prompts: list[str]
    seeds: list[int]

    @property
    def clip_set(self) -> str:
        return clip_set_id(self.prompts, self.seeds)


@dataclasses.dataclass
class SweepPlan:
    """Everything a sweep needs, resolved and checked."""

    cfg: DictConfig
    study_name: str
    study_dir: Path
    storage_url: str
    backbone: Any  # the family's vboost.backbones.BackboneSpec
    method_cls: type
    geometry: ClipGeometry  # the clips every trial generates, as the denoiser sees them
    space: SearchSpace
    fixed_knobs: dict[str, Any]
    references: list[Reference]
    dimensions: list[str]
    targets: list[Target]
    constraints: list[ConstraintSpec]
    validation: ValidationPlan
    decision: DecisionSettings
    sampler: optuna.samplers.BaseSampler
    pruner: optuna.pruners.BasePruner
    notes: list[str]  # what the plan left out, and why (printed when the sweep starts)

    @property
    def directions(self) -> list[str]:
        return [t.direction for t in self.targets]

    @property
    def latent_frames(self) -> int:
        return self.geometry.latent_frames


def plan_sweep(cfg: DictConfig) -> SweepPlan:
    """Check ``cfg`` and resolve it into a plan.

    Raises :class:`IncompatibleError` when the method cannot be injected into the backbone, and
    :class:`ConfigError` naming the key and value for anything else that cannot work.
    """
    for module in cfg.imports:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"imports: cannot import {module!r}: {err}") from None
    from vboost.backbones import BACKBONES, backbone_spec
    from vboost.methods import METHODS

    backbone = cfg.backbone
    family = backbone.family
    method = method_setting(cfg.method)  # a combination's knobs, spaces and published settings namespaced by member
    if family not in BACKBONES:
        raise ConfigError(f"backbone.family={family!r} is not a known backbone; known: {', '.join(sorted(BACKBONES))}")
    for key, name in {"method.name": method.name, **{f"method.members.{k}.name": n for k, n in method.members.items()}}.items():
        if name not in METHODS:
            raise ConfigError(f"{key}={name!r} is not a known method; known: {', '.join(sorted(METHODS))}")
    method_name = method.name
    spec, method_cls = backbone_spec(family), METHODS[method_name]
    _check_compatible(spec, method, METHODS)
    _check_backbone(backbone)
    geometry = _clip_geometry(spec, backbone)
    space = parse_search_space(method.search_space, geometry.latent_frames, geometry.num_layers)
    fixed = method.params
    overlap = sorted(space.knobs & set(fixed))
    if overlap:
        raise ConfigError(f"method {method_name!r}: {overlap[0]!r} is both in method.params and method.search_space")
    for knobs in space.corners():
        _check_domain(method_cls, {**fixed, **knobs}, geometry, "method.search_space")
    references = [Reference(Role.BASELINE, str(Role.BASELINE), None)]
    notes = []
    paper = method.paper_defaults.get(family)
    if paper is None:
        notes.append(f"no paper trial: method.paper_defaults has no entry for {family!r}")
    else:
        knobs = {**fixed, **paper}
        try:
            # A published setting may not exist at this clip length (ByTheWay's tau 7 needs 16 frames): skip, say so.
            _check_domain(method_cls, knobs, geometry, f"paper defaults for {family!r}")
            references.append(Reference(Role.PAPER, family, knobs))
        except ConfigError as err:
            notes.append(f"no paper trial: {err}")
    for ref in _preset_references(cfg.presets, method_name):
        _check_domain(method_cls, ref.knobs, geometry, f"preset {ref.key!r}")
        references.append(ref)

    if cfg.study.n_trials < len(references):
        notes.append(f"study.n_trials={cfg.study.n_trials} leaves some of the {len(references)} reference trials unrun")
    dimensions, targets, constraints = _objectives(cfg.objective)
    _check_frame_size(dimensions, cfg.objective.backend, backbone)
    _check_scorer_weights(dimensions, cfg.objective)
    if cfg.study.n_trials < 1:
        raise ConfigError(f"study.n_trials={cfg.study.n_trials} must be at least 1")
    if not cfg.prompts.prompts or not cfg.prompts.seeds:
        raise ConfigError("prompts: needs at least one prompt and one seed")
    validation = _validation_plan(cfg)
    decision = DecisionSettings(
        top_k=cfg.validation.top_k,
        confidence=cfg.validation.confidence,
        min_effect=cfg.validation.min_effect,
        tolerances={t.record: entry.tolerance for t, entry in zip(targets, cfg.objective.targets) if entry.tolerance},
        constraints=tuple(constraints),
    )
    study_dir = Path(cfg.output_dir).expanduser().resolve() / cfg.study.name
    check_device("device", cfg.device)
    check_device("objective.device", cfg.objective.device)
    check_runtime_options(spec, backbone, cfg.device)
    _check_attention_memory(spec, backbone, geometry, cfg.device)
    storage_url = cfg.study.storage or f"sqlite:///{study_dir / STUDY_DB}"
    check_storage_url(storage_url)
    if cfg.logger.name not in LOGGERS:
        raise ConfigError(f"logger.name={cfg.logger.name!r} is not a known logger; known: {', '.join(sorted(LOGGERS))}")
    sampler, pruner = _sampler_and_pruner(cfg.study)
    return SweepPlan(
        cfg=cfg,
        study_name=cfg.study.name,
        study_dir=study_dir,
        storage_url=storage_url,
        backbone=spec,
        method_cls=method_cls,
        geometry=geometry,
        space=space,
        fixed_knobs=fixed,
        references=references,
        dimensions=dimensions,
        targets=targets,
        constraints=constraints,
        validation=validation,
        decision=decision,
        sampler=sampler,
        pruner=pruner,
        notes=notes,
    )


def check_device(key: str, device: str) -> None:
    """Raise :class:`ConfigError` unless ``device`` is ``auto`` or a torch device this machine has."""
    if device == "auto":
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"{key}={device!r} is not a torch device; use auto, cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise ConfigError(f"{key}={device!r}: no CUDA device is visible (torch {torch.__version__}); use {key}=cpu or auto")
        if parsed.index is not None and parsed.index >= count:
            raise ConfigError(f"{key}={device!r}: only {count} CUDA device(s) are visible (cuda:0 to cuda:{count - 1})")
    elif parsed.type != "cpu":
        backend = getattr(torch.backends, parsed.type, None)
        if backend is None or not backend.is_available():
            raise ConfigError(f"{key}={device!r}: this machine has no {parsed.type} device; use auto, cpu or cuda")


def check_storage_url(url: str) -> None:
    """Raise :class:`ConfigError` (the URL's password masked) when SQLAlchemy cannot parse ``url`` or its database
    driver is not installed; nothing is connected to."""
    import sqlalchemy

    from vboost.secrets import mask_url

    try:
        dialect = sqlalchemy.engine.make_url(url).get_dialect()
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ValueError) as err:
        raise ConfigError(f"study.storage={mask_url(url)!r} is not a database URL SQLAlchemy knows: {mask_url(str(err))}") from None
    try:
        dialect.import_dbapi()
    except ImportError as err:
        extra = ' (pip install -e ".[postgres]")' if dialect.name == "postgresql" else ""
        raise ConfigError(f"study.storage={mask_url(url)!r} needs the {dialect.driver} driver, which is not installed: "
                          f"{err}{extra}") from None


def _check_compatible(spec: Any, method: MethodSetting, methods: dict[str, type]) -> None:
    """Raise :class:`IncompatibleError` saying why the method (or a member of a combination) cannot run on the
    backbone family ``spec``."""
    from vboost.methods import UnsupportedModelError

    checked = {f"member {k!r} ({n})": n for k, n in method.members.items()} or {f"method {method.name!r}": method.name}
    for what, name in checked.items():
        try:
            methods[name].check_backbone(spec)
        except UnsupportedModelError as err:
            raise IncompatibleError(f"{what} does not support backbone {spec.family!r} ({spec.denoiser_class}): {err}") from None


def _check_backbone(backbone: DictConfig) -> None:
    try:
        weights = backbone.weights
    except MissingMandatoryValue:
        raise ConfigError(f"backbone.weights is not set for {backbone.family!r}: give backbone.weights=/path/to/diffusers/dir") from None
    if weights is not None and not Path(weights).expanduser().is_dir():
        raise ConfigError(f"backbone.weights={weights!r} is not a directory")
    if backbone.dtype not in _DTYPES:
        raise ConfigError(f"backbone.dtype={backbone.dtype!r} is not one of {list(_DTYPES)}")
    for key in ("num_frames", "height", "width", "steps"):
        if backbone[key] < 1:
            raise ConfigError(f"backbone.{key}={backbone[key]} must be positive")
    if backbone.guidance < 0:
        raise ConfigError(f"backbone.guidance={backbone.guidance} must be >= 0 (1 or less turns guidance off)")
    if backbone.fps <= 0:
        raise ConfigError(f"backbone.fps={backbone.fps} must be positive")
    if backbone.max_frames is not None and backbone.num_frames > backbone.max_frames:
        raise ConfigError(
            f"backbone.num_frames={backbone.num_frames} exceeds backbone.max_frames={backbone.max_frames}, the most this "
            f"checkpoint's model card supports; set backbone.max_frames={backbone.num_frames} to try it anyway"
        )


def check_runtime_options(spec: Any, backbone: DictConfig, device: str) -> None:
    """Raise :class:`ConfigError` naming the key and value for a memory or speed option (``backbone.batch_size``,
    ``component_dtypes``, ``memory``, ``attention_backend``, ``compile``) that the family ``spec`` or this machine
    cannot use; decided from plain data (the family's spec, the packages installed, the devices visible)."""
    import torch

    from vboost.backbones._options import (
        ATTENTION_BACKENDS, COMPILE_MODES, COMPILE_SCOPES, COMPONENT_DTYPES, CPU_OFFLOAD, GROUP_OFFLOAD,
    )

    family = backbone.family
    device_type = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else torch.device(device).type
    if isinstance(backbone.batch_size, bool) or backbone.batch_size < 1:
        raise ConfigError(f"backbone.batch_size={backbone.batch_size} must be at least 1 (clips per pipeline call)")
    for name, dtype in backbone.component_dtypes.items():
        if name not in spec.components:
            known = ", ".join(spec.components) or "none"
            raise ConfigError(f"backbone.component_dtypes.{name}: {family} has no component {name!r} (components: {known})")
        if dtype not in COMPONENT_DTYPES:
            raise ConfigError(f"backbone.component_dtypes.{name}={dtype!r} is not one of {list(COMPONENT_DTYPES)}")

    memory = backbone.memory
    for key, choices in (("cpu_offload", CPU_OFFLOAD), ("group_offload", GROUP_OFFLOAD)):
        value = memory[key]
        if value is None:
            continue
        if value not in choices:
            raise ConfigError(f"backbone.memory.{key}={value!r} is not one of {list(choices)} (or null)")
        if not spec.offload:
            raise ConfigError(f"backbone.memory.{key}={value!r}: {family}'s pipeline has no CPU offloading (that needs a "
                              "standard diffusers pipeline)")
        if device_type != "cuda":
            raise ConfigError(f"backbone.memory.{key}={value!r} offloads to a CUDA device, and the pipeline runs on "
                              f"{device_type} (device={device!r})")
    if memory.cpu_offload is not None and memory.group_offload is not None:
        raise ConfigError(f"backbone.memory.cpu_offload={memory.cpu_offload!r} and group_offload={memory.group_offload!r}: "
                          "diffusers takes one kind of offloading at a time")
    if memory.group_offload_blocks < 1:
        raise ConfigError(f"backbone.memory.group_offload_blocks={memory.group_offload_blocks} must be at least 1")
    if memory.group_offload_stream and memory.group_offload is None:
        raise ConfigError("backbone.memory.group_offload_stream=true streams group offloading: set backbone.memory.group_offload")
    for key in ("vae_tiling", "vae_slicing"):
        if memory[key] and not spec.vae_tiling:
            raise ConfigError(f"backbone.memory.{key}=true: {family}'s VAE does not decode in tiles or slices")

    backend = backbone.attention_backend
    if backend is not None:
        need = ATTENTION_BACKENDS.get(backend)
        if need is None:
            raise ConfigError(f"backbone.attention_backend={backend!r} is not one of diffusers' attention backends: "
                              f"{', '.join(ATTENTION_BACKENDS)}")
        if not spec.attention_dispatch:
            raise ConfigError(f"backbone.attention_backend={backend!r}: {spec.denoiser_class} ({family}) calls torch's "
                              "attention directly, not diffusers' attention dispatch, so a backend would change nothing")
        if need.device is not None and need.device != device_type:
            raise ConfigError(f"backbone.attention_backend={backend!r} runs on {need.device} only; the pipeline runs on "
                              f"{device_type} (device={device!r})")
        if need.module is not None and importlib.util.find_spec(need.module) is None:
            raise ConfigError(f"backbone.attention_backend={backend!r} needs the {need.module} package, which is not installed")

    options = backbone.compile
    if options.enabled:
        if options.scope not in COMPILE_SCOPES:
            raise ConfigError(f"backbone.compile.scope={options.scope!r} is not one of {list(COMPILE_SCOPES)}")
        if options.scope == "blocks" and not spec.repeated_blocks:
            raise ConfigError(f"backbone.compile.scope='blocks': {spec.denoiser_class} has no repeated blocks to compile "
                              "one by one; use scope=denoiser")
        if options.mode not in COMPILE_MODES:
            raise ConfigError(f"backbone.compile.mode={options.mode!r} is not one of {list(COMPILE_MODES)}")
        if options.mode == "reduce-overhead" and device_type != "cuda":
            raise ConfigError(f"backbone.compile.mode='reduce-overhead' records CUDA graphs; the pipeline runs on {device_type}")
        import torch._dynamo

        backends = torch._dynamo.list_backends(exclude_tags=())
        if options.backend not in backends:
            raise ConfigError(f"backbone.compile.backend={options.backend!r} is not a torch.compile backend; known: "
                              f"{', '.join(backends)}")
        if options.backend == "inductor":
            if device_type == "cuda" and importlib.util.find_spec("triton") is None:
                raise ConfigError("backbone.compile.backend='inductor' on CUDA needs triton, which is not installed")
            if device_type == "cpu" and not any(shutil.which(c) for c in ("g++", "clang++", "c++")):
                raise ConfigError("backbone.compile.backend='inductor' on the CPU needs a C++ compiler (g++ or clang++)")


def _clip_geometry(spec: Any, backbone: DictConfig) -> ClipGeometry:
    """The clip every trial generates as the backbone's denoiser sees it; raises :class:`ConfigError` naming the
    setting and the nearest valid values when the backbone cannot take it (the checkpoint's config is read, nothing
    is loaded)."""
    try:
        return spec.geometry(backbone.num_frames, backbone.height, backbone.width, backbone.weights)
    except FileNotFoundError as err:
        raise ConfigError(f"backbone.weights: {err}") from None
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _check_frame_size(dimensions: list[str], backend: str, backbone: DictConfig) -> None:
    """Raise :class:`ConfigError` when a scorer's network cannot take frames of the backbone's size (VBench's RAFT and
    AMT-S need frames of about 120 px a side)."""
    import objectives

    side = min(backbone.height, backbone.width)
    for name in dimensions:
        needed = objectives.min_side(name, backend)
        if side < needed:
            raise ConfigError(
                f"objective: {objectives.record_name(name, backend)} scores frames of at least {needed} px a side; "
                f"backbone.height={backbone.height}, backbone.width={backbone.width}"
            )


def _check_scorer_weights(dimensions: list[str], objective: DictConfig) -> None:
    """The vbench tier's weight files (VBench's cache by default) and libraries, checked without reading or importing
    anything; raises :class:`ConfigError` naming the missing file and the dimension that needs it."""
    import objectives

    try:
        objectives.check_weights(dimensions, objective.backend, objective.weights_dir)
    except (objectives.MissingWeightsError, objectives.MissingDependencyError) as err:
        raise ConfigError(f"objective: {err}") from None


def _check_attention_memory(spec: Any, backbone: DictConfig, geometry: ClipGeometry, device: str) -> None:
    """On the CPU, where attention materialises its ``tokens x tokens`` map, refuse a clip whose map alone would not fit
    in the memory available now (a GPU's fused kernels need no such map, so nothing is estimated there)."""
    import torch

    if device not in ("cpu", "auto") or (device == "auto" and torch.cuda.is_available()):
        return
    config = spec.denoiser_config(backbone.weights)
    heads = config.get("num_attention_heads") or config.get("num_heads")
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not a Linux-like system: no cheap estimate
        return
    if not heads:
        return
    tokens = geometry.latent_frames * geometry.tokens_per_frame
    # Full 3-D attention over every video token, both classifier-free guidance halves of every clip of a batch,
    # float32 scores.
    needed = 2 * backbone.batch_size * heads * tokens * tokens * 4
    if needed > available:
        raise ConfigError(
            f"backbone.num_frames={backbone.num_frames} at {backbone.height}x{backbone.width} makes {tokens} attention "
            f"tokens: one attention call of backbone.batch_size={backbone.batch_size} clip(s) needs about "
            f"{needed / 2**30:.3g} GiB on the CPU, {available / 2**30:.3g} GiB are available; use fewer frames, a "
            "smaller size or a smaller batch"
        )


def _check_domain(method_cls: type, knobs: dict[str, Any], geometry: ClipGeometry, where: str) -> None:
    """Build the method with ``knobs`` (its own checks run) and check them against the clip geometry."""
    try:
        method = method_cls(**knobs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {method_cls.name} rejects {knobs}: {err}") from None
    try:
        method.check_clip(geometry)
    except ValueError as err:
        raise ConfigError(f"{where}: {method_cls.name} {err}") from None


def _preset_references(paths: list[str], method_name: str) -> list[Reference]:
    from vboost.methods.preset import Preset

    files: list[Path] = []
    for entry in paths:
        path = Path(entry).expanduser()
        if path.is_dir():
            # A directory of presets, or an export directory (recommended/ and alternatives/trial_NNNN/, as the sweep
            # writes them; trial_NNNN/ in earlier versions).
            found = (sorted(path.glob("*.yaml")) or sorted(path.glob(f"{RECOMMENDED_DIR}/preset.yaml"))
                     + sorted(path.glob(f"{ALTERNATIVES_DIR}/trial_*/preset.yaml")) or sorted(path.glob("trial_*/preset.yaml")))
            if not found:
                raise ConfigError(
                    f"presets: no *.yaml, {RECOMMENDED_DIR}/preset.yaml or {ALTERNATIVES_DIR}/trial_*/preset.yaml in {entry!r}"
                )
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(f"presets: no preset file or directory at {entry!r}")
    references = []
    for file in files:
        try:
            preset = Preset.load(file)
            if preset.method != method_name:
                raise ValueError(f"{str(file)!r} is a {preset.method!r} preset but the method is {method_name!r}")
            knobs = preset.build().params()
        except (KeyError, ValueError) as err:
            raise ConfigError(f"presets: {str(err).strip(chr(39))}") from None
        references.append(Reference(Role.PRESET, str(file), knobs))
    return references


def _objectives(objective: DictConfig) -> tuple[list[str], list[Target], list[ConstraintSpec]]:
    import objectives

    def record(entry: DictConfig) -> str:
        try:
            names = objectives.record_names(entry.dimension, objective.backend)
        except (ValueError, NotImplementedError) as err:  # unknown dimension/backend, or a tier that cannot run here
            raise ConfigError(f"objective: {err}") from None
        if entry.companion is None:
            return names[0]
        if f"{names[0]}_{entry.companion}" not in names:
            raise ConfigError(f"objective: {entry.dimension!r} has no companion {entry.companion!r}; its records: {names}")
        return f"{names[0]}_{entry.companion}"

    if not objective.targets:
        raise ConfigError("objective.targets is empty: name at least one dimension to optimise")
    targets = []
    for entry in objective.targets:
        name = record(entry)
        direction = entry.direction or objectives.direction(name)
        if direction not in ("maximize", "minimize"):
            raise ConfigError(f"objective target {name!r}: direction={direction!r} must be maximize or minimize")
        targets.append(Target(name, direction))
    if len({t.record for t in targets}) != len(targets):
        raise ConfigError(f"objective.targets lists a record twice: {[t.record for t in targets]}")
    constraints = []
    for entry in objective.constraints:
        if entry.min_ratio_to_baseline is None and entry.min_value is None:
            raise ConfigError(f"objective constraint on {entry.dimension!r} sets neither min_ratio_to_baseline nor min_value")
        constraints.append(ConstraintSpec(record(entry), entry.min_ratio_to_baseline, entry.min_value))
    for entry in objective.targets:
        if not 0.0 <= entry.tolerance < 1.0:
            raise ConfigError(f"objective target {entry.dimension!r}: tolerance={entry.tolerance} must be in [0, 1)")
    if objective.weights_dir is not None and not Path(objective.weights_dir).expanduser().is_dir():
        raise ConfigError(f"objective.weights_dir={objective.weights_dir!r} is not a directory")
    dimensions = list(dict.fromkeys(e.dimension for e in [*objective.targets, *objective.constraints]))
    if objective.early_stop.after_prompts < 1 or objective.early_stop.margin < 0:
        raise ConfigError(f"objective.early_stop={dict(objective.early_stop)} needs after_prompts >= 1 and margin >= 0")
    return dimensions, targets, constraints


def _validation_plan(cfg: DictConfig) -> ValidationPlan:
    """The held-out clips (see ``ValidationConfig``); raises :class:`ConfigError` when the stage is on and they are
    missing, or when one of them is a clip of the search."""
    validation, prompts = cfg.validation, cfg.prompts
    if isinstance(validation.top_k, bool) or validation.top_k < 0:
        raise ConfigError(f"validation.top_k={validation.top_k} must be 0 (no validation stage) or more")
    if not 0.0 < validation.confidence < 1.0:
        raise ConfigError(f"validation.confidence={validation.confidence} must be in (0, 1)")
    if validation.min_effect < 0:
        raise ConfigError(f"validation.min_effect={validation.min_effect} must be >= 0")
    if validation.top_k == 0:
        return ValidationPlan([], [])
    held_out = list(validation.prompts if validation.prompts is not None else prompts.heldout_prompts)
    if not held_out:
        raise ConfigError(
            "validation needs held-out prompts: set prompts.heldout_prompts (conf/prompts/<set>.yaml) or "
            "validation.prompts=[...], or turn the stage off with validation.top_k=0"
        )
    seeds = validation.seeds if validation.seeds is not None else prompts.heldout_seeds
    if seeds is None:
        first = max(prompts.seeds) + 1
        seeds = list(range(first, first + len(prompts.seeds)))
    if not seeds:
        raise ConfigError("validation.seeds is empty: give at least one held-out seed")
    searched = {(p, s) for p in prompts.prompts for s in prompts.seeds}
    repeated = [(p, s) for p in held_out for s in seeds if (p, s) in searched]
    if repeated:
        prompt, seed = repeated[0]
        raise ConfigError(
            f"validation clip {prompt!r} with seed {seed} is also a search clip: held-out clips must be new "
            "(change validation.prompts or validation.seeds)"
        )
    return ValidationPlan(held_out, list(seeds))


def _sampler_and_pruner(study: DictConfig) -> tuple[optuna.samplers.BaseSampler, optuna.pruners.BasePruner]:
    try:
        sampler = instantiate(study.sampler)
        pruner = instantiate(study.pruner)
    except InstantiationException as err:
        raise ConfigError(f"study.sampler/study.pruner: {str(err).splitlines()[0]}") from None
    if not isinstance(sampler, optuna.samplers.BaseSampler):
        raise ConfigError(f"study.sampler={study.sampler._target_!r} is not an Optuna sampler")
    if not isinstance(pruner, optuna.pruners.BasePruner):
        raise ConfigError(f"study.pruner={study.pruner._target_!r} is not an Optuna pruner")
    return sampler, pruner

