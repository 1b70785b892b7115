"""The KMS host's server runtime: group commit and the serve loop behind ``ospp kms serve``.

Requests share one SQLite transaction (group commit): a batch closes when every connected
client is waiting in it, or GROUP_COMMIT_WINDOW after it opened. Answers are sent only after
the batch commits. The licence packs and intervals are read again when another process
changes the store (:class:`LiveState`). The request log is ospp.kmshost.requestlog, the DNS
publishing loop ospp.kmshost.publishing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from ospp.core import files
from ospp.core.clock import iso
from ospp.core.errors import E_ALREADY_RUNNING, E_INVALID_ARG, OsppError, StoreError, hex_code
from ospp.kmshost.ping import ping_reply
from ospp.kmshost.publishing import EventSink, publish_forever
from ospp.kmshost.request import Request, parse_item
from ospp.kmshost.requestlog import RequestLog
from ospp.kmshost.state import KmsHost, ServingState
from ospp.protocol import serving, wire

if TYPE_CHECKING:
    from ospp.kmshost.operations import Operations

GROUP_COMMIT_WINDOW = 0.002  # seconds; the price in latency of fewer, larger transactions
SERVING_LOCK = "serving.lock"  # held by the one 'kms serve' of a host's directory

Ready = Callable[[str, int, ServingState], None]
log = logging.getLogger("ospp.kms")


class LiveState:
    """What answering needs (the licence packs, the intervals), kept current while serving.

    ``ospp kms install-key``, ``activate``, ``uninstall-key`` and ``set`` change the store
    from another process; the host notices (SQLite's data version, checked at most every
    RECHECK seconds, when a batch closes or a ping arrives) and reads its packs again: no
    restart. The signing key file is read again too, so a host key activated anew with a new
    signing key (the file lost, or restored from a backup) is served with it. A store it
    cannot read then (a damaged pack, an unreadable signing key) is logged once and the host
    goes on with what it read before.
    """

    RECHECK = 0.1  # seconds between checks under load; an idle host checks at the next request

    def __init__(self, host: KmsHost) -> None:
        from ospp.core.logs import Once

        self.host = host
        self.version = host.db.data_version()
        self.state = host.serving_state()
        self.checked = time.monotonic()
        self.once = Once(log)

    def current(self) -> ServingState:
        now = time.monotonic()
        if now - self.checked < self.RECHECK:
            return self.state
        self.checked = now
        try:
            version = self.host.db.data_version()
            if version == self.version:
                return self.state
            # Other writers change the version too (the pruning thread, every few ms while
            # it prunes): the key file is read again only when the packs did change, since a
            # new activation may certify a new key.
            fresh = self.host.serving_state()
            if fresh != self.state and fresh.activated:
                self.host.reload_signer()
        except OsppError as exc:
            self.once.fail(
                "packs",
                "the store changed but its packs or settings cannot be read: "
                f"{hex_code(exc.code)} {exc.message}; still serving what was read before",
            )
            return self.state
        self.version = version
        self.once.ok("packs", "the licence packs and settings can be read again")
        if fresh != self.state:
            self.state = fresh
            log.info(
                "licence packs read again",
                extra={
                    "fields": {
                        "packs": [p.product.id for p in fresh.packs],
                        "activated": [p.product.id for p in fresh.packs if p.certificate],
                        "activation_interval": fresh.activation_interval,
                        "renewal_interval": fresh.renewal_interval,
                    }
                },
            )
        return self.state


class _BatchTimer:
    """The one scheduled close of the current group-commit batch."""

    def __init__(self) -> None:
        self.handle: asyncio.Handle | None = None

    def close_later(self, loop: asyncio.AbstractEventLoop, flush: Callable[[], None]) -> None:
        if self.handle is None:
            self.handle = loop.call_later(GROUP_COMMIT_WINDOW, flush)

    def reset(self) -> None:
        self.handle = None

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self.reset()


def serve(
    host: KmsHost,
    listen_host: serving.Listen,
    port: int,
    *,
    idle_timeout: float,
    log: TextIO | None,
    ready: Ready,
    events: EventSink,
    max_connections: int | None = None,
    ops: Operations | None = None,
) -> None:
    """Serve KMS clients until SIGTERM or Ctrl+C.

    ``ready(shown_host, port, state)`` runs once listening; ``events`` receives operational
    events (DNS publishing) as dicts. At ``max_connections`` open connections (by default
    what RLIMIT_NOFILE allows, see serving.default_max_connections) a new client closes the
    longest-idle one. ``ops`` adds what a service needs (sd_notify, SIGHUP, metrics, the
    status page): see :mod:`ospp.kmshost.operations`.
    """
    with only_host(host):
        asyncio.run(
            _serve(host, listen_host, port, idle_timeout, log, ready, events, max_connections, ops)
        )


@contextlib.contextmanager
def only_host(host: KmsHost) -> Iterator[None]:
    """Serve ``host``'s store from this process alone, for the block.

    A second ``kms serve`` on one store (the service running, and one started by hand) would
    answer clients as well, counts being shared, but status, /dlv and DNS publishing would
    show whichever started last, and stopping one would leave clients on the other. The lock
    (SERVING_LOCK in the host's directory) is the system's, so a host killed with SIGKILL
    leaves nothing to clean up."""
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(files.locked(host.home / SERVING_LOCK, wait=0))
    except files.LockHeld as exc:
        port = None
        with contextlib.suppress(OsppError):  # a store that cannot be read: said without it
            port = host.meta().get("listening_port")
        where = f", listening on port {port}" if port else ""
        raise StoreError(
            E_ALREADY_RUNNING,
            f"another 'ospp kms serve' is serving the KMS host in {host.home}{where}",
            "Stop it first (systemctl stop ospp-kms, or end its process), or give this one "
            "a host of its own with OSPP_KMS_HOME.",
        ) from exc
    with stack:
        yield


async def _serve(
    host: KmsHost,
    listen_host: serving.Listen,
    port: int,
    idle_timeout: float,
    log_stream: TextIO | None,
    ready: Ready,
    events: EventSink,
    max_connections: int | None,
    ops: Operations | None = None,
) -> None:
    live = LiveState(host)
    if live.state.activated:
        host.signer()  # a damaged signing key stops the host here, not at each request
    checkpointer = host.start_checkpointer()
    log = RequestLog(log_stream, ops.metrics.log_lines_lost if ops is not None else None)
    pending: list[tuple[dict[str, Any], Request | OsppError, asyncio.Future[serving.Reply], float]]
    pending = []
    loop = asyncio.get_running_loop()
    gauge = serving.Gauge(max_connections)
    batch = _BatchTimer()
    tasks: list[asyncio.Task[None]] = []
    if ops is not None:
        await ops.open()
        ops.reload.append(log.reopen)

    from ospp.core.logs import Once

    clock_once = Once(logging.getLogger("ospp.kms"))  # 'log' here is the request log

    def flush() -> None:
        batch.reset()
        items = pending[:]
        pending.clear()
        if not items:
            return
        try:
            batch_time = host.clock.now()  # one clock read per batch: answers and log lines
        except OsppError as exc:
            clock_unreadable(items, exc)
            return
        clock_once.ok("clock", "the host's clock can be read again")
        try:
            # Each request fails alone (process redoes a failed batch one request at a time);
            # this catches only a bug, which then fails the batch rather than the server.
            answers = host.process(live.current(), [item[1] for item in items], batch_time)
        except Exception as exc:
            if ops is not None:
                ops.store_failed(len(items), exc)
            for _, _, fut, _ in items:
                if not fut.done():
                    fut.set_exception(exc)
            return
        done = time.perf_counter()
        now = iso(batch_time)
        for (message, _, fut, started), answer in zip(items, answers, strict=True):
            if not fut.done():
                fut.set_result(answer)
            log.add(now, message, answer, done - started)
        log.schedule(loop)
        if ops is not None:
            ops.observe(answers, [done - item[3] for item in items])

    def clock_unreadable(items: list[Any], exc: OsppError) -> None:
        """A damaged lab clock: the operator is told once, the batch is refused (and logged)
        with the same code, and clients learn nothing of the host's files. Their log lines
        carry real time, the host's own time being what cannot be read."""
        clock_once.fail("clock", f"the host's clock cannot be read: {hex_code(exc.code)} {exc}")
        answer = wire.error_response(exc.code, "the KMS host cannot read its clock")
        now, done = iso(datetime.now(UTC)), time.perf_counter()
        for message, _, fut, started in items:
            if not fut.done():
                fut.set_result(answer)
            log.add(now, message, answer, done - started)
        log.schedule(loop)
        if ops is not None:
            ops.observe([answer] * len(items), [done - item[3] for item in items])

    def handle(message: dict[str, Any]) -> asyncio.Future[serving.Reply]:
        fut: asyncio.Future[serving.Reply] = loop.create_future()
        if message.get("op") == "kms-ping":  # 'ospp dnsdiag', 'ospp kms ping': is a host there?
            fut.set_result(ping_reply(host, live.current(), message))
            return fut
        if message.get("op") != "kms-activate":
            unknown = f"unknown op {wire.shown(message.get('op'))}"
            fut.set_result(wire.error_response(E_INVALID_ARG, unknown))
            return fut
        # Every field is checked here, before the request joins a batch.
        pending.append((message, parse_item(message), fut, time.perf_counter()))
        # Group commit: requests share a transaction. The batch closes when every connected
        # client is waiting in it (no more can come), or GROUP_COMMIT_WINDOW after it opened.
        if len(pending) >= gauge.open:  # no more can come: commit now, in this turn of the loop
            batch.cancel()
            flush()
        elif len(pending) == 1:
            batch.close_later(loop, flush)
        return fut

    def listening(server: asyncio.Server) -> None:
        shown, bound = serving.bound_address(server)
        host.record_port(bound)
        served.append(bound)  # forgotten when the host stops, however it stops
        state = live.state
        if ops is not None:
            waiting = [p.product.id for p in state.packs if p.certificate is None]
            ops.ready(
                shown,
                bound,
                state.activated,
                serving.bound_addresses(server),
                waiting if state.activated else [],
            )
        ready(shown, bound, state)
        tasks.append(loop.create_task(publish_forever(host, bound, events)))

    served: list[int] = []
    try:
        await serving.serve_until_stopped(handle, listen_host, port, listening, idle_timeout, gauge)
    finally:
        for bound in served:
            with contextlib.suppress(OsppError):  # the counts are safe; only what status shows
                host.forget_port(bound)
    for task in tasks:
        task.cancel()
    checkpointer.set()
    if pending:
        flush()
    log.write_out()
    if ops is not None:
        await ops.close()
