"""The lab clock: one simulated time shared by clients and a running KMS host."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ospp.core.clock import LabClock, clock_from_env, lab_set, parse_duration
from ospp.core.errors import UsageError
from tests.conftest import Ospp
from tests.kmsutil import Host, client, make_host


def clock_path(ospp: Ospp) -> Path:
    return Path(ospp.env["OSPP_HOME"]) / "clock.json"


def test_durations() -> None:
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration("-2h") == timedelta(hours=-2)
    assert parse_duration("180d") == timedelta(days=180)
    # digits are ASCII: "٣h" (an Arabic-Indic three) is no duration, as "³h" is not
    for bad in ("-5x", "7", "d", "7 d", "1.5d", "", "7dd", "\u0663h", "\u00b3h"):
        with pytest.raises(UsageError, match="is not a duration"):
            parse_duration(bad)
    # a duration too long for any time ospp simulates is said as such, however many digits
    for far in ("99999999999d", "9" * 40 + "s", "-9999999999w"):
        with pytest.raises(UsageError, match="longer than any time ospp simulates"):
            parse_duration(far)
    assert parse_duration("0000000000000000000007d") == timedelta(days=7)


def test_set_advance_freeze_run_reset(ospp: Ospp) -> None:
    assert ospp("clock", "show", "--json").data()["source"] == "real time"
    ran = ospp("clock", "set", "2027-03-01T09:00Z", "--json").data()
    assert ran["source"] == "lab clock" and ran["now_at"].startswith("2027-03-01T09:0")
    assert ospp("clock", "freeze").code == 0
    frozen = ospp("clock", "show", "--json").data()
    assert frozen["now_at"] == "2027-03-01T09:00:00Z" and frozen["lab_clock"]["frozen"] is True
    assert ospp("clock", "advance", "7d", "--json").data()["moved_by_seconds"] == 7 * 86400
    assert ospp("clock", "advance", "-2h", "--json").data()["moved_by_seconds"] == -7200
    shown = ospp("clock", "show", "--json").data()
    assert shown["now_at"] == "2027-03-08T07:00:00Z" and "moved_by_seconds" not in shown
    # every command sees it: a product installed now starts its grace at the lab time
    ospp("install-product", "ProPlus2021", "pc1")
    st = ospp("dstatus", "pc1", "--json").data()["products"][0]
    assert st["remaining_grace_days"] == 30 or st["remaining_grace_days"] == 29
    later = ospp("dstatus", "pc1", "--json", env={"OSPP_NOW": "+26d"}).data()["products"][0]
    assert later["status"] == "OOB_GRACE" and later["remaining_grace_days"] in (3, 4)
    # OSPP_NOW wins over the lab clock, and show says so
    fixed = ospp("clock", "show", "--json", env={"OSPP_NOW": "2030-01-01"}).data()
    assert fixed["source"] == "OSPP_NOW" and fixed["now_at"] == "2030-01-01T00:00:00Z"
    offset = ospp("clock", "show", "--json", env={"OSPP_NOW": "+1d"}).data()
    assert offset["now_at"] == "2027-03-09T07:00:00Z" and offset["source"] == "lab clock"
    assert ospp("clock", "run").code == 0
    assert ospp("clock", "show", "--json").data()["lab_clock"]["frozen"] is False
    assert ospp("clock", "reset").code == 0
    assert not clock_path(ospp).exists()
    assert ospp("clock", "show", "--json").data()["lab_clock"] is None


@pytest.mark.parametrize(
    "args",
    [
        ("advance", "-5x"),
        ("advance", "7"),
        ("set", "1969-12-31T23:59Z"),
        ("set", "10000-01-01"),
        ("set", "yesterday"),
        ("advance", "3000000w"),
    ],
)
def test_bad_input_exits_2_and_leaves_the_file(ospp: Ospp, args: tuple[str, ...]) -> None:
    assert ospp("clock", "set", "2027-01-01").code == 0
    before = clock_path(ospp).read_bytes()
    ran = ospp("clock", *args)
    assert ran.code == 2, ran.out
    assert "ERROR DETAIL:" in ran.out and "HINT:" in ran.out
    assert clock_path(ospp).read_bytes() == before


def test_bad_ospp_now_offset_is_a_usage_error(ospp: Ospp) -> None:
    ran = ospp("clock", "show", env={"OSPP_NOW": "+7x"})
    assert ran.code == 2 and "OSPP_NOW offset" in ran.out


def test_damaged_clock_file_is_reported_and_kept(ospp: Ospp) -> None:
    clock_path(ospp).parent.mkdir(parents=True, exist_ok=True)
    clock_path(ospp).write_text("{not json")
    ran = ospp("/dstatus")
    assert ran.code == 3 and "lab clock file" in ran.out
    assert ospp("clock", "advance", "1d").code == 3
    assert clock_path(ospp).read_text() == "{not json"


def test_a_damaged_clock_file_creates_no_store(ospp: Ospp) -> None:
    """Refused before anything is made: no machine, no KMS host, no authority keys."""
    clock_path(ospp).parent.mkdir(parents=True, exist_ok=True)
    clock_path(ospp).write_text("{not json")
    for args in (
        ("/dstatus",),
        ("install-product", "ProPlus2021", "pc1"),
        ("kms", "status"),
        ("center", "keys"),
    ):
        ran = ospp(*args)
        assert ran.code == 3 and "lab clock file" in ran.out, args
    made = [
        str(p.relative_to(ospp.home))
        for p in ospp.home.rglob("*")
        if p.is_file() and p not in (clock_path(ospp), ospp.home / "resolv.conf")
    ]
    assert made == []


def test_a_clock_file_time_without_a_zone_is_utc_in_every_time_zone(ospp: Ospp) -> None:
    """A clock file edited by hand to a time without a zone means UTC, as 'clock set' takes
    it: processes in different time zones (a host, its clients) still see one time."""
    path = clock_path(ospp)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        '{"version": 1, "at": "2027-01-04T09:00:00", '
        '"set_at_real_time": "2026-11-29T13:00:00", "frozen": true}'
    )
    for zone in ("UTC", "Europe/Stockholm", "America/New_York"):
        shown = ospp.proc("clock", "show", "--json", env={"TZ": zone}).data()
        assert shown["now_at"] == "2027-01-04T09:00:00Z", (zone, shown)


def test_a_lab_clock_object_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "clock.json"
    clock = clock_from_env({"OSPP_CLOCK_FILE": str(path)})
    assert isinstance(clock, LabClock)
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=5)
    lab_set(path, datetime(2030, 6, 1, tzinfo=UTC))
    assert abs(clock.now() - datetime(2030, 6, 1, tzinfo=UTC)) < timedelta(seconds=5)
    lab_set(path, datetime(2031, 6, 1, tzinfo=UTC))
    assert abs(clock.now() - datetime(2031, 6, 1, tzinfo=UTC)) < timedelta(seconds=5)
    os.unlink(path)
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=5)


def _five_clients(ospp: Ospp, host: Host) -> None:
    """c1..c5 asked the host once each (the first four below the threshold)."""
    for n in range(1, 6):
        client(ospp, f"c{n}", host)
        ospp("/act", f"c{n}")


def test_running_host_follows_the_lab_clock(ospp: Ospp) -> None:
    make_host(ospp)
    host = Host(ospp)
    try:
        _five_clients(ospp, host)
        for n in range(1, 5):
            assert ospp("act", f"c{n}").code == 0
        # a week later, on the shared clock; the host keeps running
        assert ospp("clock", "advance", "7d").code == 0
        ran = ospp.proc("service", "--all", "--json")
        actions = ran.data()["actions"]
        assert [a["action"] for a in actions] == ["renew"] * 5, ran.out
        assert all(a["ok"] for a in actions), ran.out
        for n in range(1, 6):
            st = ospp("dstatus", f"c{n}", "--json").data()["products"][0]
            assert st["status"] == "LICENSED" and st["remaining_grace_days"] in (179, 180)
        # a client a further 7 days ahead of the host's (lab) time is refused for clock skew
        skewed = ospp("act", "c1", "--json", env={"OSPP_NOW": "+7d"}).json()
        assert skewed["ok"] is False and skewed["error"]["code"] == "0xC004F06C"
    finally:
        host.stop()


def test_concurrent_advances_each_count(ospp: Ospp) -> None:
    """Eight ``clock advance 1h`` at once, each acknowledged: the clock moves by 8 hours."""
    import subprocess
    import sys

    assert ospp("clock", "set", "2027-01-01T00:00Z").code == 0
    assert ospp("clock", "freeze").code == 0
    env = {**os.environ, **ospp.env}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "ospp", "clock", "advance", "1h"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0 and not err, (out, err)
    assert ospp("clock", "show", "--json").data()["now_at"] == "2027-01-01T08:00:00Z"


def test_a_link_planted_as_the_clock_lock_is_never_followed(ospp: Ospp, tmp_path: Path) -> None:
    assert ospp("clock", "set", "2027-01-01T00:00Z").code == 0
    target = tmp_path / "elsewhere" / "created-by-ospp"
    target.parent.mkdir()
    lock = clock_path(ospp).with_name("clock.json.lock")
    lock.unlink()
    lock.symlink_to(target)
    ran = ospp("clock", "advance", "1h")
    assert ran.code == 3 and "clock.json.lock" in ran.out, ran.out
    assert not target.exists() and lock.is_symlink()
    assert ospp("clock", "show", "--json").data()["now_at"].startswith("2027-01-01T00:0")


def test_reset_of_a_clock_file_that_cannot_be_looked_at_is_a_store_error(ospp: Ospp) -> None:
    # a name longer than the system allows: stat() fails with ENAMETOOLONG, not ENOENT
    clock_path(ospp).parent.mkdir(parents=True, exist_ok=True)
    ospp.env["OSPP_CLOCK_FILE"] = str(clock_path(ospp).with_name("x" * 300))
    ran = ospp("clock", "reset")
    assert ran.code == 3, ran.out
    assert "lab clock file" in ran.out and "internal error" not in ran.out


@pytest.mark.skipif(os.name != "posix", reason="holds the lock with flock")
def test_a_clock_change_waits_for_a_held_lock_only_so_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that hangs holding the lock makes the next one fail with a message (exit 3)
    after LOCK_WAIT, not hang with it; once the lock is free, the change goes through."""
    import subprocess
    import sys

    from ospp.core import files
    from ospp.core.clock import lab_advance
    from ospp.core.errors import StoreError

    clock = tmp_path / "clock.json"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDONLY | os.O_CREAT, 0o644)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(30)\n",
            str(tmp_path / "clock.json.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(files, "LOCK_WAIT", 0.3)
        with pytest.raises(StoreError, match=r"cannot be locked: still held after 0\.3 s"):
            lab_advance(clock, timedelta(hours=1))
        assert not clock.exists()
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert lab_advance(clock, timedelta(hours=1)) and clock.exists()


def _fifo(path: Path) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    os.mkfifo(path)


LAB = '{{"version": 1, "at": "{at}", "set_at_real_time": "{real}", "frozen": false}}'


@pytest.mark.parametrize(
    "make",
    [
        lambda p: p.write_bytes(b"\xff\xfe"),
        lambda p: p.write_text(LAB.format(at="9999-12-31T23:59:59+00:00", real="2026-01-01")),
        lambda p: p.write_text(LAB.format(at="2026-01-01", real="9999-12-31T00:00:00+00:00")),
        lambda p: p.write_text(" " * 100_000),
        _fifo,
        lambda p: p.symlink_to(p.parent / "elsewhere.json"),
    ],
    ids=[
        "not UTF-8",
        "at the end of time",
        "set in the far future",
        "huge",
        "FIFO",
        "dangling link",
    ],
)
def test_a_clock_file_that_is_not_one_is_reported_never_a_crash_or_a_hang(
    ospp: Ospp, make: Any
) -> None:
    ospp("install-product", "ProPlus2021")
    make(clock_path(ospp))
    for args in (("/dstatus",), ("clock", "show"), ("clock", "advance", "1d")):
        ran = ospp.proc(*args, timeout=30)
        assert ran.code == 3 and "0x8007000D" in ran.out, (args, ran.out, ran.err)
        assert "lab clock" in ran.out and "internal error" not in ran.err
    assert ospp("clock", "reset").code == 0
    assert ospp("/dstatus").code == 0


def test_a_clock_set_before_the_install_shows_the_grace_period_whole(ospp: Ospp) -> None:
    """With OSPP_NOW before the product was installed, the 30-day grace shows 30 days left,
    not the years until its end."""
    ospp("install-product", "ProPlus2021")
    product = ospp("dstatus", "--json", env={"OSPP_NOW": "-3650d"}).data()["products"][0]
    assert product["status"] == "OOB_GRACE"
    assert product["remaining_grace_minutes"] == 30 * 24 * 60
    assert product["remaining_grace_days"] == 30


def test_a_bad_ospp_now_leaves_the_lab_clock_as_it_was(ospp: Ospp) -> None:
    """The report after a change reads OSPP_NOW: a bad one is refused before the change, or
    a retried command would move the clock twice."""
    assert ospp("clock", "set", "2027-01-11T15:00Z").code == 0
    assert ospp("clock", "freeze").code == 0
    before = clock_path(ospp).read_bytes()
    for args in (
        ["set", "2027-06-01"],
        ["advance", "30d"],
        ["freeze"],
        ["run"],
        ["reset"],
    ):
        for extra in ([], ["--json"]):
            ran = ospp("clock", *args, *extra, env={"OSPP_NOW": "garbage"})
            assert ran.code == 2 and "OSPP_NOW" in ran.out, (args, ran.out)
            assert clock_path(ospp).read_bytes() == before, args
    for args in (["set", "1972-01-01T00:00Z"], ["advance", "2d"], ["freeze"], ["run"], ["reset"]):
        far = "-2000d" if args[0] == "set" else "+2912000d"  # a time out of range, after it
        ran = ospp("clock", *args, env={"OSPP_NOW": far})
        assert ran.code == 2 and "outside the times ospp simulates" in ran.out, (args, ran.out)
        assert clock_path(ospp).read_bytes() == before, args
    damaged = clock_path(ospp)
    damaged.write_text("{not json")
    hint = ospp("clock", "show").out
    assert "'ospp clock reset' removes it" in hint and "replaces it" not in hint
    assert ospp("clock", "reset").code == 0 and not damaged.exists()


def test_a_lab_clock_moved_back_counts_only_the_clients_seen_by_then(ospp: Ospp) -> None:
    """A trainer rehearsing day 0 again: clients the host saw 'later' do not count, so the
    threshold is met afresh; the host keeps running and follows the clock."""
    assert ospp("clock", "set", "2027-03-01T09:00Z").code == 0
    assert ospp("clock", "freeze").code == 0
    make_host(ospp)
    host = Host(ospp)
    try:
        _five_clients(ospp, host)
        app = "0ff1ce15-a989-479d-af46-f275c6370663"
        assert ospp("kms", "status", "--json").data()["current_count"][app] == 5
        assert ospp("clock", "advance", "-1d").code == 0
        assert ospp("kms", "status", "--json").data()["current_count"] == {}
        for n in range(1, 3):
            client(ospp, f"d{n}", host)
            ran = ospp("/act", f"d{n}")
            assert "0xC004F038" in ran.out, ran.out  # counts 1, then 2: below 5 again
        assert ospp("kms", "status", "--json").data()["current_count"][app] == 2
    finally:
        host.stop()


def test_a_damaged_clock_under_a_running_host_is_told_to_its_operator(ospp: Ospp) -> None:
    """Clients are refused with the code and no path of the host's; the operator's log says
    so once, and again when the clock can be read; the request log keeps every request."""
    from ospp.core.endpoint import Endpoint
    from ospp.protocol.wire import Connection
    from tests.kmsutil import raw_request

    make_host(ospp)
    host = Host(ospp)
    try:
        clock_path(ospp).parent.mkdir(parents=True, exist_ok=True)
        clock_path(ospp).write_text("{not json")
        with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
            for _ in range(3):
                answer = conn.call(raw_request())
                assert answer["ok"] is False and answer["code"] == 0x8007000D, answer
                assert answer["message"] == "the KMS host cannot read its clock"
            ping = conn.call({"op": "kms-ping", "nonce": "n1"})
            assert ping["ok"] is False and ping["message"] == "the KMS host cannot read its clock"
            clock_path(ospp).unlink()
            assert conn.call(raw_request())["ok"] is True
    finally:
        host.stop()
    said = "\n".join(host.stderr_lines)
    assert said.count("the host's clock cannot be read") == 1, said
    assert str(clock_path(ospp)) in said and "can be read again" in said
    logged = [line for line in host.log.read_text().splitlines() if '"ok": false' in line]
    assert len(logged) == 3 and all('"code": 2147942413' in line for line in logged), logged


def test_a_full_count_does_not_outlive_a_clock_moved_back(ospp: Ospp) -> None:
    """Ten clients fill the host's count (which it then keeps without asking the store); seen
    again two hours later, then the clock goes back one hour: none of the ten counts, and a
    new client is below the threshold, as the store says."""
    assert ospp("clock", "set", "2027-03-01T09:00Z").code == 0
    assert ospp("clock", "freeze").code == 0
    make_host(ospp)
    host = Host(ospp)
    try:
        sethst = ["--sethst", host.address]
        assert ospp("fleet", "create", "a", "10", "--product", "ProPlus2021", *sethst).code == 0
        ospp("fleet", "act", "--machines", "a*")
        assert ospp("fleet", "act", "--machines", "a*").code == 0
        assert ospp("clock", "advance", "2h").code == 0
        assert ospp("fleet", "act", "--machines", "a*").code == 0  # all ten seen at 11:00
        assert ospp("clock", "advance", "-1h").code == 0
        assert ospp("kms", "status", "--json").data()["current_count"] == {}
        assert ospp("fleet", "create", "b", "1", "--product", "ProPlus2021", *sethst).code == 0
        ran = ospp("act", "b1", "--json").json()
        assert ran["ok"] is False and ran["error"]["code"] == "0xC004F038", ran
    finally:
        host.stop()


@pytest.mark.parametrize("suffix", ["/", "/.", "//"])
def test_a_clock_file_named_with_a_trailing_separator_is_that_file(
    ospp: Ospp, tmp_path: Path, suffix: str
) -> None:
    """OSPP_CLOCK_FILE is a file name however it is written: 'clock.json/' and 'clock.json/.'
    name clock.json (as pathlib reads them), never a directory to make and lock inside."""
    target = tmp_path / "lab" / "clock.json"
    env = {"OSPP_CLOCK_FILE": str(target) + suffix}
    assert ospp("clock", "set", "2027-01-01T00:00Z", env=env).code == 0
    moved = ospp("clock", "advance", "1d", "--json", env=env)
    assert moved.code == 0 and moved.data()["clock_file"] == str(target), moved.out
    assert target.is_file() and sorted(p.name for p in target.parent.iterdir()) == [
        "clock.json",
        "clock.json.lock",
    ]
    assert ospp("clock", "reset", env=env).code == 0 and not target.exists()


def test_paths_from_the_environment_are_named_as_given_but_tidied(
    ospp: Ospp, tmp_path: Path
) -> None:
    home = tmp_path / "h"
    shown = ospp("clock", "show", "--json", env={"OSPP_HOME": f"{tmp_path}//h/./"}).data()
    assert shown["clock_file"] == str(home / "clock.json")


@pytest.mark.parametrize("kind", ["device", "directory"])
def test_no_clock_command_touches_what_is_not_a_clock_file(
    ospp: Ospp, tmp_path: Path, kind: str
) -> None:
    """OSPP_CLOCK_FILE naming a device or a directory: every clock command refuses it, 'clock
    reset' removes nothing, and no lock file is made beside it (as root,
    OSPP_CLOCK_FILE=/dev/null would otherwise lose /dev/null)."""
    import stat as st

    (tmp_path / "lab").mkdir()
    target = tmp_path / "lab" / "clock"
    if kind == "directory":
        target.mkdir()
    else:
        try:
            os.mknod(target, 0o666 | st.S_IFCHR, os.makedev(1, 3))  # as /dev/null
        except PermissionError:
            pytest.skip("making a device needs root")
    mode = os.lstat(target).st_mode
    env = {"OSPP_CLOCK_FILE": str(target)}
    for args in (["reset"], ["set", "2027-01-01T00:00Z"], ["advance", "1d"], ["freeze"], ["show"]):
        ran = ospp.proc("clock", *args, env=env, timeout=30)
        assert ran.code == 3 and "not a regular file" in ran.out, (args, ran.out)
    assert os.lstat(target).st_mode == mode
    assert sorted(p.name for p in target.parent.iterdir()) == ["clock"]  # no clock.lock


def test_clock_reset_removes_a_link_in_place_of_the_clock_not_its_target(
    ospp: Ospp, tmp_path: Path
) -> None:
    target = tmp_path / "kept.txt"
    target.write_text("someone's file")
    link = tmp_path / "clock.json"
    link.symlink_to(target)
    env = {"OSPP_CLOCK_FILE": str(link)}
    shown = ospp("clock", "show", env=env)
    assert shown.code == 3 and "symbolic link" in shown.out and "clock reset" in shown.out
    assert ospp("clock", "reset", env=env).code == 0
    assert not os.path.lexists(link) and target.read_text() == "someone's file"
