"""How many connections a server holds: the cap, derived from the open-file limit, and what
happens at it (the longest-idle connection makes room) or beyond it (out of descriptors on
accept: idle connections are shed and one line per interval is logged, never a traceback).
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections import OrderedDict
from typing import Any, Protocol

from ospp.core.logs import Notes


class Connection(Protocol):
    """What the gauge needs of a server's connection."""

    busy: bool

    def close(self) -> None: ...

    def sending(self) -> bool: ...


# Descriptors a server keeps for itself (its store and WAL, the log, DNS, threads) beyond the
# connections it accepts (a KMS host uses 14).
FD_RESERVE = 32
# Connections asyncio accepts in one wake-up (its "backlog" argument). A connection is counted
# against the cap two loop iterations after it is accepted and the one it displaces is closed
# one later, so up to about four bursts overshoot the cap: the default cap leaves room for them.
ACCEPT_BURST = 16
LISTEN_BACKLOG = 1024
MAX_CONNECTIONS_CEILING = 10_000


def default_max_connections() -> int:
    """The connection cap when none is configured: RLIMIT_NOFILE less the reserve.

    Where there is no such limit to read (Windows) it is 1,000; it is never above 10,000.
    """
    try:
        import resource
    except ImportError:
        return 1000
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return 1000
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS_CEILING
    return max(8, min(MAX_CONNECTIONS_CEILING, soft - FD_RESERVE - 4 * ACCEPT_BURST))


class Gauge:
    """A server's connections: how many are open (read by handlers to tune batching), and the
    cap on them, kept by closing the longest-idle connection to make room for a new one."""

    def __init__(self, max_connections: int | None = None) -> None:
        self.open = 0
        self.limit = max_connections or default_max_connections()
        # Connections not yet closing, least recently active first.
        self.live: OrderedDict[Connection, None] = OrderedDict()
        self.notes = Notes("ospp.net")
        self.shed_at = -1.0
        # The descriptors of the server's listening sockets: running out of descriptors while
        # accepting on another server of the process (a status page) is not this cap's doing.
        self.listening: set[int] = set()

    def admit(self, new: Connection) -> None:
        self.live[new] = None
        if len(self.live) <= self.limit:
            return
        self.notes.note(
            "cap",
            f"{self.limit} connections open (the cap, --max-connections): closing the "
            "longest-idle ones to admit new clients",
        )
        # Idle first: a connection whose peer is still taking its answers is not idle. A
        # connection draining after its end (closed) stays in the order it had, the oldest.
        for quiet in (True, False):
            for conn in self.live:
                if conn is not new and not conn.busy and not (quiet and conn.sending()):
                    conn.close()  # removes it from self.live: stop iterating now
                    return
        new.close()  # every other connection is mid-request

    def shed(self) -> int:
        """Out of descriptors on accept: lower the cap below what is open and close the
        longest-idle connections down to it, so the next connections find room.

        The cap set (or derived) was too high for what the process may open. asyncio reports
        a failed accept once per connection waiting and retries a second later: act at most
        once a second. Returns how many connections were closed.
        """
        now = time.monotonic()
        if now - self.shed_at < 1.0:
            return 0
        self.shed_at = now
        self.limit = max(8, min(self.limit, len(self.live) - 2 * ACCEPT_BURST))
        victims = [c for c in self.live if not c.busy][: max(1, len(self.live) - self.limit)]
        for conn in victims:
            conn.close()
        return len(victims)


def quiet_accept_errors(loop: asyncio.AbstractEventLoop, gauge: Gauge) -> None:
    """Out of descriptors or memory on accept: shed idle connections and say so in one line
    per interval (asyncio would log a traceback for every failed accept). Anything else goes
    to the handler installed before (the server's operational log), or asyncio's default."""
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        sock = context.get("socket")
        ours = sock is None or not gauge.listening or sock.fileno() in gauge.listening
        if (
            ours
            and isinstance(exc, OSError)
            and str(context.get("message", "")).startswith("socket.accept()")
        ):
            closed = gauge.shed()
            name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            gauge.notes.note(
                f"accept-{name}",
                f"cannot accept connections: {exc.strerror or exc} ({name}); connection cap "
                f"lowered to {gauge.limit}, closed {closed} idle connection(s), retrying",
            )
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
