"""Compact tokens: the memory in float16 / bfloat16, its bytes, its file, and older files."""

import json

import pytest
import torch

from mirage.bench.box_room import BoxRoom, pan_path
from mirage.files import save_safetensors
from mirage.memory import LatentSpatialMemory
from mirage.memory.format import memory_to_tensors

ROOM = BoxRoom()


def _sky_memory(dtype):
    cams = pan_path(9, 32, 64, degrees=150.0)
    depth = ROOM.depth(cams)
    depth[:, :8] = float("inf")  # the top quarter is sky
    latents = torch.randn(9, 4, 8, 16, generator=torch.Generator().manual_seed(0))
    mem = LatentSpatialMemory(4, far_field=True, dtype=dtype)
    mem.write(latents, depth, cams)
    return mem, cams


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_compact_tokens_halve_the_feature_bytes_and_read_back_rounded(dtype, tmp_path):
    full, cams = _sky_memory(torch.float32)
    half, _ = _sky_memory(dtype)
    assert half.num_points == full.num_points and half.far.num_written == full.far.num_written
    assert half.features.dtype == dtype and half.points.dtype == torch.float32
    saved = (full.num_points + full.far.num_written) * 4 * 2  # C = 4 channels, 2 bytes each saved
    assert full.nbytes - half.nbytes == saved
    a, b = full.read(cams, (8, 16)), half.read(cams, (8, 16))
    assert b.features.dtype == dtype
    assert torch.equal(a.mask, b.mask) and torch.equal(a.depth, b.depth)
    assert torch.equal(a.features.to(dtype), b.features)  # the same tokens, rounded once
    half.save(tmp_path / "m.safetensors")
    back = LatentSpatialMemory.load(tmp_path / "m.safetensors")
    assert back.dtype == dtype and torch.equal(back.read(cams, (8, 16)).features, b.features)


def test_version_3_files_with_a_dense_far_field_still_load(tmp_path):
    mem, cams = _sky_memory(torch.float16)
    tensors, metadata = memory_to_tensors(mem)
    # the layout of version 3: every map cell with a `far_written` mask, int64 ids and slots
    n, cells = 6 * mem.far.resolution ** 2, tensors.pop("far_cells")
    for name in ("far_features", "far_directions", "far_confidences", "far_frame_ids", "far_colors"):
        dense = torch.zeros(n, *tensors[name].shape[1:], dtype=tensors[name].dtype)
        dense[cells] = tensors[name]
        tensors[name] = dense
    tensors["far_frame_ids"] = tensors["far_frame_ids"].long()
    tensors["far_written"] = torch.zeros(n, dtype=torch.bool).index_fill_(0, cells, True)
    tensors["frame_ids"], tensors["index_slots"] = tensors["frame_ids"].long(), tensors["index_slots"].long()
    config = json.loads(metadata["config"])
    del config["block_size"]
    save_safetensors(tmp_path / "v3.safetensors", tensors, {**metadata, "version": "3", "config": json.dumps(config)})
    old = LatentSpatialMemory.load(tmp_path / "v3.safetensors")
    assert old.dtype == torch.float16 and old.far.num_written == mem.far.num_written
    for x, y in zip(old.read(cams, (8, 16)), mem.read(cams, (8, 16))):
        assert x is None or torch.equal(x, y)
