"""The authority's storage interface: everything about it that changes (the keys issued, their
limits and blocks, the activation records and the authority's meta data) behind one protocol.

Two implementations: SQLite in ``<OSPP_CENTER_HOME>/center.db`` (the default, one node) and
PostgreSQL (``OSPP_CENTER_DB=postgresql://user@host:port/db``, several nodes sharing one
database). Which one is used is settled here; the PostgreSQL driver is imported only when a
PostgreSQL URL is configured. The signing keys are files in ``OSPP_CENTER_HOME`` either way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar
from urllib.parse import unquote, urlsplit

from ospp.core.errors import E_ACCESS_DENIED, E_INVALID_DATA, StoreError

DB_ENV = "OSPP_CENTER_DB"
URL_FILE = "database.url"  # in OSPP_CENTER_HOME, written by 'ospp center init --db URL'

T = TypeVar("T")


@dataclass(frozen=True)
class KeyRecord:
    serial: int
    product_id: str
    channel: str
    last5: str
    limit: int
    blocked: bool
    used: int  # MAK: machines activated; KMS host: hosts activated
    created_at: str
    activations: int = 0  # every activation granted, reactivations included

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


class MetaTx(Protocol):
    """The authority's meta data (name, key secret, creation time) inside the set-up lock."""

    def get(self, name: str) -> str | None: ...

    def put(self, name: str, value: str) -> None: ...

    def all(self) -> dict[str, str]: ...


class CountTx(Protocol):
    """One key's activation records, inside a transaction that holds that key exclusively."""

    def key(self) -> tuple[int, bool] | None:
        """(limit, blocked), or None when the key is not in the records."""

    def hosts(self) -> dict[str, int]:
        """KMS host keys: activations so far per machine."""

    def seen(self, machine: str, hardware: str) -> bool:
        """Has this machine on this hardware activated the key before?"""

    def used(self) -> int:
        """MAK: how many (machine, hardware) pairs have activated the key."""

    def record(self, machine: str, hardware: str, now: str, via: str) -> None:
        """Record one activation (a repeat bumps the pair's count)."""

    def hardware_of(self, machine: str) -> list[str]:
        """The hardware hashes this machine has activated the key with."""

    def move(self, machine: str, old: str, new: str, now: str) -> None:
        """Move a machine's record from hardware ``old`` to ``new`` (a reactivation within
        tolerance: the same computer, no new activation)."""


class Store(Protocol):
    """Where an authority keeps its mutable state."""

    backend: str  # "sqlite" or "postgresql"
    where: str  # shown in messages: a path, or the database without its password
    migrated_from: int  # the schema version found when the store was opened
    threads: int  # how many threads may use the store at once (each gets its own connection)

    def setup(self) -> AbstractContextManager[MetaTx]:
        """A transaction that serialises first-use set-up across processes and nodes."""

    def add_key(
        self, serial: int, product_id: str, channel: str, last5: str, limit: int, created_at: str
    ) -> bool:
        """Insert a key; False (nothing written) when the serial is taken."""

    def key_state(self, serial: int) -> tuple[int, bool] | None: ...

    def key_records(self) -> list[KeyRecord]: ...

    def block(self, serial: int) -> None: ...

    def extend(self, serial: int, by: int) -> None: ...

    def count(self, serial: int, body: Callable[[CountTx], T]) -> T:
        """Run ``body`` in one transaction holding ``serial`` exclusively, commit if it returns.

        An exception from ``body`` rolls everything back. PostgreSQL runs it again (a bounded
        number of times) after a serialization failure, so ``body`` must only touch ``tx``.
        """

    def schema(self) -> tuple[int, int]:
        """(schema version found, schema version this ospp writes)."""

    def close(self) -> None: ...


def database_url(home: Path, environ: Mapping[str, str]) -> str | None:
    """The PostgreSQL URL configured for ``home``: ``OSPP_CENTER_DB``, else the URL file."""
    value = environ.get(DB_ENV, "").strip()
    if value:
        return value
    path = home / URL_FILE
    from ospp.core.files import read_state_file  # a FIFO in its place is never waited on

    try:
        text = read_state_file(path).decode("utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(
            E_ACCESS_DENIED,
            f"the authority's database setting {path} cannot be read: {exc}",
            f"Fix or remove the file, or set {DB_ENV}.",
        ) from exc
    if not text:  # emptied: on SQLite instead, the authority would be a new one, keys unknown
        raise StoreError(
            E_INVALID_DATA,
            f"the authority's database setting {path} is empty",
            "It was left as it is. Write the authority's postgresql:// URL back into it, or "
            f"set {DB_ENV}; remove it only if the authority's records are in center.db.",
        )
    return text


@dataclass(frozen=True)
class PgTarget:
    """The parts of a PostgreSQL URL that may be shown: never the password."""

    user: str
    address: str  # host:port, libpq's host1:port1,host2:port2 for failover, "" for the default
    database: str
    password: str | None

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"postgresql://{user}{self.address}/{self.database}"

    @property
    def named(self) -> str:
        return f"database {self.database!r} on {self.address or 'the local server'}"


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


class UrlError(StoreError):
    """A database setting that is not a postgresql:// URL; ``reason``, when set, says what
    in it is wrong (``ospp center init --db`` words it as a usage error)."""

    def __init__(self, reason: str = "", hint: str | None = None) -> None:
        self.reason = reason
        what = f"a valid URL: {reason}" if reason else "a postgresql://user@host:port/database URL"
        super().__init__(
            E_INVALID_DATA,
            f"the authority database setting ({DB_ENV} or {URL_FILE}) is not {what}",
            hint
            or f"Unset {DB_ENV} to use SQLite in OSPP_CENTER_HOME, or give a postgresql:// URL.",
        )


def parse_url(url: str) -> PgTarget:
    """Check that ``url`` is a postgresql:// URL and split out what may be shown of it."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:  # e.g. an unbalanced [ in the host
        parts = urlsplit("invalid:")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    addresses: list[str] = []
    for host in hosts.split(",") if hosts else []:
        name, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
        if not name:
            name, port = host, ""
        if port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            addresses = []
            break
        addresses.append(f"{name}:{port or 5432}")
    if parts.scheme not in ("postgresql", "postgres") or (hosts and not addresses):
        raise UrlError()
    if _BAD_PERCENT.search(url):  # unquote() would pass it on as it is; libpq refuses it
        raise UrlError(
            "a '%' in it is not followed by two hexadecimal digits",
            "Write a '%' in a user name or password as %25.",
        )
    database = unquote(parts.path.lstrip("/")) or unquote(user) or "postgres"
    return PgTarget(
        _printable(unquote(user)),
        _printable(",".join(addresses)),
        _printable(database),
        unquote(password) if colon and password else None,
    )
