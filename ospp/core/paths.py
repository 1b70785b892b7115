"""Where state lives: path from the environment, else the platformdirs user data dir.

Paths are passed as ``str`` or any ``os.PathLike`` (:data:`StrPath`) and, on the way of every
command (finding a home, opening a store, reading a state file: :mod:`ospp.core.files`),
handled with ``os.path``:
``pathlib`` imports ``urllib.parse`` and ``ipaddress``, which cost a short command such as
``ospp /dstatus`` about a tenth of its start-up (README, "Start-up"). Code off that way uses
``pathlib.Path`` as usual.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Mapping
from types import ModuleType
from typing import TypeAlias

from ospp.core.errors import E_INVALID_DATA, N_, StoreError, UsageError

StrPath: TypeAlias = "str | os.PathLike[str]"

APP = "ospp"
LOCAL_MACHINE = "localhost"
_MACHINE_NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"


def _data_dir() -> str:
    import platformdirs  # imported only when no directory is given: it costs start-up time

    return pathlib_form(platformdirs.user_data_dir(APP, appauthor=False))


def _env_dir(environ: Mapping[str, str], name: str) -> str | None:
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
    return pathlib_form(value)


def ospp_home(environ: Mapping[str, str] = os.environ) -> str:
    """The client's home: ``OSPP_HOME`` or the platformdirs user data dir."""
    return _env_dir(environ, "OSPP_HOME") or _data_dir()


def _role_home(environ: Mapping[str, str], name: str, sub: str) -> str:
    explicit = _env_dir(environ, name)
    if explicit is not None:
        return explicit
    home = _env_dir(environ, "OSPP_HOME")  # a sandboxed rehearsal keeps every role inside
    return os.path.join(home or _data_dir(), sub)


def center_home(environ: Mapping[str, str] = os.environ) -> str:
    """The activation authority's home: ``OSPP_CENTER_HOME``, else ``$OSPP_HOME/center``,
    else ``<data dir>/center``."""
    return _role_home(environ, "OSPP_CENTER_HOME", "center")


def kms_home(environ: Mapping[str, str] = os.environ) -> str:
    """A KMS host's home: ``OSPP_KMS_HOME``, else ``$OSPP_HOME/kms``, else ``<data dir>/kms``."""
    return _role_home(environ, "OSPP_KMS_HOME", "kms")


def machine_name(raw: str | None) -> str:
    """Validate a simulated ComputerName; ``None``, ``.`` and ``localhost`` are this machine."""
    if raw is None or raw in (".", ""):
        return LOCAL_MACHINE
    name = raw.strip().lower()
    if not re.match(_MACHINE_NAME, name):
        raise UsageError(
            N_("computer name {raw!r} is not valid", raw=raw),
            N_("Use 1-63 letters, digits, '.', '-' or '_', starting with a letter or digit."),
        )
    # Each machine is a directory named after it: a name Windows cannot hold is refused on
    # every system, so that a fleet rehearsed here can be exported to a Windows machine.
    why = windows_name_problem(name)
    if why is not None:
        raise UsageError(
            N_(
                "computer name {raw!r} is not valid: {why}, and each machine is a directory",
                raw=raw,
                why=why,
            ),
            N_("Choose another name."),
        )
    return name


# Device names Windows reserves in every directory, alone or before a dot (nul.txt is NUL).
_WINDOWS_DEVICES = frozenset(
    ["con", "prn", "aux", "nul", *(f"{port}{n}" for port in ("com", "lpt") for n in range(10))]
)


def windows_name_problem(name: str) -> str | None:
    """Why a valid (lower-case) machine name cannot be a directory name on Windows, or None.

    Windows reserves the device names CON, PRN, AUX, NUL, COM0-9 and LPT0-9, with or without
    an extension, and drops a trailing dot, so that ``pc.`` would be the same directory as
    ``pc``. Names differing only in case cannot collide: machine names are lower case.
    """
    if name.split(".", 1)[0] in _WINDOWS_DEVICES:
        return N_(
            "{device} is a device name Windows reserves", device=name.split(".", 1)[0].upper()
        )
    if name.endswith("."):
        return N_("Windows drops a trailing dot from a file name")
    return None


def machine_dir(home: StrPath, name: str) -> str:
    return os.path.join(home, "machines", name)


def machines_root(home: StrPath) -> str:
    """``<home>/machines``, the directory of every simulated machine (it may not exist yet);
    anything else in its place is a StoreError naming it, and is left as it is."""
    root = os.path.join(home, "machines")
    if os.path.lexists(root) and not is_dir(root):
        raise StoreError(
            E_INVALID_DATA,
            f"{root} is not a directory: it should hold one directory per simulated machine",
            "It was left as it is. Restore the directory from a backup, or move the file aside "
            "to start with no machines.",
        )
    return root


# The errors pathlib's exists(), is_file() and is_dir() take for "nothing there" (ENOENT,
# ENOTDIR, EBADF, ELOOP; on Windows a drive not ready, an invalid name, a link to itself)
_NOT_THERE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP})
_NOT_THERE_WINDOWS = frozenset({21, 123, 1921})


def stat_if_there(path: StrPath) -> os.stat_result | None:
    """``os.stat(path)``, or None when nothing is there, as ``Path.exists()`` tells it; any
    other error (a directory on the way that may not be entered) raises OSError."""
    try:
        return os.stat(path)
    except OSError as exc:
        if exc.errno in _NOT_THERE or getattr(exc, "winerror", None) in _NOT_THERE_WINDOWS:
            return None
        raise
    except ValueError:  # a NUL in the name: nothing can be there
        return None


def exists(path: StrPath) -> bool:
    """``Path(path).exists()``, without pathlib."""
    return stat_if_there(path) is not None


def _parts(path: str, flavour: ModuleType) -> tuple[str, str, list[str]]:
    """``path``'s drive, root and names as pathlib (Python 3.11) parses them: separators (and
    Windows' ``/``) collapsed, ``.`` dropped, ``..`` kept; POSIX keeps exactly two leading
    slashes."""
    sep = flavour.sep
    if flavour.altsep:
        path = path.replace(flavour.altsep, sep)
    if sep == "\\":
        drive, root, rest = _split_windows(path)
    else:
        drive, rest = "", path.lstrip(sep)
        two = path.startswith("//") and not path.startswith("///")
        root = "//" if two else sep if path.startswith(sep) else ""
    return drive, root, [p for p in rest.split(sep) if p and p != "."]


_DRIVE_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _split_windows(path: str) -> tuple[str, str, str]:
    r"""A Windows path's drive (``C:``, ``\\server\share``, ``\\?\C:``,
    ``\\?\UNC\server\share``), root and the rest, as pathlib splits them: two backslashes
    that lead to no share name start a root, not a drive."""
    sep = "\\"
    prefix = ""
    if path.startswith("\\\\?\\"):  # an extended-length path
        prefix, path = path[:4], path[4:]
        if path.startswith("UNC\\"):
            prefix, path = prefix + path[:3], sep + path[3:]
    if path[:2] == sep * 2 and path[2:3] != sep:
        index = path.find(sep, 2)
        if index != -1:
            end = path.find(sep, index + 1)
            if end != index + 1:  # a share: no two separators in a row after the first two
                end = len(path) if end == -1 else end
                drive = prefix + path[1:end] if prefix else path[:end]
                return drive, sep, path[end + 1 :]
    drive = ""
    if path[1:2] == ":" and path[:1] in _DRIVE_LETTERS:
        drive, path = path[:2], path[2:]
    root = sep if path.startswith(sep) else ""
    return prefix + drive, root, path.lstrip(sep)


def pathlib_form(path: str, flavour: ModuleType = os.path) -> str:
    """``str(Path(path))``: how ospp names a path it was given (``OSPP_HOME=/srv//lab/`` is
    ``/srv/lab``), without pathlib."""
    drive, root, names = _parts(path, flavour)
    return drive + root + flavour.sep.join(names) or "."


def parent(path: StrPath, flavour: ModuleType = os.path) -> str:
    """``str(Path(path).parent)``: the directory ``path`` is in (``.`` for a bare name; the
    root's parent is the root)."""
    drive, root, names = _parts(os.fspath(path), flavour)
    return drive + root + flavour.sep.join(names[:-1]) or "."


def is_dir(path: StrPath) -> bool:
    """``Path(path).is_dir()``, without pathlib."""
    found = stat_if_there(path)
    return found is not None and stat.S_ISDIR(found.st_mode)
