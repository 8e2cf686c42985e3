"""objectives/ vbench tier, the parts that need torchvision (RAFT) and pyiqa (MUSIQ).

Neither is in the ``dev`` install: PyPI's torchvision is a CUDA build that cannot import beside a CPU torch
without a shim, and transformers and diffusers import torchvision whenever it is installed, so putting it in
the test environment would break every other import. These tests therefore install the two wheels
(``--no-deps``, the torchvision release that matches the installed torch) into a folder of their own, once
per session, and run each case of ``_vbench_torchvision_cases.py`` in a child interpreter that has that
folder on its path and imports ``_torchvision_shim`` first. pip needs the package index for that install
(CI has it); the cases themselves use no network.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).parent
PYIQA = "pyiqa==0.1.16"


def _matching_torchvision() -> str:
    major, minor = (int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
    assert major == 2, f"no torchvision rule for torch {torch.__version__}"
    return f"torchvision==0.{minor + 15}.0"  # torch 2.N pairs with torchvision 0.(N+15)


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("vbench_site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    _matching_torchvision(), PYIQA], check=True)
    return target


@pytest.mark.parametrize("case", ["raft_loads_every_tensor_of_raft_things", "musiq_loader_rebuilds_pyiqas_network",
                                  "all_seven_dimensions_score_one_clip",
                                  pytest.param("sweep_with_a_vbench_motion_objective", marks=pytest.mark.slow)])
def test_case(site, case):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(TESTS.parent), str(TESTS)]))
    run = subprocess.run([sys.executable, str(TESTS / "_vbench_torchvision_cases.py"), case], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stdout[-2000:] + run.stderr[-4000:]
