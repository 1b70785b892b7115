"""The phone centre's call log: one JSON line per call in ``<OSPP_CENTER_HOME>/phone-calls.jsonl``.

Each call is appended with a single ``write`` on a file opened for appending, so concurrent
consoles never interleave or lose lines; a line is never rewritten.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ospp.core.errors import E_ACCESS_DENIED, N_, StoreError

CALL_LOG = "phone-calls.jsonl"


def log_path(home: Path) -> Path:
    return home / CALL_LOG


class CallLog:
    """The call log, open for appending for one call. Opened before the call is answered, so
    a log that cannot be written (a directory in its place, no permission) stops the call
    before the centre confirms anything and uses an activation."""

    def __init__(self, home: Path) -> None:
        self.path = log_path(home)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
        try:
            home.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise _unwritable(self.path, exc, _NOTHING_CONFIRMED) from exc

    def append(self, entry: dict[str, Any]) -> None:
        """Append one call, with a single ``write``."""
        line = (json.dumps(entry, sort_keys=True, ensure_ascii=True) + "\n").encode("ascii")
        try:
            os.write(self._fd, line)
        except OSError as exc:
            raise _unwritable(self.path, exc) from exc

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> CallLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_NOTHING_CONFIRMED = N_(
    "Nothing was confirmed and no activation was used. Make the call log writable (move aside "
    "anything in its place), then take the call again."
)


def _unwritable(path: Path, exc: OSError, hint: str | None = None) -> StoreError:
    return StoreError(
        E_ACCESS_DENIED,
        N_(
            "cannot append to the call log {path}: {why}",
            path=str(path),
            why=str(exc.strerror),
        ),
        hint,
    )


def append(home: Path, entry: dict[str, Any]) -> Path:
    """Append one call to the log, atomically."""
    with CallLog(home) as log:
        log.append(entry)
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
