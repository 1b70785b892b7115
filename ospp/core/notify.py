"""The systemd readiness protocol (sd_notify), without a dependency.

A service started with ``Type=notify`` finds ``NOTIFY_SOCKET`` in its environment: a datagram
socket path, or an abstract socket written with a leading ``@``. Each message is one datagram
of newline-separated ``NAME=value`` fields: ``READY=1`` once the service answers, ``STATUS=``
free text for ``systemctl status``, ``RELOADING=1``, ``STOPPING=1``. Without the variable (not
under systemd, or on Windows) every call does nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class Notifier:
    """Sends sd_notify messages to ``NOTIFY_SOCKET``; a no-op when it is unset."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        target = env.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = None
        self.error: str | None = None  # the last send failure, for a one-time log line
        if not target or not hasattr(socket, "AF_UNIX"):
            return
        if target.startswith("@"):
            self.address = b"\0" + target[1:].encode()
        elif target.startswith("/"):
            self.address = target
        else:
            self.error = f"NOTIFY_SOCKET={target!r} is neither a path nor an abstract socket"

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str | int) -> bool:
        """Send one message, e.g. ``send(READY=1, STATUS="serving")``; True if it went out."""
        if self.address is None:
            return False
        text = "\n".join(f"{name}={value}" for name, value in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(text.encode("utf-8"), self.address)
        except OSError as exc:
            self.error = f"cannot notify {self.address!r}: {exc.strerror or exc}"
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY=1, STATUS=status, MAINPID=os.getpid())

    def status(self, status: str) -> bool:
        return self.send(STATUS=status)

    def stopping(self) -> bool:
        return self.send(STOPPING=1, STATUS="stopping")
