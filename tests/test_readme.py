"""The README's example of a method added without editing vboost runs as written."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import optuna

REPO = Path(__file__).resolve().parents[1]
SMALL = ["backbone.steps=2", "backbone.num_frames=9", "backbone.height=32", "backbone.width=32",
         "prompts.prompts=[a cat walks on the beach]", "study.n_trials=3", "study.heartbeat_interval=null",
         "validation.prompts=[a dog runs on the beach]", "validation.seeds=[1]", "logger=none", "save_videos=false"]


def code_block_after(text: str, first_line: str) -> str:
    """The fenced code block whose first line is ``first_line``."""
    match = re.search(rf"```\w*\n{re.escape(first_line)}\n(.*?)```", text, re.S)
    assert match, f"no README code block starting with {first_line!r}"
    return f"{first_line}\n{match.group(1)}"


def test_the_extension_example_registers_a_method_and_its_config(tmp_path):
    readme = (REPO / "README.md").read_text()
    (tmp_path / "my_methods.py").write_text(code_block_after(readme, "# my_methods.py"))
    (tmp_path / "my_conf" / "method").mkdir(parents=True)
    (tmp_path / "my_conf" / "method" / "latent_gain.yaml").write_text(code_block_after(readme, "# my_conf/method/latent_gain.yaml"))
    command = next(line for line in readme.splitlines() if line.startswith("PYTHONPATH=. python -m vboost.sweep imports=[my_methods]"))
    args = shlex.split(command.replace("$PWD", str(tmp_path)))[1:]  # without the PYTHONPATH= assignment
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    result = subprocess.run([sys.executable if a == "python" else a for a in args] + [f"output_dir={tmp_path / 'out'}", *SMALL],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    [db] = (tmp_path / "out").glob("*/study.db")
    study = optuna.load_study(study_name=db.parent.name, storage=f"sqlite:///{db}")
    assert study.user_attrs["method"] == "latent_gain"
    searched = [t for t in study.trials if t.user_attrs["role"] == "search"]
    assert searched and -0.05 <= searched[0].user_attrs["knobs"]["gain"] <= 0.05
    # The gain changes the clips: a searched trial's scores differ from the untouched model's.
    assert searched[0].values != study.trials[0].values
