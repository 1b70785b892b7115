"""The ospp.vbs text where scripts parse it: separators, status lines, event history, rearm."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GVLK_2021, PRODUCT, Ospp

DASHES = "-" * 39
EXITING = "---Exiting-----------------------------"


def ending(out: str) -> list[str]:
    return out.splitlines()[-3:]


def body(out: str) -> list[str]:
    return out.splitlines()[2:]


def issue_mak(ospp: Ospp, limit: int = 3) -> str:
    ran = ospp("center", "issue-key", "--product", PRODUCT, "--limit", str(limit), "--json")
    assert ran.code == 0, ran.out
    return str(ran.data()["key"])


def test_block_outputs_end_with_two_separators_before_exiting(ospp: Ospp):
    # ospp.vbs closes every block with dashes and then prints the exit banner's own dashes
    nothing = ospp("/dstatus")
    assert body(nothing.out)[0] == "<No installed product keys detected>"
    assert ending(nothing.out) == [DASHES, DASHES, EXITING]
    assert ending(ospp("/act").out) == [DASHES, DASHES, EXITING]
    assert ending(ospp("/dinstid").out) == [DASHES, DASHES, EXITING]
    ospp("install-product", PRODUCT)
    for verb in ("/dstatus", "/dstatusall"):
        out = ospp(verb).out
        assert ending(out) == [DASHES, DASHES, EXITING], verb
        # the blocks between stay separated by exactly one line of dashes
        assert DASHES + "\n" + DASHES + "\n" + EXITING in out
        assert out.count(DASHES + "\n" + DASHES) == 1
    # a single message keeps one separator, as ospp.vbs's quitExit after it
    setting = ospp("/cachst:TRUE").out.splitlines()
    assert setting[-3:] == ["Successfully applied setting.", DASHES, EXITING]


def test_act_with_nothing_to_activate_exits_0_and_json_says_none(ospp: Ospp):
    ran = ospp("/act")
    assert ran.code == 0
    assert body(ran.out) == ["<No installed product keys detected>", DASHES, DASHES, EXITING]
    ran = ospp("act", "--json")
    data = ran.data()
    assert ran.json()["ok"] is True and data["activated"] == 0 and data["products"] == []


def test_act_json_counts_what_was_activated(ospp: Ospp):
    key = issue_mak(ospp)
    ospp.install()
    ospp("/inpkey:" + key)
    data = ospp("act", "--json").data()
    assert data["activated"] == 1


def test_remaining_grace_line_is_left_out_when_none_remains(ospp: Ospp):
    ospp("install-product", PRODUCT, env={"OSPP_NOW": "2026-01-01T00:00:00Z"})
    during = ospp("/dstatus", env={"OSPP_NOW": "2026-01-02T00:00:00Z"}).out
    assert "REMAINING GRACE: 29 days  (41760 minute(s) before expiring)" in during
    after = ospp("/dstatus", env={"OSPP_NOW": "2026-03-01T00:00:00Z"}).out
    assert "---NOTIFICATIONS---" in after
    assert "REMAINING GRACE" not in after


def test_kms_lookup_domain_comes_after_host_caching(ospp: Ospp):
    ospp("install-product", PRODUCT)
    ospp("/skms-domain:corp.example.com")
    lines = ospp("/dstatus").out.splitlines()
    caching = lines.index("\tKMS host caching: Enabled")
    assert lines[caching + 1] == "\tKMS Lookup Domain: corp.example.com"


def test_dstatusall_prints_no_product_id_for_a_licence_without_a_key(ospp: Ospp):
    ospp.install()
    ospp("/inpkey:" + GVLK_2021)
    ospp("/unpkey:6F7TH")
    out = ospp("/dstatusall").out
    assert "---UNLICENSED---" in out and "PRODUCT ID" not in out
    ospp("/inpkey:" + GVLK_2021)
    assert ospp("/dstatusall").out.count("PRODUCT ID: ") == 1


def test_dhistorykms_uses_the_event_log_layout(ospp: Ospp):
    empty = ospp("/dhistorykms")
    assert empty.code == 0
    assert body(empty.out) == [
        "Searching for KMS activation events on machine: localhost",
        "Event ID: 12288",
        "",
        DASHES,
        "No KMS activation events found on machine: localhost",
        DASHES,
        DASHES,
        EXITING,
    ]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        ospp("install-product", PRODUCT, "x1")
        ospp(f"/sethst:127.0.0.1:{port}", "x1")
        assert ospp("/act", "x1", env={"OSPP_NOW": "2026-02-03T04:05:06Z"}).code == 4
    lines = body(ospp("/dhistorykms", "x1").out)
    assert lines[:3] == [
        "Searching for KMS activation events on machine: x1",
        "Event ID: 12288",
        "",
    ]
    assert lines[3] == "Coordinated Universal Time Written: 2026-02-03T04:05:06Z"
    assert lines[4] == f"ERROR/HOST: 0xC004F074, 127.0.0.1:{port}"
    assert lines[5].startswith("ERROR DESCRIPTION: ") and "Key Management" in lines[5]
    assert lines[6].startswith("ERROR DETAIL: ")  # ospp's own detail comes after
    assert lines[7] == "SKU ID: fbdb3e18-a8ef-4fb3-9183-dffd60bd0984"
    assert lines[-3:] == [DASHES, DASHES, EXITING]
    assert ospp("dhistorykms", "x1", "--json").data()["event_id"] == 12288


def test_dhistoryacterr_uses_the_event_log_layout(ospp: Ospp):
    empty = body(ospp("/dhistoryacterr").out)
    assert empty[:5] == [
        "Searching for Internet activation failure events on machine: localhost",
        "Event ID: 8200",
        "",
        DASHES,
        "No failure events found on machine: localhost",
    ]
    key = issue_mak(ospp)
    assert ospp("center", "block", key).code == 0
    ospp.install()
    ospp("/inpkey:" + key)
    assert ospp("/act", env={"OSPP_NOW": "2026-02-03T04:05:06Z"}).code == 1
    lines = body(ospp("/dhistoryacterr").out)
    assert lines[3] == "Coordinated Universal Time Written: 2026-02-03T04:05:06Z"
    assert lines[4] == "MESSAGE: License acquisition failure details. hr=0xC004C003"
    assert lines[5].startswith("ERROR DESCRIPTION: ") and len(lines[5]) > 20
    assert lines[6].startswith("ERROR DETAIL: ")
    assert lines[-3:] == [DASHES, DASHES, EXITING]


def test_rearm_prints_what_office_rearm_prints(ospp: Ospp):
    ospp("install-product", PRODUCT)
    ran = ospp("/rearm")
    assert ran.code == 0
    assert body(ran.out) == ["Microsoft Office rearm successful.", DASHES, EXITING]


def test_hardware_change_takes_a_trailing_computer_name(ospp: Ospp):
    ospp.install(PRODUCT, "pc7")
    before = ospp("hardware", "show", "pc7", "--json").data()["hash"]
    ran = ospp("hardware", "change", "disk", "PC7", "--json")
    assert ran.code == 0, ran.out
    assert ran.data()["machine"] == "pc7" and ran.data()["hash"] != before
    assert ospp("hardware", "show", "pc7", "--json").data()["hash"] == ran.data()["hash"]
    # the old spelling still works, hidden from help
    assert ospp("hardware", "change", "nic_mac", "--machine", "pc7").code == 0
    both = ospp("hardware", "change", "disk", "pc7", "--machine", "pc8")
    assert both.code == 2 and "two computer names" in both.out
    lone = ospp("hardware", "change", "motherboard")
    assert lone.code == 2 and "unknown hardware component 'motherboard'" in lone.out
    assert not ospp.store_file("motherboard").exists()
    helptext = ospp("hardware", "change", "--help").out
    assert "motherboard" not in helptext and "--machine" not in helptext
    assert "COMPUTERNAME" in helptext and "ram_size" in helptext


def test_kms_clients_limit_refuses_negative_and_0_means_all(ospp: Ospp):
    bad = ospp("kms", "clients", "--limit", "-1")
    assert bad.code == 2 and "-1" in bad.err
    assert ospp("kms", "clients", "--limit", "0", "--json").code == 0
    assert "0 shows them all" in " ".join(ospp("kms", "clients", "--help").out.split())


def test_click_usage_errors_are_one_json_object_with_json(ospp: Ospp):
    for args, command in [
        (["/foo", "--json"], ""),
        (["--json", "/inpkey"], "inpkey"),  # a known command, given no value
        (["dstatus", "--bogus", "--json"], "dstatus"),
        (["kms", "clients", "--limit", "-1", "--json"], "kms clients"),
    ]:
        ran = ospp(*args)
        assert ran.code == 2 and ran.err == "", args
        data = ran.json()  # the whole of stdout is one JSON object
        assert data["ok"] is False and data["command"] == command
        assert data["error"]["code"] == "0x80070057" and data["error"]["exit_status"] == 2
        assert set(data["error"]) == set(ospp("/ddescr:0x1", "--json").json()["error"])
    # without --json click's usage text is unchanged
    plain = ospp("dstatus", "--bogus")
    assert plain.code == 2 and "No such option" in plain.err and plain.out == ""


def test_internal_errors_are_json_with_json(ospp: Ospp, monkeypatch):
    from ospp.machine import client

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(client, "open_machine", broken)
    ran = ospp("/dstatus", "--json")
    assert ran.code == 70
    data = ran.json()
    assert data["ok"] is False and data["command"] == "dstatus"
    assert data["error"]["exit_status"] == 70 and "simulated bug" in data["error"]["message"]
    plain = ospp("/dstatus")
    assert plain.code == 70 and "internal error" in plain.err and plain.out == ""


def test_userops_deny_standard_users_by_default_and_puserops_allows_them(ospp: Ospp):
    alice = {"OSPP_USER": "alice"}
    ospp("install-product", PRODUCT)
    before = ospp("dstatus", "--json").data()
    assert before["user_operations"] == "denied"
    for args in (
        ["/inpkey:" + GVLK_2021],
        ["/unpkey:6F7TH"],
        ["/act"],
        ["/rearm"],
        ["/sethst:kms1.example.com"],
        ["/cachst:FALSE"],
        ["/puserops"],
        ["/osppsvcrestart"],
    ):
        ran = ospp(*args, env=alice)
        assert ran.code == 1 and "ERROR CODE: 0xC004F025" in ran.out, args
        assert "alice" in ran.out
    # nothing changed, and reading is still allowed
    assert ospp("dstatus", "--json", env=alice).data()["products"] == before["products"]
    assert ospp("/puserops").out.splitlines()[2] == "Successfully applied setting."
    assert ospp("dstatus", "--json").data()["user_operations"] == "allowed"
    assert ospp("/sethst:kms1.example.com", env=alice).code == 0
    assert ospp("/unpkey:6F7TH", env=alice).code == 0
    # changing the policy itself, and the service, stay with administrators
    assert "0xC004F025" in ospp("/duserops", env=alice).out
    assert ospp("/duserops", env={"OSPP_USER": "Administrator"}).code == 0
    assert ospp("/duserops", env={"OSPP_USER": "WS3\\administrator"}).code == 0
    assert "0xC004F025" in ospp("/duserops", env={"OSPP_USER": "WS3\\alice"}).out
    no_account = ospp("/duserops", env={"OSPP_USER": "WS3\\"})
    assert no_account.code == 2 and "names a domain but no account" in no_account.out
    assert ospp("/inpkey:" + GVLK_2021, env=alice).code == 1
    empty = ospp("/cachst:TRUE", env={"OSPP_USER": ""})
    assert empty.code == 2 and "OSPP_USER" in empty.out


def test_slmgr_and_fleet_changes_are_refused_to_a_standard_user_too(ospp: Ospp, tmp_path: Path):
    """The same rule through slmgr (/upk, /cpky) and fleet (an administrator's tool, as
    VAMT is): 0xC004F025, exit 1, nothing changed."""
    alice = {"OSPP_USER": "alice"}
    ospp("fleet", "create", "u", "2", "--product", "ProPlus2021")
    export = tmp_path / "fleet.csv"
    assert ospp("fleet", "export", str(export)).code == 0
    before = ospp("fleet", "status", "--json").data()["rows"]
    for args in (
        ["slmgr", "/upk", "u1"],
        ["slmgr", "/cpky", "u1"],
        ["fleet", "inpkey", GVLK_2021, "--machines", "u*"],
        ["fleet", "act", "--machines", "u*"],
        ["fleet", "remove", "u*"],
        ["fleet", "create", "v", "2", "--product", "ProPlus2021"],
        ["fleet", "import", str(export)],
        ["fleet", "export", str(tmp_path / "by-alice.csv")],
    ):
        ran = ospp(*args, env=alice)
        said = ran.out + ran.err
        assert ran.code == 1 and "0xC004F025" in said and "alice" in said, (args, said)
    assert ospp("fleet", "status", "--json").data()["rows"] == before
    assert ospp("machines", "--json").data()["machines"] == ["u1", "u2"]
    assert not (tmp_path / "by-alice.csv").exists()


def test_osppsvcauto_and_osppsvcrestart_act_on_the_simulated_service(ospp: Ospp):
    ospp("install-product", PRODUCT)
    assert ospp("dstatus", "--json").data()["service"]["start_mode"] == "manual"
    first = ospp("/osppsvcauto")
    assert first.code == 0
    assert body(first.out)[0] == (
        "Successfully set service startup to automatic:Office Software Protection Platform"
    )
    again = body(ospp("/osppsvcauto").out)[0]
    assert (
        again
        == "Service startup type already set to automatic: Office Software Protection Platform"
    )
    assert "stopped" in ospp("service").out
    now = {"OSPP_NOW": "2026-05-06T07:08:09Z"}
    ran = ospp("/osppsvcrestart", env=now)
    assert body(ran.out)[0] == "Successfully restarted: Office Software Protection Platform"
    state = ospp("service", "--json", env=now).data()["services"][0]
    assert state == {
        "machine": "localhost",
        "name": "Office Software Protection Platform",
        "start_mode": "auto",
        "state": "running",
        "started_at": "2026-05-06T07:08:09Z",
    }
    text = ospp("service", env=now).out
    assert "running since 2026-05-06T07:08:09Z, startup type auto" in text


def test_version_prints_the_script_and_ospp_versions(ospp: Ospp):
    from ospp import __version__

    ran = ospp("/version")
    assert ran.code == 0
    assert body(ran.out)[:2] == [
        "Version Info: 2013 1.0 (RTM)",
        f"ospp Version Info: {__version__}",
    ]
    assert ospp("version", "--json").data()["ospp_version"] == __version__


def test_token_options_are_refused_and_change_nothing(ospp: Ospp):
    ospp("install-product", PRODUCT)
    before = ospp.store_file().read_bytes()
    for args in (
        ["/dtokils"],
        ["/rtokil:{11111111-2222-3333-4444-555555555555}"],
        ["/stokflag"],
        ["/ctokflag"],
        ["/dtokcerts"],
        ["/tokact:0123abcd:1234"],
        ["/tokact"],
    ):
        ran = ospp(*args)
        assert ran.code == 2, args
        assert "token-based activation is not supported" in ran.out
        assert "ERROR CODE: 0x" in ran.out
    assert ospp.store_file().read_bytes() == before
    assert ospp("/tokact:x", "--json").json()["error"]["exit_status"] == 2


def test_mak_reactivation_within_tolerance_uses_no_activation(ospp: Ospp):
    # Decision: a computer the MAK already activated, reactivating on hardware within the
    # tolerance of what it had (7 of 12 votes), is the same computer: no activation is used.
    key = issue_mak(ospp, limit=1)
    ospp.install(PRODUCT, "pc1", "pc2")
    assert ospp("/inpkey:" + key, "pc1").code == 0
    assert ospp("/act", "pc1").code == 0
    assert ospp("hardware", "change", "disk", "cpu_serial", "pc1").code == 0  # 10 of 12 votes
    again = ospp("/act", "pc1")
    assert again.code == 0, again.out
    assert ospp("center", "keys", "--json").data()["keys"][0]["used"] == 1
    # the reactivation moved the baseline: 8 of 12 votes against it, 6 against the first
    assert ospp("hardware", "change", "nic_mac", "cpu_model", "pc1").code == 0
    assert ospp("dstatus", "pc1", "--json").data()["products"][0]["status"] == "LICENSED"
    assert ospp("/act", "pc1").code == 0
    assert ospp("center", "keys", "--json").data()["keys"][0]["used"] == 1
    # another computer still needs an activation of its own, and there is none left
    ospp("/inpkey:" + key, "pc2")
    assert "0xC004C020" in ospp("/act", "pc2").out


def test_mak_reactivation_beyond_tolerance_uses_an_activation(ospp: Ospp):
    key = issue_mak(ospp, limit=1)
    ospp.install(PRODUCT, "pc1")
    ospp("/inpkey:" + key, "pc1")
    assert ospp("/act", "pc1").code == 0
    # 6 of 12 votes: a different computer as far as the licence is concerned
    ospp("hardware", "change", "nic_mac", "disk", "cpu_serial", "cpu_model", "pc1")
    beyond = ospp("/act", "pc1")
    assert beyond.code == 1 and "0xC004C020" in beyond.out
    assert ospp("center", "extend", key, "--by", "1").code == 0
    assert ospp("/act", "pc1").code == 0
    assert ospp("center", "keys", "--json").data()["keys"][0]["used"] == 2


def test_kms_settings_on_a_machine_without_office_kms_licences_say_so(ospp: Ospp):
    # ospp.vbs sets the KMS options on the Office KMS licences; with none it says so, and
    # scripts read that line to learn that Office is not installed yet
    for args in (
        ["/sethst:kms1.example.com"],
        ["/setprt:1700"],
        ["/remhst"],
        ["/actype:2"],
        ["/skms-domain:corp.example.com"],
        ["/ckms-domain"],
    ):
        ran = ospp(*args)
        assert ran.code == 0, args
        assert body(ran.out) == [
            "No Office KMS licenses were found on the system.",
            DASHES,
            EXITING,
        ], args
    # the setting is still kept for the products installed later (ospp's are machine-wide),
    # and --json reports it as before
    assert ospp("sethst", "kms2.example.com", "--json").data()["kms"]["host_override"] == (
        "kms2.example.com"
    )
    # host caching is the service's setting, not a licence's: applied as ever
    assert body(ospp("/cachst:FALSE").out)[0] == "Successfully applied setting."
    # bad values are still refused first
    assert ospp("/setprt:0").code == 2
    ospp.install()
    assert body(ospp("/sethst:kms1.example.com").out)[0] == "Successfully applied setting."
    assert "override defined: kms1.example.com:1688" in ospp("/dstatus").out


def test_the_user_and_password_after_the_computer_name_are_accepted_and_ignored(ospp: Ospp):
    # cscript ospp.vbs /option[:value] [ComputerName] [User] [Password]: scripts that manage
    # remote computers pass credentials; simulated machines need none
    ospp.install(PRODUCT, "pc1")
    at = {"OSPP_NOW": "2030-01-01T00:00:00Z"}  # one time for both: the output depends on it
    plain = ospp("/dstatus", "pc1", env=at)
    ran = ospp.proc("/dstatus", "pc1", "CORP\\admin", "s3cret!", env=at)
    assert ran.code == 0, ran.err
    assert ran.out == plain.out
    assert "s3cret" not in ran.out + ran.err
    # said on stderr, so that 'ospp dstatus pc1 pc2' is not taken for two machines unnoticed
    assert "USER and PASSWORD" in ran.err and "ignored" in ran.err
    assert "USER" not in plain.err
    assert ospp("--quiet", "/dcmid", "pc1", "admin", "pw").err == ""
    assert ospp("/sethst:kms1.example.com", "pc1", "admin", "pw").code == 0
    assert "override defined: kms1.example.com:1688" in ospp("/dstatus", "pc1").out
    assert ospp("dstatus", "pc1", "admin", "pw", "--json").data()["machine"] == "pc1"
    # a user alone, as WMI allows, and a word too many is still a usage error
    assert ospp("/dcmid", "pc1", "admin").code == 0
    assert ospp("/dcmid", "pc1", "admin", "pw", "extra").code == 2


@pytest.mark.parametrize("password", ["-Hunter2", "--Hunter2secret", "-xHunter2=y"])
def test_a_password_that_starts_like_an_option_is_a_password(ospp: Ospp, password: str):
    """ospp.vbs takes USER and PASSWORD as plain words: one starting with '-' is neither
    refused as an unknown option nor echoed; the command's own options (--json, -h) keep
    their meaning wherever they are."""
    ospp.install(PRODUCT, "pc1")

    def shown(data: dict[str, Any]) -> object:  # what does not move with the clock
        return data["machine"], [(p["product_id"], p["status"]) for p in data["products"]]

    plain = shown(ospp("/dstatus", "pc1", "--json").data())
    for args in (
        ("/dstatus", "pc1", "admin", password, "--json"),
        ("/dstatus", "--json", "pc1", "admin", password),
        ("dstatus", "pc1", "admin", password, "--json"),
    ):
        ran = ospp.proc(*args)
        assert ran.code == 0, ran.out + ran.err
        assert shown(ran.data()) == plain
        assert "Hunter2" not in ran.out + ran.err
    ran = ospp.proc("/sethst:kms1.example.com", "pc1", "admin", password)
    assert ran.code == 0 and "Successfully applied setting." in ran.out, ran.out + ran.err
    # before the computer name a word starting with '-' is still an option, checked as one
    ran = ospp.proc("/dstatus", "--jsn", "pc1")
    assert ran.code == 2 and "No such option '--jsn'" in ran.out + ran.err


def test_a_slash_option_is_lower_cased_whole_value_included_as_ospp_vbs_does(ospp: Ospp):
    # ospp.vbs lower-cases its whole first argument, so the KMS host and lookup domain it
    # stores and /dstatus prints are lower case, whatever case the script typed
    ospp.install(PRODUCT)
    assert ospp("/SETHST:KMS1.Example.COM:1700").code == 0
    assert ospp("/skms-domain:Corp.Example.COM").code == 0
    out = ospp("/dstatus").out
    assert "\tKMS machine registry override defined: kms1.example.com:1700" in out
    assert "\tKMS Lookup Domain: corp.example.com" in out
    assert "KMS1" not in out and "Corp" not in out
    # keys and last 5 characters work in lower case, as in ospp.vbs
    assert ospp("/unpkey:" + GVLK_2021[-5:]).code == 0
    assert ospp("/inpkey:" + GVLK_2021).code == 0
    assert ospp("/dstatus").out.count("Last 5 characters of installed product key: 6F7TH") == 1
    # the modern form is not ospp.vbs's syntax: it keeps the value as typed
    data = ospp("sethst", "KMS2.Example.com", "--json").data()
    assert data["kms"]["host_override"] == "KMS2.Example.com"


def test_the_kms_hosts_keys_and_settings_are_an_administrators(ospp: Ospp):
    """A standard user may read the KMS host (status, installation ID, /dlv) but not change its
    keys, activation or settings, through ospp kms or slmgr: 0xC004F025, exit 1, and the
    host's store and files are left byte for byte."""
    alice = {"OSPP_USER": "alice"}

    def issue() -> str:
        ran = ospp("center", "issue-key", "--product", PRODUCT, "--channel", "kms-host", "--json")
        return str(ran.data()["key"])

    key = issue()
    assert ospp("kms", "install-key", key).code == 0
    assert ospp("kms", "activate").code == 0
    kms_home = ospp.home / "kms"

    def files() -> dict[str, bytes]:
        return {
            str(p.relative_to(kms_home)): p.read_bytes()
            for p in sorted(kms_home.rglob("*"))
            if p.is_file() and not p.name.endswith(("-wal", "-shm"))
        }

    before = files()
    other = issue()
    for args in (
        ["kms", "install-key", other],
        ["kms", "uninstall-key", key[-5:]],
        ["kms", "activate"],
        ["kms", "actcid", "1" * 48],
        ["kms", "set", "--activation-interval", "60"],
        ["kms", "dns", "set", "--server", "127.0.0.1:53", "--domain", "example.com"],
        ["kms", "dns", "enable"],
        ["kms", "dns", "disable"],
        ["kms", "dns", "publish"],
        ["slmgr", "/ipk", other],
        ["slmgr", "/upk"],
        ["slmgr", "/ato"],
        ["slmgr", "/atp", "1" * 48],
        ["slmgr", "/sprt", "1700"],
        ["slmgr", "/sai", "60"],
        ["slmgr", "/sri", "1440"],
        ["slmgr", "/sdns"],
        ["slmgr", "/cdns"],
        ["slmgr", "/spri"],
        ["slmgr", "/cpri"],
    ):
        ran = ospp(*args, env=alice)
        said = ran.out + ran.err
        assert ran.code == 1 and "0xC004F025" in said and "alice" in said, (args, said)
    assert files() == before
    for args in (["kms", "status"], ["kms", "dinstid"], ["slmgr", "/dlv"], ["slmgr", "/dti"]):
        assert ospp(*args, env=alice).code == 0, args
    # an administrator still may
    assert ospp("slmgr", "/sai", "60").code == 0
    assert ospp("kms", "status", "--json").data()["activation_interval_minutes"] == 60
