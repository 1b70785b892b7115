"""How a store's failures are reported: which SQLite and OS failures become which
:class:`~ospp.core.errors.StoreError`, and what each message says.

SQLite gives one primary result code for very different causes. A damaged file (or one that
cannot be decoded, or whose tables were edited by hand) is refused as unreadable and marked so
that closing it writes nothing; a full disk, a file or directory that may not be written, and a
store another process keeps busy are access failures; any other SQL error is a bug in ospp's
SQL and is raised as it is. :class:`StoreFailures` is the part of
:class:`ospp.core.db.Database` that makes these errors, naming the store, its file and the
variable that moves it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import NoReturn

from ospp.core.errors import (
    E_ACCESS_DENIED,
    E_DISK_FULL,
    E_INVALID_DATA,
    N_,
    Message,
    StoreError,
    os_error_code,
)
from ospp.core.paths import parent

# What the messages call each kind of store (marked for the wizard's translations).
_STORE_NAMES = {
    "licence": N_("licence store"),
    "authority": N_("authority store"),
    "KMS host": N_("KMS host store"),
}

# Where each kind of store lives: the variable that moves it.
_STORE_VARIABLES = {
    "licence": "OSPP_HOME",
    "authority": "OSPP_CENTER_HOME",
    "KMS host": "OSPP_KMS_HOME",
}

# SQLite's primary result codes (sqlite3.Error.sqlite_errorcode & 0xFF).
_FULL = 13
DAMAGED = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB
_ERROR = 1  # SQL error: a bug in ospp, or a schema that was damaged or edited by hand
BUSY = 5
_LOCKED = 6
_IOERR = 10
CANTOPEN = 14
_LOW_SPACE = 1 << 20  # an I/O error with less free space than this is taken as a full disk
_ACCESS = frozenset({3, 5, 6, 8, 10, CANTOPEN, 23})  # PERM BUSY LOCKED READONLY IOERR AUTH


def primary(exc: sqlite3.Error) -> int:
    """SQLite's primary result code for ``exc``; 0 when it carries none."""
    return (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF


class StoreFailures:
    """The errors of one store; :class:`ospp.core.db.Database` sets what they name."""

    path: str
    kind: str
    schema_version: int
    _may_create: bool
    _remake: str | None
    _migrations: list[str]
    _refused: bool  # found damaged after opening: close without a checkpoint
    _read_only: str | None  # why this store can be read but not written
    _ro: sqlite3.Connection | None
    _conn: sqlite3.Connection

    @property
    def _name(self) -> str | Message:
        return _STORE_NAMES.get(self.kind) or f"{self.kind} store"

    @property
    def _variable(self) -> str:
        return _STORE_VARIABLES.get(self.kind, "OSPP_HOME")

    def _fail_unreadable(self, exc: Exception) -> StoreError:
        return StoreError(
            E_INVALID_DATA,
            N_(
                "the {store} {path} cannot be read: {why}",
                store=self._name,
                path=str(self.path),
                why=str(exc),
            ),
            N_(
                "The file was left exactly as it is. Restore it from a backup, or move it aside "
                "to start an empty store."
            )
            if self._may_create or self._remake is None
            else N_(
                "The file was left exactly as it is. Restore it from a backup, or move it aside "
                "and make the store again: {command}",
                command=self._remake,
            ),
        )

    def _fail_access(self, exc: BaseException) -> StoreError:
        detail = getattr(exc, "strerror", None) or str(exc)
        if os_error_code(exc) == E_DISK_FULL or (
            isinstance(exc, sqlite3.Error) and self._out_of_space(exc)
        ):
            return StoreError(
                E_DISK_FULL,
                N_(
                    "the {store} {path} cannot be written: the disk is full ({why})",
                    store=self._name,
                    path=str(self.path),
                    why=detail,
                ),
                N_(
                    "Free some space on the disk holding {directory} and try again; the change "
                    "was not made.",
                    directory=str(parent(self.path)),
                ),
            )
        if isinstance(exc, sqlite3.Error) and primary(exc) in (BUSY, _LOCKED):
            return StoreError(
                E_ACCESS_DENIED,
                N_(
                    "the {store} {path} is kept busy by another process: {why}",
                    store=self._name,
                    path=str(self.path),
                    why=detail,
                ),
                N_(
                    "Another command (or a program that has the file open) is writing it. Try "
                    "again once it has finished."
                ),
            )
        return StoreError(
            E_ACCESS_DENIED,
            N_(
                "the {store} {path} cannot be opened for writing: {why}",
                store=self._name,
                path=str(self.path),
                why=detail,
            ),
            N_(
                "Check that the directory exists, is a directory and is writable, or point "
                "{variable} somewhere else.",
                variable=self._variable,
            ),
        )

    def _out_of_space(self, exc: sqlite3.Error) -> bool:
        """SQLite says SQLITE_FULL for its data, but only "disk I/O error" when the -shm index
        or the -wal cannot grow: then a nearly empty disk is the likely cause."""
        code = primary(exc)
        if code == _FULL:
            return True
        if code not in (_IOERR, CANTOPEN):
            return False
        import shutil

        try:
            return shutil.disk_usage(parent(self.path)).free < _LOW_SPACE
        except OSError:
            return False

    def _fail_read_only(self) -> StoreError:
        return StoreError(
            E_ACCESS_DENIED,
            N_(
                "the {store} {path} can be read but not changed: {why}",
                store=self._name,
                path=str(self.path),
                why=str(self._read_only),
            ),
            N_(
                "Make {directory} and the files in it writable, or copy the store somewhere "
                "writable and point {variable} there.",
                directory=str(parent(self.path)),
                variable=self._variable,
            ),
        )

    def _wrap(self, exc: sqlite3.Error) -> StoreError | None:
        """The StoreError for a failure of SQLite itself; None for a bug in our SQL."""
        code = primary(exc)
        if code in DAMAGED or _undecodable(exc) or (code == _ERROR and self._schema_damaged()):
            self._refused = True
            return self._fail_unreadable(exc)
        if code == _FULL or code in _ACCESS:
            return self._fail_access(exc)
        return None

    def _schema_damaged(self) -> bool:
        """Whether the store's tables differ from what the migrations make: then an SQL
        error ("no such column") comes from a damaged or hand-edited file, not from ospp."""
        query = "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        expected = sqlite3.connect(":memory:")
        try:
            for step in self._migrations[: self.schema_version]:
                for statement in step.split(";"):
                    if statement.strip():
                        expected.execute(statement)
            want = expected.execute(query).fetchall()
        finally:
            expected.close()
        try:
            return (self._ro or self._conn).execute(query).fetchall() != want
        except (sqlite3.Error, UnicodeDecodeError):
            return True

    def _reraise(self, exc: sqlite3.Error) -> NoReturn:
        wrapped = self._wrap(exc)
        if wrapped is None:
            raise exc
        raise wrapped from exc


def _undecodable(exc: sqlite3.Error) -> bool:
    """A text value that is not UTF-8: Python's sqlite3 says so without an SQLite code."""
    return getattr(exc, "sqlite_errorcode", None) is None and "decode" in str(exc)


def end_transaction(conn: sqlite3.Connection) -> None:
    """Roll back what is left of a transaction, keeping the error that ended it.

    SQLite rolls back by itself after some failures (a full disk, a failed COMMIT); a second
    ROLLBACK would then fail with "no transaction is active" and hide the real error.
    """
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
