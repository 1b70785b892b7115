"""Printing long lists as they are read, in the same forms :func:`ospp.cli.base.emit` prints.

The JSON envelope is written piece by piece with the same layout as ``json.dumps(payload,
indent=2)``, so a streamed list and a collected one print the same bytes.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ospp.cli.base import envelope
from ospp.core.errors import UsageError


def printable(text: str) -> str:
    """A peer's text, safe for a terminal: control characters shown as escapes."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


CHUNK = 1000  # rows per write: one write per row costs more than the formatting


_encode = json.JSONEncoder().encode  # the C encoder (json.dumps with indent is pure Python)


def _indented(row: dict[str, Any]) -> str:
    """``json.dumps(row, indent=2)`` as an item of a list in ``data`` of the envelope."""
    if not row:
        return "{}"
    fields = ",\n        ".join(f"{_encode(k)}: {_encode(v)}" for k, v in row.items())
    return "{\n        " + fields + "\n      }"


_HOLE = "\x00rows\x00"  # json.dumps escapes it: no command name or key can contain it


def json_list(command: str, key: str, rows: Iterable[dict[str, Any]]) -> None:
    """The envelope of :func:`ospp.cli.base.envelope` with ``data`` = ``{key: [rows...]}``,
    printed as the rows are read, with the bytes ``json.dumps(envelope, indent=2)`` prints."""
    whole = json.dumps(envelope(command, {key: _HOLE}, None), indent=2)
    head, tail = whole.split(json.dumps(_HOLE))
    out = sys.stdout
    out.write(head + "[")
    parts: list[str] = []
    sep = "\n      "
    for row in rows:
        parts.append(sep + _indented(row))
        sep = ",\n      "
        if len(parts) >= CHUNK:
            out.write("".join(parts))
            parts.clear()
    out.write("".join(parts))
    out.write("]" if sep == "\n      " else "\n    ]")
    out.write(tail + "\n")
    out.flush()


def csv_rows(
    columns: Sequence[str], rows: Iterable[dict[str, Any]], header: Sequence[str] = ()
) -> None:
    """``columns`` of each row, under ``header`` (the column names when empty)."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(header or columns)
    for row in rows:
        writer.writerow([row.get(c, "") for c in columns])
    sys.stdout.flush()


def text_lines(
    rows: Iterable[dict[str, Any]], line: Callable[[dict[str, Any]], str], empty: str
) -> None:
    out = sys.stdout
    parts: list[str] = []
    printed = False
    for row in rows:
        parts.append(line(row) + "\n")
        printed = True
        if len(parts) >= CHUNK:
            out.write("".join(parts))
            parts.clear()
    out.write("".join(parts) if printed else empty + "\n")
    out.flush()


def started(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Run the query now (so a store error is reported before anything is printed)."""
    first = next(rows, None)
    if first is None:
        return iter(())

    def chain() -> Iterator[dict[str, Any]]:
        yield first
        yield from rows

    return chain()


def read_input(path: Path, what: str = "file") -> tuple[str, str]:
    """(text, name) of a file argument; ``-`` reads standard input."""
    if str(path) == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except (OSError, UnicodeDecodeError) as exc:
        detail = getattr(exc, "strerror", None) or str(exc)
        raise UsageError(f"cannot read the {what} {path}: {detail}") from exc
