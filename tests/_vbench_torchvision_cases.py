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


def all_seven_dimensions_score_one_clip(root: Path) -> None:
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

    frames = np.random.default_rng(6).integers(0, 256, (5, 128, 136, 3), dtype=np.uint8)
    result = objectives.evaluate([(frames, 8.0)], list(objectives.DIMENSIONS), backend="vbench", weights_dir=root)
    assert set(result.scores) == {"exact/temporal_flickering", "vbench/dynamic_degree", "vbench/dynamic_degree_magnitude",
                                  *(f"vbench/{d}" for d in objectives.DIMENSIONS if d not in ("temporal_flickering",
                                                                                               "dynamic_degree"))}
    assert all(np.isfinite(v) for v in result.scores.values()), result.scores


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory:
        globals()[sys.argv[1]](Path(directory))
    print("ok")
