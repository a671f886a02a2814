"""Optional dependencies: say in one line which extra to install, before anything needs it."""

from __future__ import annotations

import importlib.util

from mirage.errors import ConfigError

__all__ = ["require_extra"]


def require_extra(extra: str, modules: tuple[str, ...], what: str) -> None:
    """Raise :class:`ConfigError` naming ``pip install 'mirage-world[extra]'`` when any of
    ``modules`` (top-level import names) is not installed; ``what`` names the command or part."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"{what} needs {', '.join(missing)}, which is not installed: "
                          f"pip install 'mirage-world[{extra}]'")
