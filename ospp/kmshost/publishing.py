"""The KMS host's DNS publishing loop while it serves: its SRV record published at start and
every interval, retried sooner after a failure with a growing delay, settings changed by another
process ('kms dns set', slmgr /sdns, /cdns) picked up within seconds, and each outcome recorded
in the store and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from ospp.core.clock import iso
from ospp.core.errors import OsppError, hex_code
from ospp.dns.publish import publish
from ospp.kmshost.state import KmsHost

PUBLISH_RETRY_FIRST = 60.0  # seconds before the first retry of a failed DNS publish
PUBLISH_RETRY_MAX = 3600.0  # retries back off exponentially up to this (or the interval)
SETTINGS_POLL = 2.0  # seconds between reads of the DNS publishing settings while serving

EventSink = Callable[[dict[str, Any]], None]
T = TypeVar("T")


def publish_retry_delay(failures: int, interval: float) -> float:
    """Seconds until the next publish after ``failures`` failures in a row (0: all is well)."""
    if failures == 0:
        return interval
    return min(PUBLISH_RETRY_FIRST * 2.0 ** (failures - 1), PUBLISH_RETRY_MAX, interval)


async def _in_own_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a thread of its own, which a stopping host does not wait for.

    Publishing can take many DNS queries, each allowed its timeout: on a server that answers
    slowly it outlasts the host's stop (the default executor is waited for, and systemd kills
    a host that takes over 20 s to stop). What it was doing is forgotten with the process;
    the next start publishes again."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        def call() -> None:
            if not future.done():  # not cancelled meanwhile (the host is stopping)
                outcome()

        with contextlib.suppress(RuntimeError):  # the loop is closed: the host has stopped
            loop.call_soon_threadsafe(call)

    def work() -> None:
        try:
            result = fn(*args)
        except Exception as exc:
            error = exc  # 'exc' is unbound once the except clause ends: kept for the loop
            settle(lambda: future.set_exception(error))
        else:
            settle(lambda: future.set_result(result))

    threading.Thread(target=work, name="ospp-dns-publish", daemon=True).start()
    return await future


async def publish_forever(host: KmsHost, port: int, events: EventSink) -> None:
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
            done = await _in_own_thread(publish, pub, port)
            outcome = "; ".join(done.lines)
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
        try:
            at = host.clock.now()
        except OsppError:  # a damaged lab clock (said above): the event carries real time
            at = datetime.now(UTC)
        events({"ts": iso(at), **event})
