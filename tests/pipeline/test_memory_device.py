"""The memory on its own device (`PipelineConfig.memory_device`): threaded to every memory tensor,
outputs independent of it, and a session file that does not record it.

Without a GPU the only device is the CPU, so these tests check the plumbing (every stored tensor
is on ``memory_device``, the device reaches every constructor and read), not a second device.
"""

from __future__ import annotations

import json

import pytest
import torch

from mirage.errors import ConfigError
from mirage.memory import LatentSpatialMemory, RGBPointCloudMemory
from mirage.pipeline import LatentDisagreementMasker, PipelineConfig, Session, TinyDepthEstimator

from .test_session import same, start, walk


def memory_tensors(obj, seen=None, path="memory"):
    """(path, tensor) for every tensor an object holds, through lists, dicts and sub-objects."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from memory_tensors(v, seen, f"{path}[{i}]")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from memory_tensors(v, seen, f"{path}[{k!r}]")
    elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("mirage"):
        for k, v in vars(obj).items():
            yield from memory_tensors(v, seen, f"{path}.{k}")


@pytest.mark.parametrize("mode", ["latent", "rgb", "none"])
def test_memory_device_is_threaded_and_outputs_do_not_depend_on_it(backbone, world, mode, monkeypatch):
    built = []
    for cls in (LatentSpatialMemory, RGBPointCloudMemory):
        init = cls.__init__

        def spy(self, *a, _init=init, **kw):
            built.append(kw.get("device"))
            _init(self, *a, **kw)
        monkeypatch.setattr(cls, "__init__", spy)
    _, cams, _ = world
    default = start(backbone, world, mode)
    explicit = start(backbone, world, mode, memory_device="cpu")
    assert default.memory_device == explicit.memory_device == torch.device("cpu")  # the backbone's
    if mode != "none":
        assert built == [torch.device("cpu")] * 2  # each session built its memory on its device
    a, b = walk(default, cams, [8, 8]), walk(explicit, cams, [8, 8])
    for ra, rb in zip(a, b):
        same(ra.frames, rb.frames)
        same(ra.read_mask, rb.read_mask)
    same(default.latents, explicit.latents)
    found = list(memory_tensors(explicit.mode))
    if mode == "none":
        assert explicit.memory is None
    else:
        assert len(found) >= 15  # points, tokens, ids, frame table, covisibility index, far field…
        ta, tb = dict(memory_tensors(default.mode)), dict(found)
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert all(t.device == torch.device("cpu") for _, t in found)
    read, _ = explicit.mode.read_and_references(cams[16:25], 4, (4, 4), backbone, 1, [])
    assert {read.features.device, read.mask.device, read.offset.device} == {explicit.memory_device}


def test_session_file_loads_with_another_memory_device(backbone, world, tmp_path):
    from safetensors import safe_open

    _, cams, _ = world
    session = start(backbone, world, "latent", memory_device="cpu")
    walk(session, cams, [8])
    session.save(tmp_path / "s.safetensors")
    with safe_open(str(tmp_path / "s.safetensors"), "pt") as f:
        config = json.loads(f.metadata()["session"])["config"]
    assert "memory_device" not in config  # where the memory lived is not part of the file
    kw = dict(depth_estimator=TinyDepthEstimator(backbone), masker=LatentDisagreementMasker())
    for device in (None, "cpu"):
        loaded = Session.load(tmp_path / "s.safetensors", backbone, memory_device=device, **kw)
        assert loaded.config.memory_device == device and loaded.memory_device == torch.device("cpu")
        assert all(t.device == loaded.memory_device for _, t in memory_tensors(loaded.mode))
        ta, tb = dict(memory_tensors(session.mode)), dict(memory_tensors(loaded.mode))
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
        same(loaded.step(cams[9:17]).frames, session.step(cams[9:17]).frames)
        session.undo()


def test_memory_device_is_validated():
    assert PipelineConfig(memory_device="cpu").memory_device == "cpu"
    with pytest.raises(ConfigError, match="`memory_device` must be None or a torch device"):
        PipelineConfig(memory_device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            PipelineConfig(memory_device="cuda")


def test_modes_move_cameras_and_inputs_to_their_device():
    """The modes' move helper and the empty read on another device ('meta', a device that only
    tracks shapes: a meta tensor is not a CPU one, so a missed move shows; Cameras check their
    values, so they cannot be meta)."""
    from mirage.geometry import Camera
    from mirage.pipeline.memory_modes import NoMemory, _on

    cam = Camera.from_fov(torch.eye(4)[None], 32, 32, 60.0)
    assert _on(torch.device("cpu"), cam)[0] is cam  # already there: not copied
    moved, kept, none = _on(torch.device("meta"), torch.zeros(2), torch.zeros(2, device="meta"), None)
    assert moved.device.type == "meta" and kept.device.type == "meta" and none is None
    read = NoMemory(4, device="meta").read(Camera.from_fov(torch.eye(4).expand(9, 4, 4), 32, 32, 60.0), 4, (4, 4))
    assert {read.features.device.type, read.mask.device.type, read.offset.device.type} == {"meta"}
