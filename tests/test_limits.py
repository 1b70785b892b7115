"""A KMS host short of file descriptors: idle connection floods under a low ``ulimit -n``."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
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
    resets it instead, and the host gets its descriptor back. At the cap, connections that
    are idle make room first (a peer still being sent its answers is not idle); the one that
    does not read is reset at its idle timeout all the same."""
    make_host(ospp)
    extra: tuple[str, ...] = ("--idle-timeout", "1")
    if how == "cap":
        extra = ("--idle-timeout", "5", "--max-connections", "8")
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
            for _ in range(10):  # newcomers push idle connections out, not the stuck one
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(ping_frames(1))
                assert s.recv(4)
                fresh.append(s)
            fresh[0].settimeout(5)
            assert fresh[0].recv(1 << 16) and fresh[0].recv(1) == b""  # closed to make room
            assert not reset_within(stuck, 0.1)
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


def _read_answers(s: socket.socket, count: int, chunk: int, pause: float) -> list[str]:
    """Read ``count`` ping answers, ``chunk`` bytes every ``pause`` seconds (a slow reader);
    their nonces, in order."""
    data = bytearray()
    nonces: list[str] = []
    s.settimeout(10)
    deadline = time.monotonic() + 120
    while len(nonces) < count and time.monotonic() < deadline:
        got = s.recv(chunk)
        if not got:
            break
        data += got
        while len(data) >= 4:
            (n,) = struct.unpack(">I", data[:4])
            if len(data) < 4 + n:
                break
            nonces.append(json.loads(bytes(data[4 : 4 + n]))["nonce"])
            del data[: 4 + n]
        time.sleep(pause)
    return nonces


def _pings(names: list[str]) -> bytes:
    out = bytearray()
    for name in names:
        body = json.dumps({"v": 1, "op": "kms-ping", "nonce": name}).encode()
        out += struct.pack(">I", len(body)) + body
    return bytes(out)


@pytest.mark.parametrize("how", ["slow reader", "streaming reader at the cap"])
def test_a_client_taking_its_answers_slowly_is_neither_idle_nor_evicted(
    ospp: Ospp, tmp_path: Path, how: str
) -> None:
    """A client that pipelines thousands of requests and reads their answers slowly is not
    idle while it reads, and at the cap idle connections make room before it does."""
    make_host(ospp)
    extra = ("--idle-timeout", "2", "--max-connections", "3" if how != "slow reader" else "50")
    proc, port, err = serve_with_nofile(ospp, tmp_path, 1024, *extra)
    others: list[socket.socket] = []
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        names = [f"n{i:05d}" for i in range(6000)]
        sender = threading.Thread(target=s.sendall, args=(_pings(names),))
        sender.start()
        if how != "slow reader":
            for _ in range(3):  # idle clients: one ping each, then nothing
                o = socket.create_connection(("127.0.0.1", port), timeout=10)
                o.sendall(_pings(["idle"]))
                assert o.recv(4)
                others.append(o)
        got = _read_answers(s, len(names), 4096, 0.01)
        sender.join(30)
        assert got == names
        s.close()
    finally:
        for o in others:
            o.close()
        proc.terminate()
        proc.wait(timeout=30)
    assert "Traceback" not in err.read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_INFO and /proc")
def test_a_client_that_half_closes_and_never_reads_is_reset_after_the_grace(
    ospp: Ospp, tmp_path: Path
) -> None:
    """Its answers fit in the kernel's buffers: closing the socket would leave them there,
    retried for minutes. The host keeps the connection while they are taken, and resets it
    when none has been for the drain limit (the idle timeout, at least REQUEST_TIMEOUT)."""
    make_host(ospp)
    proc, port, err = serve_with_nofile(ospp, tmp_path, 1024, "--idle-timeout", "5")
    try:
        before = descriptors(proc.pid)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        s.connect(("127.0.0.1", port))
        s.sendall(_pings([f"h{i}" for i in range(500)]))
        s.shutdown(socket.SHUT_WR)
        started = time.monotonic()
        assert reset_within(s, 30)
        assert time.monotonic() - started >= 5  # it had its grace first
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and descriptors(proc.pid) > before:
            time.sleep(0.05)
        assert descriptors(proc.pid) <= before
        s.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "Traceback" not in err.read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_INFO and /proc")
def test_connections_draining_after_a_half_close_count_against_the_cap(
    ospp: Ospp, tmp_path: Path
) -> None:
    """A half-closed connection whose answers are not taken still holds a descriptor: it
    counts against the cap, and newcomers reset it first."""
    make_host(ospp)
    proc, port, err = serve_with_nofile(ospp, tmp_path, 1024, "--max-connections", "4")
    draining: list[socket.socket] = []
    fresh: list[socket.socket] = []
    try:
        for i in range(4):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
            s.connect(("127.0.0.1", port))
            s.sendall(_pings([f"d{i}-{j}" for j in range(300)]))
            s.shutdown(socket.SHUT_WR)
            draining.append(s)
        time.sleep(0.5)
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(_pings(["fresh"]))
            assert s.recv(4)
            fresh.append(s)
        assert all(reset_within(s, 5) for s in draining)
        assert descriptors(proc.pid) < 40
    finally:
        for s in draining + fresh:
            s.close()
        proc.terminate()
        proc.wait(timeout=30)
    assert "Traceback" not in err.read_text()
