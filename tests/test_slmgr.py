"""slmgr.vbs's options on the simulated machines and the KMS host (docs/SLMGR.md)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GVLK_2016, GVLK_2021, Ospp, Ran, check_json
from tests.kmsutil import Host, client, make_host

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
PROPLUS_2016_SKU = "d450596f-894d-49e0-966a-fd39ed4c4c64"
PROPLUS_2021_SKU = "fbdb3e18-a8ef-4fb3-9183-dffd60bd0984"
APP = "0ff1ce15-a989-479d-af46-f275c6370663"


def at(days: float = 0, hours: float = 0) -> str:
    return (T0 + timedelta(days=days, hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def monitor(out: str) -> tuple[str | None, int | None]:
    """What a monitoring plugin reads from /dli: split lines on whitespace, take the
    'License Status' and the number before ' minute'."""
    status = minutes = None
    for line in out.splitlines():
        words = line.split()
        if words[:2] == ["License", "Status:"]:
            status = " ".join(words[2:])
        if " minute" in line and minutes is None:  # the first one, as plugins do
            minutes = int(line.split(" minute")[0].split()[-1])
    return status, minutes


def dstatus(ospp: Ospp, machine: str, now: str) -> dict[str, Any]:
    products: list[dict[str, Any]] = ospp(
        "dstatus", machine, "--json", env={"OSPP_NOW": now}
    ).data()["products"]
    return products[0]


def reference(name: str) -> list[str]:
    """A block of docs/SLMGR.md marked ```slmgr.vbs NAME: what slmgr.vbs prints."""
    text = (ROOT / "docs" / "SLMGR.md").read_text()
    match = re.search(rf"```slmgr\.vbs {re.escape(name)}\n(.*?)```", text, re.S)
    assert match, name
    return match.group(1).rstrip("\n").split("\n")


def labels(lines: list[str]) -> list[str]:
    """The fixed part of each line, up to its value (after ':', a number, enabled/disabled)."""
    return [re.split(r":|\d| (?:en|dis)abled\b", line, maxsplit=1)[0].rstrip() for line in lines]


@pytest.fixture
def host(ospp: Ospp) -> Iterator[Host]:
    make_host(ospp)
    h = Host(ospp, now=at())
    yield h
    if h.alive():
        h.stop()


# -- what monitoring reads -----------------------------------------------------------------------


def test_monitoring_plugin_reads_grace_kms_oot_and_notification(ospp: Ospp, host: Host):
    for n in range(1, 6):  # five machines: the fifth reaches the threshold
        client(ospp, f"ws{n}", host, now=at())
        ospp("slmgr", "/ato", f"ws{n}", env={"OSPP_NOW": at()})
    assert ospp("slmgr", "/ato", "ws1", env={"OSPP_NOW": at()}).code == 0
    ospp("install-product", "ProPlus2021", "idle", env={"OSPP_NOW": at()})

    expected = [
        ("idle", 0, "Initial grace period", 43200),
        ("idle", 20, "Initial grace period", 14400),
        ("idle", 26, "Initial grace period", 5760),  # ospp.vbs notifies from day 25
        ("idle", 31, "Notification", None),
        ("ws1", 0, "Licensed", 259200),
        ("ws1", 100, "Licensed", 115200),
        (
            "ws1",
            181,
            "Additional grace period (KMS license expired or hardware out of tolerance)",
            41760,
        ),
        ("ws1", 211, "Notification", None),
    ]
    for machine, day, status, minutes in expected:
        ran = ospp("slmgr", "/dli", machine, env={"OSPP_NOW": at(day)})
        assert ran.code == 0, ran.out
        assert monitor(ran.out) == (status, minutes), (machine, day, ran.out)
        # ... and agrees with the simulated state
        st = dstatus(ospp, machine, at(day))
        assert st["remaining_grace_minutes"] in (minutes, 0 if minutes is None else -1)
        days = re.search(r"\((\d+) day\(s\)\)", ran.out)
        if minutes is not None:
            assert days and int(days.group(1)) == -(-minutes // 1440)
            assert st["remaining_grace_days"] == minutes // 1440
    late = ospp("slmgr", "/dli", "idle", env={"OSPP_NOW": at(31)}).out
    assert "Notification Reason: 0xC004F009 (grace time expired)." in late.splitlines()


def test_days_round_up_as_slmgr_does(ospp: Ospp):
    ospp("install-product", "ProPlus2021", env={"OSPP_NOW": at()})
    out = ospp("slmgr", "/dli", env={"OSPP_NOW": at(29, hours=23.5)}).out
    assert "Time remaining: 30 minute(s) (1 day(s))" in out.splitlines()


# -- the formats of docs/SLMGR.md ----------------------------------------------------------------


def test_dli_in_grace_matches_the_reference(ospp: Ospp):
    ospp("install-product", "ProPlus2016", env={"OSPP_NOW": at()})
    assert ospp("slmgr", "/ipk", GVLK_2016, env={"OSPP_NOW": at()}).code == 0
    ran = ospp("slmgr", "/dli", env={"OSPP_NOW": at()})
    assert ran.out.rstrip("\n").split("\n") == reference("dli-grace")


def test_dlv_client_block_after_kms_activation(ospp: Ospp, host: Host):
    for n in range(1, 6):
        client(ospp, f"ws{n}", host, product="ProPlus2016", now=at())
        ospp("slmgr", "/ato", f"ws{n}", env={"OSPP_NOW": at()})
    ran = ospp("slmgr", "/dli", "ws5", env={"OSPP_NOW": at()})
    lines = ran.out.rstrip("\n").split("\n")
    assert labels(lines) == labels(reference("dli-kms"))
    cmid = ospp("dcmid", "ws5", "--json").data()["cmid"]
    epid = ospp("kms", "status", "--json").data()["epid"]
    assert f"    Client Machine ID (CMID): {cmid}" in lines
    assert f"    Registered KMS machine name: {host.address}" in lines
    assert "    KMS machine IP address: 127.0.0.1" in lines
    assert f"    KMS machine extended PID: {epid}" in lines
    assert "    KMS host caching is enabled" in lines
    verbose = ospp("slmgr", "/dlv", "ws5", env={"OSPP_NOW": at()}).out.splitlines()
    assert f"Activation ID: {PROPLUS_2016_SKU}" in verbose
    assert "Product Key Channel: Volume:GVLK" in verbose
    assert "Remaining SKU rearm count: 5" in verbose
    data = ospp("slmgr", "/dli", "ws5", "--json", env={"OSPP_NOW": at()}).data()
    (product,) = data["products"]
    assert product["license_status"] == 1 and product["grace_minutes"] == 259200
    assert product["kms_client"]["kms_machine_extended_pid"] == epid
    xpr = ospp("slmgr", "/xpr", "ws5", env={"OSPP_NOW": at()}).out.splitlines()
    assert labels(xpr) == labels(reference("xpr-kms"))
    assert xpr[1] == "    Volume activation will expire 8/28/2027 9:00:00 AM"


def test_dlv_on_the_host_after_25_clients_shows_the_counts_of_kms_status(ospp: Ospp, host: Host):
    for n in range(25):
        client(ospp, f"c{n}", host, now=at())
        ospp("slmgr", "/ato", f"c{n}", env={"OSPP_NOW": at()})
    ran = ospp("slmgr", "/dlv", env={"OSPP_NOW": at()})
    assert ran.code == 0, ran.out
    lines = ran.out.rstrip("\n").split("\n")
    # at the time the clients were seen: at real time (months before) none of them counts
    st = ospp("kms", "status", "--json", env={"OSPP_NOW": at()}).data()

    def value(label: str) -> int:
        (line,) = [x for x in lines if x.strip().startswith(label)]
        return int(line.rsplit(":", 1)[1])

    assert value("Current count:") == st["current_count"][APP] == 10
    assert value("Total requests received:") == st["requests_total"] == 25
    assert value("Failed requests received:") == st["requests_failed"] == 0
    by_status = st["requests_by_status"]
    assert value("Requests with License Status Initial grace period:") == by_status["oob_grace"]
    assert value("Requests with License Status Licensed:") == by_status.get("licensed", 0)
    assert "    Listening on Port: " + str(host.port) in lines
    dli = ospp("slmgr", "/dli", env={"OSPP_NOW": at()}).out.rstrip("\n").split("\n")
    assert labels(dli) == labels(reference("dli-host"))


def test_dlv_on_the_host_shows_the_rearm_count_as_slmgr_vbs_does(ospp: Ospp):
    """slmgr.vbs prints the rearm counts and trusted time of every licence in detail, a KMS
    host's too: the count of this machine, which /rearm lowers."""
    make_host(ospp)
    now = {"OSPP_NOW": at()}

    def host_block(*args: str) -> list[str]:
        ran = ospp("slmgr", *args, env=now)
        assert ran.code == 0, ran.out
        lines = ran.out.rstrip("\n").split("\n")
        return lines[: lines.index("Key Management Service is enabled on this machine") + 1]

    ref = reference("dlv-host")
    dlv = host_block("/dlv")
    assert labels(dlv) == labels(ref)
    status = dlv.index("License Status: Licensed")
    assert dlv[status + 1 : status + 5] == [
        "Remaining App rearm count: 5",
        "Remaining SKU rearm count: 5",
        "Trusted time: 3/1/2027 9:00:00 AM",
        "",
    ]
    assert not any("rearm" in line for line in host_block("/dli"))
    # the machine's Office licences share the count with the host's: /rearm lowers both
    assert ospp("install-product", "ProPlus2021", env=now).code == 0
    assert ospp("slmgr", "/rearm", env=now).code == 0
    assert "Remaining App rearm count: 4" in host_block("/dlv")
    everything = ospp("slmgr", "/dlv", "all", env=now).out.splitlines()
    assert everything.count("Remaining App rearm count: 4") == 3  # host, GVLK, MAK licences
    assert everything.count("Remaining SKU rearm count: 4") == 3


# -- an ospp.vbs command and its slmgr twin leave the same state ---------------------------------

_VOLATILE = {"installed_at", "grace_started_at", "expires_at", "activated_at", "now"}


def _state(ospp: Ospp, now: str) -> Any:
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in _VOLATILE}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(ospp("dstatusall", "--json", env={"OSPP_NOW": now}).data())


def test_ospp_vbs_commands_and_their_slmgr_twins_leave_the_same_state(tmp_path: Path):
    vbs, sl = Ospp(tmp_path / "vbs"), Ospp(tmp_path / "slmgr")
    sl.env["OSPP_CENTER_HOME"] = vbs.env["OSPP_CENTER_HOME"]  # one authority, one MAK
    mak = vbs("center", "issue-key", "--product", "ProPlus2021", "--limit", "5", "--json")
    key = mak.data()["key"]
    for side in (vbs, sl):
        side("install-product", "ProPlus2016", env={"OSPP_NOW": at(0)})
    twins: list[tuple[list[str], list[str]]] = [
        ([f"/inpkey:{GVLK_2016}"], ["slmgr", "/ipk", GVLK_2016]),
        (["/sethst:kms1.example.com:1700"], ["slmgr", "/skms", "kms1.example.com:1700"]),
        (["/cachst:FALSE"], ["slmgr", "/ckhc"]),
        (["/skms-domain:Corp.Example"], ["slmgr", "/skms-domain", "Corp.Example"]),
        (["/actype:2"], ["slmgr", "/act-type", "2"]),
        (["/rearm"], ["slmgr", "/rearm"]),
        (["/remhst"], ["slmgr", "/ckms"]),
        (["/ckms-domain"], ["slmgr", "/ckms-domain"]),
        (["/cachst:TRUE"], ["slmgr", "/skhc"]),
        (["/unpkey:WFG99"], ["slmgr", "/upk"]),
        (["install-product", "ProPlus2021"], ["install-product", "ProPlus2021"]),
        (["/unpkey:6F7TH"], ["slmgr", "/upk"]),
        ([f"/inpkey:{key}"], ["slmgr", "/ipk", key]),
        (["/act"], ["slmgr", "/ato"]),
    ]
    for day, (ospp_vbs, slmgr) in enumerate(twins):
        now = at(day)
        a, b = vbs(*ospp_vbs, env={"OSPP_NOW": now}), sl(*slmgr, env={"OSPP_NOW": now})
        assert (a.code, b.code) == (0, 0), (ospp_vbs, a.out, b.out)
        assert _state(vbs, now) == _state(sl, now), (ospp_vbs, slmgr)
    final = _state(sl, at(len(twins)))
    mak_licence = next(p for p in final["products"] if p["channel"] == "mak")
    assert mak_licence["status"] == "LICENSED" and mak_licence["activation_type"] == "mak"


# -- bad input, errors, exit statuses -----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "status"),
    [
        (["/ipk", "XQNVK-8JYDB-WJ9W3-YJ8YR-WFG98"], "0xC004F050", 1),
        (["/ipk", "short"], "0xC004F050", 1),
        (["/upk", "11111111-2222-3333-4444-555555555555"], "0xC004F069", 1),
        (["/ato", "11111111-2222-3333-4444-555555555555"], "0xC004F069", 1),
        (["/act-type", "1"], "0xC004F035", 1),
        (["/act-type", "7"], "0x80070057", 2),
        (["/skms", "bad host!"], "0x80070057", 2),
        (["/skms-domain", "not a domain"], "0x80070057", 2),
        (["/dli", "11111111-2222-3333-4444-555555555555"], "0xC004F069", 1),
        (["/sai", "60"], "0xC004F041", 1),  # no KMS host here
        (["/sprt", "1700"], "0xC004F041", 1),
        # a value that starts with '-' is the value, not an unknown option
        (["/sai", "-1"], "0x80070057", 2),
        (["/sri", "-5"], "0x80070057", 2),
        (["/sprt", "-5"], "0x80070057", 2),
        (["/cpri"], "0xC004F041", 1),
    ],
)
def test_bad_input_is_refused_with_its_code_and_changes_nothing(
    ospp: Ospp, args: list[str], code: str, status: int
):
    ospp("install-product", "ProPlus2021", env={"OSPP_NOW": at()})
    before = _state(ospp, at())
    ran = ospp("slmgr", *args, env={"OSPP_NOW": at()})
    assert ran.code == status
    assert ran.out.startswith(f"Error: {code} "), ran.out
    assert "Detail: " in ran.out
    data = ospp("slmgr", *args, "--json", env={"OSPP_NOW": at()}).json()
    assert data["ok"] is False and data["error"]["code"] == code
    assert _state(ospp, at()) == before
    assert not (ospp.home / "kms" / "kms.db").exists()


def test_a_negative_activation_type_is_named_as_one(ospp: Ospp):
    """'-1' is the value /act-type was given, not a computer name."""
    ospp("install-product", "ProPlus2021")
    ran = ospp("slmgr", "/act-type", "-1")
    assert ran.code == 2 and "/actype takes 0 (all)" in ran.out and "'-1'" in ran.out, ran.out


def test_unknown_option_and_extra_words_are_usage_errors(ospp: Ospp):
    ran = ospp("slmgr", "/bogus")
    assert ran.code == 2 and "Unrecognized option: /bogus" in ran.err
    assert ospp("slmgr", "/dli", "pc1", "pc2").code == 2
    assert ospp("slmgr", "/sai").code == 2


# -- the KMS host ------------------------------------------------------------------------------


def test_host_key_install_activate_and_settings(ospp: Ospp):
    key = ospp(
        "center", "issue-key", "--product", "ProPlus2021", "--channel", "kms-host", "--json"
    ).data()["key"]
    assert ospp("slmgr", "/ipk", key).out == (
        f"Installed product key *****-*****-*****-*****-{key[-5:]} successfully.\n"
    )
    assert ospp("kms", "status", "--json").data()["key_last5"] == key[-5:]
    assert "License Status: Unlicensed" in ospp("slmgr", "/dli").out
    refused = ospp("slmgr", "/sai", "60")
    assert refused.code == 1 and "0xC004F041" in refused.out
    ran = ospp("slmgr", "/ato")
    assert ran.code == 0 and ran.out.splitlines()[-1] == "Product activated successfully."
    assert ospp("kms", "status", "--json").data()["activated"] is True

    for args, line in [
        (["/sprt", "1700"], "KMS port set to 1700 successfully."),
        (["/sai", "60"], "Volume activation interval set to 60 minutes successfully."),
        (["/sri", "1440"], "Volume renewal interval set to 1440 minutes successfully."),
        (["/cpri"], "KMS priority set to Low"),
        (["/cdns"], "DNS publishing disabled"),
    ]:
        done = ospp("slmgr", *args)
        assert done.code == 0 and done.out.splitlines() == [
            line,
            "Warning: a KMS reboot is needed for this setting to take effect.",
        ]
    st = ospp("kms", "status", "--json").data()
    intervals = (st["activation_interval_minutes"], st["renewal_interval_minutes"])
    assert (st["port"], *intervals, st["priority"]) == (1700, 60, 1440, "low")
    assert "    KMS priority: Low" in ospp("kms", "status").out.splitlines()
    dlv = ospp("slmgr", "/dlv").out.splitlines()
    for line in (
        "    Listening on Port: 1700",
        "    DNS publishing disabled",
        "    KMS priority: Low",
        "    Activation interval: 60 minutes",
        "    Renewal interval: 1440 minutes",
        "Product Key Channel: Volume:CSVLK",
    ):
        assert line in dlv
    assert ospp("slmgr", "/spri").out.startswith("KMS priority set to Normal\n")
    assert "    KMS priority: Normal" in ospp("kms", "status").out.splitlines()
    assert "    KMS priority: Normal" in ospp("slmgr", "/dli").out.splitlines()
    for bad, status in ((["/sai", "5"], 2), (["/sprt", "70000"], 2), (["/sdns"], 2)):
        assert ospp("slmgr", *bad).code == status
    assert ospp("kms", "status", "--json").data() == {**st, "priority": "normal"}  # /spri
    xpr = ospp("slmgr", "/xpr").out.splitlines()
    assert xpr[1] == "    The machine is permanently activated."


# -- syntax ------------------------------------------------------------------------------------


def test_names_ignore_case_and_take_slash_or_dash(ospp: Ospp):
    ospp("install-product", "ProPlus2021", "PC01", env={"OSPP_NOW": at()})
    outs = {
        ospp("slmgr", form, "PC01", env={"OSPP_NOW": at()}).out for form in ("/dli", "/DLI", "-dli")
    }
    assert len(outs) == 1 and "Partial Product Key: 6F7TH" in outs.pop()
    every = ospp("slmgr", "/dli", "ALL", "pc01", env={"OSPP_NOW": at()}).out
    assert every.count("Name: ") == 2 and "This license is not in use." in every
    one = ospp("slmgr", "/dli", PROPLUS_2021_SKU.upper(), "pc01", env={"OSPP_NOW": at()}).out
    assert one.count("Name: ") == 1 and "6F7TH" in one
    assert "/dli" in ospp("slmgr", "/?").out


def test_slmgr_console_script(ospp: Ospp, tmp_path: Path):
    script = shutil.which("slmgr", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the slmgr console script is not installed in this environment")
    ospp.install("ProPlus2021", "pc9")
    done = subprocess.run(
        [script, "/ipk", GVLK_2021, "PC9"],
        env={**os.environ, **ospp.env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Installed product key *****-*****-*****-*****-6F7TH successfully.\n"
    via_ospp = ospp.proc("slmgr", "/dli", "pc9", "--json")
    assert via_ospp.data()["products"][0]["partial_product_key"] == "6F7TH"
    assert via_ospp.json()["command"] == "slmgr dli"


def test_slmgr_own_order_machine_name_first(ospp: Ospp):
    ospp("install-product", "ProPlus2021", "pc02", env={"OSPP_NOW": at()})
    first = ospp("slmgr", "PC02", "/dli", env={"OSPP_NOW": at()})
    assert (
        first.code == 0 and first.out == ospp("slmgr", "/dli", "pc02", env={"OSPP_NOW": at()}).out
    )


def test_slmgr_own_order_with_user_and_password(ospp: Ospp):
    """slmgr.vbs [MachineName [User Password]] [Option]: scripts that manage remote
    computers pass credentials; they are accepted and ignored, as ospp's verbs do."""
    ospp.install("ProPlus2021", "pc02")
    plain = ospp.proc("slmgr", "/dli", "pc02", env={"OSPP_NOW": at()})
    ran = ospp.proc("slmgr", "PC02", "admin", "-Hunter2", "/dli", env={"OSPP_NOW": at()})
    assert (ran.code, ran.out) == (0, plain.out), ran
    assert "USER and PASSWORD" in ran.err and "Hunter2" not in ran.err + ran.out
    as_json = ospp.proc("slmgr", "pc02", "admin", "secret", "-DLI", "--json")
    assert as_json.code == 0 and as_json.data()["machine"] == "pc02", as_json
    quiet = ospp.proc("slmgr", "pc02", "admin", "secret", "/skhc", "-q")
    assert (quiet.code, quiet.out, quiet.err) == (0, "", ""), quiet


def test_slmgr_help_and_man_pages_show_the_machine_first_order(ospp: Ospp):
    """slmgr.vbs's order, the machine (and its USER and PASSWORD) before the option, is
    documented where the trailing COMPUTERNAME is: 'slmgr /?', its man page's SYNOPSIS and
    DESCRIPTION, and the slmgr section of ospp's."""
    form = "slmgr COMPUTERNAME [USER PASSWORD] /option"
    assert form in " ".join(ospp.proc("slmgr", "/?").out.split())
    for page in ("slmgr.1", "ospp.1"):
        text = " ".join((ROOT / "man" / page).read_text(encoding="utf-8").split())
        assert form in text, page
    synopsis = (ROOT / "man" / "slmgr.1").read_text(encoding="utf-8").split(".SH")[2]
    assert '.I COMPUTERNAME .RI [ USER " " PASSWORD ]' in " ".join(synopsis.split())


@pytest.mark.parametrize(
    "args",
    [
        ("slmgr", "pc02", "/ato", "-q"),
        ("slmgr", "-q", "PC02", "/ato"),
        ("slmgr", "pc02", "/ato", "--quiet"),
        ("slmgr", "--json", "pc02", "/xpr"),
        ("slmgr", "pc02", "/xpr", "--json"),
        ("slmgr", "-ATO", "pc02", "-q"),  # the dash form too
        ("slmgr", "--json", "-xpr", "pc02"),
        # between the machine name, the credentials and the option
        ("slmgr", "pc02", "admin", "secret", "--json", "/xpr"),
        ("slmgr", "pc02", "--JSON", "admin", "secret", "/xpr"),
        ("slmgr", "pc02", "admin", "--json", "secret", "/xpr"),
        ("slmgr", "pc02", "admin", "secret", "-q", "/ato"),
        ("slmgr", "pc02", "--json", "/xpr"),
    ],
)
def test_slmgr_own_order_with_json_or_quiet(ospp: Ospp, args: tuple[str, ...]):
    """--json and -q may come anywhere, also with the machine name first or an option
    written -option: as the slmgr command and as 'ospp slmgr'."""
    ospp.install("ProPlus2021", "pc02")
    code = "from ospp.cli.slmgr import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", code, *args[1:]],
        env={**os.environ, **ospp.env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    check_json(done.stdout)
    for ran in (Ran(done.returncode, done.stdout, done.stderr), ospp.proc(*args)):
        assert ran.code in (0, 4) and "Unrecognized option" not in ran.out + ran.err, ran
        if "--json" in map(str.lower, args):
            assert ran.json()["data"]["machine"] == "pc02", ran.out
        else:  # /ato finds no KMS host (no DNS domain): it tried, and says so despite -q
            assert ran.code == 4 and "Error: 0x8007232B" in ran.out, ran


# -- MAK, phone, hardware -----------------------------------------------------------------------


def _mak(ospp: Ospp) -> str:
    key: str = ospp("center", "issue-key", "--product", "ProPlus2021", "--json").data()["key"]
    return key


def test_mak_phone_activation_and_hardware_out_of_tolerance(ospp: Ospp):
    ospp("install-product", "ProPlus2021", env={"OSPP_NOW": at()})
    ospp("slmgr", "/ipk", _mak(ospp), env={"OSPP_NOW": at()})
    xpr = ospp("slmgr", "/xpr", env={"OSPP_NOW": at()}).out.splitlines()
    assert xpr == [
        "Office 21, Office21ProPlus2021VL_MAK_AE edition:",
        "    Initial grace period ends 3/31/2027 9:00:00 AM",
    ]
    dti = ospp("slmgr", "/dti", env={"OSPP_NOW": at()})
    iid = dti.out.splitlines()[0].removeprefix("Installation ID: ")
    assert iid == ospp("dinstid", "--json").data()["products"][0]["installation_id"]
    cid = ospp("center", "confirm", iid).out.strip()
    wrong = ospp("slmgr", "/atp", "1" * 48, env={"OSPP_NOW": at()})
    assert wrong.code == 1 and wrong.out.startswith("Error: 0xC004F0")
    ran = ospp("slmgr", "/atp", cid, env={"OSPP_NOW": at()})
    sku = ospp("dstatus", "--json").data()["products"][0]["sku_id"]
    assert ran.out == f"Confirmation ID for product {sku} deposited successfully.\n"
    assert monitor(ospp("slmgr", "/dli", env={"OSPP_NOW": at(1)}).out) == ("Licensed", None)
    xpr = ospp("slmgr", "/xpr", env={"OSPP_NOW": at(1)}).out.splitlines()
    assert xpr[1] == "    The machine is permanently activated."

    ospp(
        "hardware", "change", "nic_mac", "cpu_model", "disk", "cpu_serial", env={"OSPP_NOW": at(2)}
    )
    out = ospp("slmgr", "/dli", env={"OSPP_NOW": at(3)}).out
    assert monitor(out) == (
        "Additional grace period (KMS license expired or hardware out of tolerance)",
        29 * 1440,
    )
    assert dstatus(ospp, "localhost", at(3))["remaining_grace_minutes"] == 29 * 1440


def test_error_text_from_outside_is_escaped():
    from ospp.cli.slmgr_render import error_lines
    from ospp.core.errors import LicensingError

    lines = error_lines(LicensingError(0xC004F042, "the KMS host at x refused: \x1b[2J\x07hi"))
    assert lines[1] == "Detail: the KMS host at x refused: \\x1b[2J\\x07hi"
    assert all(ch.isprintable() for line in lines for ch in line)


def test_client_block_names_the_host_dns_found_and_escapes_it():
    from ospp.cli.slmgr_render import kms_client_lines
    from ospp.machine.settings import DEFAULTS, kms_settings
    from ospp.machine.slmgr import KmsClientInfo

    found = kms_settings({**DEFAULTS, "kms_dns_host": "kms1.corp.example:1688", "kms_cache": "0"})
    info = KmsClientInfo("kms1.corp.example:1688", None, "06401-00206-\x1b]0;x\x07")
    lines = kms_client_lines(found, "c0ffee00-0000-4000-8000-000000000000", info)
    assert "    KMS machine name from DNS: kms1.corp.example:1688" in lines
    assert "    KMS machine IP address: not available" in lines
    assert "    KMS machine extended PID: 06401-00206-\\x1b]0;x\\x07" in lines
    assert "    KMS host caching is disabled" in lines
    fixed = kms_settings({**DEFAULTS, "kms_host": "::1", "kms_domain": "corp.example"})
    lines = kms_client_lines(fixed, "c0ffee00-0000-4000-8000-000000000000", info)
    assert "    Registered KMS SRV record lookup domain: corp.example" in lines
    assert "    Registered KMS machine name: [::1]:1688" in lines
    assert lines[-1].startswith("Warning: /skms setting overrides the /skms-domain setting.")


def test_kms_client_settings_warn_as_slmgr_does(ospp: Ospp):
    ospp("install-product", "ProPlus2021", env={"OSPP_NOW": at()})
    assert ospp("slmgr", "/skms-domain", "corp.example").out.splitlines() == [
        "Key Management Service lookup domain set to corp.example successfully."
    ]
    assert ospp("slmgr", "/skms", "kms1:1700").out.splitlines() == [
        "Key Management Service machine name set to kms1:1700 successfully.",
        "Warning: /skms setting overrides the /skms-domain setting. kms1:1700 will be used for "
        "activation.",
    ]
    assert ospp("slmgr", "/ckms-domain").out.splitlines()[1] == (
        "Warning: /skms setting is in effect. kms1:1700 will be used for activation."
    )
    ospp("slmgr", "/skms-domain", "corp.example")
    assert ospp("slmgr", "/ckms").out.splitlines()[1] == (
        "Warning: /skms-domain setting is in effect. corp.example will be used for DNS SRV "
        "record lookup."
    )
    kms = ospp("dstatus", "--json").data()["products"][0]["kms"]
    assert (kms["host_override"], kms["port"], kms["lookup_domain"]) == (None, 1688, "corp.example")
    assert ospp("slmgr", "/skms", ":1700").code == 0
    assert ospp("dstatus", "--json").data()["products"][0]["kms"]["port"] == 1700


def test_the_slmgr_command_reports_as_ospp_slmgr_does(ospp: Ospp):
    """The ``slmgr`` console command is ``ospp slmgr``: the same JSON command names (as
    docs/schema has them), and usage errors with their licensing code, or in JSON."""
    env = {**os.environ, **ospp.env}

    def slmgr(*args: str) -> subprocess.CompletedProcess[str]:
        code = "from ospp.cli.slmgr import main; main()"
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    ospp.install()
    done = slmgr("/dli", "--json")
    assert done.returncode == 0 and check_json(done.stdout) is not None
    assert json.loads(done.stdout)["command"] == "slmgr dli"
    for args in (["/ipk"], ["/sprt", "1688", "ws1"], ["/xyz"]):
        text = slmgr(*args)
        assert text.returncode == 2 and text.stderr.endswith("ERROR CODE: 0x80070057\n"), args
        as_json = slmgr(*args, "--json")
        envelope = check_json(as_json.stdout)
        assert as_json.returncode == 2 and envelope is not None, (args, as_json.stderr)
        assert envelope["error"]["code"] == "0x80070057"
        assert envelope["command"] == ("" if args == ["/xyz"] else f"slmgr {args[0][1:]}")
        assert "slmgr" in envelope["error"]["hint"] and "ospp" not in envelope["error"]["hint"]


def test_the_slmgr_command_takes_json_and_quiet_anywhere(ospp: Ospp):
    env = {**os.environ, **ospp.env}

    def slmgr(*args: str) -> subprocess.CompletedProcess[str]:
        code = "from ospp.cli.slmgr import main; main()"
        return subprocess.run(
            [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60
        )

    ospp.install()
    for args in (["--json", "/dli"], ["/dli", "--json"]):
        done = slmgr(*args)
        assert done.returncode == 0 and check_json(done.stdout) is not None, args
    for args in (["-q", "/dli"], ["/dli", "-q"], ["/dli", "--quiet"]):
        done = slmgr(*args)
        assert (done.returncode, done.stdout) == (0, ""), args
    failed = slmgr("/ipk", "NOPE", "-q")
    assert failed.returncode == 1 and "0xC004F050" in failed.stdout + failed.stderr


def test_the_slmgr_command_names_itself_when_it_cannot_write(ospp: Ospp, tmp_path: Path):
    ospp.install()
    readable = tmp_path / "read-only"
    readable.write_text("")
    code = "from ospp.cli.slmgr import main; main()"
    for args in (["/dli"], ["/dli", "--json"], ["/bogus", "--json"]):
        with open(readable) as out:
            done = subprocess.run(
                [sys.executable, "-c", code, *args],
                stdout=out,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, **ospp.env},
                timeout=60,
            )
        assert done.returncode == 3, (args, done.stderr)
        assert done.stderr.startswith("slmgr: cannot write the output"), (args, done.stderr)


def test_a_standard_user_may_not_activate_with_ato_or_atp(ospp: Ospp, tmp_path: Path) -> None:
    """As /act and /actcid refuse them: 0xC004F025, nothing tried and nothing stored (no
    attempt in the history, no count at the authority); a malformed CID is said first, and
    a KMS client key before the trust store."""
    import sqlite3

    ospp.install("ProPlus2021")
    key = ospp("center", "issue-key", "--product", "ProPlus2021", "--limit", "3", "--json")
    assert ospp("slmgr", "/ipk", key.data()["key"]).code == 0
    iid = ospp("dinstid", "--json").data()["products"][0]["installation_id"]
    cid = ospp("center", "confirm", iid, "--json").data()["cid"]
    ospp.install("ProPlus2021", "ws1")  # a KMS client, with no host to reach
    assert ospp("/sethst:127.0.0.1:9", "ws1").code == 0

    def dump(machine: str) -> list[str]:
        with sqlite3.connect(ospp.store_file(machine)) as db:
            return list(db.iterdump())

    before = {m: dump(m) for m in ("localhost", "ws1")}
    bob = {"OSPP_USER": "bob"}
    for args in (["/ato"], ["/ato", "ws1"], ["/atp", cid]):
        ran = ospp("slmgr", *args, env=bob)
        assert ran.code == 1 and "0xC004F025" in ran.out + ran.err, (args, ran.out)
    malformed = ospp("slmgr", "/atp", "123", env=bob)
    assert malformed.code == 1 and "0xC004F02F" in malformed.out + malformed.err, malformed.out
    assert {m: dump(m) for m in ("localhost", "ws1")} == before
    assert [k["used"] for k in ospp("center", "keys", "--json").data()["keys"]] == [1]
    no_trust = {"OSPP_CENTER_HOME": str(tmp_path / "no-authority")}
    gvlk = ospp("slmgr", "/atp", cid, "ws1", env=no_trust)
    assert gvlk.code == 1 and "0xC004F056" in gvlk.out + gvlk.err, gvlk.out
    assert "phone activation needs a MAK or KMS host key" in gvlk.out + gvlk.err
    assert ospp("slmgr", "/atp", cid).code == 0  # an administrator may
    assert ospp("dstatus", "--json").data()["products"][0]["status"] == "LICENSED"
