"""What one Hydra job of ``python -m vboost.sweep`` does: check the config, open the study, run it, write results.

A job is one study (one backbone x method x objective). Models are kept per process: the jobs of a multirun run
in one process with Hydra's basic launcher, so studies that share a backbone share one pipeline load.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, NoReturn

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from vboost.sweep.errors import ConfigError, IncompatibleError
from vboost.sweep.validate import SweepPlan, plan_sweep

_LOADED: dict[str, tuple[Hashable, Any]] = {}


def run_job(cfg: DictConfig) -> str | None:
    """Run the study ``cfg`` describes; returns its results directory, or None for a skipped pair in a multirun.

    Raises :class:`ConfigError` before anything loads when the config cannot work.
    """
    try:
        plan = plan_sweep(cfg)
    except IncompatibleError as err:
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            raise
        print(f"skipped {cfg.study.name}: {err}")
        return None
    import optuna

    from vboost.record import StudyRun, decide
    from vboost.secrets import mask_url
    from vboost.sweep.artifacts import VideoWriter, artifact_store, export_and_report, results_lock, write_results
    from vboost.sweep.census import census
    from vboost.sweep.cost import describe_cost, existing_study, study_cost
    from vboost.sweep.loggers import BackgroundLogger, build_logger
    from vboost.sweep.loop import Sweep

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep prints its own line per trial
    for note in plan.notes:
        print(f"{plan.study_name}: {note}")
    if cfg.dry_run:
        print(f"{plan.study_name}: {describe_cost(study_cost(plan, existing_study(plan)))}")
        return None
    plan.study_dir.mkdir(parents=True, exist_ok=True)
    try:
        logger = BackgroundLogger(build_logger(cfg.logger, plan.study_dir, plan.study_name, logger_run_config(plan)))
    except ValueError as err:  # a bad setting of the chosen logger
        raise ConfigError(str(err)) from None
    store = artifact_store(plan.study_dir) if cfg.optuna_artifacts else None
    videos = VideoWriter(plan.study_dir, logger, store, background=resolve_device(cfg.device) != "cpu") if cfg.save_videos else None
    sweep = Sweep(plan, models=lambda: load_models(plan), logger=logger, write_video=videos)
    study = sweep.open_study()
    print(f"{plan.study_name}: {describe_cost(study_cost(plan, study))}")
    status = "failed"
    try:
        sweep.run(study)
        status = "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        try:
            logger.wait()  # every clip is written and logged: the export and report below read them
        finally:
            # Workers sharing a study finish together: one at a time writes, each from the study as it then is.
            with results_lock(plan.study_dir):
                run = StudyRun.from_study(study, plan.study_dir, plan.storage_url)
                decision = decide(run)
                write_results(run, decision, plan)
                lines = export_and_report(run, decision, plan) if run.completed() else []
            logger.finalize(status)  # after the results: a logger may publish them (W&B's study run)
            states = [t.state.name.lower() for t in study.get_trials(deepcopy=False)]
            counts = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states))
            state = census(study)
            print(f"study {plan.study_name!r}: {state.search} search + {state.validation} validation trials "
                  f"({counts}) in {mask_url(plan.storage_url)}")
            print(f"results: {plan.study_dir} (trials.csv, trials.parquet, videos/, export/, report/)")
            for line in lines:
                print(line, file=sys.stderr if line.startswith("warning") else sys.stdout)
            print(decision.headline())
    return str(plan.study_dir)


def logger_run_config(plan: SweepPlan) -> dict[str, Any]:
    """What every logger run records about the sweep: backbone family and checkpoint, frames, steps, method,
    objective (the config choice and its records) and the storage URL with its password masked."""
    from vboost.secrets import mask_url

    backbone = plan.cfg.backbone
    return {
        "backbone": backbone.family,
        "checkpoint": backbone.weights,
        "num_frames": backbone.num_frames,
        "steps": backbone.steps,
        "method": plan.cfg.method.name,
        "objective": HydraConfig.get().runtime.choices.get("objective"),
        "targets": [t.record for t in plan.targets],
        "storage": mask_url(plan.storage_url),
    }


class MaskSecrets(Callback):
    """Hydra callback (``conf/sweep.yaml``): a password in a URL (``study.storage=postgresql://user:pw@host/db``)
    never stays in what Hydra writes or logs.

    Hydra saves the job's config, its own config and the overrides under ``<run dir>/.hydra/`` (and a multirun's
    ``multirun.yaml``) just before the job starts, and its launcher logs every job's overrides. This rewrites those
    files with passwords masked as the job starts, and masks the message of every log record of the process.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _mask_log_records(_scrubber(config))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _mask_log_records(_scrubber(config))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        scrub = _scrubber(config)
        _mask_log_records(scrub)  # a launcher may run the job in a process of its own
        saved = []
        if config.hydra.output_subdir is not None:
            saved_dir = Path(config.hydra.runtime.output_dir) / config.hydra.output_subdir
            saved += [saved_dir / name for name in ("config.yaml", "hydra.yaml", "overrides.yaml")]
        if config.hydra.mode == RunMode.MULTIRUN:
            saved.append(Path(config.hydra.sweep.dir) / "multirun.yaml")
        for path in saved:
            if path.is_file():
                text = path.read_text()
                if scrub(text) != text:
                    path.write_text(scrub(text))


def _scrubber(config: DictConfig) -> Any:
    return job_secrets(config, list(config.hydra.overrides.task))


# Environment variables whose values are secrets: PostgreSQL's own password variable, the one the README suggests
# for ${oc.env:...} in a storage URL, and W&B's key.
SECRET_ENV = ("PGPASSWORD", "VBOOST_DB_PASSWORD", "WANDB_API_KEY")


def job_secrets(cfg: DictConfig, overrides: list[str]) -> Any:
    """A :class:`~vboost.secrets.SecretScrubber` for everything printed or written about a job: passwords in the
    storage URL (resolved, so one read from ``${oc.env:...}`` is masked too), in the command-line overrides, and the
    values of :data:`SECRET_ENV`."""
    from vboost.secrets import SecretScrubber

    sources: list[Any] = [overrides]
    try:
        sources.append(OmegaConf.select(cfg, "study.storage"))
    except Exception:  # noqa: BLE001 -- an interpolation that cannot resolve holds no secret to mask
        pass
    scrubber = SecretScrubber(sources)
    for name in SECRET_ENV:
        scrubber.add_secret(os.environ.get(name, ""))
    return scrubber


class _MaskedLogRecords:
    """A log record factory that masks passwords in every message. Hydra replaces its log handlers for every job,
    so a handler filter would not last; the process's record factory does."""

    def __init__(self, base: Callable[..., logging.LogRecord], scrub: Callable[[str], str]) -> None:
        self.base, self.scrub = base, scrub

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.base(*args, **kwargs)
        try:
            record.msg, record.args = self.scrub(record.getMessage()), None
        except (TypeError, ValueError):  # a malformed record: logging reports it when it is emitted
            pass
        return record


def _mask_log_records(scrub: Callable[[str], str]) -> None:
    current = logging.getLogRecordFactory()
    base = current.base if isinstance(current, _MaskedLogRecords) else current
    logging.setLogRecordFactory(_MaskedLogRecords(base, scrub))


def check_job(cfg: DictConfig) -> None:
    """Check one job of a multirun (before any job starts): print the pair a job will skip; exit on a bad config."""
    try:
        plan_sweep(cfg)
    except IncompatibleError as err:
        print(f"will skip {cfg.study.name}: {err}")
    except Exception as err:  # noqa: BLE001 -- every failure leaves as one masked line
        exit_with(err, cfg)


def exit_with(err: BaseException, cfg: DictConfig) -> NoReturn:
    """Leave with one line on stderr naming what went wrong, passwords masked: exit code 2 for a config that cannot
    work, 1 for any other failure. ``HYDRA_FULL_ERROR=1`` prints the traceback before it, masked too."""
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    scrub = job_secrets(cfg, overrides)
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        print(scrub("".join(traceback.format_exception(err))), file=sys.stderr)
    if isinstance(err, ConfigError):
        print(f"vboost.sweep: error: {scrub(str(err))}", file=sys.stderr)
        sys.exit(2)
    first = (str(err).strip().splitlines() or [""])[0]
    hint = "" if os.environ.get("HYDRA_FULL_ERROR") == "1" else " (HYDRA_FULL_ERROR=1 prints the traceback)"
    print(f"vboost.sweep: error: {type(err).__name__}: {scrub(first)}{hint}", file=sys.stderr)
    sys.exit(1)


def load_models(plan: SweepPlan) -> tuple[Any, Any]:
    """The backbone (with the config's generation settings) and the scorer, loaded once per process and key."""
    import objectives
    import torch

    from vboost.backbones import GenerationDefaults, load_backbone

    b, o = plan.cfg.backbone, plan.cfg.objective
    device = resolve_device(plan.cfg.device)
    defaults = GenerationDefaults(
        num_frames=b.num_frames, height=b.height, width=b.width, steps=b.steps, guidance=b.guidance, fps=b.fps
    )
    load_kwargs = OmegaConf.to_container(b.load_kwargs, resolve=True)
    # How the pipeline is built and run (docs/gpu.md): part of what makes a loaded pipeline reusable by another job.
    runtime = {
        "component_dtypes": OmegaConf.to_container(b.component_dtypes, resolve=True),
        "memory": OmegaConf.to_container(b.memory, resolve=True),
        "attention_backend": b.attention_backend,
        "compile": OmegaConf.to_container(b.compile, resolve=True),
    }
    backbone = _kept(
        "backbone",
        (b.family, b.weights, b.dtype, device, repr(sorted(load_kwargs.items())), repr(runtime)),
        lambda: load_backbone(
            b.family, b.weights, defaults=defaults, torch_dtype=getattr(torch, b.dtype), device=device, **runtime,
            **load_kwargs,
        ),
    )
    backbone.defaults = defaults  # studies of a multirun may share the pipeline with other settings
    scorer = _kept(
        "scorer",
        (tuple(plan.dimensions), o.backend, o.weights_dir, o.device),
        lambda: objectives.Scorer(
            plan.dimensions, backend=o.backend, weights_dir=o.weights_dir, device=resolve_device(o.device)
        ),
    )
    return backbone, scorer


def resolve_device(device: str) -> str:
    """``auto`` is ``cuda`` where a GPU is visible, else ``cpu``; any other torch device string is kept."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _kept(kind: str, key: Hashable, load: Callable[[], Any]) -> Any:
    held = _LOADED.get(kind)
    if held is None or held[0] != key:
        _LOADED.pop(kind, None)  # let the previous model go before the next one loads
        _LOADED[kind] = (key, load())
    return _LOADED[kind][1]
