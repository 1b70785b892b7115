"""A simulated machine's licence store: the file, opening it, reading its licences and
settings, and the write transaction every change is made in.

One SQLite file per simulated machine, ``<OSPP_HOME>/machines/<name>/licenses.db``. Every
mutation bumps ``generation`` inside its transaction, so scripts (and the concurrency test) can
see that no update was lost. What a setting may be is ospp.machine.settings; the changes to
licences and the history are ospp.machine.store_changes and ospp.machine.history, imported at
the first change, so that a command that only reads (/dstatus) does without them.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ospp.core.catalog import Channel, Product, Sku, catalog
from ospp.core.clock import Clock, iso, stored_time
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
from ospp.machine.settings import DEFAULTS, KmsSettings, kms_settings, valid_setting

if TYPE_CHECKING:
    from ospp.machine.history import HistoryEntry
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
# How long a KMS activation is valid (ospp.protocol.kms.VALIDITY, which reading a store does
# without): its expiry is stored that far after a time ospp works with.
KMS_VALIDITY = timedelta(days=180)
STORE_FILE = "licenses.db"  # one per machine, under <OSPP_HOME>/machines/<name>/


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
            store._identify()
        return store

    def _identify(self) -> None:
        """Give a new store its CMID. Only a store that holds nothing yet is new (its maker
        gives it one right after its schema); one that holds anything else without a CMID
        lost it, and is refused as damaged: a new CMID would silently make it another
        machine, whose activations no longer match it."""
        import uuid

        with self.write() as conn:
            if conn.execute("SELECT 1 FROM meta WHERE name='cmid'").fetchone():
                return  # another process gave it one meanwhile
            held = conn.execute(
                "SELECT (SELECT count(*) FROM meta) + (SELECT count(*) FROM licenses) "
                "+ (SELECT count(*) FROM history)"
            ).fetchone()[0]
            if held:
                raise StoreError(
                    E_INVALID_DATA,
                    N_(
                        "the licence store {path} has no CMID, but holds licences, history or "
                        "settings",
                        path=str(self.db.path),
                    ),
                    N_("Restore the file from a backup; it was left as it is."),
                )
            conn.execute("INSERT INTO meta VALUES ('cmid', ?)", (str(uuid.uuid4()),))
            conn.execute("INSERT INTO meta VALUES ('created_at', ?)", (iso(self.clock.now()),))

    # -- reading -------------------------------------------------------------------------------

    def kms(self) -> KmsSettings:
        """The KMS client settings (/sethst, /cachst, /skms-domain, intervals)."""
        return kms_settings(self.settings())

    def settings(self, conn: sqlite3.Connection | None = None) -> dict[str, str]:
        def fetch(c: sqlite3.Connection) -> dict[str, str]:
            values = dict(DEFAULTS)
            values.update(dict(c.execute("SELECT name, value FROM meta").fetchall()))
            for name, value in values.items():
                if not valid_setting(name, value):
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
        if not isinstance(row[0], str):  # SQLite lets a TEXT PRIMARY KEY hold NULL, or bytes
            raise StoreError(
                E_INVALID_DATA,
                N_(
                    "the licence store {path} has a damaged record for SKU {sku}: {why}",
                    path=str(self.db.path),
                    sku=repr(row[0])[:60],
                    why="the SKU id is not text",
                ),
                N_("Restore the file from a backup; it was left as it is."),
            )
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
                for name, ahead in (("valid_until", KMS_VALIDITY), ("activated_at", timedelta(0))):
                    if (kms or name in activation) and not stored_time(activation.get(name), ahead):
                        raise ValueError(f"the activation has no {name} time")
            if row[3] is not None and not isinstance(row[3], str):
                raise ValueError("the product key is not text")
            installed, grace = stored_time(row[1]), stored_time(row[2])
            key_at = stored_time(row[4])
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
        """The history entries of one kind ("kms", "acterr"), oldest first."""
        from ospp.machine import history

        with self.db.read() as conn:
            return history.entries(conn, str(self.db.path), kind)

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
        if row is not None and not valid_setting("generation", row[0]):
            raise self._damaged_setting("generation", row[0])
        generation = int(row[0]) + 1 if row else 1
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (str(generation),))
        return generation

    @staticmethod
    def set_setting(conn: sqlite3.Connection, name: str, value: str) -> None:
        if name not in DEFAULTS:
            raise KeyError(name)
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    # The changes themselves (ospp.machine.store_changes, ospp.machine.history) are imported
    # at the first one: /dstatus only reads.

    def ensure_product(self, conn: sqlite3.Connection, product: Product) -> list[Sku]:
        """Install the licences of a volume product (all its channels); keep existing ones."""
        from ospp.machine import store_changes

        return store_changes.ensure_product(conn, product, self.clock)

    def install_key(self, conn: sqlite3.Connection, key: ProductKey) -> Sku:
        """Install ``key``: it replaces whatever key the product had, in any channel."""
        from ospp.machine import store_changes

        return store_changes.install_key(conn, key, self.clock)

    def uninstall_key(self, conn: sqlite3.Connection, last5: str) -> list[Sku]:
        """Remove every installed key ending in ``last5``; returns the SKUs that lost one."""
        skus = []
        for lic in self.licences(conn):
            if lic.last5 and lic.last5 == last5.upper():
                self.clear_key(conn, lic.sku)
                skus.append(lic.sku)
        return skus

    def clear_key(self, conn: sqlite3.Connection, sku: Sku) -> None:
        """Remove the key (and so the activation) of one licence."""
        from ospp.machine import store_changes

        store_changes.clear_key(conn, sku)

    def set_activation(
        self, conn: sqlite3.Connection, sku: Sku, activation: dict[str, Any] | None
    ) -> None:
        from ospp.machine import store_changes

        store_changes.set_activation(conn, sku, activation)

    def set_activation_of(
        self, conn: sqlite3.Connection, lic: Licence, activation: dict[str, Any]
    ) -> None:
        """Store the activation of ``lic``'s key, unless another command changed that key
        while it was being activated (the authority or a KMS host was being asked, outside
        the store's lock): it would sit beside a key it does not belong to, and read as
        altered. Then 0xC004F014, and nothing is stored."""
        self.require_key(
            conn,
            lic.sku,
            lic.product_key,
            N_(
                "the product key of {product} was changed by another command while the key "
                "ending {last5} was being activated; its activation was not stored",
                product=lic.sku.product.id,
                last5=lic.last5 or "",
            ),
            N_("Activate the key installed now: ospp /act (or by phone: ospp /dinstid)."),
        )
        self.set_activation(conn, lic.sku, activation)

    def require_key(
        self, conn: sqlite3.Connection | None, sku: Sku, key: str | None, changed: str, hint: str
    ) -> None:
        """0xC004F014 (``changed``, ``hint``) unless ``sku``'s licence still holds ``key``
        (None: no key): what a command read before asking someone, outside the store's lock,
        may have been changed by another command meanwhile."""
        now = next((n for n in self.licences(conn) if n.sku.sku_id == sku.sku_id), None)
        if now is None or now.product_key != key:
            from ospp.core.errors import E_KEY_NOT_AVAILABLE, LicensingError

            raise LicensingError(E_KEY_NOT_AVAILABLE, changed, hint)

    def restart_grace(self, conn: sqlite3.Connection, sku: Sku) -> None:
        from ospp.machine import store_changes

        store_changes.restart_grace(conn, sku, self.clock)

    def record(
        self,
        conn: sqlite3.Connection,
        kind: str,
        code: int,
        detail: str,
        sku: Sku,
        target: str | None = None,
    ) -> None:
        """Add a history entry (ospp.machine.history)."""
        from ospp.machine import history

        history.record(conn, iso(self.clock.now()), kind, code, detail, sku, target)
