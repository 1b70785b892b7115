"""What an admin meets when a state file is damaged or an argument is wrong.

Each case must fail with the licensing code and a message naming what was wrong, a non-zero
exit that is not 70 (a bug), the JSON envelope under ``--json``, and no change to any file of
the homes: a damaged file is reported and kept as it was, never reset.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import PRODUCT, Ospp, Ran


def _files(home: Path) -> dict[str, str]:
    """Every file under ``home`` and a digest of what it holds: a SQLite store by its rows,
    apart from the history a failed activation is recorded in (``/dhistoryacterr``) and
    SQLite's own tables. Lock files, made empty where a lock is first taken, hold nothing."""
    found: dict[str, str] = {}
    for path in sorted(home.rglob("*")):
        if not path.is_file() or path.name.endswith(("-shm", "-wal", ".lock")):
            continue
        data = path.read_bytes()
        if path.suffix == ".db" and data.startswith(b"SQLite format 3"):
            data = _rows(path) or data
        found[str(path.relative_to(home))] = hashlib.sha256(data).hexdigest()
    return found


def _rows(path: Path) -> bytes | None:
    """The rows of the store at ``path`` (None when SQLite cannot read it)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        tables = [
            name
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            if name != "history" and not name.startswith("sqlite_")
        ]
        return repr(
            [sorted(map(repr, conn.execute(f'SELECT * FROM "{t}"'))) for t in tables]
        ).encode()
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def _refused(ospp: Ospp, args: list[str], status: int, code: str, *words: str) -> tuple[Ran, Ran]:
    """Run ``args`` as text and as --json; both must fail alike and change no file."""
    before = _files(ospp.home)
    text = ospp(*args)
    assert text.code == status, text.out + text.err
    assert f"ERROR CODE: {code}" in text.out, text.out
    for word in words:
        assert word in text.out, text.out
    as_json = ospp(*args, "--json")
    assert as_json.code == status, as_json.out
    error = as_json.json()["error"]
    assert as_json.json()["ok"] is False
    assert (error["code"], error["exit_status"]) == (code, status), error
    for word in words:
        assert word in error["message"], error
    assert _files(ospp.home) == before
    return text, as_json


def _damage(path: Path, how: str) -> None:
    if how == "garbage":
        path.write_text("not a key at all\n")
    else:  # a directory where the file should be
        path.unlink(missing_ok=True)
        path.mkdir()
        (path / "inside").write_text("x")


def _mak_machine(ospp: Ospp) -> tuple[str, str]:
    """PC01 with a MAK installed (not activated), and its confirmation ID."""
    ospp.install(PRODUCT, "PC01")
    key = ospp("center", "issue-key", "--product", PRODUCT, "--limit", "5").out.strip()
    assert ospp("/inpkey:" + key, "PC01").code == 0
    iid = ospp("dinstid", "PC01", "--json").data()["products"][0]["installation_id"]
    cid = ospp("center", "confirm", iid).out.strip()
    return key, cid


@pytest.mark.parametrize("how", ["garbage", "directory"])
def test_a_damaged_seal_key_is_reported_before_an_activation_and_kept(ospp: Ospp, how: str) -> None:
    _key, cid = _mak_machine(ospp)
    used = ospp("center", "keys", "--json").data()["keys"][0]["used"]  # the phone call's
    seal_key = Path(ospp.env["OSPP_HOME"]) / "seal.key"
    _damage(seal_key, how)
    for args in (["/act", "PC01"], ["/actcid:" + cid, "PC01"]):
        _refused(ospp, args, 3, "0x8007000D", "seal.key")
    # the authority counted nothing more: the seal key was checked before it was asked
    assert ospp("center", "keys", "--json").data()["keys"][0]["used"] == used
    assert "hr=0x8007000D" in ospp("/dhistoryacterr", "PC01").out
    assert ospp("/dstatus", "PC01", "--json").data()["products"][0]["status"] != "LICENSED"


@pytest.mark.parametrize("how", ["garbage", "directory"])
def test_a_damaged_host_signing_key_is_reported_and_kept(ospp: Ospp, how: str) -> None:
    key = ospp("center", "issue-key", "--product", PRODUCT, "--channel", "kms-host").out.strip()
    assert ospp("kms", "install-key", key).code == 0
    signer = Path(ospp.env["OSPP_KMS_HOME"]) / "host-ed25519.pem"
    assert signer.is_file()
    _damage(signer, how)
    _refused(ospp, ["kms", "activate"], 3, "0x8007000D", "host-ed25519.pem")
    assert ospp("center", "keys", "--json").data()["keys"][0]["used"] == 0


def test_a_host_whose_signing_key_is_damaged_does_not_start(ospp: Ospp) -> None:
    key = ospp("center", "issue-key", "--product", PRODUCT, "--channel", "kms-host").out.strip()
    assert ospp("kms", "install-key", key).code == 0
    assert ospp("kms", "activate").code == 0
    signer = Path(ospp.env["OSPP_KMS_HOME"]) / "host-ed25519.pem"
    _damage(signer, "garbage")
    before = _files(ospp.home)
    ran = ospp.proc("kms", "serve", "--listen", "127.0.0.1:0", timeout=30)
    assert ran.code == 3, ran.out + ran.err
    assert "LISTENING" not in ran.out
    assert "ERROR CODE: 0x8007000D" in ran.out and "host-ed25519.pem" in ran.out, ran.out
    assert _files(ospp.home) == before


@pytest.mark.parametrize(
    "args",
    [
        ["fleet", "status"],
        ["fleet", "act"],
        ["fleet", "remove", "ws*"],
        ["fleet", "export", "out.csv"],
        ["fleet", "timeline", "--to", "2030-01-01"],
        ["service", "--all"],
        ["machines"],
        ["/dstatus"],
        ["/dstatus", "ws1"],
        ["/sethst:kms1", "ws1"],
        ["install-product", PRODUCT, "ws2"],
    ],
)
def test_a_file_where_the_machines_directory_should_be_is_reported(
    ospp: Ospp, args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ospp.install(PRODUCT, "ws1")
    machines = Path(ospp.env["OSPP_HOME"]) / "machines"
    shutil.rmtree(machines)
    machines.write_text("not a directory\n")
    _refused(ospp, args, 3, "0x8007000D", str(machines))


@pytest.mark.parametrize(
    ("key", "word"),
    [
        ("", "0 characters"),
        ("FXYTK-NJJ8C-GB6DW-3DYQT-6F7TB", "character 25 is 'B'"),
        ("MAK", "is a MAK (Multiple Activation Key), not a KMS host key"),
    ],
)
def test_a_refused_kms_host_key_leaves_no_host_store(ospp: Ospp, key: str, word: str) -> None:
    if key == "MAK":
        key = ospp("center", "issue-key", "--product", PRODUCT).out.strip()
    _refused(ospp, ["kms", "install-key", key], 1, "0xC004F050", word)
    assert not Path(ospp.env["OSPP_KMS_HOME"]).exists()


def test_kms_set_with_nothing_to_set_is_a_usage_error(ospp: Ospp) -> None:
    _refused(ospp, ["kms", "set"], 2, "0x80070057", "--activation-interval")
    assert not Path(ospp.env["OSPP_KMS_HOME"]).exists()


@pytest.mark.parametrize("wanted", ["NOTIFICATION", "licenced", "", "\x1b[2J"])
def test_fleet_status_refuses_a_status_that_does_not_exist(ospp: Ospp, wanted: str) -> None:
    ospp.install(PRODUCT, "ws1")
    text, _ = _refused(ospp, ["fleet", "status", "--status", wanted], 2, "0x80070057", "--status")
    assert "NOTIFICATIONS" in text.out and "\x1b" not in text.out.replace("\\x1b", "")
    assert ospp("fleet", "status", "--status", "oob_grace", "--json").data()["summary"] == {
        "OOB_GRACE": 1
    }


@pytest.mark.parametrize("name", ["CON", "nul", "com1", "LPT9", "aux.example", "pc01.", "pc01.."])
def test_a_computer_name_windows_cannot_hold_is_refused_everywhere(ospp: Ospp, name: str) -> None:
    """A store under machines/NAME must be a directory on every system: Windows keeps device
    names (CON, NUL, COM1...) for itself and drops a trailing dot (pc01. would be pc01)."""
    ospp.install(PRODUCT)
    _refused(ospp, ["install-product", PRODUCT, name], 2, "0x80070057", repr(name))
    assert ospp("machines", "--json").data()["machines"] == ["localhost"]
    ran = ospp("fleet", "create", name.rstrip(".")[:3], "9", "--product", PRODUCT)
    assert ran.code == (2 if name[:3].lower() in ("com", "lpt") else 0), ran.out
    assert ospp("install-product", PRODUCT, "console").code == 0  # only the device names


@pytest.mark.parametrize(
    ("where", "args", "store"),
    [
        ("client/machines/localhost/licenses.db", ["/dstatus"], "licence store"),
        ("client/machines/localhost/licenses.db", ["/sethst:kms1"], "licence store"),
        ("client/machines/localhost/licenses.db-wal", ["/dstatus"], "licence store"),
        ("kms/kms.db", ["kms", "status"], "KMS host store"),
        ("center/center.db", ["center", "keys"], "authority store"),
    ],
)
def test_a_directory_where_a_store_should_be_is_named_as_such(
    ospp: Ospp, where: str, args: list[str], store: str
) -> None:
    ospp.install(PRODUCT)
    ospp("kms", "set", "--max-clients", "1000000")  # a change: the host's store is made
    ospp("center", "keys")
    path = ospp.home / where
    _damage(path, "directory")
    _refused(ospp, args, 3, "0x8007000D", f"{path} is a directory where the {store}")
    assert (path / "inside").is_file()


def test_a_failed_activation_leaves_no_seal_key_behind(ospp: Ospp) -> None:
    ospp.install(PRODUCT)
    assert ospp("/sethst:127.0.0.1:9").code == 0
    assert ospp("/act").code == 4
    assert not (Path(ospp.env["OSPP_HOME"]) / "seal.key").exists()


@pytest.mark.parametrize("server", ["garbage", "ns1.corp.example:53"])
def test_a_nameserver_given_by_name_is_refused_with_what_to_give(ospp: Ospp, server: str) -> None:
    """dnspython asks nameservers by address only: a name is a usage error, not a crash."""
    ospp.install(PRODUCT, "ws1")
    assert ospp("/skms-domain:corp.example", "ws1").code == 0
    env = {"OSPP_DNS": server}
    before = _files(ospp.home)
    for args in (["/act", "ws1"], ["dnsdiag", "ws1"], ["slmgr", "/ato", "ws1"]):
        for extra in ([], ["--json"]):
            ran = ospp(*args, *extra, env=env)
            assert ran.code == 2, ran.out + ran.err
            assert "0x80070057" in ran.out and "is not an IP address" in ran.out, ran.out
    assert _files(ospp.home) == before
    assert ospp("kms", "set", "--max-clients", "1000000").code == 0  # the host's store
    _refused(
        ospp,
        ["kms", "dns", "set", "--server", server, "--domain", "corp.example",
         "--hostname", "kms1.corp.example", "--address", "192.0.2.10"],
        2, "0x80070057", "is not an IP address",
    )  # fmt: skip
    assert ospp("kms", "dns", "records", "--json").code != 0  # nothing configured


@pytest.mark.parametrize("second", ["", "MAK"])
def test_fleet_import_refuses_a_product_given_twice_for_one_machine(
    ospp: Ospp, tmp_path: Path, second: str
) -> None:
    """Which of two rows for one machine and product would win is not for ospp to guess."""
    if second == "MAK":
        second = ospp("center", "issue-key", "--product", PRODUCT).out.strip()
    src = tmp_path / "site.csv"
    src.write_text(
        "machine,product,key,kms_host\n"
        "ws1,ProPlus2019,,\n"
        f"ws1,{PRODUCT},,\n"
        f"ws1,{PRODUCT.lower()},{second},\n"
    )
    refusal = ("line 4", f"{PRODUCT} is given twice")
    _refused(ospp, ["fleet", "import", str(src)], 2, "0x80070057", *refusal)
    assert ospp("machines", "--json").data()["machines"] == []


DEEP = "[" * 5000 + "]" * 5000  # deeper than Python's JSON decoder can nest


@pytest.mark.parametrize(
    ("where", "args"),
    [
        ("client/machines/pc01/hardware.json", ["/dstatus", "PC01"]),
        ("client/machines/pc01/hardware.json", ["hardware", "show", "PC01"]),
        ("client/clock.json", ["/dstatus"]),
        ("client/clock.json", ["clock", "show"]),
    ],
)
def test_json_nested_too_deeply_in_a_state_file_is_damage_not_a_crash(
    ospp: Ospp, where: str, args: list[str]
) -> None:
    ospp.install(PRODUCT)
    _key, cid = _mak_machine(ospp)
    assert ospp("/actcid:" + cid, "PC01").code == 0  # its status reads the hardware now
    path = ospp.home / where
    path.write_text(DEEP)
    _refused(ospp, args, 3, "0x8007000D", str(path))
    assert path.read_text() == DEEP


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("changed_at", "2027-01-01T00:00:00"),  # no zone: not comparable with any time
        ("changed_at", "9999-12-31T23:59:59+00:00"),  # 30 days of grace past datetime's end
        ("changed_at", 20270101),
        ("dockable", "false"),  # a string, which would be taken as true
    ],
)
def test_a_hand_edited_hardware_profile_time_is_damage_not_a_crash(
    ospp: Ospp, field: str, value: object
) -> None:
    """A status read of a machine whose hardware changed beyond tolerance computes with the
    time of the change: one ospp could not compute with is reported like any other damage."""
    ospp.install(PRODUCT)
    _key, cid = _mak_machine(ospp)
    assert ospp("/actcid:" + cid, "PC01").code == 0
    parts = ["nic_mac", "disk", "cpu_serial", "cpu_model", "ram_size", "display_adapter"]
    assert ospp("hardware", "change", *parts, "PC01").code == 0
    path = ospp.home / "client/machines/pc01/hardware.json"
    profile = json.loads(path.read_text())
    profile[field] = value
    path.write_text(json.dumps(profile))
    for args in (["/dstatus", "PC01"], ["service", "PC01"]):
        _refused(ospp, args, 3, "0x8007000D", str(path), field)
    listed = ospp.proc("fleet", "status")  # the other machines are listed
    assert listed.code == 3 and "internal error" not in listed.err, listed
    assert "0x8007000D" in listed.out and f"'{field}'" in listed.err, listed
    assert json.loads(path.read_text()) == profile


def test_a_trust_anchor_nested_too_deeply_is_reported_as_unreadable(ospp: Ospp) -> None:
    _key, cid = _mak_machine(ospp)
    trust = Path(ospp.env["OSPP_HOME"]) / "trust"
    trust.mkdir()
    (trust / "deep.json").write_text(DEEP)
    assert ospp("/actcid:" + cid, "PC01").code == 0  # the local authority is still trusted
    listed = ospp("trust", "list", "--json").data()
    assert "deep.json" in listed["unreadable"][0] and len(listed["anchors"]) == 1
    assert ospp("/dstatus", "PC01", "--verify").code == 0
    bad = ospp.home / "deep.json"
    bad.write_text(DEEP)
    _refused(ospp, ["trust", "add", str(bad)], 2, "0x80070057", "not an authority public key file")


def test_a_stored_activation_nested_too_deeply_is_damage_not_a_crash(ospp: Ospp) -> None:
    ospp.install(PRODUCT)
    store = ospp.store_file()
    conn = sqlite3.connect(store)
    with conn:
        conn.execute("UPDATE licenses SET activation=? WHERE channel='kms-client'", (DEEP,))
    conn.close()
    _refused(ospp, ["/dstatus"], 3, "0x8007000D", str(store))


@pytest.mark.parametrize("sku_id", [None, b"\xff\x00"])
def test_a_licence_whose_sku_id_is_not_text_is_damage_not_a_crash(
    ospp: Ospp, sku_id: object
) -> None:
    """SQLite lets a TEXT PRIMARY KEY hold NULL or bytes: a hand-edited store that does is
    reported like any other damaged record."""
    ospp.install(PRODUCT)
    store = ospp.store_file()
    conn = sqlite3.connect(store)
    with conn:
        conn.execute("UPDATE licenses SET sku_id=? WHERE channel='kms-client'", (sku_id,))
    conn.close()
    for args in (["/dstatus"], ["/sethst:kms1"], ["/rearm"]):
        _refused(ospp, args, 3, "0x8007000D", str(store), "the SKU id is not text")


def test_a_store_that_lost_its_cmid_is_damage_not_a_new_machine(ospp: Ospp) -> None:
    """A store holding licences but no CMID lost it: a new one would make it another machine,
    whose activation no longer matches, so it is refused, not given one."""
    _key, cid = _mak_machine(ospp)
    assert ospp("/actcid:" + cid, "PC01").code == 0
    store = ospp.store_file("pc01")
    conn = sqlite3.connect(store)
    with conn:
        conn.execute("DELETE FROM meta WHERE name='cmid'")
    conn.close()
    for args in (["/dstatus", "PC01"], ["/dcmid", "PC01"], ["/sethst:kms1", "PC01"]):
        _refused(ospp, args, 3, "0x8007000D", str(store), "has no CMID")
    conn = sqlite3.connect(store)
    with conn:
        assert conn.execute("SELECT value FROM meta WHERE name='cmid'").fetchone() is None
    conn.close()


def test_fleet_status_names_a_store_it_could_not_read(ospp: Ospp) -> None:
    """The table marks the machine ERROR; what was wrong, and where, follows on stderr (as
    with --csv) and in the --json error."""
    ospp.install(PRODUCT, "ws1")
    store = ospp.store_file("ws1")
    store.write_bytes(b"not a database" * 100)
    before = _files(ospp.home)
    for extra in ([], ["--csv"]):
        ran = ospp("fleet", "status", *extra)
        assert ran.code == 3 and "0x8007000D" in ran.out, ran.out
        assert str(store) in ran.err, ran.err
    error = ospp("fleet", "status", "--json").json()["error"]
    assert error["code"] == "0x8007000D" and str(store) in error["message"]
    assert _files(ospp.home) == before


@pytest.mark.parametrize("how", ["directory", "not UTF-8"])
def test_a_damaged_authority_public_key_file(ospp: Ospp, how: str) -> None:
    """It is written from the key files: text that is not the key is written again, and a
    directory in its place is reported and kept."""
    assert ospp("center", "keys").code == 0
    pub = Path(ospp.env["OSPP_CENTER_HOME"]) / "authority.pub.json"
    if how == "directory":
        _damage(pub, "directory")
        _refused(ospp, ["center", "keys"], 3, "0x8007000D", str(pub))
        assert (pub / "inside").is_file()
    else:
        pub.write_bytes(b"\xff\xfe garbage")
        assert ospp("center", "keys").code == 0
        assert json.loads(pub.read_text())["ed25519"]


@pytest.mark.parametrize(
    "args",
    [["/act:foo"], ["dstatus", "--bogus"], ["/inpkey"], ["/nosuchverb"], ["fleet", "create"]],
)
def test_a_usage_error_in_text_names_its_licensing_code(ospp: Ospp, args: list[str]) -> None:
    """click says what was wrong and how to get help; the line after it is the code, as in
    every other error block (and in the JSON envelope)."""
    ran = ospp.proc(*args)
    assert ran.code == 2
    assert "Error: " in ran.err and ran.err.rstrip().endswith("ERROR CODE: 0x80070057"), ran.err
    assert ospp.proc(*args, "--json").json()["error"]["code"] == "0x80070057"


def test_records_published_by_hand_need_no_update_server(ospp: Ospp) -> None:
    """'kms dns set --no-publish': the records to publish by hand, with no server to update."""
    refused = ospp("kms", "dns", "set", "--domain", "corp.example", "--hostname", "kms1")
    assert refused.code == 2 and "--no-publish" in refused.out
    bad = ["--domain", "corp..example", "--hostname", "kms1.corp.example", "--no-publish"]
    assert ospp("kms", "dns", "set", *bad).code == 2
    assert ospp("kms", "dns", "records").code == 2  # nothing was stored
    ran = ospp(
        "kms", "dns", "set", "--domain", "corp.example", "--hostname", "kms1.corp.example",
        "--address", "192.0.2.10", "--no-publish",
    )  # fmt: skip
    assert ran.code == 0 and "ospp kms dns records" in ran.out
    assert ospp("kms", "status", "--json").data()["dns_publishing"] is False
    records = ospp("kms", "dns", "records", "--json").data()["records"]
    assert any("_vlmcs._tcp.corp.example." in r and "kms1.corp.example." in r for r in records)
    assert any("kms1.corp.example." in r and "192.0.2.10" in r for r in records)


@pytest.mark.parametrize(
    ("args", "missing"),
    [
        (["--server", "192.0.2.53", "--hostname", "kms1.corp.example"], "--domain"),
        (["--server", "192.0.2.53", "--domain", "corp.example"], "--hostname"),
        (["--domain", "corp.example", "--no-publish"], "--hostname"),
        (["--domain", ".", "--hostname", "kms1.corp.example", "--no-publish"], "--domain"),
    ],
    ids=["no domain", "no hostname", "no hostname, by hand", "the root for a domain"],
)
def test_dns_settings_without_a_domain_or_hostname_say_which_is_missing(
    ospp: Ospp, args: list[str], missing: str
) -> None:
    """A first 'kms dns set' that leaves out --domain or --hostname is told to give it, not
    that the empty name it never typed ('') is not a DNS name."""
    ran = ospp("kms", "dns", "set", *args)
    assert ran.code == 2 and "ERROR CODE: 0x80070057" in ran.out, ran.out
    assert f"{missing} ''" not in ran.out and f"kms dns set {missing} " in ran.out, ran.out
    assert ospp("kms", "dns", "records").code == 2  # nothing was stored
