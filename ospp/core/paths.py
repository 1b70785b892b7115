"""Where state lives: path from the environment, else the platformdirs user data dir."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

from ospp.core.errors import E_ACCESS_DENIED, StoreError, UsageError

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


def kms_home(environ: Mapping[str, str] = os.environ) -> Path:
    """A KMS host's home: ``OSPP_KMS_HOME`` or ``<data dir>/kms``."""
    value = environ.get("OSPP_KMS_HOME")
    return Path(value) if value else _data_dir() / "kms"


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


def write_atomic(path: Path, text: str, *, private: bool = False) -> None:
    """Replace ``path`` with ``text`` all at once: readers see the old file or the new one.

    The text goes to a new temporary file in the same directory (a unique name, created
    exclusively, so a planted link is never followed and concurrent writers never share it),
    is flushed to disk, and is renamed over the target (``os.replace`` is atomic on POSIX and
    Windows). ``private`` makes it owner-only. A symbolic link in place of ``path`` is refused
    with a StoreError; other failures raise OSError, which callers wrap in the error their
    context calls for.
    """
    import tempfile

    if path.is_symlink():
        raise StoreError(
            E_ACCESS_DENIED,
            f"{path} is a symbolic link (to {os.readlink(path)}); ospp does not follow links "
            "in place of its state files",
            "Replace the link with the file itself. Nothing was changed.",
        )
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            if not private:
                os.chmod(name, 0o644)  # mkstemp makes it owner-only
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; Windows has no directory handles)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
