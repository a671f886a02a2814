"""Wan2.2 keeps a chunk on its device: encode, decode, sample, the control input and the depth
network return tensors there; a session over it creates no tensor without a device, and a step
asks the host for nothing the size of a latent map (the probes of
``tests/pipeline/device_probes.py``; docs/design.md §3.10)."""

from __future__ import annotations

import pytest
import torch

from mirage.pipeline import LatentDisagreementMasker, PipelineConfig, Session, TinyDepthEstimator
from tests.pipeline.device_probes import BareFactoriesOnMeta, HostRequests

from .conftest import load_tiny
from .test_sample import make_cond

SIZE = (128, 256)  # an 8x16 latent grid: 128 cells


@pytest.mark.parametrize("sampler", ["unipc", "few-step"])
@pytest.mark.parametrize("mode", ["latent", "rgb"])
def test_a_wan_step_stays_on_the_backbone_device(tiny_dir, sampler, mode):
    from mirage.cli.starts import scene_start

    backbone = load_tiny(tiny_dir, height=SIZE[0], width=SIZE[1], sampler=sampler, max_frames=9)
    start = scene_start("room", 3, "pan-return", 17, SIZE, 16.0)
    config = PipelineConfig(memory_mode=mode, steps=2, progress=False, decode_reads=True, memory_input="both")
    backbone.estimate_depth(start.image[None])  # loads its depth net: modules are built on the host, then moved
    bare = BareFactoriesOnMeta()
    with bare:
        session = Session(backbone, start.image, start.cameras[[0]], config,
                          depth_estimator=TinyDepthEstimator(backbone), masker=LatentDisagreementMasker(),
                          first_depth=start.depth, first_exclude=start.exclude)
        session.step(start.cameras[1:9])
    assert not bare.created, f"tensors created without a device: {bare.created}"
    probe = HostRequests()
    with probe:
        result = session.step(start.cameras[9:17])
    assert probe.calls, "the probe saw no request at all: it is not active"
    cells = (SIZE[0] // 16) * (SIZE[1] // 16)
    assert probe.larger_than(cells - 1) == []
    assert {result.frames.device, result.read_frames.device, session.latents.device} == {backbone.device}


def test_the_protocol_returns_on_the_backbone_device(tiny_dir):
    backbone = load_tiny(tiny_dir, height=64, width=64, max_frames=9)
    video = torch.rand(1, 3, 5, 64, 64) * 2 - 1
    z = backbone.encode(video)
    assert z.device == backbone.device and backbone.decode(z).device == backbone.device
    depth, valid = backbone.estimate_depth(video[0].permute(1, 0, 2, 3))
    assert depth.device == valid.device == backbone.device
    inputs = backbone.assemble(make_cond(n=2))  # its layout: test_sample.test_assemble_layout_and_control
    assert inputs.latents.device == inputs.control.device == backbone.device
