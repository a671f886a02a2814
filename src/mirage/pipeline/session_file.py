"""The session file: one safetensors file with JSON metadata, versioned, no pickle.

Metadata (strings): ``format`` = "mirage.session", ``version``, ``session`` (JSON: the config,
the memory input it resolved to (``branch``, ``inject`` or ``both``), the prompt, the backbone's
kind and sizes, the chunks with their seeds, timings, memory stats, references, the walk's
``start`` record or null (:mod:`mirage.pipeline.start_record`), the update depth: estimator name
and kind, frame 0's map and the per-chunk alignment records), ``memory`` (JSON of the memory's
own metadata, :mod:`mirage.memory.format`; absent for ``none``) and ``digest`` (SHA-256 of every
tensor and of the two JSON strings).
Tensors (F frames, T latent frames):

- ``latents`` (T, C, h, w) as the backbone made them; ``read_latents`` float32 (T, C, h, w) and
  ``read_mask`` bool (T, h, w): the read each latent frame was conditioned on;
- ``K`` (F, 3, 3) and ``cam2world`` (F, 4, 4): the cameras;
- ``frames`` uint8 (F, 3, H, W) and, with ``decode_reads``, ``reads`` uint8 (F, 3, H, W): the
  video and the decoded reads, 8 bits per channel (what a loaded session's ``video`` shows);
- ``generator`` uint8: the sampling generator's state;
- ``memory.<name>``: the memory's tensors (:func:`mirage.memory.format.memory_to_tensors`).

The undo history is not saved. What a step depends on (latents, cameras, memory, generator
state, config) is saved exactly, so a loaded session continues with exactly the frames the saved
one would have made. Everything read is checked before use: a missing, foreign, truncated,
tampered or newer file, or one saved with another kind of backbone, raises
:class:`~mirage.errors.SessionFormatError` and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, fields

import torch
from torch import Tensor

from mirage.errors import MirageError, SessionFormatError
from mirage.files import load_safetensors, save_safetensors
from mirage.geometry import Camera
from mirage.pipeline.config import PipelineConfig
from mirage.video import to_uint8
from mirage.pipeline.output import TIMING_KEYS, ChunkTiming
from mirage.pipeline.plan import check_chunks, plan_from_sizes

__all__ = ["SESSION_FORMAT", "SESSION_VERSION", "save_session", "load_session"]

SESSION_FORMAT = "mirage.session"
SESSION_VERSION = 1
_MEMORY_PREFIX = "memory."
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


# PipelineConfig fields added after the first session files: a file without them loads with their
# defaults (a file written before the memory input existed used the trained branch).
_LATER_FIELDS = frozenset({"memory_input", "inject_until", "inject_max_offset", "inject_feather", "depth_align",
                           "memory_dtype"})


def _backbone_info(backbone) -> dict:
    return {"kind": type(backbone).__name__, "latent_channels": backbone.latent_channels,
            "spatial_stride": backbone.spatial_stride, "temporal_stride": backbone.temporal_stride,
            "max_frames": backbone.max_frames}


def _estimator_name(estimator) -> str:
    return getattr(estimator, "name", type(estimator).__name__)


def _digest(tensors: dict[str, Tensor], *texts: str) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.flatten().view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    for text in texts:
        h.update(b"|" + text.encode())
    return h.hexdigest()


def _saved_config(config: PipelineConfig) -> dict:
    """The config as a file holds it: without ``memory_device`` (where the memory lives is the
    loader's choice, so a file saved on one device loads on another)."""
    saved = asdict(config)
    del saved["memory_device"]
    return saved


def save_session(path, session) -> None:
    """Write ``session`` to ``path`` atomically (module docstring)."""
    from mirage.memory.format import memory_to_tensors

    tensors = {
        "latents": session.latents.permute(1, 0, 2, 3),  # (T, C, h, w)
        "read_latents": torch.stack(session._read_latents),
        "read_mask": torch.stack(session._read_masks),
        "K": session.cameras.K, "cam2world": session.cameras.cam2world,
        "frames": to_uint8(session.video),  # from frame session.evicted_frames on
        "generator": session._generator.get_state(),
    }
    if session.config.decode_reads:
        tensors["reads"] = to_uint8(torch.cat(session._reads))
    memory_meta = None
    if session.memory is not None:
        memory_tensors, memory_meta = memory_to_tensors(session.memory)
        tensors |= {_MEMORY_PREFIX + k: v for k, v in memory_tensors.items()}
    info = {
        "config": _saved_config(session.config), "memory_input": session.memory_input, "text": session.text,
        "backbone": _backbone_info(session.backbone),
        "chunks": session.chunks, "evicted": session.evicted_frames,
        "timings": [vars(t) for t in session._timings],
        "init_seconds": session.init_seconds, "init_write_seconds": session.init_write_seconds,
        "memory_stats": session._stats, "references": session._references,
        "start": session.start,
        "depth": {"estimator": _estimator_name(session.depth_estimator), "kind": session.depth_kind,
                  "base": list(session._depth_base)},
        "depth_alignment": session._depth_records,
    }
    metadata = {"format": SESSION_FORMAT, "version": str(SESSION_VERSION), "session": json.dumps(info)}
    if memory_meta is not None:
        metadata["memory"] = json.dumps(memory_meta)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    metadata["digest"] = _digest(tensors, metadata["session"], metadata.get("memory", ""))
    save_safetensors(path, tensors, metadata)


def load_session(path, cls, backbone, *, depth_estimator, masker, history: int, memory_device=None):
    """The session saved in ``path`` as a ``cls`` (module docstring)."""
    source = repr(str(path))

    def fail(message: str):
        raise SessionFormatError(f"session file {source}: {message}")

    try:
        tensors, metadata = load_safetensors(path, "session file")
    except MirageError as err:
        raise SessionFormatError(str(err)) from None
    if metadata.get("format") != SESSION_FORMAT:
        fail(f"not a mirage session (format metadata is {metadata.get('format')!r}, expected {SESSION_FORMAT!r})")
    if metadata.get("version") != str(SESSION_VERSION):
        fail(f"session format version {metadata.get('version')!r}; this mirage reads version {SESSION_VERSION}")
    if metadata.get("digest") != _digest(tensors, metadata.get("session", ""), metadata.get("memory", "")):
        fail("its contents do not match its digest (the file was modified or damaged)")
    try:
        info = json.loads(metadata.get("session", ""))
    except json.JSONDecodeError as err:
        fail(f"its session metadata is not JSON: {err}")
    try:
        return _build(cls, backbone, tensors, metadata, info, depth_estimator, masker, history, fail, memory_device)
    except SessionFormatError:
        raise
    except (MirageError, KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
        fail(f"{type(err).__name__}: {err}")


def _build(cls, backbone, tensors, metadata, info, depth_estimator, masker, history, fail, memory_device=None):
    from mirage.memory.format import memory_from_tensors
    from mirage.pipeline.start_record import parse_record

    if not isinstance(info, dict):
        fail("its session metadata is not an object")
    names = {f.name for f in fields(PipelineConfig)} - {"memory_device"}
    config = info["config"]
    if not isinstance(config, dict) or not set(config) <= names or not names - _LATER_FIELDS <= set(config):
        fail(f"`config` must hold the fields {sorted(names)} ({sorted(_LATER_FIELDS)} may be missing)")
    config = PipelineConfig(**config, memory_device=memory_device)
    if info["backbone"] != _backbone_info(backbone):
        fail(f"it was saved with the backbone {info['backbone']} but is loaded with {_backbone_info(backbone)}")
    text = info["text"]
    if text is not None and not isinstance(text, str):
        fail("`text` must be a string or null")
    session = cls.__new__(cls)
    session._setup(backbone, config, depth_estimator, masker, text, history)
    if info.get("memory_input", session.memory_input) != session.memory_input:
        fail(f"it was generated with memory input {info['memory_input']!r} but would continue with "
             f"{session.memory_input!r}")

    # chunks → the plan, and the sizes every tensor must have
    chunks = info["chunks"]
    if not isinstance(chunks, list):
        fail("`chunks` must be a list")
    tau, s, C = backbone.temporal_stride, backbone.spatial_stride, backbone.latent_channels
    n_new = sum(c["frames"] for c in chunks) if all(isinstance(c, dict) and isinstance(c.get("frames"), int)
                                                   for c in chunks) else -1
    if chunks:
        chunks = check_chunks(chunks, n_new + 1, tau, backbone.max_frames)
    plan = plan_from_sizes([c["frames"] for c in chunks], tau, backbone.max_frames)
    F, T = 1 + max(n_new, 0), 1 + max(n_new, 0) // tau
    # frames let go by evict_frames: whole leading segments (frame 0, then one per chunk)
    segments = [(0, 1)] + [(c.start_frame + 1, c.end_frame + 1) for c in plan]
    evicted = info.get("evicted", 0)
    if isinstance(evicted, bool) or not isinstance(evicted, int) or evicted not in [a for a, _ in segments]:
        fail(f"`evicted` must be 0 or the first frame of a chunk but is {evicted!r}")
    expected = {"latents", "read_latents", "read_mask", "K", "cam2world", "frames", "generator"}
    if config.decode_reads:
        expected.add("reads")
    plain = {k for k in tensors if not k.startswith(_MEMORY_PREFIX)}
    if plain != expected:
        fail(f"holds the tensors {sorted(plain)}, expected {sorted(expected)}")
    cameras = Camera(tensors["K"], tensors["cam2world"], *_hw(tensors["frames"], fail))
    H, W = cameras.hw
    if len(cameras) != F or H % s or W % s:
        fail(f"holds {len(cameras)} cameras of {H}x{W}, expected {F} (the chunks' frames) of a size divisible by {s}")
    h, w = H // s, W // s
    latents, reads, mask = tensors["latents"], tensors["read_latents"], tensors["read_mask"]
    for name, t, shape, dtypes in (("latents", latents, (T, C, h, w), _FLOAT_DTYPES),
                                   ("read_latents", reads, (T, C, h, w), (torch.float32,)),
                                   ("read_mask", mask, (T, h, w), (torch.bool,)),
                                   ("frames", tensors["frames"], (F - evicted, 3, H, W), (torch.uint8,)),
                                   ("reads", tensors.get("reads"), (F - evicted, 3, H, W), (torch.uint8,))):
        if t is None and name == "reads":
            continue
        if tuple(t.shape) != shape or t.dtype not in dtypes:
            fail(f"tensor {name!r} is {t.dtype} {tuple(t.shape)}, expected {shape} of {dtypes}")
        if t.is_floating_point() and not torch.isfinite(t).all():
            fail(f"tensor {name!r} holds NaN or inf")
    state = tensors["generator"]
    if state.dtype != torch.uint8 or state.shape != session._generator.get_state().shape:
        fail(f"tensor 'generator' is {state.dtype} {tuple(state.shape)}, expected a CPU generator state")
    session._generator.set_state(state)

    # the memory
    memory_tensors = {k[len(_MEMORY_PREFIX):]: v for k, v in tensors.items() if k.startswith(_MEMORY_PREFIX)}
    mode = session._mode
    if mode.memory is None:
        if memory_tensors or "memory" in metadata:
            fail(f"holds a memory, but its memory mode is {config.memory_mode!r}")
    else:
        if "memory" not in metadata:
            fail(f"holds no memory, but its memory mode is {config.memory_mode!r}")
        try:
            memory = memory_from_tensors(memory_tensors, json.loads(metadata["memory"]), type(mode.memory),
                                         device=session.memory_device, source="its memory")
        except (MirageError, json.JSONDecodeError) as err:
            fail(str(err))
        if memory.fusion != mode.memory.fusion or getattr(memory, "channels", None) != getattr(mode.memory, "channels", None):
            fail(f"its memory (fusion {memory.fusion!r}) does not match its config (fusion {mode.memory.fusion!r})")
        mode.memory = memory

    # per-chunk records
    n = len(plan)
    timings, stats, references = info["timings"], info["memory_stats"], info["references"]
    for name, value in (("timings", timings), ("memory_stats", stats), ("references", references)):
        if not isinstance(value, list) or len(value) != n:
            fail(f"`{name}` must be a list of {n} (one per chunk)")
    device = session.device  # the file is device-independent: its tensors go where the session's live
    frames = tensors["frames"].to(device).float() / 127.5 - 1.0
    session._cameras = cameras
    session._latents = list(latents.to(device).unbind(0))
    kept = [(a - evicted, b - evicted) for a, b in segments if a >= evicted]
    session._evicted = evicted
    session._video = [frames[a:b] for a, b in kept]
    if config.decode_reads:
        reads_px = tensors["reads"].to(device).float() / 127.5 - 1.0
        session._reads = [reads_px[a:b] for a, b in kept]
    else:
        session._reads = []
    session._read_latents = list(reads.to(device).unbind(0))
    session._read_masks = list(mask.to(device).unbind(0))
    session._plan, session._chunks = plan, chunks
    session._timings = [ChunkTiming(**{k: float(t[k]) for k in TIMING_KEYS}) for t in timings]
    session._stats, session._references = stats, references
    # the update depth (absent in files from before relative depth: a metric estimator's)
    depth = info.get("depth", {"estimator": None, "kind": "metric", "base": [1.0, 0.0]})
    if not isinstance(depth, dict) or depth.get("kind") not in ("metric", "relative"):
        fail("`depth` must be an object with `kind` 'metric' or 'relative'")
    if depth["estimator"] is not None and (depth["estimator"], depth["kind"]) != (
            _estimator_name(depth_estimator), session.depth_kind):
        fail(f"it was saved with the update depth {depth['estimator']!r} ({depth['kind']}) but is loaded with "
             f"{_estimator_name(depth_estimator)!r} ({session.depth_kind}); load it with the same depth estimator")
    base = depth.get("base")
    if not (isinstance(base, list) and len(base) == 2 and all(isinstance(v, (int, float)) and math.isfinite(v)
                                                              for v in base)):
        fail(f"`depth.base` must be two finite numbers but is {base!r}")
    session._depth_base = (float(base[0]), float(base[1]))
    records = info.get("depth_alignment", [None] * n)
    if not isinstance(records, list) or len(records) != n or not all(r is None or isinstance(r, dict) for r in records):
        fail(f"`depth_alignment` must be a list of {n} (one per chunk)")
    session._depth_records = records
    session.init_seconds = float(info["init_seconds"])
    session.init_write_seconds = float(info["init_write_seconds"])
    session.start = parse_record(info.get("start"), "its `start`")
    return session


def _hw(frames: Tensor, fail) -> tuple[int, int]:
    if frames.ndim != 4:
        fail(f"tensor 'frames' must be (F, 3, H, W) but is {tuple(frames.shape)}")
    return int(frames.shape[2]), int(frames.shape[3])
