"""Every field of every request, fuzzed, while legitimate clients are served alongside.

The KMS host commits requests in shared transactions (group commit) and the authority counts
activations in its store: a bad request must get its own documented error answer and must
never make a legitimate request fail, however the two are interleaved.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ospp.core.background import start_server
from ospp.core.endpoint import Endpoint
from ospp.protocol.wire import Connection
from tests.conftest import Ospp
from tests.kmsutil import APP, PROPLUS_2021_SKU, make_host, raw_request

MISSING = object()

# Values every field is tried with: wrong types, huge numbers, empty and huge strings, lone
# surrogates, control and bidi characters, and every kind of extreme date.
COMMON: list[Any] = [
    MISSING,
    None,
    True,
    False,
    0,
    -1,
    10**30,
    -(10**30),
    1.5,
    1e308,
    [],
    {},
    [1],
    {"a": 1},
    "",
    " ",
    "x" * 41,
    "x" * 65,
    "x" * 20_000,
    "\ud800",
    "abc\udfff",
    "\udfff" * 40,
    "\x00",
    "a\x00b",
    "\x1b[2J\x1b[31mred",
    "line\nbreak",
    "\u202etxt.exe",
    "\ufeff",
    "\U0010ffff",
    "é" * 40,
    "😀" * 40,
]
DATES = [
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59+00:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31",
    "0001-01-01",
    "0999-12-31T00:00:00Z",
    "2026-13-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-06-01T25:00:00Z",
    "2026-06-01T00:00:00+24:00",
    "2026-06-01T00:00:00+23:59",
    "+275760-09-13T00:00:00Z",
    "99999999999999999999",
    "NaN",
    "2026-06-01T00:00:00.9999999999Z",
]


def kms_request(**over: Any) -> dict[str, Any]:
    """A legitimate request as a raw frame carries it."""
    return raw_request(**{"v": 1, "workstation": "legit", "required_count": 5, **over})


def variants(base: dict[str, Any], extra: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """One request per (field, bad value), every other field legitimate."""
    out = []
    for field in base:
        for value in COMMON + extra.get(field, []):
            req = dict(base)
            if value is MISSING:
                del req[field]
            else:
                req[field] = value
            out.append(req)
    return out


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()  # lone surrogates go out as \\udXXX escapes
    return struct.pack(">I", len(body)) + body


def recv_frame(s: socket.socket) -> dict[str, Any]:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the server closed the connection without answering")
            data += chunk
        return data

    (length,) = struct.unpack(">I", exactly(4))
    answer: dict[str, Any] = json.loads(exactly(length))
    return answer


class Load:
    """Legitimate clients on their own connections, each request checked, until stopped."""

    def __init__(self, port: int, make: Callable[[int], dict[str, Any]], clients: int) -> None:
        self.port = port
        self.make = make
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(n,)) for n in range(clients)]
        for t in self.threads:
            t.start()

    def _run(self, n: int) -> None:
        deadline = time.monotonic() + 240
        try:
            with Connection(Endpoint("127.0.0.1", self.port), "server", 30) as conn:
                while not self.stop.is_set() and time.monotonic() < deadline:
                    answer = conn.call(self.make(n))
                    if answer.get("ok") is True:
                        self.ok += 1
                    else:
                        self.failures.append(repr(answer)[:300])
        except Exception as exc:
            self.failures.append(f"{type(exc).__name__}: {exc}")

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


Pair = tuple[dict[str, Any], dict[str, Any]]


def send_all(port: int, requests: list[dict[str, Any]], connections: int) -> list[Pair]:
    """Send every request (spread over several connections at once); return (request, answer)."""
    answers: list[Pair] = []
    problems: list[str] = []

    def run(share: list[dict[str, Any]]) -> None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                for req in share:
                    s.sendall(frame(req))
                    answers.append((req, recv_frame(s)))
        except Exception as exc:
            problems.append(f"{type(exc).__name__}: {exc}")

    threads = [
        threading.Thread(target=run, args=(requests[i::connections],)) for i in range(connections)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not problems, problems[:5]
    assert len(answers) == len(requests)
    return answers


def server_stderr(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    assert proc.wait(timeout=30) == 0
    assert proc.stderr is not None
    return proc.stderr.read()


# -- KMS host --------------------------------------------------------------------------------

# The codes a KMS host answers a bad request with (docs/PROTOCOL.md).
KMS_REFUSALS = {
    0xC004F056,  # malformed request field
    0xC004F042,  # no KMS client product, or the application id does not match
    0xC004F06C,  # client time more than 4 hours from the host's
    0xC004F02C,  # malformed frame (version)
    0x80070057,  # unknown op
}


@pytest.fixture
def kms_host(ospp: Ospp, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    make_host(ospp)
    env = {**os.environ, **ospp.env}
    env.pop("OSPP_NOW", None)
    args = ["kms", "serve", "--listen", "127.0.0.1:0", "--log", str(tmp_path / "requests.log")]
    proc, port = start_server(args, env, subprocess.PIPE)
    yield proc, port
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def test_kms_request_fuzz_never_fails_a_legitimate_request(
    kms_host: tuple[subprocess.Popen[str], int],
):
    proc, port = kms_host
    bad = variants(
        kms_request(),
        {
            "client_time": DATES,
            "license_status": ["licensed", "OOB_GRACE\x00", "REQUESTS.TOTAL"],
            "op": ["kms-ping2", "KMS-ACTIVATE"],
            "app_id": [APP.upper(), "00000000-0000-0000-0000-000000000000"],
            "sku_id": [PROPLUS_2021_SKU.upper()],
        },
    )
    load = Load(port, lambda n: kms_request(workstation=f"legit{n}"), clients=6)
    try:
        answers = []
        for _ in range(2):  # twice, so poison meets legitimate requests in many batches
            answers += send_all(port, bad, connections=4)
    finally:
        load.finish()
    assert not load.failures, load.failures[:5]
    assert load.ok > 0
    for req, answer in answers:
        assert answer.get("v") == 1, answer
        if answer["ok"] is not True:
            assert answer["code"] in KMS_REFUSALS, (req, answer)
            assert isinstance(answer["message"], str) and len(answer["message"]) < 300
    refused = sum(1 for _, a in answers if a["ok"] is not True)
    assert refused > len(answers) * 0.6  # most variants are refused, not waved through
    # and a legitimate client still activates afterwards
    with Connection(Endpoint("127.0.0.1", port), "KMS host") as conn:
        assert conn.call(kms_request())["ok"] is True
    assert "Traceback" not in server_stderr(proc)


def test_a_request_that_fails_at_commit_fails_alone(tmp_path: Path):
    """Validation keeps such requests out; if one still fails in SQLite, only it fails."""
    import dataclasses

    from ospp.core.clock import SystemClock
    from ospp.kmshost.packs import ServingPack
    from ospp.kmshost.request import parse_request
    from ospp.kmshost.state import KmsHost, ServingState

    host = KmsHost.open(tmp_path / "kms", SystemClock())
    host.signer()
    product = parse_request(kms_request()).product
    pack = ServingPack(product, {"kind": "test"}, b"{}", "epid")
    state = ServingState((pack,), 120, 10080)
    good = [parse_request(kms_request()) for _ in range(5)]
    # a lone surrogate cannot be stored: parse_request refuses it, so build it by hand
    unstorable = dataclasses.replace(good[0], cmid="\udc80" + str(uuid.uuid4()))
    answers = host.process(state, [*good[:2], unstorable, *good[2:]])
    assert [isinstance(a, bytes) for a in answers] == [True, True, False, True, True, True]
    refused = answers[2]
    assert isinstance(refused, dict) and refused["code"] == 0x8000FFFF
    assert [json.loads(a)["count"] for a in answers if isinstance(a, bytes)] == [1, 2, 3, 4, 5]
    # and the same mix as received from the network: refused alone, with the documented code
    answers = host.process(
        state,
        [
            kms_request(),
            kms_request(client_time="9999-12-31T23:59:59-01:00"),
            kms_request(cmid="\ud800"),
            kms_request(),
        ],
    )
    assert [a["code"] if isinstance(a, dict) else 0 for a in answers] == [
        0,
        0xC004F056,
        0xC004F056,
        0,
    ]
    host.db.close()


# -- activation authority ------------------------------------------------------------------

# The codes the authority answers a bad request with (docs/PROTOCOL.md).
AUTHORITY_REFUSALS = {
    0x80070057,  # a field missing or malformed, or an unknown op
    0xC004F02C,  # malformed frame, or an installation ID that is not one
    0xC004F04D,  # an installation ID group whose check digit is wrong
    0xC004F050,  # not a product key
    0xC004C001,  # a key this authority did not issue
    0xC004C003,  # a blocked key
    0xC004C008,  # KMS host key unlock limit
    0xC004C020,  # MAK limit
}


def test_authority_request_fuzz_never_fails_a_legitimate_activation(ospp: Ospp, tmp_path: Path):
    mak = ospp(
        "center", "issue-key", "--product", "ProPlus2021", "--channel", "mak", "--limit", "100000"
    ).out.strip()
    host_key = ospp(
        "center", "issue-key", "--product", "ProPlus2021", "--channel", "kms-host", "--json"
    ).data()["key"]
    ospp.install()
    assert ospp("/inpkey:" + mak).code == 0
    iid = ospp("dinstid", "--json").data()["products"][0]["installation_id"]
    env = {**os.environ, **ospp.env}
    proc, port = start_server(["center", "serve", "--listen", "127.0.0.1:0"], env, subprocess.PIPE)
    try:

        def legit(n: int) -> dict[str, Any]:
            if n == 0:
                return {"v": 1, "op": "confirm", "iid": iid}
            return {
                "v": 1,
                "op": "activate",
                "key": mak,
                "sku_id": "ospp-simulated-mak",
                "cmid": str(uuid.uuid4()),
                "hardware": uuid.uuid4().hex[:10],
                "nonce": uuid.uuid4().hex,
                "client_time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }

        from ospp.protocol.crypto import HostKey, b64

        signing = b64(HostKey(HostKey.generate()).public_raw)  # a host's public key
        activate = {**legit(1), "key": host_key, "host_key": signing}
        bad = variants(
            activate,
            {
                "key": [mak.lower(), mak.replace("-", " "), host_key[:-1] + "B", "X" * 25],
                "client_time": DATES,
                "hardware": ["zz", "0" * 11],
            },
        ) + variants(
            {"v": 1, "op": "confirm", "iid": iid},
            {"iid": [iid[:-1] + "0", iid + "1", "0" * 63, "9" * 63, "-".join([iid] * 3)]},
        )
        load = Load(port, legit, clients=4)
        try:
            answers = send_all(port, bad, connections=4)
        finally:
            load.finish()
        assert not load.failures, load.failures[:5]
        assert load.ok > 0
        for req, answer in answers:
            assert answer.get("v") == 1, answer
            if answer["ok"] is not True:
                assert answer["code"] in AUTHORITY_REFUSALS, (req, answer)
                assert isinstance(answer["message"], str) and len(answer["message"]) < 400
        with Connection(Endpoint("127.0.0.1", port), "authority") as conn:
            assert conn.call(legit(1))["ok"] is True
    finally:
        said = server_stderr(proc)
    assert "Traceback" not in said and "internal error" not in said
