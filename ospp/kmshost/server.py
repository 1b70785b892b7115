"""The KMS host's server runtime: group commit, the request log, the DNS publishing loop and
the serve loop behind ``ospp kms serve``.

Requests share one SQLite transaction (group commit): a batch closes when every connected
client is waiting in it, or GROUP_COMMIT_WINDOW after it opened. Answers are sent only after
the batch commits. Log lines are written in batches a few times a second. The licence packs
and intervals are read again when another process changes the store (:class:`LiveState`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii as _js
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ospp.core.clock import iso
from ospp.core.errors import (
    E_INVALID_ARG,
    OsppError,
    StoreError,
    UsageError,
    hex_code,
    os_error_code,
)
from ospp.dns.publish import publish
from ospp.kmshost.ping import ping_reply
from ospp.kmshost.request import Request, parse_item
from ospp.kmshost.state import KmsHost, ServingState
from ospp.protocol import serving, wire

if TYPE_CHECKING:
    from ospp.kmshost.operations import Operations

GROUP_COMMIT_WINDOW = 0.002  # seconds; the price in latency of fewer, larger transactions
PUBLISH_RETRY_FIRST = 60.0  # seconds before the first retry of a failed DNS publish
PUBLISH_RETRY_MAX = 3600.0  # retries back off exponentially up to this (or the interval)
SETTINGS_POLL = 2.0  # seconds between reads of the DNS publishing settings while serving

Ready = Callable[[str, int, ServingState], None]
EventSink = Callable[[dict[str, Any]], None]
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
    try:
        return Path(target).open("a", encoding="utf-8")
    except OSError as exc:
        why = f"cannot open the request log {target}: {exc.strerror or exc}"
        hint = "Give a writable file path, '-' for stderr, or 'none'."
        if isinstance(exc, IsADirectoryError):  # the argument names no file, as click says
            raise UsageError(why, hint) from exc
        # a file that cannot be made or written (a missing directory, no permission, a full
        # disk), as for every other file ospp writes
        raise StoreError(os_error_code(exc), why, hint) from exc


def publish_retry_delay(failures: int, interval: float) -> float:
    """Seconds until the next publish after ``failures`` failures in a row (0: all is well)."""
    if failures == 0:
        return interval
    return min(PUBLISH_RETRY_FIRST * 2.0 ** (failures - 1), PUBLISH_RETRY_MAX, interval)


async def _publish_forever(host: KmsHost, port: int, events: EventSink) -> None:
    """Publish at start and every interval; after a failure retry sooner, backing off.

    The settings are read again every few seconds, so that 'kms dns set', 'enable' and
    'disable' (slmgr /sdns, /cdns) reach a running host: changed settings are published at
    once, and disabled ones no longer. The outcome is recorded in the store ('kms status',
    the status page) and logged once per condition: the first failure of a kind, then the
    recovery.
    """
    import logging

    from ospp.core.logs import Once

    once = Once(logging.getLogger("ospp.kms.dns"))
    loop = asyncio.get_running_loop()
    failures = 0
    published: str | None = None  # the settings last published with
    due = 0.0  # the loop's time when they are to be published again
    while True:
        try:
            pub = host.publishing()
        except OsppError as exc:
            once.fail("settings", f"DNS publishing settings cannot be read: {exc.message}")
            await asyncio.sleep(SETTINGS_POLL)
            continue
        settings = pub.to_json()
        if not pub.enabled:
            published = None  # enabled again, it publishes at once
        if not pub.enabled or (settings == published and loop.time() < due):
            await asyncio.sleep(SETTINGS_POLL)
            continue
        event: dict[str, Any]
        try:
            pub.check()  # settings stored by an older ospp are checked as new ones are
            done = await loop.run_in_executor(None, publish, pub, port)
            outcome = "; ".join(done)
            event = {"event": "dns-publish", "ok": True, "result": outcome}
            failures = 0
            once.ok("publish", "DNS publishing works again", result=outcome)
        except OsppError as exc:
            outcome = f"failed: {hex_code(exc.code)} {exc.message}"
            event = {
                "event": "dns-publish",
                "ok": False,
                "code": hex_code(exc.code),
                "error": exc.message,
            }
            failures += 1
            once.fail("publish", f"DNS publishing failed: {hex_code(exc.code)} {exc.message}")
        except Exception as exc:  # a bug: logged, and retried like any failure
            outcome = f"failed: internal error ({type(exc).__name__})"
            event = {"event": "dns-publish", "ok": False, "error": outcome}
            failures += 1
            once.fail("publish", f"DNS publishing {outcome}: {exc!r}")
        delay = publish_retry_delay(failures, pub.interval_hours * 3600)
        if failures:
            event["retry_in_s"] = delay
        published, due = settings, loop.time() + delay
        try:
            host.record_publish(outcome)
        except OsppError as exc:  # the store was damaged meanwhile: said, and published on
            once.fail("record", f"the DNS publish cannot be recorded: {exc.message}")
        else:
            once.ok("record", "DNS publishes are recorded again")
        events({"ts": iso(host.clock.now()), **event})


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
    asyncio.run(
        _serve(host, listen_host, port, idle_timeout, log, ready, events, max_connections, ops)
    )


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
        tasks.append(loop.create_task(_publish_forever(host, bound, events)))

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
