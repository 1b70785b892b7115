"""The ospp wire protocol: length-prefixed JSON frames over TCP (docs/PROTOCOL.md), and the
client side of it.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON, at most
MAX_FRAME bytes. Every request carries ``"v": 1`` and an ``"op"``; every response carries
``"v": 1`` and ``"ok"``, and on failure ``"code"`` (the licensing code) and ``"message"``.
A connection may carry any number of requests, answered in order. The server side is
:mod:`ospp.protocol.serving` (listening), :mod:`ospp.protocol.connection` (a connection per
client, the idle timeout) and :mod:`ospp.protocol.capacity` (the cap on open connections).
"""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import Any

from ospp.core.canonical import MAX_DEPTH, too_deep
from ospp.core.endpoint import Endpoint
from ospp.core.errors import E_NO_CONNECTION, N_, NetworkError

VERSION = 1
MAX_FRAME = 64 * 1024
IDLE_TIMEOUT = 30.0
REQUEST_TIMEOUT = 10.0
HEADER = struct.Struct(">I")  # a frame's length


class FrameError(Exception):
    """A peer sent something that is not a valid frame."""


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode("utf-8")
    if len(body) > MAX_FRAME:
        raise FrameError(f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
    return HEADER.pack(len(body)) + body


def decode(body: bytes) -> dict[str, Any]:
    """One frame's body as a request or response object; FrameError says what is wrong.

    JSON nested deeper than the parser's recursion limit, or a number with more digits than
    Python converts (4,300), is refused like any other malformed frame.
    """
    try:
        message = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise FrameError(f"frame is not UTF-8 JSON: {exc}") from exc
    except RecursionError:
        raise FrameError("frame is not ospp JSON: nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError, or an integer too long to convert
        if isinstance(exc, json.JSONDecodeError):
            raise FrameError(f"frame is not UTF-8 JSON: {exc}") from exc
        raise FrameError("frame is not ospp JSON: a number is too long") from None
    if not isinstance(message, dict):
        raise FrameError("frame is not a JSON object")
    version = message.get("v")
    if type(version) is not int or version != VERSION:  # true == 1 in Python: not a version
        raise FrameError(f"protocol version {shown(version)} is not {VERSION}")
    return message


def shown(value: object, limit: int = 40) -> str:
    """A peer's value for a message: repr (control characters escaped), cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_refusal(response: dict[str, Any]) -> None:
    """Raise FrameError unless the answer says ``"ok": true`` or ``false``, and a failure
    answer's ``code`` is an error code (a 32-bit HRESULT with its failure bit set).

    A missing code is allowed (callers supply their default); anything else that is not such
    an integer (a string, a list, a boolean, 10**30, a success code such as 0x4004F040) is a
    protocol error.
    """
    ok = response.get("ok")
    if ok is True:
        return
    if "ok" not in response:
        raise FrameError('answer carries no "ok"')
    if ok is not False:
        raise FrameError(f"answer carries ok={shown(ok)}, not true or false")
    if response.get("message") is not None:
        response["message"] = _refusal_text(response["message"])
    if "code" not in response:
        return
    code = response["code"]
    if type(code) is not int or not 1 << 31 <= code < 1 << 32:
        raise FrameError(f"error answer carries {shown(code)}, not a licensing error code")


MAX_REFUSAL = 1000  # characters of a peer's refusal message kept; it is quoted, stored, shown


def _refusal_text(message: object) -> str:
    """A peer's refusal message as text that can be stored and printed: a lone surrogate
    (JSON ``"\\ud800"``), which neither SQLite nor a UTF-8 terminal takes, becomes its
    escape; anything but a string, its repr; cut short. Control characters stay, for
    ``printable`` to escape where it is shown."""
    text = message if isinstance(message, str) else repr(message)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= MAX_REFUSAL else text[: MAX_REFUSAL - 3] + "..."


def error_response(code: int, message: str) -> dict[str, Any]:
    return {"v": VERSION, "ok": False, "code": code, "message": message}


# -- client --------------------------------------------------------------------------------------


class Connection:
    """A blocking client connection; one absolute deadline per request."""

    def __init__(self, endpoint: Endpoint, what: str, timeout: float = REQUEST_TIMEOUT) -> None:
        self.endpoint = endpoint
        self.what = what
        self.timeout = timeout
        try:
            self.sock = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
        except (OSError, UnicodeError) as exc:
            # UnicodeError: a name the resolver cannot even encode (a label over 63 characters,
            # an empty one), as an SRV target a nameserver sent may be
            why = exc.strerror if isinstance(exc, OSError) else None
            raise NetworkError(
                E_NO_CONNECTION,
                N_(
                    "cannot reach the {what} at {endpoint}: {why}",
                    what=what,
                    endpoint=str(endpoint),
                    why=str(why or exc),
                ),
                N_("Check the address and that the server runs."),
            ) from exc
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _recv_exactly(self, n: int, deadline: float) -> bytes:
        chunks = bytearray()
        while len(chunks) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(n - len(chunks))
            if not chunk:
                raise ConnectionError("connection closed by the server")
            chunks += chunk
        return bytes(chunks)

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        try:
            self.sock.sendall(encode({"v": VERSION, **request}))
            (length,) = HEADER.unpack(self._recv_exactly(4, deadline))
            if length > MAX_FRAME:
                raise FrameError(f"response frame of {length} bytes exceeds {MAX_FRAME}")
            response = decode(self._recv_exactly(length, deadline))
            if too_deep(response):  # it would be stored, sealed and verified: refused here
                raise FrameError(f"the answer nests more than {MAX_DEPTH} levels deep")
            check_refusal(response)
        except (OSError, TimeoutError, FrameError) as exc:
            raise NetworkError(
                E_NO_CONNECTION,
                N_(
                    "the {what} at {endpoint} did not answer properly: {why}",
                    what=self.what,
                    endpoint=str(self.endpoint),
                    why=self._why(exc),
                ),
            ) from exc
        return response

    def _why(self, exc: BaseException) -> str:
        """What went wrong with a request, in words rather than an exception's class name."""
        if isinstance(exc, TimeoutError):
            return f"no answer within {self.timeout:g} seconds"
        if isinstance(exc, FrameError):
            return str(exc)
        if isinstance(exc, OSError) and exc.strerror:
            return exc.strerror.lower()  # "Connection reset by peer", as errno names it
        return str(exc) or type(exc).__name__

    def quiet(self) -> bool:
        """Whether nothing has arrived since the last answer was read: a kept connection may
        carry the next request only then. Something waiting is either the server's end of
        the connection (it closed it) or a frame nobody asked for, which the next request
        would read as its answer."""
        import select

        try:
            if hasattr(select, "poll"):  # select() cannot watch a descriptor past FD_SETSIZE
                poller = select.poll()
                poller.register(self.sock, select.POLLIN)
                return not poller.poll(0)
            readable, _, _ = select.select([self.sock], [], [], 0)  # Windows
        except (OSError, ValueError):  # closed meanwhile
            return False
        return not readable

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
