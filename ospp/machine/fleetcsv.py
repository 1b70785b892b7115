"""The fleet's CSV file: what ``ospp fleet export`` writes and ``ospp fleet import`` reads.

One row per installed product (machine, product, key, KMS host, KMS lookup domain); a
machine's rows are consecutive. An import checks the whole file before it creates anything,
and undoes what it made when it fails or is interrupted.
"""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TextIO

from ospp.core.clock import Clock, iso
from ospp.core.errors import OsppError, UsageError
from ospp.core.paths import StrPath, machine_dir, machine_name
from ospp.machine.fleet import Created, Spec, Templates, check_spec, place, stamped
from ospp.machine.store import STORE_FILE

CSV_FIELDS = ("machine", "product", "key", "kms_host", "kms_domain")
# Files written before the KMS lookup domain was exported have the first four columns only.
_OLD_FIELDS = CSV_FIELDS[:4]
# The longest line read, in characters: a row ospp writes is under 200, and a line is read
# whole, so a file with no line ends (/dev/zero) is refused instead of filling memory.
MAX_LINE = 64 * 1024


def _lines(f: TextIO, path: Path) -> Iterator[str]:
    """The lines of ``f``, each at most MAX_LINE characters, else UsageError naming it."""
    number = 0
    while line := f.readline(MAX_LINE + 1):
        number += 1
        if len(line) > MAX_LINE:
            raise UsageError(
                f"{path} line {number}: longer than {MAX_LINE} characters",
                "Use a file written by 'ospp fleet export'; nothing was imported.",
            )
        yield line


def _rows(path: Path, text: str | None = None) -> Iterator[tuple[int, list[str], int]]:
    """The non-empty rows of an export file (``text``: its content, already read from
    standard input), after checking its header, each with the number of fields the header
    names (a row must have as many)."""
    f: TextIO
    if text is not None:
        f = io.StringIO(text.removeprefix("\ufeff"), newline="")
    else:
        try:  # utf-8-sig: a byte order mark, as Excel writes one, is not part of the header
            f = path.open(newline="", encoding="utf-8-sig")
        except OSError as exc:
            raise UsageError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    with f:
        rows = csv.reader(_lines(f, path))
        try:
            header = next(rows, None)
            given = [h.strip().lower() for h in header or []]
            if given not in (list(CSV_FIELDS), list(_OLD_FIELDS)):
                raise UsageError(
                    f"{path} line 1: expected the header {','.join(CSV_FIELDS)}",
                    "Use a file written by 'ospp fleet export'.",
                )
            for row in rows:
                if any(cell.strip() for cell in row):
                    yield rows.line_num, row, len(given)
        except UnicodeDecodeError as exc:
            raise UsageError(
                f"{path} is not UTF-8 text: {exc.reason}",
                "Use a file written by 'ospp fleet export'; nothing was imported.",
            ) from exc
        except csv.Error as exc:  # a field over csv's limit (128 KiB), a NUL byte
            raise UsageError(
                f"{path} line {rows.line_num}: {exc}",
                "Use a file written by 'ospp fleet export'; nothing was imported.",
            ) from exc


def read_csv(path: Path, text: str | None = None) -> Iterator[tuple[int, str, Spec]]:
    """Machines of an export file as (first line, machine, spec): a machine's rows are
    consecutive (one per product). The first bad row raises, naming its line."""
    current: tuple[int, str, Spec] | None = None
    for line, row, width in _rows(path, text):
        try:
            if len(row) != width:  # as many as the header names (4 in files before kms_domain)
                raise UsageError(f"expected {width} fields, found {len(row)}")
            if not row[0].strip():
                raise UsageError("the machine name is empty")
            name = machine_name(row[0])
            product = (row[1].strip(), row[2].strip() or None)
            host = row[3].strip() or None
            domain = (row[4].strip() or None) if len(row) == 5 else None
            if current is not None and current[1] == name:
                spec = current[2]
                if host != spec.kms_host:
                    raise UsageError(f"machine {name} has two KMS hosts")
                if domain != spec.kms_domain:
                    raise UsageError(f"machine {name} has two KMS lookup domains")
                spec = Spec((*spec.products, product), spec.kms_host, spec.kms_domain)
                check_spec(spec)
                current = (current[0], name, spec)
                continue
            spec = Spec((product,), host, domain)
            check_spec(spec)
        except OsppError as exc:
            raise UsageError(
                f"{path} line {line}: {exc.message}",
                "Nothing was imported; fix the row and import again.",
            ) from exc
        if current is not None:
            yield current
        current = (line, name, spec)
    if current is not None:
        yield current


def check_import(home: StrPath, path: Path, text: str | None = None) -> int:
    """Validate a whole file first: every row, no machine twice, none that exists already."""
    seen: set[str] = set()
    for line, name, _ in read_csv(path, text):
        if name in seen:
            raise UsageError(
                f"{path} line {line}: machine {name} appears twice",
                "Nothing was imported; a machine's rows must be consecutive.",
            )
        if (Path(machine_dir(home, name)) / STORE_FILE).exists():
            raise UsageError(
                f"{path} line {line}: machine {name} already exists",
                "Nothing was imported; remove it first ('ospp fleet remove') or leave it out.",
            )
        seen.add(name)
    return len(seen)


def import_rows(
    home: StrPath, path: Path, clock: Clock, templates: Templates, text: str | None = None
) -> Generator[Created, None, None]:
    """Create the machines of a checked file; if one appeared meanwhile, or the import is
    interrupted (Ctrl+C), undo them all."""
    made: list[str] = []
    created_at = iso(clock.now())
    try:
        for line, name, spec in read_csv(path, text):
            made.append(name)  # before it exists: an interrupt may come as it is written
            if not place(home, name, stamped(templates.get(spec), created_at)):
                made.pop()  # someone else's
                raise UsageError(
                    f"{path} line {line}: machine {name} was created by someone else meanwhile",
                    "Nothing was imported.",
                )
            yield Created(name, "created")
    except BaseException:  # the error above, an interrupt, the caller closing this early
        for undo in made:
            shutil.rmtree(machine_dir(home, undo), ignore_errors=True)
        raise
