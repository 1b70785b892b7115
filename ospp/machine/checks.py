"""The checks behind every status read: is each stored activation still good?

Fast path: the seal (``ospp.machine.seal``) matches, so only the hardware is compared.
Slow path, when it does not match (the activation or key was edited, the trust store changed,
the store was copied from elsewhere): the signature is verified again against this machine's
own CMID, SKU and key, and a failure shows 0xC004E003. So ``/dstatus`` loads
``cryptography`` only for activations it has not verified yet.

The seal key sits beside the stores, so whoever can write a store can also re-seal an edited
activation; ``/dstatus --verify`` uses :func:`full_checker` alone and is not fooled by that
(docs/THREAT-MODEL.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ospp.core.canonical import too_deep
from ospp.core.digest import compare_digest
from ospp.core.errors import E_HARDWARE, E_UNTRUSTED
from ospp.machine import hardware
from ospp.machine.seal import mac, seal_key
from ospp.machine.settings import kms_settings
from ospp.machine.status import Checker, Problem
from ospp.machine.store import Licence, MachineStore
from ospp.protocol.trust import Anchors, trusted_fingerprints


def bound_hardware(activation: Mapping[str, Any]) -> str | None:
    """The hardware hash an activation is bound to (KMS activations are bound to none)."""
    kind = activation.get("kind")
    if kind == "mak":
        return str((activation.get("licence") or {}).get("hardware", ""))
    if kind == "phone":
        return str(activation.get("hardware", ""))
    return None


def hardware_problem(store: MachineStore, activation: Mapping[str, Any]) -> Problem | None:
    bound = bound_hardware(activation)
    if bound is None:
        return None
    hw = hardware.load(store.directory)
    current = hw.hash()
    try:
        stored = int(bound, 16)
    except ValueError:
        return Problem(E_UNTRUSTED, "the activation holds no valid hardware hash")
    if hardware.within_tolerance(stored, current, hw.dockable):
        return None
    path = os.path.join(store.directory, hardware.HARDWARE_FILE)
    since = hw.changed_at or datetime.fromtimestamp(os.stat(path).st_mtime, UTC)
    needed = hardware.NEEDED_DOCKABLE if hw.dockable else hardware.NEEDED
    return Problem(
        E_HARDWARE,
        f"the hardware changed beyond tolerance ({hardware.votes(stored, current)} of 12 votes "
        f"match, {needed} needed); reactivate",
        since=since,
    )


# An activation stored before answers were checked for nesting (wire.Connection): what is that
# deep could not be sealed or verified again, so it is reported, never a crash.
TOO_DEEP = Problem(E_UNTRUSTED, "the stored activation is damaged: nested too deeply")


def policy_problem(online_only: bool, activation: Mapping[str, Any]) -> Problem | None:
    """0xC004F042 for a KMS activation from a phone-certified host on a machine that accepts
    only online-certified hosts (/kms-policy:online-only)."""
    if activation.get("kind") != "kms" or not online_only:
        return None
    response = activation.get("response")
    cert = response.get("certificate") if isinstance(response, Mapping) else None
    if isinstance(cert, Mapping) and cert.get("kind") == "online":
        return None
    from ospp.core.errors import E_CANNOT_USE

    return Problem(
        E_CANNOT_USE,
        "the KMS host that activated this licence is certified by phone, and this machine "
        "accepts only hosts certified online (/kms-policy:online-only)",
    )


def make_checker(store: MachineStore, environ: Mapping[str, str]) -> Checker:
    """A checker that trusts a matching seal and verifies signatures otherwise."""
    key = seal_key(store.home, create=False)
    settings = store.settings()
    cmid = settings["cmid"]
    online_only = kms_settings(settings).online_only
    fingerprints = trusted_fingerprints(store.home, environ)
    full: list[Checker] = []

    def check(lic: Licence) -> Problem | None:
        act = lic.activation or {}
        if too_deep(act):
            return TOO_DEEP
        refused = policy_problem(online_only, act)
        if refused is not None:
            return refused
        given = act.get("seal")
        if (
            key is not None
            and isinstance(given, str)
            and compare_digest(
                given, mac(key, lic.sku.sku_id, lic.product_key, cmid, fingerprints, act)
            )
        ):
            return hardware_problem(store, act)
        if not full:
            full.append(full_checker(store, environ))  # loads cryptography
        return full[0](lic)

    return check


def full_checker(store: MachineStore, environ: Mapping[str, str]) -> Checker:
    """Verify stored activations cryptographically, against this machine's own identity."""
    from ospp.machine.kmsclient import verify_stored
    from ospp.protocol.trust import anchors, verify_licence

    trusted = anchors(store.home, environ)
    settings = store.settings()
    cmid = settings["cmid"]
    online_only = kms_settings(settings).online_only

    def check(lic: Licence) -> Problem | None:
        act = lic.activation or {}
        if too_deep(act):
            return TOO_DEEP
        kind = act.get("kind")
        if kind == "mak":
            payload = act.get("licence") or {}
            why = verify_licence(payload, str(act.get("signature")), trusted)
            if why is None and (
                payload.get("cmid") != cmid
                or payload.get("sku_id") != lic.sku.sku_id
                or payload.get("key_last5") != lic.last5
            ):
                why = "the licence was issued for another machine or key"
        elif kind == "phone":
            why = _check_phone(store, lic, act, trusted)
        elif kind == "kms":
            why = verify_stored(act, lic, cmid, trusted)
        else:
            why = f"unknown activation kind {kind!r}"
        if why is not None:
            return Problem(E_UNTRUSTED, why)
        return policy_problem(online_only, act) or hardware_problem(store, act)

    return check


def _check_phone(
    store: MachineStore, lic: Licence, act: Mapping[str, Any], trusted: Anchors
) -> str | None:
    from ospp.core.errors import OsppError
    from ospp.machine.activation import cid_verifies
    from ospp.protocol.phone import parse_cid

    try:
        r, s = parse_cid(str(act.get("cid")))
        verifies = cid_verifies(store, lic, str(act.get("hardware")), r, s, trusted)
    except (OsppError, ValueError):
        return "the stored phone activation is damaged"
    if not verifies:
        return "the confirmation ID does not verify for this key and machine"
    return None
