"""Proxy activation (as VAMT does it): many installation IDs in, one CID or error each out."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from ospp.authority.state import Authority
from ospp.core.errors import OsppError
from ospp.core.printable import csv_cell

FIELDS = ["line", "iid", "cid", "error"]


def iid_of(line: str, first: bool) -> str | None:
    """The installation ID a line of the file holds: the whole line, or the last field of a
    CSV line (quoted fields, commas and ``#`` inside them are read as CSV reads them), without
    a ``# comment`` after it. None for a blank line, a comment line (``#`` first) and, when
    ``first`` (no line with an IID came before it), a CSV header: a last field of letters,
    such as ``iid`` or ``Installation ID``. A CSV line whose last field is empty holds the
    empty IID, which fails as one (it is not passed over in silence)."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if "," not in text and '"' not in text:
        return text.split("#")[0].strip()
    fields = next(csv.reader([text]), None) or [""]
    iid = fields[-1].split("#")[0].strip()
    if first and len(fields) > 1 and all(c.isascii() and (c.isalpha() or c in " _-") for c in iid):
        return None  # a header row: column names
    return iid


def confirm_rows(
    authority: Authority, lines: Iterable[str]
) -> Iterator[tuple[dict[str, Any], OsppError | None]]:
    """One row per line holding an installation ID (:func:`iid_of`), confirmed as it is
    read, with the error of a line that could not be."""
    first = True
    for number, line in enumerate(lines, 1):
        iid = iid_of(line, first)
        if iid is None:
            continue
        first = False
        try:
            yield {"line": number, "iid": iid, "cid": authority.confirm(iid), "error": None}, None
        except OsppError as exc:
            yield {"line": number, "iid": iid, "cid": None, "error": exc.to_json()}, exc


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
