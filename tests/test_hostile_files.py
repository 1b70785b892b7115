"""Hostile and unlucky state files: a store ospp refuses is never written.

Stale or foreign ``-wal`` files, damaged pages, symbolic links, read-only directories and a full
disk each get a clear error with the right exit status, and leave the files as they were.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ospp.core.db import Database
from ospp.core.errors import StoreError
from ospp.core.files import write_atomic
from tests.conftest import GVLK_2016, GVLK_2021, Ospp


def _store_with_licences(ospp: Ospp) -> Path:
    ospp.install("ProPlus2021")
    ospp.install("ProPlus2016")
    assert ospp("/inpkey:" + GVLK_2021).code == 0
    assert ospp("/inpkey:" + GVLK_2016).code == 0
    path = ospp.store_file()
    assert not path.with_name("licenses.db-wal").exists()  # closed cleanly: a whole backup
    return path


def _live_wal(make: object, tmp: Path) -> bytes:
    """The -wal of a database that ``make(conn)`` changed and that was never checkpointed."""
    db = tmp / "other.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    make(conn)  # type: ignore[operator]
    wal = db.with_name("other.db-wal").read_bytes()
    conn.close()
    return wal


def _foreign(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE photos (id INTEGER, data BLOB)")
    conn.execute("INSERT INTO photos VALUES (1, zeroblob(20000))")


def _newer_schema(backup: Path) -> object:
    def make(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("ATTACH ? AS src", (str(backup),))
        conn.execute("DETACH src")
        conn.execute("PRAGMA user_version=99")

    return make


def _damaging(conn: sqlite3.Connection) -> None:
    # Page 2 in the WAL is a page of an unrelated table: the store's tree no longer adds up.
    conn.execute("CREATE TABLE junk (x)")
    conn.execute("INSERT INTO junk VALUES (randomblob(3000))")


@pytest.mark.parametrize("kind", ["foreign", "newer-schema", "damaging"])
def test_restored_backup_with_a_stale_wal_is_refused_and_never_written(
    ospp: Ospp, tmp_path: Path, kind: str
):
    path = _store_with_licences(ospp)
    backup = path.read_bytes()
    if kind == "newer-schema":
        # The -wal a newer ospp left behind in the same store before it was restored.
        copy = tmp_path / "other.db"
        copy.write_bytes(backup)
        wal = _live_wal(_newer_schema(copy), tmp_path)
    else:
        wal = _live_wal(_foreign if kind == "foreign" else _damaging, tmp_path)
    (tmp_path / "other.db").unlink()
    walfile = path.with_name("licenses.db-wal")
    walfile.write_bytes(wal)

    for args in (["/dstatus"], ["/inpkey:" + GVLK_2021], ["dstatus", "--json"], ["/dcmid"]):
        ran = ospp(*args)
        assert ran.code == 3, (args, ran.out)
        assert "0x8007000D" in ran.out and str(path) in ran.out
        assert path.read_bytes() == backup, f"{args} wrote into a store it refused"
        assert walfile.read_bytes() == wal
    assert ospp.proc("/dstatus").code == 3
    assert path.read_bytes() == backup

    # Moving the stale files aside gives back the restored store, licences and all.
    for extra in path.parent.glob("licenses.db-*"):
        extra.unlink()
    data = ospp("dstatus", "--json").data()
    assert len(data["products"]) == 2


def _corrupt_page(path: Path, table: str) -> bytes:
    with sqlite3.connect(path) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name=?", (table,)).fetchone()
    conn.close()
    data = bytearray(path.read_bytes())
    start = (root[0] - 1) * page_size
    data[start : start + 64] = b"\xff" * 64  # an impossible b-tree page header
    path.write_bytes(bytes(data))
    return bytes(data)


@pytest.mark.parametrize(
    ("table", "commands"),
    [
        ("licenses", [["/dstatus"], ["dstatus", "--json"], ["/inpkey:" + GVLK_2021]]),
        ("meta", [["/dcmid"], ["/dstatus"], ["/sethst:kms.example.com"]]),
        ("history", [["/dhistorykms"], ["dhistorykms", "--json"]]),
    ],
)
def test_a_damaged_page_is_a_store_error_and_the_file_is_kept(
    ospp: Ospp, table: str, commands: list[list[str]]
):
    path = _store_with_licences(ospp)
    damaged = _corrupt_page(path, table)
    for args in commands:
        ran = ospp(*args)
        assert ran.code == 3, (args, ran.out, ran.err)
        assert "0x8007000D" in ran.out and "malformed" in ran.out
        assert path.read_bytes() == damaged
    ran = ospp.proc(*commands[0])
    assert ran.code == 3 and "internal error" not in ran.err
    assert path.read_bytes() == damaged


def _edit(path: Path, *statements: str) -> bytes:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA writable_schema=ON")
    for statement in statements:
        conn.execute(statement)
    conn.close()
    for extra in path.parent.glob("licenses.db-*"):
        extra.unlink()
    return path.read_bytes()


@pytest.mark.parametrize(
    ("damage", "command"),
    [
        # a column renamed in the stored schema: SQL that is right for ospp fails
        (
            "UPDATE sqlite_master SET sql=replace(sql, 'activation', 'activatiom') "
            "WHERE name='licenses'",
            "/dstatus",
        ),
        ("UPDATE sqlite_master SET sql=replace(sql, 'detail', 'detial')", "/dhistorykms"),
        # a value that is not UTF-8 text
        ("UPDATE meta SET value=CAST(x'ff41fe' AS TEXT) WHERE name='cmid'", "/dcmid"),
        ("UPDATE licenses SET installed_at=CAST(x'c3' AS TEXT)", "/dstatus"),
        # a setting is refused, not written, on a store with a damaged licence record
        ("UPDATE licenses SET grace_start='garbage'", "/setprt:1700"),
        ("UPDATE licenses SET grace_start='garbage'", "/sethst:kms.example.com"),
        ("UPDATE licenses SET grace_start='garbage'", "/remhst"),
        ("UPDATE licenses SET grace_start='garbage'", "/skms-domain:example.com"),
        ("UPDATE licenses SET grace_start='garbage'", "/actype:2"),
        # values edited by hand: a number that is not one, a time out of range, a blob
        ("INSERT OR REPLACE INTO meta VALUES ('kms_port', 'abc')", "/dstatus"),
        ("INSERT OR REPLACE INTO meta VALUES ('generation', 'abc')", "/sethst:kms.example.com"),
        ("INSERT OR REPLACE INTO meta VALUES ('rearms_used', 'x')", "/rearm"),
        ("UPDATE licenses SET grace_start='9999-12-31T23:59:59Z'", "/dstatus"),
        ("UPDATE licenses SET product_key=x'00ff' WHERE product_key IS NOT NULL", "/dinstid"),
        ("UPDATE history SET code='abc'", "/dhistorykms"),
        ("UPDATE history SET at='garbage'", "/dhistorykms"),
    ],
)
def test_a_damaged_schema_or_value_is_a_store_error(ospp: Ospp, damage: str, command: str):
    path = _store_with_licences(ospp)
    ospp("/act")  # a line in the KMS history
    damaged = _edit(path, damage)
    ran = ospp(command)
    assert ran.code == 3 and "0x8007000D" in ran.out, (ran.out, ran.err)
    assert path.read_bytes() == damaged


@pytest.mark.parametrize(
    ("name", "value"),
    [("generation", "x"), ("generation", "9" * 23), ("kms_port", "x"), ("actype", "12")],
)
@pytest.mark.parametrize(
    "command",
    [
        ("/unpkey:6F7TH",),
        ("/puserops",),
        ("/osppsvcrestart",),
        ("/cachst:FALSE",),
        ("/kms-policy:any",),
        ("install-product", "ProPlus2019"),
        ("slmgr", "/upk"),
        ("slmgr", "/ckms-domain"),
    ],
)
def test_a_write_to_a_store_with_a_damaged_setting_is_refused_and_writes_nothing(
    ospp: Ospp, name: str, value: str, command: tuple[str, ...]
):
    """Every write checks the settings as /dstatus reads them, in its own transaction: the
    same error as /dstatus gives, and the store is left exactly as it was."""
    path = _store_with_licences(ospp)
    damaged = _edit(path, f"INSERT OR REPLACE INTO meta VALUES ('{name}', '{value}')")
    status = ospp("/dstatus")
    assert status.code == 3 and f"damaged setting {name}: '{value}'" in status.out, status.out
    ran = ospp(*command)
    assert ran.code == 3 and "0x8007000D" in ran.out, (ran.out, ran.err)
    assert f"damaged setting {name}: '{value}'" in ran.out, ran.out
    assert path.read_bytes() == damaged


def test_a_history_entry_without_its_licence_is_a_damaged_entry(ospp: Ospp):
    """ospp records every event with the SKU it was for; one edited to have none would be a
    null sku_id, which the documented JSON never holds: it is reported as damaged."""
    path = _store_with_licences(ospp)
    assert ospp.proc("/act").code == 4  # a line in the KMS history: no host to ask
    damaged = _edit(path, "UPDATE history SET sku_id=NULL")
    ran = ospp.proc("/dhistorykms")
    assert ran.code == 3 and "damaged history entry" in ran.out, (ran.out, ran.err)
    as_json = ospp.proc("dhistorykms", "--json")  # checked against docs/schema
    assert as_json.code == 3 and as_json.json()["error"]["code"] == "0x8007000D", as_json.out
    assert path.read_bytes() == damaged


@pytest.mark.parametrize(
    ("name", "value"),
    [("actype", "4"), ("actype", "9"), ("kms_port", "0"), ("kms_port", "99999")],
)
def test_a_number_out_of_its_range_is_a_damaged_setting(ospp: Ospp, name: str, value: str):
    """A stored number that /actype or /setprt would refuse is the store's damaged setting
    (exit 3, in text and JSON), never shown, tried or reported as a bug; the store is kept."""
    path = _store_with_licences(ospp)
    damaged = _edit(path, f"INSERT OR REPLACE INTO meta VALUES ('{name}', '{value}')")
    for command in (("/dstatus",), ("slmgr", "/dli"), ("/act",), ("/sethst:kms1",)):
        ran = ospp.proc(*command)
        assert ran.code == 3 and "0x8007000D" in ran.out, (command, ran.out, ran.err)
        assert f"damaged setting {name}: '{value}'" in ran.out, (command, ran.out)
        as_json = ospp.proc(*command, "--json")
        assert as_json.code == 3, (command, as_json.out)
        assert as_json.json()["error"]["code"] == "0x8007000D", as_json.out
    assert path.read_bytes() == damaged


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("kms_host", "h" * 300),  # a label over 63 characters: no resolver can take it
        ("kms_host", "a..example.com"),
        ("kms_host", "1688"),
        ("kms_cached_host", "junk::"),
        ("kms_cached_host", "host:99999"),
        ("kms_cached_host", "h" * 64 + ".example.com:1688"),
        ("kms_domain", "a..example.com"),
        ("kms_domain", "example.com:53"),
    ],
)
@pytest.mark.parametrize("command", [("/dstatus",), ("/act",), ("service",), ("slmgr", "/ato")])
def test_a_host_setting_edited_by_hand_is_a_damaged_setting(
    ospp: Ospp, name: str, value: str, command: tuple[str, ...]
):
    """Stored hosts are checked when read by the rules /sethst, /skms-domain apply: a bad one
    is the store's damaged setting (exit 3), never tried, and the store is left as it was."""
    path = _store_with_licences(ospp)
    damaged = _edit(path, f"INSERT OR REPLACE INTO meta VALUES ('{name}', '{value}')")
    ran = ospp(*command)
    assert ran.code == 3 and "0x8007000D" in ran.out, (ran.out, ran.err)
    assert f"damaged setting {name}: {value!r}"[:60] in ran.out, ran.out
    assert path.read_bytes() == damaged


def test_host_settings_as_ospp_writes_them_are_read(ospp: Ospp):
    path = _store_with_licences(ospp)
    for name, value in (
        ("kms_host", "192.0.2.10"),
        ("kms_host", "2001:db8::10"),
        ("kms_host", "fe80::1%eth0"),
        ("kms_host", "kms1.example.com"),
        ("kms_cached_host", "[2001:db8::10]:1688"),
        ("kms_cached_host", "192.0.2.10:1688"),
        ("kms_cached_host", "kms1.example.com:1688"),
        ("kms_domain", "example.com"),
    ):
        _edit(path, f"INSERT OR REPLACE INTO meta VALUES ('{name}', '{value}')")
        ran = ospp("/dstatus")
        assert ran.code == 0, (name, value, ran.out)


@pytest.mark.parametrize("command", [("fleet", "status"), ("fleet", "export", "OUT")])
def test_fleet_reads_check_settings_as_every_other_read(
    ospp: Ospp, tmp_path: Path, command: tuple[str, ...]
):
    """The fleet's fast read of a quiescent store (no WAL) checks the settings as the
    ordinary read does: a hand-damaged port is reported, not exported as stored."""
    path = _store_with_licences(ospp)
    damaged = _edit(path, "INSERT OR REPLACE INTO meta VALUES ('kms_port', '99x')")
    out = tmp_path / "fleet.csv"
    ran = ospp(*(str(out) if word == "OUT" else word for word in command))
    said = ran.out + ran.err  # fleet status: the machine's row says ERROR, the reason follows
    assert ran.code == 3 and "0x8007000D" in said and "kms_port: '99x'" in said, said
    assert not out.exists() and path.read_bytes() == damaged


def test_random_damage_is_never_an_internal_error_and_refusals_write_nothing(ospp: Ospp):
    import random

    path = _store_with_licences(ospp)
    ospp("/sethst:kms.example.com")
    good = path.read_bytes()
    rng = random.Random(20261128)
    outcomes = set()
    for _ in range(40):
        data = bytearray(good)
        for _ in range(rng.choice([1, 4, 32])):
            data[rng.randrange(len(data))] = rng.randrange(256)
        path.write_bytes(bytes(data))
        for extra in path.parent.glob("licenses.db-*"):
            extra.unlink()
        for args in (["/dstatus"], ["/dhistorykms"]):
            ran = ospp(*args)
            outcomes.add(ran.code)
            assert ran.code in (0, 3), (args, ran.out, ran.err)
            if ran.code == 3:
                assert path.read_bytes() == bytes(data), args
    assert outcomes == {0, 3}


def test_a_dangling_store_symlink_is_refused_and_creates_nothing(ospp: Ospp, tmp_path: Path):
    path = ospp.store_file()
    path.parent.mkdir(parents=True)
    target = tmp_path / "elsewhere" / "planted.db"
    target.parent.mkdir()
    path.symlink_to(target)
    for args in (["/dstatus"], ["/inpkey:" + GVLK_2021]):
        ran = ospp(*args)
        assert ran.code == 3 and "symbolic link" in ran.out, ran.out
    assert not target.exists()
    assert path.is_symlink()


@pytest.mark.parametrize("name", ["licenses.db", "licenses.db-wal", "licenses.db-shm"])
def test_a_symlinked_store_file_is_refused(ospp: Ospp, tmp_path: Path, name: str):
    path = _store_with_licences(ospp)
    before = path.read_bytes()
    real = tmp_path / "real"
    if name == "licenses.db":
        shutil.move(path, real)
    else:
        real.write_bytes(b"")
    (path.parent / name).symlink_to(real)
    ran = ospp("/inpkey:" + GVLK_2021)
    assert ran.code == 3 and "symbolic link" in ran.out and name in ran.out
    assert (real if name == "licenses.db" else path).read_bytes() == before


def test_a_failed_transaction_keeps_its_own_error(tmp_path: Path):
    """SQLite sometimes rolls back by itself; the error that caused it must still show."""
    db = Database(tmp_path / "t.db", "test", ["CREATE TABLE t (x INTEGER)"])
    try:
        with pytest.raises(ValueError, match="the real error"), db.write() as conn:
            conn.execute("INSERT INTO t VALUES (1)")
            conn.execute("ROLLBACK")  # as SQLite does after SQLITE_FULL or an I/O error
            raise ValueError("the real error")
        with pytest.raises(ValueError, match="the real error"), db.read() as conn:
            conn.execute("COMMIT")
            raise ValueError("the real error")
        with db.read() as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    finally:
        db.close()


# -- real file systems: read-only and full (Linux, as root, in a private mount namespace) -----


def _can_mount() -> bool:
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


needs_mount = pytest.mark.skipif(
    not _can_mount(), reason="needs root and mount namespaces (unshare -m) on Linux"
)


def _in_namespace(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a shell script in a private mount namespace: its mounts vanish when it ends."""
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-euc", script],
        env={**os.environ, **env, "OSPP": f"{sys.executable} -m ospp"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@needs_mount
def test_a_read_only_store_can_be_read_and_says_why_it_cannot_be_written(ospp: Ospp):
    path = _store_with_licences(ospp)
    before = path.read_bytes()
    status = ospp("dstatus", "--json").data()
    home = ospp.home / "client"
    script = f"""
        mount --bind {home} {home}
        mount -o remount,bind,ro {home}
        $OSPP dstatus --json > {ospp.home}/status.json || echo "status exit $?" >&2
        $OSPP /inpkey:{GVLK_2021} > {ospp.home}/inpkey.txt || echo "inpkey exit $?" >&2
    """
    done = _in_namespace(script, ospp.env)
    assert "status exit" not in done.stderr, done.stderr
    read = (ospp.home / "status.json").read_text()
    assert [p["sku_id"] for p in json.loads(read)["data"]["products"]] == [
        p["sku_id"] for p in status["products"]
    ]
    assert "inpkey exit 3" in done.stderr
    said = (ospp.home / "inpkey.txt").read_text()
    assert "0x80070005" in said and "can be read but not changed" in said, said
    assert "cannot be written" in said
    assert path.read_bytes() == before


@needs_mount
def test_a_full_disk_is_reported_as_such_and_changes_nothing(ospp: Ospp):
    home = ospp.home / "client"
    home.mkdir()
    # Fill the disk a little more each round, so that some write of install-product meets a
    # full disk wherever it happens (the WAL, its index, the commit).
    script = f"""
        mount -t tmpfs -o size=1m tmpfs {home}
        $OSPP install-product ProPlus2016 > /dev/null
        dd if=/dev/zero of={home}/filler bs=4k 2>/dev/null || true
        for free in 1 2 3 4 5 6 8 10 12 16 24 32; do
            rm -f {home}/filler
            dd if=/dev/zero of={home}/filler bs=4k 2>/dev/null || true
            truncate -s -$((free * 4096)) {home}/filler
            if $OSPP install-product ProPlus2021 > {ospp.home}/out-$free.txt 2>&1; then
                echo "free $free: ok"
                break
            else
                echo "free $free: exit $?"
                rm -f {home}/filler
                $OSPP dstatus --json > {ospp.home}/after-$free.json
                dd if=/dev/zero of={home}/filler bs=4k 2>/dev/null || true
            fi
        done
    """
    done = _in_namespace(script, ospp.env)
    lines = done.stdout.splitlines()
    failed = [line for line in lines if "exit" in line]
    assert failed, (done.stdout, done.stderr)
    for line in failed:
        free = line.split()[1].rstrip(":")
        assert line.endswith("exit 3"), line
        said = (ospp.home / f"out-{free}.txt").read_text()
        assert "0x80070070" in said and "There is not enough space on the disk." in said, said
        assert "Access is denied" not in said and "no transaction" not in said, said
        after = json.loads((ospp.home / f"after-{free}.json").read_text())
        assert [p["key_last5"] for p in after["data"]["products"]] == [GVLK_2016[-5:]]


# -- small state files: write_atomic ---------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")
def test_write_atomic_never_follows_a_planted_temporary_link(tmp_path: Path):
    target = tmp_path / "seal.key"
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "seal.key.tmp").symlink_to(victim)
    dangling = tmp_path / "nowhere"
    (tmp_path / "other.json.tmp").symlink_to(dangling)
    write_atomic(target, "secret", private=True)
    write_atomic(tmp_path / "other.json", "{}")
    assert victim.read_text() == "precious"
    assert not dangling.exists()
    assert target.read_text() == "secret" and not target.is_symlink()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "other.json").stat().st_mode) == 0o644


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")
def test_write_atomic_refuses_a_symlinked_state_file(tmp_path: Path):
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text("theirs")
    link = tmp_path / "authority.pub.json"
    link.symlink_to(elsewhere)
    with pytest.raises(StoreError, match="symbolic link") as caught:
        write_atomic(link, "ours")
    assert caught.value.exit_status == 3
    assert link.is_symlink() and elsewhere.read_text() == "theirs"


def test_concurrent_write_atomic_never_mixes_or_fails(tmp_path: Path):
    target = tmp_path / "state.json"
    texts = [chr(ord("a") + i) * 200_000 for i in range(6)]
    errors: list[BaseException] = []
    seen: set[str] = set()

    def writer(text: str) -> None:
        try:
            for _ in range(25):
                write_atomic(target, text)
                seen.add(target.read_text()[:1])
                assert len(set(target.read_text())) == 1
        except BaseException as exc:  # collected: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[:3]
    assert target.read_text() in texts
    assert not [p.name for p in tmp_path.iterdir() if p.name != "state.json"]


@needs_mount
def test_a_first_use_of_the_authority_that_fails_can_be_run_again(ospp: Ospp):
    center = ospp.home / "center"
    center.mkdir()
    # Each round starts a fresh authority on a disk with a little less room, so the failure
    # lands on each step of first use in turn: key files, store, public key file.
    script = f"""
        mount -t tmpfs -o size=1m tmpfs {center}
        for free in 0 6 12 13 14 15 16 17 18 19 20 21 22 24 32; do
            rm -rf {center}/* {center}/.[!.]* 2>/dev/null || true
            dd if=/dev/zero of={center}/filler bs=4k 2>/dev/null || true
            truncate -s -$((free * 4096)) {center}/filler
            if $OSPP center init > {ospp.home}/first-$free.txt 2>&1; then
                echo "first $free: ok"
            else
                echo "first $free: exit $?"
            fi
            rm -f {center}/filler
            if $OSPP center init > {ospp.home}/again-$free.txt 2>&1; then
                echo "again $free: ok"
            else
                echo "again $free: exit $?"
            fi
        done
    """
    done = _in_namespace(script, ospp.env)
    lines = done.stdout.splitlines()
    assert len(lines) == 30, (done.stdout, done.stderr)
    failed = [
        line.split()[1].rstrip(":") for line in lines if line.startswith("first") and "exit" in line
    ]
    assert failed, done.stdout
    again = [line for line in lines if line.startswith("again")]
    assert all(line.endswith(": ok") for line in again), done.stdout
    for free in failed:
        said = (ospp.home / f"first-{free}.txt").read_text()
        assert f"first {free}: exit 3" in lines, said
        assert "0x80070070" in said, said


def test_authority_key_files_without_their_store_are_still_refused(ospp: Ospp):
    assert ospp("center", "init").code == 0
    center = ospp.home / "center"
    keys = {p.name: p.read_bytes() for p in center.glob("authority-*.pem")}
    assert len(keys) == 2 and not list(center.glob("*.pending"))
    for p in center.glob("center.db*"):
        p.unlink()  # the store is lost; the keys clients trust are not
    ran = ospp("center", "init")
    assert ran.code == 3 and "holds authority key files but no authority store" in ran.out
    assert {p.name: p.read_bytes() for p in center.glob("authority-*.pem")} == keys


# -- the KMS host's and the authority's stores, damaged ------------------------------------


def _kms_and_center_stores(ospp: Ospp) -> dict[str, Path]:
    from tests.kmsutil import make_host

    make_host(ospp)
    for path in (ospp.home / "kms" / "kms.db", ospp.home / "center" / "center.db"):
        assert path.stat().st_size > 0 and not path.with_name(path.name + "-wal").exists()
    return {"kms": ospp.home / "kms" / "kms.db", "center": ospp.home / "center" / "center.db"}


def _damaged(path: Path, how: str) -> bytes:
    whole = path.read_bytes()
    if how == "truncated":
        data = whole[: len(whole) // 2]
    elif how == "header only":
        data = whole[:100]
    elif how == "zero-filled":
        data = bytes(len(whole))
    elif how == "first byte":  # SQLite alone takes a one-byte file for an empty database
        data = whole[:1]
    else:  # "newer schema"
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA user_version=99")
            conn.commit()
        for extra in path.parent.glob(path.name + "-*"):
            extra.unlink()
        return path.read_bytes()
    path.write_bytes(data)
    return data


ROLE_COMMANDS = {
    "kms": [
        ["kms", "status"],
        ["kms", "status", "--json"],
        ["kms", "clients"],
        ["kms", "dinstid"],
        ["kms", "set", "--activation-interval", "60"],
        ["kms", "serve", "--listen", "127.0.0.1:0"],
    ],
    "center": [
        ["center", "keys"],
        ["center", "keys", "--json"],
        ["center", "issue-key", "--product", "ProPlus2021", "--channel", "mak"],
        ["kms", "activate"],
    ],
}


@pytest.mark.parametrize(
    "how", ["truncated", "header only", "first byte", "zero-filled", "newer schema"]
)
@pytest.mark.parametrize("role", ["kms", "center"])
def test_a_damaged_host_or_authority_store_is_reported_and_kept(ospp: Ospp, role: str, how: str):
    path = _kms_and_center_stores(ospp)[role]
    damaged = _damaged(path, how)
    for args in ROLE_COMMANDS[role]:
        ran = ospp.proc(*args, timeout=30)
        assert ran.code == 3, (args, ran.code, ran.out, ran.err)
        assert "0x8007000D" in ran.out + ran.err and str(path) in ran.out + ran.err, args
        assert "Traceback" not in ran.err and "internal error" not in ran.err, args
        assert path.read_bytes() == damaged, f"{args} changed a store it refused"
        wal = path.with_name(path.name + "-wal")  # SQLite's reader may leave an empty one
        assert not wal.exists() or wal.stat().st_size == 0, args


@pytest.mark.parametrize("role", ["kms", "center"])
def test_a_symlink_in_place_of_a_host_or_authority_store_is_refused(
    ospp: Ospp, tmp_path: Path, role: str
):
    path = _kms_and_center_stores(ospp)[role]
    real = tmp_path / "real.db"
    shutil.move(path, real)
    kept = real.read_bytes()
    path.symlink_to(real)
    for args in ROLE_COMMANDS[role][:3]:
        ran = ospp.proc(*args, timeout=30)
        assert ran.code == 3 and "symbolic link" in ran.out + ran.err, (args, ran.out, ran.err)
        assert "Traceback" not in ran.err
    assert path.is_symlink() and real.read_bytes() == kept


def test_a_host_store_emptied_beside_its_signing_key_is_refused_not_reset(ospp: Ospp):
    """An empty file is how every store starts, but not a store whose host has signed: a
    kms.db truncated to nothing beside host-ed25519.pem lost its packs and counts."""
    path = _kms_and_center_stores(ospp)["kms"]
    assert (path.parent / "host-ed25519.pem").exists()
    path.write_bytes(b"")
    for args in ROLE_COMMANDS["kms"]:
        ran = ospp.proc(*args, timeout=30)
        assert ran.code == 3 and "0x8007000D" in ran.out + ran.err, (args, ran.out, ran.err)
        assert "is empty" in ran.out + ran.err and "host-ed25519.pem" in ran.out + ran.err
        assert path.read_bytes() == b"", args
    path.unlink()  # moved aside, as the hint says: a new, empty store
    assert ospp("kms", "status").code == 0


@pytest.mark.parametrize("name", ["host_id", "hardware", "activation_interval", "renewal_interval"])
def test_a_host_store_that_lost_a_setting_it_starts_with_is_reported_and_kept(
    ospp: Ospp, name: str
):
    """Every host's store holds its identity, hardware and intervals from the start: one
    that lost one is damaged. It is neither an internal error nor given a new identity (its
    certificate names the old one)."""
    path = _kms_and_center_stores(ospp)["kms"]
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("DELETE FROM meta WHERE name=?", (name,))
        conn.commit()
        before = sorted(conn.execute("SELECT name, value FROM meta"))
    for args in (
        ["kms", "status"],
        ["kms", "activate"],
        ["kms", "set", "--renewal-interval", "60"],
    ):
        ran = ospp.proc(*args, timeout=30)
        assert ran.code == 3 and "0x8007000D" in ran.out, (args, ran)
        assert name in ran.out and "internal error" not in ran.err, (args, ran)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert sorted(conn.execute("SELECT name, value FROM meta")) == before


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        ("UPDATE stats SET value='garbage' WHERE name='clients'", "damaged statistic 'clients'"),
        ("INSERT INTO stats VALUES (NULL, 1)", "damaged statistic None"),
        ("UPDATE packs SET epid=x'ff00'", "ePID of *****-"),
        ("UPDATE packs SET activated_at=x'00'", "activation time of *****-"),
    ],
)
def test_a_host_store_row_edited_into_another_type_is_reported_and_kept(
    ospp: Ospp, edit: str, said: str
):
    """SQLite keeps text in an INTEGER column and bytes or numbers in a TEXT one: a row
    edited so is damage, which 'kms status' and slmgr /dlv report, never an internal error."""
    path = _kms_and_center_stores(ospp)["kms"]
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(edit)
        conn.commit()
    kept = path.read_bytes()
    for args in (
        ["kms", "status"],
        ["kms", "status", "--json"],
        ["kms", "set", "--max-clients", "200"],
    ):
        ran = ospp.proc(*args, timeout=30)
        assert ran.code == 3 and "0x8007000D" in ran.out and said in ran.out, (args, ran)
        assert "internal error" not in ran.err, (args, ran)
    ran = ospp.proc("slmgr", "/dlv", timeout=30)
    assert ran.code == 3 and "0x8007000D" in ran.out + ran.err, ran
    assert path.read_bytes() == kept


def test_an_authority_store_that_lost_its_name_is_reported_and_kept(ospp: Ospp):
    path = _kms_and_center_stores(ospp)["center"]
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("DELETE FROM meta WHERE name='name'")
        conn.commit()
    kept = path.read_bytes()
    for args in (["center", "keys"], ["center", "issue-key", "--product", "ProPlus2021"]):
        ran = ospp.proc(*args, timeout=30)
        assert ran.code == 3 and "0x8007000D" in ran.out and "have no name" in ran.out, ran
        assert "internal error" not in ran.err, (args, ran)
    assert path.read_bytes() == kept


def test_a_licence_store_emptied_beside_its_hardware_profile_is_refused_not_reset(ospp: Ospp):
    ospp.install("ProPlus2021")
    path = ospp.store_file()
    mak = ospp("center", "issue-key", "--product", "ProPlus2021", "--channel", "mak", "--json")
    assert ospp("/inpkey:" + mak.data()["key"]).code == 0
    assert ospp("/act").code == 0  # a MAK activation binds the hardware profile, made now
    assert (path.parent / "hardware.json").exists()
    path.write_bytes(b"")
    for args in (["/dstatus"], ["/inpkey:" + GVLK_2021], ["/dcmid"]):
        ran = ospp.proc(*args)
        assert ran.code == 3 and "0x8007000D" in ran.out and "is empty" in ran.out, (args, ran)
        assert path.read_bytes() == b"", args


def test_another_machines_store_emptied_is_refused_not_made_anew(ospp: Ospp):
    """A machine's store that must exist already (any machine but this one) and is found
    empty was truncated, even with no hardware profile beside it: no command, not even one
    that only reads, fills it as a new store with a new CMID."""
    assert ospp("fleet", "create", "ws", "2", "--product", "ProPlus2021").code == 0
    path = ospp.store_file("ws1")
    assert not (path.parent / "hardware.json").exists()
    path.write_bytes(b"")
    for args in (["/dstatus", "ws1"], ["/dcmid", "ws1"], ["/sethst:kms1", "ws1"]):
        ran = ospp.proc(*args)
        assert ran.code == 3 and "0x8007000D" in ran.out and "is empty" in ran.out, (args, ran)
        assert "install-product PRODUCT ws1" in ran.out, ran.out  # the hint that works
        assert path.read_bytes() == b"", args
    listed = ospp.proc("fleet", "status")
    assert listed.code == 3 and "is empty" in listed.err, listed
    assert "ws2" in listed.out and path.read_bytes() == b""
    # nor by the commands that may make a store: install-product there, any on this machine
    ran = ospp.proc("install-product", "VisioPro2021", "ws1")
    assert ran.code == 3 and "is empty" in ran.out and path.read_bytes() == b"", ran
    assert ospp("install-product", "ProPlus2021").code == 0
    here = ospp.store_file()
    cmid = ospp("/dcmid", "--json").data()
    here.write_bytes(b"")
    for extra in here.parent.glob("licenses.db-*"):
        extra.unlink()
    ran = ospp.proc("/dcmid")
    assert ran.code == 3 and "is empty" in ran.out and here.read_bytes() == b"", ran
    here.unlink()  # moved aside: this machine starts again, with a new CMID
    assert ospp("/dcmid", "--json").data() != cmid
    path.unlink()  # moved aside, as the hint says, and made again
    assert ospp("install-product", "ProPlus2021", "ws1").code == 0
    assert ospp("/dstatus", "ws1").code == 0


# -- keys made on first use, found damaged -------------------------------------------------


def _plant(path: Path, how: str, tmp_path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "dangling link":
        path.symlink_to(tmp_path / "nowhere")
    elif how == "encrypted PEM":  # a key an administrator protected with a passphrase
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        path.write_bytes(
            ed25519.Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"passphrase"),
            )
        )
    else:
        path.write_text({"not hex": "zz\n", "empty": "", "not PEM": "-----BEGIN nothing\n"}[how])


@pytest.mark.parametrize("how", ["not hex", "empty", "dangling link"])
def test_a_damaged_seal_key_is_a_store_error_when_an_activation_is_sealed(
    ospp: Ospp, tmp_path: Path, how: str
):
    seal = ospp.home / "client" / "seal.key"
    _plant(seal, how, tmp_path)
    before = os.readlink(seal) if seal.is_symlink() else seal.read_bytes()
    ospp.install("ProPlus2021")
    mak = ospp("center", "issue-key", "--product", "ProPlus2021", "--channel", "mak", "--json")
    assert ospp("/inpkey:" + mak.data()["key"]).code == 0
    ran = ospp.proc("/act")
    assert ran.code == 3 and "seal.key" in ran.out, (ran.out, ran.err)
    assert "internal error" not in ran.err
    assert (os.readlink(seal) if seal.is_symlink() else seal.read_bytes()) == before


@pytest.mark.parametrize("how", ["not PEM", "empty", "dangling link", "encrypted PEM"])
def test_a_damaged_host_signing_key_is_a_store_error(ospp: Ospp, tmp_path: Path, how: str):
    pem = ospp.home / "kms" / "host-ed25519.pem"
    _plant(pem, how, tmp_path)
    before = os.readlink(pem) if pem.is_symlink() else pem.read_bytes()
    key = ospp("center", "issue-key", "--product", "ProPlus2021", "--channel", "kms-host", "--json")
    ran = ospp.proc("kms", "install-key", key.data()["key"])
    assert ran.code == 3 and "host-ed25519.pem" in ran.out + ran.err, (ran.out, ran.err)
    assert "internal error" not in ran.err
    assert (os.readlink(pem) if pem.is_symlink() else pem.read_bytes()) == before


@pytest.mark.parametrize("content", [b"\xff\xfe not UTF-8", b"", b"{}"])
def test_a_damaged_authority_public_key_file_is_written_again(ospp: Ospp, content: bytes):
    """authority.pub.json is derived from the key files: the authority writes it again when
    it differs, also when it is not even text."""
    assert ospp("center", "init").code == 0
    pub = ospp.home / "center" / "authority.pub.json"
    good = pub.read_bytes()
    pub.write_bytes(content)
    ran = ospp.proc("center", "keys")
    assert ran.code == 0 and "internal error" not in ran.err, (ran.out, ran.err)
    assert pub.read_bytes() == good


def test_an_authority_public_key_file_with_windows_line_ends_is_left_alone(ospp: Ospp):
    """On Windows the file is written with CRLF line ends: the same key, not a file to write
    again at every command (which fails where the authority's directory is read-only)."""
    assert ospp("center", "init").code == 0
    pub = ospp.home / "center" / "authority.pub.json"
    as_windows_writes_it = pub.read_bytes().replace(b"\n", b"\r\n")
    pub.write_bytes(as_windows_writes_it)
    before = pub.stat().st_ino
    ran = ospp.proc("center", "keys")
    assert ran.code == 0, (ran.out, ran.err)
    assert pub.read_bytes() == as_windows_writes_it and pub.stat().st_ino == before


# -- wrong permissions, seen as a user sees them -------------------------------------------


def _no_root_powers() -> list[str] | None:
    """The prefix that runs a command as root without its power to ignore file modes, []
    when not root, None when that cannot be done here."""
    if sys.platform == "win32":
        return None
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps=-all"]
    probe = subprocess.run([*prefix, "true"], capture_output=True, check=False)
    return prefix if probe.returncode == 0 else None


needs_modes = pytest.mark.skipif(
    _no_root_powers() is None, reason="needs file modes to apply (setpriv when root)"
)


def _as_user(ospp: Ospp, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(_no_root_powers() or []), sys.executable, "-m", "ospp", *args],
        env={**os.environ, **ospp.env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@needs_modes
@pytest.mark.parametrize(
    ("where", "commands"),
    [
        ("client/machines/localhost", [["/dstatus"], ["/sethst:kms.example.com"], ["/act"]]),
        ("client", [["/dstatus"], ["clock", "advance", "1h"], ["/dcmid"], ["machines"]]),
        (
            "client/machines",
            [["machines"], ["fleet", "status"], ["service", "--all"], ["fleet", "remove", "w*"]],
        ),
        ("kms", [["kms", "status"], ["kms", "set", "--activation-interval", "60"]]),
        ("center", [["center", "keys"]]),
    ],
)
def test_a_directory_ospp_may_not_enter_is_a_store_error(
    ospp: Ospp, where: str, commands: list[list[str]]
):
    from tests.kmsutil import make_host

    make_host(ospp)
    ospp.install("ProPlus2021")
    assert ospp("clock", "set", "2027-01-01T00:00Z").code == 0
    directory = ospp.home / where
    directory.chmod(0)
    try:
        for args in commands:
            done = _as_user(ospp, *args)
            said = done.stdout + done.stderr
            assert done.returncode == 3 and "0x80070005" in said, (args, said)
            assert "internal error" not in said and "Traceback" not in said, (args, said)
    finally:
        directory.chmod(0o700)


@needs_modes
def test_an_authority_home_the_client_may_not_enter_leaves_its_anchor_unread(ospp: Ospp):
    """The local authority's public key is a trust anchor of the client: when it cannot be
    read, the activation it signed is not trusted, as with any unreadable anchor: no crash."""
    ospp.install("ProPlus2021")
    mak = ospp("center", "issue-key", "--product", "ProPlus2021", "--channel", "mak", "--json")
    assert ospp("/inpkey:" + mak.data()["key"]).code == 0
    assert ospp("/act").code == 0
    (ospp.home / "client" / "seal.key").unlink()  # no seal: the anchors are read
    center = ospp.home / "center"
    center.chmod(0)
    try:
        done = _as_user(ospp, "dstatus", "--json")
        assert done.returncode == 0, (done.stdout, done.stderr)
        assert "internal error" not in done.stderr and "Traceback" not in done.stderr
        status = json.loads(done.stdout)["data"]["products"][0]
        assert status["status"] != "LICENSED" and "not trusted" in status["detail"]
    finally:
        center.chmod(0o700)


@needs_modes
def test_one_machine_ospp_may_not_enter_is_reported_among_the_others(ospp: Ospp):
    ospp("fleet", "create", "w", "3", "--product", "ProPlus2021")
    shut = ospp.home / "client" / "machines" / "w2"
    shut.chmod(0)
    try:
        listed = _as_user(ospp, "machines", "--json")
        assert listed.returncode == 0, (listed.stdout, listed.stderr)
        assert json.loads(listed.stdout)["data"]["machines"] == ["w1", "w2", "w3"]
        for args in (["service", "--all"], ["fleet", "status"], ["/dstatus", "w2"]):
            done = _as_user(ospp, *args)
            said = done.stdout + done.stderr
            # service --all serves w1 and w3 too (no KMS host to find, exit 4); a store that
            # cannot be used comes first, whichever machine failed first: exit 3 everywhere
            assert done.returncode == 3, (args, said)
            assert "0x80070005" in said and "w2" in said, (args, said)
            if args[0] == "service":
                assert "w3: ProPlus2021" in said, said
            assert "internal error" not in said and "Traceback" not in said, (args, said)
    finally:
        shut.chmod(0o700)


@needs_modes
def test_a_seal_key_that_cannot_be_made_is_a_store_error(ospp: Ospp):
    ospp.install("ProPlus2021")
    mak = ospp("center", "issue-key", "--product", "ProPlus2021", "--channel", "mak", "--json")
    assert ospp("/inpkey:" + mak.data()["key"]).code == 0
    home = ospp.home / "client"
    home.chmod(0o500)  # the machine's own directory stays writable
    try:
        done = _as_user(ospp, "/act")
        said = done.stdout + done.stderr
        assert done.returncode == 3 and "seal.key" in said and "0x80070005" in said, said
        assert "internal error" not in said
    finally:
        home.chmod(0o700)
    assert not (home / "seal.key").exists()


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"\x80\x81\x00\x01", "is not UTF-8 text"),
        (b"machine,product,key,kms_host\nws1,ProPlus2021," + b"K" * 200_000 + b",\n", "line 2"),
        (b"machine,product,key,kms_host\n" + b"x" * 3_000_000, "line 2: longer than 65536"),
    ],
    ids=["not UTF-8", "a field over 128 KiB", "no line end for 3 MB"],
)
def test_fleet_import_of_a_file_that_is_not_an_export_is_a_usage_error(
    ospp: Ospp, tmp_path: Path, content: bytes, said: str
) -> None:
    path = tmp_path / "fleet.csv"
    path.write_bytes(content)
    ran = ospp("fleet", "import", str(path))
    assert ran.code == 2 and "0x80070057" in ran.out and said in ran.out, ran.out
    assert ospp("machines", "--json").data()["machines"] == []


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
def test_fleet_import_of_an_endless_line_stops_at_the_line_limit(ospp: Ospp) -> None:
    """A file with no line end at all (/dev/zero) is refused at its first line; it used to be
    read whole, until memory ran out."""
    done = ospp.proc("fleet", "import", "/dev/zero", timeout=60)
    assert done.code == 2 and "line 1: longer than 65536 characters" in done.out, done.out


@pytest.mark.parametrize(
    "content",
    [
        b"domain a..b\nnameserver 127.0.0.1\n",
        b"search ok.example a..b\nnameserver 127.0.0.1\n",
        b"domain " + b"x" * 70 + b".example\nnameserver 127.0.0.1\n",
    ],
    ids=["an empty label", "one bad name in the search list", "a label over 63"],
)
def test_a_resolv_conf_naming_no_dns_name_is_refused_naming_it(
    ospp: Ospp, tmp_path: Path, content: bytes
) -> None:
    """OSPP_RESOLV_CONF naming a file whose domain names are no DNS names: the resolver would
    drop the whole file, nameservers too, so it is a usage error naming the file and the kind
    of entry (never an internal error), for /act and dnsdiag alike. A file that is not text
    is one too (tests/test_environment.py)."""
    conf = tmp_path / "resolv.conf"
    conf.write_bytes(content)
    ospp("install-product", "ProPlus2021")
    for args in (("dnsdiag",), ("/act",)):
        ran = ospp(*args, env={"OSPP_RESOLV_CONF": str(conf)})
        assert ran.code == 2 and "0x80070057" in ran.out, ran.out + ran.err
        assert str(conf) in ran.out and "is not a DNS name" in ran.out, ran.out


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("name", ["licenses.db", "licenses.db-wal"])
def test_a_fifo_in_place_of_a_store_file_is_refused_not_waited_on(ospp: Ospp, name: str):
    ospp("install-product", "ProPlus2021")
    path = ospp.store_file().with_name(name)
    if path.exists():
        path.unlink()
    os.mkfifo(path)
    for args in (("/dstatus",), ("fleet", "status")):
        ran = ospp.proc(*args, timeout=30)
        said = ran.out + ran.err  # fleet status: the table, and each machine's error after it
        assert ran.code == 3 and "0x8007000D" in said and "not a regular file" in said, ran
    assert stat.S_ISFIFO(os.lstat(path).st_mode)  # left as it is


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize(
    "where",
    ["client/machines/localhost/hardware.json", "client/seal.key", "center/authority.pub.json"],
)
def test_a_fifo_in_place_of_a_state_file_is_never_waited_on(ospp: Ospp, where: str):
    """The hardware profile, the seal key and a trust anchor are read by every status read of
    an activated machine: a FIFO in place of one is reported (or, for the seal, the activation
    is verified from its signature instead), never read until it ends."""
    key = ospp("center", "issue-key", "--product", "ProPlus2021", "--json").data()["key"]
    ospp.install()
    assert ospp("/inpkey:" + key, "--act").code == 0
    path = ospp.home / where
    path.unlink()
    os.mkfifo(path)
    for args in (("/dstatus",), ("trust", "list"), ("fleet", "status")):
        ran = ospp.proc(*args, timeout=30)  # it would hang, and time out, if it read the FIFO
        assert ran.code in (0, 1, 3) and "internal error" not in ran.err, (args, ran)
    ran = ospp.proc("dstatus", "--json", timeout=30)
    if where.endswith("hardware.json"):
        error = ran.json()["error"]
        assert ran.code == 3 and "cannot be read: not a regular file" in error["message"], ran
        assert "regular file" in error["hint"], error
    elif where.endswith("authority.pub.json"):
        status = ran.data()["products"][0]
        assert status["status"] != "LICENSED"  # the authority that signed it is not trusted
        listed = ospp.proc("trust", "list", "--json", timeout=30).data()
        assert "not a regular file" in listed["unreadable"][0]
    else:
        assert ran.data()["products"][0]["status"] == "LICENSED"  # its signature vouches
    assert stat.S_ISFIFO(os.lstat(path).st_mode)  # left as it is


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize(
    ("where", "args"),
    [
        ("kms/host-ed25519.pem", ["kms", "dinstid"]),
        ("kms/host-ed25519.pem", ["kms", "activate"]),
        ("center/authority-ed25519.pem", ["center", "keys"]),
        ("center/authority-dsa.pem", ["center", "issue-key", "--product", "ProPlus2021"]),
        ("center/authority.pub.json", ["center", "pubkey"]),
        ("center/database.url", ["center", "keys"]),
    ],
)
def test_a_fifo_in_place_of_a_key_file_is_reported_not_waited_on(
    ospp: Ospp, where: str, args: list[str]
):
    """The host's signing key, the authority's key files and its public key file are read
    whole when a command opens the role: a FIFO in place of one would be read until a
    writer came and went, so the command would hang."""
    _kms_and_center_stores(ospp)
    path = ospp.home / where
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    ran = ospp.proc(*args, timeout=30)  # it would hang, and time out, if it read the FIFO
    assert ran.code == 3 and "ERROR CODE: 0x8007" in ran.out, ran  # damaged, or access denied
    assert "not a regular file" in ran.out and str(path) in ran.out, ran
    assert "internal error" not in ran.err, ran
    assert stat.S_ISFIFO(os.lstat(path).st_mode)  # left as it is


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_in_place_of_the_call_log_is_reported_not_waited_on(ospp: Ospp):
    """The phone console appends each call to its log: a FIFO there that nobody reads would
    block the open for ever."""
    ospp.install("ProPlus2021", "ph1")
    mak = ospp("center", "issue-key", "--product", "ProPlus2021").out.strip()
    assert ospp("/inpkey:" + mak, "ph1").code == 0
    iid = ospp("dinstid", "ph1", "--json").data()["products"][0]["installation_id"]
    log = ospp.home / "center" / "phone-calls.jsonl"
    os.mkfifo(log)
    groups = "\n".join(iid[i : i + 7] for i in range(0, len(iid), 7))
    ran = ospp.proc("center", "phone", input=groups + "\n", timeout=30)
    assert ran.code == 3 and "not a regular file" in ran.out + ran.err, ran
    assert str(log) in ran.out + ran.err and "internal error" not in ran.err, ran
    assert stat.S_ISFIFO(os.lstat(log).st_mode)  # left as it is


@needs_modes
def test_a_trust_store_that_may_not_be_listed_is_said_once(ospp: Ospp) -> None:
    assert ospp("center", "init").code == 0
    trust = ospp.home / "client" / "trust"
    trust.mkdir(parents=True)
    shutil.copy(ospp.home / "center" / "authority.pub.json", trust / "a.json")
    for mode in (0, 0o300):  # neither read nor entered; entered but not read
        trust.chmod(mode)
        try:
            done = _as_user(ospp, "trust", "list", "--json")
        finally:
            trust.chmod(0o700)
        assert done.returncode == 0, done.stdout + done.stderr
        unreadable = json.loads(done.stdout)["data"]["unreadable"]
        assert unreadable == [f"{trust}: cannot be listed: Permission denied"], unreadable


def test_a_home_whose_name_is_not_utf8_works(ospp: Ospp, tmp_path: Path) -> None:
    """A name is bytes on POSIX: one that is not UTF-8 still names a home (SQLite's URIs
    carry the bytes escaped)."""
    home = os.fsdecode(bytes(tmp_path) + b"/h\xff")
    env = {"OSPP_HOME": home}
    assert ospp.proc("fleet", "create", "w", "2", "--product", "ProPlus2021", env=env).code == 0
    for args in (("fleet", "status"), ("/dstatus", "w1"), ("machines",)):
        ran = ospp.proc(*args, env=env)
        assert ran.code == 0 and "internal error" not in ran.err, (args, ran)
    assert "Summary: 2 OOB_GRACE" in ospp.proc("fleet", "status", env=env).out


@pytest.mark.parametrize("name", ["activation_interval", "renewal_interval", "port"])
def test_a_kms_host_setting_edited_by_hand_is_a_store_error(ospp: Ospp, name: str):
    assert ospp("kms", "set", "--max-clients", "1000000").code == 0  # makes the store
    path = ospp.home / "kms" / "kms.db"
    with sqlite3.connect(path) as db:
        db.execute("INSERT OR REPLACE INTO meta VALUES (?, 'x')", (name,))
    for args in (("kms", "status"), ("kms", "status", "--json")):
        ran = ospp(*args)
        assert ran.code == 3 and "0x8007000D" in ran.out and name in ran.out, ran.out


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_in_place_of_a_lock_file_is_refused_not_waited_on(ospp: Ospp) -> None:
    lock = ospp.home / "client" / "clock.json.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(lock)
    ran = ospp.proc("clock", "advance", "1d", timeout=30)
    assert ran.code == 3 and "0x8007000D" in ran.out and "not a regular file" in ran.out, ran
    assert stat.S_ISFIFO(os.lstat(lock).st_mode)  # left as it is


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_file_to_write_that_is_a_device_or_fifo_is_refused_and_left_in_place(
    ospp: Ospp, tmp_path: Path
) -> None:
    """A file ospp writes is written beside its target and renamed over it: in place of a
    device or a FIFO (``fleet export /dev/null`` run by root) that would replace the device
    with a regular file. It is refused instead, and the device or FIFO left as it is."""
    ospp("fleet", "create", "d", "1", "--product", "ProPlus2021")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    iids = tmp_path / "iids.txt"
    iids.write_text("123\n")
    for args in (["fleet", "export", str(fifo)], ["center", "confirm-batch", str(iids), str(fifo)]):
        ran = ospp(*args)
        assert ran.code == 2 and "is not a regular file" in ran.out, (args, ran)
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.parametrize("target", ["/dev/full", "a file open for reading"])
@pytest.mark.parametrize(
    "args",
    [
        ["/dstatus"],
        ["fleet", "status"],
        ["fleet", "status", "--csv"],
        ["--json", "/dstatus"],
        ["--json", "/bogus"],  # a usage error, met before any command runs
        ["slmgr", "/ipk", "--json"],
    ],
)
def test_output_that_cannot_be_written_is_a_file_error_not_a_bug(
    ospp: Ospp, tmp_path: Path, args: list[str], target: str
) -> None:
    """Standard output on a full disk (``> /dev/full``), or a descriptor not open for writing,
    also while a long report is printed as it is read: exit 3 with the licensing code of a
    file that cannot be written, no traceback, no internal error."""
    if target == "/dev/full" and not os.path.exists(target):
        pytest.skip("no /dev/full here")
    ospp("install-product", "ProPlus2021")
    ospp("fleet", "create", "f", "300", "--product", "ProPlus2021")
    readable = tmp_path / "read-only"
    readable.write_text("")
    with open(
        target if target == "/dev/full" else readable, "w" if target == "/dev/full" else "r"
    ) as out:
        done = subprocess.run(
            [sys.executable, "-m", "ospp", *args],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **ospp.env},
            timeout=120,
        )
    code = "0x80070070" if target == "/dev/full" else "0x80070005"
    assert done.returncode == 3, done.stderr
    assert done.stderr.rstrip().endswith(f"ERROR CODE: {code}"), done.stderr
    assert "cannot write the output" in done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr


@pytest.mark.skipif(os.name == "nt", reason="closes a descriptor in the child (POSIX)")
@pytest.mark.parametrize(
    "args",
    [
        ["/dstatus"],
        ["--json", "/dstatus"],
        ["kms", "clients"],
        ["kms", "clients", "--csv"],
        ["kms", "clients", "--json"],
        ["fleet", "status", "--json"],
        ["service", "--all"],
    ],
)
def test_output_closed_from_the_start_is_a_file_error_not_silence(
    ospp: Ospp, args: list[str]
) -> None:
    """Started with standard output closed (``>&-``): exit 3, said on standard error, as for
    any output that cannot be written; not exit 0 with the report lost, nor a traceback."""
    ospp("install-product", "ProPlus2021")
    done = subprocess.run(
        [sys.executable, "-m", "ospp", *args],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **ospp.env},
        preexec_fn=lambda: os.close(1),
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    assert "cannot write the output: standard output is closed" in done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr


@pytest.mark.skipif(os.name == "nt", reason="closes a descriptor in the child (POSIX)")
@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (["trust", "add", "-"], 2, "is not an authority public key file"),
        (["fleet", "import", "-"], 2, "expected the header"),
        (["center", "phone"], 1, "input ended"),
        (["wizard"], 1, "input ended"),
    ],
)
def test_input_closed_from_the_start_reads_as_empty(
    ospp: Ospp, args: list[str], code: int, said: str
) -> None:
    """Started with standard input closed (``<&-``), a command that reads it meets the end of
    input at once and says what it lacked: no internal error, nothing changed."""

    def status() -> object:
        return {k: v for k, v in ospp("--json", "/dstatus").data().items() if k != "now_at"}

    ospp("install-product", "ProPlus2021")
    if args[0] == "center":
        assert ospp("center", "init").code == 0  # the console refuses a home without one
    before = status()
    done = subprocess.run(
        [sys.executable, "-m", "ospp", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **ospp.env},
        preexec_fn=lambda: os.close(0),
        timeout=120,
    )
    assert done.returncode == code, (done.stdout, done.stderr)
    assert said in done.stdout + done.stderr
    assert "internal error" not in done.stdout + done.stderr
    assert status() == before


# -- the KMS host's settings, damaged by hand ------------------------------------------------


def _host_with_setting(ospp: Ospp, name: str, value: str) -> tuple[Path, bytes]:
    """An activated host with DNS publishing set, then ``name`` set to ``value`` by hand: the
    store's path and its bytes (every change checkpointed into the file)."""
    from tests.kmsutil import make_host

    make_host(ospp)
    dns = ("--domain", "corp.example", "--hostname", "kms1.corp.example", "--no-publish")
    assert ospp("kms", "dns", "set", *dns).code == 0
    path = ospp.home / "kms" / "kms.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))
        conn.commit()
    assert not path.with_name(path.name + "-wal").exists()
    return path, path.read_bytes()


def _refused(ospp: Ospp, path: Path, kept: bytes, name: str, *args: str) -> None:
    ran = ospp(*args)
    assert ran.code == 3, (args, ran.code, ran.out)
    assert "0x8007000D" in ran.out, (args, ran.out)
    if args[0] != "slmgr":  # slmgr's text shows the code and its description only
        assert f"{path} has a damaged setting {name}: " in ran.out, (args, ran.out)
    assert path.read_bytes() == kept, f"{args} changed a store it refused"


SETTING_WRITES = [
    ("kms", "set", "--activation-interval", "60"),
    ("kms", "set", "--renewal-interval", "100"),
    ("kms", "set", "--max-clients", "5000"),
    ("slmgr", "/sai", "60"),
    ("slmgr", "/sri", "100"),
    ("slmgr", "/cpri"),
    ("slmgr", "/cdns"),
    ("kms", "dns", "disable"),
    ("kms", "dns", "set", "--domain", "other.example", "--hostname", "h.other.example",
     "--no-publish"),
]  # fmt: skip


@pytest.mark.parametrize(
    "value",
    [
        "[]",
        "garbage",
        '{"ttl": "x"}',
        '{"enabled": 1}',
        '{"interval_hours": NaN}',
        '{"interval_hours": "24"}',
        '{"addresses": "192.0.2.1"}',
        '{"future": 1e999}',  # stored again, it would be Infinity, which JSON has not
    ],
)
def test_a_damaged_dns_setting_is_reported_by_every_command_and_kept(ospp: Ospp, value: str):
    path, kept = _host_with_setting(ospp, "dns", value)
    for args in [
        ("kms", "status"),
        ("kms", "status", "--json"),
        ("kms", "dns", "records"),
        ("kms", "dns", "enable"),
        ("kms", "dns", "publish"),
        *SETTING_WRITES,
    ]:
        _refused(ospp, path, kept, "dns", *args)


def test_fields_of_the_dns_setting_a_newer_ospp_wrote_are_ignored(ospp: Ospp):
    newer = {
        "domain": "corp.example",
        "hostname": "kms1.corp.example",
        "ttl": 600,
        "interval_hours": 12,
        "future": {"x": [1]},
    }
    _host_with_setting(ospp, "dns", json.dumps(newer))
    records = ospp("kms", "dns", "records", "--port", "1688", "--json")
    assert records.code == 0, records.out
    assert any("600" in line and "kms1.corp.example" in line for line in records.data()["records"])
    assert ospp("kms", "status", "--json").data()["dns_publishing"] is False


def test_changing_the_dns_setting_keeps_the_fields_a_newer_ospp_wrote(ospp: Ospp):
    """'kms dns set', 'disable', 'enable' and slmgr /cdns, /sdns rewrite the setting with the
    fields they know changed and those of a newer ospp as they were."""
    future = {"future": {"x": [1, 2.5, None]}, "zz_policy": "strict", "retries": 3, "f": 1.5}
    newer = {"domain": "corp.example", "hostname": "kms1.corp.example", "ttl": 600, **future}
    path, _ = _host_with_setting(ospp, "dns", json.dumps(newer))

    def stored() -> dict[str, object]:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            (text,) = conn.execute("SELECT value FROM meta WHERE name='dns'").fetchone()
        value: dict[str, object] = json.loads(text)
        return value

    for args in [
        ("kms", "dns", "set", "--weight", "7", "--no-publish"),
        ("kms", "dns", "disable"),
        ("slmgr", "/cdns"),
        ("kms", "dns", "set", "--server", "127.0.0.1:53", "--ttl", "900"),
        ("slmgr", "/sdns"),
        ("kms", "dns", "enable"),
    ]:
        ran = ospp(*args)
        assert ran.code == 0, (args, ran.out)
        data = stored()
        assert {k: data.get(k) for k in future} == future, (args, data)
    assert data["weight"] == 7 and data["ttl"] == 900 and data["enabled"] is True
    assert data["server"] == "127.0.0.1:53" and data["domain"] == "corp.example"
    shown = ospp("kms", "dns", "set", "--priority", "3", "--json").data()
    assert shown["priority"] == 3 and "future" not in shown  # shown: the fields it knows
    assert {k: stored().get(k) for k in future} == future


@pytest.mark.parametrize("value", ["garbage", "5", "[]", '{"at": 5, "result": "ok"}'])
def test_a_damaged_record_of_the_last_dns_publish_is_reported_and_kept(ospp: Ospp, value: str):
    path, kept = _host_with_setting(ospp, "dns_last", value)
    for args in [("kms", "status"), ("kms", "status", "--json"), *SETTING_WRITES]:
        _refused(ospp, path, kept, "dns_last", *args)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("activation_interval", "x"),
        ("renewal_interval", "-5"),
        ("port", "99999"),
        ("max_clients", "lots"),
        ("max_clients", "5"),  # below the least 'kms set --max-clients' takes
    ],
)
def test_a_setting_is_not_written_over_a_damaged_one(ospp: Ospp, name: str, value: str):
    """Reads report a setting damaged by hand; writes refuse it too, whatever setting they
    change, and leave the store as it is."""
    path, kept = _host_with_setting(ospp, name, value)
    _refused(ospp, path, kept, name, "kms", "status")
    for args in SETTING_WRITES:
        _refused(ospp, path, kept, name, *args)


def test_slmgr_sprt_mends_a_damaged_port_as_its_hint_says(ospp: Ospp):
    path, kept = _host_with_setting(ospp, "port", "x")
    ran = ospp("kms", "status")
    assert ran.code == 3 and "Set it again with: slmgr /sprt PORT" in ran.out
    assert ospp("slmgr", "/sprt", "1700").code == 0
    assert ospp("kms", "status", "--json").data()["configured_port"] == 1700
    assert ospp("kms", "set", "--renewal-interval", "100").code == 0
    # but not over another damaged setting
    path, kept = _host_with_setting(ospp, "activation_interval", "x")
    _refused(ospp, path, kept, "activation_interval", "slmgr", "/sprt", "1800")
