"""Dropping a connection at once, for the servers (the KMS and authority ports, the status
port): the unsent part of an answer is freed and the peer gets a reset, rather than the
kernel keeping what it took, and retrying it, for a peer that does not read; and how much
of its answers a peer has not taken yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import sys
from collections.abc import Callable


def reset(transport: asyncio.WriteTransport) -> None:
    """Abort ``transport`` with SO_LINGER 0: no graceful close waiting on the peer."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.fileno() >= 0:
        linger = struct.pack("hh" if sys.platform == "win32" else "ii", 1, 0)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    transport.abort()


_ioctl: Callable[[int, int, bytes], bytes] | None
try:  # imported once: a failed import is not remembered, and this is asked often
    import fcntl
    import termios

    _ioctl, _OUTQ = fcntl.ioctl, termios.TIOCOUTQ
except (ImportError, AttributeError):  # Windows; a system without TIOCOUTQ
    _ioctl, _OUTQ = None, 0


def unsent_bytes(sock: socket.socket | None) -> int:
    """Bytes the kernel still holds for the peer (sent but not acknowledged, or not sent):
    Linux's SIOCOUTQ. 0 where the system does not tell (Windows, a closed socket)."""
    if sock is None or _ioctl is None:
        return 0
    try:
        fd = sock.fileno()
        if fd < 0:
            return 0
        queued: int = struct.unpack("i", _ioctl(fd, _OUTQ, b"\0" * 4))[0]
    except (OSError, AttributeError):  # not a socket the call knows; no TIOCOUTQ here
        return 0
    return queued
