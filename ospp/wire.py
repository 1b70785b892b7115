"""The ospp wire protocol: length-prefixed JSON frames over TCP (docs/PROTOCOL.md).

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON, at most
MAX_FRAME bytes. Every request carries ``"v": 1`` and an ``"op"``; every response carries
``"v": 1`` and ``"ok"``, and on failure ``"code"`` (the licensing code) and ``"message"``.
A connection may carry any number of requests, answered in order; a server closes a connection
idle for IDLE_TIMEOUT seconds.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ospp.endpoint import Endpoint
from ospp.errors import NetworkError, OsppError

VERSION = 1
MAX_FRAME = 64 * 1024
IDLE_TIMEOUT = 30.0
REQUEST_TIMEOUT = 10.0
E_NO_CONNECTION = 0x80072EFD
E_BAD_FRAME = 0xC004F02C

_HEADER = struct.Struct(">I")


class FrameError(Exception):
    """A peer sent something that is not a valid frame."""


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode("utf-8")
    if len(body) > MAX_FRAME:
        raise FrameError(f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
    return _HEADER.pack(len(body)) + body


def decode(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FrameError(f"frame is not UTF-8 JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise FrameError("frame is not a JSON object")
    if message.get("v") != VERSION:
        raise FrameError(f"protocol version {message.get('v')!r} is not {VERSION}")
    return message


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
        except OSError as exc:
            raise NetworkError(
                E_NO_CONNECTION,
                f"cannot reach the {what} at {endpoint}: {exc.strerror or exc}",
                "Check the address and that the server runs.",
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
            (length,) = _HEADER.unpack(self._recv_exactly(4, deadline))
            if length > MAX_FRAME:
                raise FrameError(f"response frame of {length} bytes exceeds {MAX_FRAME}")
            response = decode(self._recv_exactly(length, deadline))
        except (OSError, TimeoutError, FrameError) as exc:
            raise NetworkError(
                E_NO_CONNECTION,
                f"the {self.what} at {self.endpoint} did not answer properly: "
                f"{type(exc).__name__} {exc}",
            ) from exc
        return response

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- server --------------------------------------------------------------------------------------

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


async def _serve_connection(
    handler: Handler,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    idle_timeout: float,
) -> None:
    try:
        while True:
            try:
                header = await asyncio.wait_for(reader.readexactly(4), idle_timeout)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return
            (length,) = _HEADER.unpack(header)
            if length > MAX_FRAME:
                writer.write(encode(error_response(E_BAD_FRAME, f"frame exceeds {MAX_FRAME}")))
                await writer.drain()
                return
            try:
                body = await asyncio.wait_for(reader.readexactly(length), REQUEST_TIMEOUT)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return
            try:
                response = await handler(decode(body))
            except FrameError as exc:
                response = error_response(E_BAD_FRAME, str(exc))
            except OsppError as exc:
                response = error_response(exc.code, exc.message)
            writer.write(encode(response))
            await writer.drain()
    except ConnectionError:
        return
    finally:
        writer.close()


async def start(
    handler: Handler, host: str, port: int, idle_timeout: float = IDLE_TIMEOUT
) -> asyncio.Server:
    """Listen on host:port (port 0 picks a free one); IPv6 literals work, [::1] included.

    A host or address family this machine lacks (IPv6 on an IPv4-only machine) raises
    NetworkError instead of crashing.
    """

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await _serve_connection(handler, reader, writer, idle_timeout)

    try:
        return await asyncio.start_server(
            on_connect, host, port, limit=MAX_FRAME + 8, backlog=1024, reuse_address=True
        )
    except OSError as exc:
        raise NetworkError(
            E_NO_CONNECTION,
            f"cannot listen on {Endpoint(host, port)}: {exc.strerror or exc}",
            "Check that the address exists on this machine (IPv6 may be off) and the port is free.",
        ) from exc
