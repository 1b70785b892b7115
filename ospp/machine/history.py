"""A machine's history: the KMS requests it made and the activation errors it met, kept in the
``history`` table of its licence store and shown by /dhistorykms and /dhistoryacterr.

Functions on a connection of the store (ospp.machine.store): ``MachineStore.record`` and
``MachineStore.history`` call them, importing this module only then, so that a command that
neither records nor shows history (/dstatus) does without it.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from ospp.core.catalog import Sku
from ospp.core.clock import stored_time
from ospp.core.errors import E_INVALID_DATA, N_, StoreError
from ospp.core.record import Record


class HistoryEntry(Record):
    at: datetime
    kind: str  # "kms" or "acterr"
    sku_id: str
    target: str | None
    code: int
    detail: str


def record(
    conn: sqlite3.Connection,
    at: str,
    kind: str,
    code: int,
    detail: str,
    sku: Sku,
    target: str | None = None,
) -> None:
    """Add an entry about ``sku``'s licence (an entry without one reads as damaged), at ``at``
    (ISO 8601), inside the caller's write transaction. ``detail`` may quote what a peer sent:
    a lone surrogate in it, which SQLite cannot take, is kept as its escape (``\\ud800``)."""
    detail = detail.encode("utf-8", "backslashreplace").decode("utf-8")
    conn.execute(
        "INSERT INTO history (at, kind, sku_id, target, code, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (at, kind, sku.sku_id, target, code, detail),
    )


def entries(conn: sqlite3.Connection, path: str, kind: str) -> list[HistoryEntry]:
    """The entries of one kind, oldest first; a damaged one is reported for the store at
    ``path``, which is left as it is."""
    rows = conn.execute(
        "SELECT at, kind, sku_id, target, code, detail FROM history WHERE kind=? ORDER BY id",
        (kind,),
    ).fetchall()
    found = []
    for r in rows:
        try:
            at = stored_time(r[0])
            if (
                at is None
                or type(r[4]) is not int
                or not all(isinstance(v, str) for v in (r[1], r[2], r[5]))
                or not (r[3] is None or isinstance(r[3], str))
            ):
                # ospp records every event with its licence; only the host may be missing
                raise ValueError("a value of the wrong type")
        except (ValueError, TypeError) as exc:
            raise StoreError(
                E_INVALID_DATA,
                N_(
                    "the licence store {path} has a damaged history entry: {why}",
                    path=path,
                    why=str(exc),
                ),
                N_("Restore the file from a backup; it was left as it is."),
            ) from exc
        found.append(HistoryEntry(at, *r[1:]))
    return found
