"""The hosts' HTTP side: the status page, /metrics (checked by prometheus_client's parser) and
/healthz, with real servers on 127.0.0.1."""

from __future__ import annotations

import html
import os
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from ospp.core.background import start_server
from ospp.core.endpoint import Endpoint
from ospp.protocol.wire import Connection
from tests.conftest import Ospp
from tests.kmsutil import APP, Host, make_host, raw_request

parser = pytest.importorskip("prometheus_client.parser")


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def http_host(ospp: Ospp, activate: bool = True) -> tuple[Host, str]:
    make_host(ospp, activate=activate)
    host = Host(ospp, extra=("--http", "127.0.0.1:0"))
    assert host.proc is not None and host.proc.stdout is not None
    line = host.proc.stdout.readline().split()
    assert line[0] == "HTTP"
    return host, f"http://{line[1]}"


@pytest.fixture
def served(ospp: Ospp) -> Iterator[tuple[Host, str]]:
    host, base = http_host(ospp)
    yield host, base
    if host.alive():
        host.stop()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_parse_and_count_what_the_host_answered(ospp: Ospp, served):
    host, base = served
    with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
        for _ in range(4):
            assert conn.call(raw_request())["ok"]
        assert not conn.call(raw_request(sku_id="nope"))["ok"]
    status, ctype, text = get(f"{base}/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    got = samples(text)
    assert got[("ospp_kms_requests_total", (("result", "ok"),))] == 4
    assert got[("ospp_kms_requests_total", (("result", "failed"),))] == 1
    assert got[("ospp_kms_request_failures_total", (("code", "0xC004F042"),))] == 1
    assert got[("ospp_kms_current_count", (("app", APP),))] == 4
    assert got[("ospp_kms_stored_clients", ())] == 4
    assert got[("ospp_kms_request_seconds_count", ())] == 5
    assert got[("ospp_kms_request_seconds_bucket", (("le", "+Inf"),))] == 5
    assert got[("ospp_kms_batch_size_sum", ())] == 5
    assert got[("ospp_kms_host_activated", ())] == 1
    assert got[("ospp_kms_request_log_lost_lines_total", ())] == 0


def test_healthz_is_200_when_activated_and_503_when_not(ospp: Ospp, served, tmp_path):
    _, base = served
    assert get(f"{base}/healthz")[:1] == (200,)
    other = Ospp(tmp_path / "other")
    host, other_base = http_host(other, activate=False)
    try:
        status, _, body = get(f"{other_base}/healthz")
        assert status == 503 and "not activated" in body
        assert get(f"{other_base}/nope")[0] == 404
    finally:
        host.stop()


def test_status_page_shows_the_host_and_escapes_what_clients_sent(ospp: Ospp, served):
    host, base = served
    evil = '<script>alert("x")</script>'
    with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
        assert conn.call(raw_request(workstation=evil))["ok"]
        assert conn.call(raw_request(workstation="pc-2", license_status="LICENSED"))["ok"]
    status, ctype, page = get(f"{base}/")
    assert status == 200 and ctype == "text/html; charset=utf-8"
    assert evil not in page and html.escape(evil, quote=True) in page
    assert "<script" not in page
    key = ospp("kms", "status", "--json").data()
    assert f"*****-{key['key_last5']}" in page and key["epid"] in page
    assert page.count('class="client"') == 2
    assert page.count('class="bar"') == 30
    # Filter by status: only the licensed client.
    _, _, licensed = get(f"{base}/?status=licensed")
    assert licensed.count('class="client"') == 1 and "pc-2" in licensed
    _, _, none = get(f"{base}/?product=Standard2019")
    assert none.count('class="client"') == 0
    # Hostile query strings are escaped too and change nothing.
    status, _, odd = get(f"{base}/?product=%3Cscript%3E&status=%22%3E&page=-1")
    assert status == 200 and "<script" not in odd and "&lt;script&gt;" not in odd


def test_status_page_paginates_newest_first(ospp: Ospp, served):
    host, base = served
    with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
        for i in range(55):
            assert conn.call(raw_request(workstation=f"pc-{i:02d}"))["ok"]
    _, _, first = get(f"{base}/")
    _, _, second = get(f"{base}/?page=2")
    assert first.count('class="client"') == 50 and second.count('class="client"') == 5
    assert "page 1 of 2, 55 client(s)" in first and "older" in first
    assert "newer" in second
    # Past the last page: that page, empty, said as it is, with the way back to the last.
    _, _, past = get(f"{base}/?page=200")
    assert past.count('class="client"') == 0 and "page 200 of 2, 55 client(s)" in past, past
    assert "page=2" in past and "last page" in past
    # However many digits: past the last page all the same (eight digits were page 1).
    for far in ("99999999", "99999999999999999999"):
        _, _, past = get(f"{base}/?page={far}")
        assert past.count('class="client"') == 0 and "last page" in past, (far, past)
    _, _, padded = get(f"{base}/?page=0002")
    assert "page 2 of 2" in padded


def test_paths_are_percent_decoded_and_not_taken_for_hosts(ospp: Ospp, served):
    """A path is read as RFC 3986 writes it: percent escapes decoded (a client may escape any
    character), and '//metrics' is a path of its own, not the host 'metrics' and the page '/'.
    The absolute form proxies send is read too."""
    from tests.test_hostile_peers import http_get

    _, base = served
    hostport = base.removeprefix("http://")
    assert get(f"{base}/%6detrics")[0] == 200
    assert "ospp_kms_requests_total" in get(f"{base}/%6detrics")[2]
    assert get(f"{base}//metrics")[0] == 404
    assert get(f"{base}//")[0] == 404
    absolute = http_get(hostport, f"http://{hostport}/healthz".encode())
    assert absolute.startswith(b"HTTP/1.1 200 ") and absolute.endswith(b"ok\n")


def test_authority_metrics_count_activations_and_mak_remaining(ospp: Ospp):
    assert ospp("center", "init", "--name", "Lab").code == 0
    mak = ospp("center", "issue-key", "--product", "ProPlus2021", "--limit", "3", "--json").data()
    env = {**os.environ, **ospp.env}
    proc, port = start_server(
        ["center", "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"],
        env,
        subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        base = "http://" + proc.stdout.readline().split()[1]
        remote = {"OSPP_AUTHORITY": f"127.0.0.1:{port}"}
        pub = ospp.home / "authority.pub.json"
        pub.write_text(ospp("center", "pubkey").out)
        assert ospp("trust", "add", str(pub)).code == 0
        assert ospp("install-product", "ProPlus2021").code == 0
        assert ospp(f"/inpkey:{mak['key']}").code == 0
        ran = ospp("/act", env=remote)
        assert ran.code == 0, ran.out
        got = samples(get(f"{base}/metrics")[2])
        last5 = mak["key"][-5:]
        labels = (("channel", "mak"), ("key", last5), ("product", "ProPlus2021"))
        assert got[("ospp_authority_activations_total", labels)] == 1
        assert got[("ospp_authority_mak_remaining", (("key", last5), ("product", "ProPlus2021")))]
        assert got[("ospp_authority_requests_total", (("result", "ok"),))] == 1
        blocked = ospp("center", "block", mak["key"])
        assert blocked.code == 0
        assert ospp("install-product", "ProPlus2021", "pc2").code == 0
        assert ospp(f"/inpkey:{mak['key']}", "pc2").code == 0
        assert ospp("/act", "pc2", env=remote).code == 1
        got = samples(get(f"{base}/metrics")[2])
        assert got[("ospp_authority_requests_total", (("result", "failed"),))] == 1
        assert got[("ospp_authority_request_failures_total", (("code", "0xC004C003"),))] == 1
        assert got[("ospp_authority_activations_total", labels)] == 1
        assert get(f"{base}/healthz")[0] == 200
        assert f"*****-{last5}" in get(f"{base}/")[2]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def test_kms_ping_is_a_signed_round_trip(ospp: Ospp, served, tmp_path):
    host, _ = served
    ran = ospp.proc("kms", "ping", f"127.0.0.1:{host.port}", "--json")
    assert ran.code == 0, ran.out + ran.err
    pong = ran.data()
    assert ran.json()["ok"] and pong["epid"] == ospp("kms", "status", "--json").data()["epid"]
    assert pong["trusted"] is True and pong["product_id"] == "ProPlus2021"
    # A machine that trusts no authority still checks the signature, and says what it checked.
    stranger = {"OSPP_HOME": str(tmp_path / "s"), "OSPP_CENTER_HOME": str(tmp_path / "sc")}
    other = ospp("kms", "ping", f"127.0.0.1:{host.port}", env=stranger)
    assert other.code == 0 and "no trusted authority installed" in other.out
    unchecked = ospp("kms", "ping", f"127.0.0.1:{host.port}", "--json", env=stranger)
    assert unchecked.data()["product_id"] is None and unchecked.data()["trusted"] is False
    # Nothing listening: exit 4.
    host.stop()
    down = ospp("kms", "ping", f"127.0.0.1:{host.port}")
    assert down.code == 4 and "0x80072EFD" in down.out


def test_kms_ping_of_an_unactivated_host_exits_4(ospp: Ospp):
    make_host(ospp, activate=False)
    host = Host(ospp)
    try:
        ran = ospp("kms", "ping", f"127.0.0.1:{host.port}")
        assert ran.code == 4 and "not activated" in ran.out
    finally:
        host.stop()


def test_kms_ping_refused_by_the_host_says_the_host_s_code_and_reason(ospp: Ospp, tmp_path):
    """A host that answers the ping with a refusal (here: it cannot read its lab clock) was
    reached: the caller sees the host's licensing code and reason, not 'a connection with
    the server could not be established'."""
    from pathlib import Path

    make_host(ospp)
    host = Host(ospp)
    try:
        Path(ospp.env["OSPP_HOME"]).mkdir(parents=True, exist_ok=True)
        (Path(ospp.env["OSPP_HOME"]) / "clock.json").write_text("{not json")
        # the caller's own lab clock is another file: only the host's is damaged
        mine = {"OSPP_CLOCK_FILE": str(tmp_path / "caller-clock.json")}
        ran = ospp("kms", "ping", f"127.0.0.1:{host.port}", env=mine)
        assert ran.code == 4, ran.out
        assert "ERROR CODE: 0x8007000D" in ran.out and "0x80072EFD" not in ran.out, ran.out
        assert "refused the ping: the KMS host cannot read its clock\n" in ran.out, ran.out
        error = ospp("kms", "ping", f"127.0.0.1:{host.port}", "--json", env=mine).json()
        assert error["error"]["code"] == "0x8007000D" and error["error"]["exit_status"] == 4
    finally:
        host.stop()


def test_kms_ping_of_something_else_exits_4(ospp: Ospp):
    """A server that answers the ospp protocol but signs nothing (the authority) fails."""
    assert ospp("center", "init").code == 0
    proc, port = start_server(
        ["center", "serve", "--listen", "127.0.0.1:0"], {**os.environ, **ospp.env}, subprocess.PIPE
    )
    try:
        ran = ospp("kms", "ping", f"127.0.0.1:{port}")
        assert ran.code == 4, ran.out
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def test_http_side_refuses_junk_and_a_stalled_browser_does_not_block_kms(ospp: Ospp, served):
    import socket

    host, base = served
    hostport = base.removeprefix("http://")
    http_host, http_port = hostport.rsplit(":", 1)
    stalled = socket.create_connection((http_host, int(http_port)), timeout=5)
    stalled.sendall(b"GET / HTTP/1.1\r\n")  # and never finishes the head
    try:
        with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
            assert conn.call(raw_request())["ok"]
        assert get(f"{base}/healthz")[0] == 200
        for raw, status in (
            (b"NONSENSE\r\n\r\n", b" 400 "),
            (b"POST / HTTP/1.1\r\n\r\n", b" 405 "),
            # a head over 8 KiB is said to be, not dropped without a word
            (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", b" 431 "),
            # lines ended by a bare LF (RFC 9112 2.2), after an empty line
            (b"\r\nGET /healthz HTTP/1.1\nHost: x\n\n", b" 200 "),
        ):
            with socket.create_connection((http_host, int(http_port)), timeout=5) as s:
                s.sendall(raw)
                assert status in s.recv(1024).split(b"\r\n")[0]
    finally:
        stalled.close()


def test_failed_dns_publish_is_on_the_page_and_logged_once(ospp: Ospp):
    import time

    make_host(ospp)
    ran = ospp(
        "kms", "dns", "set", "--server", "127.0.0.1:9", "--domain", "test.example",
        "--hostname", "kms1.test.example",
    )  # fmt: skip
    assert ran.code == 0, ran.out
    host = Host(ospp, extra=("--http", "127.0.0.1:0"))
    try:
        assert host.proc is not None and host.proc.stdout is not None
        base = "http://" + host.proc.stdout.readline().split()[1]
        deadline = time.monotonic() + 20
        page = ""
        while "Last DNS publishing" not in page and time.monotonic() < deadline:
            time.sleep(0.3)
            page = get(f"{base}/")[2]
        assert "Last DNS publishing" in page and "failed: 0x" in page
    finally:
        host.stop()
    warnings = [line for line in host.stderr_lines if "DNS publishing failed" in line]
    assert len(warnings) == 1 and "Traceback" not in "\n".join(host.stderr_lines)


def test_a_lab_clock_the_host_cannot_read_makes_the_pages_unavailable_not_broken(ospp: Ospp):
    """The lab clock file is damaged while the host serves: its pages answer 503 (the host
    cannot tell the time), not 500, and work again after a reset. A running clock that gets
    to the last time ospp simulates stops there: the pages go on working."""
    import time
    from pathlib import Path

    host, base = http_host(ospp)
    try:
        assert get(f"{base}/healthz")[0] == 200
        assert ospp("clock", "set", "9998-12-31T23:59:58Z").code == 0
        time.sleep(2.5)  # the running lab clock would now be past 9998-12-31T23:59:59
        assert get(f"{base}/healthz")[0] == 200
        assert "9998-12-31T23:59:59Z" in ospp("clock", "show").out
        (Path(ospp.env["OSPP_HOME"]) / "clock.json").write_text("{not json")
        for path in ("/healthz", "/"):
            status, _, body = get(f"{base}{path}")
            assert status == 503 and "0x8007000D" in body, (path, status, body)
        with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
            assert conn.call(raw_request())["code"] == 0x8007000D
        # /metrics still serves what the host counted (the failure above among it), says
        # that the store's gauges cannot be read, and leaves them out
        status, _, text = get(f"{base}/metrics")
        got = samples(text)
        assert status == 200
        assert got[("ospp_kms_store_readable", ())] == 0
        assert got[("ospp_kms_request_failures_total", (("code", "0x8007000D"),))] == 1
        assert not [key for key in got if key[0] == "ospp_kms_stored_clients"]
        assert ospp("clock", "reset").code == 0
        assert get(f"{base}/healthz")[0] == 200
        got = samples(get(f"{base}/metrics")[2])
        assert got[("ospp_kms_store_readable", ())] == 1
        assert got[("ospp_kms_stored_clients", ())] == 0
    finally:
        host.stop()


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        ("UPDATE stats SET value='x' WHERE name='total'", "damaged statistic 'total'"),
        ("UPDATE stats SET value=1e30 WHERE name='clients'", "damaged statistic 'clients'"),
        ("UPDATE clients SET first_seen='abc'", "damaged client record"),
        ("UPDATE clients SET first_seen=9000000000000000000", "damaged client record"),
        ("UPDATE clients SET workstation=X'1b5b326a'", "damaged client record"),
        ("UPDATE packs SET epid=X'1b5b326a'", "damaged licence pack"),
        ("UPDATE packs SET activated_at=X'00'", "damaged licence pack"),
    ],
    ids=[
        "a count as text",
        "a count as a float",
        "a time as text",
        "a time out of range",
        "a name as a blob",
        "an ePID as a blob",
        "an activation time as a blob",
    ],
)
def test_a_store_damaged_by_hand_makes_the_page_say_so_and_the_host_serves_on(
    ospp: Ospp, damage: str, said: str
):
    """A statistic, a client record or a licence pack edited by hand: the status page answers
    503 with the store's error (0x8007000D), as 'kms status' and 'kms clients' report it
    (exit 3), never 500 'internal error', a text count, or the repr of a blob; the host serves
    on (with the packs it read before)."""
    import sqlite3

    from tests.kmsutil import path_of

    host, base = http_host(ospp)
    try:
        with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
            assert conn.call(raw_request())["ok"]
        with sqlite3.connect(path_of(ospp)) as db:
            db.execute(damage)
        db.close()
        status, _, body = get(f"{base}/")
        assert status == 503 and "0x8007000D" in body and said in body, (status, body)
        command = ("kms", "clients") if "client record" in said else ("kms", "status")
        for args in (command, (*command, "--json")):
            ran = ospp(*args)
            assert ran.code == 3 and "0x8007000D" in ran.out and said in ran.out, ran.out
        with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
            assert conn.call(raw_request())["ok"]  # what is damaged is what it shows
        status, _, text = get(f"{base}/metrics")
        assert status == 200
        readable = 0 if "'clients'" in said or "pack" in said else 1
        assert samples(text)[("ospp_kms_store_readable", ())] == readable
    finally:
        host.stop()
    assert not [line for line in host.stderr_lines if "status page failed" in line]


@pytest.mark.parametrize(("name", "value"), [("dns", "[]"), ("dns_last", "garbage")])
def test_a_dns_setting_damaged_while_serving_makes_the_page_say_so_and_the_host_serves_on(
    ospp: Ospp, name: str, value: str
):
    import contextlib
    import sqlite3

    host, base = http_host(ospp)
    try:
        with contextlib.closing(sqlite3.connect(ospp.home / "kms" / "kms.db")) as conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))
            conn.commit()
        status, _, body = get(f"{base}/")
        assert status == 503 and "0x8007000D" in body, (status, body)
        assert f"has a damaged setting {name}: " in body
        with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
            assert conn.call(raw_request())["ok"] is True
        assert host.alive()
    finally:
        assert host.stop() == 0
    assert "Traceback" not in "\n".join(host.stderr_lines)
