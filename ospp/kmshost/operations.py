"""What running ``ospp kms serve`` as a service adds around the serve loop.

sd_notify (``READY=1`` once listening, ``STATUS=`` with the counts, ``STOPPING=1``), SIGHUP
(reopen the request log, for logrotate), the operational log (accept errors logged once), the
in-memory metrics, and the optional HTTP side: ``/`` (status page), ``/metrics`` and
``/healthz``. The HTTP side reads the store through its own read-only connection, in a worker
thread, so the KMS listener never waits for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import signal
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ospp.core import httpd, promtext
from ospp.core.endpoint import Endpoint
from ospp.core.errors import OsppError, hex_code
from ospp.core.logs import Once, loop_exception_handler
from ospp.core.notify import Notifier
from ospp.kmshost import metrics as kms_metrics
from ospp.kmshost import statuspage
from ospp.kmshost.report import ClientQuery, Reader
from ospp.kmshost.state import KmsHost

log = logging.getLogger("ospp.kms")
T = TypeVar("T")
STATUS_PERIOD = 1.0  # seconds: at most one STATUS= update (and one store read) per period


class Operations:
    """Hooks the serve loop calls: :meth:`open`, :meth:`ready`, :meth:`observe`, :meth:`close`."""

    def __init__(
        self,
        host: KmsHost,
        http: Endpoint | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.host = host
        self.http = http
        self.notifier = Notifier(environ)
        self.metrics = kms_metrics.ServingMetrics()
        self.once = Once(log)
        self.reader = Reader(Path(host.db.path), host.clock)
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kms-status")
        self.http_server: asyncio.Server | None = None
        self.http_address: str | None = None  # host:port the HTTP side listens on
        self.listening = ""
        self.reload: list[Callable[[], None]] = []
        self._status_due = False

    # -- the serve loop's hooks ----------------------------------------------------------

    async def open(self) -> None:
        """Before the KMS listener: log handler, SIGHUP, and the HTTP side if asked for."""
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(loop_exception_handler(self.once))
        with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
            loop.add_signal_handler(signal.SIGHUP, self.reopen)
        if self.http is not None:
            self.http_server = await httpd.start(self.app, self.http)
            host, port = self.http_server.sockets[0].getsockname()[:2]
            self.http_address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def ready(
        self,
        shown: str,
        port: int,
        activated: bool,
        addresses: Sequence[str] = (),
        waiting: Sequence[str] = (),
    ) -> None:
        """The KMS listener is up: say so once, to the log and to systemd. ``waiting``: the
        products of licence packs not activated while another one is."""
        self.listening = ", ".join(addresses) or f"{shown}:{port}"
        fields: dict[str, Any] = {"listen": self.listening, "activated": activated}
        if self.http_address:
            fields["http"] = f"http://{self.http_address}/"
        log.info("KMS host listening", extra={"fields": fields})
        if not activated:
            log.warning("the host key is not activated: clients get 0xC004F041")
        for product in waiting:
            log.warning(
                f"the KMS host key for {product} is not activated: clients of its application "
                "group get 0xC004F041"
            )
        self.notifier.ready(self._status_line(None))
        if self.notifier.error:
            log.warning(self.notifier.error)

    def observe(self, answers: Sequence[dict[str, Any] | bytes], seconds: Sequence[float]) -> None:
        """A batch was answered: count it, and update STATUS= within STATUS_PERIOD."""
        self.metrics.observe(answers, seconds)
        self._schedule_status()

    def store_failed(self, requests: int, exc: BaseException) -> None:
        for _ in range(requests):
            self.metrics.failed(None)
        self.once.fail("store", f"the store failed a batch: {type(exc).__name__}: {exc}")
        self._schedule_status()

    async def close(self) -> None:
        self.notifier.stopping()
        log.info("KMS host stopping", extra={"fields": {"requests": self.metrics.requests}})
        if self.http_server is not None:
            self.http_server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.http_server.wait_closed(), 2.0)
        await self._in_thread(self.reader.close)
        self.pool.shutdown(wait=False)

    def reopen(self) -> None:
        """SIGHUP: reopen the request log (logrotate moved it away)."""
        failed = False
        for reopen in self.reload:
            try:
                reopen()
            except OSError as exc:
                failed = True
                self.once.fail("reopen", f"cannot reopen the request log: {exc.strerror or exc}")
            else:
                self.once.ok("reopen", "request log reopened after an earlier failure")
        if not failed:
            log.info("SIGHUP: log files reopened")

    # -- STATUS= ---------------------------------------------------------------------------

    def _status_line(self, counts: Mapping[str, int] | None) -> str:
        m = self.metrics
        text = f"{m.requests} requests answered, {m.results['failed']} failed"
        if counts:
            text += "; current count " + ", ".join(f"{n}" for _, n in sorted(counts.items()))
        return text

    def _schedule_status(self) -> None:
        if self._status_due or not self.notifier.enabled:
            return
        self._status_due = True
        asyncio.get_running_loop().call_later(
            STATUS_PERIOD, lambda: asyncio.ensure_future(self._send_status())
        )

    async def _send_status(self) -> None:
        self._status_due = False
        try:
            gauges = await self._in_thread(self.reader.gauges)
        except (OsppError, sqlite3.Error):  # the store or the lab clock cannot be read now
            gauges = {"current_count": None}
        self.notifier.status(self._status_line(gauges["current_count"]))

    # -- the HTTP side ---------------------------------------------------------------------

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn)

    async def app(self, request: httpd.Request) -> httpd.Response:
        try:
            if request.path == "/healthz":
                return await self.healthz()
            if request.path == "/metrics":
                return await self.metrics_page()
            if request.path == "/":
                return await self.page(request.query)
        except OsppError as exc:  # the store or the lab clock cannot be read now: it may pass
            return httpd.text(503, f"{hex_code(exc.code)} {exc.message}\n")
        except sqlite3.Error as exc:  # the store does not answer (locked for long, gone)
            return httpd.text(503, f"the store does not answer: {exc}\n")
        return httpd.text(404, "not found\n")

    async def metrics_page(self) -> httpd.Response:
        """``/metrics``: what this process counted is always served; the gauges read from
        the store are left out while the store or the lab clock cannot be read, and
        ``ospp_kms_store_readable`` says so. (A 503 would hide the failure counters exactly
        when requests fail for the same reason.)"""
        gauges: Mapping[str, Any] | None
        try:
            gauges = await self._in_thread(self.reader.gauges)
        except (OsppError, sqlite3.Error):
            gauges = None
        body = kms_metrics.render(self.metrics, gauges)
        return httpd.Response(200, body.encode(), promtext.CONTENT_TYPE)

    async def healthz(self) -> httpd.Response:
        try:
            gauges = await self._in_thread(self.reader.gauges)
        except sqlite3.Error as exc:
            return httpd.text(503, f"the store does not answer: {exc}\n")
        if not gauges["activated"]:
            return httpd.text(503, "the host key is not activated\n")
        return httpd.text(200, "ok\n")

    async def page(self, query: Mapping[str, str]) -> httpd.Response:
        wanted = ClientQuery(
            product=query.get("product", "")[:40],
            status=query.get("status", "")[:32].lower(),
            page=_page_number(query.get("page", "1")),
        )

        since_start = {"requests": self.metrics.requests, "failed": self.metrics.results["failed"]}

        def build() -> bytes:  # reading and rendering both stay off the event loop
            summary = self.reader.summary()
            rows, total = self.reader.clients(wanted)
            statuses = self.reader.statuses()
            html = statuspage.render(
                summary, rows, total, wanted, statuses, since_start, self.listening
            )
            return html.encode("utf-8")

        return httpd.Response(200, await self._in_thread(build), "text/html; charset=utf-8")


MAX_PAGE = 999_999_999  # a larger page number is past the last page all the same


def _page_number(text: str) -> int:
    """The page a query asks for: a whole number (a larger one than MAX_PAGE is past the
    last page as MAX_PAGE is); anything else is the first page. ASCII digits only: "²" is a
    digit to str.isdigit, but not to int()."""
    if not (text.isascii() and text.isdigit()):
        return 1
    digits = text.lstrip("0")
    if len(digits) > len(str(MAX_PAGE)):
        return MAX_PAGE
    return max(1, min(int(digits or "0"), MAX_PAGE))
