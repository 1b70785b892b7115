"""The wire protocol under hostile frames: what a server answers, what a client accepts."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ospp.core.errors import E_BAD_FORMAT
from ospp.protocol import connection, serving, wire
from tests.conftest import Ospp, Ran
from tests.kmsutil import Host, make_host, raw_request


def request(**over: Any) -> dict[str, Any]:
    """A legitimate request as a raw frame carries it."""
    return raw_request(**{"v": 1, "workstation": "wire", **over})


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def read_frame(s: socket.socket) -> dict[str, Any]:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            if not chunk:
                raise ConnectionError(f"closed after {len(data)} of {n} bytes")
            data += chunk
        return data

    (length,) = struct.unpack(">I", exactly(4))
    answer: dict[str, Any] = json.loads(exactly(length))
    return answer


@pytest.fixture
def host(ospp: Ospp) -> Iterator[Host]:
    make_host(ospp)
    h = Host(ospp)
    yield h
    if h.alive():
        h.stop()


# -- frames the JSON parser refuses ---------------------------------------------------------


HOSTILE_BODIES = {
    "32,000 nested arrays (a full frame)": b"[" * 32_000 + b"]" * 32_000,
    "nested objects": b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    "nested inside a request": json.dumps(request())[:-1].encode()
    + b',"x":'
    + b"[" * 25_000
    + b"]" * 25_000
    + b"}",
    "a 5,000-digit integer": b'{"v":1,"op":"kms-activate","n":' + b"9" * 5000 + b"}",
    "a 5,000-digit version": b'{"v":' + b"1" * 5000 + b"}",
}


@pytest.mark.parametrize("name", list(HOSTILE_BODIES))
def test_frames_json_cannot_parse_get_the_documented_answer(ospp: Ospp, host: Host, name: str):
    with socket.create_connection(("127.0.0.1", host.port), timeout=10) as s:
        s.sendall(frame(HOSTILE_BODIES[name]))
        answer = read_frame(s)
        assert (answer["v"], answer["ok"], answer["code"]) == (1, False, E_BAD_FORMAT)
        assert "Traceback" not in answer["message"] and len(answer["message"]) < 200
        # the connection stays usable: the next request on it is answered
        s.sendall(frame(json.dumps(request()).encode()))
        assert read_frame(s)["ok"] is True
    assert "Traceback" not in stopped_stderr(host)


def stopped_stderr(host: Host) -> str:
    """Stop the host and return everything it wrote to stderr."""
    host.stop()
    return "\n".join(host.stderr_lines)


def test_version_must_be_the_integer_one(ospp: Ospp, host: Host):
    with socket.create_connection(("127.0.0.1", host.port), timeout=10) as s:
        for version in (True, 1.0, "1", [1], None):
            s.sendall(frame(json.dumps(request(v=version)).encode()))
            answer = read_frame(s)
            assert answer["ok"] is False and answer["code"] == E_BAD_FORMAT, version
        s.sendall(frame(json.dumps(request()).encode()))
        assert read_frame(s)["ok"] is True


def test_decode_refuses_a_boolean_version():
    with pytest.raises(wire.FrameError):
        wire.decode(b'{"v":true,"op":"x"}')
    assert wire.decode(b'{"v":1,"op":"x"}')["op"] == "x"


# -- frames across reads and connections ----------------------------------------------------


def padded(cmid: str, size: int) -> bytes:
    """A request frame whose body is exactly ``size`` bytes (an ignored field pads it)."""
    body = json.dumps(request(cmid=cmid, pad="")).encode()
    body = json.dumps(request(cmid=cmid, pad="x" * (size - len(body)))).encode()
    assert len(body) == size
    return frame(body)


def test_frames_split_and_joined_across_reads_and_connections_are_each_answered(host: Host):
    """The host reads every connection through one buffer: a full-size frame spans two reads,
    several frames share one, a frame trickles in byte by byte, and two connections'
    bytes interleave. Each frame is answered whole, on its own connection, in order."""
    cmids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(6)]
    big = padded(cmids[0], wire.MAX_FRAME)
    with (
        socket.create_connection(("127.0.0.1", host.port), timeout=10) as a,
        socket.create_connection(("127.0.0.1", host.port), timeout=10) as b,
    ):
        a.sendall(big + padded(cmids[1], 400) + padded(cmids[2], 5000))
        trickled = padded(cmids[3], 400)
        for i in range(0, len(trickled), 7):  # b's bytes arrive between a's frames
            b.sendall(trickled[i : i + 7])
        b.sendall(padded(cmids[4], wire.MAX_FRAME - 1) + padded(cmids[5], 500))
        got_a = [read_frame(a) for _ in range(3)]
        got_b = [read_frame(b) for _ in range(3)]
    for answer in got_a + got_b:
        assert answer["ok"] is True, answer
    assert [x["cmid"] for x in got_a] == cmids[:3]
    assert [x["cmid"] for x in got_b] == cmids[3:]


# -- error answers a client must not believe ----------------------------------------------


class FakePeer:
    """A server that answers every frame with one fixed body (a peer, so it may be fake)."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.1)  # a closed socket does not wake accept(): poll for the stop
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                try:
                    read_frame(conn)
                    conn.sendall(frame(self.body))
                except OSError:
                    pass

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
        self.sock.close()


def act_against(ospp: Ospp, body: bytes) -> Ran:
    """``ospp /act`` on a KMS client whose KMS host answers every request with ``body``."""
    peer = FakePeer(body)
    try:
        assert ospp("install-product", "ProPlus2021").code == 0
        assert ospp(f"/sethst:127.0.0.1:{peer.port}").code == 0
        return ospp("/act")
    finally:
        peer.close()


BAD_CODES = ['"zz"', "[1]", str(10**30), "-1", "0", "1.5", "true", '"0xC004F074"', "null"]


@pytest.mark.parametrize("code", BAD_CODES)
def test_kms_client_reports_an_error_answer_with_a_bad_code_as_a_protocol_error(
    ospp: Ospp, code: str
):
    ran = act_against(ospp, b'{"v":1,"ok":false,"code":' + code.encode() + b',"message":"no"}')
    assert ran.code in (1, 4), ran.out + ran.err
    assert "internal error" not in ran.err
    assert "0xC004F074" in ran.out  # no KMS host could be used


@pytest.mark.parametrize("code", BAD_CODES)
def test_authority_client_reports_an_error_answer_with_a_bad_code_as_a_protocol_error(
    ospp: Ospp, tmp_path: Path, code: str
):
    key = ospp("center", "issue-key", "--product", "ProPlus2021", "--channel", "mak", "--json")
    pub = tmp_path / "authority.pub.json"
    pub.write_text(ospp("center", "pubkey").out)
    assert ospp("trust", "add", str(pub)).code == 0
    ospp.install()
    assert ospp("/inpkey:" + key.data()["key"]).code == 0
    peer = FakePeer(b'{"v":1,"ok":false,"code":' + code.encode() + b',"message":"no"}')
    try:
        ran = ospp("/act", env={"OSPP_AUTHORITY": f"127.0.0.1:{peer.port}"})
    finally:
        peer.close()
    assert ran.code in (1, 4), ran.out + ran.err
    assert "internal error" not in ran.err


def test_a_good_error_code_still_reaches_the_user(ospp: Ospp):
    peer = FakePeer(b'{"v":1,"ok":false,"code":3221549121,"message":"not activated"}')
    try:
        assert ospp("install-product", "ProPlus2021").code == 0
        assert ospp(f"/sethst:127.0.0.1:{peer.port}").code == 0
        ran = ospp("/act")
    finally:
        peer.close()
    assert ran.code == 1 and "0xC004F041" in ran.out


def test_client_refuses_a_deeply_nested_answer(ospp: Ospp):
    peer = FakePeer(b"[" * 50_000 + b"]" * 50_000)
    try:
        assert ospp("install-product", "ProPlus2021").code == 0
        assert ospp(f"/sethst:127.0.0.1:{peer.port}").code == 0
        ran = ospp("/act")
    finally:
        peer.close()
    assert ran.code == 4 and "0xC004F074" in ran.out, ran.out + ran.err


def test_too_deep_counts_levels_of_lists_and_objects():
    from ospp.core.canonical import MAX_DEPTH, too_deep

    def nested(levels: int) -> object:
        value: object = "leaf"
        for n in range(levels):
            value = [value] if n % 2 else {"k": value}
        return value

    assert not too_deep(nested(MAX_DEPTH)) and too_deep(nested(MAX_DEPTH + 1))
    assert not too_deep("text") and not too_deep({}) and not too_deep([[], {}, 1])


def test_an_answer_nested_too_deeply_is_refused_and_nothing_is_stored(ospp: Ospp):
    """Unsigned junk deep inside an answer would be stored with it and could not be sealed or
    verified again (RecursionError): it is a protocol error where it comes in."""
    junk = b"[" * 900 + b"]" * 900
    peer = FakePeer(b'{"v":1,"ok":true,"cmid":"x","junk":' + junk + b"}")
    try:
        assert ospp("install-product", "ProPlus2021").code == 0
        assert ospp(f"/sethst:127.0.0.1:{peer.port}").code == 0
        before = ospp.store_file().read_bytes()
        ran = ospp("/act")
    finally:
        peer.close()
    assert ran.code in (1, 4), ran.out + ran.err
    assert "internal error" not in ran.err and "nests more than 32 levels" in ran.out
    status = ospp("dstatus", "--json")
    assert status.code == 0 and status.data()["products"][0]["activated_at"] is None
    assert ospp.store_file().read_bytes() != b"" and before  # the store is still readable


def test_a_stored_activation_nested_too_deeply_is_reported_not_a_crash(ospp: Ospp):
    import json
    import sqlite3

    key = ospp("center", "issue-key", "--product", "ProPlus2021", "--json").data()["key"]
    ospp.install()
    assert ospp("/inpkey:" + key, "--act").code == 0
    with sqlite3.connect(ospp.store_file()) as conn:
        (sku, blob) = conn.execute(
            "SELECT sku_id, activation FROM licenses WHERE activation IS NOT NULL"
        ).fetchone()
        act = json.loads(blob)
        act["junk"] = json.loads("[" * 900 + "]" * 900)
        conn.execute("UPDATE licenses SET activation=? WHERE sku_id=?", (json.dumps(act), sku))
    for args in (["dstatus", "--json"], ["dstatus", "--verify", "--json"]):
        ran = ospp(*args)
        assert ran.code == 0, ran.out
        product = ran.data()["products"][0]
        assert product["status"] != "LICENSED" and "nested too deeply" in product["detail"]


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b'{"v":1,"ok":1,"count":50}', "ok=1, not true or false"),
        (b'{"v":1,"count":50}', 'answer carries no "ok"'),
        (b'{"v":1,"ok":false,"code":1074066496}', "1074066496, not a licensing error code"),
        (b'{"v":1,"ok":false}', "refused: no reason given"),
    ],
    ids=["ok is 1", "no ok", "a success code", "no code, no message"],
)
def test_kms_client_names_what_is_wrong_with_an_answer(ospp: Ospp, body: bytes, said: str):
    """An answer must say ok true or false; a refusal's code must be an error code (a success
    code such as 0x4004F040 is not a reason to fail); a refusal without a reason says so."""
    ran = act_against(ospp, body)
    # a refusal with no code came from a host that was reached: it cannot be used
    code = "0xC004F042" if body == b'{"v":1,"ok":false}' else "0xC004F074"
    assert ran.code in (1, 4) and code in ran.out, ran.out + ran.err
    history = ospp("/dhistorykms", "--json").data()["entries"]
    assert said in history[-1]["detail"], history
    assert "None" not in ran.out


def _served_at_once(handled: list[str] | None = None) -> Any:
    """A handler that answers at once, as the KMS host answers a ping: the future it returns
    is already done (an ``async def`` handler would be answered a turn later)."""
    import asyncio

    def handler(message: dict[str, Any]) -> asyncio.Future[serving.Reply]:
        if handled is not None:
            handled.append(message.get("id", ""))
        fut: asyncio.Future[serving.Reply] = asyncio.get_running_loop().create_future()
        fut.set_result({"v": 1, "ok": True, "id": message.get("id")})
        return fut

    return handler


def test_a_connection_sending_thousands_at_once_lets_the_others_in() -> None:
    """Requests answered at once are answered ANSWERS_PER_TURN at a time: a request on
    another connection that arrived with a flood of them is handled long before the flood's
    end. A real server on 127.0.0.1; both connections' bytes are there before it reads."""
    import asyncio
    import time

    handled: list[str] = []

    def request(name: str) -> bytes:
        return frame(json.dumps({"v": 1, "op": "x", "id": name}).encode())

    async def scenario() -> None:
        server = await serving.start(_served_at_once(handled), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        flood, other = socket.socket(), socket.socket()
        for s in (flood, other):
            s.setblocking(False)
            await loop.sock_connect(s, ("127.0.0.1", port))
        await asyncio.sleep(0.1)  # both accepted
        # The loop does not run while these are sent: the server sees both at its next poll.
        flood.send(b"".join(request(f"flood{i}") for i in range(200)))
        other.send(request("other"))
        time.sleep(0.1)
        for _ in range(500):
            if len(handled) == 201:
                break
            await asyncio.sleep(0.01)
        flood.close()
        other.close()
        server.close()
        await server.wait_closed()

    asyncio.run(scenario())
    assert len(handled) == 201
    assert handled.index("other") <= connection.ANSWERS_PER_TURN, handled.index("other")


def test_a_flood_of_requests_answered_at_once_cannot_grow_the_servers_buffer() -> None:
    """While frames wait for the next turn the server stops reading: a client that sends as
    fast as it can (and takes its answers) is held back by TCP, not buffered."""
    import asyncio
    import threading

    body = frame(b'{"v":1,"op":"x"}')
    burst = body * 4096
    gauge = serving.Gauge()
    biggest = 0

    async def scenario() -> None:
        nonlocal biggest
        server = await serving.start(_served_at_once(), "127.0.0.1", 0, gauge=gauge)
        port = server.sockets[0].getsockname()[1]
        sock = socket.create_connection(("127.0.0.1", port))
        stop = threading.Event()

        def send() -> None:
            with contextlib.suppress(OSError):
                for _ in range(300):  # about 25 MB of requests, as fast as they go
                    if stop.is_set():
                        return
                    sock.sendall(burst)

        def drain() -> None:
            with contextlib.suppress(OSError):
                while sock.recv(1 << 16):
                    pass

        threads = [threading.Thread(target=send), threading.Thread(target=drain, daemon=True)]
        for t in threads:
            t.start()
        for _ in range(300):  # 3 s of looking at the buffer of each connection
            biggest = max([biggest, *(len(getattr(c, "buffer", b"")) for c in gauge.live)])
            await asyncio.sleep(0.01)
        stop.set()
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        await asyncio.to_thread(threads[0].join, 10)
        server.close()
        await server.wait_closed()

    asyncio.run(scenario())
    assert 0 < biggest < 2 * 1024 * 1024, biggest
