"""The activation authority: issues MAK and KMS host keys, activates them online, and runs the
phone centre that turns installation IDs into confirmation IDs.

State lives in ``<OSPP_CENTER_HOME>/center.db`` (keys, activations) beside the private keys
(``authority-ed25519.pem``, ``authority-dsa.pem``, owner-only) and the public key file
``authority.pub.json`` that clients install as their trust anchor.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ospp.core.canonical import canonical
from ospp.core.catalog import Channel, catalog
from ospp.core.clock import Clock, iso
from ospp.core.db import Database
from ospp.core.errors import (
    E_ACCESS_DENIED,
    E_BAD_FORMAT,
    E_INVALID_DATA,
    E_MAK_LIMIT,
    E_SERVER_BLOCKED,
    E_SERVER_INVALID_KEY,
    E_UNLOCK_LIMIT,
    LicensingError,
    StoreError,
    UsageError,
)
from ospp.core.paths import write_atomic
from ospp.protocol import keys, tolerance
from ospp.protocol.crypto import AuthorityKeys, PublicBundle, b64
from ospp.protocol.phone import (
    HOST_IID_VERSION,
    IID_CHANNEL_KMS_HOST,
    InstallationId,
    encode_cid,
    iid_channel,
    machine_tag,
)

KMS_HOST_MACHINES = 6  # one KMS host key activates up to 6 hosts...
KMS_HOST_REACTIVATIONS = 9  # ...each reactivated up to 9 more times
DEFAULT_MAK_LIMIT = 100

_SCHEMA = [
    """
    CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE keys (
        serial INTEGER PRIMARY KEY,
        product_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        last5 TEXT NOT NULL,
        activation_limit INTEGER NOT NULL,
        blocked INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
    );
    CREATE TABLE activations (
        serial INTEGER NOT NULL REFERENCES keys(serial),
        machine TEXT NOT NULL,
        hardware TEXT NOT NULL,
        first_at TEXT NOT NULL,
        last_at TEXT NOT NULL,
        times INTEGER NOT NULL,
        via TEXT NOT NULL,
        PRIMARY KEY (serial, machine, hardware)
    );
    """,
]


def _within(recorded: str, current: str) -> bool:
    try:
        return tolerance.within_tolerance(int(recorded, 16), int(current, 16))
    except ValueError:  # not a hash (a record or request from elsewhere)
        return False


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

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


class Authority:
    """The activation authority of one ``OSPP_CENTER_HOME``. Construct with :meth:`open`."""

    def __init__(self, home: Path, db: Database, keys_: AuthorityKeys, clock: Clock) -> None:
        self.home = home
        self.db = db
        self.keys = keys_
        self.clock = clock

    @property
    def public(self) -> PublicBundle:
        return self.keys.public

    @classmethod
    def open(cls, home: Path, clock: Clock, name: str | None = None) -> Authority:
        """Open the authority, creating its key pair and store on first use."""
        db = Database(home / "center.db", "authority", _SCHEMA)
        ed_path, dsa_path = home / "authority-ed25519.pem", home / "authority-dsa.pem"
        with db.write() as conn:  # the lock also serialises first-use key creation
            row = conn.execute("SELECT value FROM meta WHERE name='secret'").fetchone()
            if row is None:
                if ed_path.exists() or dsa_path.exists():
                    raise StoreError(
                        E_INVALID_DATA,
                        f"{home} holds authority key files but no authority store",
                        "Restore center.db from a backup; nothing was changed.",
                    )
                ed_pem, dsa_pem = AuthorityKeys.generate()
                try:
                    _write_private(ed_path, ed_pem)
                    _write_private(dsa_path, dsa_pem)
                except OSError as exc:
                    raise StoreError(
                        E_ACCESS_DENIED, f"cannot write authority keys in {home}: {exc}"
                    ) from exc
                secret = secrets.token_hex(32)
                conn.execute("INSERT INTO meta VALUES ('secret', ?)", (secret,))
                conn.execute(
                    "INSERT INTO meta VALUES ('name', ?)", (name or f"ospp-authority@{home.name}",)
                )
                conn.execute("INSERT INTO meta VALUES ('created_at', ?)", (iso(clock.now()),))
            meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
        try:
            keys_ = AuthorityKeys(
                meta["name"],
                ed_path.read_bytes(),
                dsa_path.read_bytes(),
                bytes.fromhex(meta["secret"]),
            )
        except (OSError, ValueError) as exc:
            raise StoreError(
                E_INVALID_DATA,
                f"the authority key files in {home} cannot be loaded: {exc}",
                "Restore them from a backup; nothing was changed.",
            ) from exc
        authority = cls(home, db, keys_, clock)
        pub = home / "authority.pub.json"
        text = json.dumps(keys_.public.to_json(), indent=2) + "\n"
        if not pub.exists() or pub.read_text(encoding="utf-8") != text:
            write_atomic(pub, text)
        return authority

    # -- keys ------------------------------------------------------------------------------

    def security_value(self, product_index: int, channel: Channel, serial: int) -> int:
        mac = hmac.new(
            self.keys.secret,
            f"ospp-key-v1:{product_index}:{channel}:{serial}".encode(),
            hashlib.sha256,
        ).digest()
        return int.from_bytes(mac[:8], "big") >> 4  # 60 bits

    def issue_key(self, product_id: str, channel: str, limit: int | None = None) -> str:
        product = catalog().product(product_id)
        if product is None:
            raise UsageError(
                f"no product {product_id!r} in the catalog", "Run 'ospp products' for the list."
            )
        chan = {"mak": Channel.MAK, "kms-host": Channel.KMS_HOST}.get(channel)
        if chan is None:
            raise UsageError(f"channel must be mak or kms-host, not {channel!r}")
        if chan is Channel.KMS_HOST:
            limit = KMS_HOST_MACHINES if limit is None else limit
        limit = DEFAULT_MAK_LIMIT if limit is None else limit
        if limit < 1:
            raise UsageError(f"--limit must be at least 1, not {limit}")
        with self.db.write() as conn:
            while True:
                serial = secrets.randbelow(1 << 32)
                if not conn.execute("SELECT 1 FROM keys WHERE serial=?", (serial,)).fetchone():
                    break
            text = keys.encode(
                product, chan, serial, self.security_value(product.index, chan, serial)
            )
            conn.execute(
                "INSERT INTO keys (serial, product_id, channel, last5, activation_limit, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (serial, product.id, chan.value, text[-5:], limit, iso(self.clock.now())),
            )
        return text

    def key_records(self) -> list[KeyRecord]:
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT k.serial, k.product_id, k.channel, k.last5, k.activation_limit, "
                "k.blocked, count(DISTINCT a.machine || '/' || "
                "CASE k.channel WHEN 'kms-host' THEN '' ELSE a.hardware END), k.created_at "
                "FROM keys k LEFT JOIN activations a ON a.serial = k.serial "
                "GROUP BY k.serial ORDER BY k.created_at, k.serial"
            ).fetchall()
        return [KeyRecord(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7]) for r in rows]

    def _genuine(self, key: keys.ProductKey) -> None:
        """Step 1 of every activation: is this a key this authority minted?"""
        if key.channel is Channel.KMS_CLIENT:
            raise LicensingError(
                E_SERVER_INVALID_KEY,
                f"a KMS client key (GVLK) of {key.product.id} is activated by a KMS host, not by "
                "the activation authority",
                "Set a KMS host with /sethst, or install a MAK.",
            )
        expected = self.security_value(key.product.index, key.channel, key.serial)
        if not hmac.compare_digest(expected.to_bytes(8, "big"), key.security.to_bytes(8, "big")):
            raise LicensingError(
                E_SERVER_INVALID_KEY,
                f"the key ending {key.last5} was not issued by this activation authority",
            )

    def _record_for(self, conn: sqlite3.Connection, key: keys.ProductKey) -> tuple[int, bool]:
        row = conn.execute(
            "SELECT activation_limit, blocked FROM keys WHERE serial=?", (key.serial,)
        ).fetchone()
        if row is None:
            raise LicensingError(
                E_SERVER_INVALID_KEY,
                f"the key ending {key.last5} is not in this authority's records",
            )
        return int(row[0]), bool(row[1])

    def find_key(self, text: str) -> keys.ProductKey:
        key = keys.parse(text)
        self._genuine(key)
        with self.db.read() as conn:
            self._record_for(conn, key)
        return key

    def block(self, text: str) -> KeyRecord:
        key = self.find_key(text)
        with self.db.write() as conn:
            conn.execute("UPDATE keys SET blocked=1 WHERE serial=?", (key.serial,))
        return self._record(key.serial)

    def extend(self, text: str, by: int) -> KeyRecord:
        if by < 1:
            raise UsageError(f"--by must be at least 1, not {by}")
        key = self.find_key(text)
        with self.db.write() as conn:
            conn.execute(
                "UPDATE keys SET activation_limit = activation_limit + ? WHERE serial=?",
                (by, key.serial),
            )
        return self._record(key.serial)

    def _record(self, serial: int) -> KeyRecord:
        return next(r for r in self.key_records() if r.serial == serial)

    # -- activation ------------------------------------------------------------------------

    def _count(
        self, conn: sqlite3.Connection, key: keys.ProductKey, machine: str, hardware: str, via: str
    ) -> None:
        """Check the key's limits and record one activation, in the caller's transaction."""
        limit, blocked = self._record_for(conn, key)
        if blocked:
            raise LicensingError(
                E_SERVER_BLOCKED,
                f"the key ending {key.last5} has been blocked",
                "Ask for a new key.",
            )
        now = iso(self.clock.now())
        if key.channel is Channel.KMS_HOST:
            hosts = {
                r[0]: r[1]
                for r in conn.execute(
                    "SELECT machine, sum(times) FROM activations WHERE serial=? GROUP BY machine",
                    (key.serial,),
                )
            }
            if machine not in hosts and len(hosts) >= limit:
                raise LicensingError(
                    E_UNLOCK_LIMIT,
                    f"the KMS host key ending {key.last5} already activated {len(hosts)} hosts "
                    f"(limit {limit})",
                )
            if hosts.get(machine, 0) >= 1 + KMS_HOST_REACTIVATIONS:
                raise LicensingError(
                    E_UNLOCK_LIMIT,
                    f"this host has activated the key ending {key.last5} "
                    f"{hosts[machine]} times (limit {1 + KMS_HOST_REACTIVATIONS})",
                )
        else:
            seen = conn.execute(
                "SELECT 1 FROM activations WHERE serial=? AND machine=? AND hardware=?",
                (key.serial, machine, hardware),
            ).fetchone()
            if not seen and self._same_computer(conn, key, machine, hardware, now):
                return
            if not seen:
                used = conn.execute(
                    "SELECT count(*) FROM activations WHERE serial=?", (key.serial,)
                ).fetchone()[0]
                if used >= limit:
                    raise LicensingError(
                        E_MAK_LIMIT,
                        f"the MAK ending {key.last5} has used all {limit} of its activations",
                        "Ask the authority for more: ospp center extend KEY --by N.",
                    )
        conn.execute(
            "INSERT INTO activations VALUES (?, ?, ?, ?, ?, 1, ?) "
            "ON CONFLICT (serial, machine, hardware) DO UPDATE SET last_at=excluded.last_at, "
            "times=times+1",
            (key.serial, machine, hardware, now, now, via),
        )

    @staticmethod
    def _same_computer(
        conn: sqlite3.Connection, key: keys.ProductKey, machine: str, hardware: str, now: str
    ) -> bool:
        """A MAK reactivation on hardware within tolerance (the client's own rule, 7 of 12
        votes) of what this computer had is the same computer: no activation is used, and the
        record moves to the new hash (reactivation resets the baseline). See README."""
        rows = conn.execute(
            "SELECT hardware FROM activations WHERE serial=? AND machine=?", (key.serial, machine)
        ).fetchall()
        for (recorded,) in rows:
            if not _within(recorded, hardware):
                continue
            conn.execute(
                "UPDATE activations SET hardware=?, last_at=?, times=times+1 "
                "WHERE serial=? AND machine=? AND hardware=?",
                (hardware, now, key.serial, machine, recorded),
            )
            return True
        return False

    def activate(self, request: dict[str, Any]) -> dict[str, Any]:
        """Online activation: check the key, count it, return a signed licence."""
        try:
            key_text = str(request["key"])
            cmid = str(request["cmid"])
            hardware = str(request["hardware"])
            nonce = str(request["nonce"])
        except KeyError as exc:
            raise UsageError(f"activation request lacks {exc.args[0]!r}") from exc
        key = keys.parse(key_text)
        self._genuine(key)
        host_key = request.get("host_key")
        if key.channel is Channel.KMS_HOST and not isinstance(host_key, str):
            raise UsageError("a KMS host key is activated together with the host's public key")
        with self.db.write() as conn:
            self._count(conn, key, f"tag:{machine_tag(cmid):08x}", hardware, "online")
        licence: dict[str, Any] = {
            "format": "ospp-licence-v1",
            "kind": key.channel.value,
            "product": key.product.id,
            "sku_id": key.product.sku(key.channel).sku_id,
            "key_serial": key.serial,
            "key_last5": key.last5,
            "cmid": cmid.lower(),
            "hardware": hardware,
            "nonce": nonce,
            "issued_at": iso(self.clock.now()),
            "authority": self.public.fingerprint,
        }
        if key.channel is Channel.KMS_HOST:
            licence["host_key"] = host_key  # certifies the host's response-signing key
            # The host sends this licence to every client: nothing of the key itself beyond
            # its serial (the last 5 characters carry 14 bits of its security value).
            del licence["key_last5"]
        return {"licence": licence, "signature": b64(self.keys.sign(canonical(licence)))}

    def confirm(self, iid_text: str) -> str:
        """The phone centre: check an installation ID, count it, return the CID."""
        iid = InstallationId.parse(iid_text)
        if iid.channel_code == IID_CHANNEL_KMS_HOST and iid.version != HOST_IID_VERSION:
            raise LicensingError(
                E_BAD_FORMAT,
                "this installation ID comes from a KMS host of an older ospp: the certificate "
                "made from it would disclose the host's product key to every client",
                "Update ospp on the KMS host, then read its installation ID again "
                "(ospp kms dinstid).",
            )
        product = catalog().by_index(iid.product_index)
        channel = iid_channel(iid.channel_code)
        if product is None or channel is None:
            raise LicensingError(
                E_SERVER_INVALID_KEY,
                "the installation ID names no product key this authority knows",
            )
        key = keys.ProductKey(
            keys.encode(product, channel, iid.serial, iid.security),
            product,
            channel,
            iid.serial,
            iid.security,
        )
        self._genuine(key)
        with self.db.write() as conn:
            self._count(conn, key, f"tag:{iid.machine_tag:08x}", f"{iid.hardware:010x}", "phone")
        r, s = self.keys.sign_cid(iid.message())
        return encode_cid(r, s)
