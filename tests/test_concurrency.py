"""Concurrent commands on one home: nothing acknowledged is lost, nothing crashes.

Real CLI processes race on the licence stores, the lab clock and a KMS host's store while the
host serves. And files created on first use stay the one file every concurrent first user
sees: a per-home seal key, a machine's hardware profile and a KMS host's signing key are each made
the first time something needs them. When several processes need one at the same moment, all
of them must go on with the same file: one that used a key another process then replaced
would leave seals that never match, an activation bound to hardware the machine no longer
has, or a host certified for a signing key it no longer holds.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from ospp.core.clock import FixedClock, iso, parse_time
from ospp.core.errors import OsppError
from ospp.kmshost.state import KmsHost
from ospp.machine import client, fleet, hardware
from ospp.machine.seal import seal_key
from tests.conftest import GVLK_2021, Ospp, check_json
from tests.kmsutil import Host, make_host

T = TypeVar("T")
ROUNDS = 10
THREADS = 8


def _together(make: Callable[[Path], T], directory: Path) -> list[T]:
    """What THREADS threads got from ``make(directory)``, all started at once."""
    barrier = threading.Barrier(THREADS)
    got: list[T] = []
    failed: list[BaseException] = []

    def use() -> None:
        barrier.wait()
        try:
            got.append(make(directory))
        except BaseException as exc:  # reported below
            failed.append(exc)

    threads = [threading.Thread(target=use) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failed, failed
    assert len(got) == THREADS
    return got


def _first_uses(make: Callable[[Path], T], tmp_path: Path) -> list[list[T]]:
    """For each of ROUNDS fresh directories, what THREADS threads starting together got."""
    rounds = []
    for r in range(ROUNDS):
        directory = tmp_path / f"round{r}"
        directory.mkdir()
        rounds.append(_together(make, directory))
    return rounds


def test_concurrent_first_uses_share_one_seal_key(tmp_path: Path) -> None:
    for r, keys in enumerate(_first_uses(lambda d: seal_key(d, create=True), tmp_path)):
        on_disk = seal_key(tmp_path / f"round{r}", create=False)
        assert on_disk is not None and len(on_disk) == 32
        assert set(keys) == {on_disk}, r


def test_concurrent_first_uses_share_one_hardware_profile(tmp_path: Path) -> None:
    for r, profiles in enumerate(_first_uses(hardware.load, tmp_path)):
        on_disk = hardware.load(tmp_path / f"round{r}")
        assert {p.hash() for p in profiles} == {on_disk.hash()}, r


def test_concurrent_first_uses_share_one_host_signing_key(tmp_path: Path) -> None:
    clock = FixedClock(parse_time("2027-01-01"))

    def signing_key(home: Path) -> bytes:
        host = KmsHost.open(home, clock)
        try:
            return host.signer().public_raw
        finally:
            host.db.close()

    for r, keys in enumerate(_first_uses(signing_key, tmp_path)):
        assert set(keys) == {signing_key(tmp_path / f"round{r}")}, r


def _race(ospp: Ospp, commands: list[list[str]]) -> list[tuple[list[str], int, str, str]]:
    """Run every command as its own ``ospp`` process, all started before any is waited for."""
    env = {**os.environ, **ospp.env}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "ospp", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    done = []
    for args, proc in zip(commands, procs, strict=True):
        out, err = proc.communicate(timeout=120)
        check_json(out)
        done.append((args, proc.returncode, out, err))
    return done


def _products(ospp: Ospp, machine: str) -> dict[str, dict[str, object]]:
    ran = ospp("dstatus", machine, "--json")  # the keyed licence of each product
    assert ran.code == 0, ran.out
    return {p["product_id"]: p for p in ran.data()["products"]}


def test_racing_commands_on_one_home_lose_nothing_while_the_host_serves(ospp: Ospp) -> None:
    start = datetime.now(UTC).replace(microsecond=0)
    assert ospp("clock", "set", iso(start)).code == 0
    assert ospp("clock", "freeze").code == 0
    make_host(ospp)
    old_host_key = ospp(
        "center", "issue-key", "--product", "ProPlus2010", "--channel", "kms-host", "--json"
    ).data()["key"]
    host = Host(ospp)
    try:
        address = host.address
        # five machines already counted, so every activation in the race is above the threshold
        ospp("fleet", "create", "w", "5", "--product", "ProPlus2021", "--sethst", address)
        ospp.proc("fleet", "act")
        assert ospp.proc("fleet", "act").code == 0
        ospp("fleet", "create", "r", "4", "--product", "ProPlus2021", "--sethst", address)
        ospp.install("ProPlus2021")

        results = _race(
            ospp,
            [
                *(["/act", f"r{n}"] for n in range(1, 5)),
                ["install-product", "Standard2021", "n1"],
                ["install-product", "VisioPro2024", "n2"],
                ["/inpkey:" + GVLK_2021],
                ["fleet", "create", "f", "5", "--product", "ProPlus2021", "--sethst", address],
                ["fleet", "act", "--machines", "w*"],
                ["clock", "advance", "1m"],
                ["clock", "advance", "1m"],
                ["kms", "install-key", old_host_key],
                ["dstatus", "r1", "--json"],
                ["kms", "status", "--json"],
            ],
        )
        for args, code, out, err in results:
            assert code == 0, (args, code, out, err)
            assert "Traceback" not in err and "internal error" not in err, (args, err)
        assert host.alive()

        # every acknowledged change is there
        for n in range(1, 5):
            assert _products(ospp, f"r{n}")["ProPlus2021"]["status"] == "LICENSED", n
        assert "Standard2021" in _products(ospp, "n1")
        assert "VisioPro2024" in _products(ospp, "n2")
        assert _products(ospp, "localhost")["ProPlus2021"]["key_last5"] == GVLK_2021[-5:]
        names = ospp("machines", "--json").data()["machines"]
        assert {f"f{n}" for n in range(1, 6)} <= set(names)
        now = ospp("clock", "show", "--json").data()["now_at"]
        assert now == iso(start + timedelta(minutes=2))
        packs = {p["product_id"]: p for p in ospp("kms", "status", "--json").data()["packs"]}
        assert packs["ProPlus2021"]["activated"] and not packs["ProPlus2010"]["activated"]
        clients = {c["cmid"] for c in ospp("kms", "clients", "--json").data()["clients"]}
        racers = {ospp("dcmid", f"r{n}", "--json").data()["cmid"] for n in range(1, 5)}
        assert racers <= clients
    finally:
        host.stop()


def _remove_while_opening(home: Path, env: dict[str, str]) -> list[str]:
    """``fleet remove pc1`` and four openers of pc1 started at once; what remove said."""
    barrier = threading.Barrier(5)
    removed: list[str] = []

    def remove() -> None:
        barrier.wait()
        removed.extend(done.outcome for done in fleet.remove(home, "pc1"))

    def use() -> None:
        barrier.wait()
        with contextlib.suppress(OsppError):  # removed under it: an error is the right answer
            client.open_machine("pc1", env).db.close()

    threads = [threading.Thread(target=remove), *(threading.Thread(target=use) for _ in range(4))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return removed


def test_a_machine_removed_while_others_open_it_stays_removed(tmp_path: Path) -> None:
    """``fleet remove`` racing commands that open the machine: once it says removed, the
    machine is gone, never brought back as an empty store by one of them."""
    for r in range(ROUNDS * 4):
        home = tmp_path / f"round{r}"
        env = {"OSPP_HOME": str(home)}
        store = client.open_for_install("pc1", "ProPlus2021", env)
        client.install_product(store, "ProPlus2021")
        store.db.close()
        assert _remove_while_opening(home, env) == ["removed"]
        assert not client.machine_exists(home, "pc1"), r
        assert not (home / "machines" / "pc1").exists(), r


def test_concurrent_hardware_changes_each_replace_their_part(tmp_path: Path) -> None:
    """``ospp hardware change`` of different parts at once: every part said to be replaced
    is replaced, none undone by a change that read the profile before it."""
    now = parse_time("2027-01-01")
    for r in range(ROUNDS):
        directory = tmp_path / f"round{r}"
        directory.mkdir()
        before = hardware.load(directory).components
        parts = iter(hardware.COMPONENTS[:THREADS])
        lock = threading.Lock()

        def change(directory: Path, parts: Iterator[str] = parts, lock: threading.Lock = lock):
            with lock:
                part = next(parts)
            return hardware.change(directory, [part], now)

        _together(change, directory)
        after = hardware.load(directory).components
        changed = {name for name in before if after[name] != before[name]}
        assert changed == set(hardware.COMPONENTS[:THREADS]), r


def test_concurrent_first_opens_of_a_new_store_all_succeed(tmp_path: Path) -> None:
    """Eight commands opening one machine's store before it exists: one creates it, and
    none is told the store is locked (switching a new store to WAL mode must wait its turn,
    which SQLite does not do by itself)."""

    def open_store(home: Path) -> str:
        store = client.open_machine(None, {"OSPP_HOME": str(home)})
        try:
            return store.settings()["cmid"]
        finally:
            store.db.close()

    for r in range(150):
        directory = tmp_path / f"round{r}"
        directory.mkdir()
        assert len(set(_together(open_store, directory))) == 1, r
