"""The authority's records in PostgreSQL (``OSPP_CENTER_DB``), shared by several nodes.

Exact MAK counts across nodes come from the database alone: each activation runs in one
transaction that first takes the key's row with ``SELECT … FOR UPDATE``, so activations of one
key queue behind each other on every node while other keys go on in parallel. A serialization
failure or deadlock is retried a bounded number of times. There is no lock in the application.

Each thread has its own connection, opened lazily and dropped when it breaks; the next request
opens a new one, so a restarted database is picked up without restarting the node. While the
database cannot be reached, requests fail with 0x80072EFD (NetworkError, exit 4).

Schema versions are kept in ``ospp_schema``. An empty database gets the current schema on first
use; an older one is upgraded only by ``ospp center migrate``; a newer one is refused.

psycopg 3 is an optional dependency (``pip install 'ospp[postgres]'``), imported here only.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

from ospp.authority.pg_sql import APPLICATION, MIGRATIONS, SCHEMA_VERSION, Count, Meta, Missing
from ospp.authority.storage import DB_ENV, KeyRecord, PgTarget
from ospp.core.errors import (
    E_ACCESS_DENIED,
    E_INVALID_DATA,
    E_NO_CONNECTION,
    NetworkError,
    OsppError,
    StoreError,
)

if TYPE_CHECKING:
    import psycopg

T = TypeVar("T")

SETUP_LOCK = 0x4F535050  # pg_advisory_xact_lock key for first use and migrations
RETRIES = 8  # serialization failures / deadlocks retried at most this often
CONNECT_TIMEOUT = 5

# Refusals that say the server was reached and said no: fixing them is configuration (exit 3).
_REFUSALS = (
    "password authentication failed",
    "no pg_hba.conf entry",
    "does not exist",
    "permission denied",
    "no password supplied",
    "authentication failed",
)


def _driver() -> None:
    from ospp.core.logs import quiet_library

    quiet_library("psycopg")  # a command reports a lost database itself
    try:
        import psycopg
    except ImportError as exc:
        raise StoreError(
            E_ACCESS_DENIED,
            f"{DB_ENV} names a PostgreSQL database, but the PostgreSQL driver (psycopg 3) is "
            "not installed",
            "Install it with: pip install 'ospp[postgres]'",
        ) from exc
    del psycopg


class PgStore:
    """The :class:`~ospp.authority.storage.Store` of one PostgreSQL database."""

    backend = "postgresql"
    threads = 8  # a node runs up to this many requests at once, each on its own connection

    def __init__(self, url: str, target: PgTarget, *, upgrade: bool = False) -> None:
        self.url = url
        self.target = target
        self.where = str(target)
        _driver()
        self._local = threading.local()  # one connection per thread that uses the store
        self._opened: list[psycopg.Connection[tuple[object, ...]]] = []
        self.migrated_from = SCHEMA_VERSION
        self._prepare(upgrade)

    # -- connections and errors ----------------------------------------------------------------

    def _scrub(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split()) or type(exc).__name__
        if self.target.password:
            text = text.replace(self.target.password, "***")
        return text

    def _unavailable(self, exc: BaseException) -> OsppError:
        detail = self._scrub(exc)
        lowered = detail.lower()
        if any(r in lowered for r in _REFUSALS):
            return StoreError(
                E_ACCESS_DENIED,
                f"the authority {self.target.named} refused the connection as user "
                f"{self.target.user or '(default)'}: {detail}",
                f"Check the user, password and database name in {DB_ENV} (or 'ospp center "
                "init --db'), and that the database exists and pg_hba.conf lets this host in.",
            )
        return NetworkError(
            E_NO_CONNECTION,
            f"the authority {self.target.named} is unavailable: {detail}",
            "Check that PostgreSQL is running and reachable at that address; a running "
            "'ospp center serve' reconnects by itself once it is back.",
        )

    def _connection(self) -> psycopg.Connection[tuple[object, ...]]:
        conn = self._conn()
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        self._drop()
        import psycopg

        try:
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT,
                application_name=APPLICATION,
            )
        except psycopg.Error as exc:
            raise self._unavailable(exc) from None
        self._local.conn = conn
        self._opened.append(conn)
        return conn

    def _conn(self) -> psycopg.Connection[tuple[object, ...]] | None:
        conn: psycopg.Connection[tuple[object, ...]] | None = getattr(self._local, "conn", None)
        return conn

    def _drop(self) -> None:
        conn, self._local.conn = self._conn(), None
        if conn is not None:
            with contextlib.suppress(ValueError):
                self._opened.remove(conn)
            with contextlib.suppress(Exception):
                conn.close()

    def _run(
        self, fn: Callable[[psycopg.Connection[tuple[object, ...]]], T], pipeline: bool = False
    ) -> T:
        """Run ``fn`` in one transaction: retried after serialization failures and deadlocks,
        and once on a fresh connection when a connection kept from before has gone stale.

        ``pipeline`` sends statements whose results ``fn`` does not read together with the
        next one (BEGIN with the first query, the last write with COMMIT): fewer round trips.
        """
        import psycopg
        from psycopg import errors

        conflicts = 0
        stale_retry = True
        while True:
            reused = self._conn() is not None
            conn = self._connection()
            try:
                with conn.pipeline() if pipeline else contextlib.nullcontext(), conn.transaction():
                    return fn(conn)
            except (errors.SerializationFailure, errors.DeadlockDetected) as exc:
                conflicts += 1
                if conflicts >= RETRIES:
                    raise NetworkError(
                        E_NO_CONNECTION,
                        f"the authority {self.target.named} stayed too busy to finish the "
                        f"request after {RETRIES} attempts: {self._scrub(exc)}",
                        "Try again.",
                    ) from None
                time.sleep(random.uniform(0, 0.005 * 2**conflicts))
            except psycopg.OperationalError as exc:
                self._drop()
                if reused and stale_retry:
                    stale_retry = False
                    continue
                raise self._unavailable(exc) from None
            except psycopg.Error as exc:
                if conn.broken or conn.closed:
                    self._drop()
                    raise self._unavailable(exc) from None
                raise StoreError(
                    E_INVALID_DATA,
                    f"the authority {self.target.named} failed a request: {self._scrub(exc)}",
                    "Check the database with 'ospp center migrate' and its server log.",
                ) from None

    # -- schema --------------------------------------------------------------------------------

    def _version(self, conn: psycopg.Connection[tuple[object, ...]]) -> int:
        row = conn.execute("SELECT to_regclass('ospp_schema') IS NOT NULL").fetchone()
        if row is None or not row[0]:
            tables = conn.execute(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            ).fetchone()
            if tables is not None and int(str(tables[0])):
                raise StoreError(
                    E_INVALID_DATA,
                    f"the {self.target.named} holds tables, but it is not an ospp authority "
                    "database",
                    "Give the authority a database of its own; nothing was changed.",
                )
            return 0
        row = conn.execute("SELECT application, version FROM ospp_schema").fetchone()
        if row is None or row[0] != APPLICATION:
            raise StoreError(
                E_INVALID_DATA,
                f"the {self.target.named} is not an ospp authority database",
                "Give the authority a database of its own; nothing was changed.",
            )
        return int(str(row[1]))

    def _newer(self, found: int) -> StoreError:
        return StoreError(
            E_INVALID_DATA,
            f"the authority {self.target.named} has schema version {found}, newer than this "
            f"ospp understands ({SCHEMA_VERSION})",
            "Upgrade ospp on this node to the version the other nodes run; the database was "
            "left as it is.",
        )

    def _prepare(self, upgrade: bool) -> None:
        def step(conn: psycopg.Connection[tuple[object, ...]]) -> None:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SETUP_LOCK,))
            found = self.migrated_from = self._version(conn)
            if found > SCHEMA_VERSION:
                raise self._newer(found)
            if found == SCHEMA_VERSION:
                return
            if found and not upgrade:
                raise StoreError(
                    E_INVALID_DATA,
                    f"the authority {self.target.named} has schema version {found}; this ospp "
                    f"writes version {SCHEMA_VERSION}",
                    "Run 'ospp center migrate' once (on one node) to upgrade it.",
                )
            for version in range(found, SCHEMA_VERSION):
                for statement in MIGRATIONS[version].split(";"):
                    if statement.strip():
                        conn.execute(statement.encode())
            conn.execute("UPDATE ospp_schema SET version=%s", (SCHEMA_VERSION,))

        self._run(step)

    def schema(self) -> tuple[int, int]:
        return self._run(self._version), SCHEMA_VERSION

    # -- the Store protocol ------------------------------------------------------------------

    @contextlib.contextmanager
    def setup(self) -> Iterator[Meta]:
        import psycopg

        conn = self._connection()
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (SETUP_LOCK,))
                yield Meta(conn)
        except psycopg.Error as exc:
            self._drop()
            raise self._unavailable(exc) from None

    def add_key(
        self, serial: int, product_id: str, channel: str, last5: str, limit: int, created_at: str
    ) -> bool:
        def insert(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
            cur = conn.execute(
                "INSERT INTO keys (serial, product_id, channel, last5, activation_limit, "
                "created_at) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (serial) DO NOTHING",
                (serial, product_id, channel, last5, limit, created_at),
            )
            return cur.rowcount == 1

        return self._run(insert)

    def key_state(self, serial: int) -> tuple[int, bool] | None:
        def read(conn: psycopg.Connection[tuple[object, ...]]) -> tuple[int, bool] | None:
            row = conn.execute(
                "SELECT activation_limit, blocked FROM keys WHERE serial=%s", (serial,)
            ).fetchone()
            return None if row is None else (int(str(row[0])), bool(row[1]))

        return self._run(read)

    def key_records(self) -> list[KeyRecord]:
        def read(conn: psycopg.Connection[tuple[object, ...]]) -> list[KeyRecord]:
            rows = conn.execute(
                "SELECT k.serial, k.product_id, k.channel, k.last5, k.activation_limit, "
                "k.blocked, count(DISTINCT a.machine || '/' || "
                "CASE k.channel WHEN 'kms-host' THEN '' ELSE a.hardware END), k.created_at, "
                "coalesce(sum(a.times), 0) "
                "FROM keys k LEFT JOIN activations a ON a.serial = k.serial "
                "GROUP BY k.serial ORDER BY k.created_at, k.serial"
            ).fetchall()
            return [
                KeyRecord(
                    int(str(r[0])),
                    str(r[1]),
                    str(r[2]),
                    str(r[3]),
                    int(str(r[4])),
                    bool(r[5]),
                    int(str(r[6])),
                    str(r[7]),
                    int(str(r[8])),
                )
                for r in rows
            ]

        return self._run(read)

    def block(self, serial: int) -> None:
        self._run(lambda c: c.execute("UPDATE keys SET blocked=TRUE WHERE serial=%s", (serial,)))

    def extend(self, serial: int, by: int) -> None:
        self._run(
            lambda c: c.execute(
                "UPDATE keys SET activation_limit = activation_limit + %s WHERE serial=%s",
                (by, serial),
            )
        )

    def count(self, serial: int, body: Callable[[Count | Missing], T]) -> T:
        def counted(conn: psycopg.Connection[tuple[object, ...]]) -> T:
            row = conn.execute(
                "SELECT activation_limit, blocked FROM keys WHERE serial=%s FOR UPDATE", (serial,)
            ).fetchone()
            if row is None:
                return body(Missing())
            return body(Count(conn, serial, (int(str(row[0])), bool(row[1]))))

        return self._run(counted, pipeline=True)

    def close(self) -> None:
        """Close every connection this store opened, in any thread."""
        for conn in list(self._opened):
            with contextlib.suppress(Exception):
                conn.close()
        self._opened.clear()
        self._local = threading.local()
