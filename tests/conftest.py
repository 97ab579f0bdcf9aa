"""Fixtures shared by several test files."""

from __future__ import annotations

import pytest


@pytest.fixture
def restore_torch_threads():
    """``train`` sets torch's thread count process-wide; leave other tests theirs."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
