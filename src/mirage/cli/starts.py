"""What a CLI run starts from when the world is involved: a world scene (its exact frame-0
depth, masks and ground truth), or the camera path of a run from an image (a world preset around
the image's camera, or a trajectory file).

These live with the CLI, not the pipeline, because they need :mod:`mirage.world`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from mirage.errors import ConfigError, FileFormatError
from mirage.geometry import Camera
from mirage.pipeline.inputs import StartFrame

__all__ = ["ImageAnchor", "image_trajectory", "scene_start", "check_max_frames", "check_trajectory_file"]


@dataclass(frozen=True)
class ImageAnchor:
    """Stands in for a scene when a preset path starts from an image: the camera starts at the
    origin looking along +z (identity pose), and paths use a free radius of 1 unit."""

    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    free_radius: float = 1.0
    start_yaw: float = 0.0
    seed: int = 0


def image_trajectory(spec: str, frames: int, size: tuple[int, int], K: Tensor) -> Camera:
    """Cameras for a run from an image: a preset around :class:`ImageAnchor`, or a file
    (poses as stored; frame 0 is the image's camera). Intrinsics ``K`` replace a preset's."""
    from mirage.world import PRESETS, load_trajectory, make_trajectory
    from mirage.world.path_grammar import is_written_path, path_poses

    if spec in PRESETS:
        cams = make_trajectory(spec, ImageAnchor(), frames, size[0], size[1])
        return Camera(K.expand(len(cams), 3, 3).clone(), cams.cam2world, size[0], size[1])
    if is_written_path(spec):  # "forward 2, turn-left 30": from the image's camera, `frames` long
        cam2world = torch.from_numpy(path_poses(spec, frames)).to(K.dtype)
        return Camera(K.expand(frames, 3, 3).clone(), cam2world, size[0], size[1])
    return load_trajectory(spec, frames=None, height=size[0], width=size[1])


def scene_start(family: str, seed: int, trajectory: str, frames: int, size: tuple[int, int],
                fps: float = 16.0, max_frames: int | None = None) -> StartFrame:
    """A world scene: its exact frame-0 depth and masks, and the ground truth of every frame
    (rendered only once the path is known to hold at most ``max_frames`` frames)."""
    from mirage.world import generate_scene, load_trajectory, render

    scene = generate_scene(family, seed)
    cams = load_trajectory(trajectory, scene=scene, frames=frames, height=size[0], width=size[1])
    if max_frames is not None:
        check_max_frames(len(cams), max_frames, f"`--trajectory` {trajectory!r}")
    out = render(scene, cams, torch.arange(len(cams), dtype=torch.float64) / fps)
    depth0 = torch.where(out.sky[0], torch.full_like(out.depth[0], float("inf")), out.depth[0])
    return StartFrame(out.rgb[0], depth0, out.dynamic[0] | out.sky[0], cams, out.rgb, scene, fps)


# A trajectory file may hold this many bytes per allowed frame (text formats: a transforms.json
# frame with its 4x4 matrix is ~0.5 KB pretty-printed), at least TEXT_BYTES_MIN in all.
TEXT_BYTES_PER_FRAME = 4096
TEXT_BYTES_MIN = 16 * 2**20
NPZ_BYTES_MAX = 2**30  # a geometry archive used as a path: all its arrays, uncompressed
COLMAP_BYTES_MAX = 2**28  # a COLMAP model's cameras.* and images.* (with their 2D points)


def check_max_frames(count: int, max_frames: int, what: str) -> None:
    if count > max_frames:
        raise ConfigError(f"{what} holds {count} frames but at most {max_frames} are allowed "
                          f"(`--max-frames`; each frame's video, read and ground truth stay in memory)")


def check_trajectory_file(spec: str, max_frames: int) -> None:
    """Refuse a trajectory file that is larger, or states more cameras, than ``max_frames``
    frames need, from its size on disk and its headers only: nothing is parsed or decoded."""
    path = Path(spec)
    if path.is_dir():
        stored = sum(f.stat().st_size for f in path.iterdir() if f.is_file() and f.stem in ("cameras", "images"))
        if stored > COLMAP_BYTES_MAX:
            raise ConfigError(f"`--trajectory` {spec!r}: the COLMAP model's cameras and images files hold "
                              f"{stored / 2**20:.0f} MiB; the limit is {COLMAP_BYTES_MAX / 2**20:.0f} MiB")
        return
    if not path.is_file():
        return  # the loader names it
    size = path.stat().st_size
    if path.suffix == ".npz":
        _check_npz_path(path, spec, max_frames)
        return
    limit = max(TEXT_BYTES_MIN, TEXT_BYTES_PER_FRAME * max_frames)
    if size > limit:
        raise ConfigError(f"`--trajectory` {spec!r} is {size / 2**20:.1f} MiB; a path of at most {max_frames} "
                          f"frames (`--max-frames`) needs far less (the limit is {limit / 2**20:.0f} MiB)")
    if path.suffix == ".txt":  # RealEstate10K: a URL line, then one line per camera
        with open(path, "rb") as fh:
            lines = sum(1 for line in fh if line.strip()) - 1
        check_max_frames(lines, max_frames, f"`--trajectory` {spec!r}")


def _check_npz_path(path: Path, spec: str, max_frames: int) -> None:
    import zipfile

    from mirage.pipeline.inputs import read_npy_header

    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            total = sum(m.file_size for m in members)
            if total > NPZ_BYTES_MAX:
                raise ConfigError(f"`--trajectory` {spec!r} holds {total / 2**20:.0f} MiB of arrays "
                                  f"uncompressed; the limit is {NPZ_BYTES_MAX / 2**20:.0f} MiB")
            for m in members:
                if m.filename in ("intrinsics.npy", "poses_c2w.npy"):
                    with archive.open(m) as fh:
                        shape = read_npy_header(fh, f"`--trajectory` {spec!r} `{m.filename[:-4]}`")[0]
                    check_max_frames(shape[0] if shape else 0, max_frames, f"`--trajectory` {spec!r}")
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise FileFormatError(f"`--trajectory` {spec!r} is not a readable .npz archive: {err}") from None
