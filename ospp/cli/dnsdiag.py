"""``ospp dnsdiag``: print why a client does (or does not) find its KMS host through DNS."""

from __future__ import annotations

import os
from typing import Any

import click

from ospp.cli.base import COMPUTER_ARGUMENT, JSON_OPTION, Result, error_lines, reports


def _lines(data: dict[str, Any], override: str | None, cached: str | None = None) -> list[str]:
    from ospp.dns.discovery import SERVICE

    lines = [f"DNS servers: {', '.join(data['nameservers']) or '(none configured)'}"]
    if override:
        lines.append(
            f"Note: /sethst is set ({override}); activation uses "
            "it and does not look in DNS. Shown below is what DNS would give."
        )
    elif cached:
        lines.append(
            f"Note: host caching is on and this machine uses {cached}, the host that answered "
            "it last; it looks in DNS again only when that host fails (/cachst:FALSE turns "
            "caching off). Shown below is what DNS would give."
        )
    names = ", ".join(d["domain"] for d in data["domains"]) or "(none)"
    lines.append(f"Domains searched ({data['source']}): {names}")
    for d in data["domains"]:
        lines.append(
            f"  {SERVICE}.{d['domain']}: "
            + (f"{len(d['records'])} record(s)" if d["records"] else d["detail"])
        )
        for r in d["records"]:
            lines.append(
                f"    priority {r['priority']} weight {r['weight']} port {r['port']} "
                f"target {r['target']}"
            )
        if d["fix"]:
            lines.append(f"    Fix: {d['fix']}")
    if data["order"]:
        lines.append("Order chosen (RFC 2782): " + ", ".join(data["order"]))
    for c in data["contacted"]:
        if c["address"] is None:
            lines.append(f"  {c['target']}: {c['result']}")
        else:
            lines.append(f"  {c['address']} ({c['target']}): {c['result']}")
        if c["fix"]:
            lines.append(f"    Fix: {c['fix']}")
    if data["answered"]:
        later = " when it looks in DNS" if cached and not override else ""
        lines.append(f"Result: the KMS host {data['answered']} answered; /act would use it{later}.")
    return lines


def _diagnose(computer: str | None) -> Result:
    from ospp.dns.diagnose import diagnose
    from ospp.machine import client

    store = client.open_machine(computer)
    settings = store.kms()
    found = diagnose(store.name, settings.lookup_domain, os.environ)
    override = f"{settings.host}:{settings.port}" if settings.host else None
    cached = settings.cached if settings.caching else None
    lines = _lines(found.data, override, cached)
    if found.error is None:
        return Result(lines, found.data, banners=False)
    return Result(
        [*lines, *error_lines(found.error)], found.data, banners=False, failed=found.error
    )


@click.command("dnsdiag")
@COMPUTER_ARGUMENT
@JSON_OPTION
@reports
def dnsdiag(computer: str | None) -> Result:
    """Explain KMS discovery: domains searched, SRV records, order, which host answered,
    and a fix for each failure."""
    return _diagnose(computer)


COMMANDS = [dnsdiag]
