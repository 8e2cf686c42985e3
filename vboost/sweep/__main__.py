"""``python -m vboost.sweep``: Hydra-composed, Optuna-driven sweeps (``conf/sweep.yaml`` is the primary config).

The config tree is the repository's top-level ``conf/`` (found relative to this file, so it works from a source
checkout or an editable install). ``-m backbone=a,b method=x,y`` runs one study per combination.
"""

import sys

import hydra
from omegaconf import DictConfig

from vboost.sweep.app import exit_with, run_job
from vboost.sweep.config import register_configs

register_configs()


@hydra.main(version_base=None, config_path="../../conf", config_name="sweep")
def main(cfg: DictConfig) -> str | None:
    try:
        return run_job(cfg)
    except KeyboardInterrupt:
        print("vboost.sweep: interrupted; the running trial is marked failed. Run the same command to resume.", file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 -- never Hydra's report, which prints the overrides verbatim
        exit_with(err, cfg)


if __name__ == "__main__":
    main()
