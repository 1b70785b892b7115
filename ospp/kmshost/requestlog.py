"""The KMS host's request log: one JSON line per request, written in batches a few times a
second, to a file (reopened by name after logrotate), to stderr, or nowhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring_ascii as _js
from pathlib import Path
from typing import Any, TextIO

from ospp.core.errors import StoreError, UsageError, os_error_code
from ospp.protocol import serving

log = logging.getLogger("ospp.kms")


class RequestLog:
    """One JSON line per request, written in batches a few times a second.

    Writing every line as it happens cost a quarter of the host's throughput; the state that
    matters (counts, activations) is committed to SQLite before any answer is sent. A batch
    that cannot be written (a full disk) is dropped and counted in :attr:`lost`: the host goes
    on serving, and says so once in the operational log, and again once writes work again.
    """

    PERIOD = 0.2

    def __init__(self, stream: TextIO | None, dropped: Callable[[int], None] | None = None) -> None:
        """``dropped(n)`` is told of each batch of ``n`` lines that could not be written."""
        from ospp.core.logs import Once

        self.stream = stream
        self.dropped = dropped
        self.lines: list[str] = []
        self.scheduled = False
        self.lost = 0  # lines dropped because the log could not be written
        self.lost_lately = 0  # of them, since writes last worked
        self.once = Once(log)

    def add(
        self, now: str, message: Mapping[str, Any], answer: serving.Reply, seconds: float
    ) -> None:
        """Add one request's line: the text ``json.dumps`` gives for ``{"ts": now, "op":
        "kms-activate", "cmid": ..., "sku_id": ..., "ok": ..., "code": ..., "ms": ...}``,
        formatted directly (cmid and sku_id as sent when strings, escaped and cut short;
        else null)."""
        if self.stream is None:
            return
        if isinstance(answer, bytes):
            result = 'true, "code": 0'
        else:
            result = f'false, "code": {json.dumps(answer.get("code"))}'
        self.lines.append(
            f'{{"ts": "{now}", "op": "kms-activate", "cmid": {_short(message.get("cmid"))}, '
            f'"sku_id": {_short(message.get("sku_id"))}, "ok": {result}, '
            f'"ms": {round(seconds * 1000, 3)!r}}}'
        )

    def schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.lines and not self.scheduled:
            self.scheduled = True
            loop.call_later(self.PERIOD, self.write_out)

    def write_out(self) -> None:
        """Write the lines gathered so far. Never raises: lines that cannot be written are
        dropped and counted (the answers they tell of are in the store already)."""
        self.scheduled = False
        if self.stream is None or not self.lines:
            return
        lines, self.lines = self.lines, []
        try:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        except (OSError, ValueError) as exc:  # ValueError: the stream was closed
            self.lost += len(lines)
            self.lost_lately += len(lines)
            if self.dropped is not None:
                self.dropped(len(lines))
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.once.fail(
                "write",
                f"cannot write the request log: {why}; its lines are dropped until it can be "
                "written again (the answers are recorded in the store)",
                lost_lines=len(lines),
            )
            return
        if self.lost_lately:
            self.once.ok("write", "the request log is written again", lost_lines=self.lost_lately)
            self.lost_lately = 0

    def reopen(self) -> None:
        """Write out, then reopen the log file by name (after logrotate moved it away).

        The standard streams are left alone. If the file cannot be opened again the old
        stream is kept and OSError is raised for the caller to log.
        """
        self.write_out()
        stream = self.stream
        if stream is None or stream in (sys.stderr, sys.stdout):
            return
        name = getattr(stream, "name", None)
        if not isinstance(name, str):
            return
        fresh = Path(name).open("a", encoding="utf-8")  # noqa: SIM115 (kept open, like open_log)
        self.stream = fresh
        with contextlib.suppress(OSError):  # what it still held could not be written: dropped
            stream.close()


def _short(value: object) -> str:
    """A peer's string as a JSON value, cut short; null for anything else. A lone surrogate
    (``"\\ud800"`` in the request) is written as the text ``\\ud800``: the line stays JSON
    that strict parsers (which refuse unpaired surrogates) read too."""
    if not isinstance(value, str):
        return "null"
    text = value[:64]
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _js(text)


def open_log(target: str) -> TextIO | None:
    """The request log's stream: ``none``, ``-`` (stderr) or a file opened for appending."""
    if target == "none":
        return None
    if target == "-":
        return sys.stderr
    hint = "Give a writable file path, '-' for stderr, or 'none'."
    if not target.strip():  # Path("") is the current directory
        raise UsageError("the request log needs a file name; --log is empty", hint)
    try:
        return Path(target).open("a", encoding="utf-8")
    except OSError as exc:
        why = f"cannot open the request log {target}: {exc.strerror or exc}"
        if isinstance(exc, IsADirectoryError):  # the argument names no file, as click says
            raise UsageError(why, hint) from exc
        # a file that cannot be made or written (a missing directory, no permission, a full
        # disk), as for every other file ospp writes
        raise StoreError(os_error_code(exc), why, hint) from exc
