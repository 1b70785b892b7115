"""Licence status in ospp.vbs text form and in JSON form."""

from __future__ import annotations

from typing import Any

from ospp.cli.base import DASHES
from ospp.core.catalog import Channel
from ospp.core.clock import iso
from ospp.core.errors import DESCRIPTIONS, INFORMATIONAL, hex_code
from ospp.machine.settings import KmsSettings
from ospp.machine.status import LICENSED, LicenceStatus

ACTYPE_NAMES = {0: "ALL", 1: "AD", 2: "KMS", 3: "TOKEN"}


def kms_lines(kms: KmsSettings) -> list[str]:
    lines = [f"Activation Type Configuration: {ACTYPE_NAMES[kms.actype]}"]
    if kms.discovered and not kms.host:
        lines.append(f"\tKMS machine name from DNS: {kms.discovered}")
    else:
        lines.append("\tDNS auto-discovery: KMS name not available")
    if kms.host:
        host = f"[{kms.host}]" if ":" in kms.host else kms.host
        lines.append(f"\tKMS machine registry override defined: {host}:{kms.port}")
    lines.append(f"\tActivation Interval: {kms.activation_interval} minutes")
    lines.append(f"\tRenewal Interval: {kms.renewal_interval} minutes")
    lines.append(f"\tKMS host caching: {'Enabled' if kms.caching else 'Disabled'}")
    if kms.lookup_domain:  # ospp.vbs prints it last, after the caching line
        lines.append(f"\tKMS Lookup Domain: {kms.lookup_domain}")
    return lines


def status_lines(st: LicenceStatus, kms: KmsSettings) -> list[str]:
    sku = st.licence.sku
    # A licence without a key has no product ID (ospp.vbs shows none for /dstatusall either).
    lines = [f"PRODUCT ID: {st.product_id}"] if st.licence.product_key else []
    lines += [
        f"SKU ID: {sku.sku_id}",
        f"LICENSE NAME: {sku.license_name}",
        f"LICENSE DESCRIPTION: {sku.license_description}",
        f"LICENSE STATUS:  ---{st.status}---",
    ]
    if st.code is not None:
        suffix = (
            " (for information purposes only as the status is licensed)"
            if st.status == LICENSED
            else ""
        )
        lines.append(f"ERROR CODE: {hex_code(st.code)}{suffix}")
        lines.append(f"ERROR DESCRIPTION: {DESCRIPTIONS.get(st.code, '')}")
    if st.detail and (st.code is None or st.code not in INFORMATIONAL):
        lines.append(f"ERROR DETAIL: {st.detail}")
    if st.remaining_minutes:  # ospp.vbs omits the line when no time remains
        lines.append(
            f"REMAINING GRACE: {st.remaining_days} days  "
            f"({st.remaining_minutes} minute(s) before expiring)"
        )
    if st.licence.last5:
        lines.append(f"Last 5 characters of installed product key: {st.licence.last5}")
    if sku.channel is Channel.KMS_CLIENT and st.licence.product_key:
        lines += kms_lines(kms)
    lines.append(DASHES)
    return lines


def kms_json(kms: KmsSettings) -> dict[str, Any]:
    return {
        "activation_type": ACTYPE_NAMES[kms.actype],
        "host_override": kms.host,
        "port": kms.port,
        "lookup_domain": kms.lookup_domain,
        "discovered_host": kms.discovered,
        "cached_host": kms.cached,
        "activation_interval_minutes": kms.activation_interval,
        "renewal_interval_minutes": kms.renewal_interval,
        "host_caching": kms.caching,
        "host_policy": "online-only" if kms.online_only else "any",
    }


def status_json(st: LicenceStatus, kms: KmsSettings) -> dict[str, Any]:
    lic = st.licence
    sku = lic.sku
    activation = lic.activation or {}
    return {
        "product_key_id": st.product_id,  # the PRODUCT ID line (00339-10000-...)
        "sku_id": sku.sku_id,
        "product_id": sku.product.id,
        "channel": sku.channel.value,
        "license_name": sku.license_name,
        "license_description": sku.license_description,
        "status": st.status,
        "error_code": hex_code(st.code) if st.code is not None else None,
        "error_code_int": st.code,
        "error_description": DESCRIPTIONS.get(st.code) if st.code is not None else None,
        "detail": st.detail,
        "remaining_grace_minutes": st.remaining_minutes,
        "remaining_grace_days": st.remaining_days,
        "expires_at": iso(st.expires_at) if st.expires_at else None,
        "notifications": st.notifications,
        "installed_at": iso(lic.installed_at),
        "grace_started_at": iso(lic.grace_start),
        "key_last5": lic.last5,
        "activated_at": activation.get("activated_at"),
        "activation_type": activation.get("kind"),
        "kms": kms_json(kms) if sku.channel is Channel.KMS_CLIENT and lic.product_key else None,
    }
