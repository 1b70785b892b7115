"""The status port's answers: a client that asks for a page and never reads it is dropped after
SEND_TIMEOUT, at most MAX_SENDING answers are sent at once, and meanwhile the KMS port and the
status page answer everyone else. Real ``ospp kms serve --http`` processes on 127.0.0.1, with
the two limits set small in the process (``ospp.core.httpd``'s module constants)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from ospp.core import httpd
from ospp.core.endpoint import Endpoint
from ospp.protocol.wire import Connection
from tests.conftest import Ospp
from tests.kmsutil import make_host, raw_request

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the TCP state of a socket (TCP_INFO)"
)

# ``python -c LAUNCH SEND_TIMEOUT MAX_SENDING ospp-arguments...``: ``ospp`` with the status
# side's limits set for the test.
LAUNCH = (
    "import sys\n"
    "import ospp.core.httpd as httpd\n"
    "httpd.SEND_TIMEOUT = float(sys.argv.pop(1))\n"
    "httpd.MAX_SENDING = int(sys.argv.pop(1))\n"
    "from ospp.cli import main\n"
    "main()\n"
)
# What a slow, distant client looks like: the smallest receive buffer and a small segment size.
# The host's kernel sizes its send buffer from the segment size: with loopback's 64 KiB segments
# it would take megabytes of an answer before the host's own buffer held any; with 300-byte
# segments Linux takes about 17 KB (``absorbed`` measures it, the test checks the page is
# larger).
RCVBUF = 1024
MSS = 300
TCP_ESTABLISHED = 1
TCP_CLOSE = 7


@dataclass
class Served:
    proc: subprocess.Popen[str]
    port: int
    http: str  # host:port
    stderr: list[str]  # the operational log, once the process has stopped


@contextmanager
def served(ospp: Ospp, send_timeout: float, max_sending: int) -> Iterator[Served]:
    env = {**os.environ, **ospp.env}
    env.pop("OSPP_NOW", None)
    args = ["kms", "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"]
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, str(send_timeout), str(max_sending), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    stderr: list[str] = []
    try:
        listening = proc.stdout.readline().split()
        assert listening[:1] == ["LISTENING"], listening
        http = proc.stdout.readline().split()
        assert http[:1] == ["HTTP"], http
        yield Served(proc, int(listening[1]), http[1], stderr)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        stderr += proc.stderr.read().splitlines()  # the operational log, for the test to read
        proc.stderr.close()
        proc.stdout.close()


def get(url: str) -> tuple[int, str, str]:
    """Status, content type and body; the body read whole (urllib checks its length)."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.headers["Content-Type"], resp.read().decode()


def store_wide_clients(port: int) -> None:
    """Fifty clients whose workstation name is made of quotes (six bytes each once escaped;
    a CMID is a GUID): the first page of clients is as large as a client can make it."""
    with Connection(Endpoint("127.0.0.1", port), "KMS host", 10) as conn:
        for i in range(50):
            cmid = f"00000000-0000-4000-8000-{i:012d}"
            assert conn.call(raw_request(cmid, workstation='"' * 60 + f"{i:04d}"))["ok"]


def slow_client() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, MSS)
    s.settimeout(10)
    return s


def stalled(http: str) -> socket.socket:
    """A client that asks for the status page and never reads: returned once the host has
    started sending it (a byte of the answer has arrived)."""
    host, port = http.rsplit(":", 1)
    s = slow_client()
    s.connect((host, int(port)))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert s.recv(1, socket.MSG_PEEK) == b"H"
    return s


def state(s: socket.socket) -> int:
    """The socket's TCP state (Linux's struct tcp_info begins with it)."""
    return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def absorbed() -> int:
    """What the kernel takes of an answer to a client like ``slow_client`` before the sender's
    own buffer holds any of it: the sender's and the receiver's socket buffers."""
    with socket.create_server(("127.0.0.1", 0)) as server, slow_client() as client:
        client.connect(server.getsockname())
        sender, _ = server.accept()
        with sender:
            sender.setblocking(False)
            taken = 0
            for _ in range(3):  # the kernel grows the send buffer as the connection starts
                try:
                    for _ in range(2048):  # 8 MiB at most
                        taken += sender.send(b"x" * 4096)
                except BlockingIOError:
                    time.sleep(0.2)
            return taken


def read_all(s: socket.socket) -> tuple[bytes, bool]:
    """Everything the client can still read, and whether the connection was reset."""
    data = b""
    try:
        for _ in range(10_000):  # the host sends less than a megabyte, then closes
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        return data, True
    return data, False


def content_length(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower().split("\r\n")
    return int(next(line.split(":", 1)[1] for line in head if line.startswith("content-length:")))


def test_a_client_that_never_reads_its_answer_is_dropped_after_the_deadline(ospp: Ospp) -> None:
    make_host(ospp)
    deadline = 2.0
    with served(ospp, deadline, 16) as host:
        store_wide_clients(host.port)
        status, _, page = get(f"http://{host.http}/")
        kernel = absorbed()
        assert status == 200 and len(page.encode()) > 2 * kernel, (len(page), kernel)
        started = time.monotonic()
        slow = [stalled(host.http) for _ in range(3)]
        try:
            # meanwhile the KMS port and the status page answer
            with Connection(Endpoint("127.0.0.1", host.port), "KMS host", 10) as conn:
                assert conn.call(raw_request())["ok"] is True
            assert get(f"http://{host.http}/healthz")[0] == 200
            status, _, again = get(f"http://{host.http}/")
            assert status == 200 and again.endswith("</html>"), again[-200:]
            # the stalled clients are dropped: reset by the host, after the deadline
            first_drop = None
            while time.monotonic() - started < deadline + 15:
                states = [state(s) for s in slow]
                if first_drop is None and states != [TCP_ESTABLISHED] * 3:
                    first_drop = time.monotonic() - started
                if states == [TCP_CLOSE] * 3:
                    break
                time.sleep(0.05)
            assert [state(s) for s in slow] == [TCP_CLOSE] * 3
            assert first_drop is not None and first_drop >= deadline, first_drop
            for s in slow:
                data, reset = read_all(s)
                # cut short: a graceful close would have delivered the whole answer
                assert reset or len(data) < len(page.encode()), (len(data), reset)
        finally:
            for s in slow:
                s.close()
        assert get(f"http://{host.http}/healthz")[0] == 200
    said = "\n".join(host.stderr)
    assert "Traceback" not in said, said
    assert said.count("did not take its answer within 2 s") == 1, said


def test_beyond_max_sending_the_answer_sending_longest_is_dropped(ospp: Ospp) -> None:
    make_host(ospp)
    with served(ospp, 60.0, 2) as host:
        store_wide_clients(host.port)
        slow: list[socket.socket] = []
        try:
            for _ in range(4):
                slow.append(stalled(host.http))
            # the first two made room for the next two, long before the deadline
            started = time.monotonic()
            while time.monotonic() - started < 10 and state(slow[1]) != TCP_CLOSE:
                time.sleep(0.05)
            assert [state(s) for s in slow] == [TCP_CLOSE] * 2 + [TCP_ESTABLISHED] * 2
            # a scraper that reads gets the whole page (and makes room for itself the same way)
            status, _, page = get(f"http://{host.http}/")
            assert status == 200 and page.endswith("</html>"), page[-200:]
            with Connection(Endpoint("127.0.0.1", host.port), "KMS host", 10) as conn:
                assert conn.call(raw_request())["ok"] is True
            assert state(slow[3]) == TCP_ESTABLISHED
            # the newest stalled client still gets its whole answer once it reads
            data, reset = read_all(slow[3])
            assert not reset and data.startswith(b"HTTP/1.1 200 ")
            assert len(data.split(b"\r\n\r\n", 1)[1]) == content_length(data)
        finally:
            for s in slow:
                s.close()
    said = "\n".join(host.stderr)
    assert "Traceback" not in said, said
    assert said.count("dropped the one sending longest") == 1, said


def test_beyond_max_answering_a_request_is_answered_503_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Requests the application is still answering are bounded: the next one gets 503 and
    Retry-After at once, and once they are answered new requests are served again. A real
    server on 127.0.0.1; the application holds its answers until the test lets them go."""
    monkeypatch.setattr(httpd, "MAX_ANSWERING", 3)

    async def scenario() -> list[bytes]:
        release = asyncio.Event()
        started: list[str] = []

        async def app(request: httpd.Request) -> httpd.Response:
            started.append(request.path)
            await release.wait()
            return httpd.text(200, "page\n")

        server = await httpd.start(app, Endpoint("127.0.0.1", 0))
        port = server.sockets[0].getsockname()[1]

        async def fetch() -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            return data

        held = [asyncio.ensure_future(fetch()) for _ in range(3)]
        for _ in range(500):  # until the three are in the application
            if len(started) == 3:
                break
            await asyncio.sleep(0.01)
        busy = await fetch()  # answered while the three wait
        release.set()
        answers = [*(await asyncio.gather(*held)), busy, await fetch()]
        server.close()
        await server.wait_closed()
        assert started == ["/"] * 4
        return answers

    answers = asyncio.run(scenario())
    assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 3 + [
        b"HTTP/1.1 503 Service Unavailable",
        b"HTTP/1.1 200 OK",
    ]
    assert b"\r\nRetry-After: 1\r\n" in answers[3] and answers[3].endswith(b"try again\n")
