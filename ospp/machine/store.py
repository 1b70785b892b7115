"""A simulated machine's licence store: installed licences and keys, settings, history.

One SQLite file per simulated machine, ``<OSPP_HOME>/machines/<name>/licenses.db``. Every
mutation bumps ``generation`` inside its transaction, so scripts (and the concurrency test) can
see that no update was lost.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ospp.core.catalog import Channel, Product, Sku, catalog
from ospp.core.clock import EARLIEST, LATEST, Clock, iso
from ospp.core.db import Database, StoreMissing
from ospp.core.errors import (
    E_ACCESS_DENIED,
    E_INVALID_DATA,
    E_NO_MACHINE,
    N_,
    StoreError,
    UsageError,
)
from ospp.core.paths import StrPath, machine_dir
from ospp.core.record import Record

if TYPE_CHECKING:
    from ospp.protocol.keys import ProductKey

_SCHEMA = [
    """
    CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE licenses (
        sku_id TEXT PRIMARY KEY,
        product_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        installed_at TEXT NOT NULL,
        grace_start TEXT NOT NULL,
        product_key TEXT,
        key_installed_at TEXT,
        activation TEXT
    );
    CREATE TABLE history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        sku_id TEXT,
        target TEXT,
        code INTEGER NOT NULL,
        detail TEXT NOT NULL
    );
    """,
]

MAX_REARMS = 5
STORE_FILE = "licenses.db"  # one per machine, under <OSPP_HOME>/machines/<name>/

# Settings kept in ``meta`` with their defaults (ospp.vbs / REFERENCE 4).
DEFAULTS: dict[str, str] = {
    "kms_host": "",
    "kms_port": "1688",
    "kms_cache": "1",
    "kms_domain": "",
    "kms_cached_host": "",
    "kms_dns_host": "",
    "kms_policy": "any",  # which KMS host certificates to accept: any, online-only
    "actype": "0",
    "activation_interval": "120",
    "renewal_interval": "10080",
    "rearms_used": "0",
    "user_operations": "0",  # 1: standard users may change licensing (/puserops), 0: denied
    "osppsvc_start_mode": "manual",  # the simulated licensing service: manual or auto
    "osppsvc_started_at": "",  # when /osppsvcrestart last (re)started it; "" = never
    "generation": "0",
}


class Licence(Record):
    """One installed licence (a SKU) and, if any, its key and activation record."""

    sku: Sku
    installed_at: datetime
    grace_start: datetime
    product_key: str | None
    key_installed_at: datetime | None
    activation: dict[str, Any] | None

    @property
    def last5(self) -> str | None:
        return self.product_key[-5:] if self.product_key else None


class HistoryEntry(Record):
    at: datetime
    kind: str  # "kms" or "acterr"
    sku_id: str | None
    target: str | None
    code: int
    detail: str


def _dt(text: object) -> datetime | None:
    """A stored time: ISO 8601 text with its zone, within the times ospp works with."""
    if not text:
        return None
    if not isinstance(text, str):
        raise ValueError(f"a time stored as {type(text).__name__}, not text")
    value = datetime.fromisoformat(text)
    if value.tzinfo is None or not EARLIEST <= value <= LATEST:
        raise ValueError(f"the time {text!r} is outside the times ospp works with")
    return value


# Settings stored as whole numbers, and how many digits they may have.
_NUMBERS = {
    "kms_port": 5,
    "actype": 1,
    "activation_interval": 9,
    "renewal_interval": 9,
    "rearms_used": 9,
    "generation": 18,
}


def cacheable_host(value: str) -> bool:
    """Whether ``value`` (``host:port``, ``[IPv6]:port``) may be kept as the cached KMS host:
    what reading the store accepts for it."""
    from ospp.core.hostname import split_host

    try:
        split_host(value, 1688)
    except UsageError:
        return False
    return True


# Settings that name a host or domain, stored as /sethst, /skms-domain and discovery write
# them: checked by the same rules, so that a host edited into the store is reported as a
# damaged setting rather than tried (/sethst keeps the port apart). The rules are imported
# only for a store that holds one: /dstatus of a machine with none does without them.
_HOSTS = frozenset({"kms_host", "kms_cached_host", "kms_domain"})


def _valid_host_setting(name: str, value: str) -> bool:
    from ospp.core.hostname import valid_domain, valid_target

    if name == "kms_host":
        return valid_target(value)
    if name == "kms_domain":
        return valid_domain(value)
    return cacheable_host(value)  # host:port, [IPv6]:port


def _valid_setting(name: str, value: object) -> bool:
    """Whether a stored setting is one ospp can have written: text; a whole number of at most
    so many digits for a number; a valid host (or none) for a host."""
    if not isinstance(value, str):
        return False
    digits = _NUMBERS.get(name)
    if digits is not None:
        return value.isascii() and value.isdigit() and len(value) <= digits
    return name not in _HOSTS or not value or _valid_host_setting(name, value)


class NoMachine(UsageError):
    """No simulated machine has this name: never made, or removed meanwhile. Commands over
    many machines pass over it (a directory holding no store is not a machine)."""


def no_machine(name: str) -> NoMachine:
    """The error for a computer name that names no simulated machine (ospp.vbs's answer for
    a computer it cannot reach)."""
    return NoMachine(
        N_("there is no simulated machine {name}", name=repr(name)),
        N_(
            "Run 'ospp machines' for the list; create one with "
            "'ospp install-product PRODUCT {name}'.",
            name=name,
        ),
        code=E_NO_MACHINE,
    )


def machines_unreadable(root: StrPath, exc: OSError) -> StoreError:
    """The error for a directory of machines that cannot be listed."""
    return StoreError(
        E_ACCESS_DENIED,
        N_(
            "the simulated machines in {root} cannot be listed: {why}",
            root=str(root),
            why=str(exc.strerror or exc),
        ),
        N_("Check that OSPP_HOME and the machines directory in it may be read."),
    )


def holds_store(directory: StrPath) -> bool:
    """Whether a machine's directory holds its store. Anything in the store's place (a FIFO,
    a link) counts, and so does a directory that cannot be looked into (a mode that forbids
    it), so that opening it reports why."""
    try:
        os.lstat(os.path.join(directory, STORE_FILE))
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return True


class MachineStore:
    """The licence store of one simulated machine. Construct with :meth:`open`."""

    def __init__(self, db: Database, name: str, directory: StrPath, clock: Clock) -> None:
        self.db = db
        self.name = name
        self.directory = os.fspath(directory)
        self.clock = clock

    @property
    def home(self) -> str:
        """The home this machine belongs to (``OSPP_HOME``): trust anchors, seal key."""
        return os.path.dirname(os.path.dirname(self.directory))

    @classmethod
    def open(cls, home: StrPath, name: str, clock: Clock, *, create: bool = False) -> MachineStore:
        """The store of machine ``name``; ``create`` makes it when there is none (a new
        machine, or this one). Otherwise a machine whose store is gone, removed by another
        process meanwhile, is the error for a machine that does not exist: it is never
        brought back empty."""
        directory = machine_dir(home, name)
        if create:
            clock.now()  # a damaged lab clock is refused before a new store is made
        try:
            # the hardware profile is made once the store is (ospp.machine.hardware)
            witness = os.path.join(directory, "hardware.json")
            db = Database(
                os.path.join(directory, STORE_FILE),
                "licence",
                _SCHEMA,
                create=create,
                witnesses=[witness],
                remake=f"ospp install-product PRODUCT {name}",
            )
        except StoreMissing:
            raise no_machine(name) from None
        store = cls(db, name, directory, clock)
        with db.read() as conn:
            known = conn.execute("SELECT 1 FROM meta WHERE name='cmid'").fetchone()
        if known is None:
            import uuid

            with store.write() as conn:
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('cmid', ?)", (str(uuid.uuid4()),))
                conn.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('created_at', ?)", (iso(clock.now()),)
                )
        return store

    # -- reading -------------------------------------------------------------------------------

    def kms(self) -> KmsSettings:
        """The KMS client settings (/sethst, /cachst, /skms-domain, intervals)."""
        return kms_settings(self.settings())

    def settings(self, conn: sqlite3.Connection | None = None) -> dict[str, str]:
        def fetch(c: sqlite3.Connection) -> dict[str, str]:
            values = dict(DEFAULTS)
            values.update(dict(c.execute("SELECT name, value FROM meta").fetchall()))
            for name, value in values.items():
                if not _valid_setting(name, value):
                    raise self._damaged_setting(name, value)
            return values

        if conn is not None:
            return fetch(conn)
        with self.db.read() as c:
            return fetch(c)

    def _damaged_setting(self, name: str, value: object) -> StoreError:
        return StoreError(
            E_INVALID_DATA,
            N_(
                "the licence store {path} has a damaged setting {name}: {value}",
                path=str(self.db.path),
                name=name,
                value=repr(value)[:60],
            ),
            N_("Restore the file from a backup; it was left as it is."),
        )

    def licences(self, conn: sqlite3.Connection | None = None) -> list[Licence]:
        def fetch(c: sqlite3.Connection) -> list[Licence]:
            rows = c.execute(
                "SELECT sku_id, installed_at, grace_start, product_key, key_installed_at, "
                "activation FROM licenses"
            ).fetchall()
            return [self._licence(row) for row in rows]

        if conn is not None:
            found = fetch(conn)
        else:
            with self.db.read() as c:
                found = fetch(c)
        order = {p.id: i for i, p in enumerate(catalog().products)}
        channels = list(Channel)
        return sorted(
            found, key=lambda lic: (order[lic.sku.product.id], channels.index(lic.sku.channel))
        )

    licenses = licences  # the name of the table it reads; scripts written against it keep working

    def _licence(self, row: tuple[Any, ...]) -> Licence:
        sku = catalog().sku(row[0])
        if sku is None:
            raise StoreError(
                E_INVALID_DATA,
                N_(
                    "the licence store {path} holds SKU {sku}, which is not in the catalog",
                    path=str(self.db.path),
                    sku=row[0],
                ),
                N_("It was written by another version of ospp; the file was left as it is."),
            )
        activation = None
        try:
            if row[5]:
                from ospp.core.canonical import load_json  # with json: only when there is one

                activation = load_json(row[5])
                if not isinstance(activation, dict):
                    raise ValueError("the activation is not a JSON object")
                # The times status reads compute with (the seal says who wrote them, not
                # that they are times): a KMS activation's expiry and when it was made.
                kms = sku.channel is Channel.KMS_CLIENT or activation.get("kind") == "kms"
                for name in ("valid_until", "activated_at"):
                    if (kms or name in activation) and _dt(activation.get(name)) is None:
                        raise ValueError(f"the activation has no {name} time")
            if row[3] is not None and not isinstance(row[3], str):
                raise ValueError("the product key is not text")
            installed, grace = _dt(row[1]), _dt(row[2])
            key_at = _dt(row[4])
            if installed is None or grace is None:
                raise ValueError("no installation or grace time")
        except (ValueError, TypeError) as exc:
            raise StoreError(
                E_INVALID_DATA,
                N_(
                    "the licence store {path} has a damaged record for SKU {sku}: {why}",
                    path=str(self.db.path),
                    sku=row[0],
                    why=str(exc),
                ),
                N_("Restore the file from a backup; it was left as it is."),
            ) from exc
        return Licence(sku, installed, grace, row[3], key_at, activation)

    def history(self, kind: str) -> list[HistoryEntry]:
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT at, kind, sku_id, target, code, detail FROM history WHERE kind=? "
                "ORDER BY id",
                (kind,),
            ).fetchall()
        entries = []
        for r in rows:
            try:
                at = _dt(r[0])
                if (
                    at is None
                    or type(r[4]) is not int
                    or not all(v is None or isinstance(v, str) for v in (r[1], r[2], r[3], r[5]))
                ):
                    raise ValueError("a value of the wrong type")
            except (ValueError, TypeError) as exc:
                raise StoreError(
                    E_INVALID_DATA,
                    N_(
                        "the licence store {path} has a damaged history entry: {why}",
                        path=str(self.db.path),
                        why=str(exc),
                    ),
                    N_("Restore the file from a backup; it was left as it is."),
                ) from exc
            entries.append(HistoryEntry(at, *r[1:]))
        return entries

    # -- writing -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on this store, the only way it is written. Its settings are
        checked first, as reading them checks them, inside the transaction (no other process
        can damage them between the check and the write): a damaged store is refused with
        the error /dstatus gives, and nothing is written."""
        with self.db.write() as conn:
            self.settings(conn)
            yield conn

    def bump(self, conn: sqlite3.Connection) -> int:
        """Count one mutation (a read-modify-write, safe under BEGIN IMMEDIATE)."""
        row = conn.execute("SELECT value FROM meta WHERE name='generation'").fetchone()
        if row is not None and not _valid_setting("generation", row[0]):
            raise self._damaged_setting("generation", row[0])
        generation = int(row[0]) + 1 if row else 1
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (str(generation),))
        return generation

    @staticmethod
    def set_setting(conn: sqlite3.Connection, name: str, value: str) -> None:
        if name not in DEFAULTS:
            raise KeyError(name)
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    def ensure_product(self, conn: sqlite3.Connection, product: Product) -> list[Sku]:
        """Install the licences of a volume product (all its channels); keep existing ones."""
        now = iso(self.clock.now())
        added = []
        for channel in (Channel.KMS_CLIENT, Channel.MAK):
            sku = product.sku(channel)
            cur = conn.execute(
                "INSERT OR IGNORE INTO licenses (sku_id, product_id, channel, installed_at, "
                "grace_start) VALUES (?, ?, ?, ?, ?)",
                (sku.sku_id, product.id, channel.value, now, now),
            )
            if cur.rowcount:
                added.append(sku)
        return added

    def install_key(self, conn: sqlite3.Connection, key: ProductKey) -> Sku:
        """Install ``key``: it replaces whatever key the product had, in any channel."""
        self.ensure_product(conn, key.product)
        sku = key.product.sku(key.channel)
        now = iso(self.clock.now())
        if key.channel is Channel.KMS_HOST:
            conn.execute(
                "INSERT OR IGNORE INTO licenses (sku_id, product_id, channel, installed_at, "
                "grace_start) VALUES (?, ?, ?, ?, ?)",
                (sku.sku_id, key.product.id, key.channel.value, now, now),
            )
        conn.execute(
            "UPDATE licenses SET product_key=NULL, key_installed_at=NULL, activation=NULL "
            "WHERE product_id=? AND sku_id<>?",
            (key.product.id, sku.sku_id),
        )
        conn.execute(
            "UPDATE licenses SET product_key=?, key_installed_at=?, activation=NULL WHERE sku_id=?",
            (key.compact, now, sku.sku_id),
        )
        return sku

    def uninstall_key(self, conn: sqlite3.Connection, last5: str) -> list[Sku]:
        """Remove every installed key ending in ``last5``; returns the SKUs that lost one."""
        skus = []
        for lic in self.licences(conn):
            if lic.last5 and lic.last5 == last5.upper():
                conn.execute(
                    "UPDATE licenses SET product_key=NULL, key_installed_at=NULL, "
                    "activation=NULL WHERE sku_id=?",
                    (lic.sku.sku_id,),
                )
                skus.append(lic.sku)
        return skus

    def clear_key(self, conn: sqlite3.Connection, sku: Sku) -> None:
        """Remove the key (and so the activation) of one licence."""
        conn.execute(
            "UPDATE licenses SET product_key=NULL, key_installed_at=NULL, activation=NULL "
            "WHERE sku_id=?",
            (sku.sku_id,),
        )

    def set_activation(
        self, conn: sqlite3.Connection, sku: Sku, activation: dict[str, Any] | None
    ) -> None:
        import json

        conn.execute(
            "UPDATE licenses SET activation=? WHERE sku_id=?",
            (json.dumps(activation, sort_keys=True) if activation else None, sku.sku_id),
        )

    def restart_grace(self, conn: sqlite3.Connection, sku: Sku) -> None:
        conn.execute(
            "UPDATE licenses SET grace_start=? WHERE sku_id=?",
            (iso(self.clock.now()), sku.sku_id),
        )

    def record(
        self,
        conn: sqlite3.Connection,
        kind: str,
        code: int,
        detail: str,
        sku: Sku | None = None,
        target: str | None = None,
    ) -> None:
        conn.execute(
            "INSERT INTO history (at, kind, sku_id, target, code, detail) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (iso(self.clock.now()), kind, sku.sku_id if sku else None, target, code, detail),
        )


class KmsSettings(Record):
    host: str | None
    port: int
    caching: bool
    lookup_domain: str | None
    actype: int
    activation_interval: int
    renewal_interval: int
    discovered: str | None  # host:port DNS named first at the last discovery
    cached: str | None  # host:port that last answered, reused while host caching is on
    online_only: bool = False  # accept only hosts certified online (/kms-policy:online-only)


def kms_settings(values: Mapping[str, str]) -> KmsSettings:
    return KmsSettings(
        host=values["kms_host"] or None,
        port=int(values["kms_port"]),
        caching=values["kms_cache"] == "1",
        lookup_domain=values["kms_domain"] or None,
        actype=int(values["actype"]),
        activation_interval=int(values["activation_interval"]),
        renewal_interval=int(values["renewal_interval"]),
        discovered=values["kms_dns_host"] or None,
        cached=values["kms_cached_host"] or None,
        online_only=values.get("kms_policy") == "online-only",
    )
