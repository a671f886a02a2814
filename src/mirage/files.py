"""Writing files safely: a reader never sees a half-written output."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from mirage.errors import FileFormatError

__all__ = ["atomic_path", "line_logger", "save_safetensors", "load_safetensors", "read_npy_header"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp"):
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    ``suffix`` ends the temporary name (writers that pick a format from the extension, such as
    ffmpeg, need the real one). On an exception the temporary file is removed and ``path`` is
    left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes 0600 (and some writers re-create the file); the result is an ordinary
        # output file
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_safetensors(path: str | os.PathLike, tensors: dict, metadata: dict[str, str]) -> None:
    """Write ``tensors`` (contiguous CPU copies) with string ``metadata``, atomically. No pickle."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata)


def load_safetensors(path: str | os.PathLike, what: str) -> tuple[dict, dict[str, str]]:
    """(tensors, metadata) of a safetensors file; ``what`` names the file kind in errors.

    A missing, truncated or foreign file raises :class:`mirage.errors.MemoryFormatError`.
    """
    from safetensors import safe_open

    from mirage.errors import MemoryFormatError

    path = Path(path)
    if not path.is_file():
        raise MemoryFormatError(f"{what} {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise MemoryFormatError(
            f"{str(path)!r} is not a readable safetensors {what} (truncated or corrupt): {err}"
        ) from None
    return tensors, metadata


def line_logger(path: str | os.PathLike, echo=None):
    """A function that appends each line it gets to the log file ``path``, time-stamped, and
    passes it on to ``echo`` (e.g. a progress printer) when given."""
    import time

    def note(line: str) -> None:
        with open(path, "a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")
        if echo is not None:
            echo(line)

    return note


def read_npy_header(fh, label: str, kinds: str = "fiu"):  # → (shape, fortran_order, dtype)
    """(shape, fortran_order, dtype) from an open .npy stream, now positioned at its data, read
    before any data so a caller can bound what it will read; the dtype's kind must be one of
    ``kinds`` (numbers by default; never Python objects)."""
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(fh)
        read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, fortran, dtype = read(fh)
    except (ValueError, OSError, SyntaxError, EOFError) as err:
        raise FileFormatError(f"{label} is not a readable .npy array: {err}") from None
    if dtype.kind not in kinds or dtype.hasobject:
        raise FileFormatError(f"{label} must hold numbers but holds {dtype}")
    return tuple(int(n) for n in shape), bool(fortran), dtype
