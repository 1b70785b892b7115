"""What a store file must be before ospp uses it, and bringing its schema up to date.

Before SQLite opens a store, a symbolic link, a directory or anything but a regular file in
place of it or its ``-wal``/``-shm`` files is refused, and so is an empty file beside one made
only once the store held data (it was truncated), and a file shorter than a page (SQLite
would take one of a single byte for empty). Through the read-only connection,
the file must then be an ospp store (its ``application_id``) of a schema this ospp knows; a
newer one is refused, not downgraded. The migration runs under ``BEGIN IMMEDIATE`` so that
processes opening the same new store at once make it only once. :class:`StoreChecks` is the
part of :class:`ospp.core.db.Database` that does this.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence

from ospp.core.dbfail import StoreFailures, end_transaction
from ospp.core.errors import E_ACCESS_DENIED, E_INVALID_DATA, N_, StoreError
from ospp.core.paths import StrPath, exists

APPLICATION_ID = 0x4F535050  # "OSPP": marks a file as an ospp store
MIN_PAGE = 512  # bytes: a database file holds whole pages, none smaller than this
# How long an empty store that must exist already is given to be filled by the process making
# it (about a millisecond; far longer on a loaded machine) before it is taken as truncated.
FILL_WAIT = 2.0


class StoreChecks(StoreFailures):
    """The checks of one store's file and schema; :class:`ospp.core.db.Database` opens it."""

    _witnesses: Sequence[StrPath]

    def _refuse_links(self) -> None:
        """A symbolic link or a directory in place of the store or its -wal or -shm file is
        refused before SQLite sees it (it would say only "disk I/O error")."""
        import stat

        for path in (self.path, self.path + "-wal", self.path + "-shm"):
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                continue
            except OSError as exc:  # a directory on the way that may not be entered
                raise self._fail_access(exc) from exc
            linked = stat.S_ISLNK(mode)
            directory = stat.S_ISDIR(mode)
            if not (linked or directory or stat.S_ISREG(mode)):  # a FIFO would never answer
                raise StoreError(
                    E_INVALID_DATA,
                    N_(
                        "{path} is not a regular file where the {store} should be",
                        path=str(path),
                        store=self._name,
                    ),
                    N_(
                        "It was left as it is. Move it aside to start an empty store, or put "
                        "the store's file back in its place."
                    ),
                )
            if directory:
                raise StoreError(
                    E_INVALID_DATA,
                    N_(
                        "{path} is a directory where the {store} should be a file",
                        path=str(path),
                        store=self._name,
                    ),
                    N_(
                        "It was left as it is. Move it aside to start an empty store, or put "
                        "the store's file back in its place."
                    ),
                )
            if linked:
                raise StoreError(
                    E_ACCESS_DENIED,
                    N_(
                        "{path} is a symbolic link (to {target}); ospp does not follow links in "
                        "place of its {store}",
                        path=str(path),
                        target=os.readlink(path),
                        store=self._name,
                    ),
                    N_(
                        "Replace the link with the file itself, or point OSPP_HOME "
                        "(OSPP_CENTER_HOME, OSPP_KMS_HOME) at the directory that holds it. "
                        "Nothing was changed."
                    ),
                )

    def _refuse_emptied(self) -> None:
        """An empty store file beside a file made after the store held data: truncated. A
        file shorter than SQLite's smallest page is no database either, though SQLite takes
        one of a single byte for an empty one, and would write a new store over it. (Found
        by its size alone: opening and closing the file here would drop the locks SQLite
        holds on it for this process's other connections.)"""
        try:
            size = os.stat(self.path).st_size
        except OSError:
            return  # not there (yet): created or reported below
        if 0 < size < MIN_PAGE:  # what SQLite says of such a file longer than a byte
            raise self._fail_unreadable(ValueError("file is not a database"))
        if size:
            return
        for witness in self._witnesses:
            if exists(witness):
                raise self._fail_unreadable(
                    ValueError(f"the file is empty, but {witness} shows that it held a store")
                )

    def _refuse_never_filled(self) -> None:
        """An empty file where a store must exist already (opened with ``create=False``), or
        that a command which may make the store found there, made by another process.

        The process making a store creates its file empty and gives it its schema a few
        milliseconds later, so an empty file is waited on for up to ``FILL_WAIT`` seconds.
        One that stays empty was truncated (or its making was cut short): it is refused as
        damaged, never filled as a new store with a new identity (a machine's CMID).
        """
        import time

        deadline = time.monotonic() + FILL_WAIT
        while True:
            try:
                if os.stat(self.path).st_size:
                    return
            except OSError:
                return  # gone meanwhile, or not to be looked at: reported when opened
            if time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        raise self._fail_unreadable(
            ValueError(
                "the file is empty: it was truncated, since every store ospp made holds its tables"
            )
        )

    def _inspect(self, conn: sqlite3.Connection) -> int:
        """Check, without writing, that the file is an ospp store we can read; its version."""
        try:
            # One read transaction: the version and the table list from one snapshot, so that
            # a store another process is creating right now is seen before or after, never
            # half (tables already there, version still 0: "not an ospp store").
            conn.execute("BEGIN")
            try:
                version = int(conn.execute("PRAGMA user_version").fetchone()[0])
                # Reading the table list parses the schema: a damaged one is found here,
                # before anything can write.
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                self._check(conn, version)
            finally:
                end_transaction(conn)
        except sqlite3.DatabaseError as exc:
            raise self._wrap(exc) or self._fail_unreadable(exc) from exc
        except UnicodeDecodeError as exc:  # SQLite's message quotes undecodable schema text
            raise self._fail_unreadable(exc) from exc
        return version

    def _check(self, conn: sqlite3.Connection, version: int) -> None:
        """Refuse a file that is not an ospp store, or is one from a newer schema."""
        if version == 0:
            if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise self._fail_unreadable(
                    ValueError("it is an SQLite database, but not an ospp store")
                )
            return
        self._check_ours(conn)
        if version > self.schema_version:
            raise StoreError(
                E_INVALID_DATA,
                N_(
                    "the {store} {path} has schema version {version}, newer than this ospp "
                    "understands ({known})",
                    store=self._name,
                    path=str(self.path),
                    version=version,
                    known=self.schema_version,
                ),
                N_("Upgrade ospp to read it; the file was left as it is."),
            )

    def _migrate(self, conn: sqlite3.Connection, migrations: Sequence[str]) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == self.schema_version:
            self._check_ours(conn)
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]  # settled under lock
            self._check(conn, version)
            if version == 0:
                conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            for step in range(version, self.schema_version):
                for statement in migrations[step].split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version={self.schema_version}")
            conn.execute("COMMIT")
        except BaseException:
            end_transaction(conn)
            raise

    def _check_ours(self, conn: sqlite3.Connection) -> None:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if app_id != APPLICATION_ID:
            raise self._fail_unreadable(ValueError("it is an SQLite database, not an ospp store"))
