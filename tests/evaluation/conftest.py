"""The tiny random backbones of ``tests/backbones/conftest.py``, shared here; one torch thread
per test (as `mirage eval` runs: tiny models gain nothing from more, and lose a lot to a busy CPU)."""

import pytest
import torch

from tests.backbones.conftest import SMALL, backbone, small_backbone  # noqa: F401


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
