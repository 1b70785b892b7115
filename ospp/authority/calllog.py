"""The phone centre's call log: one JSON line per call in ``<OSPP_CENTER_HOME>/phone-calls.jsonl``.

Each call is appended with a single ``write`` on a file opened for appending, so concurrent
consoles never interleave or lose lines; a line is never rewritten.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

from ospp.core.errors import E_ACCESS_DENIED, N_, StoreError

CALL_LOG = "phone-calls.jsonl"


def log_path(home: Path) -> Path:
    return home / CALL_LOG


class CallLog:
    """The call log of one call. Checked when the call starts, creating nothing (a log that
    cannot be written, such as a directory in its place, is said before the caller reads
    anything); then opened, made if need be, just before the centre confirms (:meth:`open`):
    a log that cannot be opened stops the call before an activation is used, whatever the
    reason (a link to a directory that is not there, an ACL the check cannot see)."""

    def __init__(self, home: Path) -> None:
        self.path = log_path(home)
        self.fd: int | None = None
        why = _why_unwritable(home, self.path)
        if why is not None:
            raise _unwritable(self.path, why, _NOTHING_CONFIRMED)

    def open(self) -> None:
        """Open the log for appending, before anything is confirmed."""
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
        flags |= getattr(os, "O_NONBLOCK", 0)  # a FIFO in its place would block the open
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(self.path, flags, 0o600)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # a FIFO no one reads, a device with no driver
                    raise
                raise OSError(errno.EINVAL, "not a regular file", str(self.path)) from exc
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise OSError(errno.EINVAL, "not a regular file", str(self.path))
        except OSError as exc:
            raise _unwritable(self.path, str(exc.strerror or exc), _NOTHING_CONFIRMED) from exc
        self.fd = fd

    def append(self, entry: dict[str, Any]) -> None:
        """Append one call, with a single ``write`` on the file opened for appending."""
        line = (json.dumps(entry, sort_keys=True, ensure_ascii=True) + "\n").encode("ascii")
        if self.fd is None:
            self.open()
        assert self.fd is not None
        try:
            os.write(self.fd, line)
        except OSError as exc:
            raise _unwritable(self.path, str(exc.strerror or exc)) from exc

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


_NOTHING_CONFIRMED = N_(
    "Nothing was confirmed and no activation was used. Make the call log writable (move aside "
    "anything in its place), then take the call again."
)


def _why_unwritable(home: Path, path: Path) -> str | None:
    """Why appending to the call log would fail, found without creating anything."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:  # made by the first call; a new home is made with the authority
        if home.exists() and not os.access(home, os.W_OK):
            return os.strerror(errno.EACCES)
        return None
    except OSError as exc:
        return str(exc.strerror or exc)
    if stat.S_ISDIR(mode):
        return os.strerror(errno.EISDIR)
    if not stat.S_ISREG(mode):
        return "not a regular file"
    if not os.access(path, os.W_OK):
        return os.strerror(errno.EACCES)
    return None


def _unwritable(path: Path, why: str, hint: str | None = None) -> StoreError:
    return StoreError(
        E_ACCESS_DENIED,
        N_("cannot append to the call log {path}: {why}", path=str(path), why=why),
        hint,
    )


def append(home: Path, entry: dict[str, Any]) -> Path:
    """Append one call to the log, atomically."""
    log = CallLog(home)
    try:
        log.append(entry)
    finally:
        log.close()
    return log.path


def read(home: Path) -> list[dict[str, Any]]:
    """Every logged call, oldest first (a torn or foreign line is skipped)."""
    path = log_path(home)
    if not path.exists():
        return []
    calls = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            calls.append(value)
    return calls
