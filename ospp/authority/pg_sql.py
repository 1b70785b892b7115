"""The SQL of an authority on PostgreSQL: its versioned schema, and the statements one
activation, or the first-use set-up, runs inside a transaction :mod:`ospp.authority.pg_store`
opened (the key's row already locked, for an activation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

APPLICATION = "ospp-authority"

# MIGRATIONS[i] moves the schema from version i to i + 1; never edit a released step.
MIGRATIONS = [
    """
    CREATE TABLE ospp_schema (application TEXT NOT NULL, version INTEGER NOT NULL);
    CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE keys (
        serial BIGINT PRIMARY KEY,
        product_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        last5 TEXT NOT NULL,
        activation_limit BIGINT NOT NULL,
        blocked BOOLEAN NOT NULL DEFAULT FALSE,
        created_at TEXT NOT NULL
    );
    CREATE TABLE activations (
        serial BIGINT NOT NULL REFERENCES keys(serial),
        machine TEXT NOT NULL,
        hardware TEXT NOT NULL,
        first_at TEXT NOT NULL,
        last_at TEXT NOT NULL,
        times INTEGER NOT NULL,
        via TEXT NOT NULL,
        PRIMARY KEY (serial, machine, hardware)
    );
    INSERT INTO ospp_schema VALUES ('ospp-authority', 0)
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


class Meta:
    def __init__(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        self.conn = conn

    def get(self, name: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE name=%s", (name,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, name: str, value: str) -> None:
        self.conn.execute("INSERT INTO meta VALUES (%s, %s)", (name, value))

    def all(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self.conn.execute("SELECT name, value FROM meta")}


class Count:
    def __init__(
        self, conn: psycopg.Connection[tuple[object, ...]], serial: int, state: tuple[int, bool]
    ) -> None:
        self.conn = conn
        self.serial = serial
        self.state: tuple[int, bool] | None = state
        self._used: int | None = None

    def key(self) -> tuple[int, bool] | None:
        return self.state

    def hosts(self) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT machine, sum(times) FROM activations WHERE serial=%s GROUP BY machine",
            (self.serial,),
        )
        return {str(r[0]): int(str(r[1])) for r in rows}

    def seen(self, machine: str, hardware: str) -> bool:
        # One round trip answers both questions a MAK asks (the key's row is already locked,
        # and this is a new statement, so it sees every activation committed before the lock).
        row = self.conn.execute(
            "SELECT count(*), coalesce(bool_or(machine=%s AND hardware=%s), FALSE) "
            "FROM activations WHERE serial=%s",
            (machine, hardware, self.serial),
        ).fetchone()
        assert row is not None  # an aggregate always returns a row
        self._used = int(str(row[0]))
        return bool(row[1])

    def used(self) -> int:
        if self._used is not None:
            return self._used
        row = self.conn.execute(
            "SELECT count(*) FROM activations WHERE serial=%s", (self.serial,)
        ).fetchone()
        return 0 if row is None else int(str(row[0]))

    def record(self, machine: str, hardware: str, now: str, via: str) -> None:
        self.conn.execute(
            "INSERT INTO activations VALUES (%s, %s, %s, %s, %s, 1, %s) "
            "ON CONFLICT (serial, machine, hardware) DO UPDATE SET last_at=excluded.last_at, "
            "times=activations.times+1",
            (self.serial, machine, hardware, now, now, via),
        )

    def hardware_of(self, machine: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT hardware FROM activations WHERE serial=%s AND machine=%s",
            (self.serial, machine),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def move(self, machine: str, old: str, new: str, now: str) -> None:
        self.conn.execute(
            "UPDATE activations SET hardware=%s, last_at=%s, times=activations.times+1 "
            "WHERE serial=%s AND machine=%s AND hardware=%s",
            (new, now, self.serial, machine, old),
        )


class Missing:
    """The CountTx of a key that is not in the records: nothing to lock, nothing to count."""

    def key(self) -> tuple[int, bool] | None:
        return None

    def hosts(self) -> dict[str, int]:
        return {}

    def seen(self, machine: str, hardware: str) -> bool:
        return False

    def used(self) -> int:
        return 0

    def record(self, machine: str, hardware: str, now: str, via: str) -> None:
        raise AssertionError("an unknown key is never counted")

    def hardware_of(self, machine: str) -> list[str]:
        return []

    def move(self, machine: str, old: str, new: str, now: str) -> None:
        raise AssertionError("an unknown key is never counted")
