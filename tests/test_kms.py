"""KMS host and KMS clients: real hosts on 127.0.0.1 port 0, clients with their own stores."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ospp.core.endpoint import Endpoint
from ospp.protocol.wire import Connection
from tests.conftest import Ospp
from tests.kmsutil import (
    APP,
    PROPLUS_2021_SKU,
    Host,
    ThreadedServer,
    certified_key,
    client,
    ipv6_host,
    make_host,
    path_of,
    raw_request,
    signed_answer,
)


def at(days: float = 0, hours: float = 0, base: datetime | None = None) -> str:
    t = (base or datetime.now(UTC)) + timedelta(days=days, hours=hours)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def host(ospp: Ospp) -> Iterator[Host]:
    make_host(ospp)
    h = Host(ospp)
    yield h
    if h.alive():
        h.stop()


def status_of(ospp: Ospp, machine: str, now: str | None = None) -> dict[str, Any]:
    env = {"OSPP_NOW": now} if now else None
    products: list[dict[str, Any]] = ospp("dstatus", machine, "--json", env=env).data()["products"]
    return products[0]


def test_threshold_four_wait_until_the_fifth_asks(ospp: Ospp, host: Host):
    for n in range(1, 5):
        client(ospp, f"ws{n}", host)
        ran = ospp("/act", f"ws{n}")
        assert ran.code == 1 and "ERROR CODE: 0xC004F038" in ran.out, ran.out
        assert status_of(ospp, f"ws{n}")["status"] == "OOB_GRACE"
    client(ospp, "ws5", host)
    fifth = ospp("act", "ws5", "--json")
    assert fifth.json()["ok"] is True and fifth.data()["products"][0]["count"] == 5
    # too early: the service waits for the activation interval (120 minutes)
    early = ospp("service", "ws1", "--json", env={"OSPP_NOW": at(hours=1)}).data()
    assert early["actions"][0]["action"] is None
    ran = ospp.proc("service", "--all", "--json", env={"OSPP_NOW": at(hours=2)})
    actions = {a["machine"]: a for a in ran.data()["actions"]}
    assert all(actions[f"ws{n}"]["ok"] for n in range(1, 5)), ran.out
    for n in range(1, 6):
        st = status_of(ospp, f"ws{n}")
        assert st["status"] == "LICENSED" and st["error_code"] == "0x4004F040"
    out = ospp("/dstatus", "ws1").out
    assert "LICENSE STATUS:  ---LICENSED---" in out
    assert "ERROR CODE: 0x4004F040 (for information purposes only as the status is licensed)" in out
    assert f"\tKMS machine registry override defined: {host.address}" in out
    hist = ospp("dhistorykms", "ws1", "--json").data()["entries"]
    assert [e["code"] for e in hist] == ["0xC004F038", "0x00000000"]
    assert all(e["target"] == host.address for e in hist)
    cmid = ospp("dcmid", "ws1", "--json").data()["cmid"]
    counted = {c["cmid"] for c in ospp("kms", "clients", "--json").data()["clients"]}
    assert cmid in counted and len(counted) == 5
    st = ospp("kms", "status", "--json").data()
    assert st["current_count"][APP] == 5 and st["requests_failed"] == 0
    assert st["requests_total"] == 9 and st["port"] == host.port


def test_time_travel_renewal_and_expiry(ospp: Ospp, host: Host):
    t0 = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
    host.restart(now=at(base=t0))
    for n in range(1, 6):
        client(ospp, f"m{n}", host, now=at(base=t0))
        ospp("/act", f"m{n}", env={"OSPP_NOW": at(base=t0)})
    for m in ("m1", "m2"):  # count is 5 now
        assert ospp("act", m, env={"OSPP_NOW": at(base=t0)}).code == 0
    st = status_of(ospp, "m1", at(base=t0))
    assert st["status"] == "LICENSED" and st["remaining_grace_days"] == 180
    # day 3: nothing due; day 8: the service renews (renewal interval 7 days)
    assert (
        ospp("service", "m1", "--json", env={"OSPP_NOW": at(3, base=t0)}).data()["actions"][0][
            "action"
        ]
        is None
    )
    host.restart(now=at(8, base=t0))
    renewed = ospp("service", "m1", "--json", env={"OSPP_NOW": at(8, base=t0)}).data()
    assert renewed["actions"][0]["action"] == "renew" and renewed["actions"][0]["ok"]
    assert status_of(ospp, "m1", at(8 + 179, base=t0))["status"] == "LICENSED"
    oot = status_of(ospp, "m1", at(8 + 181, base=t0))
    assert oot["status"] == "OOT_GRACE" and oot["error_code"] == "0x4004F00D"
    late = status_of(ospp, "m1", at(8 + 211, base=t0))
    assert late["status"] == "NOTIFICATIONS" and late["error_code"] == "0xC004F009"
    # m2 never renewed: its validity ran out 180 days after t0
    assert status_of(ospp, "m2", at(181, base=t0))["status"] == "OOT_GRACE"


def test_host_restart_keeps_counts_and_activations(ospp: Ospp, host: Host):
    for n in range(1, 4):
        client(ospp, f"r{n}", host)
        ospp("/act", f"r{n}")
    host.restart()
    for n in range(4, 6):
        client(ospp, f"r{n}", host)
    ospp("/act", "r4")
    assert ospp("act", "r5", "--json").data()["products"][0]["count"] == 5


def test_unactivated_host_is_refused(ospp: Ospp):
    make_host(ospp, activate=False)
    h = Host(ospp)
    try:
        client(ospp, "u1", h)
        ran = ospp("/act", "u1")
        assert ran.code == 1 and "0xC004F041" in ran.out
    finally:
        h.stop()


def test_product_the_host_key_cannot_activate(ospp: Ospp):
    make_host(ospp, product="ProPlus2019")
    h = Host(ospp)
    try:
        client(ospp, "p1", h, product="ProPlus2021")
        ran = ospp("/act", "p1")
        assert ran.code == 1 and "0xC004F042" in ran.out and "ProPlus2019" in ran.out
        client(ospp, "p2", h, product="ProPlus2016")  # older products are covered
        assert "0xC004F038" in ospp("/act", "p2").out
    finally:
        h.stop()


def test_clock_skew_over_four_hours(ospp: Ospp, host: Host):
    client(ospp, "s1", host)
    ran = ospp("/act", "s1", env={"OSPP_NOW": at(hours=5)})
    assert ran.code == 1 and "0xC004F06C" in ran.out
    hint = ospp("act", "s1", "--json", env={"OSPP_NOW": at(hours=5)}).json()["error"]["hint"]
    assert hint is not None and "within 4 hours" in hint and "lab clock" in hint


def test_unreachable_host_gives_f074_with_the_history_hint(ospp: Ospp):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but never listening: connections are refused
        ospp("install-product", "ProPlus2021", "x1")
        ospp(f"/sethst:127.0.0.1:{port}", "x1")
        ran = ospp("/act", "x1")
    assert ran.code == 4 and "ERROR CODE: 0xC004F074" in ran.out
    assert f"127.0.0.1:{port}" in ran.out and "/dhistorykms" in ran.out
    hist = ospp("dhistorykms", "x1", "--json").data()["entries"]
    assert hist[-1]["target"] == f"127.0.0.1:{port}" and hist[-1]["code"] == "0xC004F074"


def test_client_adopts_the_hosts_intervals(ospp: Ospp, host: Host):
    assert ospp("kms", "set", "--activation-interval", "30", "--renewal-interval", "60").code == 0
    assert ospp("kms", "set", "--activation-interval", "14").code == 2
    host.restart()
    client(ospp, "i1", host)
    ospp("/act", "i1")
    out = ospp("/dstatus", "i1").out
    assert "\tActivation Interval: 30 minutes" in out and "\tRenewal Interval: 60 minutes" in out


def test_kms_host_activated_by_phone(ospp: Ospp):
    key = ospp(
        "center", "issue-key", "--product", "ProPlus2024", "--channel", "kms-host", "--json"
    ).data()["key"]
    ospp("kms", "install-key", key)
    iid = ospp("kms", "dinstid", "--json").data()["installation_id"]
    cid = ospp("center", "confirm", iid, "--json").data()["cid"]
    assert ospp("kms", "actcid", cid[:-1] + str((int(cid[-1]) + 1) % 10)).code == 1
    digits = cid.replace("-", "")
    groups = [digits[i : i + 6] for i in range(0, 120, 6)]
    groups[18], groups[19] = groups[19], groups[18]  # each still checks; the signature not
    for args in (["kms", "actcid", "-".join(groups)], ["slmgr", "/atp", "-".join(groups)]):
        swapped = ospp(*args, "--json").json()["error"]
        assert swapped["code"] == "0xC004F031" and "order" in swapped["hint"], swapped
    kms_db = Path(ospp.env["OSPP_KMS_HOME"]) / "kms.db"

    def dump() -> list[str]:
        with contextlib.closing(sqlite3.connect(kms_db)) as conn:
            return list(conn.iterdump())

    before = dump()
    pairs = ["-".join(groups[i : i + 2]) for i in range(0, 20, 2)]
    for split in (groups[:2], groups, pairs, [groups[0], "-".join(groups[1:])]):
        # typed with spaces and no quotes: said as one ID in several words, nothing changes
        for args in (
            ["kms", "actcid", *split],
            ["kms", "actcid", split[0], "--key", "XXXXX", *split[1:]],
        ):
            ran = ospp(*args, "--json").json()["error"]
            assert ran["code"] == "0x80070057" and ran["exit_status"] == 2, (args, ran)
            assert f"it came as {len(split)} separate words: put it in quotes" in ran["message"]
    assert dump() == before
    assert ospp("kms", "actcid", cid).code == 0
    h = Host(ospp)
    try:
        for n in range(1, 6):
            client(ospp, f"ph{n}", h)
            ospp("/act", f"ph{n}")
        assert status_of(ospp, "ph5")["status"] == "LICENSED"
    finally:
        h.stop()


def test_tampered_kms_activation_is_detected(ospp: Ospp, host: Host):
    for n in range(1, 6):
        client(ospp, f"t{n}", host)
        ospp("/act", f"t{n}")
    path = ospp.store_file("t5")
    with sqlite3.connect(path) as conn:
        (blob,) = conn.execute(
            "SELECT activation FROM licenses WHERE activation IS NOT NULL"
        ).fetchone()
        act = json.loads(blob)
        act["valid_until"] = "2099-01-01T00:00:00Z"
        conn.execute(
            "UPDATE licenses SET activation=? WHERE activation IS NOT NULL", (json.dumps(act),)
        )
    st = status_of(ospp, "t5")
    assert st["status"] != "LICENSED" and st["error_code"] == "0xC004E003"


# -- rogue hosts -----------------------------------------------------------------------------


class RogueHost(ThreadedServer):
    """A server speaking our protocol without a certificate from a trusted authority."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

        async def handle(msg: dict[str, Any]) -> dict[str, Any]:
            return dict(self.answer(msg))

        super().__init__(handle)


def _rogue_answer(tmp: Path) -> Any:
    """A well-formed response signed by a key whose 'certificate' comes from a foreign
    authority (a real ospp authority the client does not trust)."""
    from ospp.authority.state import Authority
    from ospp.core.clock import SystemClock

    foreign = Authority.open(tmp / "foreign-center", SystemClock())
    signer, cert = certified_key(foreign, foreign.issue_key("ProPlus2024", "kms-host"))
    return lambda msg: signed_answer(signer, cert, msg)


def test_rogue_host_cannot_activate_our_clients(ospp: Ospp, tmp_path: Path):
    assert ospp("center", "init").code == 0  # the client trusts its own authority only
    rogue = RogueHost(_rogue_answer(tmp_path))
    try:
        ospp("install-product", "ProPlus2021", "v1")
        ospp(f"/sethst:127.0.0.1:{rogue.port}", "v1")
        ran = ospp("/act", "v1")
        assert ran.code == 1 and "0xC004F042" in ran.out
        assert f"127.0.0.1:{rogue.port}" in ran.out and "not trusted" in ran.out
        assert status_of(ospp, "v1")["status"] == "OOB_GRACE"
    finally:
        rogue.close()
    # an emulator that sends no certificate at all
    bare = RogueHost(
        lambda m: {
            "v": 1,
            "ok": True,
            "count": 50,
            **{k: m[k] for k in ("cmid", "nonce", "client_time", "sku_id")},
        }
    )
    try:
        ospp(f"/sethst:127.0.0.1:{bare.port}", "v1")
        ran = ospp("/act", "v1")
        assert ran.code == 1 and "no certificate" in ran.out
    finally:
        bare.close()


def test_replayed_response_is_rejected(ospp: Ospp, host: Host):
    # record a genuine, signed answer from the real host ...
    with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
        recorded = conn.call(raw_request())
    assert recorded["ok"]
    # ... and replay it to a client from a man in the middle
    replay = RogueHost(lambda m: recorded)
    try:
        ospp("install-product", "ProPlus2021", "w1")
        ospp(f"/sethst:127.0.0.1:{replay.port}", "w1")
        ran = ospp("/act", "w1")
        assert ran.code == 1 and "answered another request" in ran.out
    finally:
        replay.close()


# -- robustness -------------------------------------------------------------------------------


def test_fuzzed_frames_never_stop_the_host(ospp: Ospp, host: Host):
    rng = random.Random(1688)
    sent = 0
    deadline = time.monotonic() + 60
    while sent < 10_000 and time.monotonic() < deadline:
        with socket.create_connection(("127.0.0.1", host.port), timeout=5) as s:
            for _ in range(100):
                kind = rng.randrange(5)
                if kind == 0:  # random bytes
                    body = rng.randbytes(rng.randrange(1, 200))
                    frame = struct.pack(">I", len(body)) + body
                elif kind == 1:  # wrong version
                    frame = _frame({**raw_request(), "v": rng.choice([0, 2, "1", None])})
                elif kind == 2:  # valid JSON, wrong fields
                    req = raw_request()
                    req[rng.choice(list(req))] = rng.choice([None, 7, "", "x" * 500, [1]])
                    frame = _frame({**req, "v": 1})
                elif kind == 3:  # truncated: header promises more than follows
                    frame = struct.pack(">I", 500) + b'{"v":1'
                else:  # oversized length prefix
                    frame = struct.pack(">I", 10_000_000)
                try:
                    s.sendall(frame)
                except OSError:
                    break
                sent += 1
                if kind in (3, 4):
                    break  # the host drops the connection after these
            s.shutdown(socket.SHUT_WR)
            try:
                while s.recv(65536):
                    pass
            except OSError:
                pass
    assert sent >= 10_000
    assert host.alive()
    with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
        assert conn.call(raw_request())["ok"] is True


def _frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return struct.pack(">I", len(body)) + body


def test_idle_connections_do_not_block_others_and_time_out(ospp: Ospp):
    make_host(ospp)
    h = Host(ospp, extra=("--idle-timeout", "2"))
    idle = []
    try:
        for _ in range(500):
            idle.append(socket.create_connection(("127.0.0.1", h.port), timeout=5))
        start = time.monotonic()
        with Connection(Endpoint("127.0.0.1", h.port), "KMS host") as conn:
            assert conn.call(raw_request())["ok"] is True
        assert time.monotonic() - start < 2.0
        time.sleep(3)
        idle[0].settimeout(5)
        assert idle[0].recv(1) == b""  # closed by the host after the idle timeout
    finally:
        for s in idle:
            s.close()
        h.stop()


def test_sigterm_stops_cleanly(ospp: Ospp, host: Host):
    assert host.stop(signal.SIGTERM) == 0


def test_sigkill_under_load_loses_no_acknowledged_activation(ospp: Ospp, host: Host):
    acked: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                with Connection(Endpoint("127.0.0.1", host.port), "KMS host", 2) as conn:
                    for _ in range(50):
                        cmid = str(uuid.uuid4())
                        if conn.call(raw_request(cmid)).get("ok"):
                            acked.append(cmid)
            except Exception:
                return

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    host.stop(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert len(acked) > 100
    with sqlite3.connect(path_of(ospp)) as db:
        stored = {row[0] for row in db.execute("SELECT cmid FROM clients")}
    assert set(acked) <= stored
    host.start()
    with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
        assert conn.call(raw_request())["ok"] is True


def test_ipv6_loopback(ospp: Ospp):
    h = ipv6_host(ospp)
    try:
        for n in range(1, 6):
            ospp("install-product", "ProPlus2021", f"six{n}")
            assert ospp(f"/sethst:[::1]:{h.port}", f"six{n}").code == 0
            ospp("/act", f"six{n}")
        assert status_of(ospp, "six5")["status"] == "LICENSED"
    finally:
        h.stop()


def test_listening_on_a_missing_address_is_a_clear_error(ospp: Ospp):
    ran = ospp.proc("kms", "serve", "--listen", "192.0.2.1:0", timeout=30)
    assert ran.code == 4 and "cannot listen on 192.0.2.1:0" in ran.out
    assert "ERROR CODE: 0x80072741" in ran.out  # WSAEADDRNOTAVAIL
    assert "Traceback" not in ran.err


def test_a_port_in_use_is_named_as_windows_names_it(ospp: Ospp):
    """Another server on the port: WSAEADDRINUSE's code, not "could not connect"."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for args in (
            ["--listen", f"127.0.0.1:{port}"],
            ["--listen", "127.0.0.1:0", "--http", f"127.0.0.1:{port}"],
        ):
            ran = ospp.proc("kms", "serve", *args, "--log", "none", timeout=30)
            assert ran.code == 4 and f"127.0.0.1:{port}" in ran.out, ran.out + ran.err
            assert "ERROR CODE: 0x80072740" in ran.out and "Traceback" not in ran.err


def test_a_second_host_on_one_store_is_refused_until_the_first_stops(ospp: Ospp, host: Host):
    """One 'kms serve' per host directory: a second is refused before it listens (exit 3,
    the first one's port named), the first serves on; once it is gone, even by SIGKILL,
    a new one starts."""
    before = ospp("kms", "status", "--json").data()
    ran = ospp.proc("kms", "serve", "--listen", "127.0.0.1:0", "--log", "none", timeout=30)
    assert ran.code == 3, ran.out + ran.err
    assert "ERROR CODE: 0x80070420" in ran.out and "LISTENING" not in ran.out
    assert f"listening on port {host.port}" in ran.out and "Traceback" not in ran.err
    assert ospp("kms", "status", "--json").data()["port"] == before["port"] == host.port
    client(ospp, "one", host)
    assert ospp("/act", "one").code == 1  # counted by the first host: 1 of 5, below threshold
    host.stop(signal.SIGKILL)
    host.start()
    assert host.alive() and ospp("kms", "status", "--json").data()["port"] == host.port


def test_a_key_changed_while_kms_activates_it_does_not_get_its_activation(ospp: Ospp, host: Host):
    """/act asks the KMS host outside the store's lock; a MAK installed meanwhile must not be
    reported activated, nor end up beside the KMS activation of the GVLK it replaced."""
    from tests.relay import GatedRelay, held

    for n in range(4):  # the host's count reaches 5 with the machine held below
        client(ospp, f"c{n}", host)
        ospp("/act", f"c{n}")
    mak = ospp("center", "issue-key", "--product", "ProPlus2021", "--channel", "mak", "--json")
    relay = GatedRelay(host.address)
    assert ospp("install-product", "ProPlus2021", "x").code == 0
    assert ospp(f"/sethst:127.0.0.1:{relay.port}", "x").code == 0

    def install_mak() -> None:
        assert ospp("/inpkey:" + mak.data()["key"], "x").code == 0

    code, out, err = held(relay, ["/act", "x", "--json"], ospp.env, install_mak)
    [product] = json.loads(out)["data"]["products"]
    assert code == 1 and product["error"]["code"] == "0xC004F014", out + err
    assert "was changed by another command" in product["error"]["message"]
    st = ospp("dstatus", "x", "--json").data()["products"][0]
    assert st["key_last5"] == mak.data()["key"][-5:] and st["status"] == "OOB_GRACE", st
    assert ospp("/act", "x").code == 0  # the MAK installed now activates as usual


def test_many_requests_share_one_connection(ospp: Ospp, host: Host):
    with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
        answers = [conn.call(raw_request()) for _ in range(200)]
    assert all(a["ok"] for a in answers)
    assert answers[-1]["count"] == 10  # capped at twice the threshold


def test_request_log_is_one_json_line_per_request(ospp: Ospp, host: Host):
    with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
        for _ in range(3):
            conn.call(raw_request())
        conn.call(raw_request(sku_id="nope"))
    host.stop()
    lines = [json.loads(x) for x in host.log.read_text().splitlines()]
    assert len(lines) == 4 and [x["ok"] for x in lines] == [True, True, True, False]
    assert lines[-1]["code"] == 0xC004F042
    assert os.path.getsize(host.log) > 0


def test_a_renewing_client_is_counted_once(ospp: Ospp, host: Host):
    cmid = str(uuid.uuid4())
    with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
        counts = [conn.call(raw_request(cmid))["count"] for _ in range(20)]
        other = conn.call(raw_request())["count"]
    assert counts == [1] * 20 and other == 2
    assert ospp("kms", "status", "--json").data()["stored_clients"] == 2


def test_counts_are_kept_per_application_group(tmp_path: Path):
    """Office 2010 and Office 2013+ are separate groups on one host, each answered by the
    licence pack of its group (library level; tests/test_packs.py runs the real host)."""
    from ospp.core.catalog import Channel, catalog
    from ospp.core.clock import SystemClock
    from ospp.kmshost.packs import ServingPack
    from ospp.kmshost.state import KmsHost, ServingState

    host = KmsHost.open(tmp_path / "kms", SystemClock())
    cert: dict[str, Any] = {"kind": "test"}
    product2010 = catalog().product("ProPlus2010")
    product2024 = catalog().product("ProPlus2024")
    assert product2010 is not None and product2024 is not None
    state = ServingState(
        (
            ServingPack(product2024, cert, b"{}", "epid-2024"),
            ServingPack(product2010, cert, b"{}", "epid-2010"),
        ),
        120,
        10080,
    )

    def ask(product: Any) -> int:
        sku = product.sku(Channel.KMS_CLIENT)
        [answer] = host.process(
            state, [raw_request(app_id=product.application_id, sku_id=sku.sku_id)]
        )
        assert isinstance(answer, bytes)
        return int(json.loads(answer)["count"])

    counts_new = [ask(product2024) for _ in range(6)]
    assert counts_new == [1, 2, 3, 4, 5, 6]
    assert ask(product2010) == 1
    host.db.close()


_printable = st.text(
    st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp")), max_size=64
)


@given(
    cmid=_printable,
    nonce=_printable,
    client_time=_printable,
    epid=st.text(max_size=80),
    count=st.integers(0, 10**6),
    intervals=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)),
)
def test_answer_built_from_parts_is_the_canonical_body(
    cmid: str, nonce: str, client_time: str, epid: str, count: int, intervals: tuple[int, int]
) -> None:
    """The host builds each signed answer from pre-encoded parts; the bytes must be exactly
    canonical() of the fields, which is what every client rebuilds and verifies."""
    from ospp.core.canonical import canonical
    from ospp.core.catalog import catalog
    from ospp.kmshost.request import Request
    from ospp.kmshost.state import ServingState, signed_answer

    sku = catalog().sku(PROPLUS_2021_SKU)
    assert sku is not None
    now = datetime(2026, 6, 1, 9, 30, 5, 123456, tzinfo=UTC)
    req = Request(APP, sku.sku_id, sku.product, "", cmid, now, client_time, nonce, "licensed", "")
    state = ServingState((), intervals[0], intervals[1])
    middle = f',"epid":{json.dumps(epid)},"host_time":"2026-06-01T09:30:05Z","nonce":'
    body = {
        "op": "kms-activate",
        "epid": epid,
        "cmid": cmid,
        "client_time": client_time,
        "nonce": nonce,
        "sku_id": sku.sku_id,
        "count": count,
        "activation_interval": intervals[0],
        "renewal_interval": intervals[1],
        "host_time": "2026-06-01T09:30:05Z",
    }
    assert signed_answer(state, req, count, middle) == canonical(body)


@given(
    cmid=st.one_of(st.none(), st.integers(), st.text(max_size=80)),
    sku=st.one_of(st.none(), st.lists(st.integers(), max_size=2), st.text(max_size=80)),
    code=st.one_of(st.none(), st.integers(0, 2**32)),
    ok=st.booleans(),
    seconds=st.floats(0, 100),
)
def test_request_log_line_is_the_json_it_always_was(
    cmid: object, sku: object, code: int | None, ok: bool, seconds: float
) -> None:
    """The request log formats its lines directly: the text must stay what json.dumps wrote."""
    import io

    from ospp.kmshost.requestlog import RequestLog

    log = RequestLog(io.StringIO())
    answer: bytes | dict[str, Any] = b"{}" if ok else {"v": 1, "ok": False, "code": code}
    log.add("2026-06-01T09:30:05Z", {"cmid": cmid, "sku_id": sku}, answer, seconds)
    expected = {
        "ts": "2026-06-01T09:30:05Z",
        "op": "kms-activate",
        "cmid": cmid[:64] if isinstance(cmid, str) else None,
        "sku_id": sku[:64] if isinstance(sku, str) else None,
        "ok": ok,
        "code": 0 if ok else code,
        "ms": round(seconds * 1000, 3),
    }
    assert log.lines == [json.dumps(expected)]


def test_request_lines_that_cannot_be_written_are_dropped_counted_and_said_once() -> None:
    """A request log whose writes fail (a full disk) keeps no more lines than one batch, never
    raises, and is reported once when it starts failing and once when it works again."""
    import io
    import logging

    from ospp.kmshost.requestlog import RequestLog

    records: list[logging.LogRecord] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    class Full(io.StringIO):
        failing = True

        def write(self, text: str) -> int:
            if self.failing:
                raise OSError(28, "No space left on device")
            return super().write(text)

    stream = Full()
    log = RequestLog(stream)
    logger = logging.getLogger("ospp.kms")
    catch, level = Catch(), logger.level
    logger.addHandler(catch)
    logger.setLevel(logging.INFO)
    try:
        for _ in range(50):
            for _ in range(10):
                log.add("2026-06-01T09:30:05Z", {"cmid": "c", "sku_id": "s"}, b"", 0.001)
            assert len(log.lines) == 10
            log.write_out()  # as the loop's timer calls it: it must not raise
            assert log.lines == []
        assert log.lost == 500
        stream.failing = False
        log.add("2026-06-01T09:30:06Z", {"cmid": "c", "sku_id": "s"}, b"", 0.001)
        log.write_out()
    finally:
        logger.removeHandler(catch)
        logger.setLevel(level)
    assert len(stream.getvalue().splitlines()) == 1
    said = [(r.levelname, r.getMessage()) for r in records]
    assert said == [
        (
            "WARNING",
            "cannot write the request log: No space left on device; its lines are dropped "
            "until it can be written again (the answers are recorded in the store)",
        ),
        ("INFO", "the request log is written again"),
    ]
    assert [getattr(r, "fields", None) for r in records] == [
        {"lost_lines": 10},
        {"lost_lines": 500},
    ]


def test_a_host_that_never_answers_is_asked_twice_per_pass_not_by_every_thread(monkeypatch):
    """The fleet's shared connections: once a request to a host timed out, one more looks at it
    again while the threads queued behind it wait; when that one times out too, they and every
    later request are not sent to it: each fails at once with NotTried (0xC004F074, naming the
    host), rather than waiting its own timeout."""
    from ospp.core.endpoint import Endpoint
    from ospp.core.errors import NetworkError
    from ospp.machine import kmspool

    timeout = 1.0
    monkeypatch.setattr(kmspool, "REQUEST_TIMEOUT", timeout)
    silent = socket.create_server(("127.0.0.1", 0))
    silent.settimeout(0.1)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(silent.accept()[0])  # read nothing, answer nothing

    listener = threading.Thread(target=accept)
    listener.start()
    pool = kmspool.Pool()
    endpoint = Endpoint("127.0.0.1", silent.getsockname()[1])
    errors: list[NetworkError] = []

    def ask() -> None:
        try:
            pool.call(endpoint, {"op": "kms-ping"})
        except NetworkError as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=ask) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        ask()  # a later request of the same pass
    finally:
        stop.set()
        listener.join(timeout=30)
        silent.close()
        for conn in accepted:
            conn.close()
    assert len(errors) == 7 and len(accepted) == 2  # two requests waited; no other was sent
    waited = [e for e in errors if not isinstance(e, kmspool.NotTried)]
    assert len(waited) == 2
    assert all("did not answer properly: no answer within" in e.message for e in waited)
    for exc in errors:
        assert exc.code == 0xC004F074 or exc in waited
        if exc not in waited:
            assert exc.message.startswith(
                f"the KMS host at {endpoint} did not answer two requests in a row within 1 s each"
            )
            assert exc.hint and f"ospp kms ping {endpoint}" in exc.hint


class Stalls:
    """A peer on 127.0.0.1 that speaks the wire's framing and answers every request with
    ``{"v": 1, "ok": true}``, except the requests whose numbers (1, 2, ... over all its
    connections) are in ``stall``: those it never answers; and those in ``drop``, whose
    connection it closes."""

    def __init__(self, stall: set[int], drop: frozenset[int] = frozenset()) -> None:
        self.stall = stall
        self.drop = drop  # requests whose connection it closes instead of answering
        self.requests = 0
        self.connections = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)
        self.endpoint = Endpoint("127.0.0.1", self.server.getsockname()[1])
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                conn = self.server.accept()[0]
                self.connections += 1
                threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        answer = json.dumps({"v": 1, "ok": True}).encode()
        with contextlib.suppress(OSError), conn:
            while head := conn.recv(4, socket.MSG_WAITALL):
                (length,) = struct.unpack(">I", head)
                conn.recv(length, socket.MSG_WAITALL)
                with self.lock:
                    self.requests += 1
                    number = self.requests
                if number in self.stall:
                    self.stopping.wait(30)  # holds this connection, answering nothing
                    return
                if number in self.drop:
                    return
                conn.sendall(struct.pack(">I", len(answer)) + answer)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
        self.server.close()


@pytest.fixture
def quick_pool(monkeypatch: pytest.MonkeyPatch) -> Any:
    from ospp.machine import kmspool

    monkeypatch.setattr(kmspool, "REQUEST_TIMEOUT", 0.5)
    monkeypatch.setattr(kmspool, "SILENT_FOR", 1.0)
    return kmspool


def _outcomes(pool: Any, endpoint: Endpoint, n: int) -> list[str]:
    """What each of ``n`` requests in turn came to: ok, timeout or not tried."""
    from ospp.core.errors import NetworkError

    out = []
    for _ in range(n):
        try:
            pool.call(endpoint, {"op": "kms-ping"})
            out.append("ok")
        except NetworkError as exc:
            out.append("not tried" if type(exc).__name__ == "NotTried" else "timeout")
    return out


def test_a_host_that_stalls_now_and_then_is_never_given_up_on(quick_pool: Any) -> None:
    """An answer starts the count of timeouts over: two single stalls, on a new connection and
    on a kept one, far apart in a pass, cost one request each."""
    peer = Stalls({1, 4})
    try:
        got = _outcomes(quick_pool.Pool(), peer.endpoint, 6)
    finally:
        peer.stop()
    assert got == ["timeout", "ok", "ok", "timeout", "ok", "ok"]


def test_a_host_that_stops_answering_is_given_up_on_then_looked_at_again(quick_pool: Any):
    """A host that answered, then stopped (its kept connection timed out, then the look on a
    new one): given up on, not sent anything, and looked at again SILENT_FOR later."""
    peer = Stalls(set(range(2, 100)))
    pool = quick_pool.Pool()
    try:
        first = _outcomes(pool, peer.endpoint, 5)
        sent = peer.requests
        time.sleep(1.1)  # SILENT_FOR
        again = _outcomes(pool, peer.endpoint, 2)
        sent_again = peer.requests - sent
    finally:
        peer.stop()
    assert first == ["ok", "timeout", "timeout", "not tried", "not tried"]
    assert sent == 3 and sent_again == 1 and again == ["timeout", "not tried"]


def _at_once(pool: Any, endpoint: Endpoint, n: int) -> list[tuple[float, str]]:
    """``n`` requests sent together: when each ended (seconds from the start) and how."""
    from ospp.core.errors import NetworkError

    began = time.monotonic()
    ended: list[tuple[float, str]] = []

    def one() -> None:
        try:
            pool.call(endpoint, {"op": "kms-ping"})
            how = "ok"
        except NetworkError as exc:
            how = exc.message
        ended.append((time.monotonic() - began, how))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return sorted(ended)


def test_requests_waiting_through_one_pause_count_it_once(quick_pool: Any) -> None:
    """Once a host dropped a connection every thread sends on its own: three requests that all
    time out in one pause are one timeout, not three, and the next request finds the host
    answering (three would have given it up)."""
    peer = Stalls({2, 3, 4}, drop=frozenset({1}))
    pool = quick_pool.Pool()
    try:
        # dropped: a NetworkError ('timeout' to _outcomes), but no timeout to the pool
        assert _outcomes(pool, peer.endpoint, 1) == ["timeout"]
        ended = _at_once(pool, peer.endpoint, 3)
        after = _outcomes(pool, peer.endpoint, 2)
    finally:
        peer.stop()
    assert len(ended) == 3 and all("no answer within" in how for _, how in ended), ended
    assert after == ["ok", "ok"]


def test_while_a_given_up_host_is_looked_at_again_the_others_are_not_held(
    quick_pool: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The look after SILENT_FOR is one request; the others are told at once that the host
    is not tried, not held until the look ends."""
    peer = Stalls(set(range(1, 100)))
    pool = quick_pool.Pool()
    try:
        assert _outcomes(pool, peer.endpoint, 2) == ["timeout", "timeout"]
        time.sleep(1.1)  # SILENT_FOR
        monkeypatch.setattr(quick_pool, "REQUEST_TIMEOUT", 2.0)  # a long look
        ended = _at_once(pool, peer.endpoint, 4)
    finally:
        peer.stop()
    assert peer.requests == 3  # the two, then the one look
    looked = [at for at, how in ended if "no answer within" in how]
    kept_back = [at for at, how in ended if "did not answer two requests" in how]
    assert len(looked) == 1 and len(kept_back) == 3
    assert max(kept_back) < looked[0]  # told before the look ended


def test_closing_the_pool_during_a_look_lets_the_waiting_requests_go(
    quick_pool: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interrupt during the look at a host that timed out once: the requests waiting for
    the look end at once ('stopped first'), before the look does."""
    peer = Stalls(set(range(1, 100)))
    pool = quick_pool.Pool()
    try:
        assert _outcomes(pool, peer.endpoint, 1) == ["timeout"]
        monkeypatch.setattr(quick_pool, "REQUEST_TIMEOUT", 2.0)  # a long look
        threading.Timer(0.3, pool.close).start()
        ended = _at_once(pool, peer.endpoint, 4)
    finally:
        peer.stop()
    looked = [at for at, how in ended if "no answer within" in how]
    stopped = [at for at, how in ended if "the run was stopped first" in how]
    assert len(looked) == 1 and len(stopped) == 3, ended
    assert max(stopped) < looked[0] and peer.requests == 2


def test_a_closed_pool_sends_nothing_more(quick_pool: Any) -> None:
    """An interrupted pass closes its pool: a request after that is not sent, and says why."""
    peer = Stalls(set())
    pool = quick_pool.Pool()
    try:
        assert _outcomes(pool, peer.endpoint, 1) == ["ok"]
        pool.close()
        with pytest.raises(quick_pool.NotTried, match="the run was stopped first"):
            pool.call(peer.endpoint, {"op": "kms-ping"})
    finally:
        peer.stop()
    assert peer.requests == 1


def test_one_machine_is_counted_once_however_it_spells_its_cmid(ospp: Ospp, host: Host):
    """A CMID is a GUID: in either case, with or without braces, it names one machine, and
    the answer echoes it as the client sent it. Anything else is refused (0xC004F056)."""
    g = str(uuid.uuid4())
    with Connection(Endpoint("127.0.0.1", host.port), "KMS host", 10) as conn:
        for spelt in (g, g.upper(), "{" + g + "}", "{" + g.upper() + "}"):
            answer = conn.call(raw_request(spelt))
            assert answer["ok"] is True and answer["count"] == 1, answer
            assert answer["cmid"] == spelt
        for bad in (g.replace("-", ""), " " + g, "{" + g, "\uff46" + g[1:], "e\u0301", "plain"):
            answer = conn.call(raw_request(bad))
            assert answer["ok"] is False and answer["code"] == 0xC004F056, (bad, answer)
    clients = ospp("kms", "clients", "--json").data()["clients"]
    assert [c["cmid"] for c in clients] == [g]
    assert clients[0]["requests"] == 4


def test_a_lone_surrogate_a_peer_sent_leaves_the_request_log_strict_json() -> None:
    """JSON lets a string hold "\\ud800", which strict parsers refuse (it is not Unicode): the
    request log writes such a character as text, so every line stays readable by any parser."""
    import io

    from ospp.kmshost.requestlog import RequestLog

    log = RequestLog(io.StringIO())
    log.add("2026-06-01T09:30:05Z", {"cmid": "\ud800a", "sku_id": "b\udfff"}, b"", 0.001)
    (line,) = log.lines
    assert "\\ud800" not in line.replace("\\\\ud800", "")  # no escaped lone surrogate left
    fields = json.loads(line)
    assert fields["cmid"] == "\\ud800a" and fields["sku_id"] == "b\\udfff"
    line.encode("utf-8")
    json.dumps(fields).encode("utf-8")


def test_a_ping_with_a_nonce_a_terminal_would_act_on_is_not_signed(host: Host) -> None:
    with Connection(Endpoint("127.0.0.1", host.port), "KMS host", 10) as conn:
        signed = conn.call({"op": "kms-ping", "nonce": "plain"})
        odd = conn.call({"op": "kms-ping", "nonce": "\x1b]0;x\x07"})
    assert "signature" in signed and signed["nonce"] == "plain"
    assert odd["ok"] is True and "signature" not in odd and "nonce" not in odd


def test_kms_ping_of_a_host_that_answers_unsigned_says_it_cannot_be_used(ospp: Ospp) -> None:
    """A server that answers the ping as an activated host but without its nonce and
    signature (a host too old to sign pings, or something else on its port) was reached:
    0xC004F042, as for a reply its key did not sign, not 'a connection with the server could
    not be established'."""
    plain = RogueHost(lambda msg: {"v": 1, "ok": True, "epid": "x", "activated": True})
    try:
        ran = ospp("kms", "ping", plain.address)
    finally:
        plain.close()
    assert ran.code == 4 and "ERROR CODE: 0xC004F042" in ran.out, ran.out
    assert "answered another request (or is too old to sign pings)" in ran.out


def test_kms_ping_refused_with_no_code_is_not_called_unreachable(ospp: Ospp) -> None:
    """A refusal with neither code nor reason came from something that was reached: it cannot
    be used (0xC004F042), which 'could not be established' would contradict."""
    bare = RogueHost(lambda msg: {"v": 1, "ok": False})
    try:
        ran = ospp("kms", "ping", bare.address)
    finally:
        bare.close()
    assert ran.code == 4 and "ERROR CODE: 0xC004F042" in ran.out, ran.out
    assert "refused the ping: no reason given" in ran.out


def test_act_refused_with_no_code_is_not_no_kms(ospp: Ospp) -> None:
    """/act against a host that refuses with neither code nor reason: 0xC004F042 (it was
    reached, and cannot be used), not 0xC004F074 ("no KMS could be contacted")."""
    bare = RogueHost(lambda msg: {"v": 1, "ok": False})
    try:
        client_of = ospp("install-product", "ProPlus2021", "b1")
        assert client_of.code == 0 and ospp(f"/sethst:{bare.address}", "b1").code == 0
        ran = ospp("/act", "b1")
    finally:
        bare.close()
    assert ran.code == 1 and "ERROR CODE: 0xC004F042" in ran.out, ran.out
    assert "refused: no reason given" in ran.out


def test_a_home_with_no_host_key_says_so_and_a_file_for_a_home_is_a_store_error(
    ospp: Ospp, tmp_path: Path
):
    first = ospp("kms", "status").out.splitlines()[0]
    assert first == "No Key Management Service host key is installed: ospp kms install-key KEY"
    st = ospp("kms", "status", "--json").data()
    assert (st["packs"], st["activated"], st["port"], st["requests_total"]) == ([], False, 1688, 0)
    assert ospp("kms", "clients", "--json").data()["clients"] == []
    assert ospp("kms", "clients", "--csv").out.count("\n") == 1  # the header
    # Nor does disabling what nothing publishes: it says so, with the default settings.
    off = ospp("kms", "dns", "disable", "--json")
    assert off.code == 0 and off.data()["enabled"] is False, off.out
    assert ospp("kms", "dns", "disable").out.strip() == "DNS publishing disabled."
    assert not (ospp.home / "kms").exists()  # reading a host that has none made none
    afile = tmp_path / "not-a-directory"
    afile.write_text("")
    for home in (afile, afile / "below"):
        env = {"OSPP_KMS_HOME": str(home)}
        for args in (["kms", "status"], ["slmgr", "/cpri"], ["slmgr", "/dlv"]):
            ran = ospp(*args, env=env)
            said = ran.out + ran.err
            assert ran.code == 3 and "0x80070005" in said, (home, args, said)
            assert "OSPP_KMS_HOME" in said
    assert afile.read_text() == ""


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["kms", "set", "--activation-interval", "14"], "0x80070057"),
        (["kms", "set", "--max-clients", "5"], "0x80070057"),
        (
            ["kms", "dns", "set", "--domain", "bad..x", "--hostname", "h", "--server", "::1"],
            "0x80070057",
        ),
        (["kms", "dns", "enable"], "0x80070057"),
        (["kms", "dns", "publish"], "0x80070057"),
        (["kms", "dns", "records"], "0x80070057"),
        (["kms", "uninstall-key", "ABCDE"], "0xC004F014"),
        (["kms", "activate"], "0xC004F014"),
        (["kms", "dinstid"], "0xC004F014"),
        (["kms", "actcid", "123"], "0xC004F014"),
    ],
)
def test_a_refused_kms_command_makes_no_host_store(ospp: Ospp, args: list[str], code: str):
    ran = ospp(*args)
    assert ran.code in (1, 2) and f"ERROR CODE: {code}" in ran.out, ran.out
    assert not (ospp.home / "kms").exists()


def test_a_dangling_link_in_place_of_the_store_is_a_store_error_not_no_host(
    ospp: Ospp, tmp_path: Path
):
    home = ospp.home / "kms"
    home.mkdir(parents=True)
    (home / "kms.db").symlink_to(tmp_path / "not-there.db")
    for args in (["kms", "status"], ["kms", "clients"], ["kms", "activate"], ["slmgr", "/dlv"]):
        ran = ospp(*args)
        said = ran.out + ran.err
        assert ran.code == 3 and "symbolic link" in said, (args, said)
    assert (home / "kms.db").is_symlink() and not (tmp_path / "not-there.db").exists()
