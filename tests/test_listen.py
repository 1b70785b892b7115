"""Listening on several addresses, and on every address of both families (``:PORT``)."""

from __future__ import annotations

import socket

import pytest

from ospp.core.endpoint import Endpoint, parse_listen
from ospp.protocol.wire import Connection
from tests.conftest import Ospp
from tests.kmsutil import Host, make_host, raw_request


def ipv6_or_skip() -> None:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")


def answers(host: str, port: int) -> bool:
    with Connection(Endpoint(host, port), "KMS host") as conn:
        return bool(conn.call(raw_request())["ok"])


def test_parse_listen_forms():
    assert parse_listen(":1688", 1688) == Endpoint("", 1688)
    assert parse_listen("*:0", 1688) == Endpoint("", 0)
    assert parse_listen("[::1]:5", 1688) == Endpoint("::1", 5)
    assert parse_listen("127.0.0.1", 1688) == Endpoint("127.0.0.1", 1688)


def test_colon_port_listens_on_ipv4_and_ipv6(ospp: Ospp):
    ipv6_or_skip()
    make_host(ospp)
    host = Host(ospp, listen=":0")
    try:
        assert answers("127.0.0.1", host.port)
        assert answers("::1", host.port)
    finally:
        host.stop()


def test_listen_is_repeatable_with_one_port(ospp: Ospp):
    ipv6_or_skip()
    make_host(ospp)
    host = Host(ospp, listen="127.0.0.1:0", extra=("--listen", "[::1]:0"))
    try:
        assert answers("127.0.0.1", host.port) and answers("::1", host.port)
    finally:
        host.stop()
    assert any("127.0.0.1:" in line and "[::1]:" in line for line in host.stderr_lines)


def test_listen_addresses_with_different_ports_are_a_usage_error(ospp: Ospp):
    ran = ospp("kms", "serve", "--listen", "127.0.0.1:1", "--listen", "127.0.0.1:2")
    assert ran.code == 2 and "different ports" in ran.out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_port_slmgr_sprt_sets_is_where_the_host_listens_next(ospp: Ospp):
    """As on Windows: /sprt changes the port the host listens on from its next start; a
    --listen without a port takes it, and a run on another port does not replace it."""
    make_host(ospp)
    first = Host(ospp, listen="127.0.0.1:0")  # a port of its own for one run
    try:
        st = ospp("kms", "status", "--json").data()
        assert (st["port"], st["configured_port"]) == (first.port, 1688)
        assert f"    Listening on Port: {first.port}" in ospp("kms", "status").out
    finally:
        first.stop()
    st = ospp("kms", "status", "--json").data()  # stopped: the port it will listen on
    assert (st["port"], st["configured_port"]) == (1688, 1688)
    port = free_port()
    assert ospp("slmgr", "/sprt", str(port)).code == 0
    st = ospp("kms", "status", "--json").data()
    assert (st["port"], st["configured_port"]) == (port, port)
    host = Host(ospp, listen="127.0.0.1")  # no port: the one /sprt set
    try:
        assert host.port == port and answers("127.0.0.1", port)
    finally:
        host.stop()
    assert ospp("kms", "status", "--json").data()["configured_port"] == port


def test_an_address_without_a_port_takes_the_one_given_beside_it(ospp: Ospp, tmp_path):
    """'--listen 127.0.0.1 --listen [::1]:0' is one port for both; two different ports are
    refused before anything is made (no store, no log)."""
    home = tmp_path / "unmade"
    log = tmp_path / "requests.log"
    env = {"OSPP_KMS_HOME": str(home)}
    ran = ospp("kms", "serve", "--listen", "127.0.0.1:1", "--listen", "127.0.0.2:2",
               "--log", str(log), env=env)  # fmt: skip
    assert ran.code == 2 and "different ports" in ran.out
    assert not home.exists() and not log.exists()
    make_host(ospp)
    host = Host(ospp, listen="127.0.0.1", extra=("--listen", "127.0.0.1:0"))
    try:
        assert host.port != 1688 and answers("127.0.0.1", host.port)
    finally:
        host.stop()


def test_a_damaged_port_setting_is_reported_not_used(ospp: Ospp):
    import sqlite3

    make_host(ospp)
    for name, value in (("port", "99999"), ("port", "0"), ("listening_port", "00000")):
        with sqlite3.connect(ospp.home / "kms" / "kms.db") as conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))
        for args in (["kms", "status"], ["kms", "serve", "--listen", "127.0.0.1", "--log", "none"]):
            ran = ospp.proc(*args, timeout=30)
            assert ran.code == 3 and "0x8007000D" in ran.out and name in ran.out, (name, ran.out)
            assert "slmgr /sprt" in ran.out and "Traceback" not in ran.err
        assert ospp("slmgr", "/sprt", "1688").code == 0  # which sets both again
        assert ospp("kms", "status", "--json").data()["port"] == 1688


def test_a_host_that_fails_once_listening_forgets_its_port(ospp: Ospp, tmp_path):
    """Its 'LISTENING' line cannot be written (standard output open for reading only): it
    stops with exit 3, and status shows the configured port, not the one it bound."""
    import os
    import subprocess
    import sys

    make_host(ospp)
    readable = tmp_path / "read-only"
    readable.write_text("")
    with open(readable) as out:
        done = subprocess.run(
            [sys.executable, "-m", "ospp", "kms", "serve", "--listen", "127.0.0.1:0", "--log",
             "none"],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **ospp.env},
            timeout=60,
        )  # fmt: skip
    assert done.returncode == 3 and "cannot write the output" in done.stderr, done.stderr
    assert ospp("kms", "status", "--json").data()["port"] == 1688
