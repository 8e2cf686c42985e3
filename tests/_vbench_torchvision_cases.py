"""Cases of test_objectives_vbench_torchvision.py that need torchvision (RAFT) and pyiqa (MUSIQ); each runs in
its own interpreter, with the two packages on its path and the torchvision shim imported first, so the test
process itself never imports torchvision (see _torchvision_shim.py). ``python _vbench_torchvision_cases.py NAME``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import _torchvision_shim  # noqa: F401  (before torchvision)
import numpy as np
import torch

import objectives
from _vbench_checkpoints import dino_state, key_shapes, raft_things, write_clip_archive
from objectives import _amt, _networks, _weights


def raft_loads_every_tensor_of_raft_things(root: Path) -> None:
    state = raft_things(torch.Generator().manual_seed(0))
    path = root / _weights.RAFT.path
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    model = _networks.raft(str(root), "cpu")
    # Without restating the name mapping: the network holds exactly the file's tensors, aliases counted once.
    def signature(t: torch.Tensor) -> tuple:
        return tuple(t.shape), round(float(t.double().sum()), 6), round(float(t.double().abs().sum()), 6)

    distinct = {k: v for k, v in state.items() if ".norm3." not in k}
    assert sorted(map(signature, model.state_dict().values())) == sorted(map(signature, distinct.values()))

    frames = np.random.default_rng(1).integers(0, 256, (5, 130, 150, 3), dtype=np.uint8)
    out = objectives.Scorer(["dynamic_degree"], backend="vbench", weights_dir=root).score_video(frames, 8.0)
    assert out["vbench/dynamic_degree"] in (0.0, 1.0) and np.isfinite(out["vbench/dynamic_degree_magnitude"])

    bad = dict(state, **{"module.extra.weight": torch.zeros(1)})
    torch.save(bad, path)
    _networks.raft.cache_clear()
    try:
        _networks.raft(str(root), "cpu")
    except objectives.CheckpointError as err:
        assert "raft-things.pth" in str(err) and "'extra.weight'" in str(err), err
    else:
        raise AssertionError("an unknown RAFT key was accepted")


def musiq_loader_rebuilds_pyiqas_network(root: Path) -> None:
    from pyiqa.archs.musiq_arch import MUSIQ

    # The published file's tensors are those of pyiqa's MUSIQ as VBench builds it (SPAQ: one output).
    assert {k: tuple(v.shape) for k, v in MUSIQ(pretrained=False).state_dict().items()} == key_shapes(
        "musiq_spaq_keys.txt")
    torch.manual_seed(0)
    reference = MUSIQ(hidden_size=128, mlp_dim=96, num_heads=2, num_layers=2, pretrained=False).eval()
    path = root / _weights.MUSIQ_SPAQ.path
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    model = _networks.musiq(str(root), "cpu")
    assert model.transformer_encoder.transformer.encoderblock_1.attention.num_heads == 2
    frame = torch.rand(1, 3, 140, 200, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model(frame), reference(frame), rtol=0, atol=0)

    frames = np.random.default_rng(3).integers(0, 256, (2, 140, 200, 3), dtype=np.uint8)
    value = objectives.imaging_quality(frames, 8.0, backend="vbench", weights_dir=root)
    with torch.no_grad():
        expected = np.mean([float(reference(torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255)) for f in frames])
    assert abs(value - expected / 100) < 1e-6, (value, expected)


def write_stand_in_weights(root: Path) -> None:
    """Random-weight files for every vbench-tier network, where and as VBench's cache holds them."""
    from pyiqa.archs.musiq_arch import MUSIQ

    (root / _weights.RAFT.path).parent.mkdir(parents=True)
    torch.save(raft_things(torch.Generator().manual_seed(4)), root / _weights.RAFT.path)
    (root / _weights.MUSIQ_SPAQ.path).parent.mkdir(parents=True)
    torch.save(MUSIQ(hidden_size=64, mlp_dim=64, num_heads=1, num_layers=1, pretrained=False).state_dict(),
               root / _weights.MUSIQ_SPAQ.path)
    (root / _weights.AMT_S.path).parent.mkdir(parents=True)
    torch.save({"state_dict": _amt.AMTS().state_dict()}, root / _weights.AMT_S.path)
    generator = torch.Generator().manual_seed(5)
    (root / "dino_model").mkdir()
    torch.save(dino_state(generator), root / _weights.DINO.path)
    write_clip_archive(root / _weights.CLIP_B32.path, 32, 16, generator)
    write_clip_archive(root / _weights.CLIP_L14.path, 14, 768, generator)
    (root / _weights.AESTHETIC.path).parent.mkdir(parents=True)
    torch.save(torch.nn.Linear(768, 1).state_dict(), root / _weights.AESTHETIC.path)


def all_seven_dimensions_score_one_clip(root: Path) -> None:
    write_stand_in_weights(root)
    frames = np.random.default_rng(6).integers(0, 256, (5, 128, 136, 3), dtype=np.uint8)
    result = objectives.evaluate([(frames, 8.0)], list(objectives.DIMENSIONS), backend="vbench", weights_dir=root)
    assert set(result.scores) == {"exact/temporal_flickering", "vbench/dynamic_degree", "vbench/dynamic_degree_magnitude",
                                  *(f"vbench/{d}" for d in objectives.DIMENSIONS if d not in ("temporal_flickering",
                                                                                               "dynamic_degree"))}
    assert all(np.isfinite(v) for v in result.scores.values()), result.scores


def sweep_with_a_vbench_motion_objective(root: Path) -> None:
    # The whole sweep in this interpreter (the shim is imported): search, validation, decision and export, every
    # clip scored by VBench's networks (RAFT for the motion, DINO for the constraint) from the stand-in cache.
    import json
    import runpy

    import optuna

    write_stand_in_weights(root)
    out = root / "outputs"
    sys.argv = ["vboost.sweep", f"output_dir={out}", "backbone=tiny_cogvideox", "method=enhance_a_video",
                "objective=motion_within_consistency", "objective.backend=vbench", f"objective.weights_dir={root}",
                "backbone.steps=2", "backbone.num_frames=5", "backbone.height=128", "backbone.width=128",
                "prompts.prompts=[a cat walks on the beach]", "prompts.seeds=[0]", "study.n_trials=2",
                "validation.prompts=[a dog runs on the beach]", "validation.seeds=[1]", "validation.top_k=1", "logger=none",
                "save_videos=false", "study.name=vbench", "study.heartbeat_interval=null"]
    try:
        runpy.run_module("vboost.sweep", run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        assert exit_.code in (None, 0), exit_.code
    study = optuna.load_study(study_name="vbench", storage=f"sqlite:///{out / 'vbench' / 'study.db'}")
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 4 and all(t.user_attrs.get("role") for t in trials)  # baseline, paper, their validations
    for trial in trials:
        scores = trial.user_attrs["scores"]
        assert {"vbench/dynamic_degree", "vbench/subject_consistency"} <= set(scores), sorted(scores)
        assert all(np.isfinite(scores[k]) for k in ("vbench/dynamic_degree", "vbench/subject_consistency"))
    summary = json.loads((out / "vbench" / "report" / "summary.json").read_text())
    # The held-out clips were generated and scored: the baseline's validation trial is what the decision reads.
    assert summary["baseline_validation_trial"] is not None and summary["reason"], summary


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory:
        globals()[sys.argv[1]](Path(directory))
    print("ok")
