"""Files created on first use stay the one file every concurrent first user sees.

A per-home seal key, a machine's hardware profile and a KMS host's signing key are each made
the first time something needs them. When several processes need one at the same moment, all
of them must go on with the same file: one that used a key another process then replaced
would leave seals that never match, an activation bound to hardware the machine no longer
has, or a host certified for a signing key it no longer holds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ospp.core.clock import FixedClock, parse_time
from ospp.kmshost.state import KmsHost
from ospp.machine import hardware
from ospp.machine.seal import seal_key

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
