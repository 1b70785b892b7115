"""``ospp kms clients``: streamed text, JSON and CSV; --limit 0 for all."""

from __future__ import annotations

import csv
import io
import json

import pytest

from ospp.core.endpoint import Endpoint
from ospp.protocol.wire import Connection
from tests.conftest import Ospp
from tests.kmsutil import Host, make_host, raw_request


def served(ospp: Ospp, n: int, **fields: str) -> None:
    make_host(ospp)
    host = Host(ospp)
    try:
        with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
            for i in range(n):
                assert conn.call(raw_request(workstation=f"pc-{i:03d}", **fields))["ok"]
    finally:
        host.stop()


def test_limit_zero_lists_every_client_and_json_keeps_its_layout(ospp: Ospp):
    served(ospp, 130)
    default = ospp("kms", "clients", "--json")
    assert len(default.data()["clients"]) == 100
    every = ospp("kms", "clients", "--json", "--limit", "0")
    payload = every.data()
    assert every.code == 0 and len(payload["clients"]) == 130
    # Streamed, but byte for byte what json.dumps(payload, indent=2) prints.
    assert every.out == json.dumps(every.json(), indent=2) + "\n"
    assert set(payload["clients"][0]) == {
        "application_id", "cmid", "sku_id", "workstation", "first_seen_at", "last_seen_at",
        "requests",
    }  # fmt: skip
    text = ospp("kms", "clients", "--limit", "0")
    assert len(text.out.splitlines()) == 130 and "pc-000" in text.out


def test_text_columns_stay_aligned_after_wide_and_combining_characters(ospp: Ospp):
    """A workstation named in CJK (two columns a character) or with combining accents (none):
    the request count still starts in the same terminal column on every line."""
    import unicodedata

    make_host(ospp)
    host = Host(ospp)
    names = ["pc-plain", "東京-会議室", "cafe\u0301-3", "ＦＵＬＬ"]
    try:
        with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
            for name in names:
                assert conn.call(raw_request(workstation=name))["ok"]
    finally:
        host.stop()

    def columns(text: str) -> int:
        return sum(
            0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
            for c in text
        )

    lines = ospp("kms", "clients").out.splitlines()
    assert len(lines) == len(names)
    starts = {columns(line[: line.index("    1 request(s)")]) for line in lines}
    assert len(starts) == 1, lines


def test_csv_has_a_header_and_one_row_per_client(ospp: Ospp):
    served(ospp, 3)
    ran = ospp("kms", "clients", "--csv", "--limit", "0")
    rows = list(csv.DictReader(io.StringIO(ran.out)))
    assert ran.code == 0 and len(rows) == 3
    assert sorted(r["workstation"] for r in rows) == ["pc-000", "pc-001", "pc-002"]
    assert all(r["requests"] == "1" for r in rows)


def test_empty_store_and_negative_limit(ospp: Ospp):
    assert ospp("kms", "clients").out == "<No clients>\n"
    assert ospp("kms", "clients", "--json").json() == {
        "schema": 1,
        "ok": True,
        "command": "kms clients",
        "data": {"clients": []},
        "error": None,
    }
    assert ospp("kms", "clients", "--limit", "-1").code == 2


def test_text_output_escapes_control_characters_a_client_sent(ospp: Ospp):
    import sqlite3

    from tests.kmsutil import path_of

    make_host(ospp)
    host = Host(ospp)
    try:
        with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
            # the host refuses such a name now; a store written before it did may hold one
            assert not conn.call(raw_request(workstation="evil\x1b[2J"))["ok"]
            assert conn.call(raw_request(workstation="evil"))["ok"]
    finally:
        host.stop()
    with sqlite3.connect(path_of(ospp)) as db:
        db.execute("UPDATE clients SET workstation=?", ("evil\x1b[2J",))
    out = ospp("kms", "clients").out
    assert "\x1b" not in out and "evil\\x1b[2J" in out


def test_stored_clients_statistic_matches_the_rows_and_survives_an_upgrade(ospp: Ospp):
    import sqlite3

    from tests.kmsutil import path_of

    served(ospp, 5)
    db = path_of(ospp)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM clients").fetchone()[0] == 5
    assert ospp("kms", "status", "--json").data()["stored_clients"] == 5
    # A store from before the statistic existed (schema 2) gets it counted on upgrade.
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM stats WHERE name='clients'")
    conn.execute("PRAGMA user_version=2")
    conn.commit()
    conn.close()
    assert ospp("kms", "status", "--json").data()["stored_clients"] == 5


def test_one_machine_stored_under_several_spellings_of_its_cmid_becomes_one_entry(ospp: Ospp):
    """A store from before CMIDs were counted in canonical form (schema 4) may hold one
    machine under several spellings (upper case, braces). Opened now, they merge into one
    entry: earliest first sighting, latest last sighting and name, requests summed; the
    count and the statistic follow, and other machines are untouched."""
    import sqlite3

    from tests.kmsutil import path_of

    served(ospp, 2)
    db = path_of(ospp)
    with sqlite3.connect(db) as conn:
        app, sku, seen = conn.execute("SELECT app, sku_id, max(last_seen) FROM clients").fetchone()
        guid = "8b1c7a4e-2f3d-4e5a-9b6c-0d1e2f3a4b5c"
        rows = [  # (cmid, workstation, first_seen, last_seen, requests)
            (guid, "pc-lower", seen - 50, seen - 40, 2),
            (guid.upper(), "pc-upper", seen - 90, seen - 60, 3),
            ("{" + guid + "}", "pc-braced", seen - 30, seen - 10, 4),
            ("{" + guid.upper() + "}", "pc-both", seen - 70, seen - 20, 1),
            ("{" + guid.replace("8b", "9c", 1).upper() + "}", "pc-other", seen - 5, seen - 5, 7),
        ]
        conn.executemany(
            "INSERT INTO clients VALUES (?, ?, ?, ?, ?, ?, ?, 'LICENSED')",
            [(app, c, sku, w, f, last, n) for c, w, f, last, n in rows],
        )
        conn.execute("INSERT OR REPLACE INTO stats VALUES ('clients', 7)")
        conn.execute("PRAGMA user_version=4")
    conn.close()
    listed = ospp("kms", "clients", "--json", "--limit", "0").data()["clients"]
    by_cmid = {c["cmid"]: c for c in listed}
    other = guid.replace("8b", "9c", 1)
    assert len(listed) == 4 and guid in by_cmid and other in by_cmid, sorted(by_cmid)
    merged = by_cmid[guid]
    assert merged["workstation"] == "pc-braced" and merged["requests"] == 10
    with sqlite3.connect(db) as conn:
        first, last = conn.execute(
            "SELECT first_seen, last_seen FROM clients WHERE cmid=?", (guid,)
        ).fetchone()
    conn.close()
    assert (first, last) == (seen - 90, seen - 10)
    assert by_cmid[other]["requests"] == 7 and by_cmid[other]["workstation"] == "pc-other"
    data = ospp("kms", "status", "--json").data()
    assert data["stored_clients"] == 4
    assert sum(data["current_count"].values()) == 4


@pytest.mark.parametrize(
    ("workstation", "first_seen"),
    [(b"\x1b[31m", 0), ("pc-old", -99999999999999)],
    ids=["a name stored as a blob", "a time out of range"],
)
def test_a_damaged_client_record_is_reported_after_the_rows_before_it(
    ospp: Ospp, workstation: object, first_seen: int
):
    """A record edited by hand: the rows read before it are printed, then the store's error
    (0x8007000D, exit 3), never a traceback; --json stays one valid envelope, ok false,
    with those rows and the error."""
    import sqlite3

    from tests.kmsutil import path_of

    served(ospp, 2)
    with sqlite3.connect(path_of(ospp)) as db:
        oldest = db.execute("SELECT min(last_seen) FROM clients").fetchone()[0]
        db.execute(
            "INSERT INTO clients VALUES (?, ?, ?, ?, ?, ?, 1, '')",
            (
                "0ff1ce15-a989-479d-af46-f275c6370663",
                "00000000-0000-4000-8000-0000000000bb",
                "fbdb3e18-a8ef-4fb3-9183-dffd60bd0984",
                workstation,
                first_seen or oldest - 1,
                oldest - 1,
            ),
        )
    for args in (("kms", "clients"), ("kms", "clients", "--csv")):
        ran = ospp.proc(*args)
        assert ran.code == 3 and "0x8007000D" in ran.out and "damaged client" in ran.out, ran
        assert "Traceback" not in ran.err and "\x1b" not in ran.out
        assert "pc-000" in ran.out and "pc-001" in ran.out
    ran = ospp.proc("kms", "clients", "--json")
    assert ran.code == 3, ran.out + ran.err
    report = json.loads(ran.out)
    assert report["ok"] is False and report["error"]["code"] == "0x8007000D"
    assert sorted(c["workstation"] for c in report["data"]["clients"]) == ["pc-000", "pc-001"]


def test_csv_and_json_together_are_refused_as_for_fleet_status(ospp: Ospp) -> None:
    for args in (["kms", "clients", "--csv", "--json"], ["--json", "kms", "clients", "--csv"]):
        ran = ospp(*args)
        assert ran.code == 2 and ran.json()["error"]["message"] == (
            "--csv and --json exclude each other"
        ), ran.out
