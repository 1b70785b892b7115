"""Every command, driven with hostile values: none may reach exit 70 ("a bug in ospp").

Each parameter of each command gets, one at a time, a huge number, a negative one, an empty
string, a directory where a file is expected, text that is not UTF-8 (as Python receives
undecodable argv bytes) and terminal control characters; the other parameters get plausible
values. Whatever the command says, it must say it as an error with an exit status of 1-4 (or
succeed), never as an internal error.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ospp.cli import cli
from tests.conftest import PRODUCT, Ospp

HOSTILE = [
    "9" * 40,  # overflows SQLite's 64-bit integers and datetime arithmetic
    "-1",
    "",
    "\udcff\udcfe",  # non-UTF-8 bytes on the command line, as Python decodes them
    "\x1b[2J\x9b31m",
    "0x" + "F" * 30,
    "9" * 5000,  # more digits than int() converts (4,300)
    "h:" + "9" * 5000,  # a host and such a port
]
# Commands that keep running when they succeed; their hostile runs are covered elsewhere.
LONG_RUNNING = {"kms serve", "center serve", "demo", "center phone", "wizard"}


def _leaves(
    group: click.Group, ctx: click.Context, prefix: str = ""
) -> Iterator[tuple[str, click.Command]]:
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None:
            continue
        path = f"{prefix}{name}"
        if isinstance(cmd, click.Group):
            yield from _leaves(cmd, click.Context(cmd, info_name=name, parent=ctx), path + " ")
        else:
            yield path, cmd


def _plausible(param: click.Parameter, tmp: Path) -> str:
    name = (param.name or "").lower()
    if isinstance(param.type, click.Choice):
        return str(param.type.choices[0])
    if isinstance(param.type, click.types.IntParamType | click.types.FloatParamType):
        return "5"
    if isinstance(param.type, click.Path):
        return str(tmp / "some-file.txt")
    if "product" in name:
        return PRODUCT
    if "key" in name:
        return "FXYTK-NJJ8C-GB6DW-3DYQT-6F7TH"
    if "computer" in name or "machine" in name:
        return "localhost"
    return "x"


def _cases(tmp: Path) -> Iterator[tuple[str, list[str]]]:
    ctx = click.Context(cli, info_name="ospp")
    for path, cmd in _leaves(cli, ctx):
        if path in LONG_RUNNING:
            continue
        params = [p for p in cmd.params if p.name not in ("as_json", "help")]
        for target in params:
            for value in [*HOSTILE, str(tmp)]:
                args: list[str] = path.split()
                for p in params:
                    if isinstance(p, click.Option) and p.is_flag:
                        continue
                    if p is not target and not p.required:
                        continue
                    given = value if p is target else _plausible(p, tmp)
                    if isinstance(p, click.Option):
                        args += [p.opts[0], given]
                    else:
                        args.append(given)
                yield path, args


def test_no_hostile_value_reaches_an_internal_error(
    ospp: Ospp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # commands that write a file name they are given write here
    ospp("install-product", PRODUCT)
    runner = CliRunner()
    env = {**ospp.env, "OSPP_DNS": "127.0.0.1:9"}
    bugs: list[str] = []
    count = 0
    for _path, args in _cases(tmp_path):
        count += 1
        result = runner.invoke(cli, args, env=env, prog_name="ospp", input="")
        crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
        if result.exit_code == 70 or crashed:
            bugs.append(f"{args!r}: exit {result.exit_code} {result.exception!r}")
    assert count > 200  # the walk found the commands and their parameters
    assert bugs == [], "\n".join(bugs)


@pytest.mark.parametrize(
    ("value", "code", "said"),
    [("/", 2, "0x80070057"), ("/nonexistent/dir/x.log", 3, "0x80070005"), ("", 2, "is empty")],
    ids=["a directory", "in a missing directory", "no name"],
)
def test_a_request_log_that_cannot_be_opened_is_a_clear_error(
    ospp: Ospp, value: str, code: int, said: str
) -> None:
    """A directory is not a file (a usage error, as click says of other file arguments); a
    file that cannot be made is a file error (exit 3), as for every file ospp writes."""
    ran = ospp.proc("kms", "serve", "--listen", "127.0.0.1:0", "--log", value, timeout=30)
    assert ran.code == code and said in ran.out, (ran.out, ran.err)
    assert "request log" in ran.out and "Traceback" not in ran.err


@pytest.mark.parametrize("command", [("kms", "serve"), ("center", "serve")], ids=" ".join)
def test_an_empty_http_address_is_refused_not_taken_for_no_status_page(
    ospp: Ospp, command: tuple[str, ...]
) -> None:
    """``--http ''`` (an unset variable in a unit file, say) is a usage error, as an empty
    ``--listen`` is: the server does not start without the status page it was asked for."""
    if command[0] == "center":
        assert ospp("center", "init").code == 0
    ran = ospp.proc(*command, "--listen", "127.0.0.1:0", "--http", "", timeout=20)
    assert ran.code == 2, (ran.out, ran.err)
    assert "0x80070057" in ran.out and "--http ''" in ran.out
    assert "LISTENING" not in ran.out and "Traceback" not in ran.err


def test_a_bad_trust_file_does_not_break_the_others(ospp: Ospp) -> None:
    trust = Path(ospp.env["OSPP_HOME"]) / "trust"
    trust.mkdir(parents=True)
    (trust / "broken.json").write_text("[]")
    ospp("install-product", PRODUCT)
    key = ospp("center", "issue-key", "--product", PRODUCT).out.strip()
    ran = ospp("/inpkey:" + key, "--act", "--json")
    assert ran.code == 0, ran.out
    listed = ospp("trust", "list", "--json").data()
    assert len(listed["anchors"]) == 1 and "broken.json" in listed["unreadable"][0]
    # with only the broken file, activation fails closed and names it
    ran = ospp("/act", "--json", env={"OSPP_AUTHORITY": "127.0.0.1:9"})
    assert ran.code == 1 and "broken.json" in ran.json()["error"]["message"]
    assert os.path.exists(trust / "broken.json")  # reported, never removed


@pytest.mark.parametrize(
    "args",
    [
        ("--extra", "b.example,\u00b2,1"),  # a superscript two: a digit to isdigit(), not to int()
        ("--extra", "b.example,70000"),
        ("--priority", "70000"),
        ("--weight", "-1"),
    ],
)
def test_dns_publishing_settings_are_checked_before_they_are_kept(
    ospp: Ospp, args: tuple[str, str]
) -> None:
    """SRV priorities and weights are 16-bit numbers: a setting outside that made every later
    'kms dns records' (and the running host's publishing) fail, some with an internal error."""
    base = ("kms", "dns", "set", "--server", "127.0.0.1:53", "--domain", "corp.example")
    assert ospp(*base, "--hostname", "kms.corp.example").code == 0
    before = ospp("kms", "dns", "records").out
    ran = ospp(*base, *args)
    assert ran.code == 2 and "0-65535" in ran.out, ran.out
    records = ospp("kms", "dns", "records")
    assert records.code == 0 and records.out == before


@pytest.mark.parametrize(
    "extra",
    [("CORP.example.,5,5",), ("b.example", "b.example,1,1")],
    ids=["the own domain", "a domain twice"],
)
def test_one_record_per_domain(ospp: Ospp, extra: tuple[str, ...]) -> None:
    """The host keeps one record per domain: a second for the same domain would replace the
    first in DNS while 'kms dns records' showed both."""
    base = ("kms", "dns", "set", "--server", "127.0.0.1:53", "--domain", "corp.example")
    assert ospp(*base, "--hostname", "kms.corp.example").code == 0
    before = ospp("kms", "dns", "records").out
    ran = ospp(*base, *(a for item in extra for a in ("--extra", item)))
    assert ran.code == 2 and "one record per domain" in ran.out, ran.out
    assert ospp("kms", "dns", "records").out == before


@pytest.mark.parametrize("address", ["1.2.3.4.5", "\x1b[31m", "fe80::1%eth0", "kms.corp.example"])
def test_dns_publishing_addresses_must_be_ip_addresses(ospp: Ospp, address: str) -> None:
    base = ("kms", "dns", "set", "--server", "127.0.0.1:53", "--domain", "corp.example")
    assert ospp(*base, "--hostname", "kms.corp.example", "--address", "192.0.2.10").code == 0
    before = ospp("kms", "dns", "records").out
    ran = ospp(*base, "--hostname", "kms.corp.example", "--address", address)
    assert ran.code == 2 and "is not an IPv4 or IPv6 address" in ran.out, ran.out
    assert ospp("kms", "dns", "records").out == before


@pytest.mark.parametrize("zone", ["\x1b", "a b", "z" * 40, "\u202e"])
def test_an_ipv6_zone_is_an_interface_name(ospp: Ospp, zone: str) -> None:
    ospp("install-product", PRODUCT)
    assert ospp("/sethst:[fe80::1%eth0]").code == 0
    ran = ospp(f"/sethst:[fe80::1%{zone}]")
    assert ran.code == 2 and "0x80070057" in ran.out + ran.err, ran.out
    assert (
        ospp("/dstatus", "--json").data()["products"][0]["kms"]["host_override"] == "fe80::1%eth0"
    )


@pytest.mark.parametrize(
    ("algorithm", "name"),
    [
        ("hmac-md99", "kms-update"),
        ("hmac-sha256", "kms\x1bupdate"),
        ("hmac-sha256", "a b"),
        ("hmac-sha256", "a..b"),
        ("hmac-sha256", "x" * 64 + ".example"),
    ],
    ids=[
        "unknown algorithm",
        "escape in the name",
        "space in the name",
        "an empty label",
        "a label over 63",
    ],
)
def test_a_tsig_key_file_that_names_no_usable_key_is_refused(
    ospp: Ospp, tmp_path: Path, algorithm: str, name: str
) -> None:
    keyfile = tmp_path / "kms.key"
    keyfile.write_text(
        f'key "{name}" {{\n\talgorithm {algorithm};\n\tsecret "c2VjcmV0c2VjcmV0c2VjcmV0";\n}};\n'
    )
    base = ("kms", "dns", "set", "--server", "127.0.0.1:53", "--domain", "corp.example")
    before = ospp("kms", "status", "--json").data()["dns_publishing"]
    ran = ospp(*base, "--hostname", "kms.corp.example", "--tsig-keyfile", str(keyfile))
    assert ran.code == 2 and "0x80070057" in ran.out, ran.out
    assert ospp("kms", "status", "--json").data()["dns_publishing"] == before is False


@pytest.mark.parametrize("hours", ["1e-9", "0.05", "nan", "inf", "721"])
def test_a_publishing_interval_a_dns_server_cannot_take_is_refused(ospp: Ospp, hours: str):
    base = ("kms", "dns", "set", "--server", "127.0.0.1:53", "--domain", "corp.example")
    ran = ospp(*base, "--hostname", "kms.corp.example", "--interval-hours", hours)
    assert ran.code == 2 and "--interval-hours must be" in ran.out, ran.out
    assert ospp("kms", "status", "--json").data()["dns_publishing"] is False


def test_publishing_settings_changed_at_once_both_take_effect(ospp: Ospp) -> None:
    """Each change reads and writes the settings in one transaction: a second command that
    starts while the first is between its read and its write waits, and keeps its change."""
    import threading

    from ospp.core.clock import SystemClock
    from ospp.dns.publish import Publishing
    from ospp.kmshost.state import KmsHost

    base = ("kms", "dns", "set", "--server", "127.0.0.1:53", "--domain", "corp.example")
    assert ospp(*base, "--hostname", "kms.corp.example").code == 0
    second_started = threading.Event()

    def slow_ttl(pub: Publishing) -> None:
        assert second_started.wait(10)
        time.sleep(0.3)  # the second command is waiting for the store meanwhile
        pub.ttl = 500

    def weight(pub: Publishing) -> None:
        pub.weight = 7

    def run(change: Callable[[Publishing], None], started: threading.Event | None) -> None:
        host = KmsHost.open(ospp.home / "kms", SystemClock())
        try:
            if started is not None:
                started.set()
            host.change_publishing(change)
        finally:
            host.db.close()

    first = threading.Thread(target=run, args=(slow_ttl, None))
    first.start()
    time.sleep(0.2)  # the first is inside its transaction
    second = threading.Thread(target=run, args=(weight, second_started))
    second.start()
    first.join(20)
    second.join(20)
    host = KmsHost.open(ospp.home / "kms", SystemClock())
    try:
        pub = host.publishing()
    finally:
        host.db.close()
    assert (pub.ttl, pub.weight) == (500, 7)


@pytest.mark.parametrize("seconds", ["-1", "0", "nan", "inf", "1e9"])
def test_an_idle_timeout_that_is_no_timeout_is_refused(ospp: Ospp, seconds: str) -> None:
    ran = ospp.proc(
        "kms", "serve", "--listen", "127.0.0.1:0", "--idle-timeout", seconds, timeout=30
    )
    assert ran.code == 2 and "--idle-timeout" in ran.out + ran.err, (ran.out, ran.err)


@pytest.mark.parametrize("port", ["0", "70000", "-5"])
@pytest.mark.parametrize("command", ["records", "publish"])
def test_a_port_to_publish_outside_1_to_65535_is_a_usage_error(
    ospp: Ospp, command: str, port: str
) -> None:
    """It used to be printed into a zone line as it was (records) or sent to the DNS server,
    whose refusal came back as a network error (publish); 0 published the host's own port."""
    ran = ospp(
        "kms", "dns", "set", "--domain", "test.example", "--hostname", "kms1.test.example",
        "--server", "127.0.0.1:9", "--no-publish",
    )  # fmt: skip
    assert ran.code == 0, ran.out
    store = ospp.home / "kms" / "kms.db"
    before = store.read_bytes()
    ran = ospp("kms", "dns", command, "--port", port)
    assert ran.code == 2 and "0x80070057" in ran.out + ran.err, (ran.out, ran.err)
    assert "--port" in ran.out + ran.err and "SRV" not in ran.out
    assert store.read_bytes() == before


def test_extra_domains_and_addresses_can_be_forgotten(ospp: Ospp) -> None:
    """A mistyped --extra domain made every publish fail for good: nothing removed it."""
    base = ("kms", "dns", "set", "--domain", "test.example", "--hostname", "kms1.test.example")
    ran = ospp(*base, "--no-publish", "--extra", "typo.example,5,10", "--address", "192.0.2.1")
    assert ran.code == 0, ran.out
    records = ospp("kms", "dns", "records").out
    assert "typo.example" in records and "192.0.2.1" in records
    store = ospp.home / "kms" / "kms.db"
    before = store.read_bytes()
    ran = ospp("kms", "dns", "set", "--extra", "a.example", "--no-extra")
    assert ran.code == 2 and "exclude each other" in ran.out and store.read_bytes() == before
    assert ospp("kms", "dns", "set", "--no-extra", "--no-address", "--no-publish").code == 0
    records = ospp("kms", "dns", "records").out
    assert "typo.example" not in records and "192.0.2.1" not in records
    assert "_vlmcs._tcp.test.example." in records
