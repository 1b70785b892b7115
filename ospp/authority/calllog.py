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


def append(home: Path, entry: dict[str, Any]) -> Path:
    """Append one call to the log, atomically."""
    path = log_path(home)
    line = (json.dumps(entry, sort_keys=True, ensure_ascii=True) + "\n").encode("ascii")
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
    try:
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, flags, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StoreError(
            E_ACCESS_DENIED,
            N_(
                "cannot append to the call log {path}: {why}",
                path=str(path),
                why=str(exc.strerror),
            ),
        ) from exc
    return path


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
