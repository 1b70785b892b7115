"""Run an ``ospp`` server (``kms serve``, ``center serve``) as a child process.

For the demo, the benchmarks and the tests: start it, wait for the ``LISTENING PORT`` line
every server prints once ready, and hand back the process and its port.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping


class ServerDidNotStart(RuntimeError):
    pass


def start_server(
    args: list[str], env: Mapping[str, str], stderr: int | None = None
) -> tuple[subprocess.Popen[str], int]:
    """Start ``ospp ARGS`` (a serve command with port 0) and return (process, bound port).

    ``stderr`` is where the server's own messages go: subprocess.PIPE to read them, or
    subprocess.DEVNULL; by default they are inherited.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "ospp", *args],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("LISTENING "):
        proc.kill()
        proc.wait(timeout=10)
        said = proc.stderr.read() if proc.stderr else ""
        raise ServerDidNotStart(f"ospp {' '.join(args)} did not start: {line!r} {said}")
    return proc, int(line.split()[1])
