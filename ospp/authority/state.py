"""The activation authority: opens it, activates its keys online, counting each activation
against the key's limits, and runs the phone centre that turns installation IDs into
confirmation IDs. Issuing the keys and keeping their records is :mod:`ospp.authority.issuing`.

State (keys, activations) lives in a :class:`~ospp.authority.storage.Store`: by default
``<OSPP_CENTER_HOME>/center.db``, or the PostgreSQL database named by ``OSPP_CENTER_DB``. The
private keys (``authority-ed25519.pem``, ``authority-dsa.pem``, owner-only) and the public key
file ``authority.pub.json`` that clients install as their trust anchor are files in
``OSPP_CENTER_HOME``.
"""

from __future__ import annotations

import binascii
import json
import os
import secrets
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ospp.authority import keyfiles
from ospp.authority.backend import open_store
from ospp.authority.issuing import KMS_HOST_REACTIVATIONS, Issuer
from ospp.authority.storage import URL_FILE, CountTx, Store
from ospp.core.canonical import canonical
from ospp.core.catalog import Channel, catalog
from ospp.core.clock import Clock, iso
from ospp.core.errors import (
    E_BAD_FORMAT,
    E_INVALID_DATA,
    E_MAK_LIMIT,
    E_SERVER_BLOCKED,
    E_SERVER_INVALID_KEY,
    E_UNLOCK_LIMIT,
    N_,
    LicensingError,
    StoreError,
    UsageError,
    os_error_code,
)
from ospp.core.files import read_state_file, write_atomic
from ospp.protocol import keys, tolerance
from ospp.protocol.cmid import canonical_cmid
from ospp.protocol.crypto import (
    MAX_AUTHORITY_NAME,
    AuthorityKeys,
    PublicBundle,
    b64,
    valid_authority_name,
)
from ospp.protocol.edpoint import usable_ed25519_key
from ospp.protocol.phone import (
    HOST_VERSIONS,
    IID_CHANNEL_KMS_HOST,
    InstallationId,
    encode_cid,
    host_key_tag,
    iid_channel,
    machine_tag,
)


def _is_host_key(value: object) -> bool:
    """A KMS host's public key as hosts send it: 32 bytes (Ed25519) in standard base64, a
    point that can sign (``ospp.protocol.edpoint``)."""
    if not isinstance(value, str) or len(value) != 44 or not value.isascii():
        return False
    try:
        raw = binascii.a2b_base64(value)
    except binascii.Error:
        return False
    return value.endswith("=") and usable_ed25519_key(raw)


def _within(recorded: str, current: str) -> bool:
    try:
        return tolerance.within_tolerance(int(recorded, 16), int(current, 16))
    except ValueError:  # not a hash (a record or request from elsewhere)
        return False


# Each group's check digit catches a mistyped digit, not two groups typed in the wrong order:
# the installation ID then decodes to a key nobody issued, the likeliest slip over the phone.
_READ_AGAIN = N_(
    "If the installation ID was read out over the phone, check that its groups were typed in "
    "the order they were read."
)


# The files an authority keeps in its OSPP_CENTER_HOME (its records may be in PostgreSQL).
AUTHORITY_FILES = (
    "center.db",
    "authority-ed25519.pem",
    "authority-dsa.pem",
    "authority.pub.json",
    keyfiles.PENDING,
    URL_FILE,
)


class Authority(Issuer):
    """The activation authority of one ``OSPP_CENTER_HOME``. Construct with :meth:`open`."""

    def __init__(self, home: Path, store: Store, keys_: AuthorityKeys, clock: Clock) -> None:
        super().__init__(store, keys_, clock)
        self.home = home

    @property
    def public(self) -> PublicBundle:
        return self.keys.public

    def close(self) -> None:
        self.store.close()

    @classmethod
    def open(
        cls,
        home: Path,
        clock: Clock,
        name: str | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        db_url: str | None = None,
    ) -> Authority:
        """Open the authority, creating its key pair and store on first use.

        The store is ``OSPP_CENTER_DB`` (or ``db_url``) when that names a PostgreSQL
        database, else ``center.db`` in ``home``.
        """
        clock.now()  # a damaged lab clock is refused before any key or store is made
        if name is not None and not valid_authority_name(name):
            raise UsageError(
                f"--name must be 1-{MAX_AUTHORITY_NAME} printable characters",
                "Clients show it; choose a short, plain name.",
            )
        store = open_store(home, os.environ if environ is None else environ, url=db_url)
        try:
            return cls._open(home, clock, name, store)
        except BaseException:
            store.close()
            raise

    @classmethod
    def existing(cls, home: Path, clock: Clock) -> Authority:
        """The authority of ``home`` for the phone centre, which must know the keys it is
        shown: one that does not exist yet is not made, since it would know none. Any of its
        files there means it exists; opening it then says what is wrong with it."""
        cls.require_here(home)
        return cls.open(home, clock)

    @staticmethod
    def require_here(home: Path) -> None:
        """Refuse a ``home`` that holds no file of an authority (see :meth:`existing`)."""
        if not any(os.path.lexists(home / name) for name in AUTHORITY_FILES):
            raise LicensingError(
                E_SERVER_INVALID_KEY,
                N_(
                    "there is no activation authority in {home} to know the key: none of its "
                    "files is there",
                    home=str(home),
                ),
                N_(
                    "Confirm installation IDs where the authority that issued the keys keeps its "
                    "files (set OSPP_CENTER_HOME to them; a node of an authority on PostgreSQL "
                    "gets them with 'ospp center init --db URL'). Nothing was made."
                ),
            )

    @classmethod
    def _open(cls, home: Path, clock: Clock, name: str | None, store: Store) -> Authority:
        ed_path, dsa_path = home / "authority-ed25519.pem", home / "authority-dsa.pem"
        with store.setup() as conn:  # the lock also serialises first-use key creation
            row = conn.get("secret")
            if row is None:
                database = store.where if store.backend != "sqlite" else None
                keyfiles.create(home, ed_path, dsa_path, *AuthorityKeys.generate(), database)
                secret = secrets.token_hex(32)
                conn.put("secret", secret)
                default = f"ospp-authority@{home.name}"
                conn.put("name", name or (default if valid_authority_name(default) else "ospp"))
                conn.put("created_at", iso(clock.now()))
            meta = conn.all()
        keyfiles.settle(home)
        for needed in ("name", "secret"):  # written with the key files, in one transaction
            if not isinstance(meta.get(needed), str):
                raise StoreError(
                    E_INVALID_DATA,
                    N_(
                        "the authority's records have no {name} beside its key files in {home}",
                        name=needed,
                        home=str(home),
                    ),
                    N_("Restore them from a backup; nothing was changed."),
                )
        if name is not None and meta["name"] != name:  # made before, under its own name
            raise UsageError(
                f"this authority is named {meta['name']!r} already; --name names a new "
                "authority, and nothing was changed",
                "Leave out --name, or point OSPP_CENTER_HOME at a new directory for another "
                "authority.",
            )
        try:
            keys_ = AuthorityKeys(
                meta["name"],
                read_state_file(ed_path),  # a FIFO in their place is never waited on
                read_state_file(dsa_path),
                bytes.fromhex(meta["secret"]),
            )
        except (OSError, ValueError) as exc:
            raise StoreError(
                E_INVALID_DATA,
                N_(
                    "the authority key files in {home} cannot be loaded: {why}",
                    home=str(home),
                    why=str(exc),
                ),
                N_("Restore them from a backup; nothing was changed."),
            ) from exc
        authority = cls(home, store, keys_, clock)
        pub = home / "authority.pub.json"
        text = json.dumps(keys_.public.to_json(), indent=2) + "\n"
        if pub.is_dir():
            raise StoreError(
                E_INVALID_DATA,
                N_(
                    "{path} is a directory where the authority's public key file should be",
                    path=str(pub),
                ),
                N_("It was left as it is. Move it aside, and the next command writes the file."),
            )
        try:
            current: bytes | None = read_state_file(pub)
        except FileNotFoundError:
            current = None
        except OSError as exc:
            raise StoreError(
                os_error_code(exc),
                N_(
                    "cannot read the public key file {path}: {why}",
                    path=str(pub),
                    why=str(exc.strerror or exc),
                ),
            ) from exc
        # Written from the key files: anything else is redone. The line ends are those of the
        # system that wrote it (CRLF on Windows, where write_atomic writes text).
        if current is None or current.replace(b"\r\n", b"\n") != text.encode("utf-8"):
            try:
                write_atomic(pub, text)
            except OSError as exc:
                raise StoreError(
                    os_error_code(exc),
                    N_(
                        "cannot write the public key file {path}: {why}",
                        path=str(pub),
                        why=str(exc.strerror or exc),
                    ),
                    N_(
                        "Free some space or make the directory writable; the authority itself "
                        "is complete, and the next command writes the file."
                    ),
                ) from exc
        return authority

    # -- activation ------------------------------------------------------------------------

    def _count(
        self,
        conn: CountTx,
        key: keys.ProductKey,
        machine: str,
        hardware: str,
        via: str,
        recorded_as: str | None = None,
    ) -> None:
        """Check the key's limits and record one activation, in the store's transaction that
        holds this key exclusively (on every node). ``recorded_as``: another tag this
        computer's earlier activations of the key may be recorded under, used if they are."""
        limit, blocked = self._known(key, conn.key())
        if blocked:
            raise LicensingError(
                E_SERVER_BLOCKED,
                N_("the key ending {last5} has been blocked", last5=key.last5),
                N_("Ask for a new key."),
            )
        now = iso(self.clock.now())
        if key.channel is Channel.KMS_HOST:
            hosts = conn.hosts()
            if machine not in hosts and recorded_as is not None and recorded_as in hosts:
                machine = recorded_as
            if machine not in hosts and len(hosts) >= limit:
                raise LicensingError(
                    E_UNLOCK_LIMIT,
                    N_(
                        "the KMS host key ending {last5} already activated {count} hosts "
                        "(limit {limit})",
                        last5=key.last5,
                        count=len(hosts),
                        limit=limit,
                    ),
                )
            if hosts.get(machine, 0) >= 1 + KMS_HOST_REACTIVATIONS:
                raise LicensingError(
                    E_UNLOCK_LIMIT,
                    N_(
                        "this host has activated the key ending {last5} {count} times "
                        "(limit {limit})",
                        last5=key.last5,
                        count=hosts[machine],
                        limit=1 + KMS_HOST_REACTIVATIONS,
                    ),
                )
        else:
            seen = conn.seen(machine, hardware)
            if not seen and self._same_computer(conn, machine, hardware, now):
                return
            if not seen:
                used = conn.used()
                if used >= limit:
                    raise LicensingError(
                        E_MAK_LIMIT,
                        N_(
                            "the MAK ending {last5} has used all {limit} of its activations",
                            last5=key.last5,
                            limit=limit,
                        ),
                        N_("Ask the authority for more: ospp center extend KEY --by N."),
                    )
        conn.record(machine, hardware, now, via)

    @staticmethod
    def _same_computer(conn: CountTx, machine: str, hardware: str, now: str) -> bool:
        """A MAK reactivation on hardware within tolerance (the client's own rule, 7 of 12
        votes) of what this computer had is the same computer: no activation is used, and the
        record moves to the new hash (reactivation resets the baseline). See README."""
        for recorded in conn.hardware_of(machine):
            if _within(recorded, hardware):
                conn.move(machine, recorded, hardware, now)
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
        machine_id = canonical_cmid(cmid)
        if machine_id is None:
            raise UsageError("request field 'cmid' is not a client machine ID (a GUID)")
        if not hardware.isascii() or any(c not in string.hexdigits for c in hardware):
            raise UsageError("request field 'hardware' is not a hardware hash (hex digits)")
        key = keys.parse(key_text)
        self._genuine(key)
        sku_id = key.product.sku(key.channel).sku_id
        host_key = request.get("host_key")
        if key.channel is Channel.KMS_HOST and not _is_host_key(host_key):
            raise UsageError(
                "a KMS host key is activated together with the host's public key "
                "(an Ed25519 public key in base64, not a point of small order)"
            )
        # Counted by the canonical CMID: one machine, however it spells its ID.
        tag = f"tag:{machine_tag(machine_id):08x}"
        by_cmid = None
        if key.channel is Channel.KMS_HOST:
            # A KMS host is counted by its signing key, as the phone centre counts it (a host's
            # installation ID carries the key's tag where a machine's carries its CMID's), so
            # a host activated online and by phone is one host. Hosts this authority counted
            # by their CMID before stay counted under it.
            assert isinstance(host_key, str)  # checked above
            by_key = host_key_tag(binascii.a2b_base64(host_key)) % (1 << 32)  # its low 32 bits
            tag, by_cmid = f"tag:{by_key:08x}", tag
        self.store.count(
            key.serial, lambda tx: self._count(tx, key, tag, hardware, "online", by_cmid)
        )
        licence: dict[str, Any] = {
            "format": "ospp-licence-v1",
            "kind": key.channel.value,
            "product": key.product.id,
            "sku_id": sku_id,
            "key_serial": key.serial,
            "key_last5": key.last5,
            "cmid": machine_id,
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

    def _issued_none(self) -> str:
        """The hint for an installation ID shown to an authority that has issued no key: the
        phone centre is not running where the key's authority keeps its files."""
        return N_(
            "This authority ({where}) has issued no keys: the key was issued by another one. "
            "Confirm the installation ID where that authority keeps its files (set "
            "OSPP_CENTER_HOME, or OSPP_CENTER_DB, to them).",
            where=self.store.where,
        )

    def confirm(self, iid_text: str) -> str:
        """The phone centre: check an installation ID, count it, return the CID.

        The IID proves the caller holds the key (``InstallationId.proves``) without holding
        it: the key is rebuilt here, from its serial and the security value only this
        authority computes. An IID of older ospp holds that value itself, checked alike."""
        iid = InstallationId.parse(iid_text)
        if iid.channel_code == IID_CHANNEL_KMS_HOST and iid.version not in HOST_VERSIONS:
            raise LicensingError(
                E_BAD_FORMAT,
                N_(
                    "this installation ID comes from a KMS host of an older ospp: the "
                    "certificate made from it would disclose the host's product key to every "
                    "client"
                ),
                N_(
                    "Update ospp on the KMS host, then read its installation ID again "
                    "(ospp kms dinstid)."
                ),
            )
        product = catalog().by_index(iid.product_index)
        channel = iid_channel(iid.channel_code)
        security = 0
        if product is not None and channel is not None:
            security = self.security_value(product.index, channel, iid.serial)
        if product is None or channel is None or not iid.proves(security):
            raise LicensingError(
                E_SERVER_INVALID_KEY,
                N_("the installation ID names no product key this authority knows"),
                _READ_AGAIN if self.key_records() else self._issued_none(),
            )
        key = keys.ProductKey(
            keys.encode(product, channel, iid.serial, security),
            product,
            channel,
            iid.serial,
            security,
        )
        try:
            self._genuine(key)
        except LicensingError as exc:
            exc.hint = exc.hint or _READ_AGAIN
            raise
        tag, hw = f"tag:{iid.machine_tag:08x}", f"{iid.hardware:010x}"
        self.store.count(key.serial, lambda tx: self._count(tx, key, tag, hw, "phone"))
        r, s = self.keys.sign_cid(iid.message())
        return encode_cid(r, s)
