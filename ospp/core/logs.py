"""The servers' operational log: the ``logging`` module, one line per event.

``setup`` configures the ``ospp`` logger: a human format on a terminal, JSON lines otherwise
(journald, a file, a pipe) or when asked. Extra fields go in ``extra={"fields": {...}}``.
Tracebacks never reach the log: an exception is shown as its type and message. :class:`Once`
logs a recurring condition (an accept error, a failing DNS publish) when it starts and when it
ends, not on every repetition; :class:`Notes` logs a condition that comes and goes with each
peer (connections shed, answers not taken) at most once per NOTE_INTERVAL, with how many
times it recurred meanwhile. (The per-request log is a separate stream: ``--log``.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

LOGGER = "ospp"
# Libraries whose own warnings reach the operational log, in its format: the PostgreSQL driver
# says there that a connection was lost (a message of several lines, one JSON line here).
LIBRARY_LOGGERS = ("psycopg",)
LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("auto", "human", "json")
NOTE_INTERVAL = 10.0  # seconds between two log lines about the same condition


def _summary(record: logging.LogRecord) -> str | None:
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        return f"{type(exc).__name__}: {exc}"
    return None


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC), level, logger, msg, then the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, Any] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(_fields(record))
        error = _summary(record)
        if error:
            line["error"] = error
        return json.dumps(line, default=str)


class HumanFormatter(logging.Formatter):
    """``HH:MM:SS LEVEL message key=value ...`` for a person at a terminal: what may have come
    from a peer (a path a browser asked for, an error's text) is shown escaped."""

    def format(self, record: logging.LogRecord) -> str:
        from ospp.core.printable import printable

        parts = [
            time.strftime("%H:%M:%S", time.localtime(record.created)),
            f"{record.levelname:<7}",
            printable(record.getMessage()),
        ]
        parts += [f"{k}={printable(str(v))}" for k, v in _fields(record).items()]
        error = _summary(record)
        if error:
            parts.append(f"({printable(error)})")
        return " ".join(parts)


def setup(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> logging.Logger:
    """Send the ``ospp`` logger's records to ``stream`` (stderr) at ``level`` and above, and
    those of LIBRARY_LOGGERS at warning and above."""
    out = stream or sys.stderr
    human = fmt == "human" or (fmt == "auto" and out.isatty())
    handler = logging.StreamHandler(out)
    handler.setFormatter(HumanFormatter() if human else JsonFormatter())
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        for old in list(library.handlers):
            library.removeHandler(old)
        library.addHandler(handler)
        library.setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
        library.propagate = False
    logger = logging.getLogger(LOGGER)
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return logger


def quiet_library(name: str) -> None:
    """Keep a library's log records off a command's output: Python would print each raw on
    standard error (its last-resort handler) among the command's own lines, while the command
    reports the failure itself. A server's :func:`setup` routes them to its log instead."""
    library = logging.getLogger(name)
    if not library.handlers:
        library.addHandler(logging.NullHandler())
        library.propagate = False


class Once:
    """Log each condition once while it lasts: ``fail(key, ...)`` then ``ok(key, ...)``."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.active: dict[str, str] = {}

    def fail(self, key: str, message: str, **fields: Any) -> bool:
        """Log ``message`` as a warning unless the same condition is already reported."""
        if self.active.get(key) == message:
            return False
        self.active[key] = message
        self.logger.warning(message, extra={"fields": fields})
        return True

    def ok(self, key: str, message: str, **fields: Any) -> None:
        """The condition ended: say so once (nothing if it was never reported)."""
        if self.active.pop(key, None) is not None:
            self.logger.info(message, extra={"fields": fields})


class Notes:
    """Warnings about a condition peers cause again and again, on ``logger`` (the servers send
    it to stderr as text or JSON lines): one per condition per NOTE_INTERVAL, never a flood."""

    def __init__(self, logger: str) -> None:
        self.logger = logging.getLogger(logger)
        self.last: dict[str, float] = {}
        self.skipped: dict[str, int] = {}

    def note(self, key: str, text: str) -> None:
        now = time.monotonic()
        if now - self.last.get(key, -NOTE_INTERVAL) < NOTE_INTERVAL:
            self.skipped[key] = self.skipped.get(key, 0) + 1
            return
        skipped = self.skipped.pop(key, 0)
        self.last[key] = now
        more = f" ({skipped} more times since the last report)" if skipped else ""
        self.logger.warning(f"{text}{more}")


def loop_exception_handler(
    once: Once,
) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """An asyncio exception handler that logs each kind of error once, without a traceback.

    It catches what asyncio reports outside any request: accept() failing when the process runs
    out of file descriptors, a callback that raised.
    """

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        message = str(context.get("message", "unexpected error in the event loop"))
        detail = f"{message}: {type(exc).__name__}: {exc}" if exc is not None else message
        key = f"loop:{message}:{type(exc).__name__}:{getattr(exc, 'errno', '')}"
        once.fail(key, detail)

    return handle
