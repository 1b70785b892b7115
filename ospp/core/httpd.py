"""A minimal HTTP/1.1 server on the running asyncio loop, for the hosts' status pages.

GET and HEAD only, one request per connection (``Connection: close``), a request head of at
most 8 KiB that must arrive within 10 seconds, at most MAX_WAITING connections waiting for
theirs. The application is an async function from a :class:`Request` to a :class:`Response`;
it must not block the loop (read stores in a thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from ospp.core.endpoint import Endpoint
from ospp.core.errors import NetworkError

MAX_HEAD = 8 * 1024
HEAD_TIMEOUT = 10.0
# Connections still sending their request head that the status side holds at once: a newcomer
# beyond them closes the oldest. A browser or a scraper sends its head at once; connections
# that never do cannot pile up and use the descriptors the host's clients need.
MAX_WAITING = 16
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
log = logging.getLogger("ospp.http")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


App = Callable[[Request], Awaitable[Response]]


def text(status: int, body: str) -> Response:
    return Response(status, body.encode("utf-8"))


def parse_head(head: bytes) -> Request | None:
    """The request line of a head; None if it is not HTTP/1.x."""
    try:
        line = head.split(b"\r\n", 1)[0].decode("ascii")
        method, target, version = line.split(" ")
    except (UnicodeDecodeError, ValueError):
        return None
    if not version.startswith("HTTP/1."):
        return None
    try:
        parts = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    except ValueError:  # "//[x": an IPv6 literal left open, or a target urllib cannot split
        return None
    return Request(method, parts.path or "/", query)


Waiting = OrderedDict[asyncio.StreamWriter, None]


def _admit(waiting: Waiting, writer: asyncio.StreamWriter) -> None:
    """Hold a new connection; beyond MAX_WAITING, close the oldest still sending its head."""
    waiting[writer] = None
    if len(waiting) > MAX_WAITING:
        oldest, _ = waiting.popitem(last=False)
        oldest.close()  # its read ends at once (IncompleteReadError): no answer, no log


async def _handle(
    app: App, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, waiting: Waiting
) -> None:
    _admit(waiting, writer)
    try:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            return
        finally:
            waiting.pop(writer, None)
        request = parse_head(head)
        if request is None:
            response = text(400, "bad request\n")
        elif request.method not in ("GET", "HEAD"):
            response = text(405, "only GET and HEAD\n")
            response.headers["Allow"] = "GET, HEAD"
        else:
            try:
                response = await app(request)
            except Exception as exc:  # the page fails, the host keeps serving
                log.error(
                    "status page failed", extra={"fields": {"path": request.path}}, exc_info=exc
                )
                response = text(500, "internal error\n")
        headers = {
            "Content-Type": response.content_type,
            "Content-Length": str(len(response.body)),
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Connection": "close",
            **response.headers,
        }
        reason = REASONS.get(response.status, "Unknown")
        out = f"HTTP/1.1 {response.status} {reason}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        writer.write(out.encode("latin-1") + b"\r\n")
        if request is None or request.method != "HEAD":
            writer.write(response.body)
        await writer.drain()
    except OSError:
        pass  # the browser went away
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def start(app: App, endpoint: Endpoint) -> asyncio.Server:
    """Listen on ``endpoint`` (port 0 picks one) and serve ``app`` until the server closes."""
    waiting: Waiting = OrderedDict()
    try:
        return await asyncio.start_server(
            lambda r, w: _handle(app, r, w, waiting),
            endpoint.host,
            endpoint.port,
            limit=MAX_HEAD,
            reuse_address=True,
        )
    except OSError as exc:
        raise NetworkError(
            0x80072EFD,
            f"cannot listen for HTTP on {endpoint}: {exc.strerror or exc}",
            "Check that the address exists on this machine and the port is free.",
        ) from exc
