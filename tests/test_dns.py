"""KMS discovery and publishing against a real BIND on 127.0.0.1 (started by these tests)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Ospp
from tests.dnsutil import TSIG_ALGORITHMS, ZONE, Bind, ServfailServer, SilentServer
from tests.kmsutil import Host, ipv6_host, make_host

pytestmark = pytest.mark.skipif(
    shutil.which("named") is None, reason="BIND (named) is not installed; .ci/run installs it"
)


@pytest.fixture(scope="module")
def bind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bind]:
    server = Bind(tmp_path_factory.mktemp("bind"))
    yield server
    server.stop()


@pytest.fixture
def sub() -> str:
    """A fresh domain inside the test zone for each test."""
    return f"t{uuid.uuid4().hex[:10]}.{ZONE}"


@pytest.fixture
def host(ospp: Ospp) -> Iterator[Host]:
    make_host(ospp)
    h = Host(ospp)
    yield h
    if h.alive():
        h.stop()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dns_env(bind: Bind, **extra: str) -> dict[str, str]:
    return {"OSPP_DNS": bind.address, **extra}


def test_publish_then_discover_round_trip(ospp: Ospp, bind: Bind, sub: str):
    make_host(ospp)
    ran = ospp(
        "kms",
        "dns",
        "set",
        "--server",
        bind.address,
        "--domain",
        sub,
        "--hostname",
        f"kms1.{sub}",
        "--address",
        "127.0.0.1",
        "--ttl",
        "60",
        "--tsig-keyfile",
        str(bind.keyfile),
    )
    assert ran.code == 0, ran.out
    h = Host(ospp)
    try:
        deadline = time.monotonic() + 10  # the host publishes as it starts
        while "published" not in str(ospp("kms", "status", "--json").data()["dns_last_publish"]):
            assert time.monotonic() < deadline, "the host did not publish"
            time.sleep(0.1)
        records = ospp("kms", "dns", "records").out
        assert f"_vlmcs._tcp.{sub}. 60 IN SRV 0 100 {h.port} kms1.{sub}." in records
        assert f"kms1.{sub}. 60 IN A 127.0.0.1" in records
        env = dns_env(bind)
        for n in range(1, 6):
            ospp("install-product", "ProPlus2021", f"d{n}")
            ospp(f"/skms-domain:{sub}", f"d{n}")
            ospp("/act", f"d{n}", env=env)
        assert ospp("/act", "d1", env=env).code == 0
        out = ospp("/dstatus", "d1").out
        assert "LICENSE STATUS:  ---LICENSED---" in out
        assert f"\tKMS machine name from DNS: kms1.{sub}:{h.port}" in out
        assert f"\tKMS Lookup Domain: {sub}" in out
        assert "DNS publishing enabled" in ospp("kms", "status").out
        diag = ospp("dnsdiag", "d1", "--json", env=env).data()
        assert diag["answered"] == f"kms1.{sub}:{h.port}"
        assert diag["domains"][0]["records"][0]["target"] == f"kms1.{sub}"
    finally:
        h.stop()


def test_a_running_host_takes_changed_publishing_settings(ospp: Ospp, bind: Bind, sub: str):
    """'kms dns set', 'disable' and 'enable' reach a running host: changed settings are
    published at once, not at the next interval (a day by default)."""
    from ospp.dns import discovery

    make_host(ospp)
    args = ["--server", bind.address, "--domain", sub, "--hostname", f"kms2.{sub}"]
    assert ospp("kms", "dns", "set", *args, "--tsig-keyfile", str(bind.keyfile)).code == 0
    res = discovery.resolver({"OSPP_DNS": bind.address})

    def weights() -> list[int]:
        return [r.weight for r in discovery.lookup(res, sub).records]

    def last() -> str:
        return str(ospp("kms", "status", "--json").data()["dns_last_publish"])

    def wait_for(what: str, ok: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 15
        while not ok():
            assert time.monotonic() < deadline, what
            time.sleep(0.2)

    h = Host(ospp)
    try:
        wait_for("the host did not publish", lambda: weights() == [100])
        assert ospp("kms", "dns", "set", "--weight", "7").code == 0
        wait_for("the new weight was not published", lambda: weights() == [7])
        assert ospp("kms", "dns", "disable").code == 0
        time.sleep(3)  # longer than the host takes to read its settings again
        before = last()
        time.sleep(1.1)  # published again, it would record a later time
        assert ospp("kms", "dns", "enable").code == 0
        wait_for("enabling did not publish", lambda: last() != before)
        assert "published" in last()
    finally:
        h.stop()


def test_failover_when_the_priority_0_host_is_dead(ospp: Ospp, bind: Bind, sub: str, host: Host):
    dead = closed_port()
    bind.update(
        ("add", f"_vlmcs._tcp.{sub}.", "SRV", 60, f"0 100 {dead} dead.{sub}."),
        ("add", f"dead.{sub}.", "A", 60, "127.0.0.1"),
        ("add", f"_vlmcs._tcp.{sub}.", "SRV", 60, f"10 100 {host.port} live.{sub}."),
        ("add", f"live.{sub}.", "A", 60, "127.0.0.1"),
    )
    ospp("install-product", "ProPlus2021", "f1")
    ospp(f"/skms-domain:{sub}", "f1")
    ran = ospp("act", "f1", "--json", env=dns_env(bind))
    assert ran.data()["products"][0]["error"]["code"] == "0xC004F038"  # the live host answered
    targets = [e["target"] for e in ospp("dhistorykms", "f1", "--json").data()["entries"]]
    assert targets == [f"127.0.0.1:{dead}", f"127.0.0.1:{host.port}"]
    # /dstatus names the host that answered, not the first record (as ospp.vbs does)
    assert f"\tKMS machine name from DNS: live.{sub}:{host.port}" in ospp("/dstatus", "f1").out
    shown = ospp("dstatus", "f1", "--json").data()["products"][0]["kms"]["discovered_host"]
    assert shown == f"live.{sub}:{host.port}"


def test_a_client_tries_at_most_16_srv_records_of_a_domain(ospp: Ospp, bind: Bind, sub: str):
    """An answer can carry a thousand records, each worth two address lookups and a
    connection: a client tries the first 16 in RFC 2782 order, and so does dnsdiag."""
    dead = closed_port()
    bind.update(
        *[
            ("add", f"_vlmcs._tcp.{sub}.", "SRV", 60, f"{n} 100 {dead} h{n}.{sub}.")
            for n in range(40)
        ],
        *[("add", f"h{n}.{sub}.", "A", 60, f"127.0.0.{n + 1}") for n in range(40)],
    )
    ospp("install-product", "ProPlus2021", "m1")
    ospp(f"/skms-domain:{sub}", "m1")
    ran = ospp("act", "m1", "--json", env=dns_env(bind))
    assert ran.code == 4, ran.out
    targets = ospp("dhistorykms", "m1", "--json").data()["entries"]
    assert len(targets) == 16
    order = ospp("dnsdiag", "m1", "--json", env=dns_env(bind)).data()["order"]
    assert order == [f"h{n}.{sub}:{dead}" for n in range(16)]


def test_a_client_tries_at_most_16_addresses_of_one_target(ospp: Ospp, bind: Bind, sub: str):
    """One SRV target with 40 A records is 40 connections, each worth a timeout when the
    addresses do not answer: a client tries the first 16 addresses in all, and so does
    dnsdiag."""
    dead = closed_port()
    bind.update(
        ("add", f"_vlmcs._tcp.{sub}.", "SRV", 60, f"0 100 {dead} pool.{sub}."),
        *[("add", f"pool.{sub}.", "A", 60, f"127.0.0.{n}") for n in range(1, 41)],
    )
    ospp("install-product", "ProPlus2021", "p1")
    ospp(f"/skms-domain:{sub}", "p1")
    ran = ospp("/act", "p1", env=dns_env(bind))
    assert ran.code == 4 and "ERROR CODE: 0xC004F074" in ran.out, ran.out
    entries = ospp("dhistorykms", "p1", "--json").data()["entries"]
    assert len(entries) == 16, [e["target"] for e in entries]
    contacted = ospp("dnsdiag", "p1", "--json", env=dns_env(bind)).data()["contacted"]
    assert len(contacted) == 16 and {c["target"] for c in contacted} == {f"pool.{sub}"}


def test_all_hosts_dead_lists_each_one(ospp: Ospp, bind: Bind, sub: str):
    a, b = closed_port(), closed_port()
    bind.update(
        ("add", f"_vlmcs._tcp.{sub}.", "SRV", 60, f"0 100 {a} x.{sub}."),
        ("add", f"_vlmcs._tcp.{sub}.", "SRV", 60, f"5 100 {b} x.{sub}."),
        ("add", f"x.{sub}.", "A", 60, "127.0.0.1"),
    )
    ospp("install-product", "ProPlus2021", "z1")
    ospp(f"/skms-domain:{sub}", "z1")
    ran = ospp("/act", "z1", env=dns_env(bind))
    assert ran.code == 4 and "ERROR CODE: 0xC004F074" in ran.out
    assert f"127.0.0.1:{a}" in ran.out and f"127.0.0.1:{b}" in ran.out


def test_weights_three_to_one(bind: Bind, sub: str):
    from ospp.dns import discovery

    bind.update(
        ("add", f"_vlmcs._tcp.{sub}.", "SRV", 60, f"0 3 1688 heavy.{sub}."),
        ("add", f"_vlmcs._tcp.{sub}.", "SRV", 60, f"0 1 1688 light.{sub}."),
        ("add", f"_vlmcs._tcp.{sub}.", "SRV", 60, f"1 100 1688 backup.{sub}."),
    )
    res = discovery.resolver({"OSPP_DNS": bind.address})
    choices = 2000
    firsts = []
    for _ in range(choices):  # one real DNS query per choice
        records = discovery.lookup(res, sub).records
        assert records[-1].target == f"backup.{sub}"  # priority before weight
        firsts.append(records[0].target)
    share = firsts.count(f"heavy.{sub}") / choices
    # Expected 0.75; the standard deviation over 2,000 choices is about 0.0097, so 0.04 is a
    # four-sigma tolerance.
    assert abs(share - 0.75) < 0.04, share


def test_nxdomain(ospp: Ospp, bind: Bind, sub: str):
    ospp("install-product", "ProPlus2021", "n1")
    ospp(f"/skms-domain:missing.{sub}", "n1")
    ran = ospp("/act", "n1", env=dns_env(bind))
    assert ran.code == 4 and "ERROR CODE: 0x8007232B" in ran.out
    assert f"_vlmcs._tcp.missing.{sub}" in ran.out and "NXDOMAIN" in ran.out
    assert "(ospp kms dns records prints it)" in ran.out  # a command there is
    assert ospp("kms", "dns", "records", "--help").code == 0
    diag = ospp("dnsdiag", "n1", "--json", env=dns_env(bind))
    assert diag.code == 4
    assert diag.data()["domains"][0]["outcome"] == "nxdomain"
    assert "Publish the record" in diag.data()["domains"][0]["fix"]


def test_servfail_names_the_nameserver(ospp: Ospp, sub: str):
    bad = ServfailServer()
    try:
        ospp("install-product", "ProPlus2021", "sf")
        ospp(f"/skms-domain:{sub}", "sf")
        ran = ospp("/act", "sf", env={"OSPP_DNS": f"127.0.0.1:{bad.port}"})
        assert ran.code == 4 and "ERROR CODE: 0x8007232A" in ran.out
        assert f"127.0.0.1:{bad.port}" in ran.out
    finally:
        bad.stop()


def test_unresponsive_nameserver(ospp: Ospp, sub: str):
    silent = SilentServer()
    try:
        ospp("install-product", "ProPlus2021", "to")
        ospp(f"/skms-domain:{sub}", "to")
        start = time.monotonic()
        ran = ospp("/act", "to", env={"OSPP_DNS": f"127.0.0.1:{silent.port}"})
        assert time.monotonic() - start < 15
        assert ran.code == 4 and "ERROR CODE: 0x8007232A" in ran.out
        assert "no answer" in ran.out and f"127.0.0.1:{silent.port}" in ran.out
    finally:
        silent.stop()


def test_a_silent_nameserver_costs_a_long_search_list_ten_seconds_not_three_per_domain(
    ospp: Ospp, tmp_path: Path
):
    """Each domain of the search list is asked in turn, up to 3 s each: with eight of them and
    a nameserver that never answers, /act waited 24 s before saying so. The search now stops
    asking after 10 s, and says which domains it left out."""
    conf = tmp_path / "resolv.conf"
    conf.write_text(
        "nameserver 127.0.0.1\nsearch " + " ".join(f"d{n}.example" for n in range(8)) + "\n"
    )
    silent = SilentServer()
    try:
        ospp("install-product", "ProPlus2021", "sl")
        env = {"OSPP_RESOLV_CONF": str(conf), "OSPP_DNS": f"127.0.0.1:{silent.port}"}
        start = time.monotonic()
        ran = ospp.proc("/act", "sl", env=env)
        took = time.monotonic() - start
    finally:
        silent.stop()
    assert ran.code == 4 and "ERROR CODE: 0x8007232A" in ran.out, ran.out
    assert took < 18, took  # 10 s, and the query under way then (3 s at most)
    assert "_vlmcs._tcp.d0.example: no answer within 3 s" in ran.out
    assert "_vlmcs._tcp.d7.example: not asked: the search had taken 10 s already" in ran.out


def test_target_dot_means_no_service(ospp: Ospp, bind: Bind, sub: str):
    bind.update(("add", f"_vlmcs._tcp.{sub}.", "SRV", 60, "0 0 0 ."))
    ospp("install-product", "ProPlus2021", "dot")
    ospp(f"/skms-domain:{sub}", "dot")
    ran = ospp("/act", "dot", env=dns_env(bind))
    assert ran.code == 4 and "ERROR CODE: 0x8007232B" in ran.out and '"."' in ran.out


def test_an_srv_target_no_resolver_can_encode_is_a_host_that_cannot_be_reached(
    ospp: Ospp, bind: Bind, sub: str
):
    """A nameserver may name a target whose label, written as text, is over 63 characters
    (bytes escaped as \\DDD): connecting to it is a network error, not an internal one."""
    target = "\\255" * 20 + f".{sub}."
    bind.update(("add", f"_vlmcs._tcp.{sub}.", "SRV", 60, f"0 100 1688 {target}"))
    ospp("install-product", "ProPlus2021", "odd")
    ospp(f"/skms-domain:{sub}", "odd")
    ran = ospp("/act", "odd", env=dns_env(bind))
    assert ran.code == 4 and "ERROR CODE: 0xC004F074" in ran.out, (ran.out, ran.err)
    assert "internal error" not in ran.out + ran.err


def test_a_machine_that_sent_its_request_is_never_reported_not_tried(
    ospp: Ospp, bind: Bind, sub: str, monkeypatch: pytest.MonkeyPatch
):
    """Machines whose cached host is silent, and whose DNS names that same host: a machine
    reported not tried ("tried": false) has nothing in its history, and one that sent a
    request (to its cached host) is reported as having tried, with its attempt recorded."""
    import sqlite3

    from ospp.machine import kmspool
    from tests.test_fleet import SilentHost

    monkeypatch.setattr(kmspool, "REQUEST_TIMEOUT", 1.0)
    silent = SilentHost()
    port = int(silent.address.rsplit(":", 1)[1])
    bind.update(
        ("add", f"_vlmcs._tcp.{sub}.", "SRV", 60, f"0 100 {port} quiet.{sub}."),
        ("add", f"quiet.{sub}.", "A", 60, "127.0.0.1"),
    )
    try:
        ospp("fleet", "create", "c", "8", "--product", "ProPlus2021", "--skms-domain", sub)
        for n in range(1, 9):
            with contextlib.closing(sqlite3.connect(ospp.store_file(f"c{n}"))) as db:
                db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('kms_cached_host', ?)", (silent.address,)
                )
                db.commit()
        ran = ospp("fleet", "act", "--json", env=dns_env(bind))
    finally:
        silent.stop()
    failures = ran.data()["failures"]
    assert len(failures) == 8 and any(f["tried"] for f in failures), failures
    for failure in failures:
        entries = ospp("/dhistorykms", failure["machine"], "--json").data()["entries"]
        assert bool(entries) == failure["tried"], (failure, entries)


def test_cname_target(ospp: Ospp, bind: Bind, sub: str, host: Host):
    bind.update(
        ("add", f"_vlmcs._tcp.{sub}.", "SRV", 60, f"0 100 {host.port} alias.{sub}."),
        ("add", f"alias.{sub}.", "CNAME", 60, f"real.{sub}."),
        ("add", f"real.{sub}.", "A", 60, "127.0.0.1"),
    )
    ospp("install-product", "ProPlus2021", "cn")
    ospp(f"/skms-domain:{sub}", "cn")
    ran = ospp("act", "cn", "--json", env=dns_env(bind))
    assert ran.data()["products"][0]["error"]["code"] == "0xC004F038"  # reached the host


def test_ipv6_target(ospp: Ospp, bind: Bind, sub: str):
    h = ipv6_host(ospp)
    try:
        bind.update(
            ("add", f"_vlmcs._tcp.{sub}.", "SRV", 60, f"0 100 {h.port} v6.{sub}."),
            ("add", f"v6.{sub}.", "AAAA", 60, "::1"),
        )
        ospp("install-product", "ProPlus2021", "v6")
        ospp(f"/skms-domain:{sub}", "v6")
        ran = ospp("act", "v6", "--json", env=dns_env(bind))
        assert ran.data()["products"][0]["error"]["code"] == "0xC004F038"
        assert (
            ospp("dhistorykms", "v6", "--json").data()["entries"][0]["target"] == f"[::1]:{h.port}"
        )
    finally:
        h.stop()


def test_skms_domain_overrides_the_search_list(
    ospp: Ospp, bind: Bind, sub: str, host: Host, tmp_path: Path
):
    bind.update(
        ("add", f"_vlmcs._tcp.b.{sub}.", "SRV", 60, f"0 100 {host.port} k.{sub}."),
        ("add", f"k.{sub}.", "A", 60, "127.0.0.1"),
    )
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver 127.0.0.1\nsearch a.{sub} b.{sub}\n")
    env = dns_env(bind, OSPP_RESOLV_CONF=str(conf))
    ospp("install-product", "ProPlus2021", "sl")
    found = ospp("act", "sl", "--json", env=env).data()
    assert found["products"][0]["error"]["code"] == "0xC004F038"  # found via the search list
    diag = ospp("dnsdiag", "sl", "--json", env=env).data()
    assert diag["source"] == "search list"
    assert [d["domain"] for d in diag["domains"]] == [f"a.{sub}", f"b.{sub}"]
    ospp(f"/skms-domain:a.{sub}", "sl")
    ran = ospp("/act", "sl", env=env)
    assert ran.code == 4 and "0x8007232B" in ran.out and f"b.{sub}" not in ran.out
    ospp("/ckms-domain", "sl")
    assert (
        ospp("act", "sl", "--json", env=env).data()["products"][0]["error"]["code"] == "0xC004F038"
    )


def test_a_resolv_conf_with_a_search_list_and_no_nameserver_keeps_its_search_list(
    ospp: Ospp, bind: Bind, sub: str, host: Host, tmp_path: Path
):
    """A resolv.conf that gives only the search list (the nameserver from OSPP_DNS): dnspython
    refuses the file for want of a nameserver, and the search list was dropped with it, so
    discovery searched no domain and blamed the domains."""
    bind.update(
        ("add", f"_vlmcs._tcp.b.{sub}.", "SRV", 60, f"0 100 {host.port} k.{sub}."),
        ("add", f"k.{sub}.", "A", 60, "127.0.0.1"),
    )
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"search a.{sub} b.{sub}\n")
    ospp("install-product", "ProPlus2021", "sl")
    env = dns_env(bind, OSPP_RESOLV_CONF=str(conf))
    found = ospp("act", "sl", "--json", env=env).data()
    assert found["products"][0]["error"]["code"] == "0xC004F038", found  # the host answered
    ospp("install-product", "ProPlus2021", "s2")  # no host cached, and no nameserver at all
    ran = ospp("/act", "s2", env={"OSPP_RESOLV_CONF": str(conf)})
    assert ran.code == 4 and "0x8007232A" in ran.out, ran.out
    assert "no DNS server is configured" in ran.out and f"b.{sub}" in ran.out, ran.out


def test_host_caching_skips_dns_until_the_host_fails(ospp: Ospp, bind: Bind, sub: str, host: Host):
    bind.update(
        ("add", f"_vlmcs._tcp.{sub}.", "SRV", 60, f"0 100 {host.port} c.{sub}."),
        ("add", f"c.{sub}.", "A", 60, "127.0.0.1"),
    )
    name = f"_vlmcs._tcp.{sub}"
    env = dns_env(bind)
    ospp("install-product", "ProPlus2021", "ca")
    ospp(f"/skms-domain:{sub}", "ca")

    def queries_after(*args: str) -> int:
        before = bind.srv_queries(name)
        ospp(*args, env=env)
        time.sleep(0.3)  # let BIND write its query log
        return bind.srv_queries(name) - before

    assert queries_after("/act", "ca") == 1
    assert queries_after("/act", "ca") == 0  # cached host, no DNS
    assert queries_after("/act", "ca") == 0
    ospp("/cachst:FALSE", "ca")
    assert queries_after("/act", "ca") == 1  # discovery on every attempt
    assert queries_after("/act", "ca") == 1
    ospp("/cachst:TRUE", "ca")
    assert queries_after("/act", "ca") == 1  # caching was reset: discover once more
    host.stop()
    assert queries_after("/act", "ca") == 1  # the cached host failed: discover again


def test_refused_and_badly_signed_updates(ospp: Ospp, bind: Bind, sub: str, tmp_path: Path):
    make_host(ospp)
    bad_key = tmp_path / "bad.key"
    bad_key.write_text(
        bind.keyfile.read_text().replace(bind.secret, "c2VjcmV0IHRoYXQgaXMgd3Jvbmc=")
    )
    ospp(
        "kms",
        "dns",
        "set",
        "--server",
        bind.address,
        "--domain",
        sub,
        "--hostname",
        f"kms.{sub}",
        "--tsig-keyfile",
        str(bad_key),
    )
    ran = ospp("kms", "dns", "publish", "--port", "1688")
    assert ran.code == 4 and "did not take the update" in ran.out
    assert "0x80072339" in ran.out or "0x80072331" in ran.out
    # unsigned updates are refused
    from ospp.core.clock import SystemClock
    from ospp.dns.publish import Publishing
    from ospp.kmshost.state import KmsHost

    kms_host = KmsHost.open(ospp.home / "kms", SystemClock())

    def unsigned(pub: Publishing) -> None:
        pub.tsig_name = pub.tsig_secret = ""

    kms_host.change_publishing(unsigned)
    kms_host.db.close()
    ran = ospp("kms", "dns", "publish", "--port", "1688")
    assert ran.code == 4 and "REFUSED" in ran.out and "0x8007232D" in ran.out
    # a host whose publishing fails keeps serving
    ospp("kms", "dns", "set", "--tsig-keyfile", str(bad_key))
    h = Host(ospp)
    try:
        time.sleep(1)
        assert "failed" in str(ospp("kms", "status", "--json").data()["dns_last_publish"])
        ospp("install-product", "ProPlus2021", "ok1")
        ospp(f"/sethst:127.0.0.1:{h.port}", "ok1")
        assert "0xC004F038" in ospp("/act", "ok1").out
    finally:
        h.stop()


def test_extra_domains_with_priority_and_weight(ospp: Ospp, bind: Bind, sub: str):
    make_host(ospp)
    ospp(
        "kms",
        "dns",
        "set",
        "--server",
        bind.address,
        "--domain",
        f"main.{sub}",
        "--hostname",
        f"kms.main.{sub}",
        "--extra",
        f"branch.{sub},5,20",
        "--tsig-keyfile",
        str(bind.keyfile),
    )
    assert ospp("kms", "dns", "publish", "--port", "1700").code == 0
    from ospp.dns import discovery

    res = discovery.resolver({"OSPP_DNS": bind.address})
    branch = discovery.lookup(res, f"branch.{sub}").records
    assert [(r.priority, r.weight, r.port, r.target) for r in branch] == [
        (5, 20, 1700, f"kms.main.{sub}")
    ]
    # publishing again replaces this host's own record instead of adding a second one
    assert ospp("kms", "dns", "publish", "--port", "1701").code == 0
    main = discovery.lookup(res, f"main.{sub}").records
    assert [(r.port, r.target) for r in main] == [(1701, f"kms.main.{sub}")]
    assert ospp("kms", "dns", "disable").code == 0
    assert "DNS publishing disabled" in ospp("kms", "status").out


def _srv_records(bind: Bind, domain: str) -> list[str]:
    """The SRV records BIND holds for KMS in ``domain`` (asked directly, no resolver)."""
    import dns.message
    import dns.query

    query = dns.message.make_query(f"_vlmcs._tcp.{domain}", "SRV")
    answer = dns.query.tcp(query, "127.0.0.1", port=bind.port, timeout=5).answer
    return [rdata.to_text() for rrset in answer for rdata in rrset]


def _store_bytes(ospp: Ospp) -> dict[str, bytes]:
    home = ospp.home / "kms"
    return {p.name: p.read_bytes() for p in sorted(home.glob("kms.db*")) if p.suffix != ".db-shm"}


@pytest.mark.parametrize("how", [("kms", "dns", "disable"), ("slmgr", "/cdns")])
def test_publish_is_refused_while_publishing_is_disabled(
    ospp: Ospp, bind: Bind, sub: str, how: tuple[str, ...]
):
    """An admin who turned publishing off gets no update sent by 'kms dns publish' either, as
    the running host sends none: refused with the code of refused settings, the store kept."""
    make_host(ospp)
    args = ["--server", bind.address, "--domain", sub, "--hostname", f"kms.{sub}"]
    assert ospp("kms", "dns", "set", *args, "--tsig-keyfile", str(bind.keyfile)).code == 0
    assert ospp(*how).code == 0
    before = _store_bytes(ospp)
    ran = ospp("kms", "dns", "publish", "--port", "1688")
    assert ran.code == 2, ran.out
    assert "ERROR CODE: 0x80070057" in ran.out
    assert "DNS publishing is disabled" in ran.out
    assert "HINT: Enable it again with: ospp kms dns enable" in ran.out
    data = ospp("kms", "dns", "publish", "--port", "1688", "--json").json()
    assert data["ok"] is False and data["error"]["code"] == "0x80070057"
    assert _srv_records(bind, sub) == []  # no update reached the server
    assert _store_bytes(ospp) == before
    assert ospp("kms", "status", "--json").data()["dns_last_publish"] is None
    # enabled again, it publishes
    assert ospp("kms", "dns", "enable").code == 0
    assert ospp("kms", "dns", "publish", "--port", "1688").code == 0
    assert _srv_records(bind, sub) == [f"0 100 1688 kms.{sub}."]


class _ClosingServer:
    """A TCP server on 127.0.0.1 that accepts each connection and closes it unanswered."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.close()

    def stop(self) -> None:
        self.stopped = True
        self.thread.join(timeout=5)
        self.sock.close()


def _publish_to(ospp: Ospp, server: str) -> str:
    """'kms dns publish' to ``server``: its output, which must be a network failure."""
    assert ospp("kms", "dns", "set", "--server", server).code == 0
    ran = ospp("kms", "dns", "publish", "--port", "1688")
    assert ran.code == 4, ran.out
    return ran.out


UPDATE_POLICY = "HINT: Check the zone's update-policy and the TSIG key"
ADDRESS_AND_PORT = "HINT: Check the DNS server's address and port"


def test_the_hint_of_a_failed_publish_matches_the_failure(
    ospp: Ospp, bind: Bind, sub: str, tmp_path: Path
):
    """A server that cannot be reached gets a hint about its address, port and whether it
    runs; one that answered and refused the update, a hint about its policy and the key."""
    make_host(ospp)
    args = ["--server", bind.address, "--domain", sub, "--hostname", f"kms.{sub}"]
    assert ospp("kms", "dns", "set", *args, "--tsig-keyfile", str(bind.keyfile)).code == 0
    # nothing listens on the port: the connection is refused
    out = _publish_to(ospp, f"127.0.0.1:{closed_port()}")
    assert "ERROR CODE: 0x8007232A" in out and "could not be reached" in out, out
    assert "the connection was refused" in out and ADDRESS_AND_PORT in out, out
    assert "update-policy" not in out
    # a server that never answers: the publish times out
    silent = SilentServer()
    try:
        out = _publish_to(ospp, f"127.0.0.1:{silent.port}")
    finally:
        silent.stop()
    assert "ERROR CODE: 0x8007232A" in out and "no answer within 5 s" in out, out
    assert ADDRESS_AND_PORT in out and "update-policy" not in out
    # one that closes the connection unanswered (not a DNS server)
    closing = _ClosingServer()
    try:
        out = _publish_to(ospp, f"127.0.0.1:{closing.port}")
    finally:
        closing.stop()
    assert "closed the connection" in out and ADDRESS_AND_PORT in out, out
    # BIND answers, and refuses an update signed with a key it does not know
    bad_key = tmp_path / "bad.key"
    bad_key.write_text(bind.keyfile.read_text().replace(bind.secret, "d3Jvbmcgc2VjcmV0"))
    assert ospp("kms", "dns", "set", "--tsig-keyfile", str(bad_key)).code == 0
    out = _publish_to(ospp, bind.address)
    assert "0x80072339" in out or "0x80072331" in out, out
    assert UPDATE_POLICY in out and "address and port" not in out, out
    # ... and an unsigned one: REFUSED by the zone's update-policy
    from ospp.core.clock import SystemClock
    from ospp.dns.publish import Publishing
    from ospp.kmshost.state import KmsHost

    def unsigned(pub: Publishing) -> None:
        pub.tsig_name = pub.tsig_secret = ""

    kms_host = KmsHost.open(ospp.home / "kms", SystemClock())
    kms_host.change_publishing(unsigned)
    kms_host.db.close()
    ran = ospp("kms", "dns", "publish", "--port", "1688")
    assert ran.code == 4 and "ERROR CODE: 0x8007232D" in ran.out, ran.out
    assert UPDATE_POLICY in ran.out and "address and port" not in ran.out
    assert _srv_records(bind, sub) == []


def test_a_domain_too_long_for_an_srv_name_is_refused_not_blamed_on_the_server(
    ospp: Ospp, bind: Bind, sub: str, tmp_path: Path
):
    """A domain of 250 characters is a host name, but "_vlmcs._tcp." before it makes a name
    over the 255 bytes DNS allows: publishing there is refused when it is set (exit 2,
    nothing stored; it was an internal error at publish), /skms-domain refuses it, and one
    on the search list holds no record, rather than being the nameserver's failure."""
    long = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 58])
    make_host(ospp)
    for args in (["--domain", long], ["--domain", sub, "--extra", f"{long},5,5"]):
        ran = ospp.proc(
            "kms", "dns", "set", "--server", bind.address, *args, "--hostname", f"kms1.{sub}"
        )
        assert ran.code == 2 and "255 bytes" in ran.out, (ran.out, ran.err)
        assert "internal error" not in ran.out + ran.err
        assert ospp.proc("kms", "dns", "records").code == 2  # nothing was stored
    ospp("install-product", "ProPlus2021", "lg")
    ran = ospp.proc(f"/skms-domain:{long}", "lg")
    assert ran.code == 2 and "255 bytes" in ran.out, ran.out
    conf = tmp_path / "long-resolv.conf"
    conf.write_text(f"nameserver 127.0.0.1\nsearch {long}\n")
    env = dns_env(bind, OSPP_RESOLV_CONF=str(conf))
    ran = ospp.proc("/act", "lg", env=env)
    assert ran.code == 4 and "ERROR CODE: 0x8007232B" in ran.out, ran.out
    assert "255 bytes" in ran.out and "0x8007232A" not in ran.out
    diag = ospp.proc("dnsdiag", "lg", "--json", env=env)
    assert diag.code == 4 and diag.data()["domains"][0]["outcome"] == "nxdomain"


def test_dnsdiag_tries_a_target_without_an_address_by_name_as_a_client_does(
    ospp: Ospp, bind: Bind, sub: str, host: Host
):
    """A target DNS has no A/AAAA record for is tried by name through the system's resolver
    (localhost: the hosts file), by /act and by dnsdiag alike: dnsdiag said no host answered
    and asked for an A record while /act reached the host."""
    bind.update(
        ("add", f"_vlmcs._tcp.{sub}.", "SRV", 60, f"0 100 {host.port} localhost."),
        ("add", f"_vlmcs._tcp.{sub}.", "SRV", 60, f"5 100 {closed_port()} gone.{sub}."),
    )
    ospp("install-product", "ProPlus2021", "na")
    ospp(f"/skms-domain:{sub}", "na")
    env = dns_env(bind)
    ran = ospp.proc("/act", "na", env=env)
    assert "ERROR CODE: 0xC004F038" in ran.out, ran.out  # the host answered
    diag = ospp.proc("dnsdiag", "na", "--json", env=env)
    assert diag.code == 0, diag.out
    contacted = diag.data()["contacted"]
    assert [c["address"] for c in contacted] == [f"localhost:{host.port}"]
    assert contacted[0]["result"].startswith("no A/AAAA record; tried by name")
    assert "answered, ePID" in contacted[0]["result"] and contacted[0]["fix"] is None
    assert diag.data()["answered"] == f"localhost:{host.port}"
    host.stop()
    diag = ospp.proc("dnsdiag", "na", "--json", env=env)
    assert diag.code == 4, diag.out
    contacted = diag.data()["contacted"]
    assert [c["target"] for c in contacted] == ["localhost", f"gone.{sub}"]
    assert contacted[1]["fix"] == f"Add an A or AAAA record for gone.{sub}."


def test_dnsdiag_stops_resolving_targets_when_a_client_would(ospp: Ospp, bind: Bind, sub: str):
    """Targets whose addresses never come cost a resolver timeout each (A and AAAA): a client
    stops resolving after 10 seconds, and so does dnsdiag, saying where it stopped, rather
    than spending a minute and a half on 16 targets."""
    from tests.dnsutil import SilentAddresses

    bind.update(
        *[("add", f"_vlmcs._tcp.{sub}.", "SRV", 60, f"{n} 100 1688 s{n}.{sub}.") for n in range(16)]
    )
    proxy = SilentAddresses(bind)
    try:
        ospp("install-product", "ProPlus2021", "sa")
        ospp(f"/skms-domain:{sub}", "sa")
        started = time.monotonic()
        diag = ospp.proc("dnsdiag", "sa", "--json", env={"OSPP_DNS": proxy.address})
        took = time.monotonic() - started
    finally:
        proxy.stop()
    assert diag.code == 4, diag.out
    contacted = diag.data()["contacted"]
    assert took < 30, (took, contacted)
    assert 2 <= len(contacted) < 16
    assert contacted[-1]["result"].startswith("not looked up"), contacted[-1]
    assert contacted[-1]["address"] is None  # the schema allows it (check_json)
    assert all(c["result"].startswith("no A/AAAA record") for c in contacted[:-1])


@pytest.mark.parametrize("algorithm", TSIG_ALGORITHMS)
def test_every_tsig_algorithm_ospp_takes_publishes(
    ospp: Ospp, bind: Bind, sub: str, algorithm: str
):
    """Each algorithm 'kms dns set' accepts from a tsig-keygen file signs an update BIND
    takes: hmac-md5 (for old servers) was an internal error, being HMAC-MD5.SIG-ALG.REG.INT
    on the wire."""
    import dns.message
    import dns.query

    make_host(ospp)
    keyfile = str(bind.keyfiles[algorithm])
    target = f"kms-{algorithm}.{sub}"
    ran = ospp.proc(
        "kms", "dns", "set", "--server", bind.address, "--domain", sub, "--hostname", target,
        "--tsig-keyfile", keyfile,
    )  # fmt: skip
    assert ran.code == 0, ran.out
    ran = ospp.proc("kms", "dns", "publish", "--port", "1688")
    assert ran.code == 0, (ran.out, ran.err)
    query = dns.message.make_query(f"_vlmcs._tcp.{sub}.", "SRV")
    answer = dns.query.tcp(query, "127.0.0.1", port=bind.port, timeout=5).answer
    assert [r.to_text() for rrset in answer for r in rrset] == [f"0 100 1688 {target}."]


def test_a_fleet_pass_asks_dns_once_and_still_spreads_by_weight(
    ospp: Ospp, bind: Bind, sub: str, host: Host
):
    """The machines of one 'fleet act' share DNS answers, as behind a caching resolver: one
    SRV query for the pass, not one per machine; each machine still picks its host by weight
    (two targets of equal weight: both are used)."""
    bind.update(
        ("add", f"_vlmcs._tcp.{sub}.", "SRV", 60, f"0 100 {host.port} a.{sub}."),
        ("add", f"_vlmcs._tcp.{sub}.", "SRV", 60, f"0 100 {host.port} b.{sub}."),
        ("add", f"a.{sub}.", "A", 60, "127.0.0.1"),
        ("add", f"b.{sub}.", "A", 60, "127.0.0.1"),
    )
    made = ospp("fleet", "create", "w", "16", "--product", "ProPlus2021", "--skms-domain", sub)
    assert made.code == 0, made.out
    name = f"_vlmcs._tcp.{sub}"
    ran = ospp.proc("fleet", "act", env=dns_env(bind))
    assert "Summary:" in ran.out and "0x8007232" not in ran.out, ran.out
    assert bind.srv_queries_settled(name) == 1
    named = set()
    for n in range(1, 17):
        out = ospp("/dstatus", f"w{n:02d}").out
        named |= {line.split(": ", 1)[1] for line in out.splitlines() if "from DNS:" in line}
    assert named == {f"a.{sub}:{host.port}", f"b.{sub}:{host.port}"}


def test_a_fleet_pass_waits_for_a_silent_nameserver_once_not_per_machine(ospp: Ospp, sub: str):
    """A nameserver that never answers costs a pass one timeout (3 s), not one per machine
    (40 machines in 8 threads: 15 s)."""
    silent = SilentServer()
    try:
        made = ospp("fleet", "create", "q", "40", "--product", "ProPlus2021", "--skms-domain", sub)
        assert made.code == 0, made.out
        started = time.monotonic()
        ran = ospp.proc("fleet", "act", env={"OSPP_DNS": f"127.0.0.1:{silent.port}"})
        took = time.monotonic() - started
    finally:
        silent.stop()
    assert ran.code == 1 and "Summary: 40 failed 0x8007232A" in ran.out, ran.out
    assert took < 10, took


def test_an_address_named_by_several_records_is_tried_once(ospp: Ospp, bind: Bind, sub: str):
    """Four SRV records whose targets all resolve to one address and port: a host that
    accepts and never answers costs /act one request timeout (5 s), not four, and dnsdiag
    asks it once."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    try:
        bind.update(
            *[
                ("add", f"_vlmcs._tcp.{sub}.", "SRV", 60, f"{n} 100 {port} t{n}.{sub}.")
                for n in range(4)
            ],
            *[("add", f"t{n}.{sub}.", "A", 60, "127.0.0.1") for n in range(4)],
        )
        ospp("install-product", "ProPlus2021", "once")
        ospp(f"/skms-domain:{sub}", "once")
        started = time.monotonic()
        ran = ospp.proc("/act", "once", env=dns_env(bind))
        took = time.monotonic() - started
        assert ran.code == 4 and "ERROR CODE: 0xC004F074" in ran.out, ran.out
        entries = ospp("dhistorykms", "once", "--json").data()["entries"]
        assert [e["target"] for e in entries] == [f"127.0.0.1:{port}"]
        assert took < 12, took
        diag = ospp.proc("dnsdiag", "once", "--json", env=dns_env(bind)).data()
        assert [c["address"] for c in diag["contacted"]] == [f"127.0.0.1:{port}"]
    finally:
        silent.close()


def test_publish_says_whether_the_addresses_were_published(ospp: Ospp, bind: Bind, sub: str):
    """--address records can be added only in a zone that holds --hostname: published, they
    are said; for a host name outside every zone updated, publishing says they were not
    (the SRV record alone names a target clients cannot resolve)."""
    make_host(ospp)
    common = ["--server", bind.address, "--domain", sub, "--tsig-keyfile", str(bind.keyfile)]
    ospp("kms", "dns", "set", *common, "--hostname", f"kms1.{sub}", "--address", "127.0.0.1")
    ran = ospp.proc("kms", "dns", "publish", "--port", "1688")
    assert ran.code == 0 and f"published kms1.{sub}. A/AAAA 127.0.0.1" in ran.out, ran.out
    ospp("kms", "dns", "set", "--hostname", "kms1.elsewhere.example")
    ran = ospp.proc("kms", "dns", "publish", "--port", "1688", "--json")
    assert ran.code == 0, ran.out
    assert ran.data()["published"] == [
        f"published _vlmcs._tcp.{sub}. SRV 0 100 1688 kms1.elsewhere.example."
    ], ran.out  # a script counting what was published counts the records alone
    [left_out] = ran.data()["not_published"]
    assert left_out.startswith(
        "not published: the addresses of kms1.elsewhere.example. (127.0.0.1), which is outside "
        f"the zones updated ({ZONE}.)"
    ), left_out


def test_a_host_stops_at_once_while_it_publishes_to_a_slow_dns_server(
    ospp: Ospp, bind: Bind, sub: str
):
    """Publishing to a server that answers each query 3 s late takes a while (12 queries
    here): a host asked to stop meanwhile stops at once, rather than when publishing ends
    (systemd kills a host that takes over 20 s)."""
    from tests.dnsutil import SlowAnswers

    make_host(ospp)
    slow = SlowAnswers(bind, 3.0)
    try:
        ran = ospp(
            "kms", "dns", "set", "--server", slow.address, "--domain", sub,
            "--hostname", f"kms1.{sub}", "--tsig-keyfile", str(bind.keyfile),
            "--extra", f"e1.{sub}", "--extra", f"e2.{sub}",
        )  # fmt: skip
        assert ran.code == 0, ran.out
        h = Host(ospp)
        time.sleep(1.0)  # publishing has begun
        started = time.monotonic()
        assert h.stop() == 0
        took = time.monotonic() - started
    finally:
        slow.stop()
    assert took < 5, took


def test_dnsdiag_says_when_the_machine_uses_its_cached_host_rather_than_dns(
    ospp: Ospp, bind: Bind, sub: str, host: Host
):
    """With host caching on, a machine goes on using the host that answered it last and asks
    DNS only once that host fails: dnsdiag says so, so that an admin who changed the records
    knows why /act does not follow them yet."""
    bind.update(
        ("add", f"_vlmcs._tcp.{sub}.", "SRV", 60, f"0 100 {host.port} c.{sub}."),
        ("add", f"c.{sub}.", "A", 60, "127.0.0.1"),
    )
    env = dns_env(bind)
    ospp("install-product", "ProPlus2021", "cd")
    ospp(f"/skms-domain:{sub}", "cd")
    out = ospp.proc("dnsdiag", "cd", env=env).out
    assert "host caching is on" not in out and "/act would use it." in out, out
    ospp("/act", "cd", env=env)  # the host answers (below the threshold): it is cached
    out = ospp.proc("dnsdiag", "cd", env=env).out
    assert f"Note: host caching is on and this machine uses 127.0.0.1:{host.port}" in out, out
    assert "/act would use it when it looks in DNS." in out
    ospp("/cachst:FALSE", "cd")
    assert "host caching is on" not in ospp.proc("dnsdiag", "cd", env=env).out


def test_no_nameserver_configured_is_said_not_blamed_on_a_server(ospp: Ospp, tmp_path: Path):
    """A resolver configuration that names no nameserver: no server failed, none was asked.
    /act and dnsdiag say so (0x8007232A) and how to give one, rather than reporting SERVFAIL
    or a refusal from 'the DNS server no nameserver configured'."""
    conf = tmp_path / "no-nameserver.conf"
    conf.write_text("options ndots:1\n")
    env = {"OSPP_RESOLV_CONF": str(conf)}
    ospp("install-product", "ProPlus2021", "nn")
    ospp("/skms-domain:corp.example", "nn")
    ran = ospp.proc("/act", "nn", env=env)
    assert ran.code == 4 and "ERROR CODE: 0x8007232A" in ran.out, ran.out
    assert "no DNS server is configured" in ran.out and "SERVFAIL" not in ran.out, ran.out
    assert "OSPP_DNS=ADDR[:PORT]" in ran.out
    diag = ospp.proc("dnsdiag", "nn", "--json", env=env)
    assert diag.code == 4
    domain = diag.data()["domains"][0]
    assert domain["detail"] == "no nameserver is configured, so none was asked"
    assert "OSPP_DNS=ADDR[:PORT]" in domain["fix"]


def test_a_named_resolv_conf_with_a_search_entry_that_is_no_dns_name_is_named(
    ospp: Ospp, tmp_path: Path
):
    """A search entry that is no DNS name (a label over 63 characters) made the resolver
    drop the whole file, its nameserver too, and discovery said no nameserver is configured:
    the file named by OSPP_RESOLV_CONF is refused, saying why (exit 2), nothing recorded."""
    conf = tmp_path / "bad-search.conf"
    conf.write_text(f"nameserver 127.0.0.1\nsearch {'a' * 64}.example\n")
    env = {"OSPP_RESOLV_CONF": str(conf)}
    ospp("install-product", "ProPlus2021", "bs")
    ospp("/skms-domain:corp.example", "bs")
    for args in (["/act", "bs"], ["dnsdiag", "bs"]):
        ran = ospp.proc(*args, env=env)
        assert ran.code == 2 and str(conf) in ran.out and "is not a DNS name" in ran.out, ran.out
    assert ospp("dhistorykms", "bs", "--json").data()["entries"] == []
