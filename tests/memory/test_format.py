"""The memory file: round trips, older versions, and a loader that refuses every malformed file
with MemoryFormatError (thousands of seeded mutations of a real file's header)."""

import json
import random
import struct

import pytest
import torch

from mirage.bench.box_room import BoxRoom, pan_path
from mirage.errors import MemoryFormatError
from mirage.files import save_safetensors
from mirage.memory import LatentSpatialMemory, RGBPointCloudMemory
from mirage.memory.format import load_memory, memory_from_tensors, memory_to_tensors

ROOM = BoxRoom()


def _memory(fusion="voxel") -> LatentSpatialMemory:
    cams = pan_path(9, 32, 64, degrees=120.0, passes=2)
    images = torch.rand(9, 3, 32, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mem = LatentSpatialMemory(3, fusion=fusion)
    for a in (0, 4):
        ids = list(range(a, a + 5))
        mem.write(torch.randn(5, 3, 4, 8), ROOM.depth(cams[ids]), cams[ids], frame_ids=ids,
                  confidence=1.0 if a == 0 else 0.5, images=images[ids])
    return mem


@pytest.mark.parametrize("fusion", ["voxel", "append"])
def test_round_trip_keeps_everything(tmp_path, fusion):
    mem = _memory(fusion)
    mem.save(tmp_path / "m.safetensors")
    back = LatentSpatialMemory.load(tmp_path / "m.safetensors")
    for name in ("points", "features", "frame_ids", "uids", "confidences", "colors", "table_ids",
                 "table_K", "table_cam2world"):
        assert torch.equal(getattr(mem, name), getattr(back, name)), name
    assert back.next_uid == mem.next_uid and back.grid_hw == mem.grid_hw
    assert back.colors.dtype == torch.uint8 and len(set(map(tuple, back.colors.tolist()))) > 10
    target = pan_path(3, 32, 64, degrees=50.0)
    assert back.retrieve_references(target, k=5) == mem.retrieve_references(target, k=5)
    # in-memory embedding (a session file holds a memory among other tensors)
    tensors, metadata = memory_to_tensors(mem)
    again = memory_from_tensors(dict(tensors), dict(metadata))
    assert type(again) is LatentSpatialMemory and torch.equal(again.points, mem.points)
    # the kind in the file picks the class when none is asked for
    assert type(load_memory(tmp_path / "m.safetensors")) is LatentSpatialMemory


def test_version_2_files_load_grey_and_rebuild_the_index(tmp_path):
    mem = _memory()
    tensors, metadata = memory_to_tensors(mem)
    for name in ("colors", "table_confidence", "index_keys", "index_slots", "slot_frame", "slot_size",
                 "slot_live"):
        del tensors[name]
    config = json.loads(metadata["config"])
    del config["reference_voxel"]
    save_safetensors(tmp_path / "v2.safetensors", tensors,
                     {**metadata, "version": "2", "config": json.dumps(config)})
    old = LatentSpatialMemory.load(tmp_path / "v2.safetensors")
    assert bool((old.colors == 128).all()) and old.num_points == mem.num_points
    # the rebuilt sets are what each frame sees in the loaded memory: the last chunk's frames
    # see what they saw after their write, so a target there retrieves the same frames first
    target = pan_path(9, 32, 64, degrees=120.0, passes=2)[[6]]
    assert old.retrieve_references(target, k=1) == mem.retrieve_references(target, k=1)


def test_tampered_values_are_refused(tmp_path):
    mem = _memory()
    tensors, metadata = memory_to_tensors(mem)

    def refused(match, **changes):
        bad = {k: v.clone() for k, v in tensors.items()}
        meta = dict(metadata)
        for name, fn in changes.items():
            if name == "config":
                meta["config"] = json.dumps(fn(json.loads(meta["config"])))
            else:
                bad[name] = fn(bad[name])
        with pytest.raises(MemoryFormatError, match=match):
            memory_from_tensors(bad, meta)

    def set_(index, value):
        def fn(t):
            t[index] = value
            return t
        return fn

    refused("NaN", points=set_(0, float("nan")))
    refused("NaN", features=set_(3, float("inf")))
    refused("frame id", frame_ids=set_(0, 999))
    refused("uids", uids=lambda t: set_(1, int(t[0]))(t))
    refused("uids", config=lambda c: c | {"next_uid": 1})
    refused("poses", table_cam2world=set_((0, 3, 0), 1.0))
    refused("'points' is", points=lambda t: t[:, :2].contiguous())
    refused("'colors' is", colors=lambda t: t.float())
    refused("sorted", index_keys=lambda t: t.flip(0))
    refused("dtype", config=lambda c: c | {"dtype": "Tensor"})  # never looked up on torch
    refused("channels", config=lambda c: c | {"channels": "3"})
    refused("grid", config=lambda c: c | {"grid_hw": None})
    with pytest.raises(MemoryFormatError, match="unexpected"):
        memory_from_tensors(tensors | {"extra": torch.zeros(1)}, metadata)
    with pytest.raises(MemoryFormatError, match="'latent' memory"):
        memory_from_tensors(tensors, metadata, RGBPointCloudMemory)


def _mutate(header: bytes, rng: random.Random) -> bytes:
    """One random change to a safetensors JSON header: raw bytes, or a value in its JSON."""
    if rng.random() < 0.5:
        data = bytearray(header)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(data))
            op = rng.random()
            if op < 0.4:
                data[i] = rng.choice(b'0123456789{}[]",:-.eE ntfaslrux\\')
            elif op < 0.7:
                del data[i]
            else:
                data.insert(i, rng.choice(b'0123456789",:-{}[] '))
        return bytes(data)
    doc = json.loads(header)
    values = [None, -1, 0, 1, 2, 3, 7, 2 ** 40, -0.5, 1e308, float("nan"), "x", "", [], {}, [1, 2],
              [0, 0], "float32", "bfloat16", "F16", "I64", "U8", "BOOL", True, "latent", "rgb", "3"]
    key = rng.choice(sorted(doc))
    if key == "__metadata__":
        meta = doc[key]
        name = rng.choice(sorted(meta))
        if name == "config" and rng.random() < 0.8:
            config = json.loads(meta["config"])
            field = rng.choice(sorted(config) + ["new"])
            if rng.random() < 0.2:
                config.pop(field, None)
            else:
                config[field] = rng.choice(values)
            meta["config"] = json.dumps(config)
        else:
            meta[name] = json.dumps(rng.choice(values)) if rng.random() < 0.5 else str(rng.choice(values))
    else:
        entry = doc[key]
        field = rng.choice(["dtype", "shape", "data_offsets"])
        entry[field] = rng.choice(values)
    return json.dumps(doc).encode()


def test_loader_refuses_thousands_of_mutated_headers_with_memory_format_errors(tmp_path):
    mem = _memory()
    mem.save(tmp_path / "good.safetensors")
    data = (tmp_path / "good.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header, body = data[8:8 + n], data[8 + n:]
    rng = random.Random(1234)
    target = pan_path(2, 32, 64, degrees=30.0)
    outcomes = {"loaded": 0, "refused": 0}
    path = tmp_path / "mutant.safetensors"
    for _ in range(3000):
        mutated = _mutate(header, rng)
        path.write_bytes(struct.pack("<Q", len(mutated)) + mutated + body)
        try:
            loaded = LatentSpatialMemory.load(path)
        except MemoryFormatError:
            outcomes["refused"] += 1
            continue
        outcomes["loaded"] += 1
        loaded.read(target, (4, 8))  # what loads is a usable memory
        loaded.retrieve_references(target, k=2)
    print(outcomes)
    assert outcomes["refused"] > 2000 and outcomes["loaded"] > 10  # both outcomes exercised
