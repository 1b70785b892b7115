"""``ospp dnsdiag``: why a client does (or does not) find its KMS host through DNS."""

from __future__ import annotations

import os
from typing import Any

import click

from ospp.cli.base import COMPUTER_ARGUMENT, JSON_OPTION, Result, json_wanted, run

FIXES = {
    "nxdomain": "Publish the record: on the host 'ospp kms dns set ...' (dynamic update), or "
    "add the lines of 'ospp kms dns records' to the zone; or point /skms-domain at the "
    "domain that has it.",
    "no-answer": "The name exists without an SRV record: publish it as for a missing name.",
    "unavailable": 'The record\'s target is ".", which declares "no KMS in this domain": '
    "remove that record, or use /skms-domain for a domain that has a host.",
    "servfail": "The nameserver failed for this name: check that it serves the zone "
    "(OSPP_DNS=ADDR[:PORT] tries another nameserver).",
    "timeout": "The nameserver did not answer: check that it runs and that port 53 (UDP and "
    "TCP) is open, or try another with OSPP_DNS=ADDR[:PORT].",
}


def diagnose(computer: str | None) -> Result:
    from ospp import client, discovery, kms
    from ospp.errors import NetworkError, OsppError
    from ospp.wire import Connection

    store = client.open_machine(computer)
    settings = client.kms_settings(store.settings())
    found = discovery.search(store, os.environ)
    res = discovery.resolver(os.environ)
    lines = [f"DNS servers: {', '.join(found.nameservers) or '(none configured)'}"]
    if settings.host:
        lines.append(
            f"Note: /sethst is set ({settings.host}:{settings.port}); activation uses "
            "it and does not look in DNS. Shown below is what DNS would give."
        )
    names = ", ".join(d.domain for d in found.domains) or "(none)"
    lines.append(f"Domains searched ({found.source}): {names}")
    data: dict[str, Any] = {
        "machine": store.name,
        "nameservers": found.nameservers,
        "source": found.source,
        "domains": [],
        "order": [],
        "contacted": [],
        "answered": None,
    }
    for d in found.domains:
        entry = d.to_json()
        entry["fix"] = FIXES.get(d.outcome) if d.outcome != "found" else None
        data["domains"].append(entry)
        lines.append(
            f"  {discovery.SERVICE}.{d.domain}: "
            + (f"{len(d.records)} record(s)" if d.records else d.detail)
        )
        for r in d.records:
            lines.append(
                f"    priority {r.priority} weight {r.weight} port {r.port} target {r.target}"
            )
        if entry["fix"]:
            lines.append(f"    Fix: {entry['fix']}")
    order = found.ordered()
    data["order"] = [f"{r.target}:{r.port}" for _, r in order]
    if order:
        lines.append("Order chosen (RFC 2782): " + ", ".join(data["order"]))
    answered = None
    for _, record in order:
        targets = discovery.addresses(res, record.target, record.port)
        if not targets:
            fix = f"Add an A or AAAA record for {record.target}."
            data["contacted"].append(
                {"target": record.target, "address": None, "result": "no A/AAAA record", "fix": fix}
            )
            lines += [f"  {record.target}: no A/AAAA record", f"    Fix: {fix}"]
            continue
        for endpoint in targets:
            try:
                with Connection(endpoint, "KMS host", 3.0) as conn:
                    reply = conn.call({"op": "kms-ping"})
            except OsppError as exc:
                fix = (
                    f"Check that 'ospp kms serve' runs on {record.target} and that TCP "
                    f"port {endpoint.port} is open."
                )
                data["contacted"].append(
                    {
                        "target": record.target,
                        "address": str(endpoint),
                        "result": exc.message,
                        "fix": fix,
                    }
                )
                lines += [f"  {endpoint} ({record.target}): {exc.message}", f"    Fix: {fix}"]
                continue
            if not reply.get("ok"):
                result = f"answered, but not as a KMS host: {reply.get('message')}"
            elif not reply.get("activated"):
                result = "answered; its KMS host key is NOT activated (clients get 0xC004F041)"
            else:
                result = f"answered, ePID {reply.get('epid')}"
            data["contacted"].append(
                {"target": record.target, "address": str(endpoint), "result": result, "fix": None}
            )
            lines.append(f"  {endpoint} ({record.target}): {result}")
            if reply.get("ok"):
                answered = f"{record.target}:{endpoint.port}"
                break
        if answered:
            break
    data["answered"] = answered
    if answered:
        lines.append(f"Result: the KMS host {answered} answered; /act would use it.")
        return Result(lines, data, banners=False)
    error: NetworkError = (
        discovery.failure(found)
        if not order
        else NetworkError(
            kms.E_NO_KMS,
            "records were found but no KMS host answered: tried "
            + "; ".join(
                f"{c['address'] or c['target']} ({c['result']})" for c in data["contacted"]
            ),
            "See the Fix lines above.",
        )
    )
    from ospp.cli.base import error_lines

    return Result([*lines, *error_lines(error)], data, banners=False, failed=error)


@click.command("dnsdiag")
@COMPUTER_ARGUMENT
@JSON_OPTION
@click.pass_context
def dnsdiag(ctx: click.Context, computer: str | None, as_json: bool) -> None:
    """Explain KMS discovery: domains searched, SRV records, order, which host answered,
    and a fix for each failure."""
    run("dnsdiag", json_wanted(ctx, as_json), lambda: diagnose(computer))


COMMANDS = [dnsdiag]
