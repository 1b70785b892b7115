"""Printing long lists as they are read, in the same forms :func:`ospp.cli.base.emit` prints,
so that memory does not grow with the number of rows.

:func:`json_report` writes the JSON envelope piece by piece with the same layout as
``json.dumps(payload, indent=2)``, so a streamed report and a collected one print the same
bytes; when the outcome (``"ok"``, which comes first) is known only at the end, the lists go
through a temporary file first. :class:`Held` does the same for text lines that are printed
only if the command fails (``--quiet``) or once a store error can no longer cut them short.
A command that prints this way returns ``Result(printed=True)``: ``emit`` then only sets the
exit status.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO, cast

from ospp.cli.base import SCHEMA_VERSION
from ospp.core.errors import OsppError, UsageError
from ospp.core.printable import printable as safe  # as emit() shows text lines

_ASCII = frozenset({"ascii", "us-ascii", "ansi_x3.4-1968", "646"})


class _Borrowed(io.TextIOWrapper):
    """A text layer over standard output's buffer that leaves the buffer open when it goes."""

    def __del__(self) -> None:
        with contextlib.suppress(ValueError):  # already detached
            self.detach()


_utf8_out: tuple[object, TextIO] | None = None  # (the sys.stdout it wraps, the wrapper)


def _stdout() -> TextIO:
    """Standard output as click.echo writes to it: where the locale claims ASCII (LANG=C,
    PYTHONIOENCODING=ascii), click writes UTF-8 instead, and so must every line printed here
    (Swedish text, names from outside shown as they are)."""
    global _utf8_out
    out = sys.stdout
    buffer = getattr(out, "buffer", None)
    if buffer is None or str(getattr(out, "encoding", "")).lower() not in _ASCII:
        return out
    if _utf8_out is None or _utf8_out[0] is not out:
        out.flush()
        wrapper = _Borrowed(buffer, "utf-8", "replace", write_through=True)
        _utf8_out = (out, wrapper)
    return _utf8_out[1]


def printable(text: str) -> str:
    """A peer's text, safe for a terminal: control characters shown as escapes."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def pad(text: str, width: int) -> str:
    """``text`` padded with spaces to ``width`` terminal columns: a wide character (CJK, a
    full-width letter) takes two, a combining mark none, so columns after it stay aligned."""
    import unicodedata

    used = sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )
    return text + " " * (width - used)


CHUNK = 1000  # rows per write: one write per row costs more than the formatting
SPOOL = 1024 * 1024  # bytes of a streamed JSON list kept in memory before going to a file


_encode = json.JSONEncoder().encode  # the C encoder (json.dumps with indent is pure Python)


def _item(value: Any, depth: int) -> str:
    """``value`` as ``json.dumps(value, indent=2)`` prints it ``depth`` levels deep."""
    if (
        isinstance(value, dict)
        and value
        and not any(isinstance(v, (dict, list, tuple)) and v for v in value.values())
    ):  # a flat row: the C encoder, by far the common case
        pad = "\n" + "  " * (depth + 1)
        fields = ("," + pad).join(f"{_encode(k)}: {_encode(v)}" for k, v in value.items())
        return "{" + pad + fields + "\n" + "  " * depth + "}"
    return json.dumps(value, indent=2).replace("\n", "\n" + "  " * depth)


def _list(out: TextIO, rows: Iterable[Any], depth: int) -> None:
    """A list ``depth`` levels deep in the envelope, written ``CHUNK`` items at a time."""
    parts: list[str] = []
    first = sep = "[\n" + "  " * (depth + 1)
    for row in rows:
        parts.append(sep + _item(row, depth + 1))
        sep = ",\n" + "  " * (depth + 1)
        if len(parts) >= CHUNK:
            out.write("".join(parts))
            parts.clear()
    out.write("".join(parts) + ("[]" if sep == first else "\n" + "  " * depth + "]"))


def _head(ok: bool, command: str) -> str:
    """The envelope's opening, up to where ``data`` follows."""
    head = {"schema": SCHEMA_VERSION, "ok": ok, "command": command}
    return json.dumps(head, indent=2)[:-2]  # drop "\n}"


DATA_DEPTH = 2  # the command's fields sit in "data", two levels deep


def _write(out: TextIO, ok: bool, command: str, body: list[tuple[str, Any]], error: Any) -> None:
    out.write(_head(ok, command) + ',\n  "data": ')
    if not body:
        out.write("{}")
    for n, (key, value) in enumerate(body):
        out.write(("{" if n == 0 else ",") + f"\n    {_encode(key)}: ")
        if isinstance(value, tempfile.SpooledTemporaryFile):  # a list written ahead (first:
            value.seek(0)  # a file is an iterator too)
            shutil.copyfileobj(cast(TextIO, value), out)
        elif isinstance(value, Iterator):
            _list(out, value, DATA_DEPTH)
        else:
            out.write(_item(value, DATA_DEPTH))
    if body:
        out.write("\n  }")
    out.write(',\n  "error": ' + (_item(error, 1) if error is not None else "null") + "\n}\n")


def json_report(
    command: str,
    fields: Iterable[tuple[str, Any]],
    outcome: Callable[[], OsppError | None] | None = None,
) -> None:
    """Print the envelope of :func:`ospp.cli.base.envelope`, ``data`` made of ``fields``,
    exactly as :func:`ospp.cli.base.emit` would, where a field whose value is an iterator (rows
    as they are read) is written item by item, so memory does not grow with the number of rows.

    ``outcome`` (called once every iterator is used up) gives the failure to report, if any.
    As ``"ok"`` comes first but is known only at the end, each iterator is then written to a
    temporary file (kept in memory up to 1 MB) and the document is printed once complete; other
    values are rendered at that point too, so a counter filled while the rows are read may come
    before them. Without ``outcome`` the command succeeded and everything is written at once,
    in order."""
    out = _stdout()
    if outcome is None:
        _write(out, True, command, list(fields), None)
        out.flush()
        return
    with contextlib.ExitStack() as spools:
        body: list[tuple[str, Any]] = []
        for key, value in fields:
            if isinstance(value, Iterator):
                spool = spools.enter_context(
                    tempfile.SpooledTemporaryFile(SPOOL, "w+", encoding="utf-8")
                )
                _list(cast(TextIO, spool), value, DATA_DEPTH)
                value = spool
            body.append((key, value))
        failed = outcome()
        _write(out, failed is None, command, body, None if failed is None else failed.to_json())
    out.flush()


def json_list(command: str, key: str, rows: Iterable[dict[str, Any]]) -> None:
    """The envelope with ``data`` = ``{key: [rows...]}``, indented like the collected form."""
    json_report(command, [(key, iter(rows))])


def csv_rows(
    columns: Sequence[str], rows: Iterable[dict[str, Any]], header: Sequence[str] = ()
) -> None:
    """``columns`` of each row, under ``header`` (the column names when empty)."""
    writer = csv.writer(_stdout(), lineterminator="\n")
    writer.writerow(header or columns)
    for row in rows:
        writer.writerow([row.get(c, "") for c in columns])
    _stdout().flush()


def text_lines(
    rows: Iterable[dict[str, Any]], line: Callable[[dict[str, Any]], str], empty: str
) -> None:
    out = _stdout()
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


class Held:
    """Lines (escaped for a terminal) kept in a temporary file, printed at the end only if
    ``release`` was set (``--quiet`` prints only a failure's report); after :meth:`go`, unless
    ``quiet``, they are printed as they come."""

    def __init__(self, quiet: bool) -> None:
        self.held = True
        self.quiet = quiet
        self.release = False
        self._spool = tempfile.SpooledTemporaryFile(SPOOL, "w+", encoding="utf-8")  # noqa: SIM115
        self._out = cast(TextIO, self._spool)
        self._parts: list[str] = []

    def go(self) -> None:
        """Print what was held and the lines that follow as they come (unless ``quiet``)."""
        if self.quiet or not self.held:
            return
        self._flush()
        self._spool.seek(0)
        shutil.copyfileobj(cast(TextIO, self._spool), _stdout())
        self._spool.seek(0)
        self._spool.truncate()
        self.held, self._out = False, _stdout()

    def __enter__(self) -> Held:
        return self

    def line(self, text: str) -> None:
        self._parts.append(safe(text) + "\n")
        if len(self._parts) >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        self._out.write("".join(self._parts))
        self._parts.clear()

    def __exit__(self, *exc: object) -> None:
        try:
            self._flush()
            if self.held and self.release:
                self._spool.seek(0)
                shutil.copyfileobj(cast(TextIO, self._spool), _stdout())
            _stdout().flush()
        finally:
            self._spool.close()


class Guarded:
    """Rows as they are read, until one cannot be (a damaged record): iterating stops there
    and :attr:`error` keeps the store's error, for the command to report after the rows it
    printed (with --json, as the envelope's error)."""

    def __init__(self, rows: Iterator[dict[str, Any]]) -> None:
        self.rows = rows
        self.error: OsppError | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            yield from self.rows
        except OsppError as exc:
            self.error = exc


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
