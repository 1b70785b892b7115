"""Why a client does (or does not) find its KMS host through DNS: every step, and a fix for
each failure. ``ospp dnsdiag`` prints what :func:`diagnose` finds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ospp.core.endpoint import Endpoint
from ospp.core.errors import E_NO_KMS, NetworkError, OsppError
from ospp.dns import discovery

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


@dataclass(frozen=True)
class Diagnosis:
    """What discovery found, step by step (``data`` is the --json shape), and the error."""

    data: dict[str, Any]
    error: NetworkError | None


def _ping(record: discovery.SrvRecord, endpoint: Any) -> tuple[dict[str, Any], bool]:
    from ospp.protocol.wire import Connection

    try:
        with Connection(endpoint, "KMS host", 3.0) as conn:
            reply = conn.call({"op": "kms-ping"})
    except OsppError as exc:
        fix = (
            f"Check that 'ospp kms serve' runs on {record.target} and that TCP "
            f"port {endpoint.port} is open."
        )
        failed: dict[str, Any] = {
            "target": record.target,
            "address": str(endpoint),
            "result": exc.message,
            "fix": fix,
        }
        return failed, False
    if not reply.get("ok"):
        result = f"answered, but not as a KMS host: {reply.get('message')}"
    elif not reply.get("activated"):
        result = "answered; its KMS host key is NOT activated (clients get 0xC004F041)"
    else:
        result = f"answered, ePID {reply.get('epid')}"
    entry: dict[str, Any] = {
        "target": record.target,
        "address": str(endpoint),
        "result": result,
        "fix": None,
    }
    return entry, bool(reply.get("ok"))


def diagnose(machine: str, lookup_domain: str | None, environ: Mapping[str, str]) -> Diagnosis:
    """Search as a client would, then ask each host found, in RFC 2782 order."""
    found = discovery.search(lookup_domain, environ)
    res = discovery.resolver(environ)
    data: dict[str, Any] = {
        "machine": machine,
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
        if d.detail == discovery.NO_NAMESERVER:
            entry["fix"] = discovery.NO_NAMESERVER_FIX
        data["domains"].append(entry)
    order = found.ordered()
    data["order"] = [f"{r.target}:{r.port}" for _, r in order]
    answered = None
    pinged = 0  # addresses asked, at most discovery.MAX_HOSTS in all, as a client tries
    asked: set[str] = set()  # the addresses asked (host:port)
    resolving = 0.0  # seconds spent resolving targets: at most ADDRESS_BUDGET, as a client
    for _, record in order:
        if pinged >= discovery.MAX_HOSTS:
            break
        if data["contacted"] and resolving > discovery.ADDRESS_BUDGET:
            data["contacted"].append(
                {
                    "target": record.target,
                    "address": None,
                    "result": "not looked up: a client stops resolving targets after "
                    f"{discovery.ADDRESS_BUDGET:.0f} s and tries the hosts found by then",
                    "fix": "Make the targets' A/AAAA records answer promptly, or list fewer "
                    "SRV records.",
                }
            )
            break
        started = time.monotonic()
        targets = discovery.addresses(res, record.target, record.port)
        resolving += time.monotonic() - started
        by_name = not targets  # a client tries the name itself, through the system's resolver
        if by_name:
            targets = [Endpoint(record.target, record.port)]
        targets = [e for e in targets if str(e) not in asked]  # tried once, as by a client
        for endpoint in targets[: discovery.MAX_HOSTS - pinged]:
            pinged += 1
            asked.add(str(endpoint))
            entry, ok = _ping(record, endpoint)
            if by_name:
                entry["result"] = (
                    "no A/AAAA record; tried by name through the system's resolver, as a "
                    f"client does: {entry['result']}"
                )
                entry["fix"] = None if ok else f"Add an A or AAAA record for {record.target}."
            data["contacted"].append(entry)
            if ok:
                answered = f"{record.target}:{endpoint.port}"
                break
        if answered:
            break
    data["answered"] = answered
    if answered:
        return Diagnosis(data, None)
    error = (
        discovery.failure(found)
        if not order
        else NetworkError(
            E_NO_KMS,
            "records were found but no KMS host answered: tried "
            + "; ".join(
                f"{c['address'] or c['target']} ({c['result']})" for c in data["contacted"]
            ),
            "See the Fix lines above.",
        )
    )
    return Diagnosis(data, error)
