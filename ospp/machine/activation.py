"""Client-side activation: online MAK activation, phone (IID/CID) activation, and the checks
that keep a stored activation honest (signature, binding to key and machine, hardware).

Trust: a client accepts only what chains to a public key it trusts. The local authority (in
``OSPP_CENTER_HOME``) is trusted when no remote authority is configured; any other authority is
trusted only after ``ospp trust add FILE`` put its public key file in ``<OSPP_HOME>/trust/``.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from ospp.authority.port import call_authority
from ospp.core.catalog import Channel
from ospp.core.clock import iso
from ospp.core.errors import (
    E_KEY_NOT_AVAILABLE,
    E_KMS_REFUSED,
    E_MISMATCH,
    E_UNTRUSTED,
    N_,
    ExitStatus,
    LicensingError,
    OsppError,
)
from ospp.machine import hardware
from ospp.machine.seal import require_key, seal
from ospp.machine.store import Licence, MachineStore
from ospp.protocol import keys
from ospp.protocol.phone import (
    IID_CHANNELS,
    IID_VERSION,
    KEY_IID_VERSION,
    InstallationId,
    machine_tag,
    parse_cid,
)
from ospp.protocol.trust import Anchors, anchors, require_anchors, verify_licence

# -- the checks ---------------------------------------------------------------------------------


def _hardware_hex(store: MachineStore) -> tuple[str, hardware.Hardware]:
    hw = hardware.load(store.directory)
    return f"{hw.hash():010x}", hw


def installation_id(
    store: MachineStore, lic: Licence, hw_hex: str | None = None, version: int = IID_VERSION
) -> InstallationId:
    """The IID of ``lic``'s key on this machine (``version`` KEY_IID_VERSION: as older ospp
    read it out, for a CID made from one)."""
    if not lic.product_key:
        raise LicensingError(
            E_KEY_NOT_AVAILABLE,
            N_("no product key is installed for {product}", product=lic.sku.product.id),
        )
    key = keys.parse(lic.product_key)
    if key.channel is Channel.KMS_CLIENT:
        raise LicensingError(
            E_KMS_REFUSED,
            N_(
                "{product} has a KMS client key (GVLK); phone activation needs a MAK or KMS host "
                "key",
                product=lic.sku.product.id,
            ),
            N_("Install a MAK first: ospp /inpkey:KEY, or slmgr /ipk KEY."),
        )
    hw = hw_hex or _hardware_hex(store)[0]
    return InstallationId.for_key(
        key.product.index,
        IID_CHANNELS[key.channel],
        key.serial,
        key.security,
        int(hw, 16),
        machine_tag(store.settings()["cmid"]),
        version,
    )


def cid_verifies(
    store: MachineStore, lic: Licence, hw_hex: str, r: int, s: int, trusted: Anchors
) -> bool:
    """Whether the CID ``(r, s)`` from a trusted authority confirms ``lic``'s key on this
    machine with hardware ``hw_hex``: made from its IID, or from the IID older ospp read out
    (which held the key's security value where the IID now holds its proof)."""
    for version in (IID_VERSION, KEY_IID_VERSION):
        message = installation_id(store, lic, hw_hex, version).message()
        if any(b.verify_cid(message, r, s) for b in trusted.values()):
            return True
    return False


# -- the flows ----------------------------------------------------------------------------------


def kept_in_history(exc: OsppError) -> bool:
    """Whether a failed MAK activation goes into the history (/dhistoryacterr): not when the
    command line or environment was wrong (exit 2, such as an OSPP_AUTHORITY that is not an
    address), which attempted nothing and changes nothing."""
    return exc.exit_status != ExitStatus.USAGE


def record_failure(store: MachineStore, lic: Licence, exc: OsppError) -> None:
    """Put a failed MAK activation in the history, if it goes there (:func:`kept_in_history`)."""
    if kept_in_history(exc):
        with store.write() as conn:
            store.record(conn, "acterr", exc.code, exc.message, lic.sku)


def activate_mak(store: MachineStore, lic: Licence, environ: Mapping[str, str]) -> None:
    """Online activation of one MAK licence; stores the verified licence or raises."""
    _store(store, lic, mak_activation(store, lic, environ))


def _store(store: MachineStore, lic: Licence, activation: dict[str, Any]) -> None:
    with store.write() as conn:
        store.set_activation_of(conn, lic, activation)
        store.bump(conn)


def check_trust(store: MachineStore, environ: Mapping[str, str]) -> None:
    """0xC004E003 when no authority is trusted, before a call is made: the confirmation ID
    could not be checked when it is typed."""
    require_anchors(anchors(store.home, environ))


def mak_activation(store: MachineStore, lic: Licence, environ: Mapping[str, str]) -> dict[str, Any]:
    """Ask the authority to activate ``lic`` online; returns the verified, sealed activation
    without storing it (``lic`` may carry a key not installed yet)."""
    assert lic.product_key is not None
    trusted = require_anchors(anchors(store.home, environ))
    # a damaged seal key stops it before the authority counts this machine
    require_key(store.home, create=False)
    hw_hex, _ = _hardware_hex(store)
    cmid = store.settings()["cmid"]
    nonce = secrets.token_hex(16)
    response = call_authority(
        {
            "op": "activate",
            "key": lic.product_key,
            "sku_id": lic.sku.sku_id,
            "cmid": cmid,
            "hardware": hw_hex,
            "nonce": nonce,
            "client_time": iso(store.clock.now()),
        },
        environ,
        store.clock,
    )
    payload = response.get("licence")
    if not isinstance(payload, dict):
        raise LicensingError(E_UNTRUSTED, N_("the authority's answer holds no licence"))
    why = verify_licence(payload, str(response.get("signature")), trusted)
    if why is None and (
        payload.get("nonce"),
        payload.get("cmid"),
        payload.get("hardware"),
        payload.get("sku_id"),
    ) != (nonce, cmid, hw_hex, lic.sku.sku_id):
        why = N_("the licence answers another request (nonce, machine, hardware or SKU differ)")
    if why is not None:
        raise LicensingError(
            E_UNTRUSTED, N_("the activation was refused by this client: {why}", why=why)
        )
    return seal(
        store,
        lic,
        {
            "kind": "mak",
            "licence": payload,
            "signature": response["signature"],
            "activated_at": iso(store.clock.now()),
        },
        environ,
    )


def apply_cid(store: MachineStore, lic: Licence, cid_text: str, environ: Mapping[str, str]) -> None:
    """Offline activation: verify the CID with the trusted public key(s) alone, then store it."""
    _store(store, lic, cid_activation(store, lic, cid_text, environ))


def _mismatch(message: str | None = None) -> LicensingError:
    return LicensingError(
        E_MISMATCH,
        message
        or N_(
            "the confirmation ID does not match this installation ID (it was made for "
            "another installation ID, machine or key)"
        ),
        N_(
            "Check that the confirmation ID's groups were typed in the order they were "
            "read; if they were, read the installation ID again with /dinstid and ask for "
            "a new confirmation ID."
        ),
    )


def cid_licence(
    store: MachineStore, licences: list[Licence], cid_text: str, environ: Mapping[str, str]
) -> Licence:
    """The licence among ``licences`` (each with a MAK installed) whose installation ID the
    CID answers: a machine with several products reads out one IID per product, and the CID
    that comes back names which one it confirms. None of them: 0xC004F031."""
    r, s = parse_cid(cid_text)
    hw_hex, _ = _hardware_hex(store)
    for lic in licences:
        installation_id(store, lic, hw_hex)  # no key, or a KMS client key: before the trust
    trusted = require_anchors(anchors(store.home, environ))
    for lic in licences:
        if cid_verifies(store, lic, hw_hex, r, s, trusted):
            return lic
    if len(licences) > 1:
        raise _mismatch(
            N_(
                "the confirmation ID matches the installation ID of none of the products with a "
                "key to activate by phone ({products}): it was made for another installation "
                "ID, machine or key",
                products=", ".join(lic.sku.product.id for lic in licences),
            )
        )
    raise _mismatch()


def cid_activation(
    store: MachineStore, lic: Licence, cid_text: str, environ: Mapping[str, str]
) -> dict[str, Any]:
    """Verify a CID for ``lic``; returns the sealed activation without storing it."""
    r, s = parse_cid(cid_text)
    hw_hex, _ = _hardware_hex(store)
    installation_id(store, lic, hw_hex)  # no key, or a KMS client key: before the trust store
    trusted = require_anchors(anchors(store.home, environ))
    if not cid_verifies(store, lic, hw_hex, r, s, trusted):
        raise _mismatch()
    return seal(
        store,
        lic,
        {
            "kind": "phone",
            "cid": "".join(cid_text.split()).replace("-", ""),
            "hardware": hw_hex,
            "activated_at": iso(store.clock.now()),
        },
        environ,
    )
