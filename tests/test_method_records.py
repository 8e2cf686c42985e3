"""Method records stay on the device while the pipeline runs and are read back in one transfer when read."""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

from vboost.backbones.animatediff import AnimateDiffBackbone
from vboost.backbones.cogvideox import CogVideoXBackbone
from vboost.methods import ByTheWay, EnhanceAVideo, MethodHandle
from vboost.methods import _records

# Every way a tensor's value reaches Python: each waits for the device to finish the work queued before it.
_READS = {"tolist", "item", "__bool__", "__float__", "__int__", "__index__", "numpy"}


class CountReads(TorchFunctionMode):
    """Counts the calls that read a tensor's value back to Python."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.reads += getattr(func, "__name__", "") in _READS
        return func(*args, **(kwargs or {}))


def reads_while_generating(backbone, method, **settings) -> tuple[int, MethodHandle | None]:
    handle = method.attach(backbone.pipe) if method is not None else None
    try:
        with CountReads() as counter:
            backbone.generate("a cat runs on the beach", 0, **settings)
    finally:
        if handle is not None:
            handle.detach()
    return counter.reads, handle


@pytest.mark.parametrize(
    "backbone_class,method,settings",
    [
        (CogVideoXBackbone, EnhanceAVideo(weight=4.0), {"steps": 3}),
        (AnimateDiffBackbone, ByTheWay(alpha=0.6, beta=1.5, tau=7, active_fraction=1.0), {"steps": 2}),
    ],
)
def test_a_method_reads_nothing_back_while_the_pipeline_runs(backbone_class, method, settings):
    backbone = backbone_class.tiny(seed=0)
    plain, _ = reads_while_generating(backbone, None, **settings)
    with_method, handle = reads_while_generating(backbone, method, **settings)
    assert with_method == plain  # the pipeline's own reads (its output), none per attention call
    with CountReads() as counter:
        records = handle.records
    assert len(records) >= 6 and counter.reads == 1  # every record's values in one transfer
    assert all(isinstance(v, (int, float, str)) or v is None for r in records for v in r.values())
    with CountReads() as counter:
        assert handle.records == records and handle.summary()
    assert counter.reads == 0  # read once, kept as plain values


def test_per_clip_values_give_one_record_per_clip():
    handle = MethodHandle(method=None, target_name="x")
    handle.steps.step_index, handle.steps.num_steps = 3, 10
    handle.record(layer="a", score=torch.tensor([1.5, 2.5]), frames=torch.tensor(7.0), name="n")
    handle.record(layer="b", score=torch.tensor(4.0), weight=0.5)
    assert handle.records == [
        {"step": 3, "num_steps": 10, "layer": "a", "score": 1.5, "frames": 7.0, "name": "n", "clip": 0},
        {"step": 3, "num_steps": 10, "layer": "a", "score": 2.5, "frames": 7.0, "name": "n", "clip": 1},
        {"step": 3, "num_steps": 10, "layer": "b", "score": 4.0, "weight": 0.5},
    ]
    assert handle.summary() == {"score": pytest.approx(8.0 / 3), "frames": 7.0, "weight": 0.5}  # clip is no diagnostic


def test_values_read_back_are_the_tensors_values_exactly():
    values = torch.tensor([0.1, 1 / 3, 1e-30], dtype=torch.float32)
    handle = MethodHandle(method=None, target_name="x")
    handle.record(v=values, w=values.double() * 3)
    assert [r["v"] for r in handle.records] == values.tolist()
    assert [r["w"] for r in handle.records] == (values.double() * 3).tolist()


def test_per_clip_values_of_one_record_must_agree_in_length():
    handle = MethodHandle(method=None, target_name="x")
    handle.record(a=torch.zeros(2), b=torch.zeros(3))
    with pytest.raises(ValueError, match=r"differ in length: \[2, 3\]"):
        handle.records


def test_many_pending_records_are_read_back_without_waiting_for_a_read(monkeypatch):
    monkeypatch.setattr(_records, "_MAX_PENDING", 4)
    log = _records.RecordLog()
    with CountReads() as counter:
        for i in range(9):
            log.append({"i": i, "v": torch.tensor(float(i))})
    assert counter.reads == 2  # after the 4th and the 8th
    assert [r["v"] for r in log.records()] == [float(i) for i in range(9)]
