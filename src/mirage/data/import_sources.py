"""Where ``mirage data import`` finds camera sequences, their frames and their depth maps.

Input layouts (``--cameras`` and optional ``--images``):

- ``realestate10k``: ``--cameras`` is one camera ``.txt`` or a folder of them (one sequence per
  file). Frames of sequence ``S`` are ``<images>/S/<timestamp>.png|.jpg`` or a video
  ``<images>/S.mp4`` (any ffmpeg format: .mp4 .mkv .webm .mov); for a single file ``--images`` may
  also be the timestamp folder or the video itself. A video frame is taken at
  ``round(timestamp_us · fps / 10⁶)``.
- ``transforms``: ``--cameras`` is a ``transforms.json`` or a folder searched for them (one sequence
  per file, e.g. DL3DV scenes). ``file_path`` is relative to ``--images`` or else the json's folder.
- ``colmap``: ``--cameras`` is a sparse model folder (``sparse/0``) or a folder searched for them.
  Image names are relative to ``--images`` or else ``<project>/images`` (two levels above
  ``sparse/0``).

Depth maps (``--depth-dir``): frame ``key`` (its image name without extension, e.g.
``S/1234567`` or ``images/frame_00001``) reads ``<depth-dir>/<key>.npy`` (float z-depth in the
poses' unit) or ``<key>.png`` (16-bit, millimetres), else the same with the name's last part only.
Invalid depth (≤ 0, NaN, inf) becomes 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mirage.errors import ConfigError, MirageError

__all__ = ["FORMATS", "Source", "ClipSkip", "find_sources", "read_sequence", "read_frames", "read_depth"]

FORMATS = ("realestate10k", "transforms", "colmap")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class ClipSkip(MirageError):
    """A clip (or a whole sequence) cannot be imported; the message is the reason."""


@dataclass(frozen=True)
class Source:
    """One sequence to import: its camera file/model, its frame root (folder or video) and name."""

    name: str
    format: str
    cameras: Path
    frames: Path


def detect_format(path: Path) -> str:
    from mirage.cameras import is_colmap_model

    if path.is_file():
        if path.suffix == ".json":
            return "transforms"
        if path.suffix == ".txt":
            return "realestate10k"
    elif path.is_dir():
        if is_colmap_model(path) or any(path.rglob("cameras.bin")) or any(path.rglob("cameras.txt")):
            return "colmap"
        if any(path.rglob("transforms.json")):
            return "transforms"
        if any(path.glob("*.txt")):
            return "realestate10k"
    raise ConfigError(f"`--cameras` {str(path)!r} is not a RealEstate10K .txt (or folder of them), a "
                      f"transforms.json (or folder holding them) or a COLMAP model folder; pass --format "
                      f"one of {FORMATS} if it is")


def _rel_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).as_posix() if path != root else path.name
    return rel.replace("/", "_") or path.name


def find_sources(cameras, images=None, fmt: str = "auto") -> list[Source]:
    """The sequences under ``cameras`` (see the module docstring), sorted by name."""
    from mirage.cameras import is_colmap_model

    root = Path(cameras)
    if not root.exists():
        raise ConfigError(f"`--cameras` {str(root)!r} does not exist")
    fmt = detect_format(root) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise ConfigError(f"`--format` must be one of {('auto',) + FORMATS} but is {fmt!r}")
    images = None if images is None else Path(images)
    if images is not None and not images.exists():
        raise ConfigError(f"`--images` {str(images)!r} does not exist")
    out = []
    if fmt == "realestate10k":
        files = [root] if root.is_file() else sorted(root.glob("*.txt"))
        for f in files:
            base = images if images is not None else f.parent
            frames = base
            if base.is_dir():
                videos = [base / f"{f.stem}{s}" for s in VIDEO_SUFFIXES if (base / f"{f.stem}{s}").is_file()]
                frames = base / f.stem if (base / f.stem).is_dir() else (videos[0] if videos else base)
            out.append(Source(f.stem, fmt, f, frames))
    elif fmt == "transforms":
        files = [root] if root.is_file() else sorted(root.rglob("transforms.json"))
        for f in files:
            name = f.parent.name if root.is_file() else _rel_name(f.parent, root)
            out.append(Source(name, fmt, f, images if images is not None else f.parent))
    else:
        models = [root] if is_colmap_model(root) else sorted(
            {p.parent for p in list(root.rglob("cameras.bin")) + list(root.rglob("cameras.txt")) if is_colmap_model(p.parent)})
        if not models:
            from mirage.cameras import read_colmap

            read_colmap(root)  # raises, naming the files a model needs
        for m in models:
            project = m.parent.parent if m.parent.name == "sparse" else m.parent
            name = project.name if len(models) == 1 else _rel_name(m, root)
            out.append(Source(name, fmt, m, images if images is not None else project / "images"))
    if not out:
        raise ConfigError(f"`--cameras` {str(root)!r} holds no {fmt} camera file")
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"`--cameras` {str(root)!r} holds sequences with the same name: {sorted(names)}")
    return sorted(out, key=lambda s: s.name)


def _open_frame(path: Path):
    """The frame image at ``path``, opened lazily (header only), or :class:`ClipSkip` naming an
    unreadable or oversized file (more than ``MAX_IMAGE_PIXELS``, checked before decoding)."""
    from mirage.pipeline import MAX_IMAGE_PIXELS, open_image

    try:
        return open_image(path, f"frame file {str(path)!r}", MAX_IMAGE_PIXELS)
    except MirageError as err:
        raise ClipSkip(str(err)) from None


def _image_size(path: Path) -> tuple[int, int]:
    with _open_frame(path) as im:
        return im.height, im.width


def _find_image(root: Path, name: str) -> Path | None:
    p = root / name
    if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
        return p
    for s in IMAGE_SUFFIXES:
        if (root / f"{name}{s}").is_file():
            return root / f"{name}{s}"
    return None


def read_sequence(source: Source):
    """The :class:`~mirage.cameras.CameraSequence` of ``source``, with pixel intrinsics."""
    from mirage import cameras as cf

    if source.format == "realestate10k":
        seq = cf.read_realestate10k(source.cameras)
        if source.frames.is_file() and source.frames.suffix.lower() in VIDEO_SUFFIXES:
            import imageio.v2 as imageio

            with imageio.get_reader(str(source.frames), "ffmpeg") as reader:
                h, w = reader.get_data(0).shape[:2]
        else:
            first = _find_image(source.frames, seq.names[0])
            if first is None:
                raise ClipSkip(f"frame file for timestamp {seq.names[0]} is missing in {str(source.frames)!r}")
            h, w = _image_size(first)
        return seq.at_size(h, w)
    if source.format == "transforms":
        try:
            return cf.read_transforms(source.cameras)
        except MirageError as err:
            if "no image size" not in str(err):
                raise
            seq = cf.read_transforms(source.cameras, image_size=(1, 1))
            first = _find_image(source.frames, seq.names[0])
            if first is None:
                raise ClipSkip(f"frame file {seq.names[0]!r} is missing in {str(source.frames)!r}") from None
            return cf.read_transforms(source.cameras, image_size=_image_size(first))
    return cf.read_colmap(source.cameras)


def frame_key(source: Source, name: str) -> str:
    """The depth-map key of a frame: its image name without extension (see the module docstring)."""
    stem = name.rsplit(".", 1)[0] if Path(name).suffix.lower() in IMAGE_SUFFIXES else name
    return f"{source.name}/{stem}" if source.format == "realestate10k" else stem


def read_frames(source: Source, seq, indices: list[int]) -> np.ndarray:
    """(F, H, W, 3) uint8 frames ``indices`` of ``seq``; :class:`ClipSkip` naming a missing or
    wrongly sized frame."""

    H, W = seq.height, seq.width
    if source.frames.is_file() and source.frames.suffix.lower() in VIDEO_SUFFIXES:
        import imageio.v2 as imageio

        with imageio.get_reader(str(source.frames), "ffmpeg") as reader:
            fps = float(reader.get_meta_data()["fps"])
            wanted = [int(round(int(seq.timestamps[i]) * fps / 1e6)) for i in indices]
            frames = {}
            for k, frame in enumerate(reader):
                if k in wanted:
                    frames[k] = np.asarray(frame)[..., :3]
                if k >= max(wanted):
                    break
        missing = [seq.names[i] for i, k in zip(indices, wanted) if k not in frames]
        if missing:
            raise ClipSkip(f"video {str(source.frames)!r} ends before timestamp(s) {missing[:4]}")
        out = [frames[k] for k in wanted]
    else:
        out = []
        for i in indices:
            path = _find_image(source.frames, seq.names[i])
            if path is None:
                raise ClipSkip(f"frame file {seq.names[i]!r} is missing in {str(source.frames)!r}")
            with _open_frame(path) as im:
                if (im.height, im.width) != (H, W):
                    raise ClipSkip(f"frame {seq.names[i]!r} is {im.height}x{im.width} but its camera is {H}x{W}")
                try:
                    out.append(np.asarray(im.convert("RGB")))
                except (OSError, ValueError, SyntaxError) as err:
                    raise ClipSkip(f"frame file {str(path)!r} is not a readable image: {err}") from None
    for i, f in zip(indices, out):
        if f.shape[:2] != (H, W):
            raise ClipSkip(f"frame {seq.names[i]!r} is {f.shape[0]}x{f.shape[1]} but its camera is {H}x{W}")
    return np.stack(out)


def read_depth(depth_dir: Path, key: str, height: int, width: int) -> np.ndarray:
    """(H, W) float32 z-depth of frame ``key`` from ``depth_dir``; 0 where invalid (NaN, inf,
    ≤ 0). :class:`ClipSkip` for a missing, unreadable or wrongly sized map, or one with no valid
    value; the size is checked before the map is decoded."""
    tried = []
    for k in dict.fromkeys([key, key.rsplit("/", 1)[-1]]):
        for ext in (".npy", ".png"):
            path = depth_dir / f"{k}{ext}"
            tried.append(path.name if k == key.rsplit("/", 1)[-1] else f"{k}{ext}")
            if not path.is_file():
                continue
            def wrong_size(shape) -> ClipSkip:
                return ClipSkip(f"depth map {str(path)!r} is {'x'.join(map(str, shape))} but its frame is "
                                f"{height}x{width}")

            if ext == ".npy":  # the shape is checked on the memory-mapped header, before reading
                try:
                    depth = np.load(path, allow_pickle=False, mmap_mode="r")
                except (OSError, ValueError, EOFError) as err:
                    raise ClipSkip(f"depth map {str(path)!r} is not a readable .npy ({err})") from None
                if depth.dtype.kind != "f":
                    raise ClipSkip(f"depth map {str(path)!r} must hold floats but holds {depth.dtype}")
                if np.squeeze(depth).shape != (height, width):
                    raise wrong_size(depth.shape)
                depth = np.squeeze(np.array(depth, dtype=np.float32))
            else:
                with _open_frame(path) as im:
                    if im.mode not in ("I;16", "I;16B", "I;16L", "I"):
                        raise ClipSkip(f"depth map {str(path)!r} must be a 16-bit PNG in millimetres but has mode {im.mode}")
                    if (im.height, im.width) != (height, width):
                        raise wrong_size((im.height, im.width))
                    try:
                        depth = np.asarray(im).astype(np.float32) / 1000.0
                    except (OSError, ValueError, SyntaxError) as err:
                        raise ClipSkip(f"depth map {str(path)!r} is not a readable PNG: {err}") from None
            valid = np.isfinite(depth) & (depth > 0)
            if not valid.any():
                raise ClipSkip(f"depth map {str(path)!r} holds no valid depth (every value is NaN, inf or ≤ 0)")
            return np.where(valid, depth, 0.0).astype(np.float32)
    raise ClipSkip(f"no depth map for frame {key!r} in --depth-dir {str(depth_dir)!r} (looked for {tried})")
