"""SQLite state files, done the boring way.

Every store (a machine's licence store, the authority's records, a KMS host's counts) is one
SQLite file in WAL mode, written only inside ``BEGIN IMMEDIATE`` transactions so concurrent
processes never lose an update. A file that is not ours, is damaged, or comes from a newer
schema is reported and left exactly as it is: it is never recreated or overwritten.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from ospp.core.errors import E_ACCESS_DENIED, E_INVALID_DATA, StoreError

APPLICATION_ID = 0x4F535050  # "OSPP": marks a file as an ospp store

# Stores opened by this process and not yet closed. Held strongly so that closing never waits
# for the garbage collector: a connection left to it keeps its WAL files open.
_OPEN: set[Database] = set()


def close_all() -> None:
    """Close every store this process opened (the CLI calls it when a command ends)."""
    for db in list(_OPEN):
        db.close()


class Database:
    """One SQLite store. ``migrations[i]`` is the SQL script that moves schema i to i+1."""

    def __init__(
        self,
        path: Path,
        kind: str,
        migrations: Sequence[str],
        *,
        synchronous: str = "FULL",
    ) -> None:
        self.path = path
        self.kind = kind
        self.schema_version = len(migrations)
        self._conn = self._connect(migrations, synchronous)
        _OPEN.add(self)

    # -- opening -------------------------------------------------------------------------------

    def _fail_unreadable(self, exc: Exception) -> StoreError:
        return StoreError(
            E_INVALID_DATA,
            f"the {self.kind} store {self.path} cannot be read: {exc}",
            "The file was left exactly as it is. Restore it from a backup, or move it aside "
            "to start an empty store.",
        )

    def _fail_access(self, exc: BaseException) -> StoreError:
        detail = getattr(exc, "strerror", None) or str(exc)
        return StoreError(
            E_ACCESS_DENIED,
            f"the {self.kind} store {self.path} cannot be opened for writing: {detail}",
            "Check that the directory exists, is a directory and is writable, or point "
            "OSPP_HOME (OSPP_CENTER_HOME for the authority) somewhere else.",
        )

    def _connect(self, migrations: Sequence[str], synchronous: str) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                # Create the file owner-only before SQLite opens it (the mode is advisory
                # on Windows, where the per-user data dir is already private).
                with contextlib.suppress(FileExistsError):
                    os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise self._fail_access(exc) from exc
        try:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._fail_access(exc) from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            self._migrate(conn, migrations)
        except StoreError:
            conn.close()
            raise
        except sqlite3.OperationalError as exc:
            conn.close()
            text = str(exc).lower()
            if "readonly" in text or "unable to open" in text or "disk i/o" in text:
                raise self._fail_access(exc) from exc
            raise self._fail_unreadable(exc) from exc
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise self._fail_unreadable(exc) from exc
        return conn

    def _migrate(self, conn: sqlite3.Connection, migrations: Sequence[str]) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == self.schema_version:
            self._check_ours(conn)
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]  # settled under lock
            if version == 0:
                tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
                if tables:
                    raise self._fail_unreadable(
                        ValueError("it is an SQLite database, but not an ospp store")
                    )
                conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            else:
                self._check_ours(conn)
            if version > self.schema_version:
                raise StoreError(
                    E_INVALID_DATA,
                    f"the {self.kind} store {self.path} has schema version {version}, newer "
                    f"than this ospp understands ({self.schema_version})",
                    "Upgrade ospp to read it; the file was left as it is.",
                )
            for step in range(version, self.schema_version):
                for statement in migrations[step].split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version={self.schema_version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _check_ours(self, conn: sqlite3.Connection) -> None:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if app_id != APPLICATION_ID:
            raise self._fail_unreadable(ValueError("it is an SQLite database, not an ospp store"))

    # -- transactions --------------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: taken with BEGIN IMMEDIATE, committed on success."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise self._fail_access(exc) from exc
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._conn.execute("ROLLBACK")
            raise self._fail_access(exc) from exc

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for reading."""
        self._conn.execute("BEGIN")
        try:
            yield self._conn
        finally:
            self._conn.execute("COMMIT")

    def execute_pragma(self, pragma: str) -> None:
        self._conn.execute(f"PRAGMA {pragma}")

    def close(self) -> None:
        self._conn.close()
        _OPEN.discard(self)
