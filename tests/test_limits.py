"""A KMS host short of file descriptors: idle connection floods under a low ``ulimit -n``."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ospp.core.endpoint import Endpoint
from ospp.protocol.wire import Connection
from tests.conftest import Ospp
from tests.kmsutil import make_host, raw_request

resource = pytest.importorskip("resource")  # POSIX only: Windows has no ulimit


def kms_request() -> dict[str, Any]:
    return raw_request(workstation="limits")


def serve_with_nofile(
    ospp: Ospp, tmp_path: Path, nofile: int, *extra: str
) -> tuple[subprocess.Popen[str], int, Path]:
    """``ospp kms serve`` as a child whose RLIMIT_NOFILE is ``nofile`` (as ``ulimit -n``)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    err = tmp_path / "serve.stderr"
    env = {**os.environ, **ospp.env}
    env.pop("OSPP_NOW", None)
    args = ["kms", "serve", "--listen", "127.0.0.1:0", "--log", str(tmp_path / "requests.log")]
    with err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ospp", *args, *extra],
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            preexec_fn=limit,
        )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("LISTENING "), line + err.read_text()
    return proc, int(line.split()[1]), err


@pytest.mark.parametrize(
    "extra",
    [(), ("--max-connections", "1000")],
    ids=["default cap", "cap above the file limit"],
)
def test_idle_flood_under_a_low_file_limit_leaves_room_for_clients(
    ospp: Ospp, tmp_path: Path, extra: tuple[str, ...]
):
    """``ulimit -n 200`` and 800 idle connections: clients still activate, the log stays short.

    With the default cap the host never runs out of descriptors; with a cap set too high it
    does, and then sheds idle connections, saying so once per interval."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1024 and (hard == resource.RLIM_INFINITY or hard >= 1024):
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    elif soft < 1024:
        pytest.skip("this test opens 1,000 sockets of its own")
    make_host(ospp)
    proc, port, err = serve_with_nofile(ospp, tmp_path, 200, *extra)
    idle: list[socket.socket] = []
    try:
        for _ in range(400):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        started = time.monotonic()
        for _ in range(5):
            with Connection(Endpoint("127.0.0.1", port), "KMS host", 10) as conn:
                assert conn.call(kms_request())["ok"] is True
        took = time.monotonic() - started
        # a second wave while the first is still connected
        for _ in range(400):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        with Connection(Endpoint("127.0.0.1", port), "KMS host", 10) as conn:
            for _ in range(3):
                assert conn.call(kms_request())["ok"] is True
        time.sleep(2)
        assert proc.poll() is None
    finally:
        for s in idle:
            s.close()
        proc.terminate()
        code = proc.wait(timeout=30)
    said = err.read_text()
    assert code == 0, said[-2000:]
    assert "Traceback" not in said
    assert len(said) < 4000, said[:2000]  # one line per condition per interval, not per accept
    assert took < 10, took


def test_max_connections_closes_the_longest_idle(ospp: Ospp, tmp_path: Path):
    make_host(ospp)
    proc, port, err = serve_with_nofile(ospp, tmp_path, 1024, "--max-connections", "20")
    idle: list[socket.socket] = []
    try:
        for _ in range(20):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            time.sleep(0.01)
        with Connection(Endpoint("127.0.0.1", port), "KMS host", 10) as conn:
            assert conn.call(kms_request())["ok"] is True
        idle[0].settimeout(5)
        assert idle[0].recv(1) == b""  # the longest idle made room for the newcomer
        idle[-1].settimeout(0.5)
        with pytest.raises(TimeoutError):
            idle[-1].recv(1)  # the most recent ones stay open
    finally:
        for s in idle:
            s.close()
        proc.terminate()
        proc.wait(timeout=30)
    assert "Traceback" not in err.read_text()


def ping_frames(n: int) -> bytes:
    """``n`` kms-ping requests (each answered with a signed pong of about 300 bytes)."""
    body = json.dumps({"v": 1, "op": "kms-ping", "nonce": "n" * 32}).encode()
    return (struct.pack(">I", len(body)) + body) * n


def non_reader(port: int) -> socket.socket:
    """A client that sends thousands of requests at once and never reads an answer: the
    host stops reading from it once its answers fill the buffers."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    data = ping_frames(4000)
    sent = 0
    with contextlib.suppress(BlockingIOError):
        while sent < len(data):
            sent += s.send(data[sent:])
    return s


def reset_within(s: socket.socket, seconds: float) -> bool:
    """Whether the host reset ``s`` within ``seconds`` (its TCP state, Linux's TCP_INFO)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] == TCP_CLOSE:
            return True
        time.sleep(0.05)
    return False


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


TCP_CLOSE = 7


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_INFO and /proc")
@pytest.mark.parametrize("how", ["idle timeout", "cap"])
def test_a_client_that_never_reads_is_reset_and_its_descriptor_freed(
    ospp: Ospp, tmp_path: Path, how: str
) -> None:
    """A graceful close would wait for ever on a peer that does not read: the idle timeout
    and the cap reset it instead, and the host gets its descriptor back."""
    make_host(ospp)
    extra = ("--idle-timeout", "1") if how == "idle timeout" else ("--max-connections", "8")
    proc, port, err = serve_with_nofile(ospp, tmp_path, 1024, *extra)
    fresh: list[socket.socket] = []
    stuck = None
    try:
        with Connection(Endpoint("127.0.0.1", port), "KMS host", 10) as conn:
            assert conn.call(kms_request())["ok"] is True
        time.sleep(0.2)
        before = descriptors(proc.pid)
        stuck = non_reader(port)
        time.sleep(0.5)  # answered up to the full buffers
        if how == "cap":
            for _ in range(10):  # newcomers push the stuck one out
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(ping_frames(1))
                assert s.recv(4)
                fresh.append(s)
        assert reset_within(stuck, 15)
        for s in fresh:
            s.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and descriptors(proc.pid) > before:
            time.sleep(0.05)
        assert descriptors(proc.pid) <= before
    finally:
        for s in fresh:
            s.close()
        if stuck is not None:
            stuck.close()
        proc.terminate()
        proc.wait(timeout=30)
    assert "Traceback" not in err.read_text()
