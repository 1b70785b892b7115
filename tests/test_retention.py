"""A KMS host keeps at most ``kms set --max-clients`` clients, the least recently seen dropped
first, by its background thread; counts, the ``clients`` statistic and concurrent readers
stay right. Real ``ospp kms serve`` on 127.0.0.1, requests through its port."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from typing import Any

from ospp.core.endpoint import Endpoint
from ospp.protocol.kms import CAP
from ospp.protocol.wire import Connection
from tests.conftest import Ospp
from tests.kmsutil import APP, PROPLUS_2021_SKU, Host, make_host, path_of, raw_request

LIMIT = 10 * CAP  # the least allowed
APP_2010 = "59a52881-a989-479d-af46-f275c6370663"
PROPLUS_2010_SKU = "6f327760-8c5c-417c-9b61-836a98287e0c"


def status(ospp: Ospp) -> dict[str, Any]:
    ran = ospp("kms", "status", "--json")
    assert ran.code == 0, ran.out
    data: dict[str, Any] = ran.data()
    return data


def stored(ospp: Ospp) -> tuple[int, int, set[str]]:
    """Rows in ``clients``, the ``clients`` statistic, and the stored workstation names."""
    db = sqlite3.connect(f"file:{path_of(ospp)}?mode=ro", uri=True, isolation_level=None)
    try:
        db.execute("BEGIN")  # one snapshot: the host may be pruning meanwhile
        (rows,) = db.execute("SELECT count(*) FROM clients").fetchone()
        (stat,) = db.execute("SELECT value FROM stats WHERE name='clients'").fetchone()
        names = {r[0] for r in db.execute("SELECT workstation FROM clients")}
        db.execute("COMMIT")
    finally:
        db.close()
    return rows, stat, names


def settled(ospp: Ospp, rows: int, seconds: float = 30) -> None:
    """Wait (bounded) until the host's background thread has pruned the store to ``rows``."""
    deadline = time.monotonic() + seconds
    while stored(ospp)[0] != rows:
        assert time.monotonic() < deadline, f"the store did not settle at {rows}: {stored(ospp)}"
        time.sleep(0.2)


def ask(conn: Connection, name: str, **over: Any) -> int:
    answer = conn.call(raw_request(workstation=name, **over))
    assert answer["ok"], answer
    count: int = answer["count"]
    return count


def pruned_in_log(host: Host) -> list[int]:
    """How many clients each pruning round the host logged removed."""
    removed = []
    for line in host.stderr_lines:
        if line.startswith("{"):
            record = json.loads(line)
            if "removed" in record:
                removed.append(record["removed"])
    return removed


def test_the_store_settles_at_the_limit_keeping_the_most_recent_clients(ospp: Ospp):
    make_host(ospp)
    ran = ospp("kms", "set", "--max-clients", str(LIMIT), "--json")
    assert ran.code == 0 and ran.data()["max_clients"] == LIMIT
    assert f"Stored client machines at most: {LIMIT}" in ospp("kms", "status").out
    host = Host(ospp)
    counts = []
    try:
        with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
            # Three waves, each seen in a later second than the one before.
            for wave, size in (("a", 60), ("b", 60), ("c", 30)):
                counts += [ask(conn, f"{wave}-{i:02d}") for i in range(size)]
                time.sleep(1.1)
        settled(ospp, LIMIT)
    finally:
        host.stop()
    # Every answer counted the clients of the window, up to CAP: none was lost to pruning.
    assert counts == [min(i + 1, CAP) for i in range(150)]
    rows, stat, names = stored(ospp)
    assert rows == stat == LIMIT == status(ospp)["stored_clients"]
    # The 50 least recently seen are gone: all from the first wave, none from the others.
    assert {f"b-{i:02d}" for i in range(60)} | {f"c-{i:02d}" for i in range(30)} <= names
    assert len({n for n in names if n.startswith("a-")}) == 10
    assert sum(pruned_in_log(host)) == 50
    listed = ospp("kms", "clients", "--limit", "0", "--json").data()["clients"]
    assert len(listed) == LIMIT and {r["workstation"][0] for r in listed[:30]} == {"c"}

    # A restart keeps the limit, and the host keeps pruning to it.
    host.start()
    try:
        assert status(ospp)["max_clients"] == LIMIT
        with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
            assert [ask(conn, f"d-{i}") for i in range(5)] == [CAP] * 5
        settled(ospp, LIMIT)
    finally:
        host.stop()
    rows, stat, names = stored(ospp)
    assert rows == stat == LIMIT and {f"d-{i}" for i in range(5)} <= names
    assert status(ospp)["current_count"] == {APP: CAP}


def test_a_small_group_keeps_its_count_however_many_clients_another_group_sends(ospp: Ospp):
    """The least recently seen clients overall may be the few of another application group:
    the CAP most recent of each group are never pruned, so its count stays."""
    for product in ("ProPlus2021", "ProPlus2010"):
        make_host(ospp, product, activate=False)
    assert ospp("kms", "activate").code == 0
    assert ospp("kms", "set", "--max-clients", str(LIMIT)).code == 0
    host = Host(ospp)
    old = {"app_id": APP_2010, "sku_id": PROPLUS_2010_SKU}
    try:
        with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
            assert [ask(conn, f"old-{i}", **old) for i in range(3)] == [1, 2, 3]
            time.sleep(1.1)
            for i in range(LIMIT + 30):
                ask(conn, f"new-{i:03d}")
            settled(ospp, LIMIT)
            assert ask(conn, "old-3", **old) == 4  # the three before it still count
        settled(ospp, LIMIT)
    finally:
        host.stop()
    rows, stat, names = stored(ospp)
    assert rows == stat == LIMIT
    assert {f"old-{i}" for i in range(4)} <= names
    assert status(ospp)["current_count"] == {APP: CAP, APP_2010: 4}


def test_a_limit_below_the_least_is_refused_and_changes_nothing(ospp: Ospp):
    make_host(ospp)
    before = status(ospp)
    assert before["max_clients"] == 1_000_000
    for args in (
        ("--max-clients", str(LIMIT - 1)),
        ("--max-clients", "0"),
        ("--max-clients", str(LIMIT - 1), "--activation-interval", "60"),
    ):
        ran = ospp("kms", "set", *args, "--json")
        assert ran.code == 2, ran.out
        assert ran.json()["error"]["code"] == "0x80070057"
        assert str(LIMIT) in ran.json()["error"]["message"]
        assert status(ospp) == before
    text = ospp("kms", "set", "--max-clients", "5")
    assert text.code == 2 and "ERROR CODE: 0x80070057" in text.out + text.err


def prefill_old(ospp: Ospp, rows: int) -> None:
    """Store ``rows`` clients seen 90 days ago, as a host with a long history holds."""
    old = int(time.time()) - 90 * 86400
    with sqlite3.connect(path_of(ospp)) as db:
        db.executemany(
            "INSERT INTO clients VALUES (?, ?, ?, 'history', ?, ?, 1, 'licensed')",
            ((APP, str(uuid.UUID(int=i)), PROPLUS_2021_SKU, old, old) for i in range(rows)),
        )
        db.execute("INSERT OR REPLACE INTO stats SELECT 'clients', count(*) FROM clients")


def test_readers_and_clients_are_served_while_a_backlog_is_pruned(ospp: Ospp):
    make_host(ospp)
    assert ospp("kms", "set", "--max-clients", str(LIMIT)).code == 0
    prefill_old(ospp, 30_000)
    host = Host(ospp)
    reads = 0
    try:
        with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
            deadline = time.monotonic() + 60
            i = 0
            while stored(ospp)[0] > LIMIT + 20:
                assert time.monotonic() < deadline, stored(ospp)
                for ran in (
                    ospp.proc("kms", "status", "--json"),
                    ospp.proc("kms", "clients", "--limit", "0", "--json"),
                ):
                    assert ran.code == 0 and "locked" not in ran.out + ran.err, ran.out + ran.err
                    reads += 1
                assert ask(conn, f"live-{i}") == min(i + 1, CAP)
                i += 1
            rows, stat, _ = stored(ospp)
            assert rows == stat  # exact at every commit, not only at the end
            ask(conn, "last")
        settled(ospp, LIMIT)
    finally:
        host.stop()
    assert reads >= 2  # the readers really ran during pruning
    rows, stat, names = stored(ospp)
    assert rows == stat == LIMIT and "last" in names and f"live-{i - 1}" in names
    # One log line per round that removed something, together all that was removed.
    rounds = pruned_in_log(host)
    assert 1 < len(rounds) < 100 and sum(rounds) == 30_000 + i + 1 - LIMIT


def test_a_new_limit_applies_while_the_host_serves(ospp: Ospp):
    make_host(ospp)
    host = Host(ospp)
    try:
        with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
            for i in range(LIMIT + 20):
                ask(conn, f"pc-{i:03d}")
            time.sleep(1.5)  # a round or more: the default limit keeps every one
            assert stored(ospp)[:2] == (LIMIT + 20, LIMIT + 20)
            assert ospp("kms", "set", "--max-clients", str(LIMIT)).code == 0
            settled(ospp, LIMIT)  # no restart
            assert ask(conn, "after") == CAP
        settled(ospp, LIMIT)
    finally:
        host.stop()
    assert sum(pruned_in_log(host)) == 21


def test_a_lab_clock_moved_back_keeps_every_client_that_counts_at_its_time(ospp: Ospp):
    """Clients seen 'later' (before the lab clock went back past them) are the most recently
    seen, but they do not count at the host's time: pruning keeps them for when the clock
    gets there again, keeps the CAP that count now, and removes only older clients."""
    assert ospp("clock", "set", "2027-01-20T09:00Z").code == 0
    assert ospp("clock", "freeze").code == 0
    make_host(ospp)
    host = Host(ospp)

    def at(when: str) -> dict[str, str]:
        assert ospp("clock", "set", when).code == 0
        return {"client_time": when.replace("Z", ":00Z")}

    try:
        with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
            early = at("2027-01-20T09:00Z")
            assert [ask(conn, f"old-{i}", **early) for i in range(5)] == [1, 2, 3, 4, 5]
            later = at("2027-03-21T09:00Z")
            for i in range(LIMIT):
                ask(conn, f"later-{i:03d}", **later)
            now = at("2027-03-01T09:00Z")  # the old ones are now out of the window
            assert [ask(conn, f"now-{i}", **now) for i in range(CAP)] == list(range(1, CAP + 1))
            # LIMIT + CAP + 5 stored: only the five old ones may go.
            assert ospp("kms", "set", "--max-clients", str(LIMIT)).code == 0
            deadline = time.monotonic() + 30
            while stored(ospp)[0] > LIMIT + CAP:
                assert time.monotonic() < deadline, stored(ospp)[:2]
                time.sleep(0.2)
            time.sleep(1.5)  # a round more: nothing else goes
            assert ask(conn, "now-more", **now) == CAP
        rows, stat, names = stored(ospp)
        assert rows == stat == LIMIT + CAP + 1
        assert {f"now-{i}" for i in range(CAP)} <= names and not any(
            n.startswith("old-") for n in names
        )
        assert ospp("kms", "status", "--json").data()["current_count"] == {APP: CAP}
        later = at("2027-03-21T09:00Z")  # and the later ones count again there
        assert ospp("kms", "status", "--json").data()["current_count"] == {APP: CAP}
        assert sum(n.startswith("later-") for n in names) == LIMIT
    finally:
        host.stop()
    assert sum(pruned_in_log(host)) == 5


def test_the_wal_is_started_over_under_steady_load(ospp: Ospp):
    """One client after another with no pause: the WAL used to grow by every page written
    (about 17 KB per request) for as long as the load lasted, since a checkpoint running
    beside the writes never caught up. Requests worth three times WAL_LIMIT of pages leave a
    WAL no larger than the limit once the host had a moment to catch up."""
    from pathlib import Path

    from ospp.kmshost.retention import WAL_LIMIT

    make_host(ospp)
    host = Host(ospp)
    wal = Path(f"{path_of(ospp)}-wal")
    requests = 3 * WAL_LIMIT // 16_384  # a lone request writes at least four 4 KiB pages
    try:
        with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
            for i in range(requests):
                ask(conn, f"w{i}")
            time.sleep(1.0)  # the background thread looks every 0.1 s
            ask(conn, "after")  # the write that starts the WAL over, and truncates it
            size = wal.stat().st_size
    finally:
        host.stop()
    assert size <= WAL_LIMIT, f"WAL of {size / 1e6:.1f} MB after {requests} requests"
    assert stored(ospp)[0] == requests + 1


def test_a_damaged_clients_statistic_stops_pruning_and_stays_damaged(ospp: Ospp):
    """The number of stored clients edited by hand (a float, text): the pruner would take it
    for a store far over its limit and delete every client but the 10 most recent of each
    group. It prunes nothing and says why; and a request does not write over the damage
    (SQLite adds 1 to text as to 0), which every reader keeps reporting."""
    make_host(ospp)
    assert ospp("kms", "set", "--max-clients", str(LIMIT)).code == 0
    host = Host(ospp)
    try:
        with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
            for i in range(40):
                ask(conn, f"p-{i:02d}")
            with sqlite3.connect(path_of(ospp)) as db:
                db.execute("UPDATE stats SET value=1e30 WHERE name='clients'")
                db.execute("UPDATE stats SET value='x' WHERE name='total'")
            deadline = time.monotonic() + 4  # the pruner looks every second
            while time.monotonic() < deadline and stored(ospp)[0] == 40:
                time.sleep(0.2)
            ask(conn, "after")
    finally:
        host.stop()
    assert stored(ospp)[0] == 41
    said = "\n".join(host.stderr_lines)
    assert "pruning stored clients failed" in said and "'clients'" in said, said
    with sqlite3.connect(f"file:{path_of(ospp)}?mode=ro", uri=True) as db:
        assert db.execute("SELECT value FROM stats WHERE name='total'").fetchone() == ("x",)
    ran = ospp("kms", "status")
    assert ran.code == 3 and "damaged statistic" in ran.out, ran.out
