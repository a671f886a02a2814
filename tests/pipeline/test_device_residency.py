"""The session keeps its work on the backbone's device (docs/design.md §3.10).

Latents, decoded frames, reads, depth, masks and the memory update stay where the backbone made
them; frames reach the host only when they are written out (``PipelineOutput.to``, the
explorer's wire). Without a GPU this is checked with the probes of ``device_probes``: every
tensor the session holds is on its device; a step asks the host for nothing the size of a latent
map (only for numbers that grow with the chunk's frames: poses, sampler times, frame ids); and a
whole session (start, steps, undo, save, load) runs with every tensor that mirage creates
without a device put on another device ("meta"), so none of them can meet a tensor of the
session's device. On a machine with CUDA the same session also runs there and must match the
CPU run.
"""

from __future__ import annotations

import pytest
import torch

from mirage.pipeline import LatentDisagreementMasker, PipelineConfig, Session, TinyDepthEstimator

from .device_probes import BareFactoriesOnMeta, HostRequests
from .test_memory_device import memory_tensors

SIZE = (128, 128)  # the shipped tiny model: a 32x32 latent grid, 1,024 cells


@pytest.fixture(scope="module")
def scene_path():
    from mirage.cli.starts import scene_start

    return scene_start("room", 3, "pan-return", 33, SIZE, 16.0)


@pytest.fixture(scope="module")
def tiny():
    from mirage.backbones.tiny import TinyBackbone

    return TinyBackbone.load()


def _session(backbone, start, mode, depth="tiny", **config) -> Session:
    from mirage.world.oracle import OracleRelativeDepthEstimator

    config = PipelineConfig(memory_mode=mode, steps=2, progress=False, decode_reads=True, **config)
    relative = depth == "oracle-relative"
    estimator = OracleRelativeDepthEstimator(start.scene, 16.0) if relative else TinyDepthEstimator(backbone)
    return Session(backbone, start.image, start.cameras[[0]], config, depth_estimator=estimator,
                   masker=LatentDisagreementMasker(), first_depth=None if relative else start.depth,
                   first_exclude=start.exclude)


def session_tensors(session):
    """(name, tensor) for every latent, frame and read the session holds."""
    for name in ("_latents", "_video", "_reads", "_read_latents", "_read_masks"):
        for i, t in enumerate(getattr(session, name)):
            yield f"{name}[{i}]", t


def test_the_probes_see_what_they_look_for():
    """Neither check below can pass by seeing nothing."""
    requests = HostRequests()
    with requests:
        torch.zeros(2048).cpu()
        torch.zeros(3).tolist()
    assert [k[:2] for k in requests.larger_than(1024)] == [("cpu", 2048)] and sum(requests.calls.values()) == 2
    bare = BareFactoriesOnMeta(scope=("/tests/pipeline/",))
    with bare, pytest.raises((RuntimeError, NotImplementedError)):
        torch.zeros(3) + torch.ones(3, device="cpu")  # a tensor made without a device meets a real one
    host = torch.ones(2, device="cpu")
    with bare:
        assert torch.as_tensor(host).device.type == "cpu" and torch.ones(2, device="cpu").device.type == "cpu"
    assert sum(bare.created.values()) == 1


@pytest.mark.parametrize("mode", ["latent", "rgb", "none"])
def test_a_step_asks_the_host_for_nothing_the_size_of_a_latent_map(mode, tiny, scene_path):
    h, w = SIZE[0] // tiny.spatial_stride, SIZE[1] // tiny.spatial_stride
    session = _session(tiny, scene_path, mode)
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


@pytest.mark.parametrize("mode,depth", [("latent", "tiny"), ("rgb", "tiny"), ("none", "tiny"),
                                        ("latent", "oracle-relative"), ("rgb", "oracle-relative")])
def test_a_session_creates_no_tensor_without_its_device(mode, depth, tiny, scene_path, tmp_path):
    probe = BareFactoriesOnMeta()
    with probe:
        session = _session(tiny, scene_path, mode, depth)
        session.step(scene_path.cameras[1:17])
        session.step(scene_path.cameras[17:33])
        session.undo()
        session.save(tmp_path / "s.safetensors")
        loaded = Session.load(tmp_path / "s.safetensors", tiny, depth_estimator=session.depth_estimator,
                              masker=session.masker)
        loaded.step(scene_path.cameras[17:33])
    assert not probe.created, f"tensors created without a device (moved to meta without failing): {probe.created}"
    assert loaded.num_frames == 33


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
    cpu = TinyBackbone.load()
    loaded = Session.load(tmp_path / "cuda.safetensors", cpu, depth_estimator=TinyDepthEstimator(cpu),
                          masker=LatentDisagreementMasker())  # a GPU session continues on the CPU
    assert all(t.device.type == "cpu" for _, t in session_tensors(loaded))
