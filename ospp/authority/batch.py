"""Proxy activation (as VAMT does it): many installation IDs in, one CID or error each out."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

from ospp.authority.state import Authority
from ospp.core.errors import OsppError
from ospp.core.printable import csv_cell

FIELDS = ["line", "iid", "cid", "error"]


def confirm_lines(
    authority: Authority, lines: Iterable[str]
) -> tuple[list[dict[str, Any]], list[OsppError]]:
    """One row per IID line (``#`` starts a comment; a CSV line's last field is the IID), and
    the errors of the lines that could not be confirmed, in order."""
    rows: list[dict[str, Any]] = []
    errors: list[OsppError] = []
    for number, line in enumerate(lines, 1):
        iid = line.split("#")[0].strip().split(",")[-1].strip()
        if not iid:
            continue
        try:
            rows.append({"line": number, "iid": iid, "cid": authority.confirm(iid), "error": None})
        except OsppError as exc:
            errors.append(exc)
            rows.append({"line": number, "iid": iid, "cid": None, "error": exc.to_json()})
    return rows, errors


def render(rows: list[dict[str, Any]], kind: str) -> str:
    """The rows as ``json`` (a failure as the error object of ``--json``) or ``csv`` text
    (a failure as ``0xC004F02C message``; what the requester wrote never starts a formula)."""
    if kind == "json":
        return json.dumps(rows, indent=2) + "\n"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS)
    writer.writeheader()
    for row in rows:
        error = row["error"]
        writer.writerow(
            {
                **row,
                "iid": csv_cell(row["iid"]),  # as the requester wrote it: kept from formulas
                "error": csv_cell(f"{error['code']} {error['message']}") if error else None,
            }
        )
    return buf.getvalue()
