"""The session keeps its work on the backbone's device (docs/design.md §3.10).

Latents, decoded frames, reads, depth, masks and the memory update stay where the backbone made
them; frames reach the host only when they are written out (``PipelineOutput.to``, the
explorer's wire). Without a GPU this is checked two ways: every tensor the session holds is on
its device, and a step asks the host (``.cpu()``, ``.numpy()``, ``.tolist()``, ``.item()``) for
nothing the size of a latent map: only for numbers that scale with the chunk's frames (poses,
sampler times, frame ids). On a machine with CUDA the same session also runs there and must
match the CPU run.
"""

from __future__ import annotations

import pytest
import torch

from mirage.pipeline import LatentDisagreementMasker, PipelineConfig, Session, TinyDepthEstimator

from .host_requests import HostRequests
from .test_memory_device import memory_tensors

SIZE = (128, 128)  # the shipped tiny model: a 32x32 latent grid, 1,024 cells


@pytest.fixture(scope="module")
def scene_path():
    from mirage.cli.starts import scene_start

    return scene_start("room", 3, "pan-return", 33, SIZE, 16.0)


def _session(backbone, start, mode, **config) -> Session:
    config = PipelineConfig(memory_mode=mode, steps=2, progress=False, decode_reads=True, **config)
    return Session(backbone, start.image, start.cameras[[0]], config, depth_estimator=TinyDepthEstimator(backbone),
                   masker=LatentDisagreementMasker(), first_depth=start.depth, first_exclude=start.exclude)


def session_tensors(session):
    """(name, tensor) for every latent, frame and read the session holds."""
    for name in ("_latents", "_video", "_reads", "_read_latents", "_read_masks"):
        for i, t in enumerate(getattr(session, name)):
            yield f"{name}[{i}]", t


def test_the_probe_sees_a_host_request():
    """The check below cannot pass by seeing nothing: a request made under it is counted."""
    probe = HostRequests()
    with probe:
        torch.zeros(2048).cpu()
        torch.zeros(3).tolist()
    assert [k[:2] for k in probe.larger_than(1024)] == [("cpu", 2048)]
    assert sum(probe.calls.values()) == 2


@pytest.mark.parametrize("mode", ["latent", "rgb", "none"])
def test_a_step_asks_the_host_for_nothing_the_size_of_a_latent_map(mode, scene_path):
    from mirage.backbones.tiny import TinyBackbone

    backbone = TinyBackbone.load()
    h, w = SIZE[0] // backbone.spatial_stride, SIZE[1] // backbone.spatial_stride
    session = _session(backbone, scene_path, mode)
    session.step(scene_path.cameras[1:17])  # the first chunk, outside the probe
    probe = HostRequests()
    with probe:
        result = session.step(scene_path.cameras[17:33])
    assert probe.calls, "the probe saw no request at all: it is not active"
    assert probe.larger_than(h * w - 1) == [], f"a step moved a latent-map-sized tensor to the host ({h}x{w} cells)"
    # what it holds and hands back is on its device
    assert session.device == torch.device("cpu") == session.memory_device
    assert all(t.device == session.device for _, t in session_tensors(session))
    assert {result.frames.device, result.read_frames.device, result.read_mask.device} == {session.device}


def test_outputs_move_to_the_host_for_writing(backbone, world):
    from .test_session import start, walk

    _, cams, _ = world
    session = start(backbone, world, "latent", decode_reads=True)
    walk(session, cams, [8])
    out = session.output()
    moved = out.to("cpu")
    for name in ("video", "latents", "memory_reads", "read_latents", "read_mask"):
        assert torch.equal(getattr(moved, name), getattr(out, name))
    assert moved.memory is out.memory and moved.timings == out.timings


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the GPU check (benchmarks/gpu_check.py) runs it")
@pytest.mark.parametrize("mode", ["latent", "rgb"])
def test_a_cuda_session_keeps_everything_there_and_matches_the_cpu(mode, scene_path, tmp_path):
    from mirage.backbones.tiny import TinyBackbone

    runs = {}
    for device in ("cpu", "cuda"):
        backbone = TinyBackbone.load(device=device)
        session = _session(backbone, scene_path, mode)
        for a, b in ((1, 17), (17, 33)):
            session.step(scene_path.cameras[a:b])
        assert session.device.type == session.memory_device.type == device
        assert all(t.device.type == device for _, t in session_tensors(session))
        assert all(t.device.type == device for _, t in memory_tensors(session.mode))
        session.save(tmp_path / f"{device}.safetensors")
        runs[device] = session.output().to("cpu")
    torch.testing.assert_close(runs["cuda"].video, runs["cpu"].video, atol=0.05, rtol=0)
    loaded = Session.load(tmp_path / "cuda.safetensors", TinyBackbone.load(), depth_estimator=TinyDepthEstimator(
        TinyBackbone.load()), masker=LatentDisagreementMasker())  # a GPU session continues on the CPU
    assert all(t.device.type == "cpu" for _, t in session_tensors(loaded))
