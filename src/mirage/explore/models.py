"""Every message between the page and the server, as pydantic models.

Text messages are JSON objects told apart by ``type``. Messages that carry pixels or points are
binary: a 4-byte little-endian header length, the JSON header (one of the ``*Header`` models),
then the payload it describes (:mod:`mirage.explore.wire`).

Page → server: :class:`Move`, :class:`Undo`, :class:`Reroll`, :class:`Options`, :class:`Ping`.
Server → page: :class:`Hello`, :class:`Full`, :class:`Progress`, :class:`Busy`, :class:`Error`,
:class:`Notice`, :class:`StateMessage` (text); :class:`ChunkHeader`, :class:`ViewHeader`,
:class:`PointsHeader` (binary).
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- page → server -----------------------------------------------------------------------------
class Move(_Message):
    """One step: the next chunk's cameras go from the current pose to the pose moved by
    ``forward``/``right`` metres along the level heading, ``up`` metres against gravity and
    turned by ``yaw`` degrees (positive: to the right). ``id`` is echoed in the chunk."""

    type: Literal["move"]
    forward: float = Field(0.0, allow_inf_nan=False)
    right: float = Field(0.0, allow_inf_nan=False)
    up: float = Field(0.0, allow_inf_nan=False)
    yaw: float = Field(0.0, allow_inf_nan=False)
    id: int = 0


class Undo(_Message):
    type: Literal["undo"]


class Reroll(_Message):
    """Generate the last chunk again with a new seed (``seed`` None: the server picks one)."""

    type: Literal["reroll"]
    seed: int | None = Field(None, ge=0, lt=2**63)


class Options(_Message):
    """What the page wants sent with each chunk."""

    type: Literal["options"]
    ground_truth: bool = False


class Ping(_Message):
    type: Literal["ping"]


ClientMessage = Annotated[Union[Move, Undo, Reroll, Options, Ping], Field(discriminator="type")]
CLIENT_MESSAGE = TypeAdapter(ClientMessage)


# -- server → page (text) ----------------------------------------------------------------------
class Hello(_Message):
    type: Literal["hello"] = "hello"
    session: str
    height: int
    width: int
    backbone: str
    memory_mode: str
    memory_input: str
    source: dict
    has_ground_truth: bool
    step_frames: int
    steps: int
    move_step: float
    turn_step_deg: float
    rise_step: float
    max_upload_bytes: int
    max_message_bytes: int


class Full(_Message):
    type: Literal["full"] = "full"
    message: str


class Progress(_Message):
    """Denoising step ``step`` of ``steps`` of the chunk being generated (Wan2.2 takes seconds)."""

    type: Literal["progress"] = "progress"
    step: int
    steps: int


class Busy(_Message):
    type: Literal["busy"] = "busy"
    message: str


class Error(_Message):
    type: Literal["error"] = "error"
    message: str


class Notice(_Message):
    """Something the person should know that is not an error (eviction, idle close)."""

    type: Literal["notice"] = "notice"
    message: str


class StateMessage(_Message):
    """The whole walk after a change that is not a new chunk (start, undo, load, re-roll).

    source: what the world started from (``Hello.source``; it changes on a start from an image
    and on a load). has_ground_truth: whether the world can show ground truth.
    path: camera centres of every frame, world coordinates (OpenCV axes, y down).
    pose: the current cam2world (4×4, row-major, flattened)."""

    type: Literal["state"] = "state"
    reason: str
    source: dict
    has_ground_truth: bool
    frames: int
    chunks: int
    path: list[list[float]]
    pose: list[float]
    fov_x_deg: float


# -- server → page (binary headers) ------------------------------------------------------------
class Timing(BaseModel):
    read: float
    denoise: float
    decode: float
    depth: float
    update: float
    total: float
    wall: float  # seconds from the job leaving the queue to its frames being ready


class ChunkStats(BaseModel):
    points: int
    bytes: int
    coverage: float
    references: list[dict]
    evicted: int = 0


class ChunkHeader(_Message):
    """``frames`` new frames, each ``height``×``width`` RGB uint8, then as many read frames
    (coverage-tinted) when ``has_reads``, then as many ground-truth frames when
    ``has_ground_truth``. ``cameras``: the new frames' cam2world (flattened 4×4)."""

    type: Literal["chunk"] = "chunk"
    move_id: int | None
    chunk_index: int
    seed: int | None
    frames: int
    height: int
    width: int
    has_reads: bool
    has_ground_truth: bool
    cameras: list[list[float]]
    # relative update depth: how the chunk's frames were aligned to the memory (Session.depth_alignment)
    depth_alignment: dict | None = None
    timing: Timing
    stats: ChunkStats
    total_frames: int


class ViewHeader(_Message):
    """One frame to show as the current view (after start, undo, load), RGB uint8."""

    type: Literal["view"] = "view"
    height: int
    width: int
    has_ground_truth: bool


class PointsHeader(_Message):
    """``count`` points: float32 xyz (world, OpenCV axes) then uint8 rgb. ``total``: points in
    memory (``count`` is a subsample when larger than the server's limit)."""

    type: Literal["points"] = "points"
    count: int
    total: int
