"""``mirage data import``: real camera datasets → clips in the ``geometry.npz`` layout.

Each sequence (see :mod:`mirage.data.import_sources` for the input layouts) is cut into clips of
``clip_frames`` frames taking every ``stride``-th frame (``clip_frames = 0``: the whole sequence,
one clip; a trailing partial clip is dropped). A clip gets:

- its frames, resized to ``size`` (bilinear) when given, with the intrinsics rescaled by the
  docs/design.md §2.3 rule;
- its z-depth, from ``--depth-dir`` (metric, resized by the nearest pixel centre) or from a depth
  model whose affine inverse depth is aligned per frame to reference points in the poses' scale
  (COLMAP's sparse points, else triangulated matches; :mod:`mirage.data.depth_align`).

Layout of ``out``::

    <clip>/geometry.npz   frames, depths, intrinsics, poses_c2w (+ times for RealEstate10K)
    index.json            format, config, the imported clips (source frames, depth source, the
                          per-clip fit residual), the skipped clips/sequences with their reasons,
                          and ``"complete": true`` at the end
    import.log            one line per skipped clip, and a summary per run

A clip's ``geometry.npz`` is written atomically, and ``index.json`` after every clip: a killed
import leaves no partial clip (a stale temporary file is removed on the rerun), and a rerun with
the same config skips the clips the index lists. ``mirage data build --clips <out>`` reads it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mirage.data.depth_align import AlignConfig, apply_fit, fit_inverse_depth, triangulate_clip
from mirage.data.import_sources import (FORMATS, ClipSkip, find_sources, frame_key, read_depth, read_frames,
                                        read_sequence)
from mirage.errors import ConfigError, MirageError
from mirage.files import atomic_path, line_logger
from mirage.geometry import Camera

__all__ = ["ImportConfig", "import_clips", "clip_windows", "IMPORT_FORMAT"]

IMPORT_FORMAT = "mirage-import"
IMPORT_VERSION = 1


@dataclass(frozen=True)
class ImportConfig:
    """format: ``auto`` or one of :data:`FORMATS`. clip_frames: frames per clip (0 = the whole
    sequence). stride: take every ``stride``-th frame. size: (H, W) output size or None (as stored).
    align: depth-model alignment settings."""

    format: str = "auto"
    clip_frames: int = 0
    stride: int = 1
    size: tuple[int, int] | None = None
    align: AlignConfig = field(default_factory=AlignConfig)

    def __post_init__(self) -> None:
        if self.format not in ("auto",) + FORMATS:
            raise ConfigError(f"`format` must be one of {('auto',) + FORMATS} but is {self.format!r}")
        if isinstance(self.clip_frames, bool) or not isinstance(self.clip_frames, int) or self.clip_frames < 0:
            raise ConfigError(f"`clip_frames` must be an int ≥ 0 but is {self.clip_frames!r}")
        if isinstance(self.stride, bool) or not isinstance(self.stride, int) or self.stride < 1:
            raise ConfigError(f"`stride` must be an int ≥ 1 but is {self.stride!r}")
        if self.size is not None and (len(self.size) != 2 or any(not isinstance(v, int) or v < 1 for v in self.size)):
            raise ConfigError(f"`size` must be None or (height, width) ints ≥ 1 but is {self.size!r}")


def clip_windows(frames: int, clip_frames: int, stride: int) -> list[list[int]]:
    """Frame indices of each clip of a ``frames``-long sequence (see the module docstring)."""
    taken = list(range(0, frames, stride))
    if clip_frames == 0:
        return [taken] if taken else []
    return [taken[i:i + clip_frames] for i in range(0, len(taken) - clip_frames + 1, clip_frames)]


def _resize_frames(frames: np.ndarray, size) -> np.ndarray:
    from PIL import Image

    h, w = size
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames])


def _resize_depth(depth: np.ndarray, size) -> np.ndarray:
    """Nearest source pixel centre: target pixel j samples source column floor((j + 0.5)·W/w)."""
    H, W = depth.shape[-2:]
    h, w = size
    rows = np.minimum(np.floor((np.arange(h) + 0.5) * H / h).astype(int), H - 1)
    cols = np.minimum(np.floor((np.arange(w) + 0.5) * W / w).astype(int), W - 1)
    return depth[..., rows[:, None], cols[None, :]]


def _scale_points(points: np.ndarray, src, dst) -> np.ndarray:
    """(N, 3) (u, v, z) from pixel size ``src`` to ``dst`` by the rescale rule of docs/design.md §2.3."""
    sy, sx = dst[0] / src[0], dst[1] / src[1]
    out = points.copy()
    out[:, 0] = (points[:, 0] + 0.5) * sx - 0.5
    out[:, 1] = (points[:, 1] + 0.5) * sy - 0.5
    return out


def _check_poses(seq, indices) -> None:
    c2w = seq.cam2world[indices]
    K = seq.K[indices]
    bad = np.flatnonzero(~(np.isfinite(c2w).reshape(len(indices), -1).all(1) & np.isfinite(K).reshape(len(indices), -1).all(1)))
    if bad.size:
        raise ClipSkip(f"non-finite (NaN/inf) poses or intrinsics in frame(s) {[seq.names[indices[b]] for b in bad[:8]]}")


def _align(pred, refs, config: AlignConfig):
    depths, fits = [], []
    for k, (p, r) in enumerate(zip(pred, refs)):
        fit = fit_inverse_depth(p, r, config)
        if not fit.ok:
            raise ClipSkip(f"depth alignment failed in clip frame {k}: {fit.reason}")
        fits.append(fit)
        depths.append(apply_fit(p, fit))
    residuals = [f.residual for f in fits]
    worst = max(residuals)
    if worst > config.max_residual:
        raise ClipSkip(f"depth alignment residual {worst:.4f} (median relative depth error, worst frame) "
                       f"exceeds max_residual {config.max_residual}")
    record = {"fit_residual": float(np.mean(residuals)), "fit_residual_max": float(worst),
              "reference_points_min": int(min(f.points for f in fits)),
              "scale": [f.scale for f in fits], "shift": [f.shift for f in fits]}
    return np.stack(depths), record


def _import_clip(source, seq, indices, out_dir: Path, config: ImportConfig, depth_dir, depth_model) -> dict:
    _check_poses(seq, indices)
    frames = read_frames(source, seq, indices)  # (F, H, W, 3) at the stored size
    H, W = seq.height, seq.width
    size = config.size or (H, W)
    try:
        cams = Camera(torch.from_numpy(seq.K[indices]).float(), torch.from_numpy(seq.cam2world[indices]).float(), H, W)
    except MirageError as err:
        raise ClipSkip(f"invalid cameras: {err}") from None
    record: dict = {"source": source.name, "frames": [seq.names[i] for i in indices]}
    if depth_dir is not None:
        depths = np.stack([read_depth(Path(depth_dir), frame_key(source, seq.names[i]), H, W) for i in indices])
        if size != (H, W):
            depths = _resize_depth(depths, size)
        record["depth"] = {"source": "depth-dir"}
    small = frames if size == (H, W) else _resize_frames(frames, size)
    if depth_dir is None:
        pred = np.asarray(depth_model(small))
        if pred.shape != small.shape[:3]:
            raise ClipSkip(f"the depth model returned shape {pred.shape} for frames of shape {small.shape[:3]}")
        if seq.points is not None:
            refs = [_scale_points(seq.points[i], (H, W), size) for i in indices]
            kind = "colmap sparse points"
        else:
            refs = [_scale_points(r, (H, W), size) for r in triangulate_clip(frames, seq.K[indices], seq.cam2world[indices])]
            kind = "triangulated matches"
        depths, fit = _align(pred, refs, config.align)
        record["depth"] = {"source": f"model:{getattr(depth_model, 'name', type(depth_model).__name__)}",
                           "reference": kind, **fit}
    if size != (H, W):
        cams = cams.scaled(*size)
    times = None if seq.timestamps is None else seq.timestamps[indices].astype(np.float64) * 1e-6
    from mirage.cameras import save_geometry_npz

    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        save_geometry_npz(out_dir / "geometry.npz", small, depths, cams, times=times)
    except BaseException:
        if out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    return record


def import_clips(
    cameras,
    out,
    config: ImportConfig | None = None,
    *,
    images=None,
    depth_dir=None,
    depth_model: Callable[[np.ndarray], np.ndarray] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Import (or resume importing) every sequence under ``cameras`` into clips under ``out``.

    Depth comes from exactly one of ``depth_dir`` (a folder of metric maps) and ``depth_model``
    (frames (F, H, W, 3) uint8 → (F, H, W) affine inverse depth, e.g.
    :class:`~mirage.depth_model.HFDepthModel`). Returns the index (module docstring). A
    single camera file or model that cannot be read raises :class:`FileFormatError` before
    anything is written; in a folder of them, a bad one is skipped with its reason.
    """
    from tqdm.auto import tqdm

    config = config or ImportConfig()
    if (depth_dir is None) == (depth_model is None):
        raise ConfigError("give exactly one depth source: `--depth-dir` (metric maps) or `--depth-model` "
                          f"(a local transformers model); got depth_dir={depth_dir!r}, depth_model={depth_model!r}")
    if depth_dir is not None and not Path(depth_dir).is_dir():
        raise ConfigError(f"`--depth-dir` {str(depth_dir)!r} is not a folder")
    sources = find_sources(cameras, images, config.format)
    single = len(sources) == 1 and sources[0].cameras == Path(cameras)  # one file or model, not a folder of them
    sequences, skipped = {}, []
    for s in sources:
        try:
            sequences[s.name] = read_sequence(s)
        except MirageError as err:
            if single:
                raise
            skipped.append({"sequence": s.name, "reason": str(err)})
    settings = {**asdict(config), "size": list(config.size) if config.size else None,
                "cameras": str(Path(cameras).resolve()), "images": str(Path(images).resolve()) if images else None,
                "depth": ("dir:" + str(Path(depth_dir).resolve())) if depth_dir is not None else
                         f"model:{getattr(depth_model, 'name', type(depth_model).__name__)}"}
    out = Path(out)
    index_path = out / "index.json"
    old = None
    if index_path.exists():
        old = json.loads(index_path.read_text())
        if old.get("format") != IMPORT_FORMAT or old.get("config") != settings:
            raise ConfigError(f"`--out` {str(out)!r} holds an import with config {old.get('config')}, but this run "
                              f"asks for {settings}; use a fresh folder")
    out.mkdir(parents=True, exist_ok=True)
    note = line_logger(out / "import.log", log)

    done = {c["name"]: c for c in (old or {}).get("clips", []) if (out / c["name"] / "geometry.npz").is_file()}
    index = {"format": IMPORT_FORMAT, "version": IMPORT_VERSION, "config": settings,
             "clips": list(done.values()), "skipped": list(skipped), "complete": False}
    for entry in skipped:
        note(f"skipped sequence {entry['sequence']}: {entry['reason']}")
    jobs = []
    for name, seq in sequences.items():
        windows = clip_windows(len(seq), config.clip_frames, config.stride)
        if not windows:
            index["skipped"].append({"sequence": name, "reason": f"{len(seq)} frames: no whole clip of "
                                     f"{config.clip_frames} frames at stride {config.stride}"})
        for c, idx in enumerate(windows):
            jobs.append((f"{name}-{c:03d}" if len(windows) > 1 or config.clip_frames else name, name, idx))
    for clip_dir in out.iterdir():  # temporaries of a killed run
        if clip_dir.is_dir():
            for tmp in clip_dir.glob(".geometry.npz.*"):
                tmp.unlink()
            if not any(clip_dir.iterdir()):
                clip_dir.rmdir()
    bar = tqdm(total=len(jobs), desc="clips", unit="clip", disable=not progress)
    imported = 0
    for clip, name, idx in jobs:
        if clip in done:
            bar.update(1)
            continue
        src = next(s for s in sources if s.name == name)
        try:
            record = _import_clip(src, sequences[name], idx, out / clip, config, depth_dir, depth_model)
        except ClipSkip as err:
            index["skipped"].append({"clip": clip, "reason": str(err)})
            note(f"skipped {clip}: {err}")
        else:
            index["clips"].append({"name": clip, **record})
            imported += 1
        index["clips"].sort(key=lambda c: c["name"])
        _write_json(index_path, index)
        bar.update(1)
    bar.close()
    index["complete"] = True
    _write_json(index_path, index)
    note(f"run: {imported} clips imported, {len(done)} already done, {len(index['skipped'])} skipped")
    return index


def _write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1))
