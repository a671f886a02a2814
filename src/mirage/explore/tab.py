"""`Tab`: one browser tab's world — a generation session and what its page is shown.

Every method here runs on the manager's single worker thread (:mod:`mirage.explore.manager`),
one at a time, so a tab's session is never touched by two jobs at once. Methods send what the
page should see through ``emit`` (thread-safe; a pydantic model for text, bytes for binary).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import tempfile
import time
from dataclasses import is_dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from mirage.errors import MirageError
from mirage.explore import wire
from mirage.explore.config import ExploreConfig
from mirage.explore.models import (ChunkHeader, ChunkStats, Hello, Move, Notice, PointsHeader, Progress,
                                   StateMessage, Timing, ViewHeader)
from mirage.explore.moves import move_cameras
from mirage.explore.worlds import Start, WorldMaker, image_view, loaded_start
from mirage.memory.store import GREY  # the display colour of points written without images

__all__ = ["Tab", "WORLD_SUFFIX"]

WORLD_SUFFIX = ".mirage-world"
PROGRESS_AFTER_S = 0.25  # a chunk reports its denoising steps once it has run this long


class Tab:
    """One tab: its session, its start, its options and its bookkeeping."""

    def __init__(self, tab_id: str, maker: WorldMaker, config: ExploreConfig,
                 emit: Callable[[object], None]) -> None:
        self.id, self.maker, self.config, self.emit = tab_id, maker, config, emit
        self.start: Start = maker.start
        self.session = None  # made on the worker by `open`
        self.ground_truth = False
        self.pending_steps = 0  # queued steps (the manager's count, under its lock)
        self.last_active = time.monotonic()
        self.closed = False
        self._told_eviction = False  # the page is told once when old frames are let go

    # -- lifecycle ------------------------------------------------------------------------------
    def open(self) -> None:
        """Make the session and send the page everything it starts with."""
        self.session = self.maker.new(self.start)
        h, w = self.maker.size
        cfg = self.config
        self.emit(Hello(session=self.id, height=h, width=w, backbone=self.maker.backbone_name,
                        memory_mode=self.maker.config.memory_mode, memory_input=self.session.memory_input,
                        source=self.start.source,
                        has_ground_truth=self.start.scene is not None, step_frames=cfg.step_frames,
                        steps=self.maker.config.steps, move_step=cfg.move_step,
                        turn_step_deg=cfg.turn_step_deg, rise_step=cfg.rise_step,
                        max_upload_bytes=cfg.max_upload_bytes, max_message_bytes=cfg.max_message_bytes))
        self.send_state("start")

    def close(self) -> None:
        """Mark the tab closed (from any thread). A job running on it finishes undisturbed; the
        manager runs no further job and drops its reference, which frees the session."""
        self.closed = True

    # -- what the page sees ---------------------------------------------------------------------
    def send_state(self, reason: str) -> None:
        """The whole walk (path, pose), the current view and the memory points."""
        s = self.session
        cams = s.cameras
        centres = cams.cam2world[:, :3, 3].double()
        self.emit(StateMessage(reason=reason, frames=s.num_frames, chunks=len(s.chunks), source=self.start.source,
                               has_ground_truth=self.start.scene is not None,
                               path=[[round(float(v), 5) for v in c] for c in centres],
                               pose=[float(v) for v in cams.cam2world[-1].reshape(-1)],
                               fov_x_deg=self.maker.fov_x_deg(cams[[len(cams) - 1]])))
        last = s.video[-1:]
        gt = self._ground_truth(cams[[len(cams) - 1]], [s.num_frames - 1]) if self.ground_truth else None
        h, w = self.maker.size
        self.emit(wire.pack(ViewHeader(height=h, width=w, has_ground_truth=gt is not None),
                            wire.frames_to_rgb(last), *([wire.frames_to_rgb(gt)] if gt is not None else [])))
        self.send_points()

    def send_points(self) -> None:
        points, colors = self.points()
        total = len(points)
        if total > self.config.max_points_sent:  # an even subsample keeps the view's shape
            keep = np.linspace(0, total - 1, self.config.max_points_sent).astype(np.int64)
            points, colors = points[keep], colors[keep]
        self.emit(wire.pack(PointsHeader(count=len(points), total=total),
                            np.ascontiguousarray(points, dtype="<f4").tobytes(),
                            np.ascontiguousarray(colors, dtype=np.uint8).tobytes()))

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) float32 world points and (N, 3) uint8 display colours of the memory."""
        memory = self.session.memory
        if memory is None or getattr(memory, "points", None) is None:
            return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)
        points = memory.points.detach().float().cpu().numpy().reshape(-1, 3)
        colors = getattr(memory, "colors", None)
        if colors is None or len(colors) != len(points):
            colors = np.full((len(points), 3), GREY, np.uint8)
        else:
            colors = colors.detach().cpu().numpy().astype(np.uint8).reshape(-1, 3)
        return points, colors

    def _ground_truth(self, cameras, frame_ids):
        return self.maker.ground_truth(self.start, cameras, frame_ids)

    # -- acts -----------------------------------------------------------------------------------
    def step(self, move: Move) -> None:
        s, cfg = self.session, self.config
        if s.num_frames + cfg.step_frames > cfg.max_frames:
            self.emit(Notice(message=f"this world holds its limit of {cfg.max_frames} frames: save it, "
                                     f"undo, or reload the page to start a new one"))
            return
        cams = s.cameras
        current = cams[[len(cams) - 1]]
        clip = lambda v, m: max(-m, min(m, v))  # noqa: E731
        new_cams, clamped = move_cameras(current, cfg.step_frames, forward=clip(move.forward, cfg.move_step),
                                         right=clip(move.right, cfg.move_step), up=clip(move.up, cfg.rise_step),
                                         yaw_deg=clip(move.yaw, cfg.turn_step_deg), bounds=self.start.bounds)
        self._generate(new_cams, None, move.id)
        if clamped:
            self.emit(Notice(message="the edge of the walkable area: the step stopped there"))

    def _generate(self, cameras, seed, move_id) -> None:
        s = self.session
        t0 = self._step_started = time.perf_counter()
        result = s.step(cameras, seed=seed, callback=self._progress)
        wall = time.perf_counter() - t0
        if s.evict_frames(self.config.keep_frames) and not self._told_eviction:
            self._told_eviction = True
            self.emit(Notice(message=f"memory bounded: this tab keeps the pixels of the last "
                                     f"{self.config.keep_frames} frames and lets older ones go (the walk, "
                                     f"its memory, save, undo and Export path are unaffected)"))
        n, h, w = result.frames.shape[0], *self.maker.size
        payload = [wire.frames_to_rgb(result.frames)]
        has_reads = result.read_frames is not None
        if has_reads:
            mask = result.read_mask
            if mask is not None and mask.shape[0] != n:
                mask = mask.repeat_interleave(n // max(1, mask.shape[0]), dim=0)[:n]
            payload.append(wire.frames_to_rgb(wire.tint_uncovered(result.read_frames, mask)))
        gt = None
        if self.ground_truth:
            gt = self._ground_truth(cameras, list(range(s.num_frames - n, s.num_frames)))
            if gt is not None:
                payload.append(wire.frames_to_rgb(gt))
        stats = result.memory_stats or {}
        alignment = getattr(result, "depth_alignment", None)
        skipped = [f["frame"] for f in (alignment or {}).get("frames", []) if f["status"] != "aligned"]
        if skipped:
            self.emit(Notice(message=f"depth: frame(s) {skipped} could not be aligned to the memory and were not "
                                     f"written to it ({alignment['frames'][0]['reason'] or 'see the chunk record'})"))
        t = result.timing
        header = ChunkHeader(
            move_id=move_id, chunk_index=result.chunk_index, seed=result.seed, frames=n, height=h, width=w,
            has_reads=has_reads, has_ground_truth=gt is not None,
            cameras=[[float(v) for v in c.reshape(-1)] for c in cameras.cam2world],
            timing=Timing(read=t.read, denoise=t.denoise, decode=t.decode, depth=t.depth, update=t.update,
                          total=t.total, wall=wall),
            stats=ChunkStats(points=int(stats.get("points", 0)), bytes=int(stats.get("bytes", 0)),
                             coverage=float(stats.get("read_coverage", 0.0)),
                             references=list(result.references or [])),
            total_frames=s.num_frames, depth_alignment=alignment)
        self.emit(wire.pack(header, *payload))
        self.send_points()

    def _progress(self, i: int, n: int) -> None:
        # Only slow chunks (Wan2.2: seconds) report their denoising steps; a fast one would
        # only add messages in front of its frames.
        if time.perf_counter() - self._step_started > PROGRESS_AFTER_S:
            self.emit(Progress(step=i + 1, steps=n))

    def undo(self) -> None:
        self.session.undo()  # a SessionError says why it cannot
        self.send_state("undo")

    def reroll(self, seed: int | None) -> None:
        """The last chunk again, from the same cameras, with a new seed."""
        s = self.session
        if not s.chunks or not s.can_undo:
            raise MirageError("nothing to re-roll: take a step first" if not s.chunks
                              else "the last step can no longer be re-rolled (it is past the undo history)")
        n = int(s.chunks[-1]["frames"])
        cams = s.cameras
        last = cams[list(range(len(cams) - n, len(cams)))]
        s.undo()
        self.send_state("reroll")
        self._generate(last, secrets.randbelow(2**31) if seed is None else seed, None)

    def set_ground_truth(self, on: bool) -> None:
        self.ground_truth = bool(on) and self.start.scene is not None

    # -- files ----------------------------------------------------------------------------------
    def save(self) -> bytes:
        """The session file (the session's own format: safetensors + JSON, versioned), with this
        tab's start recorded in it (``session.start``) so that a load knows the world."""
        self.session.start = self.start.source
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"world{WORLD_SUFFIX}"
            self.session.save(path)
            return path.read_bytes()

    def load(self, data: bytes, name: str = "world file") -> None:
        """Replace this tab's world by a saved one (``name``: the upload's file name, for
        messages); a bad file raises and changes nothing. A world asking for more compute per
        step than this server's own settings (``steps``, ``preceding``, ``references``) is
        refused; its recorded start (``save``) becomes the tab's start (unknown: no ground truth,
        :func:`~mirage.explore.worlds.loaded_start`)."""
        label = f"the world file {name!r}"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"world{WORLD_SUFFIX}"
            path.write_bytes(data)
            with _named(path, label):
                session = self.maker.load(path)
        if session.cameras.hw != self.maker.size:
            raise MirageError(f"{label} is {session.cameras.hw[0]}x{session.cameras.hw[1]} but this "
                              f"server generates {self.maker.size[0]}x{self.maker.size[1]}")
        own = self.maker.config
        for key in ("steps", "preceding", "references"):
            asked, limit = getattr(session.config, key, 0), getattr(own, key)
            if asked > limit:
                raise MirageError(f"{label} asks for {key} = {asked} but this server runs at most {limit}; "
                                  f"it was saved by a server with other settings")
        if is_dataclass(session.config):
            session.config = replace(session.config, progress=own.progress)  # the server's console
        record = getattr(session, "start", None)
        self.start, self.session = loaded_start(record, session.cameras, name), session
        self.ground_truth = self.ground_truth and self.start.scene is not None
        self.send_state("load")

    def start_from_image(self, image: bytes, depth: bytes | None, image_name: str, depth_name: str | None) -> None:
        """A new world from an uploaded image (+ depth map); bad files raise and change nothing."""
        with tempfile.TemporaryDirectory() as tmp:
            ipath = Path(tmp) / ("image" + Path(image_name or "x.png").suffix[:8])
            ipath.write_bytes(image)
            dpath = None
            if depth is not None:
                dpath = Path(tmp) / ("depth" + Path(depth_name or "x.npy").suffix[:8])
                dpath.write_bytes(depth)
            with _named(Path(tmp), "the upload"):
                start = image_view(ipath, self.maker.size, dpath, name=image_name, depth_name=depth_name,
                                   max_pixels=self.config.max_image_pixels)
                session = self.maker.new(start)
        self.start, self.session, self.ground_truth = start, session, False
        self.send_state("start")

    def ply(self) -> bytes:
        return wire.ply_bytes(*self.points())

    def path_json(self) -> bytes:
        """The walk as a trajectory JSON with its chunk boundaries and seeds, and its start
        (:mod:`mirage.pipeline.start_record`): `mirage generate --trajectory FILE` from the same
        start with this server's options replays it to the same video, and refuses another
        start."""
        from mirage.cameras import save_trajectory_json

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "path.json"
            save_trajectory_json(path, self.session.cameras, fps=self.start.fps, chunks=self.session.chunks or None)
            data = json.loads(path.read_text())
        if "scene" in self.start.source or "sha256" in self.start.source:
            data["start"] = self.start.source
        return json.dumps(data, indent=1).encode()


@contextlib.contextmanager
def _named(path: Path, label: str):
    """Re-raise a :class:`MirageError` with the server's temporary ``path`` replaced by ``label``:
    messages name what the person uploaded, never where the server put it."""
    try:
        yield
    except MirageError as err:
        text = str(err)
        for shown in (f"session file {str(path)!r}", repr(str(path)), str(path)):
            text = text.replace(shown, label)
        if text == str(err):
            raise
        raise type(err)(text) from None
