"""What slmgr.vbs does to a simulated machine: which licence it acts on, and what it reads.

slmgr.vbs names a licence by its Activation ID (here: the catalog's SKU id). Without one it
acts on the primary licence. On Windows that is the Windows licence whose key ``/ipk`` last
replaced; a simulated machine holds Office licences only, so its primary licence is the one
whose key was installed last (ties: catalog order, newest product first).

The verbs reuse the ospp.vbs ones (``client``, ``activation``, ``kmsclient``), so ``/ipk`` and
``/inpkey``, ``/ato`` and ``/act`` leave the same state. The text is the CLI's business; this
module gives it the numbers slmgr.vbs shows (its LicenseStatus 0-6, grace minutes, days).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ospp.core.catalog import Channel
from ospp.core.endpoint import parse_host
from ospp.core.errors import (
    E_GRACE_EXPIRED,
    E_KEY_NOT_AVAILABLE,
    E_NO_KMS,
    E_SKU_NOT_FOUND,
    LicensingError,
    OsppError,
)
from ospp.machine import client
from ospp.machine.status import (
    LICENSED,
    NOTIFICATIONS,
    OOB_GRACE,
    OOT_GRACE_LABEL,
    LicenceStatus,
)
from ospp.machine.store import Licence, MachineStore

_GUID = re.compile(r"^\{?[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\}?$")

# slmgr.vbs's LicenseStatus values (SoftwareLicensingProduct.LicenseStatus).
LS_UNLICENSED = 0
LS_LICENSED = 1
LS_OOB_GRACE = 2
LS_OOT_GRACE = 3
LS_NOTIFICATION = 5
_LS = {
    LICENSED: LS_LICENSED,
    OOB_GRACE: LS_OOB_GRACE,
    OOT_GRACE_LABEL: LS_OOT_GRACE,
    NOTIFICATIONS: LS_NOTIFICATION,
}


def is_activation_id(word: str) -> bool:
    """An Activation ID is a GUID, with or without braces."""
    return bool(_GUID.match(word))


def days_from_minutes(minutes: int) -> int:
    """Whole days as slmgr.vbs counts them: rounded up (1 minute left is 1 day)."""
    return math.ceil(minutes / 1440)


# -- which licence -----------------------------------------------------------------------------


def primary(licences: list[Licence]) -> Licence | None:
    """The licence slmgr acts on without an Activation ID: the key installed last."""
    keyed = [(i, lic) for i, lic in enumerate(licences) if lic.product_key]
    if not keyed:
        return None
    return max(
        keyed, key=lambda pair: (pair[1].key_installed_at or pair[1].installed_at, -pair[0])
    )[1]


def target(store: MachineStore, act_id: str | None, need_key: bool = True) -> Licence:
    """The licence a command acts on: the one named by ``act_id``, else the primary one."""
    licences = store.licenses()
    if act_id is None:
        found = primary(licences)
        if found is None:
            raise LicensingError(
                E_KEY_NOT_AVAILABLE,
                f"no product key is installed on {store.name}",
                "Install one with: slmgr /ipk KEY (or ospp install-product PRODUCT).",
            )
        return found
    wanted = act_id.strip("{}").lower()
    for lic in licences:
        if lic.sku.sku_id == wanted:
            if need_key and not lic.product_key:
                raise LicensingError(
                    E_KEY_NOT_AVAILABLE,
                    f"the licence {wanted} ({lic.sku.license_name}) has no product key",
                    "Install its key with: slmgr /ipk KEY",
                )
            return lic
    raise LicensingError(
        E_SKU_NOT_FOUND,
        f"no licence with Activation ID {wanted} is installed on {store.name}",
        "Run 'slmgr /dlv all' to list the Activation IDs of the installed licences.",
    )


def selected(
    store: MachineStore, which: str | None, environ: Mapping[str, str]
) -> list[LicenceStatus]:
    """The licences /dli and /dlv show: ``all``, one Activation ID, or the primary one."""
    found = client.statuses(store, include_unkeyed=True, environ=environ)
    if which is not None and which.lower() == "all":
        return found
    lic = target(store, which, need_key=False)
    return [st for st in found if st.licence.sku.sku_id == lic.sku.sku_id]


# -- what slmgr reads ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """One licence as slmgr.vbs sees it."""

    status: LicenceStatus
    license_status: int  # slmgr.vbs's LicenseStatus, LS_*
    grace_minutes: int  # GracePeriodRemaining: 0 for a permanent activation
    reason: int | None  # LicenseStatusReason, shown in Notification

    @property
    def grace_days(self) -> int:
        return days_from_minutes(self.grace_minutes)


def read(st: LicenceStatus) -> Reading:
    if st.licence.product_key is None:
        return Reading(st, LS_UNLICENSED, 0, None)
    ls = _LS.get(st.status, LS_UNLICENSED)
    minutes = st.remaining_minutes or 0
    reason = (st.code or E_GRACE_EXPIRED) if ls == LS_NOTIFICATION else None
    return Reading(st, ls, minutes if ls != LS_NOTIFICATION else 0, reason)


@dataclass(frozen=True)
class KmsClientInfo:
    """The 'Key Management Service client information' of a KMS-activated licence."""

    host: str | None  # where the last activation was answered (host:port)
    ip_address: str | None  # that host, when it is an address literal
    epid: str | None  # the host's extended PID, as it signed it


def kms_client_info(lic: Licence) -> KmsClientInfo:
    act: Mapping[str, Any] = lic.activation or {}
    if act.get("kind") != "kms":
        return KmsClientInfo(None, None, None)
    where = str(act.get("host") or "")
    address = None
    try:
        host = parse_host(where, 1688, "KMS host").host
        address = str(ipaddress.ip_address(host))
    except (OsppError, ValueError):
        pass
    response = act.get("response")
    epid = response.get("epid") if isinstance(response, Mapping) else None
    return KmsClientInfo(where or None, address, str(epid) if epid else None)


# -- what slmgr does -----------------------------------------------------------------------------


def activate(store: MachineStore, lic: Licence, environ: Mapping[str, str]) -> dict[str, Any]:
    """/ato on one licence, as /act does it for each: MAK online, GVLK with KMS."""
    from ospp.core.clock import iso

    client.check_operation(store)  # a standard user: 0xC004F025 before anything is tried
    if lic.sku.channel is Channel.KMS_HOST:
        raise LicensingError(
            E_SKU_NOT_FOUND,
            f"{lic.sku.license_name} is a KMS host licence in the client store of {store.name}",
            "A KMS host key belongs to the KMS host: run 'slmgr /ipk KEY' without a computer "
            "name, then 'slmgr /ato'.",
        )
    status = next(
        (st.status for st in client.statuses(store, environ=environ) if st.licence == lic),
        OOB_GRACE,
    )
    try:
        if lic.sku.channel is Channel.MAK:
            from ospp.machine import activation

            activation.activate_mak(store, lic, environ)
            return {}
        from ospp.machine import kmsclient

        outcome = kmsclient.activate(store, lic, environ, status)
    except OsppError as exc:
        if lic.sku.channel is Channel.MAK:  # KMS attempts are recorded by the KMS client
            from ospp.machine.activation import record_failure

            record_failure(store, lic, exc)
        if exc.code == E_NO_KMS and exc.hint is None:
            exc.hint = "Run 'ospp /dhistorykms' to see each attempt."
        raise
    return {
        "kms_host": outcome.host,
        "count": outcome.count,
        "expires_at": iso(outcome.valid_until),
    }


def uninstall(store: MachineStore, lic: Licence) -> None:
    """/upk: remove the key of this licence only (slmgr.vbs would remove the primary key)."""
    client.check_operation(store)
    with store.write() as conn:
        store.clear_key(conn, lic.sku)
        store.bump(conn)


def installation_id(store: MachineStore, lic: Licence) -> str:
    from ospp.machine.activation import installation_id as iid

    return "".join(iid(store, lic).groups())


def deposit_cid(store: MachineStore, lic: Licence, cid: str, environ: Mapping[str, str]) -> None:
    """/atp on one licence, as /actcid does it."""
    from ospp.machine.activation import apply_cid

    client.check_operation(store)
    apply_cid(store, lic, cid, environ)


def set_kms(store: MachineStore, text: str, act_id: str | None) -> None:
    """/skms name[:port], [IPv6]:port or :port. KMS settings are machine-wide here."""
    if act_id is not None:
        _kms_client(store, act_id)
    if text.startswith(":"):
        client.set_kms_port(store, text[1:])
    else:
        client.set_kms_host(store, text)


def clear_kms(store: MachineStore, act_id: str | None) -> None:
    if act_id is not None:
        _kms_client(store, act_id)
    client.remove_kms_host(store)


def set_kms_domain(store: MachineStore, fqdn: str, act_id: str | None) -> None:
    if act_id is not None:
        _kms_client(store, act_id)
    client.set_kms_domain(store, fqdn)


def clear_kms_domain(store: MachineStore, act_id: str | None) -> None:
    if act_id is not None:
        _kms_client(store, act_id)
    client.clear_kms_domain(store)


def set_activation_type(store: MachineStore, value: str, act_id: str | None) -> None:
    if act_id is not None:
        _kms_client(store, act_id)
    client.set_actype(store, value)


def _kms_client(store: MachineStore, act_id: str) -> Licence:
    lic = target(store, act_id, need_key=False)
    if lic.sku.channel is not Channel.KMS_CLIENT:
        raise LicensingError(
            E_SKU_NOT_FOUND,
            f"Activation ID {lic.sku.sku_id} ({lic.sku.license_name}) is not a KMS client licence",
            "KMS settings apply to KMS client licences (VOLUME_KMSCLIENT channel).",
        )
    return lic
