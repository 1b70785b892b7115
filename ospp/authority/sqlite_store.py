"""The authority's records in one SQLite file, ``<OSPP_CENTER_HOME>/center.db``: the default.

Every write runs inside ``BEGIN IMMEDIATE`` (see :mod:`ospp.core.db`), so concurrent
processes on one machine count exactly; several machines need :mod:`ospp.authority.pg_store`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from ospp.authority import keyfiles
from ospp.authority.storage import KeyRecord
from ospp.core.db import Database, sqlite_uri
from ospp.core.errors import E_INVALID_DATA, StoreError

T = TypeVar("T")

_SCHEMA = [
    """
    CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE keys (
        serial INTEGER PRIMARY KEY,
        product_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        last5 TEXT NOT NULL,
        activation_limit INTEGER NOT NULL,
        blocked INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
    );
    CREATE TABLE activations (
        serial INTEGER NOT NULL REFERENCES keys(serial),
        machine TEXT NOT NULL,
        hardware TEXT NOT NULL,
        first_at TEXT NOT NULL,
        last_at TEXT NOT NULL,
        times INTEGER NOT NULL,
        via TEXT NOT NULL,
        PRIMARY KEY (serial, machine, hardware)
    );
    """,
]

KEY_RECORDS_SQL = (
    "SELECT k.serial, k.product_id, k.channel, k.last5, k.activation_limit, "
    "k.blocked, count(DISTINCT a.machine || '/' || "
    "CASE k.channel WHEN 'kms-host' THEN '' ELSE a.hardware END), k.created_at, "
    "coalesce(sum(a.times), 0) "
    "FROM keys k LEFT JOIN activations a ON a.serial = k.serial "
    "GROUP BY k.serial ORDER BY k.created_at, k.serial"
)


class _Meta:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def get(self, name: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, name: str, value: str) -> None:
        self.conn.execute("INSERT INTO meta VALUES (?, ?)", (name, value))

    def all(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self.conn.execute("SELECT name, value FROM meta")}


# serial, product_id, channel, last5, limit, blocked, used, created_at, activations
_RECORD_TYPES = [int, str, str, str, int, int, int, str, int]


def _damaged(conn: sqlite3.Connection, what: str) -> StoreError:
    (path,) = [row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"]
    return StoreError(
        E_INVALID_DATA,
        f"the authority store {path} has a damaged record ({what}): a value of the wrong type",
        "Restore it from a backup; it was left as it is.",
    )


class _Count:
    def __init__(self, conn: sqlite3.Connection, serial: int) -> None:
        self.conn = conn
        self.serial = serial

    def key(self) -> tuple[int, bool] | None:
        row = self.conn.execute(
            "SELECT activation_limit, blocked FROM keys WHERE serial=?", (self.serial,)
        ).fetchone()
        if row is None:
            return None
        if type(row[0]) is not int or type(row[1]) is not int:
            raise _damaged(self.conn, f"key {self.serial}")
        return row[0], bool(row[1])

    def hosts(self) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT machine, sum(times) FROM activations WHERE serial=? GROUP BY machine",
            (self.serial,),
        )
        return {str(r[0]): int(r[1]) for r in rows}

    def seen(self, machine: str, hardware: str) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM activations WHERE serial=? AND machine=? AND hardware=?",
            (self.serial, machine, hardware),
        ).fetchone()
        return row is not None

    def used(self) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM activations WHERE serial=?", (self.serial,)
        ).fetchone()
        return int(row[0])

    def record(self, machine: str, hardware: str, now: str, via: str) -> None:
        self.conn.execute(
            "INSERT INTO activations VALUES (?, ?, ?, ?, ?, 1, ?) "
            "ON CONFLICT (serial, machine, hardware) DO UPDATE SET last_at=excluded.last_at, "
            "times=times+1",
            (self.serial, machine, hardware, now, now, via),
        )

    def hardware_of(self, machine: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT hardware FROM activations WHERE serial=? AND machine=?", (self.serial, machine)
        ).fetchall()
        return [str(r[0]) for r in rows]

    def move(self, machine: str, old: str, new: str, now: str) -> None:
        self.conn.execute(
            "UPDATE activations SET hardware=?, last_at=?, times=times+1 "
            "WHERE serial=? AND machine=? AND hardware=?",
            (new, now, self.serial, machine, old),
        )


def _version_on_disk(path: Path) -> int:
    """The schema version of ``path`` before opening it (read-only, nothing replayed)."""
    if not path.is_file():
        return 0
    try:
        conn = sqlite3.connect(f"{sqlite_uri(path.resolve())}?immutable=1", uri=True)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except (sqlite3.Error, ValueError):
        return 0  # opening it properly reports what is wrong


class SqliteStore:
    """The :class:`~ospp.authority.storage.Store` of one ``center.db``."""

    backend = "sqlite"
    threads = 1  # one connection, used by one thread; writers queue in SQLite anyway

    def __init__(self, path: Path) -> None:
        if not os.path.lexists(path):  # lost beside its key files: no new store in its place
            keyfiles.refuse_orphans(path.parent)
        self.migrated_from = _version_on_disk(path)
        # The key pair is made once the store is (Authority._open): beside it, an empty
        # center.db is a truncated store, never a new one.
        self.db = Database(
            path, "authority", _SCHEMA, witnesses=[path.with_name("authority-ed25519.pem")]
        )
        self.where = str(path)

    @contextlib.contextmanager
    def setup(self) -> Iterator[_Meta]:
        with self.db.write() as conn:  # the write lock serialises first use
            yield _Meta(conn)

    def add_key(
        self, serial: int, product_id: str, channel: str, last5: str, limit: int, created_at: str
    ) -> bool:
        with self.db.write() as conn:
            if conn.execute("SELECT 1 FROM keys WHERE serial=?", (serial,)).fetchone():
                return False
            conn.execute(
                "INSERT INTO keys (serial, product_id, channel, last5, activation_limit, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (serial, product_id, channel, last5, limit, created_at),
            )
        return True

    def key_state(self, serial: int) -> tuple[int, bool] | None:
        with self.db.read() as conn:
            return _Count(conn, serial).key()

    def key_records(self) -> list[KeyRecord]:
        with self.db.read() as conn:
            rows = conn.execute(KEY_RECORDS_SQL).fetchall()
            for r in rows:
                if [type(v) for v in r] != _RECORD_TYPES:
                    raise _damaged(conn, f"key {r[0]!r:.30}")
        return [KeyRecord(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7], r[8]) for r in rows]

    def block(self, serial: int) -> None:
        with self.db.write() as conn:
            conn.execute("UPDATE keys SET blocked=1 WHERE serial=?", (serial,))

    def extend(self, serial: int, by: int) -> None:
        with self.db.write() as conn:
            conn.execute(
                "UPDATE keys SET activation_limit = activation_limit + ? WHERE serial=?",
                (by, serial),
            )

    def count(self, serial: int, body: Callable[[_Count], T]) -> T:
        with self.db.write() as conn:  # BEGIN IMMEDIATE: one writer at a time
            return body(_Count(conn, serial))

    def schema(self) -> tuple[int, int]:
        with self.db.read() as conn:
            found = int(conn.execute("PRAGMA user_version").fetchone()[0])
        return found, self.db.schema_version

    def close(self) -> None:
        self.db.close()
