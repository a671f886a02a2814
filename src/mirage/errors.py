"""Project exceptions.

Every user-facing error is a subclass of :class:`MirageError`, itself a ``ValueError``, and its
message names the argument, what was expected and what arrived.
"""

from __future__ import annotations

__all__ = [
    "MirageError",
    "ShapeError",
    "NonFiniteError",
    "CameraError",
    "ConfigError",
    "MemoryFormatError",
    "FileFormatError",
    "SessionError",
    "SessionFormatError",
]


class MirageError(ValueError):
    """Base class of every error mirage raises for bad input."""


class ShapeError(MirageError):
    """A tensor has the wrong shape, or two tensors disagree on a shared dimension."""


class NonFiniteError(MirageError):
    """A tensor that must be finite holds NaN or inf."""


class CameraError(MirageError):
    """Intrinsics or poses are not a valid pinhole camera (fx/fy <= 0, non-rigid pose, ...)."""


class ConfigError(MirageError):
    """An option or setting has an invalid value."""


class MemoryFormatError(MirageError):
    """A saved memory file is truncated, foreign, or of an unsupported format version."""


class FileFormatError(MirageError):
    """An input file (trajectory, image, geometry archive) is unreadable or malformed."""


class SessionError(MirageError):
    """A generation session was asked for something its state does not allow (e.g. an undo
    with nothing to undo)."""


class SessionFormatError(FileFormatError):
    """A saved session file is missing, truncated, foreign, tampered with, of an unsupported
    format version, or was saved with another kind of backbone."""


def expect_shape(name: str, tensor, shape: tuple) -> None:
    """Raise :class:`ShapeError` unless ``tensor.shape`` matches ``shape``.

    ``shape`` entries are ints or ``None`` (any size). The message gives both shapes.
    """
    actual = tuple(tensor.shape)
    ok = len(actual) == len(shape) and all(e is None or e == a for e, a in zip(shape, actual))
    if not ok:
        want = "(" + ", ".join("*" if e is None else str(e) for e in shape) + ")"
        raise ShapeError(f"`{name}` must have shape {want} but has shape {actual}")
