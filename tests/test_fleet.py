"""Fleet commands: real stores, a real KMS host on 127.0.0.1, real subprocesses."""

from __future__ import annotations

import contextlib
import csv
import fnmatch
import io
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Generator
from pathlib import Path

import pytest

from ospp.core.errors import OsppError
from tests.conftest import GVLK_2016, GVLK_2021, Ospp, Ran, interrupt_when
from tests.kmsutil import Host, make_host

SVG = "{http://www.w3.org/2000/svg}"


def machines(ospp: Ospp) -> list[str]:
    root = Path(ospp.env["OSPP_HOME"]) / "machines"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def licensed(ospp: Ospp, glob: str = "*") -> set[str]:
    rows = ospp("fleet", "status", "--json", "--machines", glob).data()["rows"]
    return {r["machine"] for r in rows if r["status"] == "LICENSED"}


def counted_cmids(ospp: Ospp) -> set[str]:
    return {c["cmid"] for c in ospp("kms", "clients", "--json").data()["clients"]}


def cmids(ospp: Ospp, names: set[str]) -> set[str]:
    return {ospp("dcmid", n, "--json").data()["cmid"] for n in names}


def test_create_names_settings_and_refuses_existing(ospp: Ospp) -> None:
    ran = ospp("fleet", "create", "ws", "12", "--product", "ProPlus2021", "--sethst", "kms1:1700")
    assert ran.code == 0 and "Summary: 12 created" in ran.out, ran.out
    assert ran.err == ""  # no progress bar when stderr is not a terminal
    assert machines(ospp) == [f"ws{n:02d}" for n in range(1, 13)]
    out = ospp("/dstatus", "ws07").out
    assert "KMS machine registry override defined: kms1:1700" in out
    assert "Last 5 characters of installed product key: 6F7TH" in out
    assert len({ospp("dcmid", f"ws{n:02d}", "--json").data()["cmid"] for n in (1, 2, 3)}) == 3
    again = ospp("fleet", "create", "ws", "20", "--product", "ProPlus2021")
    assert again.code == 2 and "exist already" in again.out
    assert len(machines(ospp)) == 12  # nothing created
    csvlk = ospp("center", "issue-key", "--product", "ProPlus2021", "--channel", "kms-host")
    host_key = ospp("fleet", "create", "x", "3", "--product", "ProPlus2021", "--key",
                    csvlk.out.strip())  # fmt: skip
    assert (
        host_key.code == 2
        and "0xC004F069" in host_key.out
        and "ospp kms install-key" in (host_key.out)
    )
    assert "t0-" not in host_key.out  # no word of the scratch machine the templates are made in
    bad = ospp("fleet", "create", "x", "3", "--product", "ProPlus2021", "--key", GVLK_2016)
    assert bad.code == 2 and "ProPlus2016" in bad.out
    dom = ospp("fleet", "create", "d", "2", "--product", "ProPlus2021", "--skms-domain", "corp.ex")
    assert dom.code == 0
    assert "KMS Lookup Domain: corp.ex" in ospp("/dstatus", "d1").out
    both = ("--sethst", "h:1", "--skms-domain", "corp.ex")
    assert ospp("fleet", "create", "e", "2", "--product", "ProPlus2021", *both).code == 2
    ospp("fleet", "remove", "d*")
    assert ospp("fleet", "create", "y", "0", "--product", "ProPlus2021").code == 2
    assert ospp("fleet", "create", "y", "3", "--product", "Nope").code == 2
    assert len(machines(ospp)) == 12


def test_create_names_are_computed_as_the_listed_ones_were() -> None:
    from ospp.core.errors import UsageError
    from ospp.machine.fleet import create_names

    for prefix, count in (("ws", 1), (" Lab-", 9), ("ws", 10), ("x.y_", 1234)):
        names = create_names(prefix, count)
        width = len(str(count))
        listed = [f"{prefix.strip().lower()}{n:0{width}d}" for n in range(1, count + 1)]
        assert list(names) == listed and len(names) == count
        assert (names[0], names[-1]) == (listed[0], listed[-1])
        assert all(name in names for name in listed)
    names = create_names("ws", 12)
    assert not any(n in names for n in ("ws00", "ws13", "ws1", "ws001", "wsx1", "w01", 7))
    with pytest.raises(UsageError):
        create_names("bad name ", 3)


def test_status_csv_filters_inpkey_and_remove_stay_in_the_glob(ospp: Ospp) -> None:
    ospp("fleet", "create", "a", "3", "--product", "ProPlus2021")
    ospp("fleet", "create", "b", "2", "--product", "ProPlus2019")
    ran = ospp("fleet", "status", "--csv")
    rows = list(csv.DictReader(io.StringIO(ran.out)))
    assert [r["machine"] for r in rows] == ["a1", "a2", "a3", "b1", "b2"]
    assert rows[0]["status"] == "OOB_GRACE" and rows[0]["error_code"] == "0x4004F00C"
    assert rows[0]["key_last5"] == "6F7TH" and rows[0]["remaining_days"] in ("29", "30")
    # a key needs its product: ProPlus2016 is installed nowhere, so no machine takes its key
    refused = ospp("fleet", "inpkey", GVLK_2016, "--machines", "b*")
    assert refused.code == 1 and refused.out.count(": 0xC004F069 ProPlus2016 is not") == 2
    assert refused.out.splitlines()[-1] == "Summary: 2 failed 0xC004F069"
    mak = ospp("center", "issue-key", "--product", "ProPlus2019", "--json").data()["key"]
    assert ospp("fleet", "inpkey", mak, "--machines", "b*").code == 0
    keys = {r["machine"]: r for r in ospp("fleet", "status", "--json").data()["rows"]}
    assert keys["b1"]["key_last5"] == mak[-5:] and keys["b1"]["product_id"] == "ProPlus2019"
    assert keys["a1"]["key_last5"] == "6F7TH"
    only = ospp("fleet", "status", "--json", "--machines", "a?", "--status", "oob_grace").data()
    assert {r["machine"] for r in only["rows"]} == {"a1", "a2", "a3"}
    assert ospp("fleet", "status", "--status", "LICENSED", "--json").data()["rows"] == []
    assert ospp("fleet", "remove", "b*").code == 0
    assert machines(ospp) == ["a1", "a2", "a3"]
    # a glob naming no machine fails as one computer name naming none does
    nothing = ospp("fleet", "remove", "zz*")
    assert nothing.code == 2 and "ERROR CODE: 0x800706BA" in nothing.out, nothing.out
    assert "no simulated machine matches 'zz*'" in nothing.out
    assert ospp("fleet", "act", "--machines", "zz*", "--json").json()["error"]["code"] == (
        "0x800706BA"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["remove", ""],
        ["remove", "  "],
        ["status", "--machines", ""],
        ["act", "--machines", ""],
        ["export", "x.csv", "--machines", ""],
        ["inpkey", GVLK_2016, "--machines", ""],
    ],
    ids=lambda a: " ".join(repr(w) if not w.strip() else w for w in a),
)
def test_an_empty_glob_is_refused_never_read_as_every_machine(ospp: Ospp, args: list[str]) -> None:
    """``ospp fleet remove "$GLOB"`` with GLOB unset must not remove every machine."""
    ospp("install-product", "ProPlus2021")
    ospp("fleet", "create", "ws", "2", "--product", "ProPlus2021")
    before = machines(ospp)
    ran = ospp("fleet", *args)
    assert ran.code == 2 and "is empty; give '*' for every machine" in ran.err, ran
    assert "ERROR CODE: 0x80070057" in ran.err
    assert machines(ospp) == before == ["localhost", "ws1", "ws2"]


def test_status_escapes_the_kms_host_a_client_was_given(ospp: Ospp) -> None:
    """The host a KMS activation names came from outside (a DNS target, say): the table and
    the CSV escape it, and the CSV never hands a spreadsheet a formula."""
    ospp("fleet", "create", "ws", "1", "--product", "ProPlus2021")
    db = sqlite3.connect(ospp.home / "client" / "machines" / "ws1" / "licenses.db")
    with db:
        db.execute(
            "UPDATE licenses SET activation=? WHERE product_key IS NOT NULL",
            (
                '{"kind": "kms", "host": "=1+1\\u001b[2J", "activated_at": "2026-11-01T00:00:00Z",'
                ' "valid_until": "2027-05-01T00:00:00Z"}',
            ),
        )
    db.close()
    table = ospp("fleet", "status").out
    assert "=1+1\\x1b[2J" in table and "\x1b" not in table
    rows = list(csv.DictReader(io.StringIO(ospp("fleet", "status", "--csv").out)))
    assert rows[0]["kms_host"] == "'=1+1\\x1b[2J"


def test_export_import_round_trip_and_all_or_nothing(ospp: Ospp, tmp_path: Path) -> None:
    ospp("fleet", "create", "pc", "3", "--product", "ProPlus2021", "--sethst", "10.0.0.5:1688")
    ospp.install("ProPlus2016", "pc3")
    out = tmp_path / "fleet.csv"
    assert ospp("fleet", "export", str(out)).code == 0
    exported = out.read_text()
    assert exported.splitlines()[0] == "machine,product,key,kms_host,kms_domain"
    ospp("fleet", "remove", "pc*")
    assert ospp("fleet", "import", str(out)).code == 0
    out2 = tmp_path / "again.csv"
    ospp("fleet", "export", str(out2))
    assert out2.read_text() == exported
    ospp("fleet", "remove", "pc*")
    bad = tmp_path / "bad.csv"
    lines = exported.splitlines()
    bad.write_text("\n".join([*lines[:3], "pc9,ProPlus2021,NOT-A-KEY,", *lines[3:]]) + "\n")
    ran = ospp("fleet", "import", str(bad))
    assert ran.code == 2 and "line 4" in ran.out, ran.out
    assert machines(ospp) == []
    dup = tmp_path / "dup.csv"
    dup.write_text(exported + lines[1] + "\n")
    ran = ospp("fleet", "import", str(dup))
    assert ran.code == 2 and f"line {len(lines) + 1}" in ran.out and "twice" in ran.out
    assert machines(ospp) == []


def test_export_keeps_the_kms_lookup_domain_and_reads_files_without_it(
    ospp: Ospp, tmp_path: Path
) -> None:
    """A site found by DNS (/skms-domain) is the same site once imported; a file written
    before that column existed (four columns) still imports."""
    ospp("fleet", "create", "lab", "2", "--product", "ProPlus2021", "--skms-domain", "corp.example")
    out = tmp_path / "site.csv"
    assert ospp("fleet", "export", str(out)).code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["kms_domain"] for r in rows] == ["corp.example", "corp.example"]
    ospp("fleet", "remove", "lab*")
    assert ospp("fleet", "import", str(out)).code == 0
    assert "KMS Lookup Domain: corp.example" in ospp("/dstatus", "lab1").out
    old = tmp_path / "old.csv"
    old.write_text(
        "machine,product,key,kms_host\n"
        + "".join(f"{r['machine']}x,{r['product']},{r['key']},\n" for r in rows)
    )
    assert ospp("fleet", "import", str(old)).code == 0
    assert "KMS Lookup Domain" not in ospp("/dstatus", "lab1x").out
    two = tmp_path / "two.csv"
    row = rows[0]
    two.write_text(
        "machine,product,key,kms_host,kms_domain\n"
        f"n1,{row['product']},{row['key']},,a.example\n"
        f"n1,ProPlus2016,,,b.example\n"
    )
    ran = ospp("fleet", "import", str(two))
    assert ran.code == 2 and "two KMS lookup domains" in ran.out, ran.out
    # a fifth field under a four-column header is not read as a lookup domain
    extra = tmp_path / "extra.csv"
    extra.write_text(
        f"machine,product,key,kms_host\nn2,{row['product']},{row['key']},,evil.example\n"
    )
    ran = ospp("fleet", "import", str(extra))
    assert ran.code == 2 and "line 2: expected 4 fields, found 5" in ran.out, ran.out


def test_act_and_renewal_counts_match_the_host(ospp: Ospp) -> None:
    make_host(ospp)
    host = Host(ospp)
    try:
        ospp("fleet", "create", "ws", "12", "--product", "ProPlus2021", "--sethst", host.address)
        first = ospp.proc("fleet", "act", "--json")
        # the first four are below the threshold of 5; the rest activate
        assert first.code == 1, first.out
        summary = first.data()["summary"]
        assert summary == {"activated": 8, "failed 0xC004F038": 4}
        got = licensed(ospp)
        assert len(got) == 8 and cmids(ospp, got) <= counted_cmids(ospp)
        # the host now counts 10 or more: acting again activates (or re-activates) all 12
        again = ospp.proc("fleet", "act", "--machines", "ws*")
        assert again.code == 0 and "Summary: 12 activated" in again.out, again.out
        assert licensed(ospp) == {f"ws{n:02d}" for n in range(1, 13)}
        assert counted_cmids(ospp) == cmids(ospp, licensed(ospp))
        # a week later the service renews them all, over one connection
        ospp("clock", "advance", "7d")
        ran = ospp.proc("service", "--all", "--json")
        assert ran.code == 0, ran.out
        assert ran.data()["summary"] == {"renewed": 12}
        assert counted_cmids(ospp) == cmids(ospp, licensed(ospp))
        assert len(licensed(ospp)) == 12
    finally:
        host.stop()


def test_act_without_a_host_fails_with_exit_1(ospp: Ospp) -> None:
    ospp("fleet", "create", "n", "3", "--product", "ProPlus2021", "--sethst", "127.0.0.1:9")
    ran = ospp("fleet", "act", "--json")
    assert ran.code == 1 and ran.data()["summary"] == {"failed 0xC004F074": 3}


def test_act_lists_the_first_failures_by_name_and_json_lists_them_all(ospp: Ospp) -> None:
    ospp("fleet", "create", "n", "23", "--product", "ProPlus2021", "--sethst", "127.0.0.1:9")
    text = ospp("fleet", "act")
    assert text.code == 1
    lines = text.out.splitlines()
    assert [line.split(":")[0] for line in lines[:20]] == [f"n{i:02d}" for i in range(1, 21)]
    assert "n01: ProPlus2021: activate failed: 0xC004F074 no KMS host" in lines[0]
    assert lines[20:] == [
        "... and 3 more failures (--json lists them all)",
        "Summary: 23 failed 0xC004F074",
    ]
    ran = ospp("fleet", "act", "--json")
    assert ran.code == 1 and ran.data()["summary"] == {"failed 0xC004F074": 23}
    failures = ran.data()["failures"]
    assert sorted(f["machine"] for f in failures) == [f"n{i:02d}" for i in range(1, 24)]
    assert {f["error"]["code"] for f in failures} == {"0xC004F074"}
    assert ran.json()["ok"] is False
    assert ran.json()["error"]["message"].startswith("23 activation(s) failed; the first: ")


def test_concurrent_fleet_commands_on_overlapping_globs_lose_no_update(ospp: Ospp) -> None:
    ospp("fleet", "create", "c", "20", "--product", "ProPlus2021")
    names = [f"c{n:02d}" for n in range(1, 21)]

    def generation(name: str) -> int:
        with contextlib.closing(sqlite3.connect(ospp.store_file(name))) as conn:
            row = conn.execute("SELECT value FROM meta WHERE name='generation'").fetchone()
        return int(row[0])

    before = {n: generation(n) for n in names}
    globs = ["c*", "c0*", "c1*", "c*", "c?[13579]", "c*", "c0*", "c2*"]
    env = {**os.environ, **ospp.env}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "ospp", "fleet", "inpkey", GVLK_2021, "--machines", g],
            env=env,
            stdout=subprocess.PIPE,
        )
        for g in globs
    ]
    for p in procs:
        p.communicate(timeout=120)
        assert p.returncode == 0
    for name in names:
        hits = sum(fnmatch.fnmatchcase(name, g) for g in globs)
        assert generation(name) - before[name] == hits, name


@pytest.mark.parametrize("fmt", ["--svg", "--html"])
def test_timeline_draws_one_series_per_state(ospp: Ospp, tmp_path: Path, fmt: str) -> None:
    ospp("fleet", "create", "ws", "5", "--product", "ProPlus2021", env={"OSPP_NOW": "2027-01-01"})
    ospp("fleet", "create", "nk", "2", "--product", "ProPlus2021", env={"OSPP_NOW": "2027-01-01"})
    ospp("fleet", "create", "late", "1", "--product", "ProPlus2021", env={"OSPP_NOW": "2027-02-01"})
    out = tmp_path / ("t.svg" if fmt == "--svg" else "t.html")
    ran = ospp(
        "fleet", "timeline", "--from", "2027-01-01", "--to", "2027-02-10", "--step", "1d",
        fmt, str(out), "--json",
    )  # fmt: skip
    assert ran.code == 0, ran.out
    points = ran.data()["points"]
    assert len(points) == 41
    by_day = {p["counted_at"][:10]: p for p in points}
    assert by_day["2027-01-01"]["OOB_GRACE"] == 7  # 'late' is not installed yet
    assert by_day["2027-02-01"]["OOB_GRACE"] == 1
    assert by_day["2027-01-27"]["OOB_GRACE_NOTIFYING"] == 7
    assert by_day["2027-02-05"]["NOTIFICATIONS"] == 7
    text = out.read_text()
    if fmt == "--html":
        text = text[text.index("<svg") : text.index("</svg>") + 6]
    root = ET.fromstring(text)
    series = [g.get("data-state") for g in root.iter(f"{SVG}g") if g.get("class") == "series"]
    assert series == ran.data()["states"]
    assert len(set(series)) == 6


def test_a_chart_that_cannot_be_written_is_named(ospp: Ospp, tmp_path: Path) -> None:
    ospp("fleet", "create", "ws", "2", "--product", "ProPlus2021")
    svg, html = tmp_path / "t.svg", tmp_path / "missing" / "t.html"
    ran = ospp("fleet", "timeline", "--svg", str(svg), "--html", str(html))
    assert ran.code == 2 and f"the chart {html} cannot be written" in ran.out, ran.out
    assert "0x80070057" in ran.out and "directory that exists" in ran.out


def test_timeline_files_are_named_files_and_not_one_file_twice(
    ospp: Ospp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--svg and --html naming one file (the page silently replaced the chart), '-' (a file
    named '-' was written) and '' are refused before anything is written."""
    ospp("fleet", "create", "ws", "2", "--product", "ProPlus2021")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # the relative names below are written here, if at all
    for args, said in (
        (["--svg", "a.svg", "--html", "./a.svg"], "--svg and --html both name a.svg"),
        (["--svg", "-"], "'-' is no file here"),
        (["--html", ""], "is empty; give a file name"),
    ):
        ran = ospp("fleet", "timeline", *args)
        assert ran.code == 2 and said in ran.out + ran.err, (args, ran.out, ran.err)
        assert "0x80070057" in ran.out + ran.err
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("command", [["fleet", "status"], ["fleet", "timeline"]])
def test_a_glob_that_matches_nothing_is_said_by_the_reports_too(
    ospp: Ospp, command: list[str]
) -> None:
    """As for 'fleet act': a mistyped --machines glob is an error (0x800706BA, exit 2), not an
    empty report (a timeline of zeros)."""
    ospp("fleet", "create", "ws", "2", "--product", "ProPlus2021")
    ran = ospp(*command, "--machines", "nomatch*")
    assert ran.code == 2 and "no simulated machine matches 'nomatch*'" in ran.out + ran.err
    assert "0x800706BA" in ran.out + ran.err
    assert ospp(*command, "--machines", "ws*").code == 0


def test_service_all_in_a_home_without_machines_says_so_as_fleet_act_does(ospp: Ospp) -> None:
    for command in (["service", "--all"], ["service", "--all", "--notify"], ["fleet", "act"]):
        ran = ospp(*command, "--json")
        assert ran.code == 2, command
        error = ran.json()["error"]
        assert error["code"] == "0x800706BA" and "no simulated machines" in error["message"]


def test_status_in_worker_processes_matches_and_reports_a_damaged_store(
    ospp: Ospp, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ospp.machine import fleetview

    ospp("fleet", "create", "m", "30", "--product", "ProPlus2021")
    serial = ospp("fleet", "status", "--csv").out
    monkeypatch.setattr(fleetview, "PARALLEL_FROM", 1)
    monkeypatch.setattr(fleetview, "CHUNK", 4)
    assert ospp("fleet", "status", "--csv").out == serial
    assert len(serial.splitlines()) == 31
    damaged = ospp.store_file("m07")
    damaged.write_bytes(b"not a database at all" * 100)
    ran = ospp("fleet", "status", "--json")
    assert ran.code == 3, ran.out
    rows = {r["machine"]: r for r in ran.data()["rows"]}
    assert rows["m07"]["status"] == "ERROR" and rows["m07"]["error_code"] == "0x8007000D"
    assert len(rows) == 30 and rows["m08"]["status"] == "OOB_GRACE"
    assert damaged.read_bytes() == b"not a database at all" * 100


def test_parallel_yields_every_result_and_raises_the_first_failure() -> None:
    from collections.abc import Iterator

    from ospp.machine.workers import parallel

    def double(n: int) -> Iterator[int]:
        yield n
        yield -n

    assert sorted(parallel(range(500), double)) == sorted([*range(500), *(-n for n in range(500))])

    def fail_at_7(n: int) -> Iterator[int]:
        if n == 7:
            raise ValueError("seven")
        yield n

    with pytest.raises(ValueError, match="seven"):
        list(parallel(range(10_000), fail_at_7))
    with pytest.raises(ValueError, match="seven"):
        list(parallel(range(10_000), fail_at_7, ordered=True))


def test_parallel_tells_the_work_in_hand_to_give_up_before_waiting_for_it() -> None:
    """A caller that stops early (an interrupt) or a failure: ``stopping`` runs before the
    items in hand are waited for, so that their work (a request waiting on a silent KMS host)
    can give up; a pass that completes never calls it."""
    import threading
    from collections.abc import Generator, Iterator

    from ospp.machine.workers import parallel

    told, waiting = threading.Event(), threading.Event()
    waited = []

    def waits(n: int) -> Iterator[int]:
        if n > 0:
            waiting.set()
            waited.append(told.wait(10))  # gives up at once once told
        yield n

    stops: list[int] = []

    def stopping() -> None:
        stops.append(1)
        told.set()

    results = parallel(range(4), waits, workers=4, stopping=stopping)
    assert next(results) == 0 and waiting.wait(10)
    assert isinstance(results, Generator)
    results.close()  # as an interrupt would
    assert stops == [1] and waited and all(waited)
    done = list(parallel(range(4), lambda n: iter([n]), stopping=lambda: stops.append(2)))
    assert sorted(done) == [0, 1, 2, 3] and stops == [1]


def test_parallel_tells_the_work_in_hand_at_the_first_failure() -> None:
    """A failure stops the pass: the work still in hand is told at once, not after it has
    waited for whatever it was waiting for."""
    import threading
    from collections.abc import Iterator

    from ospp.machine.workers import parallel

    told, waiting = threading.Event(), threading.Event()
    waited = []

    def work(n: int) -> Iterator[int]:
        if n == 0:
            waiting.wait(10)
            raise ValueError("zero")
        waiting.set()
        waited.append(told.wait(10))
        yield n

    with pytest.raises(ValueError, match="zero"):
        list(parallel(range(2), work, workers=2, stopping=told.set))
    assert waited == [True]


@pytest.mark.parametrize("command", ["act", "service"])
def test_a_stopped_fleet_pass_closes_its_kms_connections(ospp: Ospp, command: str) -> None:
    """fleet act and service --all hand the pass's connections to the workers to close when
    the pass is stopped (an interrupt closes the generator)."""
    import os

    from ospp.core.clock import clock_from_env
    from ospp.core.paths import ospp_home
    from ospp.machine import fleetact

    ospp("fleet", "create", "w", "20", "--product", "ProPlus2021", "--sethst", "127.0.0.1:9")
    environ = {**os.environ, **ospp.env}
    home = ospp_home(environ)
    pools = fleetact.Pools()
    if command == "act":
        passes = fleetact.act(home, None, environ, clock_from_env(environ), pools)
    else:
        names: list[str | None] = [f"w{n:02d}" for n in range(1, 21)]
        passes = fleetact.service(names, environ, pools, listed=True)
    assert isinstance(passes, Generator)
    next(passes)
    assert not pools.get().closed
    passes.close()
    assert pools.get().closed
    # and a machine's work sends nothing more once its pass is stopped, to any server
    if command == "act":
        assert list(fleetact.act(home, None, environ, clock_from_env(environ), pools)) == []
    else:
        assert list(fleetact.service(names, environ, pools, listed=True)) == []


def test_parallel_in_order_keeps_few_items_waiting_behind_a_slow_one() -> None:
    import threading
    import time
    from collections.abc import Iterator

    from ospp.machine.workers import parallel

    started = []
    lock = threading.Lock()

    def slow_first(n: int) -> Iterator[int]:
        with lock:
            started.append(n)
        if n == 0:
            time.sleep(0.3)  # the others finish meanwhile; they must not all run ahead
        yield n
        yield -n

    ahead = []
    out = []
    for result in parallel(range(500), slow_first, workers=4, ordered=True):
        if result >= 0:
            with lock:
                ahead.append(len(started) - result)  # items started beyond this one
        out.append(result)
    assert out == [r for n in range(500) for r in (n, -n)]
    assert max(ahead) <= 4 * 4  # the window: a few items per worker


def test_status_json_is_streamed_whole_with_a_damaged_store_among_others(
    ospp: Ospp, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collections import Counter

    from ospp.cli import stream

    monkeypatch.setattr(stream, "SPOOL", 256)  # the rows go through a temporary file
    ospp("fleet", "create", "a", "8", "--product", "ProPlus2021")
    ospp("fleet", "create", "b", "3", "--product", "ProPlus2019")
    ospp.store_file("a5").write_bytes(b"not a database at all" * 100)
    ran = ospp("fleet", "status", "--json")
    assert ran.code == 3, ran.out
    report = ran.data()
    rows = report["rows"]
    assert [r["machine"] for r in rows] == [f"a{n}" for n in range(1, 9)] + ["b1", "b2", "b3"]
    assert report["summary"] == dict(Counter(r["status"] for r in rows))
    assert report["summary"] == {"OOB_GRACE": 10, "ERROR": 1}
    assert rows[4]["status"] == "ERROR" and rows[4]["error_code"] == "0x8007000D"
    assert ran.json()["ok"] is False and ran.json()["error"]["code"] == "0x8007000D"
    assert "1 store(s) could not be read; the first, a5" in ran.json()["error"]["message"]
    assert {r["product_id"] for r in rows if r["machine"].startswith("b")} == {"ProPlus2019"}
    text = ospp("fleet", "status")
    assert text.code == 3 and "Summary: 10 OOB_GRACE, 1 ERROR" in text.out
    healthy = ospp("fleet", "status", "--json", "--machines", "b*")
    assert healthy.code == 0 and healthy.json()["ok"] is True
    assert healthy.json()["error"] is None and len(healthy.data()["rows"]) == 3
    none = ospp("fleet", "status", "--json", "--machines", "zz*")  # as for 'fleet act'
    assert none.code == 2 and none.json()["error"]["code"] == "0x800706BA"


def test_service_all_reports_every_machine_in_order_with_counts(
    ospp: Ospp, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collections import Counter

    from ospp.cli import stream
    from ospp.machine.fleetact import outcome
    from ospp.machine.service import Action

    monkeypatch.setattr(stream, "SPOOL", 256)  # the rows go through a temporary file
    make_host(ospp)
    host = Host(ospp)
    try:
        ospp("fleet", "create", "ws", "7", "--product", "ProPlus2021", "--sethst", host.address)
        ospp("fleet", "create", "dead", "2", "--product", "ProPlus2021", "--sethst", "127.0.0.1:9")
        assert ospp("fleet", "act").code == 1  # ws1..ws4 below the threshold; dead* no host
        names = ["dead1", "dead2", *(f"ws{n}" for n in range(1, 8))]
        ospp("clock", "advance", "7d")
        text = ospp("service", "--all")
        assert text.code == 4, text.out  # the first failure in machine order: no host
        lines = text.out.splitlines()
        assert [line.split(":")[0] for line in lines[:9]] == names  # the service's state
        assert [line.split(":")[0] for line in lines[9:18]] == names  # then what it did
        assert "dead1: ProPlus2021: activate failed: 0xC004F074" in lines[9]
        assert lines[18] == "Summary: 4 activated, 3 renewed, 2 failed 0xC004F074"
        # then what the users of the unlicensed machines are told
        assert lines[19:] and {line.split(":")[0] for line in lines[19:]} == {"dead1", "dead2"}
        ospp("clock", "advance", "7d")
        ran = ospp("service", "--all", "--json")
        assert ran.code == 4, ran.out
        report = ran.data()
        assert [s["machine"] for s in report["services"]] == names
        actions = report["actions"]
        assert [a["machine"] for a in actions] == names
        outcomes = Counter(
            outcome(Action(a["machine"], a["product_id"], a["status"], a["action"]))
            if a.get("ok", True)
            else f"failed {a['error']['code']}"
            for a in actions
        )
        assert report["summary"] == dict(outcomes) == {"renewed": 7, "failed 0xC004F074": 2}
        assert ran.json()["ok"] is False and ran.json()["error"]["code"] == "0xC004F074"
        assert "reminders" in report  # 9 machines: each user's reminders are reported too
        quiet = ospp("--quiet", "service", "--all")  # nothing due now: nothing printed
        assert quiet.code == 0 and quiet.out == "", quiet.out
        assert "\nSummary: 9 nothing due\n" in ospp("service", "--all").out
        told = ospp("service", "--all", "--notify", "--json")
        assert told.code == 0 and {r["machine"] for r in told.data()["reminders"]} == {
            "dead1",
            "dead2",
        }
        said = ospp("service", "--all", "--notify").out.splitlines()
        assert len(said) == len(told.data()["reminders"]) and said[0].startswith("dead1: ")
    finally:
        host.stop()


class CountingProxy:
    """A TCP relay on 127.0.0.1 in front of a real KMS host that counts the connections; it
    holds the first ``hold`` of them without an answer (a host that stalled: a disk hiccup, a
    long checkpoint)."""

    def __init__(self, port: int, hold: int = 0) -> None:
        import socket
        import threading

        self.hold = hold
        self.held: list[socket.socket] = []
        self.target = port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.accepted = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import socket
        import threading

        while not self.stopping.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            if self.accepted <= self.hold:
                self.held.append(client)  # read nothing, answer nothing
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=10)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.server.close()
        for conn in self.held:
            conn.close()


def test_fleet_act_and_service_use_one_connection_per_host(ospp: Ospp) -> None:
    make_host(ospp)
    host = Host(ospp)
    proxy = CountingProxy(host.port)
    try:
        address = f"127.0.0.1:{proxy.port}"
        ospp("fleet", "create", "ws", "40", "--product", "ProPlus2021", "--sethst", address)
        ran = ospp("fleet", "act")  # 8 worker threads, one connection
        assert ran.code == 1 and "Summary: 36 activated, 4 failed 0xC004F038" in ran.out
        assert proxy.accepted == 1
        ospp("clock", "advance", "7d")
        ran = ospp("service", "--all")
        assert ran.code == 0 and "Summary: 36 renewed, 4 activated" in ran.out, ran.out
        assert proxy.accepted == 2
    finally:
        proxy.stop()
        host.stop()


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal for stderr")
def test_service_with_a_progress_bar_on_the_terminal_still_prints_every_line(ospp: Ospp) -> None:
    """stderr on a terminal (a progress bar), stdout to a file or pipe: the lines come after."""
    import pty

    make_host(ospp)
    host = Host(ospp)
    ospp("fleet", "create", "t", "5", "--product", "ProPlus2021", "--sethst", host.address)
    ospp("fleet", "act")  # the fifth reaches the threshold, the first four retry
    assert ospp("fleet", "act").code == 0
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ospp", "service", "--all"],
            env={**os.environ, **ospp.env},
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            timeout=60,
        )
    finally:
        os.close(follower)
        os.close(leader)
        host.stop()
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:5]] == ["t1", "t2", "t3", "t4", "t5"]
    assert "Summary: 5 nothing due" in lines


def test_a_directory_that_holds_no_machine_is_left_out_and_left_alone(
    ospp: Ospp, tmp_path: Path
) -> None:
    """A stray directory under machines/ (or a machine removed while a fleet command reads
    the others) is not a machine: fleet commands pass over it and never make a store in it."""
    ospp("fleet", "create", "w", "2", "--product", "ProPlus2021")
    stray = Path(ospp.env["OSPP_HOME"]) / "machines" / "w3"
    stray.mkdir()
    status = ospp("fleet", "status", "--json")
    assert status.code == 0 and [r["machine"] for r in status.data()["rows"]] == ["w1", "w2"]
    assert ospp("fleet", "timeline", "--json").code == 0
    export = ospp("fleet", "export", str(tmp_path / "fleet.csv"))
    assert export.code == 0, export.out
    assert ospp("fleet", "inpkey", GVLK_2021, "--machines", "w*").code == 0
    act = ospp("fleet", "act", "--json")  # no KMS host: the two machines fail, and only they
    summary = act.data()["summary"]
    assert act.code == 1 and all(k.startswith("failed") for k in summary), summary
    assert sum(summary.values()) == 2, summary
    assert sorted(f["machine"] for f in act.data()["failures"]) == ["w1", "w2"]
    assert ospp("machines", "--json").data()["machines"] == ["w1", "w2"]
    assert list(stray.iterdir()) == []


def test_service_all_passes_over_a_machine_removed_meanwhile(ospp: Ospp) -> None:
    """'service --all' lists the machines, then serves them: one removed in between (by a
    'fleet remove' running at the same time) is passed over, not the end of the pass; a
    machine named on the command line that does not exist stays an error."""
    from ospp.machine import fleetact

    ospp("fleet", "create", "ws", "2", "--product", "ProPlus2021")
    environ = {**os.environ, **ospp.env}
    pools = fleetact.Pools()
    try:
        done = list(fleetact.service(["ws1", "gone", "ws2"], environ, pools, listed=True))
        # each was served (its activation tried: no KMS host is set, so it fails alone)
        assert sorted(a.machine for a in done) == ["ws1", "ws2"]
        assert all(a.action == "activate" for a in done), done
        with pytest.raises(OsppError, match="there is no simulated machine 'gone'"):
            list(fleetact.service(["ws1", "gone"], environ, pools))
    finally:
        pools.close()


def test_service_all_reports_an_unreadable_store_and_serves_the_others(ospp: Ospp) -> None:
    """One damaged store among many: 'service --all' reports it on its own row, as the
    fleet commands do, and still serves every other machine."""
    ospp("fleet", "create", "ws", "3", "--product", "ProPlus2021")
    damaged = ospp.store_file("ws2")
    damaged.write_bytes(b"garbage")
    env = {"OSPP_NOW": "+6h"}
    ran = ospp("service", "--all", "--json", env=env)
    # ws1 and ws3 find no KMS host (exit 4), ws2 cannot be read: a store that cannot be used
    # comes first, whichever machine failed first (as with --notify below)
    assert ran.code == 3 and ran.json()["ok"] is False, ran.out
    assert ran.json()["error"]["code"] == "0x8007000D"
    rows = {a["machine"]: a for a in ran.data()["actions"]}
    assert rows["ws2"]["action"] == "read" and rows["ws2"]["product_id"] is None
    assert rows["ws2"]["error"]["code"] == "0x8007000D"
    for served in ("ws1", "ws3"):  # their activation was tried (no KMS host: it failed)
        assert rows[served]["action"] == "activate", rows[served]
        assert len(ospp("/dhistorykms", served, "--json").data()["entries"]) == 1
    text = ospp("service", "--all", env={"OSPP_NOW": "+12h"})
    assert "ws2: cannot be read: 0x8007000D" in text.out and "ws3: ProPlus2021" in text.out
    # --notify too: every other user is told, the damaged store is said on its line
    told = ospp("service", "--notify", "--all", env={"OSPP_NOW": "+27d"})
    assert told.code == 3 and "ws2: cannot be read: 0x8007000D" in told.out, told.out
    assert "ws1: Office 21" in told.out and "ws3: Office 21" in told.out
    reminded = ospp("service", "--notify", "--all", "--json", env={"OSPP_NOW": "+27d"})
    assert reminded.json()["error"]["code"] == "0x8007000D"
    assert [r["machine"] for r in reminded.data()["reminders"]] == ["ws1", "ws3"]
    assert damaged.read_bytes() == b"garbage"


def test_remove_deletes_machines_only(ospp: Ospp) -> None:
    """Directories under machines/ that ospp did not make are no machines: not listed, not
    removed; a machine's directory that also holds someone's files is left with them."""
    import shutil

    ospp("fleet", "create", "ws", "4", "--product", "ProPlus2021")
    root = ospp.home / "client" / "machines"
    (root / "ws 9").mkdir()
    (root / "ws 9" / "notes.txt").write_text("mine")
    shutil.copytree(root / "ws2", root / "WS7")  # addressed as 'ws7', which does not exist
    (root / "ws3" / "notes.txt").write_text("mine too")
    (root / "ws5").mkdir()  # no store: not a machine
    assert ospp("machines", "--json").data()["machines"] == ["ws1", "ws2", "ws3", "ws4"]
    ran = ospp("fleet", "remove", "ws*", "--json")
    assert ran.code != 0 and "notes.txt" in ran.out, ran.out
    assert sorted(p.name for p in root.iterdir()) == ["WS7", "ws 9", "ws3", "ws5"]
    assert (root / "ws3" / "notes.txt").read_text() == "mine too"
    assert (root / "ws 9" / "notes.txt").read_text() == "mine"


def test_a_remove_that_fails_part_way_leaves_the_machine_listed(ospp: Ospp) -> None:
    """A machine's directory is moved out of the machines before it is deleted; a file that
    may not be deleted (immutable here) stopped the removal there, and the machine vanished
    from every list, with no way to remove it again. It is put back under its name."""
    import shutil

    chattr = shutil.which("chattr")
    ospp("fleet", "create", "y", "2", "--product", "ProPlus2021")
    locked = ospp.home / "client" / "machines" / "y1" / "licenses.db"
    if chattr is None or subprocess.run([chattr, "+i", str(locked)]).returncode != 0:
        pytest.skip("no chattr +i on this file system")
    try:
        ran = ospp("fleet", "remove", "y*")
        assert ran.code == 3 and "0x80070005" in ran.out, ran.out
        assert "licenses.db" in ran.out, ran.out
        assert ospp("machines", "--json").data()["machines"] == ["y1"]
    finally:
        subprocess.run([chattr, "-i", str(locked)], check=True)
    assert ospp("fleet", "remove", "y*").code == 0
    assert ospp("machines", "--json").data()["machines"] == []


def test_remove_keeps_this_machine(ospp: Ospp) -> None:
    """localhost is in every home: a glob that reaches it removes the others and keeps it,
    keys and all; naming only it is refused, with nothing removed."""
    ospp.install("ProPlus2021")
    key = ospp("center", "issue-key", "--product", "ProPlus2021", "--json").data()["key"]
    assert ospp("/inpkey:" + key).code == 0
    ospp("fleet", "create", "ws", "2", "--product", "ProPlus2021")
    store = ospp.store_file()
    before = store.read_bytes()
    for glob in ("localhost", "local*"):
        ran = ospp("fleet", "remove", glob)
        assert ran.code == 2 and "localhost" in ran.out and "/unpkey" in ran.out, ran.out
    assert store.read_bytes() == before
    ran = ospp("fleet", "remove", "*", "--json")
    assert ran.code == 0, ran.out + ran.err
    assert ran.data()["summary"] == {"removed": 2, "kept": 1}
    assert ospp("machines", "--json").data()["machines"] == ["localhost"]
    assert key[-5:] in ospp("/dstatus").out


@pytest.mark.skipif(os.name == "nt", reason="Ctrl+C is not a signal there")
def test_an_interrupted_create_says_what_it_created_and_an_import_undoes_it(
    ospp: Ospp, tmp_path: Path
) -> None:
    root = ospp.home / "client" / "machines"
    ospp("install-product", "ProPlus2021", "labsrv")  # not one of them, though its name is alike

    def made() -> int:
        return len([p for p in root.glob("*/licenses.db") if p.parent.name != "labsrv"])

    ran = interrupt_when(
        ospp, ("fleet", "create", "lab", "20000", "--product", "ProPlus2021"), lambda: made() > 50
    )
    assert ran.code == 130, (ran.out, ran.err)
    stored = sorted(p.parent.name for p in root.glob("*/licenses.db") if p.parent.name != "labsrv")
    assert f"{len(stored)} of the 20000 machines were created" in ran.out, ran.out
    assert f"({stored[0]} .. {stored[-1]})" in ran.out and "nothing was changed" not in ran.out
    assert ospp("fleet", "status", "--machines", "lab0*", "--json").data()["summary"] == {
        "OOB_GRACE": len(stored)
    }
    # the command it suggests removes them, and only them
    suggested = re.search(r"ospp fleet remove '([^']+)'", ran.out)
    assert suggested is not None, ran.out
    removed = ospp("fleet", "remove", suggested.group(1))
    assert removed.code == 0 and made() == 0, (removed.out, [p for p in root.rglob("*")][:10])
    assert ospp("machines", "--json").data()["machines"] == ["labsrv"]
    # an import is all or nothing: interrupted, it removes what it created
    rows = "".join(f"imp{n:05d},ProPlus2021,,\n" for n in range(1, 8001))
    csv_file = tmp_path / "fleet.csv"
    csv_file.write_text("machine,product,key,kms_host\n" + rows)
    ran = interrupt_when(ospp, ("fleet", "import", str(csv_file)), lambda: made() > 50)
    assert ran.code == 130 and "nothing was changed" in ran.out, (ran.out, ran.err)
    assert made() == 0 and ospp("machines", "--json").data()["machines"] == ["labsrv"]


def test_export_to_standard_output_is_refused_not_written_to_a_file_named_dash(
    ospp: Ospp, tmp_path: Path
) -> None:
    ospp("fleet", "create", "ex", "1", "--product", "ProPlus2021")
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        ran = ospp("fleet", "export", "-")
    finally:
        os.chdir(here)
    assert ran.code == 2 and "not standard output" in ran.out, ran.out
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("from_stdin", [False, True], ids=["a file", "standard input"])
def test_import_takes_a_file_saved_with_a_byte_order_mark(
    ospp: Ospp, tmp_path: Path, from_stdin: bool
) -> None:
    """Excel saves 'CSV UTF-8' with a byte order mark before the header."""
    content = "\ufeffmachine,product,key,kms_host\nbom1,ProPlus2021,,\n"
    path = tmp_path / "fleet.csv"
    path.write_text(content, encoding="utf-8")
    if from_stdin:
        ran = ospp.proc("fleet", "import", "-", input=content)
    else:
        ran = ospp("fleet", "import", str(path))
    assert ran.code == 0, ran.out
    assert ospp("machines", "--json").data()["machines"] == ["bom1"]


def test_import_names_a_utf16_file_with_a_hint_that_quotes_its_name(
    ospp: Ospp, tmp_path: Path
) -> None:
    """An export re-saved by Windows PowerShell 5 ('>' writes UTF-16): said as such, with a
    PowerShell command whose quoting holds for a name with a quote in it."""
    path = tmp_path / "o'brien.csv"
    path.write_bytes("machine,product,key,kms_host\nu1,ProPlus2021,,\n".encode("utf-16"))
    ran = ospp("fleet", "import", str(path), "--json")
    error = ran.json()["error"]
    assert ran.code == 2 and "is UTF-16 text" in error["message"], ran.out
    assert "Get-Content -LiteralPath '" + str(path).replace("'", "''") + "'" in error["hint"], error
    assert "Nothing was imported." in error["hint"]
    assert ospp("machines", "--json").data()["machines"] == []


def test_an_export_of_no_machine_is_refused_and_keeps_the_file(ospp: Ospp, tmp_path: Path):
    """A mistyped --machines would have replaced a good export with a header alone."""
    ospp("fleet", "create", "ws", "2", "--product", "ProPlus2021")
    site = tmp_path / "site.csv"
    assert ospp("fleet", "export", str(site)).code == 0
    before = site.read_bytes()
    for extra in ([], ["--json"]):
        ran = ospp("fleet", "export", str(site), "--machines", "wx*", *extra)
        assert ran.code == 2 and "0x800706BA" in ran.out and "'wx*'" in ran.out, ran.out
    assert site.read_bytes() == before


def test_a_product_id_is_reported_as_the_catalog_spells_it(ospp: Ospp) -> None:
    ran = ospp("fleet", "create", "ac", "2", "--product", "proplus2021", "--json")
    assert ran.code == 0 and ran.data()["product_id"] == "ProPlus2021"
    assert "ad1 .. ad1: ProPlus2021" in ospp("fleet", "create", "ad", "1", "--product",
                                             "PROPLUS2021").out  # fmt: skip


def test_a_timeline_within_a_day_labels_each_point_with_its_time(ospp: Ospp) -> None:
    ospp("fleet", "create", "t", "2", "--product", "ProPlus2021")
    ran = ospp("fleet", "timeline", "--from", "2027-01-11T00:00Z", "--to", "2027-01-12T00:00Z",
               "--step", "6h")  # fmt: skip
    assert ran.code == 0, ran.out
    labels = [line[:16] for line in ran.out.splitlines()[1:] if line[:4].isdigit()]
    assert labels == [
        "2027-01-11 00:00", "2027-01-11 06:00", "2027-01-11 12:00", "2027-01-11 18:00",
        "2027-01-12 00:00",
    ]  # fmt: skip
    daily = ospp("fleet", "timeline", "--from", "2027-01-11", "--to", "2027-01-12")
    assert daily.out.splitlines()[1].startswith("2027-01-11  ")  # a day: the date alone


def test_a_timeline_step_past_the_last_time_ends_the_points(ospp: Ospp) -> None:
    """A step that would go past the last time datetime holds ends the points there: one
    point, not an internal error."""
    ospp("fleet", "create", "t", "2", "--product", "ProPlus2021")
    ran = ospp("fleet", "timeline", "--from", "9998-12-01", "--to", "9998-12-31",
               "--step", "1000w", "--json")  # fmt: skip
    assert ran.code == 0, ran.out
    points = ran.data()["points"]
    assert [p["counted_at"] for p in points] == ["9998-12-01T00:00:00Z"], points
    assert points[0]["NOTIFICATIONS"] == 2


def test_service_all_on_a_fleet_prints_its_failures_and_counts_not_every_machine(
    ospp: Ospp,
) -> None:
    """Beyond 100 machines 'service --all' prints as 'fleet act' does: the first 20 failures
    by name and the counts; --json still lists every machine."""
    ospp("fleet", "create", "w", "120", "--product", "ProPlus2021", "--sethst", "127.0.0.1:9")
    ran = ospp("service", "--all")
    assert ran.code == 4, ran.out
    lines = ran.out.splitlines()
    assert [line.split(":")[0] for line in lines[:20]] == [f"w{n:03d}" for n in range(1, 21)]
    assert all(": ProPlus2021: activate failed: 0xC004F074 " in line for line in lines[:20])
    assert lines[20:] == [
        "... and 100 more failures (--json lists them all)",
        "Summary: 120 failed 0xC004F074",
    ]
    ran = ospp("service", "--all", env={"OSPP_NOW": "+1h"})  # the retries are not due yet
    assert ran.code == 0 and ran.out.splitlines() == ["Summary: 120 nothing due"], ran.out
    report = ospp("service", "--all", "--json", env={"OSPP_NOW": "+2h"}).data()
    assert len(report["services"]) == len(report["actions"]) == 120
    assert report["summary"] == {"failed 0xC004F074": 120} and "reminders" not in report


@pytest.mark.parametrize("args", [["fleet", "status", "--csv"], ["fleet", "status"]])
def test_status_with_a_bad_clock_prints_no_header_before_its_error(ospp: Ospp, args: list[str]):
    """A script redirecting 'fleet status --csv' to a file gets the error alone, not a header
    line followed by it: the clock is read before any row is printed."""
    ospp("fleet", "create", "ws", "2", "--product", "ProPlus2021")
    ran = ospp(*args, env={"OSPP_NOW": "+1x"})
    assert ran.code == 2 and "OSPP_NOW" in ran.out, ran.out
    assert ran.out.startswith("---Processing"), ran.out  # the error block, and nothing before
    assert "machine,product" not in ran.out and "MACHINE " not in ran.out, ran.out


def _stopped_after(ran: Ran, total: int) -> int:
    """How many machines the interrupted command says it did at least."""
    found = re.search(rf"at least (\d+) of the {total} machines were done \(", ran.out)
    assert ran.code == 130 and found is not None, (ran.code, ran.out, ran.err)
    assert "nothing was changed" not in ran.out and "running it again does the rest" in ran.out
    return int(found.group(1))


@pytest.mark.skipif(os.name == "nt", reason="Ctrl+C is not a signal there")
def test_a_pass_interrupted_before_any_machine_was_done_does_not_say_nothing_changed(
    ospp: Ospp,
) -> None:
    """Ctrl+C while the first machines wait for a KMS host: none is reported done, but their
    requests were sent and recorded; the message does not claim that nothing was changed."""
    silent = SilentHost()
    try:
        ospp("fleet", "create", "i", "20", "--product", "ProPlus2021", "--sethst", silent.address)
        ran = interrupt_when(ospp, ("fleet", "act"), lambda: len(silent.accepted) > 0)
    finally:
        silent.stop()
    assert ran.code == 130, (ran.out, ran.err)
    assert "nothing was changed" not in ran.out
    assert "none of the 20 machines was reported done, but those in hand" in ran.out, ran.out


@pytest.mark.skipif(os.name == "nt", reason="Ctrl+C is not a signal there")
def test_an_interrupted_remove_says_how_many_machines_it_removed(ospp: Ospp) -> None:
    """Ctrl+C during 'fleet remove': the machines removed stay removed, and the message says
    so (it said that nothing was changed)."""
    ospp("fleet", "create", "r", "3000", "--product", "ProPlus2021")
    root = ospp.home / "client" / "machines"

    def left() -> int:
        return sum(1 for p in root.iterdir() if p.name.startswith("r"))

    ran = interrupt_when(ospp, ("fleet", "remove", "r*"), lambda: left() < 2900)
    said = _stopped_after(ran, 3000)
    assert 0 < said <= 3000 - left() < 3000
    # Ctrl+C takes effect between machines: none is left half deleted, out of sight as a
    # machine being removed is (or failing with a descriptor closed under it)
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []


@pytest.mark.skipif(os.name == "nt", reason="Ctrl+C is not a signal there")
def test_an_interrupted_fleet_act_says_how_many_machines_it_activated(ospp: Ospp) -> None:
    make_host(ospp)
    host = Host(ospp)
    try:
        ospp("fleet", "create", "a", "1500", "--product", "ProPlus2021", "--sethst", host.address)
        kms_db = ospp.home / "kms" / "kms.db"

        def counted() -> int:
            db = sqlite3.connect(f"file:{kms_db}?mode=ro", uri=True)
            try:
                return int(db.execute("SELECT count(*) FROM clients").fetchone()[0])
            finally:
                db.close()

        ran = interrupt_when(ospp, ("fleet", "act"), lambda: counted() > 100)
    finally:
        host.stop()
    said = _stopped_after(ran, 1500)
    assert 0 < said <= counted() < 1500  # the host answered every machine it counts


def test_fleet_act_says_a_store_it_cannot_read_on_its_own_line(ospp: Ospp) -> None:
    """A damaged store among the machines is said as 'cannot be read', as 'service --all'
    says it, not as an activation of a product with no name ('ws2: : activate failed')."""
    ospp("fleet", "create", "ws", "3", "--product", "ProPlus2021")
    ospp.store_file("ws2").write_bytes(b"garbage")
    ran = ospp("fleet", "act")
    assert ran.code != 0 and "ws2: cannot be read: 0x8007000D" in ran.out, ran.out
    assert "ws2: :" not in ran.out


def test_inpkey_counts_its_failures_by_code_and_json_lists_them(ospp: Ospp) -> None:
    ospp("fleet", "create", "k", "3", "--product", "ProPlus2021")
    ospp.install("ProPlus2016", "k2")
    text = ospp("fleet", "inpkey", GVLK_2016, "--machines", "k*")
    assert text.code == 1, text.out
    assert "Summary: 2 failed 0xC004F069, 1 installed" in text.out.splitlines()
    ran = ospp("fleet", "inpkey", GVLK_2016, "--machines", "k*", "--json")
    assert ran.code == 1 and ran.json()["error"]["code"] == "0xC004F069"
    report = ran.data()
    assert report["summary"] == {"failed 0xC004F069": 2, "installed": 1}
    failures = sorted(report["failures"], key=lambda f: f["machine"])
    assert [f["machine"] for f in failures] == ["k1", "k3"]
    assert {f["error"]["code"] for f in failures} == {"0xC004F069"}
    done = ospp("fleet", "inpkey", GVLK_2021, "--machines", "k*", "--json")
    assert done.code == 0 and done.data() == {"summary": {"installed": 3}, "failures": []}


def _meta(ospp: Ospp, name: str) -> dict[str, str]:
    path = Path(ospp.env["OSPP_HOME"]) / "machines" / name / "licenses.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        return dict(db.execute("SELECT name, value FROM meta").fetchall())


def test_import_of_an_export_fills_this_machine_when_it_holds_nothing(
    ospp: Ospp, tmp_path: Path
) -> None:
    """An export lists localhost; in a new home almost any command has made an empty
    localhost, which fleet remove cannot remove: the import fills it (keeping its CMID)."""
    ospp.install("ProPlus2021")
    ospp("fleet", "create", "ws", "2", "--product", "ProPlus2021", "--sethst", "10.0.0.5:1688")
    site = tmp_path / "site.csv"
    assert ospp("fleet", "export", str(site)).code == 0
    assert site.read_text().splitlines()[1].startswith("localhost,ProPlus2021,")
    new = Ospp(tmp_path / "new")
    assert new("/dstatus").code == 0  # makes this machine's store, holding nothing
    cmid = new("dcmid", "--json").data()["cmid"]
    ran = new("fleet", "import", str(site), "--json")
    assert ran.code == 0, ran.out
    assert ran.data() == {"summary": {"created": 3}}
    rows = {r["machine"]: r for r in new("fleet", "status", "--json").data()["rows"]}
    assert sorted(rows) == ["localhost", "ws1", "ws2"]
    assert rows["localhost"]["product_id"] == "ProPlus2021"
    assert rows["localhost"]["key_last5"] == "6F7TH"
    assert new("dcmid", "--json").data()["cmid"] == cmid  # still this machine
    again = tmp_path / "again.csv"
    assert new("fleet", "export", str(again)).code == 0
    assert again.read_text() == site.read_text()


@pytest.mark.parametrize("held", [["install-product", "ProPlus2019"], ["/puserops"]])
def test_import_refuses_a_localhost_that_holds_anything_with_a_hint_that_works(
    ospp: Ospp, tmp_path: Path, held: list[str]
) -> None:
    ospp.install("ProPlus2021")
    ospp("fleet", "create", "ws", "2", "--product", "ProPlus2021")
    site = tmp_path / "my site" / "site.csv"  # a space: the hint quotes the path
    site.parent.mkdir()
    assert ospp("fleet", "export", str(site)).code == 0
    new = Ospp(tmp_path / "new")
    assert new(*held).code == 0
    before = _meta(new, "localhost")
    ran = new("fleet", "import", str(site), "--json")
    assert ran.code == 2 and ran.json()["error"]["code"] == "0x80070057", ran.out
    error = ran.json()["error"]
    assert "line 2: localhost, this machine, exists and holds " in error["message"]
    assert ("ProPlus2019" if held[0] == "install-product" else "user_operations") in (
        error["message"]
    )
    assert _meta(new, "localhost") == before  # unchanged
    assert machines(new) == ["localhost"]  # nothing imported
    # the hint's way: the file without the localhost rows, from standard input
    hint = error["hint"]
    command = hint.partition("(e.g. ")[2].partition(" | ospp fleet import -)")[0]
    assert command == f"grep -vi '^localhost,' '{site}'", hint
    rest = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout
    assert "localhost," not in rest and "ws1," in rest
    done = new("fleet", "import", "-", input=rest)
    assert done.code == 0, done.out
    assert machines(new) == ["localhost", "ws1", "ws2"] and _meta(new, "localhost") == before


def test_import_over_a_localhost_with_a_damaged_setting_reports_a_damaged_store(
    ospp: Ospp, tmp_path: Path
) -> None:
    """A setting no ospp writes (kms_port 99999999) is a damaged store, as /dstatus says
    (exit 3, the file kept), not a setting the machine 'holds'."""
    ospp.install("ProPlus2021")  # the export lists localhost
    ospp("fleet", "create", "ws", "1", "--product", "ProPlus2021")
    site = tmp_path / "site.csv"
    assert ospp("fleet", "export", str(site)).code == 0
    new = Ospp(tmp_path / "new")
    assert new("/dstatus").code == 0  # makes the empty localhost
    with contextlib.closing(sqlite3.connect(new.store_file("localhost"))) as db:
        db.execute("INSERT OR REPLACE INTO meta VALUES ('kms_port', '99999999')")
        db.commit()
    stored = new.store_file("localhost").read_bytes()
    ran = new("fleet", "import", str(site), "--json")
    assert ran.code == 3 and ran.json()["error"]["code"] == "0x8007000D", ran.out
    assert "damaged setting kms_port" in ran.json()["error"]["message"]
    assert new.store_file("localhost").read_bytes() == stored
    assert new("/dstatus").code == 3  # what /dstatus says of it too


def test_an_undone_import_leaves_a_filled_empty_store_as_it_was(tmp_path: Path) -> None:
    """Stopped after it filled one empty store, an import empties it again (same CMID)."""
    from ospp.core.clock import SystemClock
    from ospp.machine import fleet, fleetcsv
    from ospp.machine.store import MachineStore

    home, clock = tmp_path / "home", SystemClock()
    for name in ("e1", "e2"):
        MachineStore.open(home, name, clock, create=True).db.close()
    meta = {name: _meta_of(home, name) for name in ("e1", "e2")}
    site = tmp_path / "site.csv"
    site.write_text(
        "machine,product,key,kms_host\ne1,ProPlus2021,,\ne2,ProPlus2021,,\nn1,ProPlus2021,,\n"
    )
    assert fleetcsv.check_import(home, site, None, clock) == 3
    templates = fleet.Templates(clock)
    try:
        rows = fleetcsv.import_rows(home, site, clock, templates)
        assert next(rows).machine == "n1"  # new machines first, then the empty stores
        assert next(rows).machine == "e1"
        assert _meta_of(home, "e1")["cmid"] == meta["e1"]["cmid"]
        assert _licences_of(home, "e1") == 1
        rows.close()  # as an interrupt would
    finally:
        templates.close()
    assert not (home / "machines" / "n1").exists()
    for name in ("e1", "e2"):
        assert _meta_of(home, name) == meta[name]
        assert _licences_of(home, name) == 0


def test_an_undone_import_keeps_what_it_did_not_bring(tmp_path: Path) -> None:
    """A machine directory that held someone's files (and no store) before the import: undone,
    the import takes away the store it placed there, not the directory and the files."""
    from ospp.core.clock import SystemClock
    from ospp.machine import fleet, fleetcsv

    home, clock = tmp_path / "home", SystemClock()
    kept = home / "machines" / "ws1" / "notes.txt"
    kept.parent.mkdir(parents=True)
    kept.write_text("rack 4, shelf 2\n")
    profile = kept.with_name("hardware.json")  # a profile the admin wrote, for the tolerance
    profile.write_text('{"disk": 7}\n')
    backup = kept.with_name("licenses.db.bak")  # a copy of a store, kept by hand
    backup.write_bytes(b"an old store")
    site = tmp_path / "site.csv"
    site.write_text("machine,product,key,kms_host\nws1,ProPlus2021,,\nws2,ProPlus2021,,\n")
    assert fleetcsv.check_import(home, site, None, clock) == 2
    templates = fleet.Templates(clock)
    try:
        rows = fleetcsv.import_rows(home, site, clock, templates)
        assert next(rows).machine == "ws1"
        assert (home / "machines" / "ws1" / "licenses.db").exists()
        rows.close()  # as an interrupt would
    finally:
        templates.close()
    assert kept.read_text() == "rack 4, shelf 2\n" and profile.read_text() == '{"disk": 7}\n'
    assert sorted(p.name for p in kept.parent.iterdir()) == [
        "hardware.json",
        "licenses.db.bak",
        "notes.txt",
    ]
    assert not (home / "machines" / "ws2").exists()


def _meta_of(home: Path, name: str) -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(home / "machines" / name / "licenses.db")) as db:
        return dict(db.execute("SELECT name, value FROM meta").fetchall())


def _licences_of(home: Path, name: str) -> int:
    with contextlib.closing(sqlite3.connect(home / "machines" / name / "licenses.db")) as db:
        return int(db.execute("SELECT count(DISTINCT product_id) FROM licenses").fetchone()[0])


def test_service_all_exit_status_follows_what_failed_not_which_machine_failed_first(
    ospp: Ospp,
) -> None:
    """One machine's host counts too few (0xC004F038, exit 1), another finds no KMS host in
    DNS (0x8007232B, exit 4): whichever sorts first, the pass exits 4 with 0x8007232B."""
    make_host(ospp)
    host = Host(ospp)
    try:
        ospp("fleet", "create", "lic", "1", "--product", "ProPlus2021", "--sethst", host.address)
        for nohost in ("zz", "aa"):  # after lic1 by name, then before it
            ospp("fleet", "create", nohost, "1", "--product", "ProPlus2021")
            for args in (["service", "--all"], ["service", "--all", "--json"]):
                ran = ospp(*args, env={"OSPP_NOW": "+3h"} if args[-1] == "--json" else None)
                assert ran.code == 4, (nohost, ran.out)
                if args[-1] == "--json":
                    assert ran.json()["error"]["code"] == "0x8007232B"
                    assert ran.data()["summary"] == {"failed 0x8007232B": 1,
                                                     "failed 0xC004F038": 1}  # fmt: skip
                else:
                    assert f"{nohost}1: ProPlus2021: activate failed: 0x8007232B" in ran.out
                    assert "lic1: ProPlus2021: activate failed: 0xC004F038" in ran.out
            ospp("fleet", "remove", f"{nohost}*")
            ospp("clock", "advance", "6h")
        alone = ospp("service", "--all", "--json")  # the licensing check's no alone: exit 1
        assert alone.code == 1 and alone.json()["error"]["code"] == "0xC004F038", alone.out
    finally:
        host.stop()


def test_the_failure_reported_for_many_comes_by_kind_then_by_machine() -> None:
    from ospp.core.errors import LicensingError, NetworkError, StoreError, UsageError, reported

    lic, net, net2 = LicensingError(1, "a"), NetworkError(2, "b"), NetworkError(3, "c")
    assert reported([]) is None
    assert reported([lic, net, net2]) is net and reported([net2, lic, net]) is net2
    store, usage = StoreError(4, "d"), UsageError("e")
    assert reported([lic, net, store]) is store and reported([store, usage, lic]) is usage


class SilentHost:
    """A TCP listener on 127.0.0.1 that accepts connections and never answers."""

    def __init__(self) -> None:
        import threading

        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                self.accepted.append(self.server.accept()[0])  # read nothing, answer nothing

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
        self.server.close()
        for conn in self.accepted:
            conn.close()


def test_fleet_act_waits_twice_for_a_host_that_never_answers(
    ospp: Ospp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A KMS host that accepts and never answers costs the pass two timeouts (the request that
    found it silent, and the one that looked again), not one per machine: the machines after
    them are reported not tried (0xC004F074, the host named, a hint) and left as they are; the
    next pass, once the host answers, tries them."""
    from ospp.machine import kmspool

    monkeypatch.setattr(kmspool, "REQUEST_TIMEOUT", 1.0)
    silent = SilentHost()
    try:
        ospp("fleet", "create", "q", "30", "--product", "ProPlus2021", "--sethst", silent.address)
        ran = ospp("fleet", "act", "--json")
        accepted = len(silent.accepted)
        # only the machines that asked have an attempt in their history; the others are as
        # they were
        histories = [
            len(ospp("/dhistorykms", f"q{n:02d}", "--json").data()["entries"]) for n in range(1, 31)
        ]
        again = ospp("fleet", "act", "--machines", "q0*")  # the next pass asks it again
        accepted_again = len(silent.accepted) - accepted
    finally:
        silent.stop()
    assert ran.code == 1, ran.out
    assert accepted == 2 and accepted_again == 2  # two requests per pass, which waited
    assert sorted(histories) == [0] * 28 + [1, 1]
    assert ran.data()["summary"] == {"failed 0xC004F074": 2, "not tried 0xC004F074": 28}
    failures = ran.data()["failures"]
    assert len(failures) == 30 and {f["error"]["code"] for f in failures} == {"0xC004F074"}
    waited = [f for f in failures if f["tried"]]
    assert len(waited) == 2 and all("no answer within" in f["error"]["message"] for f in waited)
    skipped = next(f for f in failures if not f["tried"])["error"]
    assert skipped["message"] == (
        f"the KMS host at {silent.address} did not answer two requests in a row within 1 s "
        "each, earlier in this run: not sent, nothing recorded (it is looked at again 30 s "
        "after the last)"
    )
    assert f"ospp kms ping {silent.address}" in skipped["hint"]
    # the command's error is a request that was sent, not one of those it kept back
    said = ran.json()["error"]["message"]
    assert said.startswith("30 activation(s) failed; the first: ") and "no answer within" in said
    assert again.code == 1
    assert again.out.splitlines()[-1] == "Summary: 7 not tried 0xC004F074, 2 failed 0xC004F074"
    # which two machines were sent their request depends on the threads' order
    assert again.out.count(": ProPlus2021: activate failed: 0xC004F074 ") == 2, again.out
    assert again.out.count(": ProPlus2021: activate not tried: 0xC004F074 the KMS host at ") == 7


def test_machines_whose_cached_host_is_silent_and_dns_finds_none_are_left_as_they_are(
    ospp: Ospp, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A machine that did not try its cached host (given up on in this pass) looks the host up
    in DNS; when DNS finds none, it was still not tried: nothing recorded, counted not tried."""
    from ospp.machine import kmspool

    monkeypatch.setattr(kmspool, "REQUEST_TIMEOUT", 1.0)
    silent = SilentHost()
    empty = tmp_path / "resolv.conf"
    empty.write_text("")  # no name server: discovery finds no host
    try:
        ospp("fleet", "create", "c", "6", "--product", "ProPlus2021")
        for n in range(1, 7):
            with contextlib.closing(sqlite3.connect(ospp.store_file(f"c{n}"))) as db:
                db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('kms_cached_host', ?)", (silent.address,)
                )
                db.commit()
        ran = ospp("fleet", "act", "--json", env={"OSPP_RESOLV_CONF": str(empty)})
        histories = [
            len(ospp("/dhistorykms", f"c{n}", "--json").data()["entries"]) for n in range(1, 7)
        ]
    finally:
        silent.stop()
    summary = ran.data()["summary"]
    assert summary["not tried 0xC004F074"] == 4, summary
    assert sum(summary.values()) == 6 and sorted(histories)[:4] == [0] * 4, (summary, histories)
    assert [f["tried"] for f in ran.data()["failures"]].count(False) == 4


def test_a_host_that_stalled_once_costs_one_machine_not_the_pass(
    ospp: Ospp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One answer late (one request timed out) is no silent host: the next request looks at
    it again, finds it answering, and every other machine is served."""
    from ospp.machine import kmspool
    from tests.kmsutil import Host, make_host

    monkeypatch.setattr(kmspool, "REQUEST_TIMEOUT", 1.0)
    make_host(ospp)
    host = Host(ospp)
    relay = CountingProxy(host.port, hold=1)
    try:
        where = f"127.0.0.1:{relay.port}"
        ospp("fleet", "create", "s", "12", "--product", "ProPlus2021", "--sethst", where)
        ran = ospp("fleet", "act", "--json")
    finally:
        relay.stop()
        host.stop()
    summary = ran.data()["summary"]
    assert summary.get("failed 0xC004F074") == 1, summary
    assert not [k for k in summary if k.startswith("not tried")], summary
    assert summary.get("activated", 0) + summary.get("failed 0xC004F038", 0) == 11, summary
    assert relay.accepted >= 2 and all(f["tried"] for f in ran.data()["failures"])


def test_inpkey_exit_status_follows_what_failed_not_which_machine_finished_first(
    ospp: Ospp,
) -> None:
    """20 machines refuse the key (0xC004F069, exit 1), one store cannot be read (exit 3):
    the workers finish in any order, and the pass exits 3 with the store's code."""
    ospp("fleet", "create", "k", "20", "--product", "ProPlus2021")
    ospp("fleet", "create", "zz", "1", "--product", "ProPlus2021")
    ospp.store_file("zz1").write_bytes(b"garbage")
    for _ in range(2):
        text = ospp("fleet", "inpkey", GVLK_2016, "--machines", "*")
        assert text.code == 3, text.out
        assert "Summary: 20 failed 0xC004F069, 1 failed 0x8007000D" in text.out, text.out
        ran = ospp("fleet", "inpkey", GVLK_2016, "--machines", "*", "--json")
        assert ran.code == 3 and ran.json()["error"]["code"] == "0x8007000D", ran.out


def test_a_failed_renewal_is_retried_every_activation_interval_not_at_every_pass(
    ospp: Ospp,
) -> None:
    """A KMS client renews every renewal interval (7 days); when a renewal fails it tries
    again every activation interval (2 hours), as an activation is retried: a service pass
    10 minutes after a failed renewal has nothing due, one 2 hours after it renews."""
    assert ospp("clock", "set", "2027-01-04T09:00Z").code == 0
    assert ospp("clock", "freeze").code == 0
    make_host(ospp)
    host = Host(ospp)
    try:
        made = ospp(
            "fleet", "create", "ws", "5", "--product", "ProPlus2021", "--sethst", host.address
        )
        assert made.code == 0, made.out
        ospp("fleet", "act")
        assert ospp.proc("fleet", "act").code == 0
        host.stop()
        assert ospp("clock", "advance", "7d").code == 0
        ran = ospp.proc("service", "--all", "--json")
        assert ran.data()["summary"] == {"failed 0xC004F074": 5}, ran.out
        assert ospp("clock", "advance", "10m").code == 0
        ran = ospp.proc("service", "--all", "--json")
        assert ran.code == 0 and ran.data()["summary"] == {"nothing due": 5}, ran.out
        assert len(ospp("dhistorykms", "ws1", "--json").data()["entries"]) == 3
        host.start()
        assert ospp("clock", "advance", "110m").code == 0
        ran = ospp.proc("service", "--all", "--json")
        assert ran.code == 0 and ran.data()["summary"] == {"renewed": 5}, ran.out
    finally:
        if host.alive():
            host.stop()


@pytest.mark.parametrize("command", [["fleet", "act"], ["service", "--all"]])
def test_a_pass_racing_fleet_remove_passes_over_the_machines_it_removes(
    ospp: Ospp, command: list[str]
) -> None:
    """A machine removed while a pass has its store open is passed over, as one removed
    before the pass reached it: never reported as a store that cannot be read or written
    (0x80070005, 'disk I/O error'), and the removal removes every machine. The removal starts
    once the host has had the pass's first request, so the two do overlap."""
    make_host(ospp)
    host = Host(ospp)
    env = {**os.environ, **ospp.env}
    kms_db = Path(ospp.env["OSPP_KMS_HOME"]) / "kms.db"

    def requests() -> int:
        with contextlib.closing(sqlite3.connect(kms_db)) as conn:
            row = conn.execute("SELECT value FROM stats WHERE name='total'").fetchone()
        return int(row[0]) if row else 0

    try:
        for round_ in range(3):
            prefix = f"r{round_}x"
            made = ospp(
                "fleet", "create", prefix, "200", "--product", "ProPlus2021",
                "--sethst", host.address,
            )  # fmt: skip
            assert made.code == 0, made.out
            before = requests()
            passing = subprocess.Popen(
                [sys.executable, "-m", "ospp", *command],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            deadline = time.monotonic() + 60
            while requests() == before:  # the pass is under way
                assert passing.poll() is None and time.monotonic() < deadline
                time.sleep(0.005)
            removing = ospp.proc("fleet", "remove", f"{prefix}*")
            out, err = passing.communicate(timeout=120)
            assert removing.code == 0 and "Summary: 200 removed" in removing.out, removing.out
            assert passing.returncode in (0, 1), (out, err)
            assert "0x80070005" not in out and "cannot be read" not in out, out
            assert "there is no simulated machine" not in out, out
            assert not any(m.startswith(prefix) for m in machines(ospp))
    finally:
        host.stop()


def test_inpkey_racing_fleet_remove_passes_over_the_machines_it_removes(ospp: Ospp) -> None:
    """'fleet inpkey' and 'fleet remove' at once: a machine removed while its key was being
    installed is passed over, never a failure to write its store (0x80070005)."""
    env = {**os.environ, **ospp.env}
    for round_ in range(3):
        prefix = f"k{round_}x"
        assert ospp("fleet", "create", prefix, "300", "--product", "ProPlus2021").code == 0
        args = ["fleet", "inpkey", GVLK_2021, "--machines", f"{prefix}*"]
        keying = subprocess.Popen(
            [sys.executable, "-m", "ospp", *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        removing = ospp.proc("fleet", "remove", f"{prefix}*")
        out, err = keying.communicate(timeout=120)
        assert removing.code == 0 and "Summary: 300 removed" in removing.out, removing.out
        none_left = "no simulated machine matches" in out  # removed before it listed them
        assert keying.returncode == 0 or none_left, (out, err)
        assert "0x80070005" not in out, out


def test_import_names_the_line_of_a_kms_domain_too_long_for_its_srv_name(
    ospp: Ospp, tmp_path: Path
) -> None:
    """A kms_domain whose _vlmcs._tcp name would be over DNS's 255 bytes is a bad row, found
    when the file is checked: named by its line, and nothing is created."""
    long = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 58])
    site = tmp_path / "site.csv"
    site.write_text(
        "machine,product,key,kms_host,kms_domain\n"
        "q1,ProPlus2021,,,ok.example\n"
        f"q2,ProPlus2021,,,{long}\n"
    )
    ran = ospp.proc("fleet", "import", str(site))
    assert ran.code == 2 and "site.csv line 3:" in ran.out and "255 bytes" in ran.out, ran.out
    assert not any(m.startswith("q") for m in machines(ospp))
