"""Test-wide settings and fixtures."""

import socket

import pytest
import torch

# The tests run tiny models: one intra-op thread avoids oversubscription, which makes tiny ops tens of times slower.
torch.set_num_threads(1)


@pytest.fixture
def postgres() -> str:
    """The URL of the test PostgreSQL server (trust auth, database ``test``); skips where none is reachable."""
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
    except OSError:
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432 (trust auth, database test)")
    return "postgresql://postgres@127.0.0.1:5432/test"
