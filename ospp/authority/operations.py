"""What running ``ospp center serve`` as a service adds: sd_notify, the operational log, and
the optional HTTP side (``/`` a key table, ``/metrics``, ``/healthz``).

The HTTP side reads the store through its own read-only connection, in a worker thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import html
import logging
import signal
import sqlite3
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ospp.core import httpd
from ospp.core.endpoint import Endpoint
from ospp.core.errors import OsppError, hex_code
from ospp.core.logs import Once, loop_exception_handler
from ospp.core.notify import Notifier
from ospp.core.promtext import CONTENT_TYPE, Page

if TYPE_CHECKING:
    from ospp.authority.storage import KeyRecord, Store

log = logging.getLogger("ospp.center")
T = TypeVar("T")


def key_rows(records: list[KeyRecord]) -> list[dict[str, Any]]:
    """Per key: last5, product, channel, limit, used, remaining, activations, blocked."""
    return [
        {
            "serial": r.serial,
            "key": r.last5,
            "product": r.product_id,
            "channel": r.channel,
            "limit": r.limit,
            "blocked": r.blocked,
            "used": r.used,
            "remaining": r.remaining,
            "activations": r.activations,
        }
        for r in records
    ]


def render_metrics(
    keys: list[dict[str, Any]], requests: Mapping[str, int], codes: Mapping[str, int]
) -> str:
    page = Page()
    page.family(
        "ospp_authority_requests_total",
        "counter",
        "Requests answered since the authority started, by result.",
        [({"result": r}, n) for r, n in sorted(requests.items())],
    )
    page.family(
        "ospp_authority_request_failures_total",
        "counter",
        "Refused requests since the authority started, by licensing code.",
        [({"code": c}, n) for c, n in sorted(codes.items())],
    )
    page.family(
        "ospp_authority_activations_total",
        "counter",
        "Activations the authority granted per key (including reactivations), ever.",
        [
            ({"key": k["key"], "product": k["product"], "channel": k["channel"]}, k["activations"])
            for k in keys
        ],
    )
    page.family(
        "ospp_authority_mak_remaining",
        "gauge",
        "Activations a MAK has left.",
        [
            ({"key": k["key"], "product": k["product"]}, k["remaining"])
            for k in keys
            if k["channel"] == "mak"
        ],
    )
    return page.text()


def render_page(keys: list[dict[str, Any]], requests: Mapping[str, int], name: str) -> str:
    e = html.escape
    rows = (
        "".join(
            f"<tr class=key><td><code>*****-{e(k['key'])}</code></td><td>{e(k['product'])}</td>"
            f"<td>{e(k['channel'])}</td><td class=n>{k['used']}</td><td class=n>{k['limit']}</td>"
            f"<td class=n>{k['remaining']}</td><td>{'blocked' if k['blocked'] else 'active'}</td>"
            "</tr>"
            for k in keys
        )
        or "<tr><td colspan=7>No key issued yet.</td></tr>"
    )
    answered = ", ".join(f"{e(r)} {n}" for r, n in sorted(requests.items())) or "none"
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>ospp authority {e(name)}</title><style>body{{font:14px system-ui,sans-serif;"
        "margin:1.5em}table{border-collapse:collapse}td,th{padding:.2em .6em;border-bottom:"
        "1px solid #ddd;text-align:left}.n{text-align:right}</style></head><body>"
        f"<h1>ospp activation authority {e(name)}</h1>"
        f"<p>Requests since start: {answered}.</p><table><tr><th>Key</th><th>Product</th>"
        "<th>Channel</th><th class=n>Used</th><th class=n>Limit</th><th class=n>Left</th>"
        f"<th>State</th></tr>{rows}</table>"
        '<p><a href="/metrics">metrics</a> · <a href="/healthz">health</a></p></body></html>'
    )


class Operations:
    """Hooks for the authority's serve loop: :meth:`open`, :meth:`ready`, :meth:`answered`,
    :meth:`close`."""

    def __init__(
        self,
        open_store: Callable[[], Store],
        name: str,
        http: Endpoint | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.open_store = open_store  # a store of its own, opened in the status thread
        self.name = name
        self.http = http
        self.notifier = Notifier(environ)
        self.once = Once(log)
        self.requests: dict[str, int] = {"ok": 0, "failed": 0}
        self.codes: dict[str, int] = {}
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="center-status")
        self._store: Store | None = None
        self.http_server: asyncio.Server | None = None
        self.http_address: str | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(loop_exception_handler(self.once))
        # SIGHUP (systemctl reload) must not stop the authority: it has no log file to reopen.
        with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
            loop.add_signal_handler(
                signal.SIGHUP, lambda: log.info("SIGHUP: nothing to reopen (logs go to stderr)")
            )
        if self.http is not None:
            self.http_server = await httpd.start(self.app, self.http)
            host, port = self.http_server.sockets[0].getsockname()[:2]
            self.http_address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def ready(self, shown: str, port: int) -> None:
        fields: dict[str, Any] = {"listen": f"{shown}:{port}", "authority": self.name}
        if self.http_address:
            fields["http"] = f"http://{self.http_address}/"
        log.info("activation authority listening", extra={"fields": fields})
        self.notifier.ready(self._status())
        if self.notifier.error:
            log.warning(self.notifier.error)

    def answered(self, reply: Mapping[str, Any]) -> None:
        if reply.get("ok"):
            self.requests["ok"] += 1
        else:
            self.requests["failed"] += 1
            code = reply.get("code")
            key = hex_code(code) if isinstance(code, int) else "other"
            self.codes[key] = self.codes.get(key, 0) + 1
        self.notifier.status(self._status())

    def _status(self) -> str:
        return f"{self.requests['ok']} requests answered, {self.requests['failed']} refused"

    async def close(self) -> None:
        self.notifier.stopping()
        log.info("activation authority stopping", extra={"fields": dict(self.requests)})
        if self.http_server is not None:
            self.http_server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.http_server.wait_closed(), 2.0)
        await self._in_thread(self._close_conn)
        self.pool.shutdown(wait=False)

    # -- the HTTP side ---------------------------------------------------------------------

    def _close_conn(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def _keys(self) -> list[dict[str, Any]]:
        if self._store is None:
            self._store = self.open_store()
        return key_rows(self._store.key_records())

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn)

    async def app(self, request: httpd.Request) -> httpd.Response:
        if request.path not in ("/", "/metrics", "/healthz"):
            return httpd.text(404, "not found\n")
        path = request.path
        # The counts as they are now, copied on the loop that changes them.
        requests, codes = dict(self.requests), dict(self.codes)

        def build() -> httpd.Response:  # reading every key and rendering: off the event loop
            try:
                keys = self._keys()
            except (OsppError, sqlite3.Error) as exc:
                self._close_conn()  # open it again on the next request
                why = exc.message if isinstance(exc, OsppError) else str(exc)
                return httpd.text(503, f"the store does not answer: {why}\n")
            if path == "/healthz":
                return httpd.text(200, "ok\n")
            if path == "/metrics":
                return httpd.Response(
                    200, render_metrics(keys, requests, codes).encode(), CONTENT_TYPE
                )
            body = render_page(keys, requests, self.name)
            return httpd.Response(200, body.encode(), "text/html; charset=utf-8")

        return await self._in_thread(build)
