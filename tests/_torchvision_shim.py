"""Lets PyPI's torchvision (a CUDA build) import beside a CPU build of torch, for tests and benchmarks only.

That wheel's compiled operators do not load against the CPU torch, and ``import torchvision`` then fails in
``torchvision/_meta_registrations.py`` ("operator torchvision::nms does not exist") because it registers fake
kernels for two operators whose schemas the library never defined. Defining those schemas first is enough for
everything the ``vbench`` tier uses (RAFT, pyiqa's MUSIQ); the detection operators stay unusable.

Import this module before torchvision. It does nothing unless torch is a CPU build and the installed
torchvision a CUDA one (read from its ``version.py``, without importing it): where the two match, torchvision
defines these operators itself, which is why none of this lives in the package.
"""

import importlib.util
from pathlib import Path

import torch

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)


def _cuda_torchvision_on_cpu_torch() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if torch.version.cuda is not None or spec is None or not spec.submodule_search_locations:
        return False
    version_file = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    return version_file.is_file() and "+cu" in version_file.read_text()


if _cuda_torchvision_on_cpu_torch() and not hasattr(torch.ops.torchvision, "nms"):
    _LIBRARY = torch.library.Library("torchvision", "DEF")  # kept alive: the schemas live as long as it does
    for _schema in _SCHEMAS:
        _LIBRARY.define(_schema)
