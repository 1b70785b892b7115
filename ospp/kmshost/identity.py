"""A KMS host's identity: its host keys (one licence pack per application group, see
:mod:`ospp.kmshost.packs`), the Ed25519 key that signs its answers, and per pack the
certificate from the activation authority (online or by phone) and the ePID.

:class:`HostIdentity` keeps them in ``kms.db`` (the ``packs`` and ``meta`` tables);
:class:`~ospp.kmshost.state.KmsHost` adds the counts, serving and reporting.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Collection, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ospp.core.catalog import Channel, Product
from ospp.core.clock import Clock, iso
from ospp.core.db import Database
from ospp.core.errors import (
    E_ACCESS_DENIED,
    E_CANNOT_USE,
    E_INVALID_DATA,
    E_INVALID_KEY,
    E_KEY_NOT_AVAILABLE,
    E_MISMATCH,
    LicensingError,
    StoreError,
    UsageError,
)
from ospp.kmshost.packs import Pack, choose, read_packs
from ospp.kmshost.retention import MAX_MAX_CLIENTS, MIN_MAX_CLIENTS
from ospp.kmshost.retention import SETTING as MAX_CLIENTS
from ospp.kmshost.status import last_publish
from ospp.protocol.kms import INTERVAL_RANGE, PHONE_CERTIFICATE_FORMAT, check_certificate

if TYPE_CHECKING:
    from ospp.protocol.crypto import HostKey
    from ospp.protocol.keys import ProductKey
    from ospp.protocol.phone import InstallationId


SIGNING_KEY = "host-ed25519.pem"  # the host's Ed25519 key, made once its store exists


def epid(product: Product, serial: int, activated: datetime) -> str:
    """The host's extended product ID, in the real shape."""
    return (
        f"06401-{206 + product.index:05d}-{serial // 10**6 % 1000:03d}-"
        f"{serial % 10**6:06d}-03-1033-17763.0000-"
        f"{activated.timetuple().tm_yday:03d}{activated.year}"
    )


def parse_host_key(text: str) -> ProductKey:
    """``text`` as a KMS host key (CSVLK), else the LicensingError saying what it is: checked
    before the host's store is opened, so a refused key leaves no trace."""
    from ospp.protocol import keys

    key = keys.parse(text)
    if key.channel is not Channel.KMS_HOST:
        raise LicensingError(
            E_INVALID_KEY,
            f"the key ending {key.last5} is {_KIND[key.channel]}, not a KMS host key (CSVLK)",
            "Get one with: ospp center issue-key --product P --channel kms-host.",
        )
    return key


# What each other kind of key is, as an admin calls it.
_KIND = {
    Channel.MAK: "a MAK (Multiple Activation Key)",
    Channel.KMS_CLIENT: "a KMS client key (GVLK)",
    Channel.KMS_HOST: "a KMS host key (CSVLK)",
}

# Settings stored as whole numbers, and how many digits they may have.
_NUMBERS = {
    "activation_interval": 9,
    "renewal_interval": 9,
    "port": 5,
    "listening_port": 5,
    MAX_CLIENTS: 10,
}
PORT_SETTINGS = ("port", "listening_port")  # and they are TCP ports: 1 to 65535
# What a host's store holds from the moment it is made (KmsHost.open): its identity, the
# hardware its certificate binds, and the intervals it tells clients.
REQUIRED_SETTINGS = ("host_id", "hardware", "activation_interval", "renewal_interval")


def _damage(name: str, value: object) -> str | None:
    """What is wrong with a setting as stored: None if nothing, "" if it is simply not a
    value of its kind, else the reason (for the settings stored as JSON)."""
    if not isinstance(value, str):
        return ""
    try:
        if name == "dns":
            from ospp.dns.publish import Publishing

            Publishing.from_json(value)
        elif name == "dns_last":
            last_publish(value)
    except ValueError as exc:
        return str(exc)
    digits = _NUMBERS.get(name)
    if digits is None:
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= digits):
        return ""
    if name == MAX_CLIENTS:  # what 'kms set --max-clients' accepts
        return None if MIN_MAX_CLIENTS <= int(value) <= MAX_MAX_CLIENTS else ""
    return None if name not in PORT_SETTINGS or 1 <= int(value) <= 65535 else ""


def check_settings(
    path: object, values: Mapping[str, object], replaced: Collection[str] = ()
) -> None:
    """Refuse (StoreError 0x8007000D) settings of the store at ``path`` damaged by hand, but
    for those in ``replaced`` (a command about to write them anew, where that is how they
    are repaired: slmgr /sprt for the ports)."""
    for name in REQUIRED_SETTINGS:
        if name not in values and name not in replaced:
            raise StoreError(
                E_INVALID_DATA,
                f"the KMS host store {path} has no setting {name}, which every host's store "
                "holds from the start",
                "Restore the file from a backup; it was left as it is.",
            )
    for name, value in values.items():
        why = None if name in replaced else _damage(name, value)
        if why is not None:
            raise StoreError(
                E_INVALID_DATA,
                f"the KMS host store {path} has a damaged setting {name}: {repr(value)[:60]}"
                + (f" ({why})" if why else ""),
                "Set it again with: slmgr /sprt PORT; it was left as it is."
                if name in PORT_SETTINGS
                else "Restore the file from a backup; it was left as it is.",
            )


class HostIdentity:
    """The host key, signing key and certificate of a KMS host, kept in ``kms.db``."""

    def __init__(self, home: Path, db: Database, clock: Clock) -> None:
        self.home = home
        self.db = db
        self.clock = clock
        self._signer: HostKey | None = None

    def meta(self, conn: sqlite3.Connection | None = None) -> dict[str, str]:
        """The host's settings; a damaged one (edited by hand) is a StoreError (0x8007000D)."""
        if conn is None:
            with self.db.read() as c:
                return self.meta(c)
        values = dict(conn.execute("SELECT name, value FROM meta").fetchall())
        check_settings(self.db.path, values)
        return values

    def _set(self, **values: str | None) -> None:
        self._store(values)

    def _store(self, values: Mapping[str, str | None], repairs: Collection[str] = ()) -> None:
        """Store settings in one transaction; refused, nothing changed, if the store holds a
        damaged setting, unless it is one of ``repairs``, which this write replaces."""
        with self.db.write() as conn:
            stored = dict(conn.execute("SELECT name, value FROM meta").fetchall())
            check_settings(self.db.path, stored, repairs)
            for name, value in values.items():
                if value is None:
                    conn.execute("DELETE FROM meta WHERE name=?", (name,))
                else:
                    conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    def signer(self) -> HostKey:
        """The host's Ed25519 key, created with the first installed host key."""
        if self._signer is None:
            self._signer = self._read_signer(create=True)
        return self._signer

    def reload_signer(self) -> None:
        """Read the signing key file again: a running host whose key was replaced (the host
        key activated anew after the file was lost or restored) signs with the key its new
        certificate names. If the file cannot be read, StoreError, and the key in use stays."""
        self._signer = self._read_signer(create=False)

    def _read_signer(self, create: bool) -> HostKey:
        from ospp.protocol.crypto import HostKey

        path = self.home / SIGNING_KEY
        if create and not path.exists():
            from ospp.core.files import write_new

            try:  # of several processes making it at once, all use the one that won
                write_new(path, HostKey.generate(), private=True)
            except OSError as exc:
                raise StoreError(E_ACCESS_DENIED, f"cannot write {path}: {exc}") from exc
        from ospp.core.files import read_state_file  # a FIFO in its place is never waited on

        try:
            return HostKey(read_state_file(path))
        except (OSError, ValueError) as exc:
            why = (
                exc.strerror
                if isinstance(exc, OSError)
                else "it is not an Ed25519 private key in PEM without a passphrase"
            )
            raise StoreError(
                E_INVALID_DATA,
                f"the KMS host's signing key {path} cannot be read: {why}",
                "It was left as it is. Restore it from a backup of this host; a new key "
                "needs the host key activated again (its certificate names the old one).",
            ) from exc

    def host_key_b64(self) -> str:
        from ospp.protocol.crypto import b64

        return b64(self.signer().public_raw)

    # -- licence packs (ospp.kmshost.packs) ---------------------------------------------

    def packs(self, conn: sqlite3.Connection | None = None) -> list[Pack]:
        """Every licence pack, newest application group first."""
        if conn is not None:
            return read_packs(conn)
        with self.db.read() as c:
            return read_packs(c)

    def pack(self, last5: str | None = None) -> Pack:
        """The pack whose key ends ``last5``, or the only one (else a usage error)."""
        return choose(self.packs(), last5)

    def install_key(self, text: str) -> ProductKey:
        return self.add_key(text)[0]

    def add_key(self, text: str) -> tuple[ProductKey, Pack | None]:
        """Install a KMS host key: a new pack, or in place of the pack of its application
        group (returned). The replaced pack's activation goes with it; the counts stay."""
        key = parse_host_key(text)
        self.signer()
        with self.db.write() as conn:
            replaced = [p for p in read_packs(conn) if p.app == key.product.application_id]
            for old in replaced:
                conn.execute("DELETE FROM packs WHERE key=?", (old.key.compact,))
            conn.execute(
                "INSERT INTO packs (key, installed_at) VALUES (?, ?)",
                (key.compact, iso(self.clock.now())),
            )
        return key, replaced[0] if replaced else None

    def uninstall_key(self, last5: str | None = None) -> Pack:
        """Remove one pack (its key, certificate and ePID); its clients' counts stay."""
        with self.db.write() as conn:
            pack = choose(read_packs(conn), last5)
            conn.execute("DELETE FROM packs WHERE key=?", (pack.key.compact,))
        return pack

    def installed_key(self, last5: str | None = None) -> ProductKey:
        return self.pack(last5).key

    def _certify(self, cert: dict[str, Any], environ: Mapping[str, str], pack: Pack) -> Product:
        from ospp.core.paths import ospp_home
        from ospp.protocol.trust import anchors

        product, host_key = check_certificate(cert, anchors(ospp_home(environ), environ))
        if host_key != self.host_key_b64():
            raise LicensingError(E_CANNOT_USE, "the certificate names another host key")
        if product != pack.product:
            raise LicensingError(
                E_CANNOT_USE,
                f"the certificate is for {product.id}, not for the key *****-{pack.last5} "
                f"({pack.product.id})",
            )
        now = self.clock.now()
        with self.db.write() as conn:
            done = conn.execute(
                "UPDATE packs SET certificate=?, activated_at=?, epid=? WHERE key=?",
                (
                    json.dumps(cert, sort_keys=True),
                    iso(now),
                    epid(product, pack.key.serial, now),
                    pack.key.compact,
                ),
            ).rowcount
        if done != 1:
            raise LicensingError(
                E_KEY_NOT_AVAILABLE,
                f"the KMS host key *****-{pack.last5} was removed while it was being activated",
            )
        return product

    def activate_online(self, environ: Mapping[str, str], last5: str | None = None) -> Product:
        from ospp.authority.port import call_authority

        pack = self.pack(last5)
        key = pack.key
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
            pack,
        )

    def installation_id(self, last5: str | None = None) -> InstallationId:
        """A host key's IID (version 4): bound to the host's signing key by a 72-bit tag."""
        return self._iid(self.pack(last5))

    def _iid(self, pack: Pack) -> InstallationId:
        from ospp.protocol.phone import InstallationId, host_key_tag

        key = pack.key
        return InstallationId.for_host(
            key.product.index, key.serial, key.security, host_key_tag(self.signer().public_raw)
        )

    def apply_cid(self, cid: str, environ: Mapping[str, str], last5: str | None = None) -> Pack:
        """Activate a pack by phone. Without ``last5`` on a host with several packs, the CID
        picks its pack: it verifies for the IID of one key only. Returns the activated pack."""
        packs = self.packs()
        if last5 is not None or len(packs) <= 1:
            candidates = [choose(packs, last5)]
        else:
            waiting = [p for p in packs if not p.activated]
            candidates = waiting or packs
        failure: LicensingError | None = None
        for pack in candidates:
            try:
                self._apply_cid(cid, environ, pack)
            except LicensingError as exc:
                if exc.code != E_MISMATCH and len(candidates) > 1:
                    raise
                failure = exc
                continue
            return self.pack(pack.last5)
        assert failure is not None
        if len(candidates) > 1:
            raise LicensingError(
                E_MISMATCH,
                "the confirmation ID is for none of this host's keys ("
                + ", ".join(f"*****-{p.last5}" for p in candidates)
                + f"): {failure.message}",
                "Check the digits and the order of the groups, or name the key: --key XXXXX.",
            )
        raise failure

    def _apply_cid(self, cid: str, environ: Mapping[str, str], pack: Pack) -> Product:
        digits = "".join(cid.split()).replace("-", "")
        key = pack.key
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
            return self._certify(cert, environ, pack)
        except LicensingError as exc:
            if "confirmation ID" in exc.message or "damaged" in exc.message:
                from ospp.protocol.phone import CID_ORDER_HINT, parse_cid

                parse_cid(cid)  # report length and check-digit errors with their own codes
                raise LicensingError(E_MISMATCH, exc.message, CID_ORDER_HINT) from exc
            raise

    def set_intervals(self, activation: int | None, renewal: int | None) -> None:
        self._set(**interval_settings(activation, renewal))


def interval_settings(activation: int | None, renewal: int | None) -> dict[str, str | None]:
    """The intervals given, as the store's meta holds them; UsageError if one is out of range."""
    low, high = INTERVAL_RANGE
    for name, value in (("activation", activation), ("renewal", renewal)):
        if value is not None and not low <= value <= high:
            raise UsageError(f"the {name} interval must be {low}-{high} minutes, not {value}")
    values: dict[str, str | None] = {}
    if activation is not None:
        values["activation_interval"] = str(activation)
    if renewal is not None:
        values["renewal_interval"] = str(renewal)
    return values
