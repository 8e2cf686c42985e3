"""Hydra's basic sweeper, plus a check of every job's config before the first job starts (``hydra/sweeper=vboost``).

Hydra imports every module under ``hydra_plugins`` in any Hydra app, so this one imports nothing heavy at the top
(and, being executed outside ``sys.modules``, keeps its annotations real types for ``dataclasses``).
"""

import dataclasses
from collections.abc import Sequence
from typing import Any, Dict, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig


class VboostSweeper(BasicSweeper):
    """One job per combination of the ``-m`` values, as Hydra's basic sweeper, each job one study.

    Every job's config is checked before any job starts: a bad value stops the multirun in seconds, not after
    the first study; a method that does not fit a backbone is announced here and skipped by its job.
    """

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        from vboost.sweep.app import check_job  # heavy imports only when a vboost multirun starts
        from vboost.sweep.config import register_configs

        register_configs()
        assert self.hydra_context is not None and self.config is not None
        try:
            for overrides in batch:
                job_cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
                HydraConfig.instance().set_config(job_cfg)  # ${hydra:runtime.choices...} resolves per job
                check_job(job_cfg)
        finally:
            HydraConfig.instance().set_config(self.config)


@dataclasses.dataclass
class VboostSweeperConf:
    _target_: str = "hydra_plugins.vboost_sweeper.VboostSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, Any]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="vboost", node=VboostSweeperConf, provider="vboost")
