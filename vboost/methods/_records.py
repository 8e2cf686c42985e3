"""Per-call method diagnostics kept on the device they were computed on and read back in one transfer.

Reading a tensor's value (``.item()``, ``.tolist()``) waits for the device to finish everything queued before it; an
attention processor that did so on every call would stall a GPU between layers. Records therefore hold tensors as
they were computed, and become plain floats when someone reads them: all at once, in one transfer per device.
"""

from __future__ import annotations

from typing import Any

import torch

# Past this many pending records the values are read back anyway (one wait every few thousand calls, about once per
# clip at the real models' sizes), so that a long run without reads does not hold device memory for every call.
_MAX_PENDING = 4096


class RecordLog:
    """The records of one attach, in the order they were made.

    A record's tensor values are 0-dim (one record) or 1-D of length ``n`` (``n`` records, one per clip of a batched
    call, with ``clip`` set to its position); its other values are copied into each.
    """

    def __init__(self) -> None:
        self._read: list[dict[str, Any]] = []
        self._pending: list[dict[str, Any]] = []

    def append(self, record: dict[str, Any]) -> None:
        """Keep ``record`` (its tensors are not read yet); reads everything back when too many are pending."""
        self._pending.append(record)
        if len(self._pending) >= _MAX_PENDING:
            self._read_back()

    def records(self) -> list[dict[str, Any]]:
        """Every record with plain Python values (reads back what is pending: one transfer per device)."""
        if self._pending:
            self._read_back()
        return self._read

    def _read_back(self) -> None:
        pending, self._pending = self._pending, []
        tensors = [value for record in pending for value in record.values() if isinstance(value, torch.Tensor)]
        by_device: dict[torch.device, list[torch.Tensor]] = {}
        for tensor in tensors:
            by_device.setdefault(tensor.device, []).append(tensor)
        values: dict[int, list[float]] = {}
        for device, group in by_device.items():
            # float64 holds every float32 value exactly (MPS has no float64).
            dtype = torch.float32 if device.type == "mps" else torch.float64
            flat = torch.cat([t.detach().reshape(-1).to(dtype) for t in group]).tolist()
            offset = 0
            for tensor in group:
                values[id(tensor)] = flat[offset : offset + tensor.numel()]
                offset += tensor.numel()
        for record in pending:
            self._read.extend(_expand(record, values))


def _expand(record: dict[str, Any], values: dict[int, list[float]]) -> list[dict[str, Any]]:
    """One dict per clip of ``record``, tensors replaced by their values."""
    lengths = {value.numel() for value in record.values() if isinstance(value, torch.Tensor) and value.ndim == 1}
    if len(lengths) > 1:
        raise ValueError(f"a record's per-clip values differ in length: {sorted(lengths)}")
    if not lengths:
        return [{key: values[id(value)][0] if isinstance(value, torch.Tensor) else value for key, value in record.items()}]
    (clips,) = lengths
    out = []
    for clip in range(clips):
        entry = {}
        for key, value in record.items():
            if isinstance(value, torch.Tensor):
                read = values[id(value)]
                value = read[clip] if value.ndim == 1 else read[0]
            entry[key] = value
        entry["clip"] = clip
        out.append(entry)
    return out
