"""Drive an ospp console in a pseudo-terminal, as a person at a keyboard would (POSIX only)."""

from __future__ import annotations

import os
import re
import select
import signal
import sys
import time


class Terminal:
    """``python -m ospp ARGS`` on its own pseudo-terminal (its controlling terminal, so that
    typing Ctrl+C sends SIGINT as a real terminal does)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        import pty

        pid, fd = pty.fork()
        if pid == 0:  # the child: becomes ospp
            try:
                os.execve(sys.executable, [sys.executable, "-m", "ospp", *args], env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.seen = ""  # everything the terminal showed
        self._pos = 0  # where the next expect() starts looking
        self.status: int | None = None

    def _read(self, until: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], max(0.0, until - time.monotonic()))
        if not ready:
            return False
        try:
            data = os.read(self.fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            return False
        if not data:
            return False
        self.seen += data.decode("utf-8", errors="replace").replace("\r\n", "\n")
        return True

    def expect(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        """Wait until ``pattern`` (a regex) shows after the last match; return the match."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            found = regex.search(self.seen, self._pos)
            if found:
                self._pos = found.end()
                return found
            got = time.monotonic() < deadline and self._read(deadline)
            if not got and (time.monotonic() >= deadline or not self._alive()):
                raise AssertionError(f"{pattern!r} not shown; the terminal showed:\n{self.seen}")

    def _alive(self) -> bool:
        return self.wait(0) is None

    def type(self, line: str) -> None:
        os.write(self.fd, (line + "\r").encode())

    def ctrl_c(self) -> None:
        os.write(self.fd, b"\x03")

    def wait(self, timeout: float = 30) -> int | None:
        """The exit status, once the program ended (None if still running after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                while self._read(time.monotonic() + 0.2):
                    pass
                break
            if time.monotonic() >= deadline:
                return None
            self._read(time.monotonic() + 0.05)
        return self.status

    def close(self) -> None:
        if self.status is None and self.wait(0) is None:
            os.kill(self.pid, signal.SIGKILL)
            self.wait(10)
        os.close(self.fd)
