"""What slmgr.vbs sets and reads on a KMS host: listening port, intervals, priority, DNS
publishing on or off, and its cumulative request counts in slmgr's categories.

slmgr.vbs changes these only on a KMS machine that is also activated; elsewhere it warns and
changes nothing. ospp refuses the same way, with 0xC004F041, and leaves the host unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ospp.core.clock import Clock
from ospp.core.errors import E_HOST_NOT_ACTIVATED, LicensingError, UsageError
from ospp.kmshost.state import KmsHost

PRIORITY_NORMAL = "normal"
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


def existing(home: Path, clock: Clock) -> KmsHost | None:
    """The KMS host in ``home`` if a host key is installed there; never creates one."""
    if not (home / "kms.db").exists():
        return None
    host = KmsHost.open(home, clock)
    return host if host.meta().get("key") else None


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


def host_sku_id(host: KmsHost) -> str:
    """The Activation ID of the host's licence: its key's KMS host SKU."""
    key = host.installed_key()
    return str(key.product.sku(key.channel).sku_id)


def require_activated(host: KmsHost, setting: str) -> None:
    """Refuse (0xC004F041, nothing changed) unless the host key is installed and activated."""
    meta = host.meta()
    if not meta.get("certificate"):
        state = "is not activated" if meta.get("key") else "is not installed"
        raise LicensingError(
            E_HOST_NOT_ACTIVATED,
            f"the {setting} can only be set on a KMS machine that is also activated; this "
            f"host's KMS host key {state}",
            "Install and activate a KMS host key first: slmgr /ipk KEY, then slmgr /ato.",
        )


def set_port(host: KmsHost, port: int) -> None:
    require_activated(host, "KMS port")
    host.record_port(port)


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
    pub = host.publishing()
    if enabled and not pub.domain:
        raise UsageError(
            "DNS publishing has nothing to publish yet: no domain, host name or DNS server is "
            "configured",
            "Configure it once: ospp kms dns set --server ADDR --domain DOMAIN --hostname NAME",
        )
    pub.enabled = enabled
    host.set_publishing(pub)


def uninstall_key(host: KmsHost) -> None:
    """/upk on the host: forget its key, certificate and ePID (its counts stay)."""
    host._set(key=None, certificate=None, epid=None, activated_at=None)


def request_counts(status: Mapping[str, Any]) -> dict[str, int]:
    """Cumulative requests by the licence status clients reported, in slmgr's categories."""
    by_status = status.get("requests_by_status") or {}
    return {name: int(by_status.get(reported, 0)) for reported, name in REQUEST_CATEGORIES}


def current_count(host: KmsHost, status: Mapping[str, Any]) -> int:
    """The count of the host key's application group (slmgr shows one count per licence)."""
    app = host.installed_key().product.application_id
    return int((status.get("current_count") or {}).get(app, 0))
