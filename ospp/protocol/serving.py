"""The server side of the ospp wire protocol (:mod:`ospp.protocol.wire`), for the KMS host and
the activation authority alike: listening on one or several addresses sharing a port, serving
until stopped, and the addresses bound. Each connection is :mod:`ospp.protocol.connection`
(frames in and answers out in order, the idle timeout, flow control); the cap on open
connections is :mod:`ospp.protocol.capacity`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
from collections.abc import Callable, Sequence

from ospp.core.endpoint import Endpoint, listen_failure
from ospp.core.errors import NetworkError
from ospp.protocol.capacity import (
    ACCEPT_BURST,
    LISTEN_BACKLOG,
    Gauge,
    default_max_connections,
    quiet_accept_errors,
)
from ospp.protocol.connection import FrameProtocol, Handler, Reply
from ospp.protocol.wire import IDLE_TIMEOUT

__all__ = ["Gauge", "Handler", "Reply", "default_max_connections"]

Listen = str | Sequence[str]  # one host, several (one port for all), or "" for every address


def _hosts(host: Listen) -> str | list[str] | None:
    """What asyncio takes: a host, a list of hosts, or None for all addresses (IPv4 and IPv6)."""
    if isinstance(host, str):
        return host or None
    hosts = list(host)
    if "" in hosts or not hosts:
        return None
    return hosts[0] if len(hosts) == 1 else hosts


def _free_port(hosts: list[str] | None) -> int:
    """A port free on the first address, for several sockets that must share one port."""
    family, kind, proto, _, address = socket.getaddrinfo(
        hosts[0] if hosts else None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, kind, proto) as probe:
        probe.bind(address)
        port: int = probe.getsockname()[1]
        return port


async def start(
    handler: Handler,
    host: Listen,
    port: int,
    idle_timeout: float = IDLE_TIMEOUT,
    gauge: Gauge | None = None,
) -> asyncio.Server:
    """Listen on host:port (port 0 picks a free one); IPv6 literals work, [::1] included.

    ``host`` may be several addresses, or "" for every address of both families (dual
    stack); they all share one port, port 0 included. A host or address family this machine
    lacks (IPv6 on an IPv4-only machine) raises NetworkError instead of crashing.
    """
    loop = asyncio.get_running_loop()
    counter = gauge or Gauge()
    quiet_accept_errors(loop, counter)
    hosts = _hosts(host)
    shared = port == 0 and not isinstance(hosts, str)
    for attempt in range(5):
        try:
            chosen = _free_port(hosts) if shared and not isinstance(hosts, str) else port
            server = await loop.create_server(
                lambda: FrameProtocol(handler, idle_timeout, counter),
                hosts,
                chosen,
                backlog=ACCEPT_BURST,
                reuse_address=True,
            )
            break
        except OSError as exc:
            if shared and attempt < 4 and exc.errno == errno.EADDRINUSE:
                continue  # another process took the probed port meanwhile
            where = ", ".join(
                str(Endpoint(h or "*", port)) for h in ([host] if isinstance(host, str) else host)
            )
            raise NetworkError(
                listen_failure(exc),
                f"cannot listen on {where}: {exc.strerror or exc}",
                "Check that the address exists on this machine (IPv6 may be off) and the port "
                "is free.",
            ) from exc
    else:
        raise AssertionError("unreachable")
    counter.listening.update(sock.fileno() for sock in server.sockets)
    # asyncio accepts as many connections per wake-up as its backlog argument: keep that small
    # (the cap's overshoot), and give the kernel's queue of waiting connections its full size.
    for sock in server.sockets:
        with contextlib.suppress(OSError), socket.socket(fileno=os.dup(sock.fileno())) as dup:
            dup.listen(LISTEN_BACKLOG)
    return server


async def serve_until_stopped(
    handler: Handler,
    host: Listen,
    port: int,
    ready: Callable[[asyncio.Server], None],
    idle_timeout: float = IDLE_TIMEOUT,
    gauge: Gauge | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT; ``ready`` runs once listening (it prints the port).

    The signal handlers go in before the socket listens, so a supervisor that stops the server
    as soon as it reports ready still gets a clean shutdown. (Windows has no signal handlers in
    asyncio: there Ctrl+C raises KeyboardInterrupt instead.)
    """
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    server = await start(handler, host, port, idle_timeout, gauge)
    ready(server)
    async with server:
        await stop.wait()


def bound_address(server: asyncio.Server) -> tuple[str, int]:
    """What a server listens on, shown as admins write it ([v6]:port or v4:port)."""
    host, port = server.sockets[0].getsockname()[:2]
    return (f"[{host}]" if ":" in host else host), port


def bound_addresses(server: asyncio.Server) -> list[str]:
    """Every address a server listens on, as admins write them."""
    out = []
    for sock in server.sockets:
        host, port = sock.getsockname()[:2]
        out.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return out
