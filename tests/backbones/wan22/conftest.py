"""A tiny random Wan2.2-layout directory (saved with save_pretrained), shared by the wan22 tests."""

from __future__ import annotations

import warnings

import pytest
import torch

pytest.importorskip("diffusers")


@pytest.fixture(autouse=True)
def one_thread():
    """The tiny Wan tensors are far too small for intra-op threads; on a shared 2-core machine
    extra threads only contend (measured: the 3-mode CLI run takes 5 s with 1 thread and 27 s
    with 2 under load). Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    from mirage.backbones.wan22.testing import save_tiny_wan

    return save_tiny_wan(tmp_path_factory.mktemp("wan") / "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_text_dir(tmp_path_factory):
    from mirage.backbones.wan22.testing import save_tiny_wan

    return save_tiny_wan(tmp_path_factory.mktemp("wan") / "tiny_text", seed=1, text_encoder=True)


def load_tiny(path, **options):
    from mirage.backbones.wan22 import load_wan22

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_wan22(path, device="cpu", **options)


def randomise_branch(transformer, seed: int = 0, std: float = 0.05) -> None:
    """Give the zero-init branch outputs nonzero weights, so the control input matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in transformer.vace_blocks:
            block.proj_out.weight.copy_(torch.randn(block.proj_out.weight.shape, generator=gen) * std)
