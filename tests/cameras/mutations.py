"""Seeded mutations of camera files: raw bytes (flips, deletions, insertions, truncation) and
structure (a value swapped for one of another type or size, a key deleted, deep nesting)."""

from __future__ import annotations

import copy
import io
import json
import random
import zipfile

import numpy as np

NEST = "@@NEST@@"  # placeholders: json.dumps itself cannot write these
HUGE = "@@HUGE@@"
SWAPS = [None, True, False, 0, -1, 1, 2, 3, 64, 64.5, -0.5, 1e-300, 1e308, 10**400, float("nan"), float("inf"),
         -float("inf"), "x", "", "64", "1e3", [], {}, [1, 2], [[1, 0], [0, 1]], [[0.0] * 4] * 4, {"a": 1},
         NEST, HUGE, "mirage-trajectory", "OPENCV", "FISHEYE", 2**64, -(2**63), list(range(300))]
TEXT_BYTES = b'0123456789{}[]",:-.eE ntfaslrux\\\n'


def mutate_bytes(data: bytes, rng: random.Random, alphabet: bytes = TEXT_BYTES) -> bytes:
    """1-4 byte flips, deletions or insertions, or a truncation."""
    data = bytearray(data)
    if rng.random() < 0.15:
        return bytes(data[:rng.randrange(len(data))])
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(max(len(data), 1))
        op = rng.random()
        if op < 0.3 and data:
            data[i] = rng.choice(alphabet)
        elif op < 0.45 and data:
            data[i] = rng.randrange(256)
        elif op < 0.7 and data:
            del data[i]
        else:
            data.insert(i, rng.choice(alphabet))
    return bytes(data)


def _paths(doc, prefix=()):
    """Every (path, value) in a JSON document, containers first."""
    yield prefix, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


def mutate_json(doc, rng: random.Random) -> bytes:
    """One structural change to a JSON document (1-3 places), or raw byte changes to its text."""
    if rng.random() < 0.3:
        return mutate_bytes(json.dumps(doc).encode(), rng)
    doc = json.loads(json.dumps(doc))
    for _ in range(rng.randint(1, 3)):
        paths = [p for p, _ in _paths(doc) if p]
        path = rng.choice(paths)
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        key, op = path[-1], rng.random()
        if op < 0.15:
            del parent[key]
        elif op < 0.25:
            parent[key] = [parent[key]]
        elif op < 0.3 and isinstance(parent, dict):
            parent[rng.choice(["fl_y", "camera_angle_y", "k1", "chunks", "cx", "h", "w", "camera_model"])] = \
                copy.deepcopy(rng.choice(SWAPS))
        else:
            parent[key] = copy.deepcopy(rng.choice(SWAPS))
    text = json.dumps(doc)
    return text.replace(json.dumps(NEST), "[" * 5000 + "]" * 5000).replace(json.dumps(HUGE), "7" * 5000).encode()


RE10K_TOKENS = ["nan", "inf", "-inf", "1e999", "-0", "0", "x", "1" * 5000, "", "1.5", "-3", "9" * 25, "0x10",
                "1_000", "١", "+5"]


def mutate_lines(text: str, rng: random.Random) -> bytes:
    """RealEstate10K-like text: tokens swapped, dropped or added, lines dropped or repeated, or bytes."""
    if rng.random() < 0.3:
        return mutate_bytes(text.encode(), rng, b"0123456789.-e nax\n")
    lines = text.splitlines()
    for _ in range(rng.randint(1, 3)):
        n = rng.randrange(len(lines))
        cols = lines[n].split(" ")
        op = rng.random()
        if op < 0.5:
            cols[rng.randrange(len(cols))] = rng.choice(RE10K_TOKENS)
        elif op < 0.6:
            del cols[rng.randrange(len(cols))]
        elif op < 0.7:
            cols.insert(rng.randrange(len(cols) + 1), rng.choice(RE10K_TOKENS))
        elif op < 0.8:
            lines.insert(n, lines[n])
            continue
        elif op < 0.9 and len(lines) > 1:
            del lines[n]
            continue
        lines[n] = " ".join(cols)
    return ("\n".join(lines) + "\n").encode()


def geometry_npz_bytes(frames: int = 3, height: int = 4, width: int = 6) -> bytes:
    """A small valid geometry.npz (uncompressed, as we write it)."""
    from mirage.cameras import save_geometry_npz
    from mirage.geometry import Camera

    import tempfile
    from pathlib import Path

    import torch

    pose = torch.eye(4).repeat(frames, 1, 1)
    pose[:, 0, 3] = torch.arange(frames, dtype=torch.float32)
    cams = Camera.from_fov(pose, height, width, 60.0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.npz"
        save_geometry_npz(path, np.zeros((frames, height, width, 3), np.uint8), np.ones((frames, height, width)), cams,
                          masks=np.zeros((frames, height, width), bool), times=np.arange(frames, dtype=np.float64))
        return path.read_bytes()


def with_member_header(data: bytes, key: str, shape: str | None = None, descr: str | None = None) -> bytes:
    """The archive with member ``key``'s .npy header rewritten (its ``shape`` or ``descr`` text)."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename == f"{key}.npy":
                n = int.from_bytes(body[8:10], "little")
                header = body[10:10 + n].decode("latin1")
                head = eval(header)  # our own test file's dict literal  # noqa: S307
                if shape is not None:
                    head["shape"] = shape
                if descr is not None:
                    head["descr"] = descr
                text = "{'descr': %r, 'fortran_order': %r, 'shape': %s, }" % (
                    head["descr"], head["fortran_order"], head["shape"] if isinstance(head["shape"], str) else
                    repr(tuple(head["shape"])))
                text = text.ljust((len(text) + 11) // 64 * 64 + 63 - 10) + "\n"
                body = body[:8] + len(text).to_bytes(2, "little") + text.encode("latin1") + body[10 + n:]
            dst.writestr(info.filename, body)
    return out.getvalue()


NPY_SHAPES = ["(3, 4, 6)", "(3, 4, 6, 3)", "()", "(0,)", "(3,)", "(1000000, 10000, 10000)", "(2**62,)", "(-1, 4)",
              "(3, 3, 3)", "(3, 4, 4)", "(1, 4, 6, 3)", "'x'", "(3, 4.5, 6)", "None"]
NPY_DESCRS = ["|u1", "<f4", "<f8", "|b1", "<i4", "|O", "<c16", ">f4", "|V8", "<U3", "|S2", "x"]


def mutate_npz(data: bytes, rng: random.Random) -> bytes:
    """A geometry.npz with raw byte changes, or one member's header changed (shape or dtype)."""
    if rng.random() < 0.5:
        return mutate_bytes(data, rng, bytes(range(256)))
    key = rng.choice(["frames", "depths", "intrinsics", "poses_c2w", "masks", "times"])
    if rng.random() < 0.5:
        return with_member_header(data, key, shape=rng.choice(NPY_SHAPES))
    return with_member_header(data, key, descr=rng.choice(NPY_DESCRS))
