"""What slmgr.vbs sets and reads on a KMS host: listening port, intervals, priority, DNS
publishing on or off, and its cumulative request counts in slmgr's categories.

slmgr.vbs changes these only on a KMS machine that is also activated; elsewhere it warns and
changes nothing. ospp refuses the same way, with 0xC004F041, and leaves the host unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ospp.core.clock import Clock
from ospp.core.errors import E_HOST_NOT_ACTIVATED, LicensingError, UsageError
from ospp.kmshost.packs import Pack, choose
from ospp.kmshost.state import KmsHost
from ospp.kmshost.status import PRIORITY_NORMAL

if TYPE_CHECKING:
    from ospp.dns.publish import Publishing

PRIORITY_LOW = "low"

# The request categories slmgr.vbs prints, keyed by the licence status clients report.
REQUEST_CATEGORIES = (
    ("unlicensed", "unlicensed"),
    ("licensed", "licensed"),
    ("oob_grace", "initial_grace"),
    ("oot_grace", "expired_or_out_of_tolerance"),
    ("non_genuine_grace", "non_genuine_grace"),
    ("notifications", "notification"),
)


def keyed_host(home: Path, clock: Clock, last5: str | None = None) -> KmsHost:
    """The host a command on one of its keys acts on. Where it has no store, the refusal a
    host without keys gives (no key is installed), and no store is made."""
    host = KmsHost.stored(home, clock)
    if host is None:
        choose([], last5)  # raises
        raise AssertionError("unreachable: choose refuses an empty list")
    return host


def existing(home: Path, clock: Clock) -> KmsHost | None:
    """The KMS host in ``home`` if a host key is installed there; never creates one."""
    host = KmsHost.stored(home, clock)
    return host if host is not None and host.packs() else None


def kms_machine(home: Path, clock: Clock, setting: str) -> KmsHost:
    """The host whose ``setting`` slmgr changes: key installed and activated, else refused."""
    host = existing(home, clock)
    if host is None:
        raise LicensingError(
            E_HOST_NOT_ACTIVATED,
            f"the {setting} can only be set on a KMS machine that is also activated; no KMS "
            f"host key is installed in {home}",
            "Install and activate a KMS host key first: slmgr /ipk KEY, then slmgr /ato.",
        )
    require_activated(host, setting)
    return host


def host_sku_id(host: KmsHost, act_id: str | None = None) -> str:
    """The Activation ID of the host's licence: its key's KMS host SKU."""
    return host_pack(host, act_id).sku_id


def host_sku_ids(host: KmsHost) -> list[str]:
    """The Activation IDs of every licence pack, newest application group first."""
    return [p.sku_id for p in host.packs()]


def host_pack(host: KmsHost, act_id: str | None = None) -> Pack:
    """The licence pack an slmgr option acts on: the one whose Activation ID is ``act_id``,
    else the first (the newest application group), as slmgr acts on the primary licence."""
    packs = host.packs()
    if not packs:
        host.pack()  # raises: no KMS host key is installed
    if act_id is None or act_id.lower() == "all":
        return packs[0]
    wanted = act_id.strip("{}").lower()
    for pack in packs:
        if pack.sku_id == wanted:
            return pack
    raise UsageError(
        f"no licence pack of this KMS host has the Activation ID {act_id!r}",
        "See them with: slmgr /dli all",
    )


def require_activated(host: KmsHost, setting: str) -> None:
    """Refuse (0xC004F041, nothing changed) unless the host key is installed and activated."""
    packs = host.packs()
    if not any(p.certificate is not None for p in packs):
        state = "is not activated" if packs else "is not installed"
        raise LicensingError(
            E_HOST_NOT_ACTIVATED,
            f"the {setting} can only be set on a KMS machine that is also activated; this "
            f"host's KMS host key {state}",
            "Install and activate a KMS host key first: slmgr /ipk KEY, then slmgr /ato.",
        )


def set_port(host: KmsHost, port: int) -> None:
    require_activated(host, "KMS port")
    host.set_port(port)


def set_intervals(host: KmsHost, activation: int | None, renewal: int | None) -> None:
    require_activated(host, "activation interval" if activation is not None else "renewal interval")
    host.set_intervals(activation, renewal)


def priority(host: KmsHost) -> str:
    return host.meta().get("priority", PRIORITY_NORMAL)


def set_priority(host: KmsHost, low: bool) -> None:
    require_activated(host, "KMS priority")
    host._set(priority=PRIORITY_LOW if low else PRIORITY_NORMAL)


def set_dns_publishing(host: KmsHost, enabled: bool) -> None:
    """/sdns, /cdns: publishing on or off; turning it on needs 'ospp kms dns set' first."""
    require_activated(host, "DNS publishing")

    def change(pub: Publishing) -> None:
        if enabled and not pub.domain:
            raise UsageError(
                "DNS publishing has nothing to publish yet: no domain, host name or DNS server "
                "is configured",
                "Configure it once: ospp kms dns set --server ADDR --domain DOMAIN --hostname NAME",
            )
        pub.enabled = enabled

    host.change_publishing(change)


def uninstall_key(host: KmsHost, act_id: str | None = None) -> Pack:
    """/upk on the host: forget one pack's key, certificate and ePID (the counts stay).

    On a host with several packs the Activation ID must say which (slmgr.vbs would remove
    the primary one; here nothing is removed by default)."""
    packs = host.packs()
    if act_id is None and len(packs) > 1:
        raise UsageError(
            f"this KMS host holds {len(packs)} licence packs; say which key to uninstall",
            "Give its Activation ID: slmgr /upk "
            + " or ".join(p.sku_id for p in packs)
            + " (or: ospp kms uninstall-key XXXXX).",
        )
    return host.uninstall_key(host_pack(host, act_id).last5)


def request_counts(status: Mapping[str, Any]) -> dict[str, int]:
    """Cumulative requests by the licence status clients reported, in slmgr's categories."""
    by_status = status.get("requests_by_status") or {}
    return {name: int(by_status.get(reported, 0)) for reported, name in REQUEST_CATEGORIES}


def current_count(host: KmsHost, status: Mapping[str, Any], act_id: str | None = None) -> int:
    """The count of the host key's application group (slmgr shows one count per licence)."""
    app = host_pack(host, act_id).app
    return int((status.get("current_count") or {}).get(app, 0))
