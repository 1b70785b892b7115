"""Reading a whole fleet: one status row per machine and product, and the fleet's timeline.

Reading 10,000 stores must take seconds, so each store is read with one short SQLite
connection opened ``immutable`` (no locks, no WAL index) when it is quiescent: no WAL file
next to it and the same size and mtime after the read as before. Otherwise, or if anything is
unexpected, the store is read the ordinary way, which also reports a damaged store.
Activations are checked by their seal with the home's key and trust anchors loaded once; one
whose seal does not match, or that is bound to hardware, goes through the full per-store check.
"""

from __future__ import annotations

import csv
import os
import sqlite3
import stat
import sys
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from ospp.core.clock import Clock, FixedClock
from ospp.core.db import Database, absolute_path, sqlite_uri
from ospp.core.digest import compare_digest
from ospp.core.errors import E_ACCESS_DENIED, OsppError, StoreError
from ospp.core.paths import StrPath
from ospp.machine.checks import bound_hardware, make_checker, policy_problem
from ospp.machine.fleet import names, require
from ospp.machine.fleetcsv import CSV_FIELDS
from ospp.machine.seal import mac, seal_key
from ospp.machine.settings import kms_settings
from ospp.machine.status import (
    LICENSED,
    NOTIFICATIONS,
    OOB_GRACE,
    OOT_GRACE_LABEL,
    UNLICENSED,
    Checker,
    LicenceStatus,
    evaluate,
)
from ospp.machine.store import (
    _SCHEMA,
    STORE_FILE,
    Licence,
    MachineStore,
    NoMachine,
)
from ospp.protocol.trust import trusted_fingerprints

# The timeline splits the last 5 days of the initial grace off: the user is being notified.
OOB_NOTIFYING = "OOB_GRACE_NOTIFYING"
STATES = (UNLICENSED, OOB_GRACE, OOB_NOTIFYING, LICENSED, OOT_GRACE_LABEL, NOTIFICATIONS)
# What a row of 'fleet status' can say: /dstatus's states, and ERROR for a store not read.
ROW_STATES = (UNLICENSED, OOB_GRACE, LICENSED, OOT_GRACE_LABEL, NOTIFICATIONS, "ERROR")


@dataclass(frozen=True)
class Snapshot:
    """One machine's settings and licences, read at once."""

    name: str
    settings: dict[str, str]
    licenses: list[Licence]


@dataclass(frozen=True)
class _Named:
    path: Path


def _stamp(path: str) -> tuple[int, int] | None:
    """The file's mtime and size; None unless it is a regular file (a link, a FIFO: the
    ordinary read refuses them, where opening a FIFO here would wait for ever)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return st.st_mtime_ns, st.st_size


def _quick(home: StrPath, name: str, clock: Clock) -> Snapshot | None:
    """An immutable read of a quiescent store, or None when that is not safe."""
    directory = os.path.join(home, "machines", name)
    path = os.path.join(directory, STORE_FILE)
    wal = path + "-wal"
    before = _stamp(path)
    if before is None or os.path.exists(wal):
        return None
    uri = sqlite_uri(absolute_path(path)) + "?mode=ro&immutable=1"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version != len(_SCHEMA):
                return None
            # The store code reads through ``conn``; the Database is needed only to name the
            # file in an error message.
            where = Path(directory)
            store = MachineStore(cast(Database, _Named(where / STORE_FILE)), name, where, clock)
            settings = store.settings(conn)  # checked as the ordinary read checks them
            licenses = store.licenses(conn)
        finally:
            conn.close()
    except (sqlite3.Error, StoreError):
        return None
    if _stamp(path) != before or os.path.exists(wal):
        return None
    return Snapshot(name, settings, licenses)


def read_machine(home: StrPath, name: str, clock: Clock) -> Snapshot:
    """One machine's settings and licences (the ordinary, locking read when in doubt)."""
    try:
        quick = _quick(home, name, clock)
    except StoreError:
        quick = None
    if quick is not None:
        return quick
    store = MachineStore.open(home, name, clock)
    try:
        return Snapshot(name, store.settings(), store.licenses())
    finally:
        store.db.close()


class HomeChecks:
    """Seal checks with the home's seal key and trust anchors, loaded once for the fleet."""

    def __init__(self, home: StrPath, environ: Mapping[str, str]) -> None:
        self.home = home
        self.environ = environ
        self.key = seal_key(home, create=False)
        self.fingerprints = trusted_fingerprints(home, environ)

    def sealed(self, snap: Snapshot) -> bool:
        """Every activation of ``snap`` carries a good seal, is bound to no hardware, and is
        one the machine's KMS host policy accepts."""
        cmid = snap.settings.get("cmid", "")
        online_only = kms_settings(snap.settings).online_only
        for lic in snap.licenses:
            act = lic.activation
            if not act:
                continue
            given = act.get("seal")
            if (
                self.key is None
                or not isinstance(given, str)
                or bound_hardware(act) is not None
                or policy_problem(online_only, act) is not None  # the seal does not cover it
                or not compare_digest(
                    given,
                    mac(self.key, lic.sku.sku_id, lic.product_key, cmid, self.fingerprints, act),
                )
            ):
                return False
        return True

    def checker(self, snap: Snapshot, clock: Clock) -> Checker | None:
        """None when no check is needed (no activation, or all sealed and hardware-free)."""
        if self.sealed(snap):
            return None
        store = MachineStore.open(self.home, snap.name, clock)
        try:
            check = make_checker(store, self.environ)
            # Run every check now, while the store is open; the results do not depend on time.
            problems = {lic.sku.sku_id: check(lic) for lic in snap.licenses if lic.activation}
        finally:
            store.db.close()
        return lambda lic: problems.get(lic.sku.sku_id)


@dataclass(frozen=True)
class Row:
    machine: str
    status: LicenceStatus
    last_activation: str | None
    kms_host: str | None

    def to_json(self) -> dict[str, Any]:
        st = self.status
        return {
            "machine": self.machine,
            "product_id": st.licence.sku.product.id,
            "status": st.status,
            "error_code": f"0x{st.code:08X}" if st.code is not None else None,
            "key_last5": st.licence.last5,
            "remaining_days": st.remaining_days,
            "last_activated_at": self.last_activation,
            "kms_host": self.kms_host,
            "error": None,
        }


def keyed(snap: Snapshot) -> list[Licence]:
    return [lic for lic in snap.licenses if lic.product_key and lic.sku.channel.value != "kms-host"]


# Fleets at least this large are read by worker processes, CHUNK machines at a time: reading
# a store is CPU work (SQLite opens the file and parses its schema, the seal is recomputed).
PARALLEL_FROM = 2000
CHUNK = 250
PROCESSES = 2


def _chunk_rows(
    home: StrPath,
    chunk: list[str],
    environ: Mapping[str, str],
    now: datetime,
    wanted: str | None,
) -> list[dict[str, Any]]:
    """The rows of some machines; a store that cannot be read gives an ERROR row."""
    clock = FixedClock(now)
    checks = HomeChecks(home, environ)
    out: list[dict[str, Any]] = []
    for name in chunk:
        try:
            snap = read_machine(home, name, clock)
            check = checks.checker(snap, clock)
        except NoMachine:
            continue  # a directory that holds no machine, or one removed meanwhile
        except OsppError as exc:
            if wanted in (None, "ERROR"):
                out.append(error_row(name, exc))
            continue
        for lic in keyed(snap):
            st = evaluate(lic, now, check)
            if wanted and st.status != wanted:
                continue
            act = lic.activation or {}
            host = act.get("host") if act.get("kind") == "kms" else None
            out.append(Row(name, st, act.get("activated_at"), host).to_json())
    return out


def error_row(name: str, exc: OsppError) -> dict[str, Any]:
    return {
        "machine": name,
        "product_id": None,
        "status": "ERROR",
        "error_code": f"0x{exc.code:08X}",
        "key_last5": None,
        "remaining_days": None,
        "last_activated_at": None,
        "kms_host": None,
        "error": exc.to_json(),
    }


def rows(
    home: StrPath,
    glob: str | None,
    environ: Mapping[str, str],
    clock: Clock,
    status: str | None = None,
) -> Iterator[dict[str, Any]]:
    """One row (as JSON) per machine and keyed product, in machine order, streamed."""
    now = clock.now()
    wanted = status.upper() if status else None
    found = names(home, glob)
    chunks = [found[i : i + CHUNK] for i in range(0, len(found), CHUNK)]
    if len(found) < PARALLEL_FROM or (os.cpu_count() or 1) < 2:
        for chunk in chunks:
            yield from _chunk_rows(home, chunk, environ, now, wanted)
        return
    import multiprocessing
    from concurrent.futures import Future, ProcessPoolExecutor

    # fork where it is safe and cheap (Linux; no threads run here); spawn elsewhere
    method = "fork" if sys.platform.startswith("linux") else None
    context = multiprocessing.get_context(method)
    env = dict(environ)
    with ProcessPoolExecutor(max_workers=PROCESSES, mp_context=context) as pool:
        window: deque[Future[list[dict[str, Any]]]] = deque()
        for chunk in chunks:
            window.append(pool.submit(_chunk_rows, home, chunk, env, now, wanted))
            if len(window) > 2 * PROCESSES:  # a few chunks ahead: memory stays flat
                yield from window.popleft().result()
        while window:
            yield from window.popleft().result()


def state_of(st: LicenceStatus) -> str:
    if st.status == OOB_GRACE and st.notifications:
        return OOB_NOTIFYING
    return st.status


def timeline(
    home: StrPath,
    glob: str | None,
    start: datetime,
    end: datetime,
    step: timedelta,
    environ: Mapping[str, str],
    clock: Clock,
) -> list[tuple[datetime, Counter[str]]]:
    """Machines (keyed products) in each state at each step from ``start`` to ``end``."""
    days: list[datetime] = []
    at = start
    while at <= end:
        days.append(at)
        try:
            at += step
        except OverflowError:  # a step past the last time datetime holds: no more points
            break
    counts: list[Counter[str]] = [Counter() for _ in days]
    checks = HomeChecks(home, environ)
    for name in names(home, glob):
        try:
            snap = read_machine(home, name, clock)
        except NoMachine:
            continue  # a directory that holds no machine, or one removed meanwhile
        check = checks.checker(snap, clock)
        for lic in keyed(snap):
            for i, day in enumerate(days):
                if day >= lic.installed_at:  # not counted before the product was installed
                    counts[i][state_of(evaluate(lic, day, check))] += 1
    return list(zip(days, counts, strict=True))


def export(home: StrPath, glob: str | None, path: Path, clock: Clock) -> Iterator[str]:
    """Write machine, product, key, KMS host and KMS lookup domain of every keyed product to
    ``path`` (owner-only, as it holds full product keys); yields each machine written. No
    machine to export (a mistyped --machines) is refused, as for 'fleet act', and ``path`` is
    left as it was."""
    from ospp.core.files import atomic_writer

    found = require(home, glob)
    try:
        with atomic_writer(path, private=True, newline="") as f:
            out = csv.writer(f)
            out.writerow(CSV_FIELDS)
            for name in found:
                try:
                    snap = read_machine(home, name, clock)
                except NoMachine:
                    continue  # a directory that holds no machine, or one removed meanwhile
                host = snap.settings["kms_host"]
                if host:
                    port = snap.settings["kms_port"]
                    host = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                domain = snap.settings["kms_domain"]
                for lic in snap.licenses:
                    if lic.product_key and lic.sku.channel.value != "kms-host":
                        out.writerow([name, lic.sku.product.id, lic.product_key, host, domain])
                yield name
    except OSError as exc:
        raise StoreError(
            E_ACCESS_DENIED, f"{path} cannot be written: {exc.strerror or exc}"
        ) from exc
