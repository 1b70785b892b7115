"""A relay that holds a request on its way to a real server: what another command does while
an activation is in flight can then be tested."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable


class GatedRelay:
    """A TCP relay on 127.0.0.1 to a real server (the authority, a KMS host) that reads the
    first request and sends it on only once ``release`` is set: an activation held while the
    server is asked."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.asked = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.server.settimeout(30)
        try:
            client, _ = self.server.accept()
        except TimeoutError:
            return
        with client, socket.create_connection(self.target, timeout=60) as upstream:
            client.settimeout(60)
            request = client.recv(65536)
            self.asked.set()
            self.release.wait(60)
            upstream.sendall(request)
            upstream.shutdown(socket.SHUT_WR)
            while data := upstream.recv(65536):
                client.sendall(data)

    def stop(self) -> None:
        self.release.set()
        self.thread.join(timeout=10)
        self.server.close()


def held(
    relay: GatedRelay, args: list[str], env: dict[str, str], meanwhile: Callable[[], None]
) -> tuple[int, str, str]:
    """Run ``python -m ospp ARGS`` whose request ``relay`` holds, do ``meanwhile`` while it is
    held, then let it go; the command's exit status, output and errors."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ospp", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert relay.asked.wait(30), proc.communicate(timeout=30)
        meanwhile()
        relay.release.set()
        out, err = proc.communicate(timeout=60)
    finally:
        relay.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err
