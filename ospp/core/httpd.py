"""A minimal HTTP/1.1 server on the running asyncio loop, for the hosts' status pages.

GET and HEAD only, one request per connection (``Connection: close``), a request head of at
most 8 KiB that must arrive within 10 seconds, at most MAX_WAITING connections waiting for
theirs, at most MAX_ANSWERING being answered (beyond them: 503 at once). An answer must be
taken within SEND_TIMEOUT and at most MAX_SENDING are sent at once; a connection past either
limit is aborted (its unsent part dropped, a reset sent). The
application is an async function from a :class:`Request` to a :class:`Response`; it must not
block the loop (read stores in a thread).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from ospp.core.endpoint import Endpoint, listen_failure
from ospp.core.errors import NetworkError
from ospp.core.logs import Notes
from ospp.core.sockets import reset

MAX_HEAD = 8 * 1024
HEAD_TIMEOUT = 10.0
# Connections still sending their request head that the status side holds at once: a newcomer
# beyond them closes the oldest. A browser or a scraper sends its head at once; connections
# that never do cannot pile up and use the descriptors the host's clients need.
MAX_WAITING = 16
# Seconds a client has to take its whole answer, from the first byte written to the close: one
# that reads slowly or not at all would otherwise hold its connection, its task and the part of
# the answer the kernel did not take for ever.
SEND_TIMEOUT = 10.0
# Answers being sent at once: beyond them, a new one aborts the one that has been sending
# longest. A client that reads its answer takes it in milliseconds, so only connections that
# stall are ever the oldest; they cannot pile up within SEND_TIMEOUT either.
MAX_SENDING = 16
# Requests being answered by the application at once (pages queued for the thread that reads
# the store and renders them): beyond them a request is answered 503 at once, so clients that
# send many complete requests cannot queue unbounded work or memory behind the page thread.
MAX_ANSWERING = 16
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
log = logging.getLogger("ospp.http")
# A request target's path: segments of RFC 3986's pchar (percent escapes are decoded after).
_PATH = re.compile(r"(?:/[A-Za-z0-9\-._~!$&'()*+,;=:@%]*)+")


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


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    """A request head, up to its empty line: lines end with CRLF, or with a bare LF, which
    RFC 9112 (2.2) lets a server take as a line end. Over MAX_HEAD bytes: LimitOverrunError
    (from here, or from the reader for a line longer than its limit)."""
    head = bytearray()
    read = 0
    while True:
        line = await reader.readuntil(b"\n")
        read += len(line)
        if read > MAX_HEAD:
            raise asyncio.LimitOverrunError("request head too large", read)
        if line in (b"\r\n", b"\n"):
            if head:
                return bytes(head)
            continue  # empty lines before the request line are passed over (RFC 9112, 2.2)
        head += line


def parse_head(head: bytes) -> Request | None:
    """The request line of a head; None if it is not HTTP/1.x."""
    try:
        line = head.split(b"\n", 1)[0].removesuffix(b"\r").decode("ascii")
        method, target, version = line.split(" ")
    except (UnicodeDecodeError, ValueError):
        return None
    if not version.startswith("HTTP/1."):
        return None
    if target.startswith("/"):  # origin-form, what browsers and scrapers send
        path, _, raw_query = target.partition("?")
        if not _PATH.fullmatch(path):  # "//[x": not a path (RFC 3986 3.3)
            return None
    else:  # absolute-form ("http://host/path"), which a server must accept too (RFC 9112 3.2.2)
        try:
            parts = urlsplit(target)
        except ValueError:  # "http://[::1/": an IPv6 literal left open
            return None
        path, raw_query = parts.path or "/", parts.query
    query = {k: v[-1] for k, v in parse_qs(raw_query, keep_blank_values=True).items()}
    return Request(method, unquote(path), query)


class Held:
    """The connections a server holds that are not its application's doing: those sending their
    request head and those being sent their answer, oldest first, and the warnings about them."""

    def __init__(self) -> None:
        self.waiting: OrderedDict[asyncio.StreamWriter, None] = OrderedDict()
        self.sending: OrderedDict[asyncio.StreamWriter, None] = OrderedDict()
        self.answering = 0  # requests the application is answering
        self.notes = Notes(log.name)


def _admit(held: Held, writer: asyncio.StreamWriter) -> None:
    """Hold a new connection; beyond MAX_WAITING, close the oldest still sending its head."""
    held.waiting[writer] = None
    if len(held.waiting) > MAX_WAITING:
        oldest, _ = held.waiting.popitem(last=False)
        oldest.close()  # its read ends at once (IncompleteReadError): no answer, no log


def _abort(writer: asyncio.StreamWriter) -> None:
    """Drop the connection now (:func:`ospp.core.sockets.reset`)."""
    reset(writer.transport)


async def _send(held: Held, writer: asyncio.StreamWriter, data: bytes) -> None:
    """Write ``data`` and close the connection once it is all sent, within SEND_TIMEOUT and
    among at most MAX_SENDING answers; otherwise abort it."""
    held.sending[writer] = None
    if len(held.sending) > MAX_SENDING:
        oldest, _ = held.sending.popitem(last=False)
        _abort(oldest)  # its wait_closed() below returns at once
        held.notes.note(
            "http-shed",
            f"more than {MAX_SENDING} status-page answers not yet taken by their clients: "
            "dropped the one sending longest",
        )
    try:
        async with asyncio.timeout(SEND_TIMEOUT):
            writer.write(data)
            writer.close()  # once the buffer is sent
            await writer.wait_closed()
    except TimeoutError:
        _abort(writer)
        held.notes.note(
            "http-timeout",
            f"a status-page client did not take its answer within {SEND_TIMEOUT:g} s: "
            "connection dropped",
        )
    finally:
        held.sending.pop(writer, None)


async def _handle(
    app: App, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, held: Held
) -> None:
    _admit(held, writer)
    try:
        too_large = False
        try:
            head = await asyncio.wait_for(_read_head(reader), HEAD_TIMEOUT)
        except asyncio.LimitOverrunError:  # said, then closed
            head, too_large = b"", True
        except (asyncio.IncompleteReadError, TimeoutError):
            writer.close()  # nothing to send: closed at once
            return
        finally:
            held.waiting.pop(writer, None)
        request = parse_head(head)  # None when too large: no head was kept
        if too_large:
            response = text(431, f"the request head is over {MAX_HEAD} bytes\n")
        elif request is None:
            response = text(400, "bad request\n")
        elif request.method not in ("GET", "HEAD"):
            response = text(405, "only GET and HEAD\n")
            response.headers["Allow"] = "GET, HEAD"
        elif held.answering >= MAX_ANSWERING:
            response = text(503, "busy: too many status-page requests at once, try again\n")
            response.headers["Retry-After"] = "1"
            held.notes.note(
                "http-busy",
                f"more than {MAX_ANSWERING} status-page requests at once: answered 503",
            )
        else:
            held.answering += 1
            try:
                response = await app(request)
            except Exception as exc:  # the page fails, the host keeps serving
                log.error(
                    "status page failed", extra={"fields": {"path": request.path}}, exc_info=exc
                )
                response = text(500, "internal error\n")
            finally:
                held.answering -= 1
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
        body = b"" if request is not None and request.method == "HEAD" else response.body
        await _send(held, writer, out.encode("latin-1") + b"\r\n" + body)
    except OSError:
        pass  # the browser went away
    finally:
        if not writer.transport.is_closing():  # the application failed in an unexpected way
            _abort(writer)


async def start(app: App, endpoint: Endpoint) -> asyncio.Server:
    """Listen on ``endpoint`` (port 0 picks one) and serve ``app`` until the server closes."""
    held = Held()
    try:
        return await asyncio.start_server(
            lambda r, w: _handle(app, r, w, held),
            endpoint.host,
            endpoint.port,
            limit=MAX_HEAD,
            reuse_address=True,
        )
    except OSError as exc:
        raise NetworkError(
            listen_failure(exc),
            f"cannot listen for HTTP on {endpoint}: {exc.strerror or exc}",
            "Check that the address exists on this machine and the port is free.",
        ) from exc
