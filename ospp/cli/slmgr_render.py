"""slmgr.vbs's text: /dli and /dlv licence blocks, the KMS client and KMS host blocks, /xpr,
and its 'Error: 0x...' lines. docs/SLMGR.md shows each format next to what slmgr.vbs prints.

Values that came from outside (a KMS host's name from DNS, the ePID a host signed) are
escaped before they reach the terminal.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ospp.core.catalog import Channel
from ospp.core.clock import iso
from ospp.core.errors import DESCRIPTIONS, E_GRACE_EXPIRED, OsppError, hex_code
from ospp.core.printable import escaped
from ospp.machine.settings import KmsSettings
from ospp.machine.slmgr import (
    LS_LICENSED,
    LS_NOTIFICATION,
    LS_OOB_GRACE,
    LS_OOT_GRACE,
    LS_UNLICENSED,
    KmsClientInfo,
    Reading,
    days_from_minutes,
)

INDENT = "    "
STATUS_TEXT = {
    0: "Unlicensed",
    1: "Licensed",
    2: "Initial grace period",
    3: "Additional grace period (KMS license expired or hardware out of tolerance)",
    4: "Non-genuine grace period.",
    5: "Notification",
    6: "Extended grace period",
}
ACTIVATION_TYPE = {0: "All", 1: "AD", 2: "KMS", 3: "Token"}
KEY_CHANNEL = {
    Channel.KMS_CLIENT: "Volume:GVLK",
    Channel.MAK: "Volume:MAK",
    Channel.KMS_HOST: "Volume:CSVLK",
}
PLEASE_ACTIVATE = (
    "Please use slmgr.vbs /ato to activate and update KMS client information in order to "
    "update values."
)
REQUEST_LINES = (
    ("unlicensed", "Requests with License Status Unlicensed: "),
    ("licensed", "Requests with License Status Licensed: "),
    ("initial_grace", "Requests with License Status Initial grace period: "),
    (
        "expired_or_out_of_tolerance",
        "Requests with License Status License expired or Hardware out of tolerance: ",
    ),
    ("non_genuine_grace", "Requests with License Status Non-genuine grace period: "),
    ("notification", "Requests with License Status Notification: "),
)


def shown(text: str) -> str:
    """Escape what could drive a terminal (control characters, escapes) in outside text."""
    return escaped(text)


def us_date(value: datetime) -> str:
    """A date as slmgr.vbs prints it on an en-US system: 5/27/2027 1:06:00 PM (here UTC)."""
    hour = value.hour % 12 or 12
    half = "AM" if value.hour < 12 else "PM"
    return (
        f"{value.month}/{value.day}/{value.year} {hour}:{value.minute:02d}:{value.second:02d} "
        f"{half}"
    )


def minutes_days(minutes: int) -> str:
    return f"{minutes} minute(s) ({days_from_minutes(minutes)} day(s))"


def error_lines(exc: OsppError) -> list[str]:
    """'Error: 0xCODE TEXT' as slmgr.vbs prints it, then what ospp found and its hint."""
    text = DESCRIPTIONS.get(exc.code) or exc.message
    lines = [f"Error: {hex_code(exc.code)} {text}"]
    if text != exc.message:
        lines.append(f"Detail: {exc.message}")
    if exc.hint:
        lines.append(f"Hint: {exc.hint}")
    return [shown(line) for line in lines]  # a message may quote a peer's answer


# -- /dli, /dlv: a licence of a simulated machine --------------------------------------------


def status_lines(reading: Reading) -> list[str]:
    """The 'License Status:' line and the one after it."""
    ls = reading.license_status
    lines = [f"License Status: {STATUS_TEXT[ls]}"]
    if ls == LS_LICENSED and reading.grace_minutes:
        lines.append(f"Volume activation expiration: {minutes_days(reading.grace_minutes)}")
    elif ls in (LS_OOB_GRACE, LS_OOT_GRACE):
        lines.append(f"Time remaining: {minutes_days(reading.grace_minutes)}")
    elif ls == LS_NOTIFICATION:
        reason = reading.reason or E_GRACE_EXPIRED
        why = " (grace time expired)" if reason == E_GRACE_EXPIRED else ""
        lines.append(f"Notification Reason: {hex_code(reason)}{why}.")
    return lines


def licence_lines(
    reading: Reading,
    kms: KmsSettings,
    cmid: str,
    info: KmsClientInfo,
    verbose: dict[str, Any] | None,
) -> list[str]:
    """One licence as /dli (``verbose`` None) or /dlv prints it, blank line first."""
    lic = reading.status.licence
    sku = lic.sku
    lines = ["", f"Name: {sku.license_name}", f"Description: {sku.license_description}"]
    if verbose is not None:
        lines += [
            f"Activation ID: {sku.sku_id}",
            f"Application ID: {sku.product.application_id}",
            f"Extended PID: {reading.status.product_id}",
            f"Product Key Channel: {KEY_CHANNEL[sku.channel]}",
        ]
        if verbose.get("installation_id"):
            lines.append(f"Installation ID: {verbose['installation_id']}")
    if lic.last5:
        lines.append(f"Partial Product Key: {lic.last5}")
    else:
        lines.append("This license is not in use.")
    lines += status_lines(reading)
    if verbose is not None:
        lines += rearm_lines(verbose)
    if sku.channel is Channel.KMS_CLIENT:
        lines.append(f"Configured Activation Type: {ACTIVATION_TYPE[kms.actype]}")
        if reading.license_status != LS_LICENSED:
            lines.append(PLEASE_ACTIVATE)
        else:
            lines += kms_client_lines(kms, cmid, info)
    return lines


def rearm_lines(verbose: dict[str, Any]) -> list[str]:
    """What /dlv prints after any licence's status (an Office licence's application, not
    Windows: 'Remaining App rearm count', as slmgr.vbs words it)."""
    return [
        f"Remaining App rearm count: {verbose['rearms_left']}",
        f"Remaining SKU rearm count: {verbose['rearms_left']}",
        f"Trusted time: {us_date(verbose['now'])}",
    ]


def kms_client_lines(kms: KmsSettings, cmid: str, info: KmsClientInfo) -> list[str]:
    lines = [
        "",
        "Most recent activation information:",
        "Key Management Service client information",
        f"{INDENT}Client Machine ID (CMID): {cmid}",
    ]
    if kms.lookup_domain:
        lines.append(f"{INDENT}Registered KMS SRV record lookup domain: {kms.lookup_domain}")
    fixed = None
    if kms.host:
        host = f"[{kms.host}]" if ":" in kms.host else kms.host
        fixed = f"{host}:{kms.port}"
        lines.append(f"{INDENT}Registered KMS machine name: {fixed}")
    elif kms.discovered:
        lines.append(f"{INDENT}KMS machine name from DNS: {shown(kms.discovered)}")
    else:
        lines.append(f"{INDENT}DNS auto-discovery: KMS name not available")
    if info.ip_address:
        lines.append(f"{INDENT}KMS machine IP address: {info.ip_address}")
    else:
        lines.append(f"{INDENT}KMS machine IP address: not available")
    lines += [
        f"{INDENT}KMS machine extended PID: {shown(info.epid or '')}",
        f"{INDENT}Activation interval: {kms.activation_interval} minutes",
        f"{INDENT}Renewal interval: {kms.renewal_interval} minutes",
        f"{INDENT}KMS host caching is {'enabled' if kms.caching else 'disabled'}",
    ]
    if kms.lookup_domain and fixed:
        lines += [
            "",
            f"Warning: /skms setting overrides the /skms-domain setting. {fixed} will be used "
            "for activation.",
        ]
    return lines


def reading_json(
    reading: Reading, kms: KmsSettings, cmid: str, info: KmsClientInfo
) -> dict[str, Any]:
    st = reading.status
    lic = st.licence
    kms_client = None
    if lic.sku.channel is Channel.KMS_CLIENT and reading.license_status == LS_LICENSED:
        kms_client = {
            "cmid": cmid,
            "registered_kms_machine": kms.host,
            "registered_kms_port": kms.port,
            "kms_lookup_domain": kms.lookup_domain,
            "kms_machine_from_dns": kms.discovered,
            "kms_machine_ip_address": info.ip_address,
            "kms_machine_extended_pid": info.epid,
            "activation_interval_minutes": kms.activation_interval,
            "renewal_interval_minutes": kms.renewal_interval,
            "host_caching": kms.caching,
        }
    return {
        "activation_id": lic.sku.sku_id,
        "product_id": lic.sku.product.id,
        "name": lic.sku.license_name,
        "description": lic.sku.license_description,
        "partial_product_key": lic.last5,
        "license_status": reading.license_status,
        "license_status_text": STATUS_TEXT[reading.license_status],
        "status": st.status,
        "grace_minutes": reading.grace_minutes,
        "grace_days": reading.grace_days,
        "expires_at": iso(st.expires_at) if st.expires_at and reading.grace_minutes else None,
        "notification_reason": hex_code(reading.reason) if reading.reason else None,
        "kms_client": kms_client,
    }


# -- /dli, /dlv: the KMS host --------------------------------------------------------------------


def host_lines(view: dict[str, Any], verbose: dict[str, Any] | None) -> list[str]:
    """The host's own licence and the 'Key Management Service is enabled' block, as /dli
    (``verbose`` None) or /dlv (``verbose``: the rearm count and the time) prints them."""
    lines = ["", f"Name: {view['name']}", f"Description: {view['description']}"]
    if verbose is not None:
        lines += [
            f"Activation ID: {view['activation_id']}",
            f"Application ID: {view['application_id']}",
            f"Extended PID: {shown(view['epid'] or '')}",
            f"Product Key Channel: {KEY_CHANNEL[Channel.KMS_HOST]}",
        ]
        if view.get("installation_id"):
            lines.append(f"Installation ID: {view['installation_id']}")
    lines.append(f"Partial Product Key: {view['partial_product_key']}")
    ls = LS_LICENSED if view["activated"] else LS_UNLICENSED
    lines.append(f"License Status: {STATUS_TEXT[ls]}")
    if verbose is not None:
        lines += rearm_lines(verbose)
    if not view["activated"]:
        return lines
    lines += [
        "",
        "Key Management Service is enabled on this machine",
        f"{INDENT}Current count: {view['current_count']}",
        f"{INDENT}Listening on Port: {view['port']}",
        f"{INDENT}DNS publishing {'enabled' if view['dns_publishing'] else 'disabled'}",
        f"{INDENT}KMS priority: {view['priority'].capitalize()}",
        f"{INDENT}Activation interval: {view['activation_interval_minutes']} minutes",
        f"{INDENT}Renewal interval: {view['renewal_interval_minutes']} minutes",
        "",
        "Key Management Service cumulative requests received from clients",
        f"{INDENT}Total requests received: {view['requests_total']}",
        f"{INDENT}Failed requests received: {view['requests_failed']}",
    ]
    for name, label in REQUEST_LINES:
        lines.append(f"{INDENT}{label}{view['requests'][name]}")
    return lines


# -- /xpr ------------------------------------------------------------------------------------------


def expiration_line(reading: Reading) -> str:
    """What /xpr says about one licence (the line under its name)."""
    ls = reading.license_status
    ends = reading.status.expires_at
    when = us_date(ends) if ends else ""
    if ls == LS_LICENSED:
        if reading.grace_minutes:
            return f"Volume activation will expire {when}"
        return "The machine is permanently activated."
    if ls == LS_OOB_GRACE:
        return f"Initial grace period ends {when}"
    if ls == LS_OOT_GRACE:
        return f"Additional grace period ends {when}"
    if ls == LS_NOTIFICATION:
        return "Windows is in Notification mode"
    return "Unlicensed"
