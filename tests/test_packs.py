"""One KMS host, several licence packs: a KMS host key per application group (Office 2010
beside Office 2013 and later), each activated and counted on its own, served by one real
host on 127.0.0.1."""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request
from typing import Any

import pytest

from tests.conftest import Ospp
from tests.kmsutil import Host, client, path_of


def issue(ospp: Ospp, product: str) -> str:
    ran = ospp("center", "issue-key", "--product", product, "--channel", "kms-host", "--json")
    key: str = ran.data()["key"]
    return key


def install(ospp: Ospp, product: str) -> dict[str, Any]:
    ran = ospp("kms", "install-key", issue(ospp, product), "--json")
    assert ran.code == 0, ran.out
    data: dict[str, Any] = ran.data()
    return data


def status(ospp: Ospp) -> dict[str, Any]:
    ran = ospp("kms", "status", "--json")
    assert ran.code == 0, ran.out
    data: dict[str, Any] = ran.data()
    return data


def packs_by_product(ospp: Ospp) -> dict[str, dict[str, Any]]:
    return {p["product_id"]: p for p in status(ospp)["packs"]}


def two_pack_host(ospp: Ospp) -> tuple[str, str]:
    """Office 2021 and Office 2010 packs, both activated online; their keys' last five."""
    new = install(ospp, "ProPlus2021")
    old = install(ospp, "ProPlus2010")
    assert old["replaced"] is None
    ran = ospp("kms", "activate", "--json")  # every pack not yet activated
    assert ran.code == 0, ran.out
    assert {p["product_id"] for p in ran.data()["packs"]} == {"ProPlus2021", "ProPlus2010"}
    return new["key_last5"], old["key_last5"]


def test_a_2010_and_a_2021_client_activate_against_one_host(ospp: Ospp):
    new5, old5 = two_pack_host(ospp)
    packs = packs_by_product(ospp)
    assert packs["ProPlus2021"]["activated"] and packs["ProPlus2010"]["activated"]
    assert packs["ProPlus2021"]["key_last5"] == new5 and packs["ProPlus2010"]["key_last5"] == old5
    assert packs["ProPlus2021"]["epid"] != packs["ProPlus2010"]["epid"]
    h = Host(ospp)
    try:
        for name, product in (("n1", "ProPlus2021"), ("n2", "ProPlus2021"), ("o1", "ProPlus2010")):
            client(ospp, name, h, product)
            ran = ospp("/act", name, "--json")
            # below the threshold: the host answered, signed, with the count of its group
            assert ran.code == 1 and "0xC004F038" in ran.out, ran.out
        # a 2016 client is covered by the 2021 pack (a newer key activates older versions)
        client(ospp, "m1", h, "ProPlus2016")
        assert "0xC004F038" in ospp("/act", "m1").out
        packs = packs_by_product(ospp)
        assert packs["ProPlus2021"]["current_count"] == 3
        assert packs["ProPlus2010"]["current_count"] == 1
        text = ospp("kms", "status").out
        assert f"Partial Product Key: {new5}" in text and f"Partial Product Key: {old5}" in text
        assert "Licence pack: ProPlus2010 (Office 2010), activated" in text
        assert "Current count: 1 (application 59a52881-a989-479d-af46-f275c6370663)" in text
        assert "Current count: 3 (application 0ff1ce15-a989-479d-af46-f275c6370663)" in text
        # reach each group's threshold with more clients: both groups activate
        for i in range(2):
            client(ospp, f"n{i + 3}", h, "ProPlus2021")
            ospp("/act", f"n{i + 3}")
        for i in range(4):
            client(ospp, f"o{i + 2}", h, "ProPlus2010")
            ospp("/act", f"o{i + 2}")
        for name in ("n1", "o1"):
            ran = ospp("/act", name)
            assert ran.code == 0 and "<Product activation successful>" in ran.out, ran.out
        epids = {p: packs_by_product(ospp)[p]["epid"] for p in ("ProPlus2021", "ProPlus2010")}
        # each answer carried the ePID of the pack that counted it
        for name, product in (("n1", "ProPlus2021"), ("o1", "ProPlus2010")):
            (shown,) = ospp("slmgr", "/dli", name, "--json").data()["products"]
            assert shown["kms_client"]["kms_machine_extended_pid"] == epids[product]
    finally:
        h.stop()


def test_removing_one_pack_stops_only_its_group(ospp: Ospp):
    new5, old5 = two_pack_host(ospp)
    ran = ospp("kms", "uninstall-key", old5.lower(), "--json")
    assert ran.code == 0, ran.out
    assert ran.data()["product_id"] == "ProPlus2010" and ran.data()["packs_left"] == 1
    st = status(ospp)
    assert [p["product_id"] for p in st["packs"]] == ["ProPlus2021"]
    # one pack left: the single-key output of before
    assert st["key_last5"] == new5 and st["activated"] is True
    assert "Licence pack:" not in ospp("kms", "status").out
    h = Host(ospp)
    try:
        client(ospp, "old", h, "ProPlus2010")
        ran = ospp("/act", "old")
        assert ran.code == 1 and "0xC004F042" in ran.out, ran.out
        client(ospp, "new", h, "ProPlus2021")
        assert "0xC004F038" in ospp("/act", "new").out
    finally:
        h.stop()
    # a key that is not installed: refused, nothing changed
    ran = ospp("kms", "uninstall-key", old5)
    assert ran.code == 1 and "0xC004F014" in ran.out
    assert ospp("kms", "uninstall-key", "ABC").code == 2
    assert [p["product_id"] for p in status(ospp)["packs"]] == ["ProPlus2021"]


def test_a_key_of_the_same_group_replaces_its_pack(ospp: Ospp):
    first = install(ospp, "ProPlus2016")
    install(ospp, "ProPlus2010")
    newer = install(ospp, "ProPlus2021")
    assert newer["replaced"] == {"product_id": "ProPlus2016", "key_last5": first["key_last5"]}
    assert sorted(packs_by_product(ospp)) == ["ProPlus2010", "ProPlus2021"]
    text = ospp("kms", "install-key", issue(ospp, "Standard2019")).out
    assert f"It replaces the key *****-{newer['key_last5']} (ProPlus2021)" in text
    assert sorted(packs_by_product(ospp)) == ["ProPlus2010", "Standard2019"]
    # a downgrade says what it costs
    downgrade = ospp("kms", "install-key", issue(ospp, "ProPlus2016")).out
    assert "clients of 2019 are refused" in downgrade


def test_commands_on_one_pack_need_its_key_when_there_are_several(ospp: Ospp):
    install(ospp, "ProPlus2021")
    old = install(ospp, "ProPlus2010")["key_last5"]
    ran = ospp("kms", "dinstid", "--json")
    assert ran.code == 0 and len(ran.data()["packs"]) == 2
    # phone activation of the 2010 pack: the CID picks its pack without --key
    iid = ospp("kms", "dinstid", "--key", old, "--json").data()["installation_id"]
    cid = ospp("center", "confirm", iid, "--json").data()["cid"]
    ran = ospp("kms", "actcid", cid, "--json")
    assert ran.code == 0, ran.out
    assert ran.data()["product_id"] == "ProPlus2010" and ran.data()["key_last5"] == old
    packs = packs_by_product(ospp)
    assert packs["ProPlus2010"]["certified"] == "phone"
    assert packs["ProPlus2021"]["activated"] is False
    text = ospp("kms", "status").out
    assert "Licence pack: ProPlus2021 (Office 2013 and later), not activated" in text
    # a CID for neither key is refused and activates nothing
    ran = ospp("kms", "actcid", cid, "--key", packs["ProPlus2021"]["key_last5"])
    assert ran.code == 1 and "0xC004F031" in ran.out
    assert packs_by_product(ospp)["ProPlus2021"]["activated"] is False
    ran = ospp("kms", "uninstall-key", "--json")
    assert ran.code == 2


def test_an_unactivated_pack_refuses_only_its_group(ospp: Ospp):
    install(ospp, "ProPlus2021")
    old = install(ospp, "ProPlus2010")["key_last5"]
    assert ospp("kms", "activate", "--key", old).code == 0
    h = Host(ospp)
    try:
        client(ospp, "o", h, "ProPlus2010")
        assert "0xC004F038" in ospp("/act", "o").out
        client(ospp, "n", h, "ProPlus2021")
        ran = ospp("/act", "n")
        assert ran.code == 1 and "0xC004F041" in ran.out, ran.out
    finally:
        h.stop()
    # the operational log says which pack waits for activation
    assert any("KMS host key for ProPlus2021 is not activated" in x for x in h.stderr_lines)


def test_a_running_host_follows_pack_changes_without_a_restart(ospp: Ospp):
    """Installing, activating and removing a pack while 'kms serve' runs: the host reads its
    packs again (within LiveState.RECHECK of the change) and answers the next request by
    them. A pack damaged meanwhile is logged once; the host serves what it read before."""
    from ospp.kmshost.server import LiveState

    def settled() -> None:
        time.sleep(LiveState.RECHECK * 2)

    install(ospp, "ProPlus2021")
    assert ospp("kms", "activate").code == 0
    h = Host(ospp, extra=("--log-level", "info", "--log-format", "json"))
    try:
        client(ospp, "o", h, "ProPlus2010")
        client(ospp, "n", h, "ProPlus2021")
        assert "0xC004F042" in ospp("/act", "o").out  # no pack for Office 2010
        old5 = install(ospp, "ProPlus2010")["key_last5"]
        settled()
        ran = ospp("/act", "o")
        assert ran.code == 1 and "0xC004F041" in ran.out, ran.out  # its pack, not activated
        assert ospp("kms", "activate", "--key", old5).code == 0
        settled()
        assert "0xC004F038" in ospp("/act", "o").out  # answered and counted by the new pack
        assert "0xC004F038" in ospp("/act", "n").out  # the 2021 pack served throughout
        assert ospp("kms", "set", "--activation-interval", "60").code == 0  # intervals too
        settled()
        assert "0xC004F038" in ospp("/act", "n").out
        assert "Activation Interval: 60 minutes" in ospp("/dstatus", "n").out
        # a pack damaged while serving: reported, and the packs read before keep serving
        db = path_of(ospp)
        with sqlite3.connect(db) as conn:
            (stored,) = conn.execute(
                "SELECT key FROM packs WHERE substr(key, -5) = ?", (old5,)
            ).fetchone()
            conn.execute("UPDATE packs SET key='not-a-key' WHERE key=?", (stored,))
        conn.close()
        settled()
        assert "0xC004F038" in ospp("/act", "o").out
        assert "0xC004F038" in ospp("/act", "n").out
        with sqlite3.connect(db) as conn:  # put back, then removed the usual way
            conn.execute("UPDATE packs SET key=? WHERE key='not-a-key'", (stored,))
        conn.close()
        removed = ospp("kms", "uninstall-key", old5)
        assert removed.code == 0 and "refuses them too, without a restart" in removed.out
        settled()
        assert "0xC004F042" in ospp("/act", "o").out
        assert "0xC004F038" in ospp("/act", "n").out
        assert h.alive()
    finally:
        h.stop()
    records = [json.loads(line) for line in h.stderr_lines]
    failures = [r for r in records if "cannot be read" in r["msg"]]
    assert len(failures) == 1 and "damaged licence pack" in failures[0]["msg"], records
    reread = [r for r in records if r["msg"] == "licence packs read again"]
    assert [(r["activated"], r["activation_interval"]) for r in reread] == [
        (["ProPlus2021"], 120),
        (["ProPlus2021", "ProPlus2010"], 120),
        (["ProPlus2021", "ProPlus2010"], 60),
        (["ProPlus2021"], 60),
    ], reread


def test_a_running_host_signs_with_the_key_a_new_activation_certified(ospp: Ospp):
    """The signing key file lost and the host key activated again (which makes a new key and
    has it certified) while 'kms serve' runs: the host reads the new key with the new
    certificate, so its answers still verify. A key file that cannot be read then is logged
    and the key in use stays."""
    from ospp.kmshost.identity import SIGNING_KEY
    from ospp.kmshost.server import LiveState

    install(ospp, "ProPlus2021")
    assert ospp("kms", "activate").code == 0
    key_file = path_of(ospp).with_name(SIGNING_KEY)
    h = Host(ospp, extra=("--log-level", "info", "--log-format", "json"))
    try:
        client(ospp, "n", h, "ProPlus2021")
        assert "0xC004F038" in ospp("/act", "n").out
        old = key_file.read_bytes()
        key_file.unlink()
        assert ospp("kms", "activate").code == 0  # a new signing key, certified
        assert key_file.read_bytes() != old
        time.sleep(LiveState.RECHECK * 2)
        ran = ospp("/act", "n")
        assert ran.code == 1 and "0xC004F038" in ran.out, ran.out  # signed, and verified
        # damaged now: the host says so once and keeps the key it has
        key_file.write_bytes(b"not a key")
        assert ospp("kms", "set", "--renewal-interval", "20000").code == 0
        time.sleep(LiveState.RECHECK * 2)
        assert "0xC004F038" in ospp("/act", "n").out
        assert h.alive()
    finally:
        h.stop()
    records = [json.loads(line) for line in h.stderr_lines]
    failures = [r["msg"] for r in records if "cannot be read" in r["msg"]]
    assert len(failures) == 1 and "signing key" in failures[0], failures


def test_a_store_with_one_host_key_from_before_packs_is_still_served(ospp: Ospp):
    """A store written before licence packs (the key in the meta table, schema 3) is moved
    into a pack when opened: key, certificate, ePID and counts all kept."""
    key = issue(ospp, "ProPlus2021")
    assert ospp("kms", "install-key", key).code == 0
    assert ospp("kms", "activate").code == 0
    h = Host(ospp)
    try:
        client(ospp, "c1", h)
        assert "0xC004F038" in ospp("/act", "c1").out
    finally:
        h.stop()
    before = status(ospp)
    db = path_of(ospp)
    with sqlite3.connect(db) as conn:  # rewrite it as the older ospp wrote it
        (k, cert, epid, at) = conn.execute(
            "SELECT key, certificate, epid, activated_at FROM packs"
        ).fetchone()
        conn.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [("key", k), ("certificate", cert), ("epid", epid), ("activated_at", at)],
        )
        conn.execute("DROP TABLE packs")
        conn.execute("PRAGMA user_version=3")
    conn.close()
    after = status(ospp)
    for name in ("key_last5", "activated", "certified", "epid", "activated_at", "current_count"):
        assert after[name] == before[name], name
    assert len(after["packs"]) == 1
    with sqlite3.connect(db) as conn:
        left = conn.execute(
            "SELECT name FROM meta WHERE name IN ('key', 'certificate', 'epid')"
        ).fetchall()
    conn.close()
    assert left == []
    h = Host(ospp)
    try:
        client(ospp, "c2", h)
        ran = ospp("/act", "c2")
        assert "0xC004F038" in ran.out and "counts 2 machine(s)" in ran.out, ran.out
    finally:
        h.stop()


def test_a_damaged_pack_is_reported_and_left_alone(ospp: Ospp):
    install(ospp, "ProPlus2021")
    db = path_of(ospp)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE packs SET key='not-a-key'")
    conn.close()
    ran = ospp("kms", "status", "--json")
    assert ran.code == 3 and "damaged licence pack" in ran.out
    assert ospp("kms", "install-key", issue(ospp, "ProPlus2010")).code == 3
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT key FROM packs").fetchall() == [("not-a-key",)]
    conn.close()


def test_status_page_and_metrics_show_every_pack(ospp: Ospp):
    parser = pytest.importorskip("prometheus_client.parser")
    new5, old5 = two_pack_host(ospp)
    ospp("kms", "uninstall-key", new5)
    install(ospp, "ProPlus2024")  # not activated
    h = Host(ospp, extra=("--http", "127.0.0.1:0"))
    try:
        assert h.proc is not None and h.proc.stdout is not None
        base = "http://" + h.proc.stdout.readline().split()[1]
        with urllib.request.urlopen(base + "/", timeout=10) as resp:
            page = resp.read().decode()
        assert page.count('<tr class="pack"') == 2
        assert f"*****-{old5}" in page and "ProPlus2024" in page
        assert "not activated (its clients get 0xC004F041)" in page
        with urllib.request.urlopen(base + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
        got = {}
        for family in parser.text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "ospp_kms_pack_activated":
                    got[s.labels["product"]] = s.value
        assert got == {"ProPlus2024": 0, "ProPlus2010": 1}
    finally:
        h.stop()


def test_ping_answers_for_an_activated_pack(ospp: Ospp):
    install(ospp, "ProPlus2024")  # not activated, listed first
    old = install(ospp, "ProPlus2010")["key_last5"]
    ospp("kms", "activate", "--key", old)
    h = Host(ospp)
    try:
        ran = ospp("kms", "ping", h.address, "--json")
        assert ran.code == 0, ran.out
        assert ran.data()["product_id"] == "ProPlus2010"
        assert json.dumps(ran.data()["epid"]) in json.dumps(packs_by_product(ospp))
    finally:
        h.stop()


def test_slmgr_names_a_pack_by_its_activation_id(ospp: Ospp):
    from ospp.core.catalog import Channel, catalog

    two_pack_host(ospp)
    product2010 = catalog().product("ProPlus2010")
    assert product2010 is not None
    act2010 = product2010.sku(Channel.KMS_HOST).sku_id
    shown = ospp("slmgr", "/dli", "all", "--json").data()["products"]
    hosts = [p for p in shown if p.get("is_kms_host")]
    assert [p["product_id"] for p in hosts] == ["ProPlus2021", "ProPlus2010"]
    assert ospp("slmgr", "/dli", act2010, "--json").data()["products"][0]["current_count"] == 0
    # /upk never removes a pack by default
    ran = ospp("slmgr", "/upk")
    assert ran.code == 2 and act2010 in ran.out
    assert len(status(ospp)["packs"]) == 2
    assert ospp("slmgr", "/upk", act2010).code == 0
    assert [p["product_id"] for p in status(ospp)["packs"]] == ["ProPlus2021"]
