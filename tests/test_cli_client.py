"""The ospp.vbs verbs, driven as users drive them: CliRunner and real subprocesses."""

from __future__ import annotations

import contextlib
import sqlite3

import pytest

from tests.conftest import GVLK_2016, GVLK_2021, PRODUCT, Ospp

DASHES = "-" * 39


def dump(ospp: Ospp) -> list[str]:
    path = ospp.store_file()
    if not path.exists():
        return []
    with sqlite3.connect(path) as conn:
        return list(conn.iterdump())


def test_banners_and_status_block_match_ospp_vbs(ospp: Ospp):
    assert ospp("install-product", PRODUCT, env={"OSPP_NOW": "2026-01-01T00:00:00Z"}).code == 0
    ran = ospp("/dstatus", env={"OSPP_NOW": "2026-01-01T00:01:00Z"})
    assert ran.code == 0
    lines = ran.out.splitlines()
    assert lines[0] == "---Processing--------------------------" and len(lines[0]) == 39
    assert lines[1] == DASHES
    assert lines[-2] == DASHES and lines[-1] == "---Exiting-----------------------------"
    assert len(lines[-1]) == 39
    body = lines[2:]
    keys = [line.split(":")[0] for line in body[:9]]
    assert keys == [
        "PRODUCT ID",
        "SKU ID",
        "LICENSE NAME",
        "LICENSE DESCRIPTION",
        "LICENSE STATUS",
        "ERROR CODE",
        "ERROR DESCRIPTION",
        "REMAINING GRACE",
        "Last 5 characters of installed product key",
    ]
    assert "SKU ID: fbdb3e18-a8ef-4fb3-9183-dffd60bd0984" in body
    assert "LICENSE NAME: Office 21, Office21ProPlus2021VL_KMS_Client_AE edition" in body
    assert "LICENSE DESCRIPTION: Office 21, VOLUME_KMSCLIENT channel" in body
    assert "LICENSE STATUS:  ---OOB_GRACE---" in body
    assert "ERROR CODE: 0x4004F00C" in body
    assert "REMAINING GRACE: 29 days  (43199 minute(s) before expiring)" in body
    assert "Last 5 characters of installed product key: 6F7TH" in body
    assert "\tDNS auto-discovery: KMS name not available" in body
    assert "\tActivation Interval: 120 minutes" in body
    assert "\tRenewal Interval: 10080 minutes" in body
    assert "\tKMS host caching: Enabled" in body
    pid = body[0].removeprefix("PRODUCT ID: ")
    assert [len(g) for g in pid.split("-")] == [5, 5, 5, 5] and pid.split("-")[3][:2] == "AA"


def test_slash_and_modern_forms_agree_and_names_ignore_case(ospp: Ospp):
    # One fixed time: the grace left and 'now_at' would differ across a second's boundary.
    at = {"OSPP_NOW": "2026-01-01T00:00:00Z"}
    ospp("install-product", PRODUCT, env=at)
    a = ospp("/DSTATUS", env=at).out
    b = ospp("dstatus", env=at).out
    c = ospp("/dStatus", env=at).out
    assert a == b == c
    whole = ospp("dstatus", "--json", env=at).json()
    assert whole == ospp("--json", "/dstatus", env=at).json()
    assert whole["ok"] is True and whole["data"]["products"][0]["product_id"] == PRODUCT


def test_help_forms(ospp: Ospp):
    for form in ("/?", "/help", "--help"):
        ran = ospp(form)
        assert ran.code == 0 and "/inpkey:KEY" in ran.out and "/dstatus" in ran.out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["/foo"], "/foo"),
        (["/inpkey:"], "/inpkey needs a value"),
        (["/inpkey"], "/inpkey needs a value"),
        (["/dstatus:x"], "/dstatus takes no value"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_usage_errors_exit_2_and_name_the_option(ospp: Ospp, args, needle):
    ran = ospp(*args)
    assert ran.code == 2
    assert needle in ran.err
    assert "Traceback" not in ran.err + ran.out


@pytest.mark.parametrize(
    ("word", "command"),
    [("/inpkey:", "inpkey"), ("/SETHST", "sethst"), ("/dstatus:x", "dstatus"), ("/foo", "")],
)
def test_a_slash_words_usage_error_belongs_to_its_command(ospp: Ospp, word: str, command: str):
    """A usage error of a slash command that is known belongs to it, under --json as in the
    usage line printed; an unknown one belongs to none (docs/JSON.md)."""
    said = ospp.proc(word, "--json").json()
    assert said["command"] == command and said["error"]["exit_status"] == 2
    ran = ospp.proc(word)
    if command:
        assert ran.err.startswith(f"Usage: ospp {command} [OPTIONS]"), ran.err


@pytest.mark.parametrize("group", [[], ["kms"], ["fleet"], ["kms", "dns"]], ids=" ".join)
def test_a_group_given_no_command_prints_its_help(ospp: Ospp, group: list[str]):
    """``ospp`` alone (or ``ospp kms``) shows the help as click prints it, one line per line
    (not escaped onto one line as a quoted error), then the licensing code of a usage error."""
    ran = ospp.proc(*group)
    assert ran.code == 2
    assert ran.err.startswith(f"Usage: ospp {' '.join(group)}".rstrip() + " [OPTIONS]")
    assert "\nCommands:\n" in ran.err and "\\x0a" not in ran.err
    assert ran.err.rstrip().endswith("ERROR CODE: 0x80070057")
    if group:
        said = ospp.proc("--json", *group).json()["error"]
        assert said["code"] == "0x80070057"
        assert said["message"].startswith(f"'ospp {' '.join(group)}' needs a command: one of ")
        assert "Usage:" not in said["message"]
        unknown = ospp.proc("--json", *group, "frob").json()
        assert unknown["command"] == ""  # no command was chosen (docs/JSON.md)
        assert unknown["error"]["message"] == "No such command 'frob'."


def test_inpkey_replaces_the_key_of_the_product_and_never_prints_it(ospp: Ospp):
    ospp.install("ProPlus2016")
    ran = ospp("/inpkey:" + GVLK_2016.lower())
    assert ran.code == 0 and "<Product key installation successful>" in ran.out
    assert GVLK_2016 not in ran.out
    status = ospp("/dstatus").out
    assert "Last 5 characters of installed product key: WFG99" in status
    assert GVLK_2016[:5] not in status and GVLK_2016 not in ospp("dstatus", "--json").out


def test_unpkey(ospp: Ospp):
    ospp.install()
    ospp("/inpkey:" + GVLK_2021)
    missing = ospp("/unpkey:ZZZZZ")
    assert missing.code == 1 and "<Product key not found>" in missing.out
    assert "0xC004F014" in missing.out
    ran = ospp("/unpkey:6f7th")
    assert ran.code == 0
    assert (
        "Uninstalling product key for: Office 21, Office21ProPlus2021VL_KMS_Client_AE edition"
        in ran.out
    )
    assert "<Product key uninstall successful>" in ran.out
    assert "<No installed product keys detected>" in ospp("/dstatus").out
    # dstatusall still lists the licences, now unlicensed
    assert "---UNLICENSED---" in ospp("/dstatusall").out


@pytest.mark.parametrize(
    ("args", "code", "licensing_code"),
    [
        (["/inpkey:XQNVK-8JYDB-WJ9W3-YJ8YR"], 1, "0xC004F050"),
        (["/inpkey:XQNVK-8JYDB-WJ9W3-YJ8YR-WFG99-BBBBB"], 1, "0xC004F050"),
        (["/inpkey:OQNVK-8JYDB-WJ9W3-YJ8YR-0FG99"], 1, "0xC004F050"),
        (["/inpkey:XQNVK-8JYDB-WJ9W3-YJ8YR-WFG98"], 1, "0xC004F050"),
        (["/inpkey:BCDFG-HJKMP-QRTVW-XY234-6789B"], 1, "0xC004F050"),
        (["/unpkey:ABC"], 2, "0x80070057"),
        (["/ddescr:C004F074"], 2, "0x80070057"),
        (["/ddescr:0x12345678"], 1, "0x80070057"),
        (["/sethst:bad host!"], 2, "0x80070057"),
        (["/setprt:99999"], 2, "0x80070057"),
        (["/cachst:maybe"], 2, "0x80070057"),
        (["/rearm:not-a-guid"], 2, "0x80070057"),
        (["/actype:1"], 1, "0xC004F035"),
    ],
)
def test_bad_input_is_refused_with_its_code_and_changes_nothing(
    ospp: Ospp, args, code, licensing_code
):
    ospp("install-product", PRODUCT)
    before = dump(ospp)
    ran = ospp(*args)
    assert ran.code == code, ran.out
    assert f"ERROR CODE: {licensing_code}" in ran.out
    assert "ERROR DETAIL: " in ran.out
    data = ospp(*args, "--json")
    assert data.code == code and data.json()["error"]["code"] == licensing_code
    assert dump(ospp) == before


def test_ddescr_knows_every_reference_code(ospp: Ospp):
    reference = [
        "0xC004F050",
        "0xC004F051",
        "0xC004C003",
        "0xC004C001",
        "0xC004C008",
        "0xC004C020",
        "0xC004F074",
        "0x8007232B",
        "0x8007251D",
        "0x8007232A",
        "0xC004F038",
        "0xC004F039",
        "0xC004F041",
        "0xC004F042",
        "0xC004F06C",
        "0xC004F056",
        "0xC004F014",
        "0xC004F009",
        "0xC004F00F",
        "0xC004F02C",
        "0xC004F02F",
        "0xC004F031",
        "0xC004F04D",
        "0xC004F025",
        "0x4004F00C",
        "0x4004F00D",
        "0x4004F040",
    ]
    for code in reference:
        ran = ospp(f"/ddescr:{code.lower()}")
        assert ran.code == 0 and f"ERROR CODE: {code}" in ran.out
        assert ospp("ddescr", code, "--json").data()["description"]


def test_cmid_is_a_stable_guid_per_machine(ospp: Ospp):
    first = ospp("/dcmid").out
    assert "Client Machine ID (CMID): " in first
    assert ospp("/dcmid").out == first
    ospp.install(PRODUCT, "pc02")
    other = ospp("dcmid", "pc02", "--json").data()
    assert other["cmid"] != ospp("dcmid", "--json").data()["cmid"]


def test_time_travel_through_grace(ospp: Ospp):
    ospp("install-product", PRODUCT, env={"OSPP_NOW": "2026-03-01"})
    day26 = ospp("dstatus", "--json", env={"OSPP_NOW": "2026-03-27"}).data()["products"][0]
    assert day26["status"] == "OOB_GRACE" and day26["notifications"] is True
    assert day26["remaining_grace_days"] == 4
    day10 = ospp("dstatus", "--json", env={"OSPP_NOW": "2026-03-11"}).data()["products"][0]
    assert day10["notifications"] is False
    day31 = ospp("/dstatus", env={"OSPP_NOW": "2026-04-01"})
    assert "LICENSE STATUS:  ---NOTIFICATIONS---" in day31.out
    assert "ERROR CODE: 0xC004F009" in day31.out


def test_rearm_resets_grace_five_times_then_refuses(ospp: Ospp):
    ospp("install-product", PRODUCT, env={"OSPP_NOW": "2026-03-01"})
    for n in range(5):
        ran = ospp("/rearm", env={"OSPP_NOW": f"2026-04-{n + 10}"})
        assert ran.code == 0, ran.out
    st = ospp("dstatus", "--json", env={"OSPP_NOW": "2026-04-15"}).data()["products"][0]
    assert st["status"] == "OOB_GRACE" and st["remaining_grace_days"] == 29
    sixth = ospp("/rearm", env={"OSPP_NOW": "2026-04-16"})
    assert sixth.code == 1 and "0xC004D307" in sixth.out


@pytest.mark.parametrize("command", [("/rearm",), ("slmgr", "/rearm")])
def test_a_rearm_that_rearms_nothing_uses_no_rearm(ospp: Ospp, command: tuple[str, ...]):
    """With no licence to rearm the machine's 5 rearms are kept for when one is needed."""
    for _ in range(6):
        ran = ospp.proc(*command, "--json")
        assert ran.code == 0 and ran.data()["rearmed"] == [], ran.out
        assert ran.data()["rearms_left"] == 5, ran.out
    assert "<No licences needed a rearm>" in ospp.proc("/rearm").out
    ospp.install(PRODUCT)
    ran = ospp.proc(*command, "--json")
    assert ran.code == 0 and ran.data()["rearms_left"] == 4, ran.out
    assert "fbdb3e18-a8ef-4fb3-9183-dffd60bd0984" in ran.data()["rearmed"], ran.out


@pytest.mark.parametrize("command", [("/rearm",), ("slmgr", "/rearm")])
def test_a_rearm_is_refused_once_the_rearms_are_used_whatever_it_would_rearm(
    ospp: Ospp, command: tuple[str, ...]
):
    """A machine whose 5 rearms are used (its store carried over from one that used them):
    a rearm is refused (0xC004D307) even when no licence needs one, as the licensing service
    refuses it, and nothing changes."""
    assert ospp("/dcmid").code == 0  # the machine's store, with no licence in it
    with contextlib.closing(sqlite3.connect(ospp.store_file())) as conn, conn:
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('rearms_used', '5')")
    for _ in range(2):
        refused = ospp(*command)
        assert refused.code == 1 and "0xC004D307" in refused.out, refused.out
        ospp.install(PRODUCT)


def test_rearm_one_sku(ospp: Ospp):
    ospp("install-product", PRODUCT, env={"OSPP_NOW": "2026-03-01"})
    ospp("install-product", "VisioPro2021", env={"OSPP_NOW": "2026-03-01"})
    sku = "fbdb3e18-a8ef-4fb3-9183-dffd60bd0984"
    assert ospp(f"/rearm:{sku}", env={"OSPP_NOW": "2026-03-20"}).code == 0
    products = ospp("dstatus", "--json", env={"OSPP_NOW": "2026-03-20"}).data()["products"]
    days = {p["product_id"]: p["remaining_grace_days"] for p in products}
    assert days == {PRODUCT: 30, "VisioPro2021": 11}
    unknown = ospp("/rearm:00000000-0000-0000-0000-000000000000")
    assert unknown.code == 1 and "0xC004F069" in unknown.out


def test_computer_name_selects_another_store(ospp: Ospp):
    ospp.install(PRODUCT, "PC01")
    ospp("/inpkey:" + GVLK_2021, "PC01")
    assert "6F7TH" in ospp("/dstatus", "pc01").out
    assert "<No installed product keys detected>" in ospp("/dstatus").out
    assert ospp.store_file("pc01").exists()
    assert ospp("/dstatus", "bad/name").code == 2


def test_kms_settings_show_in_the_status_block(ospp: Ospp):
    ospp("install-product", PRODUCT)
    assert ospp("/sethst:kms1.example.com").out.count("Successfully applied setting.") == 1
    assert ospp("/setprt:1700").code == 0
    assert ospp("/cachst:FALSE").code == 0
    assert ospp("/skms-domain:corp.example.com").code == 0
    out = ospp("/dstatus").out
    assert "\tKMS machine registry override defined: kms1.example.com:1700" in out
    assert "\tKMS host caching: Disabled" in out
    assert "\tKMS Lookup Domain: corp.example.com" in out
    assert ospp("/sethst:[2001:db8::7]:1688").code == 0
    assert "override defined: [2001:db8::7]:1688" in ospp("/dstatus").out
    assert ospp("/remhst").code == 0 and ospp("/ckms-domain").code == 0
    out = ospp("/dstatus").out
    assert "registry override" not in out and "Lookup Domain" not in out


def test_real_subprocess_round_trip(ospp: Ospp):
    assert ospp.proc("install-product", PRODUCT).code == 0
    ran = ospp.proc("/inpkey:" + GVLK_2021)
    assert ran.code == 0, ran.err
    ran = ospp.proc("/dstatus")
    assert ran.code == 0 and "---OOB_GRACE---" in ran.out
    bad = ospp.proc("/inpkey:NOPE")
    assert bad.code == 1 and "0xC004F050" in bad.out and "Traceback" not in bad.err
    assert ospp.proc("/nosuch").code == 2
    assert ospp.proc("--version").out.startswith("ospp")


def test_bad_ospp_now_is_a_usage_error(ospp: Ospp):
    ran = ospp("/dstatus", env={"OSPP_NOW": "yesterday"})
    assert ran.code == 2 and "OSPP_NOW" in ran.out


def test_demo_runs_end_to_end(ospp: Ospp):
    ran = ospp.proc("demo", timeout=120)
    assert ran.code == 0, ran.out + ran.err
    assert "<Product activation successful>" in ran.out
    assert "<Offline product activation successful>" in ran.out
    assert "ERROR CODE: 0xC004C020" in ran.out
    assert ran.out.rstrip().endswith("ospp /?")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["/setprt:-1"], "KMS port '-1' is not a TCP port"),
        (["/setprt:١٦٨٨"], "is not a TCP port"),  # ASCII digits only
        (["/ddescr:-0x1"], "hexadecimal code starting with 0x"),
        (["/sethst:999.1.1.1"], "is not a host name"),
        (["kms", "serve", "--listen", "999.1.1.1:1688"], "is not a host name"),
    ],
)
def test_slash_values_are_values_and_bad_ones_are_usage_errors(
    ospp: Ospp, args: list[str], says: str
) -> None:
    ospp("install-product", PRODUCT)
    before = dump(ospp)
    ran = ospp(*args)
    assert ran.code == 2
    assert says in ran.out
    assert dump(ospp) == before


def test_help_shows_every_summary_whole(ospp: Ospp) -> None:
    for args in (["/?"], ["kms", "/?"], ["center", "--help"], ["help", "kms", "dns"]):
        ran = ospp(*args)
        assert ran.code == 0
        body = ran.out.split("Commands:", 1)[-1] if "Commands" in ran.out else ran.out
        assert "..." not in body.split("Usage:")[-1].split("\n", 1)[1], args
    assert "(1 AD and 3 token are not supported)" in " ".join(ospp("/?").out.split())


@pytest.mark.parametrize(
    "args",
    [["/dstatus", "/?"], ["dstatus", "/?"], ["help", "/dstatus"], ["help", "dstatus"]],
)
def test_help_of_one_command(ospp: Ospp, args: list[str]) -> None:
    ran = ospp(*args)
    assert ran.code == 0
    assert ran.out.startswith("Usage: ospp dstatus [OPTIONS] [COMPUTERNAME]")
    assert not ospp.store_file().exists()  # asking for help runs nothing


@pytest.mark.parametrize(
    ("args", "usage"),
    [
        (["/inpkey", "/?"], "Usage: ospp inpkey [OPTIONS] KEY [COMPUTERNAME]"),
        (["/SETHST", "-?"], "Usage: ospp sethst [OPTIONS] HOST [COMPUTERNAME]"),
        (["/unpkey", "--help"], "Usage: ospp unpkey [OPTIONS] XXXXX [COMPUTERNAME]"),
        (["/actcid", "-h"], "Usage: ospp actcid [OPTIONS]"),
        (["--json", "/ddescr", "/?"], "Usage: ospp ddescr [OPTIONS] 0xCODE [COMPUTERNAME]"),
    ],
)
def test_help_of_a_verb_that_takes_a_value(ospp: Ospp, args: list[str], usage: str) -> None:
    """'/inpkey /?' asks for the help of /inpkey, as '/dstatus /?' does: no value is missing."""
    ran = ospp.proc(*args)
    assert ran.code == 0, (ran.out, ran.err)
    assert ran.out.startswith(usage), ran.out
    assert not ospp.store_file().exists()  # asking for help runs nothing


def test_help_of_a_nested_command_and_of_none(ospp: Ospp) -> None:
    assert ospp("help", "kms", "serve").out.startswith("Usage: ospp kms serve")
    ran = ospp("help", "kms", "nope")
    assert ran.code == 2 and "'ospp kms' has no command 'nope'" in ran.err


def test_machines_lists_the_simulated_machines(ospp: Ospp) -> None:
    assert ospp("machines", "--json").data()["machines"] == []
    ospp("install-product", PRODUCT, "ws2")
    ospp("install-product", PRODUCT, "ws1")
    assert ospp("machines", "--json").data()["machines"] == ["ws1", "ws2"]
    assert ospp("machines").out.split() == ["ws1", "ws2"]


# -- a machine exists once a product is installed on it; a key needs its product ----------------


@pytest.mark.parametrize(
    "args",
    [
        ["/dstatus", "NOPE"],
        ["/dstatusall", "nope"],
        ["/dcmid", "nope"],
        ["/dinstid", "nope"],
        ["/dhistorykms", "nope"],
        ["/act", "nope"],
        ["/rearm", "nope"],
        ["/sethst:kms.example.com", "nope"],
        ["/inpkey:" + GVLK_2021, "nope"],
        ["hardware", "show", "nope"],
        ["slmgr", "/dli", "nope"],
    ],
)
def test_a_mistyped_computer_name_is_an_error_and_creates_nothing(ospp: Ospp, args: list[str]):
    ospp.install(PRODUCT, "ws1")
    ran = ospp(*args)
    assert ran.code == 2, ran.out
    assert "0x800706BA" in ran.out and "no simulated machine 'nope'" in ran.out
    assert "ospp machines" in ran.out
    assert ospp("machines", "--json").data()["machines"] == ["ws1"]
    assert not ospp.store_file("nope").parent.exists()
    failed = ospp(*args, "--json") if args[0] != "slmgr" else ospp(*args[:2], "--json", args[2])
    assert failed.json()["ok"] is False and failed.json()["error"]["code"] == "0x800706BA"


def test_this_machine_always_exists_and_install_product_creates_another(ospp: Ospp):
    assert ospp("/dstatus").code == 0
    assert ospp("/dstatus", "ws9").code == 2
    ran = ospp("install-product", PRODUCT, "WS9")
    assert ran.code == 0 and ospp.store_file("ws9").exists()
    assert "6F7TH" in ospp("/dstatus", "ws9").out


def test_inpkey_for_a_product_that_is_not_installed_is_refused(ospp: Ospp):
    ospp.install(PRODUCT)
    before = ospp.store_file().read_bytes()
    ran = ospp("/inpkey:" + GVLK_2016)
    assert ran.code == 1 and "ERROR CODE: 0xC004F069" in ran.out
    assert "ProPlus2016 is not installed on localhost" in ran.out
    assert "HINT: Install the product first: ospp install-product ProPlus2016" in ran.out
    assert ospp.store_file().read_bytes() == before
    assert ospp("install-product", "ProPlus2016").code == 0
    assert ospp("/inpkey:" + GVLK_2016).code == 0


def test_a_kms_host_key_on_a_client_is_refused_with_the_way_to_the_host(ospp: Ospp):
    ospp.install(PRODUCT)
    csvlk = ospp("center", "issue-key", "--product", PRODUCT, "--channel", "kms-host", "--json")
    key = csvlk.data()["key"]
    before = ospp.store_file().read_bytes()
    ran = ospp("/inpkey:" + key, "--json")
    assert ran.code == 1
    error = ran.json()["error"]
    assert error["code"] == "0xC004F069" and "KMS host key (CSVLK)" in error["message"]
    assert "ospp kms install-key" in error["hint"]
    assert ospp.store_file().read_bytes() == before
    assert ospp("kms", "install-key", key).code == 0


def test_a_refused_install_product_leaves_no_machine_behind(ospp: Ospp):
    ospp.install(PRODUCT, "ws1")
    unknown = ospp("install-product", "NoSuchProduct", "newbox")
    assert unknown.code == 2 and "NoSuchProduct" in unknown.out
    denied = ospp("install-product", PRODUCT, "box2", env={"OSPP_USER": "bob"})
    assert denied.code == 1 and "0xC004F025" in denied.out
    assert ospp("machines", "--json").data()["machines"] == ["ws1"]
    assert not ospp.store_file("newbox").parent.exists()
    assert not ospp.store_file("box2").parent.exists()
