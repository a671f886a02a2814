"""Argument parsers shared by the command groups."""

from __future__ import annotations

from mirage.errors import ConfigError


def parse_size(text: str) -> tuple[int, int]:
    """``"128"`` → (128, 128); ``"704x1280"`` → (704, 1280). Sizes are (height, width)."""
    parts = str(text).lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) <= 0:
        raise ConfigError(
            f"`--size` must be a positive N or HxW (e.g. 128 or 704x1280) but is {text!r}"
        )
    return values[0], values[1]


def parse_paste_reads(text: str) -> float | None:
    """``"off"`` → None; ``"0.1"`` → 0.1 (``PipelineConfig.paste_reads`` checks the range)."""
    if text == "off":
        return None
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"`--paste-reads` must be a number in [0, 0.5] or `off` but is {text!r}") from None
