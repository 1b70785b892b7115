"""Where state lives: path from the environment, else the platformdirs user data dir."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from ospp.errors import UsageError

APP = "ospp"
LOCAL_MACHINE = "localhost"
_MACHINE_NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"


def _data_dir() -> Path:
    import platformdirs  # imported only when no directory is given: it costs start-up time

    return Path(platformdirs.user_data_path(APP, appauthor=False))


def ospp_home(environ: Mapping[str, str] = os.environ) -> Path:
    """The client's home: ``OSPP_HOME`` or the platformdirs user data dir."""
    value = environ.get("OSPP_HOME")
    return Path(value) if value else _data_dir()


def center_home(environ: Mapping[str, str] = os.environ) -> Path:
    """The activation authority's home: ``OSPP_CENTER_HOME`` or ``<data dir>/center``."""
    value = environ.get("OSPP_CENTER_HOME")
    return Path(value) if value else _data_dir() / "center"


def machine_name(raw: str | None) -> str:
    """Validate a simulated ComputerName; ``None``, ``.`` and ``localhost`` are this machine."""
    if raw is None or raw in (".", ""):
        return LOCAL_MACHINE
    name = raw.strip().lower()
    if not re.match(_MACHINE_NAME, name):
        raise UsageError(
            f"computer name {raw!r} is not valid",
            "Use 1-63 letters, digits, '.', '-' or '_', starting with a letter or digit.",
        )
    return name


def machine_dir(home: Path, name: str) -> Path:
    return home / "machines" / name
