"""`ExploreConfig`: the explorer server's limits and step sizes, one frozen validated dataclass."""

from __future__ import annotations

from dataclasses import dataclass, fields

from mirage.errors import ConfigError

__all__ = ["ExploreConfig"]


@dataclass(frozen=True)
class ExploreConfig:
    """How the explorer serves sessions.

    step_frames: new pixel frames per key step, τ·k (4 = one latent frame of the tiny model:
        small chunks keep a key press close to its first new frame).
    max_sessions: open sessions (tabs) at once; one more gets a "server is full" message.
    idle_seconds: a session with no message for this long is closed.
    max_frames: frames a session may hold (frame 0 included); at the limit the page says so
        and offers save, undo or a new world.
    keep_frames: the decoded frames and reads (about 100 KiB a frame at 64×64) a session keeps;
        older ones are let go (``Session.evict_frames``) and the page says so once. Latents,
        cameras and the memory stay (a few KiB a frame), so the walk, save, load, undo and the
        exported path are unaffected.
    max_pending: queued steps per session; a tab that sends more gets a "busy" error.
    max_message_bytes: a WebSocket text message longer than this is refused (the session stays).
    max_upload_bytes: image, depth and world uploads larger than this are refused.
    max_image_pixels: an uploaded image (or depth map) with more pixels is refused before it is
        decoded (16.8 MP = 4096²: about 50 MB as RGB bytes).
    max_send_bytes: what a tab's connection may have waiting to be sent; a page that does not
        read its messages (or a network that cannot carry them) past this is disconnected, so it
        cannot grow the server.
    allow_origins: page origins served besides the server's own (``http://host:port``), e.g.
        behind a proxy; see :mod:`mirage.explore.guard`.
    max_points_sent: the 3D view gets at most this many memory points (an even subsample).
    move_step / turn_step_deg / rise_step: the largest move one step may make (metres, degrees).
    """

    step_frames: int = 4
    max_sessions: int = 8
    idle_seconds: float = 900.0
    max_frames: int = 2049
    keep_frames: int = 256
    max_pending: int = 3
    max_message_bytes: int = 4096
    max_upload_bytes: int = 16 * 2**20
    max_image_pixels: int = 4096 * 4096
    max_send_bytes: int = 32 * 2**20
    max_points_sent: int = 60000
    move_step: float = 1.0
    turn_step_deg: float = 45.0
    rise_step: float = 0.5
    allow_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from mirage.explore.guard import normalize_origin

        if not isinstance(self.allow_origins, (tuple, list)) or not all(isinstance(o, str) for o in self.allow_origins):
            raise ConfigError(f"`allow_origins` must be a tuple of origin strings but is {self.allow_origins!r}")
        object.__setattr__(self, "allow_origins", tuple(normalize_origin(o) for o in self.allow_origins))
        for f in fields(self):
            if f.name == "allow_origins":
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"`{f.name}` must be a number > 0 but is {value!r}")
        for name in ("step_frames", "max_sessions", "max_frames", "keep_frames", "max_pending",
                     "max_message_bytes", "max_upload_bytes", "max_points_sent", "max_image_pixels",
                     "max_send_bytes"):
            if not isinstance(getattr(self, name), int):
                raise ConfigError(f"`{name}` must be an int but is {getattr(self, name)!r}")
