"""Test-wide settings and fixtures."""

import itertools
import os
import socket
from collections.abc import Callable

import pytest
import torch

# The tests run tiny models: one intra-op thread avoids oversubscription, which makes tiny ops tens of times slower.
torch.set_num_threads(1)

# The files whose tests take longest (workers in processes of their own, VBench's networks) start first, so that the
# test workers (pytest-xdist, one file each at a time) end together rather than one waiting on the last long file.
LONGEST_FIRST = ("test_distributed.py", "test_objectives_vbench_torchvision.py", "test_sweep_results.py",
                 "test_bad_input.py", "test_decision_world.py", "test_sweep_cli.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


@pytest.fixture
def postgres() -> str:
    """The URL of the test PostgreSQL server (trust auth, database ``test``).

    Where none is reachable the test is skipped, unless ``VBOOST_REQUIRE_POSTGRES=1`` (CI sets it): then it fails.
    """
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
    except OSError:
        message = "no PostgreSQL server on 127.0.0.1:5432 (trust auth, database test)"
        if os.environ.get("VBOOST_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{message}, and VBOOST_REQUIRE_POSTGRES=1 requires one")
        pytest.skip(message)
    return "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def same_weights() -> Callable:
    """``check(loaded_pipe, original_pipe)``: the pipeline loaded from disk holds exactly the original's weights.

    Tensors read from a safetensors file can sit at 8-byte offsets, where CPU kernels take other SIMD paths and round
    differently (about 1e-7); the check then copies them to fresh, aligned memory, after which the loaded pipeline must
    generate bit-identically to the original.
    """

    def check(loaded_pipe, original_pipe) -> None:
        for name, original in original_pipe.components.items():
            if not isinstance(original, torch.nn.Module):
                continue
            loaded = loaded_pipe.components[name]
            expected, got = original.state_dict(), loaded.state_dict()
            assert got.keys() == expected.keys(), name
            assert [k for k in expected if not torch.equal(got[k], expected[k])] == [], name
            for tensor in itertools.chain(loaded.parameters(), loaded.buffers()):
                tensor.data = tensor.data.clone()

    return check
