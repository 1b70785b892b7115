"""SQLite state files, done the boring way.

Every store (a machine's licence store, the authority's records, a KMS host's counts) is one
SQLite file in WAL mode, written only inside ``BEGIN IMMEDIATE`` transactions so concurrent
processes never lose an update. A file that is not ours, is damaged, or comes from a newer
schema is reported and left exactly as it is: it is never recreated or overwritten.

A store is first inspected through a read-only connection, so a file that is refused (or a
foreign ``-wal`` beside it) is never written, not even by SQLite's checkpoint on close. That
connection stays open while the read-write one is used; when a store turns out to be damaged
later, the read-write connection is closed first, and SQLite skips its closing checkpoint
because another connection still has the file open. A store that can be read but not written
(a read-only directory or file system) still answers reads; writes say why they can't happen.
Symbolic links in place of a store or its ``-wal``/``-shm`` files are refused.

This module opens a store and runs its transactions. What the file must be before it is used,
and the migration of its schema, are :mod:`ospp.core.dbcheck`; how a failure of SQLite or of
the file system is reported is :mod:`ospp.core.dbfail`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ospp.core.dbcheck import StoreChecks
from ospp.core.dbfail import BUSY, CANTOPEN, DAMAGED, end_transaction, primary
from ospp.core.errors import E_ACCESS_DENIED, N_, StoreError
from ospp.core.paths import StrPath, parent

if TYPE_CHECKING:
    from pathlib import PurePath


# Stores opened by this process and not yet closed. Held strongly so that closing never waits
# for the garbage collector: a connection left to it keeps its WAL files open.
_OPEN: set[Database] = set()

_BUSY_SECONDS = 30.0  # how long a store another process is writing is waited for


class StoreMissing(StoreError):
    """A store opened with ``create=False`` is not there (removed, or never made)."""


# What a file: URI holds as it is; every other byte is %XX (urllib.parse.quote_from_bytes)
_URI_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~/")


def sqlite_uri(path: str | PurePath) -> str:
    """An absolute ``path`` as an SQLite ``file:`` URI, to add ``?mode=ro`` and the like to.

    This is ``as_uri()``; a ``str`` on POSIX is encoded here as ``PurePosixPath.as_uri()``
    encodes the same path (without tidying it: the paths ospp builds are already in pathlib's
    form), so that opening a store needs no pathlib (:mod:`ospp.core.paths`). SQLite
    accepts no host in a URI, but ``as_uri()`` writes a Windows UNC path
    (``\\\\server\\share\\...``) as ``file://server/share/...``: that becomes
    ``file:////server/share/...``, an empty host and the path with its two leading slashes,
    which Windows opens as the share. Drive-letter and POSIX paths are left as they are.
    """
    if not isinstance(path, str):
        uri = path.as_uri()
    elif os.name == "nt":
        from pathlib import PureWindowsPath

        uri = PureWindowsPath(path).as_uri()
    else:
        if not path.startswith("/"):
            raise ValueError(f"relative path {path!r} can't be expressed as a file URI")
        raw = os.fsencode(path)
        uri = "file://" + "".join(chr(b) if b in _URI_SAFE else f"%{b:02X}" for b in raw)
    if not uri.startswith("file:///"):
        uri = "file:////" + uri.removeprefix("file://")
    return uri


def absolute_path(path: str) -> str:
    """``path`` made absolute. On POSIX as ``Path.absolute()`` does: from the working
    directory, and not otherwise normalised (``..`` stays: it may follow a link). On Windows
    as the system resolves it (``GetFullPathName``): a root without a drive (``\\lab``) or a
    drive without a root (``C:lab``) is completed from the working directories, which
    ``isabs`` alone would take for absolute or leave without a drive, and no URI holds."""
    if os.name == "nt":
        return os.path.abspath(path)
    return path if os.path.isabs(path) else os.path.join(os.getcwd(), path)


def close_all() -> None:
    """Close every store this process opened (the CLI calls it when a command ends)."""
    for db in list(_OPEN):
        db.close()


class Database(StoreChecks):
    """One SQLite store. ``migrations[i]`` is the SQL script that moves schema i to i+1.

    ``create=False`` opens a store that must exist already: when it (or its directory) is not
    there, StoreMissing is raised and nothing is made, so a store another process has just
    removed is never brought back empty.

    ``witnesses`` are files made only once the store was (a KMS host's signing key, a
    machine's hardware profile). An empty file is how every store starts, but an empty store
    beside one of them was truncated: it is refused as damaged, not filled as a new store.

    ``remake`` is the command that makes the store again, for one opened with
    ``create=False``: the hint for a damaged store names it, since moving the file aside then
    leaves no store rather than an empty one.
    """

    def __init__(
        self,
        path: StrPath,
        kind: str,
        migrations: Sequence[str],
        *,
        synchronous: str = "FULL",
        create: bool = True,
        witnesses: Sequence[StrPath] = (),
        remake: str | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self._remake = remake
        self.kind = kind
        self._may_create = create
        self._witnesses = witnesses
        self.schema_version = len(migrations)
        self._migrations = list(migrations)
        self._refused = False  # found damaged after opening: close without a checkpoint
        self._read_only: str | None = None  # why this store can be read but not written
        self._ro: sqlite3.Connection | None = None
        self._conn = self._connect(migrations, synchronous)
        _OPEN.add(self)

    # -- opening -------------------------------------------------------------------------------

    def _create(self) -> bool:
        """Make the store's file if there is none; whether this process made it."""
        try:
            os.makedirs(parent(self.path), mode=0o700, exist_ok=True)
            if not os.path.lexists(self.path):
                # Create the file owner-only before SQLite opens it (the mode is advisory
                # on Windows, where the per-user data dir is already private).
                flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0)
                with contextlib.suppress(FileExistsError):
                    os.close(os.open(self.path, flags, 0o600))
                    return True
        except OSError as exc:
            raise self._fail_access(exc) from exc
        return False

    def _open_read_only(self) -> sqlite3.Connection:
        """A connection that can never write the file, even when the directory is read-only."""
        uri = sqlite_uri(absolute_path(self.path))
        try:
            conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None)
            try:
                conn.execute("PRAGMA user_version").fetchone()
                return conn
            except sqlite3.OperationalError as exc:
                conn.close()
                if primary(exc) != CANTOPEN or os.access(parent(self.path), os.W_OK):
                    raise
            # A WAL store in a directory where the -shm index cannot be created: nobody can
            # write it either, so reading it as immutable sees a settled file.
            self._read_only = f"its directory {parent(self.path)} cannot be written"
            return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None)
        except sqlite3.DatabaseError as exc:
            if primary(exc) in DAMAGED:
                raise self._fail_unreadable(exc) from exc
            raise self._fail_access(exc) from exc

    def _connect(self, migrations: Sequence[str], synchronous: str) -> sqlite3.Connection:
        self._refuse_links()
        self._refuse_emptied()
        made = False
        if self._may_create:
            made = self._create()
            if not made:  # there already: if empty, it is being made, or was truncated
                self._refuse_never_filled()
        elif not os.path.lexists(self.path):
            raise StoreMissing(
                E_ACCESS_DENIED,
                N_("the {store} {path} does not exist", store=self._name, path=str(self.path)),
            )
        else:
            self._refuse_never_filled()
        try:
            return self._connect_checked(migrations, synchronous)
        except BaseException:
            if made:
                self._unmake()
            raise

    def _unmake(self) -> None:
        """Remove the file this process made for a new store that it could not write (a full
        disk): left empty, it would read as a truncated store. One that holds anything stays."""
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_size == 0:
                os.remove(self.path)  # (SQLite itself drops a journal beside an empty file)

    def _connect_checked(self, migrations: Sequence[str], synchronous: str) -> sqlite3.Connection:
        self._ro = ro = self._open_read_only()
        try:
            version = self._inspect(ro)
            if self._read_only is None:
                try:
                    return self._open_read_write(migrations, synchronous)
                except StoreError as exc:
                    if exc.code != E_ACCESS_DENIED or version != self.schema_version:
                        raise
                    self._read_only = self._why_not_writable(exc)
            if version != self.schema_version:
                raise self._fail_read_only()
            return ro
        except BaseException:
            # Any read-write connection is already closed: closing this one writes nothing.
            self._ro = None
            ro.close()
            raise

    def _why_not_writable(self, exc: StoreError) -> str:
        if not os.access(parent(self.path), os.W_OK):
            return f"its directory {parent(self.path)} cannot be written"
        if not os.access(self.path, os.W_OK):
            return "the file is read-only"
        return exc.message

    def _open_read_write(self, migrations: Sequence[str], synchronous: str) -> sqlite3.Connection:
        # mode=rw never creates the file: a store removed since it was inspected stays gone
        where = self.path if self._may_create else f"{sqlite_uri(absolute_path(self.path))}?mode=rw"
        try:
            conn = sqlite3.connect(
                where, timeout=_BUSY_SECONDS, isolation_level=None, uri=not self._may_create
            )
        except sqlite3.Error as exc:
            raise self._fail_access(exc) from exc
        try:
            self._use_wal(conn)
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            self._migrate(conn, migrations)
        except StoreError:
            self._refused = True
            conn.close()  # the read-only connection is still open: no checkpoint on close
            raise
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise self._wrap(exc) or self._fail_unreadable(exc) from exc
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Put the store in WAL mode (a new one; an existing store already is).

        The switch needs the file to itself, and SQLite answers "database is locked" at once,
        without waiting, while another process holds it (opening the same new store at the
        same moment): the switch is tried again for as long as a busy store is waited for.
        """
        if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            return
        import time

        deadline = time.monotonic() + _BUSY_SECONDS
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if primary(exc) != BUSY or time.monotonic() > deadline:
                    raise
            time.sleep(0.005)

    # -- transactions --------------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: taken with BEGIN IMMEDIATE, committed on success."""
        if self._read_only is not None:
            raise self._fail_read_only()
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._wrap(exc) or self._fail_access(exc) from exc
        try:
            yield conn
        except sqlite3.Error as exc:
            end_transaction(conn)
            self._reraise(exc)
        except BaseException:
            end_transaction(conn)
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            end_transaction(conn)
            raise self._wrap(exc) or self._fail_access(exc) from exc

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for reading; inside this store's open write transaction
        (a check run while writing), that transaction, with what it wrote so far."""
        conn = self._conn
        if conn.in_transaction:
            yield conn
            return
        try:
            conn.execute("BEGIN")
        except sqlite3.Error as exc:
            self._reraise(exc)
        try:
            yield conn
        except sqlite3.Error as exc:
            end_transaction(conn)
            self._reraise(exc)
        except BaseException:
            end_transaction(conn)
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            end_transaction(conn)
            self._reraise(exc)

    def execute_pragma(self, pragma: str) -> None:
        self._conn.execute(f"PRAGMA {pragma}")

    def data_version(self) -> int:
        """A number that changes when another connection (another process) commits to the
        store: SQLite's ``PRAGMA data_version`` on the read-write connection."""
        try:
            version: int = self._conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error as exc:
            self._reraise(exc)
        return version

    def close(self) -> None:
        """Close the store. A healthy one is checkpointed by the read-write connection, which
        closes last; a refused one is closed while the read-only connection still holds the
        file, so SQLite writes nothing into it."""
        order = [self._ro, self._conn] if not self._refused else [self._conn, self._ro]
        seen: set[int] = set()
        for conn in order:
            if conn is not None and id(conn) not in seen:
                seen.add(id(conn))
                conn.close()
        _OPEN.discard(self)
