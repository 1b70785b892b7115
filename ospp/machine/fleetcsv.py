"""The fleet's CSV file: what ``ospp fleet export`` writes and ``ospp fleet import`` reads.

One row per installed product (machine, product, key, KMS host, KMS lookup domain); a
machine's rows are consecutive. An import checks the whole file before it creates anything,
and undoes what it made when it fails or is interrupted.

A machine of the file whose store exists but holds nothing (no product, no activation
history, every setting at its default), as the ``localhost`` store almost any command makes,
is filled from the file in one transaction of that store, keeping its CMID; one that holds
anything is refused, and nothing is imported.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any, TextIO

from ospp.core.clock import Clock, iso
from ospp.core.errors import OsppError, UsageError
from ospp.core.paths import LOCAL_MACHINE, StrPath, machine_dir, machine_name
from ospp.machine.fleet import Created, Spec, Templates, check_spec, place, stamped, unplace
from ospp.machine.settings import DEFAULTS
from ospp.machine.store import STORE_FILE, MachineStore, NoMachine

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
            from ospp.core.files import not_utf8

            # A UTF-16 byte order mark fails the first bytes decoded: the file's first two.
            head = bytes(exc.object[:2]) if exc.start == 0 else b""
            error = not_utf8(str(path), path, head, exc)
            error.hint = (error.hint or "Use a file written by 'ospp fleet export'.") + (
                " Nothing was imported."
            )
            raise error from exc
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


# The meta rows every store has, which say nothing about what it holds: its identity (kept
# when it is filled) and its count of mutations.
_IDENTITY = ("cmid", "created_at")
_BOOKKEEPING = (*_IDENTITY, "generation")
# The tables of a store, as an import fills them (the template's rows).
_TABLES = ("meta", "licenses", "history")


def holdings(conn: sqlite3.Connection) -> list[str]:
    """What a machine's store holds that an import would lose, in words; [] when nothing:
    no licence, no activation history, every setting at its default."""
    held = []
    products = sorted({r[0] for r in conn.execute("SELECT product_id FROM licenses")})
    if products:
        held.append("product(s) " + ", ".join(products))
    (events,) = conn.execute("SELECT count(*) FROM history").fetchone()
    if events:
        held.append(f"{events} activation event(s)")
    changed = sorted(
        name
        for name, value in conn.execute("SELECT name, value FROM meta")
        if name not in _BOOKKEEPING and DEFAULTS.get(name) != value
    )
    if changed:
        held.append("setting(s) " + ", ".join(changed))
    return held


def _refused(path: Path, line: int, name: str, held: list[str]) -> UsageError:
    if name.lower() == LOCAL_MACHINE:  # this machine: fleet remove keeps it
        return UsageError(
            f"{path} line {line}: {name}, this machine, exists and holds {'; '.join(held)}: "
            "an import fills only a machine that holds nothing",
            f"Nothing was imported. Import the file without its {name} rows (e.g. grep -vi "
            f"'^{name},' {'FILE' if str(path) == '-' else _quoted(path)} | ospp fleet import -).",
        )
    return UsageError(
        f"{path} line {line}: machine {name} already exists and holds {'; '.join(held)}",
        "Nothing was imported; remove it first ('ospp fleet remove') or leave it out.",
    )


def _quoted(path: Path) -> str:
    """A path as a shell command takes it (quoted when it has spaces or the like)."""
    import shlex

    return shlex.quote(str(path))


def check_import(home: StrPath, path: Path, text: str | None, clock: Clock) -> int:
    """Validate a whole file first: every row, no machine twice, none that exists already
    and holds anything (:func:`holdings`)."""
    seen: set[str] = set()
    for line, name, _ in read_csv(path, text):
        if name in seen:
            raise UsageError(
                f"{path} line {line}: machine {name} appears twice",
                "Nothing was imported; a machine's rows must be consecutive.",
            )
        if (Path(machine_dir(home, name)) / STORE_FILE).exists():
            held = _held(home, name, clock)
            if held:
                raise _refused(path, line, name, held)
        seen.add(name)
    return len(seen)


def _held(home: StrPath, name: str, clock: Clock) -> list[str]:
    """What the existing store of ``name`` holds ([] when removed meanwhile: then it is
    created as any other); a store that cannot be read raises its error."""
    try:
        store = MachineStore.open(home, name, clock)
    except NoMachine:
        return []
    try:
        with store.db.read() as conn:
            store.settings(conn)  # a damaged setting is a damaged store (exit 3), not a holding
            return holdings(conn)
    finally:
        store.db.close()


def _rows_of(data: bytes) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    """The columns and rows of each table of a template store (:class:`Templates`)."""
    mem = sqlite3.connect(":memory:")
    try:
        mem.deserialize(data)
        found = {}
        for table in _TABLES:
            cur = mem.execute(f"SELECT * FROM {table}")
            found[table] = ([d[0] for d in cur.description], cur.fetchall())
        return found
    finally:
        mem.close()


Filled = tuple[str, list[tuple[str, str]], int]  # a machine, its meta rows before, generation


def _fill(
    home: StrPath, path: Path, line: int, name: str, data: bytes, clock: Clock, filled: list[Filled]
) -> bool:
    """Fill the existing, empty store of ``name`` with the rows of the template ``data``, in
    one of its write transactions, keeping its CMID and creation time; its meta rows as they
    were and the generation it gets are added to ``filled`` before the transaction commits
    (to put back if the import is undone). False when the store is gone (removed meanwhile:
    it is then placed as a new one). Raises when it holds anything by now."""
    rows = _rows_of(data)
    try:
        store = MachineStore.open(home, name, clock)
    except NoMachine:
        return False
    try:
        with store.write() as conn:
            held = holdings(conn)
            if held:  # changed since the file was checked
                raise _refused(path, line, name, held)
            before = conn.execute("SELECT name, value FROM meta").fetchall()
            kept = {n: v for n, v in before if n in _IDENTITY}
            generation = 1 + max(
                (int(v) for n, v in [*before, *rows["meta"][1]] if n == "generation"), default=0
            )
            for table in _TABLES:
                columns, values = rows[table]
                if table == "meta":
                    values = [(n, v) for n, v in values if n not in (*kept, "generation")]
                    values += [*kept.items(), ("generation", str(generation))]
                conn.execute(f"DELETE FROM {table}")
                marks = ", ".join("?" * len(columns))
                conn.executemany(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                    values,
                )
            filled.append((name, [(str(n), str(v)) for n, v in before], generation))
        return True
    finally:
        store.db.close()


def _empty_again(home: StrPath, filled: Filled, clock: Clock) -> None:
    """Undo :func:`_fill`: the store as it was, unless another command changed it since (or
    the fill did not commit)."""
    name, before, generation = filled
    try:
        store = MachineStore.open(home, name, clock)
    except OsppError:
        return
    try:
        with store.write() as conn:
            row = conn.execute("SELECT value FROM meta WHERE name='generation'").fetchone()
            if row is None or row[0] != str(generation):
                return  # written since: what was built on the import stays
            for table in _TABLES:
                conn.execute(f"DELETE FROM {table}")
            conn.executemany("INSERT INTO meta VALUES (?, ?)", before)
    except OsppError:
        return
    finally:
        store.db.close()


def import_rows(
    home: StrPath, path: Path, clock: Clock, templates: Templates, text: str | None = None
) -> Generator[Created, None, None]:
    """Create the machines of a checked file; if one appeared meanwhile, or the import is
    interrupted (Ctrl+C), undo them all. The empty stores it fills come last, so that an
    import that fails before them leaves them untouched."""
    made: list[str] = []
    filled: list[Filled] = []
    empty: list[tuple[int, str, Spec]] = []  # existing stores that hold nothing
    created_at = iso(clock.now())
    try:
        for line, name, spec in read_csv(path, text):
            made.append(name)  # before it exists: an interrupt may come as it is written
            if not place(home, name, stamped(templates.get(spec), created_at)):
                made.pop()  # an existing store: filled at the end, if it holds nothing
                if _held(home, name, clock):
                    raise UsageError(
                        f"{path} line {line}: machine {name} was created by someone else meanwhile",
                        "Nothing was imported.",
                    )
                empty.append((line, name, spec))
                continue
            yield Created(name, "created")
        for line, name, spec in empty:
            if not _fill(home, path, line, name, templates.get(spec), clock, filled):  # gone
                made.append(name)
                if not place(home, name, stamped(templates.get(spec), created_at)):
                    made.pop()
                    raise UsageError(
                        f"{path} line {line}: machine {name} was created by someone else meanwhile",
                        "Nothing was imported.",
                    )
            yield Created(name, "created")
    except BaseException:  # the error above, an interrupt, the caller closing this early
        for undo in made:
            unplace(home, undo)
        for was in filled:
            _empty_again(home, was, clock)
        raise
