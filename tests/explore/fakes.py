"""A small fake of the generation-session API (``mirage.pipeline.session.Session``) for the
server tests: frames are a deterministic function of the pose and a seeded generator, memory
points are written in front of each camera. Same methods, same shapes, no model."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch

from mirage.errors import MirageError
from mirage.geometry import Camera
from mirage.pipeline import ChunkTiming


@dataclass
class FakeStepResult:
    frames: torch.Tensor
    read_frames: torch.Tensor | None
    read_mask: torch.Tensor | None
    timing: ChunkTiming
    memory_stats: dict
    references: list = field(default_factory=list)
    chunk_index: int = 0
    seed: int | None = None


class FakeMemory:
    def __init__(self) -> None:
        self.points = torch.zeros(0, 3)
        self.colors = torch.zeros(0, 3, dtype=torch.uint8)


class FakeSession:
    """The Session API on a toy: see the module docstring."""

    def __init__(self, backbone, first_frame, first_camera, config, *, depth_estimator=None, masker=None,
                 first_depth=None, first_exclude=None, text=None, history: int = 8) -> None:
        self.backbone, self.config = backbone, config
        self.memory_input = config.resolve_memory_input(backbone)
        self.video = first_frame[None].float().clone()
        self.cameras = first_camera
        self.chunks: list[dict] = []
        self.memory = FakeMemory()
        self.generator = torch.Generator().manual_seed(config.seed)
        self._history: list[tuple] = []
        self._write(first_camera)

    @property
    def can_undo(self) -> bool:
        return bool(self._history)

    @property
    def num_frames(self) -> int:
        return self.video.shape[0]

    def _write(self, cameras: Camera) -> None:
        c2w = cameras.cam2world.float()
        points = c2w[:, :3, 3] + 2.0 * c2w[:, :3, 2]
        colors = ((points.abs() * 97) % 255).to(torch.uint8)
        self.memory.points = torch.cat([self.memory.points, points])
        self.memory.colors = torch.cat([self.memory.colors, colors])

    def step(self, cameras: Camera, seed: int | None = None, callback=None) -> FakeStepResult:
        n = len(cameras)
        if n % 4 or n > 16:
            raise MirageError(f"`cameras` must hold 4·k ≤ 16 frames but holds {n}")
        self._history.append((self.video, self.cameras, list(self.chunks), self.memory.points, self.memory.colors,
                              self.generator.get_state()))
        if seed is not None:
            self.generator.manual_seed(seed)
        for i in range(self.config.steps):
            if callback is not None:
                callback(i, self.config.steps)
        H, W = cameras.hw
        c2w = cameras.cam2world.float()
        yaw = torch.atan2(c2w[:, 0, 2], c2w[:, 2, 2])  # (n,)
        x = torch.linspace(-1, 1, W)
        base = torch.stack([torch.sin(3 * x[None, :] + 4 * yaw[:, None] + c2w[:, 0, 3:4]),
                            torch.cos(2 * x[None, :] - 3 * yaw[:, None] + c2w[:, 2, 3:4]),
                            torch.sin(x[None, :] * yaw[:, None] * 5)], dim=1)  # (n, 3, W)
        frames = base[:, :, None, :].expand(n, 3, H, W).clone()
        frames += 0.1 * torch.rand(n, 3, H, W, generator=self.generator)
        frames = frames.clamp(-1, 1)
        self.video = torch.cat([self.video, frames])
        self.cameras = Camera(torch.cat([self.cameras.K, cameras.K]),
                              torch.cat([self.cameras.cam2world, cameras.cam2world.to(self.cameras.cam2world.dtype)]),
                              H, W)
        self._write(cameras)
        self.chunks.append({"frames": n, "seed": seed})
        mask = torch.zeros(n // 4, H // 4, W // 4, dtype=torch.bool)
        mask[:, :, : W // 8] = True
        return FakeStepResult(frames, frames * 0.5, mask, ChunkTiming(0.001, 0.002, 0.001, 0.001, 0.001),
                              {"points": len(self.memory.points), "bytes": 15 * len(self.memory.points),
                               "read_coverage": 0.5}, [{"frame_id": 0, "iou": 0.1}], len(self.chunks) - 1, seed)

    def evict_frames(self, keep: int) -> int:
        """The fake keeps every frame unless told how many to report (``self.evicting``)."""
        return getattr(self, "evicting", 0)

    def undo(self) -> None:
        if not self._history:
            raise MirageError("nothing to undo")
        (self.video, self.cameras, self.chunks, self.memory.points, self.memory.colors,
         state) = self._history.pop()
        self.generator.set_state(state)

    def save(self, path) -> None:
        body = {"video": self.video.tolist(), "K": self.cameras.K.tolist(),
                "cam2world": self.cameras.cam2world.tolist(), "hw": list(self.cameras.hw), "chunks": self.chunks,
                "points": self.memory.points.tolist(), "colors": self.memory.colors.tolist(),
                "generator": self.generator.get_state().tolist(), "seed": self.config.seed,
                "start": getattr(self, "start", None),
                "steps": self.config.steps}
        text = json.dumps(body)
        digest = hashlib.sha256(text.encode()).hexdigest()
        with open(path, "w") as f:
            json.dump({"format": "fake-session", "sha256": digest, "body": text}, f)

    @classmethod
    def load(cls, path, backbone, *, depth_estimator=None, masker=None, history: int = 8) -> "FakeSession":
        try:
            with open(path) as f:
                data = json.load(f)
            if data.get("format") != "fake-session":
                raise ValueError("foreign file")
            if hashlib.sha256(data["body"].encode()).hexdigest() != data["sha256"]:
                raise ValueError("checksum mismatch")
            body = json.loads(data["body"])
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise MirageError(f"not a session file: {err}") from None
        self = cls.__new__(cls)
        self.backbone = backbone
        self.config = SimpleNamespace(seed=body["seed"], steps=body["steps"])
        self.video = torch.tensor(body["video"])
        H, W = body["hw"]
        self.cameras = Camera(torch.tensor(body["K"]), torch.tensor(body["cam2world"]), H, W)
        self.chunks = body["chunks"]
        self.memory = FakeMemory()
        self.memory.points = torch.tensor(body["points"]).reshape(-1, 3)
        self.memory.colors = torch.tensor(body["colors"], dtype=torch.uint8).reshape(-1, 3)
        self.generator = torch.Generator()
        self.generator.set_state(torch.tensor(body["generator"], dtype=torch.uint8))
        self._history = []
        self.start = body.get("start")
        return self
