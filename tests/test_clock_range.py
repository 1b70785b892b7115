"""Simulated time (OSPP_NOW): times ospp cannot work with are usage errors, not bugs."""

from __future__ import annotations

import pytest

from ospp.core.clock import iso, parse_time
from ospp.core.errors import UsageError
from tests.conftest import GVLK_2021, Ospp

UNWORKABLE = [
    "9999-12-31T23:59:59Z",  # a year later overflows
    "9999-12-31T23:59:59-01:00",  # overflows even when converted to UTC
    "9999-01-01",
    "0001-01-01T00:00:00+00:00",
    "0999-06-01T00:00:00Z",  # years before 1000 do not survive the store's ISO form
    "0100-01-01",
    "1969-12-31T23:59:59Z",
    "0001-01-01T00:00:00+05:00",  # underflows when converted to UTC
    "1000-01-01",
]


@pytest.mark.parametrize("text", UNWORKABLE)
def test_times_ospp_cannot_work_with_are_refused_up_front(text: str):
    with pytest.raises(UsageError, match="OSPP_NOW"):
        parse_time(text)


# Offsets from now (or the lab clock) that land outside the range, or past datetime's.
UNWORKABLE_OFFSETS = ["+3000000d", "-740000d", "-720000d", "-20800d", "+9999999w"]


@pytest.mark.parametrize("text", UNWORKABLE[:6] + UNWORKABLE_OFFSETS)
def test_unworkable_ospp_now_exits_2_and_leaves_the_store(ospp: Ospp, text: str):
    ospp.install()
    assert ospp("/inpkey:" + GVLK_2021).code == 0
    before = ospp.store_file().read_bytes()
    for args in (["/dstatus"], ["/rearm"], ["install-product", "VisioPro2024"], ["/act"]):
        ran = ospp(*args, env={"OSPP_NOW": text})
        assert ran.code == 2 and "OSPP_NOW" in ran.out, (args, ran.out, ran.err)
    assert ospp.store_file().read_bytes() == before
    assert ospp.proc("/dstatus", env={"OSPP_NOW": text}).code == 2


@pytest.mark.parametrize("text", ["1970-01-01T00:00:00Z", "9998-12-31T23:59:59Z"])
def test_the_edges_of_the_range_work_and_round_trip(ospp: Ospp, text: str):
    value = parse_time(text)
    assert parse_time(iso(value)) == value
    env = {"OSPP_NOW": text}
    for args in (
        ["install-product", "ProPlus2021"],
        ["/inpkey:" + GVLK_2021],
        ["/dstatus"],
        ["/rearm"],
        ["dstatus", "--json"],
    ):
        ran = ospp(*args, env=env)
        assert ran.code == 0, (args, ran.out, ran.err)
    later = ospp("/dstatus")  # the real clock, with the store written at the edge
    assert later.code == 0 and "damaged" not in later.out


def test_an_offset_past_the_end_of_a_lab_clock_is_a_usage_error(ospp: Ospp):
    assert ospp("clock", "set", "9998-12-20").code == 0
    for offset in ("+30d", "+400d"):
        ran = ospp("/dstatus", env={"OSPP_NOW": offset})
        assert ran.code == 2 and "OSPP_NOW" in ran.out and "9998-12-31" in ran.out, ran.out
    assert ospp("/dstatus", env={"OSPP_NOW": "+5d"}).code == 0
    ran = ospp("clock", "advance", "-3000000d")
    assert ran.code == 2 and "by -3000000 days" in ran.out, ran.out


@pytest.mark.parametrize("at", ["9998-12-31T23:59:59Z", "1970-01-01T00:00:00Z"])
def test_a_running_lab_clock_stops_at_the_ends_of_the_range(ospp: Ospp, at: str):
    """Set to an edge of the range and running, the clock stays there as real time moves on
    (or back): every command works, instead of the whole home failing once the clock has run
    past the edge. The clock file is dated an hour earlier (later) to stand for that hour."""
    import json
    from datetime import timedelta
    from pathlib import Path

    assert ospp("clock", "set", at).code == 0
    clock_file = Path(ospp("--json", "clock", "show").data()["clock_file"])
    state = json.loads(clock_file.read_text())
    hour = timedelta(hours=1) if at.startswith("9998") else -timedelta(hours=1)
    state["set_at_real_time"] = (parse_time(state["set_at_real_time"]) - hour).isoformat()
    clock_file.write_text(json.dumps(state))
    shown = ospp("--json", "clock", "show")
    assert shown.code == 0, shown.out
    assert shown.data()["now_at"] == at
    for args in (["install-product", "ProPlus2021"], ["/inpkey:" + GVLK_2021], ["/dstatus"]):
        ran = ospp(*args)
        assert ran.code == 0, (args, ran.out, ran.err)


def _five_clients_act(ospp: Ospp) -> None:
    """Machines c1 to c5 ask a real KMS host, in turn: c1 to c4 below the threshold, c5 (the
    fifth) activated."""
    from tests.kmsutil import Host, client, make_host

    make_host(ospp)
    host = Host(ospp)
    try:
        for n in range(1, 6):
            client(ospp, f"c{n}", host)
            ospp("/act", f"c{n}")
    finally:
        host.stop()


@pytest.mark.parametrize("name", ["activation_interval", "renewal_interval"])
def test_an_interval_that_would_end_past_the_years_ospp_holds_is_never_due(ospp: Ospp, name: str):
    """An interval edited into the store (nine digits of minutes, about 1,900 years) near
    the end of the range: the service finds nothing due, rather than an internal error."""
    import sqlite3

    assert ospp("clock", "set", "9990-01-01T00:00Z").code == 0
    _five_clients_act(ospp)
    # c1 failed below the threshold (the retry counts from then); c5 activated (its renewal)
    machine = "c1" if name == "activation_interval" else "c5"
    status = ospp("dstatus", machine, "--json").data()["products"][0]["status"]
    assert status == ("OOB_GRACE" if machine == "c1" else "LICENSED"), status
    with sqlite3.connect(ospp.store_file(machine)) as conn:
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, '999999999')", (name,))
    conn.close()
    ran = ospp.proc("service", machine)
    assert ran.code == 0 and "internal error" not in ran.err, ran
    assert "nothing due" in ran.out, ran.out


def test_a_kms_activation_at_the_end_of_the_range_reads_back(ospp: Ospp) -> None:
    """Activated on the last day ospp works with, a KMS client stores an expiry 180 days
    later, past that day: its store is read back as written, not refused as damaged."""
    assert ospp("clock", "set", "9998-12-31T23:00Z").code == 0
    _five_clients_act(ospp)
    for args in (("dstatus", "c5", "--json"), ("fleet", "status", "--json")):
        ran = ospp.proc(*args)
        assert ran.code == 0 and "internal error" not in ran.err, (args, ran)
    status = ospp("dstatus", "c5", "--json").data()["products"][0]
    assert status["status"] == "LICENSED", status
    assert ospp("fleet", "timeline", "--json").code == 0
