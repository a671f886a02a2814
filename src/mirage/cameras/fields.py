"""Reading untrusted camera files: bounded reads, safe JSON, and typed fields.

Every check raises :class:`~mirage.errors.FileFormatError` in one line that names the file, the
field, what was expected and what arrived, so that no malformed file surfaces as a traceback:
deep nesting (``RecursionError``), integers past Python's 4,300-digit limit, ``null`` where an
object belongs, strings or booleans where numbers belong, and non-finite numbers (Python's JSON
reader accepts ``NaN``, ``Infinity`` and ``1e999``) are all refused by name.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from mirage.errors import FileFormatError

__all__ = ["MAX_TEXT_BYTES", "MAX_SIDE", "read_text", "read_json", "describe", "integer", "number", "matrix", "mapping"]

MAX_TEXT_BYTES = 64 * 2**20  # a camera text file larger than this is refused before it is read
MAX_SIDE = 2**20  # the largest image height or width a camera file may state


def read_text(path, what: str, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of the ``what`` file at ``path``, at most ``max_bytes`` long."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise FileFormatError(f"{what} {str(path)!r} must be a file but is not")
        if size > max_bytes:
            raise FileFormatError(f"{what} {str(path)!r} must be at most {max_bytes} bytes but is {size}")
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise FileFormatError(f"{what} {str(path)!r} does not exist") from None
    except OSError as err:
        raise FileFormatError(f"{what} {str(path)!r} is unreadable ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise FileFormatError(f"{what} {str(path)!r} must be UTF-8 text but is not ({err.reason} at "
                              f"byte {err.start})") from None


def read_json(path, what: str) -> object:
    """The JSON document in the ``what`` file at ``path``."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except RecursionError:
        raise FileFormatError(f"{what} {str(path)!r} is nested too deeply to be a camera file") from None
    except ValueError as err:  # JSONDecodeError, and ints past the digit limit
        raise FileFormatError(f"{what} {str(path)!r} is not valid JSON ({str(err).splitlines()[0]})") from None


def describe(value) -> str:
    """A short description of a JSON value for an error message (never a whole document)."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= 64 else f"an integer of {value.bit_length()} bits"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:37]) + "..."
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, dict):
        return f"an object with {len(value)} key(s)"
    return type(value).__name__


def _bad(where: str, name: str, expected: str, value) -> FileFormatError:
    return FileFormatError(f"{where}: `{name}` must be {expected} but is {describe(value)}")


def mapping(value, name: str, where: str) -> dict:
    """``value`` checked as a JSON object."""
    if not isinstance(value, dict):
        raise _bad(where, name, "an object", value)
    return value


def integer(value, name: str, where: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` checked as a JSON integer (not a bool, a float or a string) in [minimum, maximum]."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        bounds = "" if minimum is None else f" ≥ {minimum}" if maximum is None else f" in [{minimum}, {maximum}]"
        raise _bad(where, name, f"an integer{bounds}", value)
    return value


def number(value, name: str, where: str, *, finite: bool = True, positive: bool = False,
           below: float | None = None) -> float:
    """``value`` checked as a JSON number (int or float, not a bool or a string), as a float:
    finite with ``finite``, > 0 with ``positive``, < ``below`` when given."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(where, name, "a number", value)
    try:
        out = float(value)
    except OverflowError:
        raise _bad(where, name, "a number within float range", value) from None
    if finite and not math.isfinite(out):
        raise _bad(where, name, "a finite number", value)
    if positive and not out > 0:
        raise _bad(where, name, "a number > 0", value)
    if below is not None and not out < below:
        raise _bad(where, name, f"a number < {below:.6g}", value)
    return out


def matrix(value, shape: tuple[int, int], name: str, where: str) -> np.ndarray:
    """``value`` checked as a ``shape`` matrix of JSON numbers (a list of rows), as float64.
    Non-finite entries pass (the camera built from it refuses them, naming the camera)."""
    rows, cols = shape
    expected = f"a {rows}x{cols} matrix of numbers"
    if not isinstance(value, list) or len(value) != rows:
        raise _bad(where, name, expected, value)
    out = np.empty(shape, dtype=np.float64)
    for i, row in enumerate(value):
        if not isinstance(row, list) or len(row) != cols:
            raise _bad(where, f"{name}[{i}]", f"a row of {cols} numbers", row)
        for j, entry in enumerate(row):
            out[i, j] = number(entry, f"{name}[{i}][{j}]", where, finite=False)
    return out
