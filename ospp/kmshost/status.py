"""What ``ospp kms status`` and ``slmgr /dlv`` show of a KMS host, from its store's settings,
statistics and licence packs; and the current count of each application group, which answers
and the status page share."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Mapping
from typing import Any

from ospp.core.errors import E_INVALID_DATA, StoreError
from ospp.kmshost.packs import Pack, known_groups
from ospp.kmshost.retention import max_clients
from ospp.protocol.kms import (
    CAP,
    DEFAULT_ACTIVATION_INTERVAL,
    DEFAULT_PORT,
    DEFAULT_RENEWAL_INTERVAL,
)

PRIORITY_NORMAL = "normal"  # slmgr /spri; /cpri sets "low"
# What a new host's store starts with (besides its identity).
DEFAULT_SETTINGS = {
    "activation_interval": str(DEFAULT_ACTIVATION_INTERVAL),
    "renewal_interval": str(DEFAULT_RENEWAL_INTERVAL),
}


_ISO = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def last_publish(text: str | None) -> dict[str, str] | None:
    """The setting ``dns_last`` (:func:`last_publish_json`): when the host last published its
    DNS records and the outcome; None if it never did. The one reader of the stored form:
    ValueError, saying what is wrong, for anything else (other fields are ignored)."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError("it is not JSON") from None
    at = data.get("at") if isinstance(data, dict) else None
    result = data.get("result") if isinstance(data, dict) else None
    if not (isinstance(at, str) and _ISO.fullmatch(at) and isinstance(result, str)):
        raise ValueError('it is not {"at": "YYYY-MM-DDTHH:MM:SSZ", "result": TEXT}')
    return {"at": at, "result": result}


def last_publish_json(at: str, result: str) -> str:
    """The setting ``dns_last`` for a publish at ``at`` (ISO 8601, UTC) with ``result``."""
    return json.dumps({"at": at, "result": result})


def empty_status() -> dict[str, Any]:
    """The status of a host that has no store yet: its default settings, nothing counted."""
    return status_of(DEFAULT_SETTINGS, {}, {}, [])


def status_of(
    meta: Mapping[str, str], stats: Mapping[str, int], groups: Mapping[str, int], packs: list[Pack]
) -> dict[str, Any]:
    """What ``kms status`` and slmgr /dlv show of a host: its settings, statistics, current
    counts by application group and licence packs."""
    listed = [p.status(groups.get(p.app, 0)) for p in packs]
    first = listed[0] if listed else {}
    attention = [
        p["attention"] if len(listed) == 1 else f"*****-{p['key_last5']}: {p['attention']}"
        for p in listed
        if p["attention"]
    ]
    return {
        # The first pack (the newest application group); "packs" lists every one.
        "key_last5": first.get("key_last5"),
        "activated": any(p["activated"] for p in listed),
        "certified": first.get("certified"),
        "attention": " ".join(attention) or None,
        "activated_at": first.get("activated_at"),
        "epid": first.get("epid"),
        "packs": listed,
        "current_count": dict(groups),
        "stored_clients": stats.get("clients", 0),
        "max_clients": max_clients(meta),
        "port": int(meta.get("listening_port", meta.get("port", str(DEFAULT_PORT)))),
        "configured_port": int(meta.get("port", DEFAULT_PORT)),
        "priority": meta.get("priority", PRIORITY_NORMAL),
        "dns_publishing": dns_publishing(meta),
        "dns_last_publish": last_publish(meta.get("dns_last")),
        "activation_interval": int(meta["activation_interval"]),
        "renewal_interval": int(meta["renewal_interval"]),
        "requests_total": stats.get("total", 0),
        "requests_failed": stats.get("failed", 0),
        "requests_by_status": {
            k.split(".", 1)[1]: v for k, v in stats.items() if k.startswith("requests.")
        },
    }


def damaged_statistic(path: object, name: object, value: object) -> StoreError:
    """The error for a statistic of the store at ``path`` that is not a whole number."""
    return StoreError(
        E_INVALID_DATA,
        f"the KMS host store {path} has a damaged statistic {repr(name)[:60]}: "
        f"{repr(value)[:60]} (not a whole number)",
        "Restore the file from a backup; it was left as it is.",
    )


def read_stats(conn: sqlite3.Connection, path: object) -> dict[str, int]:
    """The host's statistics (requests by licence status, failures by code, answers per day,
    stored clients); one edited by hand into anything but a whole number is a StoreError
    (0x8007000D), never shown as it is."""
    stats = {}
    for name, value in conn.execute("SELECT name, value FROM stats"):
        if not isinstance(name, str) or type(value) is not int:
            raise damaged_statistic(path, name, value)
        stats[name] = value
    return stats


def dns_publishing(meta: Mapping[str, str]) -> bool:
    """Whether the settings (checked: see HostIdentity.meta) have DNS publishing on."""
    from ospp.dns.publish import Publishing

    return Publishing.from_json(meta.get("dns")).enabled


def current_counts(conn: sqlite3.Connection, since: int, now: int) -> dict[str, int]:
    """Per application group with clients seen from ``since`` to ``now``: how many, at most
    CAP. (Seen after ``now``: the lab clock was moved back past them; they do not count.)

    One short index range per group of the catalog (never a scan of every stored client).
    """
    groups = {}
    for app in known_groups():
        (count,) = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM clients WHERE app=? AND last_seen>=? "
            "AND last_seen<=? LIMIT ?)",
            (app, since, now, CAP),
        ).fetchone()
        if count:
            groups[app] = count
    return groups
