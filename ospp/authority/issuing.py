"""Issuing keys and keeping their records: the part of the activation authority that mints
MAK and KMS host keys, tells its own keys from any other, and blocks or extends them.

A key's security value is an HMAC of its product, channel and serial under the authority's
secret, so only this authority can mint a key it will accept, and it recognises one from the
key alone. Every key issued is recorded in the authority's
:class:`~ospp.authority.storage.Store` with its limit: the activations a MAK allows, or the
hosts a KMS host key activates. :class:`Issuer` is the part of
:class:`ospp.authority.state.Authority` that does this.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

from ospp.core.catalog import Channel, catalog
from ospp.core.clock import iso
from ospp.core.errors import E_SERVER_INVALID_KEY, N_, LicensingError, UsageError
from ospp.protocol import keys

if TYPE_CHECKING:
    from ospp.authority.storage import KeyRecord, Store
    from ospp.core.clock import Clock
    from ospp.protocol.crypto import AuthorityKeys

KMS_HOST_MACHINES = 6  # one KMS host key activates up to 6 hosts...
KMS_HOST_REACTIVATIONS = 9  # ...each reactivated up to 9 more times
DEFAULT_MAK_LIMIT = 100
MAX_LIMIT = 1_000_000_000  # per key and per extension: far beyond any real MAK, well inside SQL


class Issuer:
    """The keys of one activation authority; :class:`ospp.authority.state.Authority` opens it."""

    def __init__(self, store: Store, keys_: AuthorityKeys, clock: Clock) -> None:
        self.store = store
        self.keys = keys_
        self.clock = clock

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
        if not 1 <= limit <= MAX_LIMIT:
            raise UsageError(f"--limit must be from 1 to {MAX_LIMIT}, not {limit}")
        while True:
            serial = secrets.randbelow(1 << 32)
            text = keys.encode(
                product, chan, serial, self.security_value(product.index, chan, serial)
            )
            created = iso(self.clock.now())
            if self.store.add_key(serial, product.id, chan.value, text[-5:], limit, created):
                return text

    def key_records(self) -> list[KeyRecord]:
        return self.store.key_records()

    def _genuine(self, key: keys.ProductKey) -> None:
        """Step 1 of every activation: is this a key this authority minted?"""
        if key.channel is Channel.KMS_CLIENT:
            raise LicensingError(
                E_SERVER_INVALID_KEY,
                N_(
                    "a KMS client key (GVLK) of {product} is activated by a KMS host, not by the "
                    "activation authority",
                    product=key.product.id,
                ),
                N_("Set a KMS host with /sethst, or install a MAK."),
            )
        expected = self.security_value(key.product.index, key.channel, key.serial)
        if not hmac.compare_digest(expected.to_bytes(8, "big"), key.security.to_bytes(8, "big")):
            raise LicensingError(
                E_SERVER_INVALID_KEY,
                N_(
                    "the key ending {last5} was not issued by this activation authority",
                    last5=key.last5,
                ),
            )

    @staticmethod
    def _known(key: keys.ProductKey, row: tuple[int, bool] | None) -> tuple[int, bool]:
        if row is None:
            raise LicensingError(
                E_SERVER_INVALID_KEY,
                N_("the key ending {last5} is not in this authority's records", last5=key.last5),
            )
        return row

    def find_key(self, text: str) -> keys.ProductKey:
        key = keys.parse(text)
        self._genuine(key)
        self._known(key, self.store.key_state(key.serial))
        return key

    def serial_of(self, text: str) -> int:
        """The key that ``text`` names: the whole key, its key id (``center keys``), or its
        last five characters when only one issued key ends so."""
        value = text.strip()
        if value.isascii() and value.isdigit() and len(value) < 20:
            serial = int(value)
            if not any(r.serial == serial for r in self.key_records()):
                raise LicensingError(
                    E_SERVER_INVALID_KEY,
                    f"no key with id {serial} is in this authority's records",
                    "Run 'ospp center keys' for the ids.",
                )
            return serial
        if len(value) == 5 and value.isalnum():
            found = [r for r in self.key_records() if r.last5 == value.upper()]
            if not found:
                raise LicensingError(
                    E_SERVER_INVALID_KEY,
                    f"no key issued by this authority ends in {value.upper()}",
                    "Run 'ospp center keys' for the keys and their ids.",
                )
            if len(found) > 1:
                ids = ", ".join(str(r.serial) for r in found)
                raise UsageError(
                    f"{len(found)} keys end in {value.upper()} (key ids {ids})",
                    "Name one by its key id, or give the whole key.",
                )
            return found[0].serial
        return self.find_key(value).serial

    def block(self, text: str) -> KeyRecord:
        serial = self.serial_of(text)
        self.store.block(serial)
        return self._record(serial)

    def extend(self, text: str, by: int) -> KeyRecord:
        if not 1 <= by <= MAX_LIMIT:
            raise UsageError(f"--by must be from 1 to {MAX_LIMIT}, not {by}")
        serial = self.serial_of(text)
        self.store.extend(serial, by)
        return self._record(serial)

    def _record(self, serial: int) -> KeyRecord:
        return next(r for r in self.key_records() if r.serial == serial)
