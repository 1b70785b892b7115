"""A KMS host's durable state: the clients it counted, its statistics and settings, and the
handling of one group-commit batch of requests. Its key and certificate are kept by
:class:`~ospp.kmshost.identity.HostIdentity`, which :class:`KmsHost` extends.

The counts live in ``<OSPP_KMS_HOME>/kms.db``: unique CMIDs per application group, seen in the
last 30 days, capped at twice the threshold; a renewing client refreshes its entry and is not
counted twice. The rules themselves (threshold, window, certificate check) are in
``ospp.protocol.kms``, shared with the client.
"""

from __future__ import annotations

import binascii
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring_ascii as _js
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ospp.dns.publish import Publishing

from ospp.core.clock import Clock, clock_from_env, iso
from ospp.core.db import Database
from ospp.core.errors import (
    E_INVALID_DATA,
    E_SKEW,
    E_UNEXPECTED,
    LicensingError,
    OsppError,
    StoreError,
    hex_code,
)
from ospp.core.paths import kms_home
from ospp.kmshost.batchsign import sign_batch
from ospp.kmshost.identity import PORT_SETTINGS, SIGNING_KEY, HostIdentity, interval_settings
from ospp.kmshost.packs import NOT_ACTIVATED, ServingPack, pack_for
from ospp.kmshost.request import Request, parse_item
from ospp.kmshost.retention import SETTING, WAL_LIMIT, check_max_clients, start_background
from ospp.kmshost.schema import SCHEMA
from ospp.kmshost.status import (
    DEFAULT_SETTINGS,
    current_counts,
    last_publish_json,
    read_stats,
    status_of,
)
from ospp.protocol.kms import (
    CAP,
    DEFAULT_PORT,
    MAX_SKEW,
    WINDOW,
)


class KmsHost(HostIdentity):
    """A KMS host's durable state. Construct with :meth:`open`."""

    def __init__(self, home: Path, db: Database, clock: Clock) -> None:
        super().__init__(home, db, clock)
        # Per application group: the time until which the count is known to stay at CAP.
        # While the host's time only moves forward, entries only get newer, so a full count
        # lasts until the CAP-th most recent entry ages out of the window; until then no count
        # query is needed. A lab clock moved back (a batch earlier than the one before)
        # voids every such count: entries seen since may now lie after the host's time.
        self._full_until: dict[str, int] = {}
        self._last_batch = 0  # the time of the latest batch counted
        # Held while the serving thread writes, and by the pruning thread for each of its
        # short transactions: neither waits in SQLite's busy handler for the other.
        self.writing = threading.Lock()

    @classmethod
    def from_env(cls) -> KmsHost:
        """The KMS host this environment names (``OSPP_KMS_HOME``, ``OSPP_NOW``)."""
        return cls.open(Path(kms_home()), clock_from_env())

    @classmethod
    def stored(cls, home: Path, clock: Clock) -> KmsHost | None:
        """The host whose store is in ``home``; None where there is none (never made here,
        for commands that only read it or refuse). Anything in the store's place that is not
        simply missing (a link, a directory, a file where the home should be) is opened, and
        so reported as the StoreError it is; so is a damaged lab clock."""
        clock.now()
        try:
            os.lstat(home / "kms.db")
        except FileNotFoundError:
            present = next((p for p in (home, *home.parents) if os.path.lexists(p)), None)
            if present is None or present.is_dir():
                return None
        except OSError:
            pass
        return cls.open(home, clock)

    @classmethod
    def stored_from_env(cls) -> KmsHost | None:
        """:meth:`stored` for the host this environment names."""
        return cls.stored(Path(kms_home()), clock_from_env())

    @classmethod
    def open(cls, home: Path, clock: Clock) -> KmsHost:
        clock.now()  # a damaged lab clock is refused before a new store is made
        db = Database(
            home / "kms.db",
            "KMS host",
            SCHEMA,
            synchronous="NORMAL",
            witnesses=[home / SIGNING_KEY],  # made once the store is (HostIdentity.signer)
        )
        # A host with a million stored clients touches random B-tree pages on every insert:
        # keep them in SQLite's cache (64 MiB) rather than re-reading them from the OS.
        db.execute_pragma("cache_size=-65536")
        host = cls(home, db, clock)
        with db.read() as conn:
            known = conn.execute("SELECT 1 FROM meta WHERE name='host_id'").fetchone()
        if known is None:
            import uuid

            with db.write() as conn:
                if conn.execute("SELECT 1 FROM meta WHERE name='host_id'").fetchone():
                    return host  # another process made it meanwhile
                # Only a store that holds nothing yet is new: one that holds anything else
                # lost its identity, which a new one would silently replace (its certificate
                # names the old one)
                held = conn.execute(
                    "SELECT (SELECT count(*) FROM meta) + (SELECT count(*) FROM packs) "
                    "+ (SELECT count(*) FROM clients) "
                    "+ (SELECT count(*) FROM stats WHERE name != 'clients' OR value != 0)"
                ).fetchone()[0]  # the schema starts the count of clients at 0
                if held:
                    raise StoreError(
                        E_INVALID_DATA,
                        f"the KMS host store {db.path} has no host_id, but holds settings, "
                        "licence packs, clients or counts",
                        "Restore the file from a backup; it was left as it is.",
                    )
                for name, value in (
                    ("host_id", str(uuid.uuid4())),
                    ("hardware", secrets.token_hex(5)),
                    *DEFAULT_SETTINGS.items(),
                ):
                    conn.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (name, value))
        return host

    # -- serving -------------------------------------------------------------------------

    def record_port(self, port: int) -> None:
        """The port a starting ``kms serve`` listens on: shown by status and /dlv, and
        published by ``kms dns publish``, until it stops, ``slmgr /sprt`` or the next start."""
        self._set(listening_port=str(port))

    def forget_port(self, port: int) -> None:
        """A host that listened on ``port`` stops: status shows the configured port again
        (unless another host has started since, and recorded its own)."""
        with self.db.write() as conn:
            conn.execute("DELETE FROM meta WHERE name='listening_port' AND value=?", (str(port),))

    def set_port(self, port: int) -> None:
        """slmgr /sprt: the port ``kms serve`` listens on from its next start, where --listen
        names none; shown from now on."""
        # The one repair of a damaged setting there is: /sprt gives the port again.
        self._store({"port": str(port), "listening_port": None}, PORT_SETTINGS)

    def configured_port(self) -> int:
        return int(self.meta().get("port", DEFAULT_PORT))

    def publishing(self) -> Publishing:
        from ospp.dns.publish import Publishing

        return Publishing.from_json(self.meta().get("dns"))

    def change_publishing(self, change: Callable[[Publishing], None]) -> Publishing:
        """Read the publishing settings, ``change`` them and store them, in one transaction:
        two commands changing different settings at once both take effect."""
        from ospp.dns.publish import Publishing

        with self.db.write() as conn:
            stored = self.meta(conn).get("dns")
            pub = Publishing.from_json(stored)  # damaged: refused
            change(pub)
            if pub.enabled:
                pub.check()
            # the fields a newer ospp stored, unknown here, are kept as they were
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('dns', ?)", (pub.to_json(stored),))
        return pub

    def record_publish(self, outcome: str) -> None:
        self._set(dns_last=last_publish_json(iso(self.clock.now()), outcome))

    def start_checkpointer(self, every: float = 1.0) -> threading.Event:
        """Move WAL checkpoints (and their fsync), and the pruning of stored clients beyond
        the limit, off the serving thread: the serving connection stops checkpointing on its
        own, and :func:`ospp.kmshost.retention.start_background` does both in a thread.
        Returns the threading.Event that stops it."""
        self.db.execute_pragma("wal_autocheckpoint=0")
        self.db.execute_pragma(f"journal_size_limit={WAL_LIMIT}")  # when the WAL starts over
        return start_background(Path(self.db.path), self.writing, self.clock.now, every)

    def configure(
        self,
        activation: int | None = None,
        renewal: int | None = None,
        max_clients: int | None = None,
    ) -> None:
        """``kms set``: the intervals clients get and the most clients kept, changed together
        once every value given is checked (UsageError 0x80070057, nothing changed)."""
        values = interval_settings(activation, renewal)
        if max_clients is not None:
            values[SETTING] = str(check_max_clients(max_clients))
        self._set(**values)

    def serving_state(self) -> ServingState:
        """What request handling needs: read when serving starts, and again when another
        process changes the store (see ospp.kmshost.server.LiveState)."""
        with self.db.read() as conn:
            meta = self.meta(conn)
            packs = self.packs(conn)
        return ServingState(
            packs=tuple(ServingPack.of(p) for p in packs),
            activation_interval=int(meta["activation_interval"]),
            renewal_interval=int(meta["renewal_interval"]),
        )

    def process(
        self,
        state: ServingState,
        messages: Sequence[Mapping[str, Any] | Request | OsppError],
        now: datetime | None = None,
    ) -> list[dict[str, Any] | bytes]:
        """Handle a batch of requests in one transaction (group commit); sign the answers.

        Items are requests as received, or already parsed (:func:`parse_item`). If the batch
        fails as a whole, each request is redone in its own transaction, so a request that
        fails at commit fails alone and no request can make another fail. ``now`` is the
        batch's time (read from the host's clock when not given).
        """
        items = [m if isinstance(m, Request | OsppError) else parse_item(m) for m in messages]
        if now is None:
            now = self.clock.now()
        now_s = int(now.timestamp())
        if now_s < self._last_batch:  # the clock moved back: no full count holds (see init)
            self._full_until.clear()
        self._last_batch = now_s
        full_until = dict(self._full_until)
        try:
            counted = self._commit(state, items, now)
        except Exception:
            self._full_until = full_until  # counts seen in the rolled-back batch
            counted = []
            for item in items:
                try:
                    counted += self._commit(state, [item], now)
                except OsppError as exc:
                    counted.append(exc)
                except Exception as exc:
                    counted.append(
                        LicensingError(
                            E_UNEXPECTED, f"the request could not be stored: {type(exc).__name__}"
                        )
                    )
        return self._answers(state, counted, now)

    def _commit(
        self, state: ServingState, items: list[Request | OsppError], now: datetime
    ) -> list[Counted | OsppError]:
        """Count the requests of one batch in one transaction."""
        now_s = int(now.timestamp())
        since = now_s - int(WINDOW.total_seconds())
        day = f"day.{now.date().isoformat()}"  # answered requests per UTC day, for the chart
        counted: list[Counted | OsppError] = []
        with self.writing, self.db.write() as conn:
            stats: dict[str, int] = {}
            for req in items:
                if isinstance(req, OsppError):  # refused when it arrived
                    counted.append(req)
                    stats["failed"] = stats.get("failed", 0) + 1
                    code = f"failed.{hex_code(req.code)}"
                    stats[code] = stats.get(code, 0) + 1
                    continue
                try:
                    pack = pack_for(state.packs, req.product)
                    if abs(req.client_time - now) > MAX_SKEW:
                        raise LicensingError(
                            E_SKEW,
                            f"client time {iso(req.client_time)} and host time {iso(now)} are "
                            "more than 4 hours apart",
                        )
                    (seen,) = conn.execute(
                        "INSERT INTO clients VALUES (?, ?, ?, ?, ?, ?, 1, ?) "
                        "ON CONFLICT (app, cmid) DO UPDATE SET last_seen=excluded.last_seen, "
                        "sku_id=excluded.sku_id, workstation=excluded.workstation, "
                        "requests=requests+1, status=excluded.status RETURNING requests",
                        (
                            req.app,
                            req.cmid,
                            req.sku_id,
                            req.workstation,
                            now_s,
                            now_s,
                            req.status.lower(),
                        ),
                    ).fetchone()
                    if seen == 1:  # a new client
                        stats["clients"] = stats.get("clients", 0) + 1
                    count = self._count(conn, req.app, now_s, since)
                    counted.append((req, count, pack))
                    name = f"requests.{req.status.lower()}"
                    stats[name] = stats.get(name, 0) + 1
                    stats[day] = stats.get(day, 0) + 1
                except OsppError as exc:
                    counted.append(exc)
                    stats["failed"] = stats.get("failed", 0) + 1
                    code = f"failed.{hex_code(exc.code)}"
                    stats[code] = stats.get(code, 0) + 1
            stats["total"] = len(items)
            conn.executemany(
                # A statistic damaged by hand stays as it is, to be reported: SQLite would
                # add to text as to 0.
                "INSERT INTO stats VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
                "SET value=value+excluded.value WHERE typeof(stats.value)='integer'",
                list(stats.items()),
            )
        return counted

    def _answers(
        self,
        state: ServingState,
        counted: list[Counted | OsppError],
        now: datetime,
    ) -> list[dict[str, Any] | bytes]:
        """The answers of a committed batch, in order: signed successes and refusals.

        Each success carries the certificate of the pack that counted it (every pack's
        certificate names the one signing key). A request that asked for a batch signature
        shares one signature with the batch's other such requests; any other gets its own
        (version 1): a batch may mix both."""
        # What every answer of a pack shares, encoded once per batch.
        parts: dict[str, tuple[str, bytes]] = {}
        answers: list[dict[str, Any] | bytes] = []
        batched: list[tuple[int, bytes, bytes]] = []  # (position, signed body, tail)
        for item in counted:
            if isinstance(item, OsppError):
                answers.append({"v": 1, "ok": False, "code": item.code, "message": item.message})
                continue
            req, count, pack = item
            shared = parts.get(pack.product.application_id)
            if shared is None:
                shared = (
                    f',"epid":{_js(pack.epid)},"host_time":"{iso(now)}","nonce":',
                    b'","certificate":' + pack.certificate_json + b"}",
                )
                parts[pack.product.application_id] = shared
            middle, tail = shared
            signed = signed_answer(state, req, count, middle)
            if req.batch_signed:
                batched.append((len(answers), signed, tail))
                answers.append(b"")  # filled in below, once the batch's root is signed
                continue
            # The reply is the signed body plus the fixed fields: the same bytes the client
            # rebuilds and checks (sorted keys, compact separators).
            answers.append(
                signed[:-1]
                + b',"v":1,"ok":true,"signature":"'
                + binascii.b2a_base64(self.signer().sign(signed), newline=False)
                + tail
            )
        if batched:
            sign_batch(self.signer().sign, answers, batched)
        return answers

    def _count(self, conn: sqlite3.Connection, app: str, now_s: int, since: int) -> int:
        """Unique CMIDs of ``app`` seen from ``since`` to ``now_s``, at most CAP (index range
        scan). Clients seen after ``now_s`` (the lab clock moved back past them) do not count."""
        if now_s < self._full_until.get(app, 0):
            return CAP
        recent = conn.execute(
            "SELECT last_seen FROM clients WHERE app=? AND last_seen>=? AND last_seen<=? "
            "ORDER BY last_seen DESC LIMIT ?",
            (app, since, now_s, CAP),
        ).fetchall()
        if len(recent) == CAP:
            self._full_until[app] = recent[-1][0] + int(WINDOW.total_seconds())
        return len(recent)

    # -- reporting -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now_s = int(self.clock.now().timestamp())
        since = now_s - int(WINDOW.total_seconds())
        with self.db.read() as conn:
            meta = self.meta(conn)
            stats = read_stats(conn, self.db.path)
            groups = current_counts(conn, since, now_s)
            packs = self.packs(conn)
        return status_of(meta, stats, groups, packs)


def signed_answer(state: ServingState, req: Request, count: int, middle: str) -> bytes:
    """The signed body of a KMS answer: ``canonical()`` of its fields, built from parts.

    The same bytes as ``canonical({"op": "kms-activate", "epid": ..., "host_time": ...})``
    (sorted keys, compact separators, ASCII with JSON escapes), without building a dict and
    sorting it per answer. ``middle`` holds the parts every answer of a batch shares (epid,
    host time): see :meth:`KmsHost._answers`. tests/test_kms.py compares the two.
    """
    return (
        f'{{"activation_interval":{state.activation_interval:d},'
        f'"client_time":{_js(req.client_time_text)},"cmid":{_js(req.cmid_text)},"count":{count:d}'
        f'{middle}{_js(req.nonce)},"op":"kms-activate",'
        f'"renewal_interval":{state.renewal_interval:d},"sku_id":{_js(req.sku_id)}}}'
    ).encode("ascii")


# A counted request: the request, its group's count, and the pack that answers it.
Counted = tuple[Request, int, ServingPack]


@dataclass(frozen=True)
class ServingState:
    """The licence packs (newest application group first) and the intervals clients get."""

    packs: tuple[ServingPack, ...]
    activation_interval: int
    renewal_interval: int

    @property
    def activated(self) -> bool:
        """At least one pack can answer clients."""
        return any(p.certificate is not None for p in self.packs)

    @property
    def first_activated(self) -> ServingPack | None:
        """The pack that answers pings: the newest activated one."""
        return next((p for p in self.packs if p.certificate is not None), None)

    @property
    def not_activated(self) -> str:
        return self.packs[0].not_activated if self.packs else NOT_ACTIVATED
