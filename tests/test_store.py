"""The licence store: atomic, concurrent, private, and never silently reset."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
import sys
from pathlib import Path

import pytest

from ospp.core.clock import FixedClock, parse_time
from ospp.machine import client
from tests.conftest import GVLK_2021, PRODUCT, Ospp


@pytest.mark.parametrize(
    "garbage",
    [os.urandom(4096), b"x", b"SQLite format", b"not a licence store\n"],
    ids=["a page", "one byte", "a header cut short", "a line of text"],
)
def test_garbage_store_is_reported_and_kept(ospp: Ospp, garbage: bytes):
    """However short: SQLite alone takes a one-byte file for an empty database, and would
    write a new store over it."""
    ospp("/dcmid")
    path = ospp.store_file()
    path.write_bytes(garbage)
    for wal in path.parent.glob("licenses.db-*"):
        wal.unlink()
    for args in (["/dstatus"], ["/inpkey:" + GVLK_2021], ["dstatus", "--json"]):
        ran = ospp(*args)
        assert ran.code == 3
        assert str(path) in ran.out and "0x8007000D" in ran.out
    assert path.read_bytes() == garbage
    assert ospp.proc("/dstatus").code == 3


def test_a_damaged_machine_store_hint_is_one_that_works(ospp: Ospp):
    """Moved aside, this machine's store starts empty; another machine's is then gone, and
    the hint names the command that makes it again, which does."""
    ospp.install(PRODUCT, "localhost", "pc1")
    for machine, hint in (
        ("localhost", "move it aside to start an empty store"),
        ("pc1", "make the store again: ospp install-product PRODUCT pc1"),
    ):
        path = ospp.store_file(machine)
        path.write_bytes(os.urandom(4096))
        ran = ospp("/dstatus", machine)
        assert ran.code == 3 and hint in ran.out, ran.out
        path.rename(path.with_name("aside.db"))
        if machine == "pc1":
            assert "0x800706BA" in ospp("/dstatus", machine).out  # no such machine now
            assert ospp("install-product", PRODUCT, machine).code == 0
        assert ospp("/dstatus", machine).code == 0


def test_foreign_sqlite_file_is_not_taken_over(ospp: Ospp):
    path = ospp.store_file()
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE photos (id INTEGER)")
    ran = ospp("/dstatus")
    assert ran.code == 3 and "not an ospp store" in ran.out
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("photos",)]


def test_store_from_a_newer_schema_is_refused(ospp: Ospp):
    ospp.install()
    ospp("/inpkey:" + GVLK_2021)
    path = ospp.store_file()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=99")
    ran = ospp("/dstatus")
    assert ran.code == 3 and "schema version 99" in ran.out
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 99
        assert conn.execute("SELECT count(*) FROM licenses").fetchone()[0] == 2


def test_unusable_home_directory(ospp: Ospp, tmp_path: Path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    ran = ospp("/dstatus", env={"OSPP_HOME": str(blocker / "home")})
    assert ran.code == 3 and "0x80070005" in ran.out and "not-a-dir" in ran.out
    assert blocker.read_text() == "x"


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0, reason="root and Windows ignore directory modes"
)
def test_unwritable_home_directory(ospp: Ospp, tmp_path: Path):  # pragma: no cover - as root
    home = tmp_path / "ro"
    home.mkdir(mode=0o500)
    ran = ospp("/dstatus", env={"OSPP_HOME": str(home)})
    assert ran.code == 3 and "0x80070005" in ran.out


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_store_files_are_private(ospp: Ospp):
    ospp.install()
    ospp("/inpkey:" + GVLK_2021)
    path = ospp.store_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def _mutate(home: str, worker: int, count: int) -> None:
    env = {"OSPP_HOME": home}
    clock = FixedClock(parse_time("2026-05-01"))
    store = client.open_machine(None, env, clock)
    products = ["ProPlus2021", "Standard2019", "VisioPro2024", "ProjectPro2016"]
    for i in range(count):
        match i % 3:
            case 0:
                client.set_kms_host(store, f"kms{worker}-{i}.example.com")
            case 1:
                client.set_kms_caching(store, "TRUE" if i % 2 else "FALSE")
            case _:
                client.install_product(store, products[(worker + i) % len(products)])


def test_sixteen_processes_lose_no_update(tmp_path: Path):
    home = str(tmp_path / "client")
    store = client.open_machine(None, {"OSPP_HOME": home})
    base = int(store.settings()["generation"])
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_mutate, args=(home, w, 50)) for w in range(16)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    assert int(store.settings()["generation"]) == base + 16 * 50
    installed = {lic.sku.product.id for lic in store.licenses()}
    assert installed == {"ProPlus2021", "Standard2019", "VisioPro2024", "ProjectPro2016"}


def test_concurrent_cli_processes_keep_every_key(ospp: Ospp):
    import subprocess

    from ospp.core.catalog import catalog

    products = catalog().products[:8]
    gvlks = [p.gvlk for p in products]
    env = {**os.environ, **ospp.env}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "ospp", "install-product", p.id],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for p in products
    ]
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0, out
    data = ospp("dstatus", "--json").data()
    assert sorted(p["key_last5"] for p in data["products"]) == sorted(k[-5:] for k in gvlks)
    assert PRODUCT  # the fixture's product is among the first eight
