"""Fixtures shared by the NOVA test files (imported by name into each module)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from studio_nova.models.tiny import init_tiny  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Toy-size convolutions run far faster on one thread than on two contended ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny seeded NOVA base + adapter in the real on-disk formats."""
    return init_tiny(tmp_path_factory.mktemp("nova-tiny"), seed=0)
