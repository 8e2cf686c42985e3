"""``python -m vboost.sweep`` run in the test process: the real entry point (Hydra, the config checks, the trial loop,
export and report), without the ten seconds or more that every fresh interpreter spends importing torch, diffusers
and transformers before the first trial.

What needs a process of its own stays a subprocess in the tests: signals (Ctrl-C, SIGKILL), several workers at once,
what a fresh interpreter imports, and runs compared bit for bit with another process's.
"""

from __future__ import annotations

import contextlib
import io
import os
import runpy
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from hydra.core.global_hydra import GlobalHydra


def run_sweep(
    args: Iterable[str],
    cwd: Path,
    env: Mapping[str, str | None] | None = None,
    pythonpath: Iterable[str | Path] = (),
) -> subprocess.CompletedProcess:
    """Run ``python -m vboost.sweep ARGS`` from ``cwd`` in this process, with ``env`` set (a None value unsets the
    variable) and ``pythonpath`` importable; returns its exit code and what it printed, as ``subprocess.run`` would.
    The working directory, environment, ``sys.path`` and ``sys.argv`` are restored afterwards."""
    args = list(args)
    out, err = io.StringIO(), io.StringIO()
    saved = (os.getcwd(), dict(os.environ), list(sys.path), sys.argv)
    for name, value in (env or {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    sys.path[:0] = [str(p) for p in pythonpath]
    sys.argv = ["vboost.sweep", *args]
    os.chdir(cwd)
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_module("vboost.sweep", run_name="__main__")
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
                if isinstance(exit_.code, str):  # what the interpreter would print on leaving
                    print(exit_.code, file=err)
    finally:
        GlobalHydra.instance().clear()
        os.chdir(saved[0])
        os.environ.clear()
        os.environ.update(saved[1])
        sys.path[:], sys.argv = saved[2], saved[3]
    return subprocess.CompletedProcess([sys.executable, "-m", "vboost.sweep", *args], code, out.getvalue(), err.getvalue())
