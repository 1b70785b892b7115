"""The activation authority, online MAK activation, and phone (IID/CID) activation."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ospp.core.errors import LicensingError
from ospp.protocol import phone
from tests.conftest import Ospp, interrupt_when
from tests.relay import GatedRelay, held


@pytest.fixture
def ospp(center: Ospp) -> Ospp:
    """Every test here runs against both stores of the authority (see conftest.center)."""
    return center


def issue(ospp: Ospp, product: str = "ProPlus2021", limit: int = 3, channel: str = "mak") -> str:
    ran = ospp(
        "center",
        "issue-key",
        "--product",
        product,
        "--channel",
        channel,
        "--limit",
        str(limit),
        "--json",
    )
    assert ran.code == 0, ran.out
    return str(ran.data()["key"])


def iid_of(ospp: Ospp, machine: str | None = None) -> str:
    args = ["dinstid", "--json"] + ([machine] if machine else [])
    return str(ospp(*args).data()["products"][0]["installation_id"])


def test_mak_online_activation_and_limit(ospp: Ospp):
    key = issue(ospp, limit=2)
    ospp.install("ProPlus2021", "pc1", "pc2", "pc3")
    for machine in ("pc1", "pc2"):
        assert ospp("/inpkey:" + key, machine).code == 0
        ran = ospp("/act", machine)
        assert ran.code == 0 and "<Product activation successful>" in ran.out, ran.out
        st_ = ospp("dstatus", machine, "--json").data()["products"][0]
        assert st_["status"] == "LICENSED" and st_["channel"] == "mak"
        assert st_["license_description"].endswith("RETAIL(MAK) channel")
    # the same machine on the same hardware reactivates without using another activation
    assert ospp("/act", "pc1").code == 0
    ospp("/inpkey:" + key, "pc3")
    third = ospp("/act", "pc3")
    assert third.code == 1 and "ERROR CODE: 0xC004C020" in third.out
    hist = ospp("dhistoryacterr", "pc3", "--json").data()["entries"]
    assert [e["code"] for e in hist] == ["0xC004C020"]
    keys = ospp("center", "keys", "--json").data()["keys"]
    assert keys[0]["used"] == 2 and keys[0]["remaining"] == 0
    assert ospp("center", "extend", key, "--by", "1").code == 0
    assert ospp("/act", "pc3").code == 0


def test_blocked_and_forged_keys(ospp: Ospp):
    key = issue(ospp)
    assert ospp("center", "block", key).code == 0
    ospp.install()
    ospp("/inpkey:" + key)
    ran = ospp("/act")
    assert ran.code == 1 and "0xC004C003" in ran.out
    # a key with a valid checksum but a security value the authority never computed
    from ospp.core.catalog import Channel, catalog
    from ospp.protocol import keys

    product = catalog().product("Standard2019")
    assert product is not None
    forged = keys.encode(product, Channel.MAK, 4242, 12345)
    ospp.install("Standard2019", "pc9")
    assert ospp("/inpkey:" + forged, "pc9").code == 0
    ran = ospp("/act", "pc9")
    assert ran.code == 1 and "0xC004C001" in ran.out


def test_inpkey_can_activate_at_once(ospp: Ospp):
    ospp.install()
    ran = ospp("inpkey", issue(ospp), "--act", "--json")
    assert ran.code == 0 and ran.data()["activation"][0]["ok"] is True


def test_tampered_licence_is_detected(ospp: Ospp):
    ospp.install()
    ospp("inpkey", issue(ospp), "--act")
    path = ospp.store_file()
    with sqlite3.connect(path) as conn:
        (blob,) = conn.execute(
            "SELECT activation FROM licenses WHERE activation IS NOT NULL"
        ).fetchone()
        act = json.loads(blob)
        act["licence"]["cmid"] = "00000000-0000-0000-0000-000000000000"
        conn.execute(
            "UPDATE licenses SET activation=? WHERE activation IS NOT NULL", (json.dumps(act),)
        )
    st_ = ospp("dstatus", "--json").data()["products"][0]
    assert st_["status"] != "LICENSED" and st_["error_code"] == "0xC004E003"
    assert "altered" in st_["detail"]
    assert "ERROR CODE: 0xC004E003" in ospp("/dstatus").out


def test_hardware_tolerance(ospp: Ospp):
    ospp.install()
    ospp("inpkey", issue(ospp), "--act")
    ospp("hardware", "change", "disk", "cpu_serial")  # 10 of 12 votes still match
    assert ospp("dstatus", "--json").data()["products"][0]["status"] == "LICENSED"
    ospp("hardware", "change", "nic_mac", "cpu_model", env={"OSPP_NOW": "2027-01-01"})
    st_ = ospp("dstatus", "--json", env={"OSPP_NOW": "2027-01-02"}).data()["products"][0]
    assert st_["status"] == "OOT_GRACE" and st_["error_code"] == "0xC004F00F"
    assert st_["remaining_grace_days"] == 29
    assert ospp("/act", env={"OSPP_NOW": "2027-01-02"}).code == 0
    assert ospp("dstatus", "--json").data()["products"][0]["status"] == "LICENSED"


def test_phone_activation_round_trip_subprocesses(ospp: Ospp):
    key = issue(ospp)
    ospp.install()
    assert ospp.proc("/inpkey:" + key).code == 0
    iid = iid_of(ospp)
    text = ospp.proc("/dinstid").out
    assert "Installation ID for: Office 21, Office21ProPlus2021VL_MAK_AE edition: " + iid in text
    cid = ospp.proc("center", "confirm", iid).out.strip()
    assert len(cid.split("-")) == 20 and all(len(g) == 6 for g in cid.split("-"))
    ran = ospp.proc("/actcid:" + cid.replace("-", " "), env={"OSPP_AUTHORITY": ""})
    assert ran.code == 0 and "<Offline product activation successful>" in ran.out
    assert ospp.proc("dstatus", "--json").data()["products"][0]["status"] == "LICENSED"


def test_cid_errors(ospp: Ospp):
    key = issue(ospp)
    ospp.install("ProPlus2021", "localhost", "other")
    ospp("/inpkey:" + key)
    ospp("/inpkey:" + key, "other")
    cid = ospp("center", "confirm", iid_of(ospp), "--json").data()["cid"]
    # another machine: same key, different machine and hardware
    ran = ospp("/actcid:" + cid, "other")
    assert ran.code == 1 and "0xC004F031" in ran.out
    short = ospp("/actcid:" + cid[:-6])
    assert short.code == 1 and "0xC004F02F" in short.out
    typo = cid[:20] + str((int(cid[20]) + 1) % 10) + cid[21:]
    bad = ospp("/actcid:" + typo)
    assert bad.code == 1 and "0xC004F04D" in bad.out and "group 4" in bad.out
    assert ospp("dstatus", "--json").data()["products"][0]["status"] == "OOB_GRACE"


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("", "the installation ID has 0 digits; it must have 63 (9 groups of 7)"),
        ("   ", "the installation ID has 0 digits; it must have 63 (9 groups of 7)"),
        ("12a4", "the installation ID may hold only digits, spaces and dashes; found 'a'"),
    ],
)
def test_an_installation_id_that_is_not_one_is_refused_saying_why(
    ospp: Ospp, typed: str, said: str
):
    """Nothing typed is said as a length, not as a character found."""
    ran = ospp("center", "confirm", typed, "--json").json()
    assert ran["ok"] is False and ran["error"]["code"] == "0xC004F02C", ran
    assert ran["error"]["message"] == said


def test_confirm_names_the_wrong_group(ospp: Ospp):
    ospp.install()
    ospp("/inpkey:" + issue(ospp))
    iid = iid_of(ospp)
    typo = iid[:21] + str((int(iid[21]) + 3) % 10) + iid[22:]
    ran = ospp("center", "confirm", typo)
    assert ran.code == 1 and "group 4 of the installation ID is wrong" in ran.out


def test_interactive_cid_entry_rejects_a_bad_group_at_once(ospp: Ospp):
    ospp.install()
    ospp("/inpkey:" + issue(ospp))
    cid = ospp("center", "confirm", iid_of(ospp), "--json").data()["cid"]
    groups = [cid[i : i + 6] for i in range(0, 120, 6)]
    wrong = groups[2][:5] + str((int(groups[2][5]) + 1) % 10)
    answers = [*groups[:2], wrong, *groups[2:]]
    ran = ospp.proc("actcid", "--interactive", input="\n".join(answers) + "\n")
    assert ran.code == 0, ran.out + ran.err
    assert "group 3 of the confirmation ID is wrong" in ran.err
    assert ran.err.count("Group 3 of 20") == 2


def test_untrusted_authority_is_refused(ospp: Ospp, tmp_path: Path):
    other = Ospp(tmp_path / "elsewhere")
    key = issue(other)
    cid_source = other
    other.install()
    ospp.install()
    cid_source("/inpkey:" + key)
    # our client trusts only its own (local) authority: a CID from another authority fails
    ospp("/inpkey:" + key)
    cid = other("center", "confirm", iid_of(other), "--json").data()["cid"]
    assert ospp("/actcid:" + cid).code == 1
    # a standard user may not make this home trust it: every machine here would
    pub = tmp_path / "other.pub.json"
    pub.write_text(other("center", "pubkey").out)
    before = ospp("trust", "list", "--json").data()
    for extra in ([], ["--json"]):
        ran = ospp("trust", "add", str(pub), *extra, env={"OSPP_USER": "bob"})
        assert ran.code == 1 and "0xC004F025" in ran.out, ran.out
    assert ospp("trust", "list", "--json").data() == before
    assert ospp("/actcid:" + cid).code == 1
    # and with a remote authority configured, an empty trust store is an error, not a pass
    ran = ospp("/act", env={"OSPP_AUTHORITY": "127.0.0.1:9"})
    assert ran.code == 1 and "0xC004E003" in ran.out and "trust" in ran.out


@pytest.fixture
def served(ospp: Ospp) -> Iterator[str]:
    env = {**os.environ, **ospp.env}
    from ospp.core.background import start_server

    proc, port = start_server(["center", "serve", "--listen", "127.0.0.1:0"], env, subprocess.PIPE)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    assert proc.wait(timeout=10) == 0


def test_remote_authority_race_for_the_last_activations(ospp: Ospp, served: str, tmp_path: Path):
    key = issue(ospp, limit=3)
    pub = tmp_path / "authority.pub.json"
    pub.write_text(ospp("center", "pubkey").out)
    clients = [Ospp(tmp_path / f"m{i}") for i in range(8)]
    for c in clients:
        assert c("trust", "add", str(pub)).code == 0
        c.install()
        assert c("/inpkey:" + key).code == 0
    results: list[int] = []

    def go(c: Ospp) -> None:
        results.append(c.proc("/act", env={"OSPP_AUTHORITY": served}).code)

    threads = [threading.Thread(target=go, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(results) == [0, 0, 0, 1, 1, 1, 1, 1]


def test_remote_authority_survives_malformed_frames(ospp: Ospp, served: str):
    import socket
    import struct

    host, port = served.split(":")
    for payload in (
        b"\x00\x00\x00\x05hello",
        b"\x00\x00\x00\x02{}",
        b"\xff\xff\xff\xff",
        struct.pack(">I", 9) + b'{"v":99}\n',
        b"\x00\x00",
    ):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            s.recv(4096)
    from ospp.core.endpoint import Endpoint
    from ospp.protocol.wire import Connection

    with Connection(Endpoint(host, int(port)), "authority") as conn:
        answer = conn.call({"op": "nosuch"})
    assert answer["ok"] is False and answer["code"] == 0x80070057


def test_unreachable_authority_names_the_endpoint(ospp: Ospp, tmp_path: Path):
    pub = tmp_path / "a.json"
    pub.write_text(ospp("center", "pubkey").out)
    ospp("trust", "add", str(pub))
    ospp.install()
    ospp("/inpkey:" + issue(ospp))
    ran = ospp("/act", env={"OSPP_AUTHORITY": "127.0.0.1:9"})
    assert ran.code == 4 and "127.0.0.1:9" in ran.out


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.integers(1, 2**160 - 1), st.integers(1, 2**160 - 1), st.integers(0, 119), st.integers(1, 9)
)
def test_any_single_changed_cid_digit_is_rejected(r, s, pos, delta):
    cid = phone.encode_cid(r, s)
    assert phone.parse_cid(cid) == (r, s)
    changed = cid[:pos] + str((int(cid[pos]) + delta) % 10) + cid[pos + 1 :]
    with pytest.raises(LicensingError) as info:
        phone.parse_cid(changed)
    assert info.value.code == 0xC004F04D


@given(
    st.integers(0, 255),
    st.integers(0, 3),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**60 - 1),
    st.integers(0, 2**40 - 1),
    st.integers(0, 2**32 - 1),
)
def test_iid_round_trip(product, channel, serial, security, hw, tag):
    version = phone.HOST_IID_VERSION if channel == 2 else phone.IID_VERSION
    iid = phone.InstallationId.for_key(product, channel, serial, security, hw, tag, version)
    assert len(iid.text()) == 63
    back = phone.InstallationId.parse(iid.text())
    assert back == iid and back.proves(security) and not back.proves(security ^ 1)


def test_confirm_batch_writes_csv_and_json(ospp: Ospp, tmp_path: Path):
    key = issue(ospp, limit=5)
    iids = []
    for machine in ("b1", "b2"):
        ospp.install("ProPlus2021", machine)
        ospp("/inpkey:" + key, machine)
        iids.append(iid_of(ospp, machine))
    src = tmp_path / "iids.txt"
    src.write_text(f"# proxy batch\n{iids[0]}\nb2,{iids[1]}\n12345\n")
    ran = ospp("center", "confirm-batch", str(src), str(tmp_path / "out.csv"))
    # every line's answer is written; the exit status says one could not be confirmed
    assert ran.code == 1, ran.out
    assert "2 of 3 installation IDs confirmed" in ran.out
    assert "ERROR CODE: 0xC004F02C" in ran.out and "on line 4" in ran.out
    import csv

    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert [bool(r["cid"]) for r in rows] == [True, True, False]
    assert "0xC004F02C" in rows[2]["error"]
    assert ospp("/actcid:" + rows[1]["cid"], "b2").code == 0
    ran = ospp("center", "confirm-batch", str(src), str(tmp_path / "out.json"), "--json")
    assert ran.code == 1 and ran.json()["error"]["code"] == "0xC004F02C"
    assert ran.data()["confirmed"] == 2
    written = json.loads((tmp_path / "out.json").read_text())
    assert len(written) == 3 and written[0]["error"] is None
    assert written[2]["error"]["code"] == "0xC004F02C" and written[2]["cid"] is None
    assert set(written[2]["error"]) == set(ospp("/ddescr:0x1", "--json").json()["error"])
    # a batch where every line is confirmed exits 0
    src.write_text(f"{iids[0]}\n")
    ran = ospp("center", "confirm-batch", str(src), str(tmp_path / "again.csv"))
    assert ran.code == 0 and "1 of 1 installation IDs confirmed" in ran.out, ran.out


def test_confirm_batch_reads_its_csv_as_csv(ospp: Ospp, tmp_path: Path):
    """A spreadsheet's export: a header row is not a failed line, quoted fields and a ``#``
    inside a field are read as CSV reads them, a comment after the IID is dropped, and a row
    whose last column is empty is a failed line, not passed over in silence."""
    import csv

    key = issue(ospp, limit=5)
    iids = []
    for machine in ("c1", "c2", "c3"):
        ospp.install("ProPlus2021", machine)
        ospp("/inpkey:" + key, machine)
        iids.append(iid_of(ospp, machine))
    src = tmp_path / "iids.csv"
    src.write_text(
        "computer,installation id\n"
        f'"c1","{iids[0]}"\n'
        f"LAB#3,{iids[1]} # second floor\n"
        "c9,\n"
        f'"c3, the last","{iids[2]}"\n'
    )
    ran = ospp("center", "confirm-batch", str(src), str(tmp_path / "out.csv"))
    assert ran.code == 1 and "3 of 4 installation IDs confirmed" in ran.out, ran.out
    assert "on line 4" in ran.out and "has 0 digits" in ran.out, ran.out
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert [r["line"] for r in rows] == ["2", "3", "4", "5"]
    assert [r["iid"] for r in rows] == [iids[0], iids[1], "", iids[2]]
    assert [bool(r["cid"]) for r in rows] == [True, True, False, True]


@pytest.mark.skipif(os.name == "nt", reason="Ctrl+C is not a signal there")
def test_an_interrupted_confirm_batch_writes_what_it_confirmed(ospp: Ospp, tmp_path: Path):
    """Ctrl+C during a batch: the IIDs confirmed so far used activations, so their answers are
    written and the message says so (it used to say nothing was changed and write nothing)."""
    import csv

    key = issue(ospp, limit=5)
    ospp.install("ProPlus2021", "i1")
    ospp("/inpkey:" + key, "i1")
    iid = iid_of(ospp, "i1")
    src = tmp_path / "iids.txt"
    src.write_text(f"{iid}\n" * 15_000)  # the same IID again and again: one activation
    out = tmp_path / "out.csv"

    def activations() -> int:  # by the authority's own report, whatever its backend
        keys = ospp("center", "keys", "--json").data()["keys"]
        return sum(int(k["used"]) for k in keys)

    seen: list[int] = []

    def going() -> bool:  # counted on two looks in a row: its answer is in hand by now
        seen.append(activations())
        return seen[-2:] == [1, 1]

    ran = interrupt_when(ospp, ("center", "confirm-batch", str(src), str(out)), going)
    assert ran.code == 130, (ran.out, ran.err)
    assert "nothing was changed" not in ran.out and f"are in {out}" in ran.out, ran.out
    rows = list(csv.DictReader(out.open()))
    assert 1 <= len(rows) < 15_000 and all(r["cid"] for r in rows)
    assert f"the answers to the first {len(rows)} installation IDs" in ran.out, ran.out
    assert ospp("/actcid:" + rows[0]["cid"], "i1").code == 0


def test_confirm_batch_interrupted_as_its_first_id_is_counted_does_not_say_nothing_changed(
    ospp: Ospp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Ctrl+C between the authority counting the first ID and its answer reaching the batch
    (an instant no signal can be timed to hit, hence in-process): an activation was used,
    and no answer written, which the message says."""
    from ospp.authority.state import Authority

    key = issue(ospp, limit=5)
    ospp.install("ProPlus2021", "i1")
    ospp("/inpkey:" + key, "i1")
    src, out = tmp_path / "iids.txt", tmp_path / "out.csv"
    src.write_text(iid_of(ospp, "i1") + "\n")
    confirm = Authority.confirm

    def counted_then_interrupted(self: Authority, iid: str) -> str:
        confirm(self, iid)
        raise KeyboardInterrupt

    monkeypatch.setattr(Authority, "confirm", counted_then_interrupted)
    ran = ospp("center", "confirm-batch", str(src), str(out))
    assert ran.code == 130 and "0x800704C7" in ran.out, ran.out
    assert "nothing was changed" not in ran.out and "may have used an activation" in ran.out
    assert not out.exists()
    monkeypatch.undo()
    assert sum(k["used"] for k in ospp("center", "keys", "--json").data()["keys"]) == 1


def test_status_reuses_the_seal_and_rechecks_when_trust_changes(ospp: Ospp):
    ospp.install()
    ospp("inpkey", issue(ospp), "--act")
    code = (
        "import sys; from ospp.cli import main; sys.argv=['ospp','dstatus','--json'];\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('CRYPTO', 'cryptography' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **ospp.env},
        timeout=60,
    )
    assert '"status": "LICENSED"' in done.stdout and "CRYPTO False" in done.stdout
    # the authority is no longer trusted: the seal no longer matches, the full check runs
    (ospp.home / "center" / "authority.pub.json").unlink()
    st = ospp("dstatus", "--json").data()["products"][0]
    assert st["status"] != "LICENSED" and st["error_code"] == "0xC004E003"
    assert "not trusted" in st["detail"]


def test_block_and_extend_take_a_key_id_or_the_last_five(ospp: Ospp):
    first = issue(ospp, limit=3)
    second = issue(ospp, limit=3)
    listed = ospp("center", "keys", "--json").data()["keys"]
    ids = {k["key_last5"]: k["serial"] for k in listed}
    assert str(ids[first[-5:]]) in ospp("center", "keys").out  # the text shows the key id
    ran = ospp("center", "extend", str(ids[first[-5:]]), "--by", "2", "--json")
    assert ran.code == 0 and ran.data()["limit"] == 5
    ran = ospp("center", "block", second[-5:].lower(), "--json")
    assert (
        ran.code == 0 and ran.data()["blocked"] is True and ran.data()["serial"] == ids[second[-5:]]
    )
    assert ospp("center", "block", "999", "--json").json()["error"]["code"] == "0xC004C001"
    assert ospp("center", "extend", "ZZZZZ", "--by", "1").code == 1


def test_an_ambiguous_last_five_is_refused(ospp: Ospp):
    import sqlite3

    if ospp.env.get("OSPP_CENTER_DB"):
        pytest.skip("the records are edited in place, which is done on SQLite")
    first, second = issue(ospp), issue(ospp)
    # two keys whose last five characters agree, as a large authority will have
    with sqlite3.connect(Path(ospp.env["OSPP_CENTER_HOME"]) / "center.db") as db:
        db.execute("UPDATE keys SET last5=? WHERE last5=?", (first[-5:], second[-5:]))
    ran = ospp("center", "block", first[-5:], "--json")
    assert ran.code == 2 and "2 keys end in" in ran.json()["error"]["message"]
    assert ospp("center", "keys", "--json").data()["keys"][0]["blocked"] is False


def test_the_authority_charges_one_machine_once_however_it_spells_its_cmid(ospp: Ospp):
    """A MAK is charged per machine: its CMID in either case or in braces is one machine.
    A CMID that is not a GUID, a hardware hash that is not hex digits and a KMS host's
    public key that is not one are refused (0x80070057) before anything is charged."""
    from ospp.authority.state import Authority
    from ospp.core.clock import SystemClock
    from ospp.core.errors import UsageError

    mak = ospp("center", "issue-key", "--product", "ProPlus2021", "--limit", "5").out.strip()
    host_key = ospp("center", "issue-key", "--product", "ProPlus2021", "--channel", "kms-host")
    g = str(uuid.uuid4())
    home = Path(ospp.env["OSPP_CENTER_HOME"])
    authority = Authority.open(home, SystemClock(), environ={**os.environ, **ospp.env})
    try:
        request = {"key": mak, "hardware": "0123456789", "nonce": "n1"}
        for spelt in (g, g.upper(), "{" + g + "}"):
            licence = authority.activate({**request, "cmid": spelt})["licence"]
            assert licence["cmid"] == g
        refused = [
            {**request, "cmid": g.replace("-", "")},
            {**request, "cmid": "plain"},
            {**request, "cmid": g, "hardware": "zz"},
            {**request, "cmid": g, "hardware": "\u0660" * 10},
            {**request, "key": host_key.out.strip(), "cmid": g, "host_key": "!!!!"},
            {**request, "key": host_key.out.strip(), "cmid": g, "host_key": "A" * 44},
        ]
        for bad in refused:
            with pytest.raises(UsageError):
                authority.activate(bad)
    finally:
        authority.close()
    keys = {k["channel"]: k for k in ospp("center", "keys", "--json").data()["keys"]}
    assert keys["mak"]["used"] == 1 and keys["kms-host"]["used"] == 0


@pytest.mark.parametrize(
    "edit",
    ["UPDATE keys SET activation_limit='x'", "UPDATE keys SET last5=x'1b5b33316d'"],
    ids=["a limit that is not a number", "a blob"],
)
def test_a_key_record_edited_by_hand_is_a_store_error_and_nothing_is_written(ospp: Ospp, edit: str):
    import sqlite3

    if ospp.env.get("OSPP_CENTER_DB"):
        pytest.skip("the records are edited in place, which is done on SQLite")
    key = issue(ospp)
    path = Path(ospp.env["OSPP_CENTER_HOME"]) / "center.db"
    with sqlite3.connect(path) as db:
        db.execute(edit)
    for args in (
        ("center", "block", key[-5:]),
        ("center", "keys"),
        ("center", "extend", key, "--by", "1"),
    ):
        ran = ospp(*args)
        assert ran.code == 3 and "0x8007000D" in ran.out and "damaged record" in ran.out, ran
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT blocked FROM keys").fetchall() == [(0,)]
    ospp.install()
    assert ospp("/inpkey:" + key).code in (0, 3)
    ran = ospp("dinstid", "--json")
    iid = ran.data()["products"][0]["installation_id"]
    confirmed = ospp("center", "confirm", iid)
    if "activation_limit" in edit:  # counting reads the limit; the phone centre never the name
        assert confirmed.code == 3 and "0x8007000D" in confirmed.out, confirmed.out
    else:
        assert confirmed.code == 0, confirmed.out


def test_confirm_batch_refuses_to_write_its_answers_over_its_input(ospp: Ospp, tmp_path: Path):
    infile = tmp_path / "iids.txt"
    infile.write_text("123\n")
    link = tmp_path / "link.txt"
    link.symlink_to(infile)
    for outfile in (infile, link, tmp_path / "." / "iids.txt"):
        ran = ospp("center", "confirm-batch", str(infile), str(outfile))
        assert ran.code == 2 and "0x80070057" in ran.err + ran.out, ran
        assert infile.read_text() == "123\n"


def test_an_emptied_authority_store_beside_its_keys_is_refused_and_kept(ospp: Ospp):
    if ospp.env.get("OSPP_CENTER_DB"):
        pytest.skip("the file is SQLite's")
    issue(ospp)
    path = Path(ospp.env["OSPP_CENTER_HOME"]) / "center.db"
    path.write_bytes(b"")
    for extra in path.parent.glob("center.db-*"):
        extra.unlink()
    ran = ospp("center", "keys")
    assert ran.code == 3 and "0x8007000D" in ran.out and "held a store" in ran.out, ran.out
    assert path.read_bytes() == b""


@pytest.mark.parametrize("args", [["center", "keys"], ["center", "migrate"], ["center", "init"]])
def test_a_lost_authority_store_beside_its_keys_is_refused_and_not_made_anew(
    ospp: Ospp, args: list[str]
):
    """center.db gone while its key files stay: every command refuses (exit 3) and leaves
    no new, empty store in its place, so what is restored there is the only store."""
    if ospp.env.get("OSPP_CENTER_DB"):
        pytest.skip("the file is SQLite's")
    issue(ospp)
    home = Path(ospp.env["OSPP_CENTER_HOME"])
    for path in home.glob("center.db*"):
        path.unlink()
    for _ in range(2):
        ran = ospp(*args, "--json").json()
        assert ran["error"]["exit_status"] == 3 and ran["error"]["code"] == "0x8007000D", ran
        assert "holds authority key files but no authority store" in ran["error"]["message"]
        assert sorted(p.name for p in home.glob("center.db*")) == []


def test_confirm_batch_checks_its_outfile_before_confirming_anything(ospp: Ospp, tmp_path: Path):
    """An OUTFILE that cannot be written stops the batch before any activation is used (exit
    3, as for any file that cannot be written); '-' is refused, not written to a file named
    '-'; a byte order mark before the first line is read as Notepad and Excel mean it."""
    key = issue(ospp)
    ospp.install()
    assert ospp("/inpkey:" + key).code == 0
    iid = ospp("dinstid", "--json").data()["products"][0]["installation_id"]
    src = tmp_path / "iids.txt"
    src.write_text("\ufeff" + iid + "\n", encoding="utf-8")

    def used() -> int:
        rows = ospp("center", "keys", "--json").data()["keys"]
        return int(next(r for r in rows if r["key_last5"] == key[-5:])["used"])

    assert used() == 0
    ran = ospp("center", "confirm-batch", str(src), str(tmp_path / "no-dir" / "out.csv"))
    assert ran.code == 3 and "0x80070005" in ran.out and "cannot write" in ran.out, ran
    assert used() == 0
    dash = ospp("center", "confirm-batch", str(src), "-")
    assert dash.code == 2 and "not standard output" in dash.out + dash.err
    assert not Path("-").exists()
    out = tmp_path / "out.csv"
    assert ospp("center", "confirm-batch", str(src), str(out)).code == 0
    assert used() == 1 and "error" not in out.read_text().splitlines()[1]


def test_an_iid_with_two_groups_swapped_is_refused_with_a_hint_to_check_their_order(
    ospp: Ospp,
):
    """Each group's check digit passes when two groups are swapped: the ID then names a key
    nobody issued, and the phone centre says to check the order of the groups."""
    ospp.install()
    assert ospp("/inpkey:" + issue(ospp)).code == 0
    digits = iid_of(ospp)
    groups = [digits[i : i + 7] for i in range(0, len(digits), 7)]
    assert groups[4] != groups[5]
    groups[4], groups[5] = groups[5], groups[4]
    said = ospp("center", "confirm", " ".join(groups), "--json").json()["error"]
    assert said["code"] == "0xC004C001"
    assert "order they were read" in said["hint"]


def test_confirm_where_no_authority_issued_the_key_says_so_and_makes_none(
    ospp: Ospp, tmp_path: Path
):
    """The phone centre run with the wrong OSPP_CENTER_HOME: an ID mistyped, or one of a key
    issued elsewhere, makes no authority there; an authority that has issued no key says that
    rather than to check the order of the groups."""
    ospp.install()
    assert ospp("/inpkey:" + issue(ospp)).code == 0
    iid = iid_of(ospp)
    elsewhere = {"OSPP_CENTER_HOME": str(tmp_path / "elsewhere"), "OSPP_CENTER_DB": ""}
    mistyped = ospp("center", "confirm", iid[:-1], "--json", env=elsewhere)
    assert mistyped.code == 1 and mistyped.json()["error"]["code"] == "0xC004F02C"
    none = ospp("center", "confirm", iid, "--json", env=elsewhere)
    assert none.code == 1 and none.json()["error"]["code"] == "0xC004C001"
    assert "none of its files is there" in none.json()["error"]["message"]
    assert "OSPP_CENTER_HOME" in none.json()["error"]["hint"]
    src, out = tmp_path / "iids.txt", tmp_path / "cids.csv"
    src.write_text(iid + "\n")
    assert ospp("center", "confirm-batch", str(src), str(out), env=elsewhere).code == 1
    assert not (tmp_path / "elsewhere").exists() and not out.exists()
    if ospp.env.get("OSPP_CENTER_DB"):  # an empty home, though the database is set
        only_home = {"OSPP_CENTER_HOME": elsewhere["OSPP_CENTER_HOME"]}
        ran = ospp("center", "confirm", iid, "--json", env=only_home)
        assert ran.code == 1 and "none of its files is there" in ran.json()["error"]["message"]
        assert not (tmp_path / "elsewhere").exists()
    assert ospp("center", "init", env=elsewhere).code == 0
    empty = ospp("center", "confirm", iid, "--json", env=elsewhere).json()["error"]
    assert empty["code"] == "0xC004C001" and "has issued no keys" in empty["hint"]
    assert "order they were read" not in empty["hint"]
    (tmp_path / "elsewhere" / "authority-ed25519.pem").unlink()  # an authority, damaged
    lost = ospp("center", "confirm", iid, "--json", env=elsewhere).json()["error"]
    assert lost["exit_status"] == 3 and lost["code"] == "0x8007000D", lost
    assert ospp("center", "confirm", iid).code == 0  # where the key was issued


def test_an_emptied_database_setting_is_damage_not_a_new_authority_on_sqlite(ospp: Ospp):
    """database.url names the PostgreSQL database the authority's records are in: emptied,
    it was read as no setting, and every command made a new authority in center.db, with a
    new secret that knows none of the keys issued."""
    if ospp.env.get("OSPP_CENTER_DB"):
        pytest.skip("OSPP_CENTER_DB set: the file is not read")
    home = ospp.home / "center"
    home.mkdir(parents=True, exist_ok=True)
    (home / "database.url").write_text("")
    for args in (["center", "keys"], ["center", "init"], ["center", "pubkey"]):
        ran = ospp(*args)
        assert ran.code == 3 and "0x8007000D" in ran.out + ran.err, (args, ran.out, ran.err)
        assert "database.url" in ran.out + ran.err and "is empty" in ran.out + ran.err
    assert sorted(p.name for p in home.iterdir()) == ["database.url"]
    assert (home / "database.url").read_text() == ""


def test_an_installation_id_proves_the_key_without_disclosing_it(ospp: Ospp):
    """What is read over the phone (and so what the centre's call log keeps) no longer
    rebuilds the MAK; a proof made without the key names no key the centre issued, and counts
    nothing; an IID as older ospp read it out (the key's security value in the clear) is still
    confirmed, and its CID activates the machine and keeps it licensed."""
    from ospp.protocol import keys
    from tests.test_trust import recovered_keys

    key = issue(ospp, limit=5)
    ospp.install()
    assert ospp("/inpkey:" + key).code == 0
    iid = iid_of(ospp)
    parsed = phone.InstallationId.parse(iid)
    assert parsed.version == phone.IID_VERSION and key not in recovered_keys(iid.encode())
    older = phone.InstallationId.for_key(
        parsed.product_index,
        parsed.channel_code,
        parsed.serial,
        keys.parse(key).security,
        parsed.hardware,
        parsed.machine_tag,
        phone.KEY_IID_VERSION,
    )
    assert key in recovered_keys(older.text().encode())  # the test's recovery works

    def used() -> int:
        return int(ospp("center", "keys", "--json").data()["keys"][0]["used"])

    forged = phone.InstallationId(
        parsed.product_index,
        parsed.channel_code,
        parsed.serial,
        parsed.key_check ^ 1,
        parsed.hardware,
        parsed.machine_tag,
    )
    refused = ospp("center", "confirm", forged.text(), "--json").json()
    assert refused["ok"] is False and refused["error"]["code"] == "0xC004C001", refused
    assert used() == 0
    assert ospp("center", "confirm", iid).code == 0
    assert used() == 1
    cid = ospp("center", "confirm", older.text(), "--json").data()["cid"]
    assert used() == 1  # the same computer, read out either way
    ran = ospp("/actcid:" + cid)
    assert ran.code == 0 and "<Offline product activation successful>" in ran.out, ran.out
    assert ospp("dstatus", "--json").data()["products"][0]["status"] == "LICENSED"


def test_actcid_activates_the_product_whose_installation_id_the_cid_answers(ospp: Ospp):
    """With two products keyed by MAKs, each reads out its own installation ID: /actcid
    activates the one its CID answers, without --sku; a --sku that names no installed
    licence says so (0xC004F069), and neither changes anything else."""
    ospp.install("ProPlus2021")
    ospp.install("VisioPro2021")
    assert ospp("/inpkey:" + issue(ospp, "ProPlus2021")).code == 0
    assert ospp("/inpkey:" + issue(ospp, "VisioPro2021")).code == 0
    products = ospp("dinstid", "--json").data()["products"]
    iids = {p["product_id"]: p["installation_id"] for p in products}
    cids = {
        product: ospp("center", "confirm", iid, "--json").data()["cid"]
        for product, iid in iids.items()
    }

    def statuses() -> dict[str, str]:
        rows = ospp("dstatus", "--json").data()["products"]
        return {r["product_id"]: r["status"] for r in rows if r["channel"] == "mak"}

    wrong = ospp("actcid", cids["VisioPro2021"], "--sku", "ProPlus2021", "--json").json()
    assert wrong["error"]["code"] == "0xC004F069" and "ProPlus2021" in wrong["error"]["message"]
    assert wrong["error"]["exit_status"] == 1
    assert statuses() == {"ProPlus2021": "OOB_GRACE", "VisioPro2021": "OOB_GRACE"}
    ospp.install("ProPlus2021", "other")
    ospp("/inpkey:" + issue(ospp, "ProPlus2021"), "other")
    other = ospp("center", "confirm", iid_of(ospp, "other"), "--json").data()["cid"]
    ran = ospp("/actcid:" + other)  # a CID for another machine answers neither product
    assert ran.code == 1 and "ERROR CODE: 0xC004F031" in ran.out, ran.out
    assert "none of the products with a key to activate by phone (ProPlus2021, VisioPro" in ran.out
    assert statuses() == {"ProPlus2021": "OOB_GRACE", "VisioPro2021": "OOB_GRACE"}

    ran = ospp("/actcid:" + cids["VisioPro2021"])
    assert ran.code == 0, ran.out
    assert "Office21VisioPro2021VL_MAK_AE edition\n<Offline product activation successful>" in (
        ran.out
    )
    assert statuses() == {"ProPlus2021": "OOB_GRACE", "VisioPro2021": "LICENSED"}
    ran = ospp("actcid", cids["ProPlus2021"], "--json")
    assert ran.code == 0 and ran.data()["product_id"] == "ProPlus2021", ran.out
    assert statuses() == {"ProPlus2021": "LICENSED", "VisioPro2021": "LICENSED"}


def test_a_call_log_that_cannot_be_written_stops_the_call_before_anything_is_confirmed(
    ospp: Ospp,
):
    """The agent's console opens its call log before it confirms: a log it cannot write
    (here a directory in its place) uses no activation, rather than one whose CID the agent
    never sees; and it says so before the caller reads out the installation ID."""
    ospp.install()
    ospp("/inpkey:" + issue(ospp, limit=1))
    (ospp.home / "center" / "phone-calls.jsonl").mkdir()
    ran = ospp.proc("center", "phone", "--json", input=iid_of(ospp) + "\n")
    error = ran.json()["error"]
    assert ran.code == 3 and error["code"] == "0x80070005", ran.out + ran.err
    assert "Installation ID, group 1" not in ran.err, ran.err
    assert "phone-calls.jsonl" in error["message"] and "no activation was used" in error["hint"]
    assert ospp("center", "keys", "--json").data()["keys"][0]["used"] == 0
    (ospp.home / "center" / "phone-calls.jsonl").rmdir()
    answers = "\n" * 20
    ran = ospp.proc("center", "phone", "--json", input=iid_of(ospp) + "\n" + answers)
    assert ran.code == 0 and len(ran.json()["data"]["confirmation_id"]) == 120, ran.out
    assert ospp("center", "keys", "--json").data()["keys"][0]["used"] == 1


def test_a_call_log_the_check_cannot_see_through_stops_the_call_before_confirming(
    ospp: Ospp, tmp_path: Path
):
    """A link to a file in a directory that is not there passes every look that opens
    nothing; the log is opened before the centre confirms, so the call still stops with no
    activation used, and no ID read out to the caller that could not be kept."""
    ospp.install()
    ospp("/inpkey:" + issue(ospp, limit=1))
    log = ospp.home / "center" / "phone-calls.jsonl"
    log.symlink_to(tmp_path / "missing" / "calls.jsonl")
    ran = ospp.proc("center", "phone", "--json", input=iid_of(ospp) + "\n" + "\n" * 20)
    error = ran.json()["error"]
    assert ran.code == 3 and error["code"] == "0x80070005", ran.out + ran.err
    assert "no activation was used" in error["hint"] and "Group 1 of 20" not in ran.err
    assert ospp("center", "keys", "--json").data()["keys"][0]["used"] == 0


def test_the_phone_console_makes_no_authority(ospp: Ospp, tmp_path: Path):
    """Run where no authority is (OSPP_CENTER_HOME not set to the one that issued the keys),
    the console takes the ID and says so, making none there."""
    ospp.install()
    ospp("/inpkey:" + issue(ospp))
    elsewhere = {"OSPP_CENTER_HOME": str(tmp_path / "elsewhere")}
    ran = ospp.proc("center", "phone", "--json", input=iid_of(ospp) + "\n", env=elsewhere)
    error = ran.json()["error"]
    assert ran.code == 1 and error["code"] == "0xC004C001", ran.out + ran.err
    assert (
        "none of its files is there" in error["message"] and not (tmp_path / "elsewhere").exists()
    )
    assert "Installation ID, group 1" not in ran.err  # said before the caller reads anything


def test_issue_key_reports_the_catalog_product_id_however_it_was_typed(ospp: Ospp):
    """Product ids are matched in any case; the report names the catalog's id, the one
    'center keys' lists."""
    ran = ospp("center", "issue-key", "--product", "proplus2021", "--json")
    assert ran.code == 0 and ran.data()["product_id"] == "ProPlus2021", ran.out
    listed = ospp("center", "keys", "--json").data()["keys"]
    assert [k["product_id"] for k in listed] == ["ProPlus2021"]


def test_init_with_another_name_is_refused_once_the_authority_exists(ospp: Ospp):
    """--name names a new authority: given again with another name it is refused (exit 2)
    rather than passed over, and the authority keeps its name and keys; the same name (a
    second node's 'center init') is fine."""
    first = ospp("center", "init", "--name", "Lab", "--json")
    assert first.code == 0, first.out
    pub = (Path(ospp.env["OSPP_CENTER_HOME"]) / "authority.pub.json").read_bytes()
    ran = ospp("center", "init", "--name", "Contoso", "--json").json()
    assert ran["error"]["exit_status"] == 2 and ran["error"]["code"] == "0x80070057", ran
    assert "'Lab'" in ran["error"]["message"]
    again = ospp("center", "init", "--name", "Lab", "--json")
    assert again.code == 0 and again.data() == first.data()
    assert ospp("center", "init", "--json").data() == first.data()
    assert (Path(ospp.env["OSPP_CENTER_HOME"]) / "authority.pub.json").read_bytes() == pub


def test_center_keys_text_keeps_large_counts_apart(ospp: Ospp):
    """A MAK of 100,000 activations, extended past a billion: each count stays a field of
    its own in the text, under its heading, as with small counts."""
    key = issue(ospp, limit=100_000)
    other = issue(ospp, limit=3)

    def rows() -> dict[str, str]:
        lines = ospp("center", "keys").out.splitlines()
        assert lines[0].split()[-4:] == ["USED", "LIMIT", "LEFT", "STATE"]
        return {"header": lines[0]} | {
            k[-5:]: line for k in (key, other) for line in lines if f"*****-{k[-5:]}" in line
        }

    shown = rows()
    assert shown[key[-5:]].split()[-4:] == ["0", "100000", "100000", "active"], shown
    assert shown[other[-5:]].split()[-4:] == ["0", "3", "3", "active"], shown
    limit_ends = shown["header"].index("LIMIT") + len("LIMIT")
    assert shown[other[-5:]][limit_ends - 1] == "3"  # right-aligned under LIMIT
    assert ospp("center", "extend", key, "--by", "1000000000").code == 0
    row = rows()[key[-5:]]
    assert row.split()[-4:] == ["0", "1000100000", "1000100000", "active"], row


@pytest.mark.parametrize(
    "url",
    ["", "  ", "mysql://ospp@db.example/ospp", "postgresql://h:port/x", "postgresql://h:99999/x"],
)
def test_init_refuses_a_db_option_that_names_no_postgresql_database(ospp: Ospp, url: str):
    """--db is a usage error (exit 2) when it is not a postgresql:// URL, empty included (an
    unset variable in a script), and nothing is made: an empty one made an authority on
    SQLite."""
    ran = ospp("center", "init", "--db", url, "--json").json()
    assert ran["error"]["exit_status"] == 2 and ran["error"]["code"] == "0x80070057", ran
    assert ran["error"]["message"].startswith("--db must be a postgresql://")
    home = Path(ospp.env["OSPP_CENTER_HOME"])
    assert not home.exists() or list(home.iterdir()) == []


@pytest.mark.parametrize("password", ["%zz", "50%", "%2"])
def test_a_database_url_with_a_stray_percent_is_named_as_such(ospp: Ospp, password: str):
    """A '%' not followed by two hex digits (a password with a literal %) is a malformed URL,
    said as such with how to write it: not 'the database is unavailable' with a hint to check
    that PostgreSQL runs (exit 4), which is what the driver's refusal of it read as."""
    url = f"postgresql://ospp:{password}@127.0.0.1:1/ospp"
    ran = ospp("center", "init", "--db", url, "--json").json()
    assert ran["error"]["exit_status"] == 2, ran
    assert "not followed by two hexadecimal digits" in ran["error"]["message"], ran
    assert "%25" in ran["error"]["hint"]
    assert f":{password}@" not in json.dumps(ran)  # the password is never shown
    home = Path(ospp.env["OSPP_CENTER_HOME"])
    assert not home.exists() or list(home.iterdir()) == []
    ran = ospp("center", "keys", "--json", env={"OSPP_CENTER_DB": url}).json()
    assert ran["error"]["exit_status"] == 3 and ran["error"]["code"] == "0x8007000D", ran
    assert "not followed by two hexadecimal digits" in ran["error"]["message"], ran


def test_a_key_changed_while_it_is_activated_does_not_get_its_activation(
    ospp: Ospp, served: str, tmp_path: Path
):
    """/act asks the authority outside the store's lock; a key installed meanwhile (another
    window, a script) must not end up beside the activation of the key it replaced, which
    reads as altered: /act says what happened and stores nothing."""
    first, second = issue(ospp), issue(ospp)
    pub = tmp_path / "authority.pub.json"
    pub.write_text(ospp("center", "pubkey").out)
    assert ospp("trust", "add", str(pub)).code == 0  # as a client of a remote authority
    ospp.install()
    assert ospp("/inpkey:" + first).code == 0
    relay = GatedRelay(served)

    def install_second() -> None:
        assert ospp("/inpkey:" + second).code == 0

    env = {**ospp.env, "OSPP_AUTHORITY": f"127.0.0.1:{relay.port}"}
    code, out, err = held(relay, ["/act", "--json"], env, install_second)
    [product] = json.loads(out)["data"]["products"]
    assert code == 1 and product["error"]["code"] == "0xC004F014", out + err
    assert "was changed by another command" in product["error"]["message"]
    st = ospp("dstatus", "--json").data()["products"][0]
    assert st["key_last5"] == second[-5:] and st["status"] == "OOB_GRACE", st
    assert ospp("/act").code == 0  # the key installed now activates as usual
    assert ospp("dstatus", "--json").data()["products"][0]["status"] == "LICENSED"


def test_a_store_kept_locked_by_another_process_says_so(ospp: Ospp, monkeypatch):
    """A store another process holds past the wait is reported as busy (exit 3), with a hint
    to try again, not as a directory that may not be written; nothing is issued."""
    if ospp.env.get("OSPP_CENTER_DB"):
        pytest.skip("SQLite's lock")
    from ospp.core import db as core_db

    issue(ospp)
    monkeypatch.setattr(core_db, "_BUSY_SECONDS", 0.3)  # the wait, not what follows it
    holder = sqlite3.connect(Path(ospp.env["OSPP_CENTER_HOME"]) / "center.db")
    try:
        holder.execute("BEGIN IMMEDIATE")
        ran = ospp("center", "issue-key", "--product", "ProPlus2021", "--json").json()
    finally:
        holder.close()
    assert ran["error"]["exit_status"] == 3 and ran["error"]["code"] == "0x80070005", ran
    assert "is kept busy by another process" in ran["error"]["message"]
    assert ran["error"]["hint"].startswith("Another command")
    assert len(ospp("center", "keys", "--json").data()["keys"]) == 1


def test_confirm_batch_says_an_installation_id_file_is_utf16(ospp: Ospp, tmp_path: Path):
    """A file of IIDs saved as UTF-16 (what '>' writes in Windows PowerShell 5) is named as
    such, with how to save it as UTF-8, before anything is confirmed or written."""
    infile, outfile = tmp_path / "iids.txt", tmp_path / "cids.csv"
    infile.write_bytes("0723310 5941016\r\n".encode("utf-16"))
    ran = ospp("center", "confirm-batch", str(infile), str(outfile), "--json").json()
    assert ran["error"]["exit_status"] == 2 and ran["error"]["code"] == "0x80070057", ran
    assert "is UTF-16 text" in ran["error"]["message"]
    assert (
        "Set-Content -Encoding utf8" in ran["error"]["hint"] and str(infile) in ran["error"]["hint"]
    )
    assert not outfile.exists()


def test_an_authority_address_that_is_not_one_is_not_an_activation_failure(
    ospp: Ospp, tmp_path: Path
):
    """OSPP_AUTHORITY that is not an address is a usage error (exit 2) that attempted
    nothing: /act, slmgr /ato and fleet act leave the store as it was, with no event in
    /dhistoryacterr; an authority that cannot be reached (exit 4) is an attempt, and is."""
    ospp.install()
    ospp("/inpkey:" + issue(ospp))
    pub = tmp_path / "authority.pub.json"
    pub.write_text(ospp("center", "pubkey").out)
    assert ospp("trust", "add", str(pub)).code == 0
    bad = {"OSPP_AUTHORITY": "127.0.0.1:99999"}
    before = ospp.store_file().read_bytes()
    for args in (["/act"], ["slmgr", "ato"]):
        ran = ospp(*args, "--json", env=bad).json()
        assert ran["error"]["exit_status"] == 2, (args, ran)
        assert "OSPP_AUTHORITY" in ran["error"]["message"], (args, ran)
    fleet = ospp("fleet", "act", "--json", env=bad).json()  # exits 1 when any machine failed
    assert fleet["data"]["summary"] == {"failed 0x80070057": 1}, fleet
    assert ospp("dhistoryacterr", "--json").data()["entries"] == []
    assert ospp.store_file().read_bytes() == before
    ran = ospp("/act", env={"OSPP_AUTHORITY": "127.0.0.1:1"})
    assert ran.code == 4
    [event] = ospp("dhistoryacterr", "--json").data()["entries"]
    assert event["code"] == "0x80072EFD"
