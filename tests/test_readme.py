"""The README's example of a method added without editing vboost runs as written."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import optuna

from in_process import run_sweep

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
    args = shlex.split(command.replace("$PWD", str(tmp_path)))
    assert args[:4] == ["PYTHONPATH=.", "python", "-m", "vboost.sweep"], args
    # Run in this process (in_process.py), with "." (the example's directory) importable as PYTHONPATH=. makes it.
    result = run_sweep([*args[4:], f"output_dir={tmp_path / 'out'}", *SMALL], tmp_path, pythonpath=[tmp_path])
    assert result.returncode == 0, result.stderr
    [db] = (tmp_path / "out").glob("*/study.db")
    study = optuna.load_study(study_name=db.parent.name, storage=f"sqlite:///{db}")
    assert study.user_attrs["method"] == "latent_gain"
    searched = [t for t in study.trials if t.user_attrs["role"] == "search"]
    assert searched and -0.05 <= searched[0].user_attrs["knobs"]["gain"] <= 0.05
    # The gain changes the clips: a searched trial's scores differ from the untouched model's.
    assert searched[0].values != study.trials[0].values


def sweep_commands(block: str) -> list[list[str]]:
    """The arguments of every ``python -m vboost.sweep`` command in a bash block (continuation lines joined)."""
    lines = block.replace("\\\n", " ").splitlines()
    return [shlex.split(line)[3:] for line in lines if line.startswith("python -m vboost.sweep")]


def test_every_gpu_command_composes_into_a_valid_config(monkeypatch):
    # The GPU examples cannot run here (no weights, no GPU); each still composes with Hydra into the config schema,
    # so a renamed key, a wrong value type or a missing recipe breaks this test rather than a user's first run.
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    from vboost.backbones import backbone_spec
    from vboost.sweep.config import register_configs
    from vboost.sweep.validate import check_runtime_options

    readme = (REPO / "README.md").read_text()
    commands = sweep_commands(code_block_after(readme, "# Enhance-A-Video on CogVideoX-2b at 49 frames, motion within 1% "
                                                       "of the baseline's subject consistency"))
    assert len(commands) >= 8
    register_configs()
    # The GPU machine these commands are for has triton (torch's CUDA wheels bring it); this one may not.
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: find_spec(name, *a) or (name == "triton" or None))
    for args in commands:
        name, config_dir, overrides = "sweep", REPO / "conf", []
        if "-m" in args:  # a multirun: its first study's config
            args = [a.split(",")[0] if "=" in a and "[" not in a else a for a in args if a != "-m"]
        while args:
            arg = args.pop(0)
            if arg == "-cd":  # a recipe directory first, vboost's own configs after it (as the app's search path)
                config_dir = REPO / args.pop(0)
                overrides.append(f"hydra.searchpath=[file://{REPO / 'conf'}]")
            elif arg == "-cn":
                name = args.pop(0)
            else:
                overrides.append(arg)
        with initialize_config_dir(config_dir=str(config_dir), version_base=None):
            cfg = compose(name, overrides=overrides, return_hydra_config=True)
            HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]
        OmegaConf.to_object(cfg)  # the structured schema: keys and types
        # What the backbone options ask of the family, on the GPU these commands are for.
        check_runtime_options(backbone_spec(cfg.backbone.family), cfg.backbone, "cuda")
