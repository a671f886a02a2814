"""Our trajectory JSON: the one reader and writer.

``{"format": "mirage-trajectory", "version": 1, "height": H, "width": W, "fps": f | null,
"frames": [{"K": 3x3, "cam2world": 4x4}, ...]}``, in our own conventions (OpenCV axes, pixel
intrinsics for (H, W) with pixel centres at integers), so nothing is converted.

Version 2 adds ``"chunks": [{"frames": n, "seed": s | null}, ...]``: how a session cut the walk
(n new frames per chunk, summing to F − 1) and the seed each chunk re-seeded its sampling with, so
that ``mirage generate`` replays it frame for frame. A file without chunks is written as
version 1, so older readers still read it; a reader of version 1 would ignore chunks, hence the
new version when they are present.

``height`` and ``width`` are JSON integers ≥ 1 (not ``true``, ``"64"`` or ``64.5``); ``fps`` is
``null`` or a finite number > 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mirage.cameras.fields import MAX_SIDE, describe, integer, mapping, matrix, number, read_json
from mirage.errors import ConfigError, FileFormatError, MirageError
from mirage.files import atomic_path
from mirage.geometry import Camera

__all__ = ["TRAJECTORY_FORMAT", "TRAJECTORY_VERSIONS", "save_trajectory_json", "load_trajectory_json",
           "load_trajectory_chunks", "read_trajectory_json", "is_trajectory_json", "check_chunks"]

TRAJECTORY_FORMAT = "mirage-trajectory"
TRAJECTORY_FORMAT_VERSION = 2  # 2 added "chunks"; files without chunks are still written as 1
TRAJECTORY_VERSIONS = (1, 2)


def is_trajectory_json(data) -> bool:
    """True when a parsed JSON document says it is our trajectory format."""
    return isinstance(data, dict) and data.get("format") == TRAJECTORY_FORMAT


def save_trajectory_json(path, cameras: Camera, fps: float | None = None,
                         chunks: list[dict] | None = None) -> None:
    """Write cameras as our trajectory JSON, with the session's ``chunks`` ([{"frames": n,
    "seed": int | None}], summing to F − 1) when given."""
    data = {
        "format": TRAJECTORY_FORMAT,
        "version": 1 if chunks is None else TRAJECTORY_FORMAT_VERSION,
        "height": cameras.height,
        "width": cameras.width,
        "fps": fps,
        "frames": [
            {"K": K.tolist(), "cam2world": c2w.tolist()}
            for K, c2w in zip(cameras.K.double(), cameras.cam2world.double())
        ],
    }
    if chunks is not None:
        data["chunks"] = check_chunks(chunks, len(cameras), "save_trajectory_json", ConfigError)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1))


def check_chunks(value, frames: int, where: str, error=FileFormatError) -> list[dict]:
    """``value`` checked as a chunks list for ``frames`` cameras: [{"frames": int ≥ 1, "seed":
    int in [0, 2**64 − 1] | None}] whose frames sum to ``frames − 1``. (Which sizes a backbone
    accepts is the pipeline's check.)"""
    try:
        if not isinstance(value, list) or not value:
            raise FileFormatError(f"{where}: `chunks` must be a non-empty list of {{\"frames\": n, \"seed\": s | null}}")
        out = []
        for i, c in enumerate(value):
            c = mapping(c, f"chunks[{i}]", where)
            if set(c) != {"frames", "seed"}:
                raise FileFormatError(f"{where}: `chunks[{i}]` must have the keys \"frames\" and \"seed\" but has "
                                      f"{sorted(c)[:4]}")
            n = integer(c["frames"], f"chunks[{i}].frames", where, 1)
            seed = None if c["seed"] is None else integer(c["seed"], f"chunks[{i}].seed", where, 0, 2**64 - 1)
            out.append({"frames": n, "seed": seed})
        total = sum(c["frames"] for c in out)
        if total != frames - 1:
            raise FileFormatError(f"{where}: `chunks` must add up to {frames - 1} new frames (the {frames} frames "
                                  f"less the first) but add up to {total}")
    except FileFormatError as err:
        if error is FileFormatError:
            raise
        raise error(str(err)) from None
    return out


def read_trajectory_json(path, data=None) -> tuple[Camera, list[dict] | None, float | None]:
    """The cameras, chunks (or None) and fps (or None) of our trajectory JSON at ``path``
    (``data``: the parsed document, when the caller has read it already)."""
    where = str(path)
    if data is None:
        data = read_json(path, "trajectory file")
    if not is_trajectory_json(data):
        raise FileFormatError(f"{where}: expected an object with \"format\": \"{TRAJECTORY_FORMAT}\"")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version not in TRAJECTORY_VERSIONS:
        raise FileFormatError(f"{where}: `version` must be one of {TRAJECTORY_VERSIONS} but is {describe(version)}")
    for key in ("height", "width"):
        if key not in data:
            raise FileFormatError(f"{where}: the header lacks `{key}`")
    height = integer(data["height"], "height", where, 1, MAX_SIDE)
    width = integer(data["width"], "width", where, 1, MAX_SIDE)
    fps = data.get("fps")
    fps = None if fps is None else number(fps, "fps", where, positive=True)
    frames = data.get("frames")
    if not isinstance(frames, list) or not frames:
        raise FileFormatError(f"{where}: `frames` must be a non-empty list")
    Ks, c2ws = [], []
    for i, frame in enumerate(frames):
        frame = mapping(frame, f"frames[{i}]", where)
        for key, shape in (("K", (3, 3)), ("cam2world", (4, 4))):
            if key not in frame:
                raise FileFormatError(f"{where}: `frames[{i}]` lacks `{key}`")
        Ks.append(torch.from_numpy(matrix(frame["K"], (3, 3), f"frames[{i}].K", where)))
        c2ws.append(torch.from_numpy(matrix(frame["cam2world"], (4, 4), f"frames[{i}].cam2world", where)))
    try:
        cameras = Camera(torch.stack(Ks).to(torch.float32), torch.stack(c2ws).to(torch.float32), height, width)
    except MirageError as err:
        raise FileFormatError(f"{where}: {err}") from None
    chunks = data.get("chunks")
    if chunks is not None and version < 2:
        raise FileFormatError(f"{where}: `chunks` need `version` 2 but the file is version {version}")
    return cameras, None if chunks is None else check_chunks(chunks, len(cameras), where), fps


def load_trajectory_json(path) -> Camera:
    """The cameras of our trajectory JSON (any version; see :func:`load_trajectory_chunks`)."""
    return read_trajectory_json(path)[0]


def load_trajectory_chunks(path) -> list[dict] | None:
    """The ``chunks`` of our trajectory JSON ([{"frames": n, "seed": int | None}]), or None
    when it has none (version 1, or a version-2 file without them)."""
    return read_trajectory_json(Path(path))[1]
