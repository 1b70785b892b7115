"""Seals: a cheap way for status reads to re-check activations already verified.

An activation is verified with the authority's (or the KMS host's) public key when it arrives.
It is then sealed: an HMAC-SHA256 under a per-home key (``seal.key``, owner-only) over the
activation, the SKU, the installed key, the CMID and the fingerprints of the trusted
authorities. A status read checks the seal with the standard library alone
(``ospp.machine.checks``); when it does not match, the full signature verification runs again.
The HMAC is computed by ``ospp.core.digest``, which does not load OpenSSL: the same bytes as
``hmac`` and ``hashlib`` give, in a fraction of their import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ospp.core.canonical import canonical
from ospp.core.digest import hmac_sha256
from ospp.core.errors import E_ACCESS_DENIED, E_INVALID_DATA, N_, StoreError
from ospp.core.files import read_state_file, write_new
from ospp.core.paths import StrPath, exists
from ospp.machine.store import Licence, MachineStore
from ospp.protocol.trust import trusted_fingerprints

SEAL_FILE = "seal.key"
KEY_BYTES = 32


def seal_key(home: StrPath, create: bool) -> bytes | None:
    """The per-home seal key; created on first use when ``create``.

    Without ``create`` a key that is missing or cannot be read is None: activations are then
    checked by their signatures. With it (an activation is about to be sealed) such a key is
    a StoreError, and the file is left as it is.
    """
    path = os.path.join(home, SEAL_FILE)
    if create and not exists(path):
        # secrets.token_hex(32); several processes making it at once all use the one that won
        try:
            write_new(path, os.urandom(32).hex().encode("ascii"), private=True)
        except OSError as exc:
            raise StoreError(
                E_ACCESS_DENIED,
                f"the seal key {path} cannot be written: {exc.strerror or exc}",
                "Check that OSPP_HOME is writable.",
            ) from exc
    elif not exists(path):
        return None
    try:
        key = bytes.fromhex(read_state_file(path).decode("ascii").strip())
        if len(key) != KEY_BYTES:
            raise ValueError(f"{len(key)} bytes, not {KEY_BYTES}")
    except (OSError, ValueError) as exc:
        if not create:
            return None
        raise _damaged(path, exc) from exc
    return key


def require_key(home: StrPath, create: bool = True) -> bytes | None:
    """The seal key for sealing a new activation, created on first use when ``create`` (else
    None while there is none); a damaged one is a StoreError naming the file, which is left as
    it is (every seal made with it would be lost). ``create=False`` checks it before an
    activation is asked for, without leaving a key behind when that activation fails."""
    if not create and not exists(os.path.join(home, SEAL_FILE)):
        return None
    return seal_key(home, create=True)


def _damaged(path: StrPath, exc: Exception) -> StoreError:
    if isinstance(exc, OSError):
        what = N_(
            "the {store} {path} cannot be read: {why}",
            store="seal key",
            path=str(path),
            why=str(exc.strerror or exc),
        )
    else:
        what = N_(
            "the seal key {path} cannot be read: it should hold 64 hexadecimal digits",
            path=str(path),
        )
    return StoreError(
        E_INVALID_DATA,
        what,
        N_(
            "It was left as it is. Restore it from a backup; or move it aside, and every "
            "activation in this home is verified again from its signature on the next "
            "status read."
        ),
    )


def mac(
    key: bytes,
    lic_sku: str,
    product_key: str | None,
    cmid: str,
    fingerprints: list[str],
    activation: Mapping[str, Any],
) -> str:
    """The seal of ``activation`` for this SKU, key, machine and set of trust anchors."""
    body = {k: v for k, v in activation.items() if k != "seal"}
    message = canonical([lic_sku, product_key, cmid, fingerprints, body])
    return hmac_sha256(key, message)


def seal(
    store: MachineStore, lic: Licence, activation: dict[str, Any], environ: Mapping[str, str]
) -> dict[str, Any]:
    """``activation`` with its seal, for an activation that was just verified."""
    key = require_key(store.home)
    assert key is not None  # created when missing
    tag = mac(
        key,
        lic.sku.sku_id,
        lic.product_key,
        store.settings()["cmid"],
        trusted_fingerprints(store.home, environ),
        activation,
    )
    return {**activation, "seal": tag}
