"""A KMS host's identity: its host key, the Ed25519 key that signs its answers, its
certificate from the activation authority (online or by phone) and its ePID.

:class:`HostIdentity` keeps them in the ``meta`` table of ``kms.db``;
:class:`~ospp.kmshost.state.KmsHost` adds the counts, serving and reporting.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ospp.core.catalog import Channel, Product
from ospp.core.clock import Clock, iso
from ospp.core.db import Database
from ospp.core.errors import (
    E_ACCESS_DENIED,
    E_CANNOT_USE,
    E_INVALID_KEY,
    E_KEY_NOT_AVAILABLE,
    E_MISMATCH,
    LicensingError,
    StoreError,
    UsageError,
)
from ospp.protocol.kms import INTERVAL_RANGE, PHONE_CERTIFICATE_FORMAT, check_certificate

if TYPE_CHECKING:
    from ospp.protocol.crypto import HostKey
    from ospp.protocol.keys import ProductKey
    from ospp.protocol.phone import InstallationId


def epid(product: Product, serial: int, activated: datetime) -> str:
    """The host's extended product ID, in the real shape."""
    return (
        f"06401-{206 + product.index:05d}-{serial // 10**6 % 1000:03d}-"
        f"{serial % 10**6:06d}-03-1033-17763.0000-"
        f"{activated.timetuple().tm_yday:03d}{activated.year}"
    )


class HostIdentity:
    """The host key, signing key and certificate of a KMS host, kept in ``kms.db``."""

    def __init__(self, home: Path, db: Database, clock: Clock) -> None:
        self.home = home
        self.db = db
        self.clock = clock
        self._signer: HostKey | None = None

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

    def signer(self) -> HostKey:
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

    def install_key(self, text: str) -> ProductKey:
        from ospp.protocol import keys

        key = keys.parse(text)
        if key.channel is not Channel.KMS_HOST:
            raise LicensingError(
                E_INVALID_KEY,
                f"the key ending {key.last5} is a {key.channel.value} key, not a KMS host key",
                "Get one with: ospp center issue-key --product P --channel kms-host.",
            )
        self.signer()
        self._set(key=key.compact, certificate=None, epid=None, activated_at=None)
        return key

    def installed_key(self) -> ProductKey:
        from ospp.protocol import keys

        value = self.meta().get("key")
        if not value:
            raise LicensingError(
                E_KEY_NOT_AVAILABLE, "no KMS host key is installed", "Run: ospp kms install-key KEY"
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
        """The host key's IID (version 2): bound to the host's signing key by a 72-bit tag."""
        from ospp.protocol.phone import InstallationId, host_key_tag

        key = self.installed_key()
        return InstallationId.for_host(
            key.product.index, key.serial, key.security, host_key_tag(self.signer().public_raw)
        )

    def apply_cid(self, cid: str, environ: Mapping[str, str]) -> Product:
        digits = "".join(cid.split()).replace("-", "")
        key = self.installed_key()
        # What clients receive: the CID and the public fields it signs. Never the IID, which
        # holds the key's security value.
        cert = {
            "kind": "phone",
            "format": PHONE_CERTIFICATE_FORMAT,
            "product_index": key.product.index,
            "key_serial": key.serial,
            "cid": digits,
            "host_key": self.host_key_b64(),
        }
        try:
            return self._certify(cert, environ)
        except LicensingError as exc:
            if "confirmation ID" in exc.message or "damaged" in exc.message:
                from ospp.protocol.phone import parse_cid

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
