"""A KMS host's durable state: its key and certificate, the clients it counted, its
statistics, and the handling of one group-commit batch of requests.

The counts live in ``<OSPP_KMS_HOME>/kms.db``: unique CMIDs per application group, seen in the
last 30 days, capped at twice the threshold; a renewing client refreshes its entry and is not
counted twice. The rules themselves (threshold, window, certificate check) are in
``ospp.protocol.kms``, shared with the client.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ospp.core.canonical import canonical
from ospp.core.catalog import Channel, Product, catalog

if TYPE_CHECKING:
    from ospp.protocol.phone import InstallationId

from ospp.core.clock import Clock, iso, parse_time
from ospp.core.db import Database
from ospp.core.errors import (
    E_ACCESS_DENIED,
    LicensingError,
    OsppError,
    StoreError,
    UsageError,
    hex_code,
)
from ospp.protocol.kms import (
    CAP,
    DEFAULT_ACTIVATION_INTERVAL,
    DEFAULT_PORT,
    DEFAULT_RENEWAL_INTERVAL,
    E_BAD_REQUEST,
    E_CANNOT_USE,
    E_HOST_NOT_ACTIVATED,
    E_SKEW,
    INTERVAL_RANGE,
    MAX_SKEW,
    WINDOW,
    check_certificate,
    covers,
    host_tag_source,
)

_SCHEMA = [
    """
    CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE clients (
        app TEXT NOT NULL,
        cmid TEXT NOT NULL,
        sku_id TEXT NOT NULL,
        workstation TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        requests INTEGER NOT NULL,
        PRIMARY KEY (app, cmid)
    ) WITHOUT ROWID;
    CREATE INDEX clients_recent ON clients (app, last_seen);
    CREATE TABLE stats (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    """,
    # The licence status each client last reported (for the status page's filter).
    """
    ALTER TABLE clients ADD COLUMN status TEXT NOT NULL DEFAULT '';
    """,
    # How many clients are stored, kept as a statistic: counting a million rows takes longer
    # than everything else 'kms status' does.
    """
    INSERT OR REPLACE INTO stats SELECT 'clients', count(*) FROM clients;
    """,
]


@dataclass(frozen=True)
class Request:
    """A validated KMS activation request."""

    app: str
    sku_id: str
    product: Product
    cmid: str
    client_time: datetime
    client_time_text: str  # echoed exactly as the client sent it
    nonce: str
    status: str
    workstation: str


def parse_request(message: Mapping[str, Any]) -> Request:
    def text(name: str, limit: int = 64) -> str:
        value = message.get(name)
        if not isinstance(value, str) or not 0 < len(value) <= limit:
            raise LicensingError(E_BAD_REQUEST, f"request field {name!r} is missing or malformed")
        return value

    sku = catalog().sku(text("sku_id", 40))
    if sku is None or sku.channel is not Channel.KMS_CLIENT:
        raise LicensingError(E_CANNOT_USE, "the request names no KMS client product")
    app = text("app_id", 40).lower()
    if app != sku.product.application_id:
        raise LicensingError(E_CANNOT_USE, "the application id does not match the product")
    try:
        client_text = text("client_time")
        client_time = parse_time(client_text, "client_time")
    except OsppError as exc:
        raise LicensingError(E_BAD_REQUEST, exc.message) from exc
    return Request(
        app,
        sku.sku_id,
        sku.product,
        text("cmid", 40).lower(),
        client_time,
        client_text,
        text("nonce"),
        text("license_status", 32),
        str(message.get("workstation", ""))[:64],
    )


def epid(product: Product, serial: int, activated: datetime) -> str:
    """The host's extended product ID, in the real shape."""
    return (
        f"06401-{206 + product.index:05d}-{serial // 10**6 % 1000:03d}-"
        f"{serial % 10**6:06d}-03-1033-17763.0000-"
        f"{activated.timetuple().tm_yday:03d}{activated.year}"
    )


class KmsHost:
    """A KMS host's durable state. Construct with :meth:`open`."""

    def __init__(self, home: Path, db: Database, clock: Clock) -> None:
        self.home = home
        self.db = db
        self.clock = clock
        self._signer: Any = None
        # Per application group: the time until which the count is known to stay at CAP.
        # Entries only get newer while serving, so a full count lasts until the CAP-th most
        # recent entry ages out of the window; until then no count query is needed.
        self._full_until: dict[str, int] = {}

    @classmethod
    def open(cls, home: Path, clock: Clock) -> KmsHost:
        db = Database(home / "kms.db", "KMS host", _SCHEMA, synchronous="NORMAL")
        # A host with a million stored clients touches random B-tree pages on every insert:
        # keep them in SQLite's cache (64 MiB) rather than re-reading them from the OS.
        db.execute_pragma("cache_size=-65536")
        host = cls(home, db, clock)
        with db.read() as conn:
            known = conn.execute("SELECT 1 FROM meta WHERE name='host_id'").fetchone()
        if known is None:
            import uuid

            with db.write() as conn:
                for name, value in (
                    ("host_id", str(uuid.uuid4())),
                    ("hardware", secrets.token_hex(5)),
                    ("activation_interval", str(DEFAULT_ACTIVATION_INTERVAL)),
                    ("renewal_interval", str(DEFAULT_RENEWAL_INTERVAL)),
                ):
                    conn.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (name, value))
        return host

    # -- settings and identity -----------------------------------------------------------

    def meta(self, conn: sqlite3.Connection | None = None) -> dict[str, str]:
        if conn is not None:
            return dict(conn.execute("SELECT name, value FROM meta").fetchall())
        with self.db.read() as c:
            return dict(c.execute("SELECT name, value FROM meta").fetchall())

    def _set(self, **values: str | None) -> None:
        with self.db.write() as conn:
            for name, value in values.items():
                if value is None:
                    conn.execute("DELETE FROM meta WHERE name=?", (name,))
                else:
                    conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    def signer(self) -> Any:
        """The host's Ed25519 key, created with the first installed host key."""
        if self._signer is None:
            from ospp.protocol.crypto import HostKey

            path = self.home / "host-ed25519.pem"
            if not path.exists():
                from ospp.core.paths import write_atomic

                try:
                    write_atomic(path, HostKey.generate().decode("ascii"), private=True)
                except OSError as exc:
                    raise StoreError(E_ACCESS_DENIED, f"cannot write {path}: {exc}") from exc
            self._signer = HostKey(path.read_bytes())
        return self._signer

    def host_key_b64(self) -> str:
        from ospp.protocol.crypto import b64

        return b64(self.signer().public_raw)

    def install_key(self, text: str) -> Any:
        from ospp.protocol import keys

        key = keys.parse(text)
        if key.channel is not Channel.KMS_HOST:
            raise LicensingError(
                0xC004F050,
                f"the key ending {key.last5} is a {key.channel.value} key, not a KMS host key",
                "Get one with: ospp center issue-key --product P --channel kms-host.",
            )
        self.signer()
        self._set(key=key.compact, certificate=None, epid=None, activated_at=None)
        return key

    def installed_key(self) -> Any:
        from ospp.protocol import keys

        value = self.meta().get("key")
        if not value:
            raise LicensingError(
                0xC004F014, "no KMS host key is installed", "Run: ospp kms install-key KEY"
            )
        return keys.parse(value)

    def _certify(self, cert: dict[str, Any], environ: Mapping[str, str]) -> Product:
        from ospp.core.paths import ospp_home
        from ospp.protocol.trust import anchors

        product, host_key = check_certificate(cert, anchors(ospp_home(environ), environ))
        if host_key != self.host_key_b64():
            raise LicensingError(E_CANNOT_USE, "the certificate names another host key")
        now = self.clock.now()
        key = self.installed_key()
        self._set(
            certificate=json.dumps(cert, sort_keys=True),
            activated_at=iso(now),
            epid=epid(product, key.serial, now),
        )
        return product

    def activate_online(self, environ: Mapping[str, str]) -> Product:
        from ospp.authority.port import call_authority

        key = self.installed_key()
        meta = self.meta()
        nonce = secrets.token_hex(16)
        request = {
            "op": "activate",
            "key": key.compact,
            "sku_id": key.product.sku(key.channel).sku_id,
            "cmid": meta["host_id"],
            "hardware": meta["hardware"],
            "nonce": nonce,
            "client_time": iso(self.clock.now()),
            "host_key": self.host_key_b64(),
        }
        response = call_authority(request, environ, self.clock)
        licence = response.get("licence")
        if not isinstance(licence, dict) or licence.get("nonce") != nonce:
            raise LicensingError(E_CANNOT_USE, "the authority's answer does not match the request")
        return self._certify(
            {"kind": "online", "licence": licence, "signature": response.get("signature")},
            environ,
        )

    def installation_id(self) -> InstallationId:
        from ospp.protocol.phone import InstallationId, machine_tag

        key = self.installed_key()
        return InstallationId(
            key.product.index,
            2,
            key.serial,
            key.security,
            int(self.meta()["hardware"], 16),
            machine_tag(host_tag_source(self.host_key_b64())),
        )

    def apply_cid(self, cid: str, environ: Mapping[str, str]) -> Product:
        digits = "".join(cid.split()).replace("-", "")
        cert = {
            "kind": "phone",
            "iid": self.installation_id().text(),
            "cid": digits,
            "host_key": self.host_key_b64(),
        }
        try:
            return self._certify(cert, environ)
        except LicensingError as exc:
            if "confirmation ID" in exc.message or "damaged" in exc.message:
                from ospp.protocol.phone import E_MISMATCH, parse_cid

                parse_cid(cid)  # report length and check-digit errors with their own codes
                raise LicensingError(E_MISMATCH, exc.message) from exc
            raise

    def set_intervals(self, activation: int | None, renewal: int | None) -> None:
        low, high = INTERVAL_RANGE
        for name, value in (("activation", activation), ("renewal", renewal)):
            if value is not None and not low <= value <= high:
                raise UsageError(f"the {name} interval must be {low}-{high} minutes, not {value}")
        values = {}
        if activation is not None:
            values["activation_interval"] = str(activation)
        if renewal is not None:
            values["renewal_interval"] = str(renewal)
        self._set(**values)

    # -- serving -------------------------------------------------------------------------

    def record_port(self, port: int) -> None:
        self._set(port=str(port))

    def publishing(self) -> Any:
        from ospp.dns.publish import Publishing

        return Publishing.from_json(self.meta().get("dns"))

    def set_publishing(self, pub: Any) -> None:
        if pub.enabled:
            pub.check()
        self._set(dns=pub.to_json())

    def record_publish(self, outcome: str) -> None:
        self._set(dns_last=json.dumps({"at": iso(self.clock.now()), "result": outcome}))

    def start_checkpointer(self, every: float = 1.0) -> Any:
        """Move WAL checkpoints (and their fsync) off the serving thread.

        The serving connection stops checkpointing on its own; a daemon thread with its own
        connection runs a PASSIVE checkpoint every ``every`` seconds, which never blocks the
        writer. Returns the threading.Event that stops it.
        """
        import threading

        self.db.execute_pragma("wal_autocheckpoint=0")
        stop = threading.Event()
        path = self.db.path

        def work() -> None:
            conn = sqlite3.connect(path, timeout=5.0)
            try:
                while not stop.wait(every):
                    with contextlib.suppress(sqlite3.Error):  # busy: the next round catches up
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                conn.close()

        threading.Thread(target=work, name="wal-checkpoint", daemon=True).start()
        return stop

    def serving_state(self) -> ServingState:
        """What request handling needs, read once when serving starts."""
        meta = self.meta()
        cert = json.loads(meta["certificate"]) if meta.get("certificate") else None
        # The certificate was checked when it was installed (_certify); clients check it again.
        product = self.installed_key().product if cert is not None else None
        return ServingState(
            certificate=cert,
            certificate_json=json.dumps(cert, separators=(",", ":")).encode() if cert else b"",
            product=product,
            epid=meta.get("epid", ""),
            activation_interval=int(meta["activation_interval"]),
            renewal_interval=int(meta["renewal_interval"]),
        )

    def process(
        self, state: ServingState, messages: list[Mapping[str, Any]]
    ) -> list[dict[str, Any] | bytes]:
        """Handle a batch of requests in one transaction (group commit); sign the answers."""
        now = self.clock.now()
        now_s = int(now.timestamp())
        since = now_s - int(WINDOW.total_seconds())
        day = f"day.{now.date().isoformat()}"  # answered requests per UTC day, for the chart
        answers: list[dict[str, Any] | bytes] = []
        counted: list[tuple[Request, int] | OsppError] = []
        with self.db.write() as conn:
            stats: dict[str, int] = {}
            for message in messages:
                try:
                    req = parse_request(message)
                    if state.certificate is None or state.product is None:
                        raise LicensingError(
                            E_HOST_NOT_ACTIVATED,
                            "this KMS host's key is not activated with the activation authority",
                        )
                    if not covers(state.product, req.product):
                        raise LicensingError(
                            E_CANNOT_USE,
                            f"this host's key ({state.product.id}) cannot activate "
                            f"{req.product.id}",
                        )
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
                    counted.append((req, count))
                    name = f"requests.{req.status.lower()}"
                    stats[name] = stats.get(name, 0) + 1
                    stats[day] = stats.get(day, 0) + 1
                except OsppError as exc:
                    counted.append(exc)
                    stats["failed"] = stats.get("failed", 0) + 1
                    code = f"failed.{hex_code(exc.code)}"
                    stats[code] = stats.get(code, 0) + 1
            stats["total"] = len(messages)
            conn.executemany(
                "INSERT INTO stats VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
                "SET value=value+excluded.value",
                list(stats.items()),
            )
        signer = self.signer() if state.certificate else None
        from ospp.protocol.crypto import b64

        for item in counted:
            if isinstance(item, OsppError):
                answers.append({"v": 1, "ok": False, "code": item.code, "message": item.message})
                continue
            req, count = item
            body = {
                "op": "kms-activate",
                "epid": state.epid,
                "cmid": req.cmid,
                "client_time": req.client_time_text,
                "nonce": req.nonce,
                "sku_id": req.sku_id,
                "count": count,
                "activation_interval": state.activation_interval,
                "renewal_interval": state.renewal_interval,
                "host_time": iso(now),
            }
            assert signer is not None
            signed = canonical(body)
            # The reply is the signed body plus the fixed fields, encoded once: the same bytes
            # the client rebuilds and checks (sorted keys, compact separators).
            answers.append(
                signed[:-1]
                + b',"v":1,"ok":true,"signature":"'
                + b64(signer.sign(signed)).encode("ascii")
                + b'","certificate":'
                + state.certificate_json
                + b"}"
            )
        return answers

    def _count(self, conn: sqlite3.Connection, app: str, now_s: int, since: int) -> int:
        """Unique CMIDs of ``app`` seen since ``since``, at most CAP (index range scan)."""
        if self._full_until.get(app, 0) > now_s:
            return CAP
        recent = conn.execute(
            "SELECT last_seen FROM clients WHERE app=? AND last_seen>=? "
            "ORDER BY last_seen DESC LIMIT ?",
            (app, since, CAP),
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
            stats = dict(conn.execute("SELECT name, value FROM stats").fetchall())
            groups = current_counts(conn, since)
            stored = stats.get("clients", 0)
        key_last5 = meta.get("key", "")[-5:] or None
        return {
            "key_last5": key_last5,
            "activated": bool(meta.get("certificate")),
            "activated_at": meta.get("activated_at"),
            "epid": meta.get("epid"),
            "current_count": groups,
            "stored_clients": stored,
            "port": int(meta.get("port", DEFAULT_PORT)),
            "dns_publishing": json.loads(meta["dns"]).get("enabled", False)
            if meta.get("dns")
            else False,
            "dns_last_publish": json.loads(meta["dns_last"]) if meta.get("dns_last") else None,
            "activation_interval": int(meta["activation_interval"]),
            "renewal_interval": int(meta["renewal_interval"]),
            "requests_total": stats.get("total", 0),
            "requests_failed": stats.get("failed", 0),
            "requests_by_status": {
                k.split(".", 1)[1]: v for k, v in stats.items() if k.startswith("requests.")
            },
        }


def current_counts(conn: sqlite3.Connection, since: int) -> dict[str, int]:
    """Per application group with clients seen since ``since``: how many, at most CAP.

    One short index range per group of the catalog (never a scan of every stored client).
    """
    groups = {}
    for app in sorted({p.application_id for p in catalog().products}):
        (count,) = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM clients WHERE app=? AND last_seen>=? LIMIT ?)",
            (app, since, CAP),
        ).fetchone()
        if count:
            groups[app] = count
    return groups

    def clients(self, limit: int = 1000) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT app, cmid, sku_id, workstation, first_seen, last_seen, requests "
                "FROM clients ORDER BY last_seen DESC LIMIT ?",
                (limit,),
            ).fetchall()
        from datetime import UTC

        def t(v: int) -> str:
            return iso(datetime.fromtimestamp(v, UTC))

        return [
            {
                "app_id": r[0],
                "cmid": r[1],
                "sku_id": r[2],
                "workstation": r[3],
                "first_seen": t(r[4]),
                "last_seen": t(r[5]),
                "requests": r[6],
            }
            for r in rows
        ]


@dataclass(frozen=True)
class ServingState:
    certificate: dict[str, Any] | None
    certificate_json: bytes
    product: Product | None
    epid: str
    activation_interval: int
    renewal_interval: int
