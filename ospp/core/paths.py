"""Where state lives: path from the environment, else the platformdirs user data dir."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from ospp.core.errors import UsageError

APP = "ospp"
LOCAL_MACHINE = "localhost"
_MACHINE_NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"


def _data_dir() -> Path:
    import platformdirs  # imported only when no directory is given: it costs start-up time

    return Path(platformdirs.user_data_path(APP, appauthor=False))


def _env_dir(environ: Mapping[str, str], name: str) -> Path | None:
    """The directory an environment variable names; an empty value is an error, never a
    silent fall-back to the real per-user store."""
    value = environ.get(name)
    if value is None:
        return None
    if not value.strip():
        raise UsageError(
            f"{name} is set but empty",
            f"Set {name} to a directory, or unset it to use the default.",
        )
    return Path(value)


def ospp_home(environ: Mapping[str, str] = os.environ) -> Path:
    """The client's home: ``OSPP_HOME`` or the platformdirs user data dir."""
    return _env_dir(environ, "OSPP_HOME") or _data_dir()


def _role_home(environ: Mapping[str, str], name: str, sub: str) -> Path:
    explicit = _env_dir(environ, name)
    if explicit is not None:
        return explicit
    home = _env_dir(environ, "OSPP_HOME")  # a sandboxed rehearsal keeps every role inside
    return (home or _data_dir()) / sub


def center_home(environ: Mapping[str, str] = os.environ) -> Path:
    """The activation authority's home: ``OSPP_CENTER_HOME``, else ``$OSPP_HOME/center``,
    else ``<data dir>/center``."""
    return _role_home(environ, "OSPP_CENTER_HOME", "center")


def kms_home(environ: Mapping[str, str] = os.environ) -> Path:
    """A KMS host's home: ``OSPP_KMS_HOME``, else ``$OSPP_HOME/kms``, else ``<data dir>/kms``."""
    return _role_home(environ, "OSPP_KMS_HOME", "kms")


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


USER_FILE_LIMIT = 1024 * 1024  # trust anchors, key files and batch files are all far smaller


def read_user_file(path: Path, what: str, limit: int = USER_FILE_LIMIT) -> str:
    """The text of a file a user named (``-`` is standard input), at most ``limit`` bytes.

    A device that never ends (``/dev/zero``), a directory, a file too large or not UTF-8 is
    refused with a UsageError naming it, instead of hanging or failing later.
    """
    import sys

    try:
        if str(path) == "-":
            data = sys.stdin.buffer.read(limit + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(limit + 1)
    except IsADirectoryError:
        raise UsageError(f"the {what} {path} is a directory, not a file") from None
    except OSError as exc:
        raise UsageError(f"cannot read the {what} {path}: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise UsageError(
            f"the {what} {path} is larger than {limit // 1024} KiB",
            f"Give the {what} itself; ospp reads at most {limit} bytes of it.",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"the {what} {path} is not UTF-8 text: {exc.reason}") from exc


def write_atomic(path: Path, text: str, *, private: bool = False) -> None:
    """Replace ``path`` with ``text`` all at once: readers see the old file or the new one.

    The text goes to a sibling temporary file, is flushed to disk, and is renamed over the
    target (``os.replace`` is atomic on POSIX and Windows). ``private`` makes it owner-only.
    Raises OSError; callers wrap it in the error their context calls for.
    """
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600 if private else 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
