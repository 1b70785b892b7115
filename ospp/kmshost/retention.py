"""How many clients a KMS host keeps, and the pruning that keeps it there.

Every client a host answers is stored (``clients`` in ``kms.db``); a peer that keeps sending
fresh CMIDs would add a row per request for ever. The host keeps at most ``max_clients``
(``ospp kms set --max-clients``, default DEFAULT_MAX_CLIENTS) and drops the least recently
seen beyond it. The count a client is answered needs only the clients of its application
group seen in the last 30 days up to the host's time, capped at CAP, so pruning never removes
one of the CAP clients of a group seen most recently by the host's time, nor any seen after
it (a lab clock moved back past them: they count again once it gets there). The counts stay
exact at the host's time and from then on, whatever the limit (which is at least
MIN_MAX_CLIENTS, far above the CAP per group the catalog's few groups can hold back).

Pruning runs in the host's background thread (:func:`start_background`, which also
checkpoints the WAL), on a connection of its own, in write transactions of about HOLD
seconds with a pause between them PAUSE_FACTOR times as long, taken under the lock the
serving thread writes under (an in-process lock: the serving thread never sleeps in
SQLite's busy handler waiting for the pruner), so a client waits at most one short
transaction. The ``clients`` statistic (what ``kms status`` shows as stored client
machines) goes down in the same transaction as the rows: it stays exact. Each round that
removed clients logs one line saying how many.

The same thread keeps the WAL small. A checkpoint that runs while the server writes never
catches up with it, and SQLite starts the WAL over only once every frame in it has been
copied to the database: under steady load the file grew by every page written (about 17 KB
per lone request, 100 MB in 6,000). So once the WAL passes WAL_LIMIT, the thread copies
what it holds without stopping the server, then takes the write lock for the few frames
written meanwhile (about a millisecond, :func:`catch_up_wal`); the server's next write starts
the WAL over and truncates it to WAL_LIMIT (``journal_size_limit``, set with
``wal_autocheckpoint=0`` by :meth:`ospp.kmshost.state.KmsHost.start_checkpointer`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from ospp.core.errors import UsageError
from ospp.kmshost.packs import known_groups
from ospp.protocol.kms import CAP

DEFAULT_MAX_CLIENTS = 1_000_000
MIN_MAX_CLIENTS = 10 * CAP
MAX_MAX_CLIENTS = 2**31 - 1
SETTING = "max_clients"  # its name in the store's meta table

# Each write transaction removes as many rows as fit in about HOLD seconds (measured as it
# goes: a row costs tens of microseconds with a million stored), then the thread pauses
# PAUSE_FACTOR times as long as it held the lock: pruning takes at most a fifth of the write
# lock, the serving thread the rest. That still removes clients faster than a host adds
# them (bench/kms_load.py --prune: 16,000-30,000 a second with a million stored).
HOLD = 0.002
PAUSE_FACTOR = 4
FIRST_CHUNK = 50
MAX_CHUNK = 2000
PAUSE = 0.002  # seconds at least between two transactions of a round
ROUND = 1.0  # seconds a round lasts at most; the next one starts at once if work is left
BUSY_TIMEOUT = 5.0  # seconds the thread's connection waits for another process's lock

# The WAL is started over once it is larger than this, and truncated to it (SQLite's own
# automatic checkpoint, which the serving connection does not run, starts at about this size:
# 1000 pages). Its size is looked at every WAL_CHECK seconds: one stat call.
WAL_LIMIT = 32 * 1024 * 1024
WAL_CHECK = 0.1

log = logging.getLogger("ospp.kms")


def check_max_clients(value: int) -> int:
    """``value`` if it can be the limit, else UsageError (0x80070057)."""
    if not MIN_MAX_CLIENTS <= value <= MAX_MAX_CLIENTS:
        raise UsageError(
            f"the most clients a KMS host keeps must be {MIN_MAX_CLIENTS}-{MAX_MAX_CLIENTS}, "
            f"not {value}",
            f"A limit of at least {MIN_MAX_CLIENTS} (10 times the count's cap of {CAP}) keeps "
            "every count exact; the default is 1000000.",
        )
    return value


def max_clients(meta: Mapping[str, str]) -> int:
    """The limit a host's settings (its meta table) hold, or the default."""
    try:
        return int(meta[SETTING])
    except (KeyError, ValueError):
        return DEFAULT_MAX_CLIENTS


def prune_chunk(conn: sqlite3.Connection, chunk: int, now_s: int) -> tuple[int, int]:
    """Remove up to ``chunk`` of the least recently seen clients beyond the limit, in one
    write transaction on ``conn`` (autocommit mode). Returns (how many were removed, the
    limit). ``now_s`` is the host's time (seconds since the epoch).

    Only clients seen before the CAP seen most recently by ``now_s`` in their application
    group are removed, so no count changes at ``now_s`` or after it: a removed client was
    seen no later than those CAP, so while it would be in the 30-day window they are too, and
    the count stays at CAP. Clients seen after ``now_s`` (the lab clock moved back) are kept.
    The rows go in one DELETE statement: the thread holds the GIL a few times per
    transaction, not per row.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT value FROM meta WHERE name=?", (SETTING,)).fetchone()
        limit = max_clients({SETTING: row[0]} if row else {})
        (stored,) = conn.execute(
            "SELECT coalesce((SELECT value FROM stats WHERE name='clients'), 0)"
        ).fetchone()
        excess = min(_stored_clients(stored) - limit, chunk)
        if excess <= 0:
            return 0, limit
        arms: list[str] = []
        args: list[object] = []
        for app in known_groups():
            # The group's CAP-th most recently seen client by the host's time (the
            # clients_recent index holds the primary key too, so both orders are read from
            # it, without sorting).
            kept = conn.execute(
                "SELECT last_seen, cmid FROM clients WHERE app=? AND last_seen<=? "
                "ORDER BY last_seen DESC, cmid DESC LIMIT 1 OFFSET ?",
                (app, now_s, CAP - 1),
            ).fetchone()
            if kept is None:  # fewer than CAP clients: every one counts
                continue
            arms.append(
                "SELECT * FROM (SELECT app, cmid, last_seen FROM clients WHERE app=? "
                "AND (last_seen, cmid)<(?, ?) ORDER BY last_seen, cmid LIMIT ?)"
            )
            args += [app, *kept, excess]
        if not arms:
            return 0, limit
        removed = conn.execute(
            "DELETE FROM clients WHERE (app, cmid) IN (SELECT app, cmid FROM ("
            + " UNION ALL ".join(arms)
            + ") ORDER BY last_seen, cmid LIMIT ?)",
            (*args, excess),
        ).rowcount
        conn.execute("UPDATE stats SET value=value-? WHERE name='clients'", (removed,))
        conn.execute("COMMIT")
        return int(removed), limit
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")


def excess(conn: sqlite3.Connection) -> int:
    """How many clients the store holds beyond its limit (read without taking a lock)."""
    row = conn.execute(
        "SELECT (SELECT value FROM meta WHERE name=?), "
        "coalesce((SELECT value FROM stats WHERE name='clients'), 0)",
        (SETTING,),
    ).fetchone()
    return _stored_clients(row[1]) - max_clients({SETTING: row[0]} if row[0] is not None else {})


def _stored_clients(value: object) -> int:
    """The ``clients`` statistic, which says how many to prune: one edited by hand into
    anything but a whole number stops pruning (a ValueError, logged once a failure), since
    taken as a number it could delete every client that does not count now."""
    if type(value) is not int:
        raise ValueError(
            f"the 'clients' statistic is damaged ({value!r:.40}, not a whole number): "
            "nothing is pruned while it is"
        )
    return value


def prune_round(
    conn: sqlite3.Connection,
    lock: threading.Lock,
    stop: threading.Event,
    now: Callable[[], datetime],
) -> tuple[int, bool]:
    """Prune in short transactions, each under ``lock`` (the one the serving thread writes
    under), until the store is within its limit, ROUND seconds have passed or ``stop`` is
    set. ``now`` reads the host's clock, once per transaction. Logs one line if it removed
    anything. Returns (how many clients were removed, whether work is left)."""
    if excess(conn) <= 0:  # within the limit: no write lock taken
        return 0, False
    deadline = time.monotonic() + ROUND
    removed = limit = 0
    chunk = FIRST_CHUNK
    per_row = 0.0  # seconds a removed row costs, smoothed: one slow transaction is noise
    try:
        while True:
            now_s = int(now().timestamp())
            with lock:
                started = time.perf_counter()
                done, limit = prune_chunk(conn, chunk, now_s)
                held = time.perf_counter() - started
            removed += done
            if done < chunk:
                return removed, False
            if time.monotonic() >= deadline:
                return removed, True
            if stop.wait(max(PAUSE, PAUSE_FACTOR * held)):
                return removed, False
            cost = held / done
            per_row = cost if not per_row else 0.8 * per_row + 0.2 * cost
            chunk = max(1, min(MAX_CHUNK, int(HOLD / per_row)))
    finally:
        if removed:
            log.info(
                f"removed {removed} least recently seen clients beyond the limit of {limit}",
                extra={"fields": {"removed": removed, "max_clients": limit}},
            )


def catch_up_wal(conn: sqlite3.Connection, lock: threading.Lock) -> bool:
    """Copy every frame of the WAL into the database: first without the write lock (most of
    them, while the server goes on), then under it (those written meanwhile), so that the
    checkpoint completes with no frame added. The server's next write then starts the WAL
    over, and truncates it to WAL_LIMIT (``journal_size_limit``). A reader still using the
    WAL (the status page, ``kms status`` in another process) is not waited for. Returns
    whether every frame was copied."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    with lock:
        conn.execute("PRAGMA busy_timeout=0")  # never hold the server's lock waiting
        try:
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
    return not busy and frames == copied


def _wal_file(path: Path) -> tuple[int, int]:
    """The WAL's size and modification time; (0, 0) when there is none."""
    try:
        st = os.stat(f"{path}-wal")
    except OSError:
        return 0, 0
    return st.st_size, st.st_mtime_ns


def start_background(
    path: Path, lock: threading.Lock, now: Callable[[], datetime], every: float = 1.0
) -> threading.Event:
    """The KMS host's background thread: every ``every`` seconds, a pruning round
    (:func:`prune_round`, at the time ``now`` reads), then a PASSIVE WAL checkpoint, which
    never blocks the writer; and every WAL_CHECK seconds, a look at the WAL's size: past
    WAL_LIMIT, :func:`catch_up_wal` lets the server start it over. All on a connection of its
    own. ``lock`` is held by the serving thread while it writes. Returns the
    threading.Event that stops the thread."""
    from ospp.core.logs import Once

    stop = threading.Event()
    once = Once(log)

    def work() -> None:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
        more = False
        next_round = time.monotonic() + every
        caught_up = (0, 0)  # the WAL as it was when every frame had been copied
        try:
            conn.execute("PRAGMA synchronous=NORMAL")  # as the serving connection writes
            while not stop.wait(0 if more else min(WAL_CHECK, every)):
                wal = _wal_file(path)
                if wal[0] > WAL_LIMIT and wal != caught_up:
                    with contextlib.suppress(sqlite3.Error):  # busy: tried again soon
                        if catch_up_wal(conn, lock):
                            caught_up = _wal_file(path)
                if not more and time.monotonic() < next_round:
                    continue
                next_round = time.monotonic() + every
                try:
                    more = prune_round(conn, lock, stop, now)[1]
                    once.ok("prune", "pruning stored clients works again")
                except Exception as exc:  # busy, or worse: said once, tried next round
                    more = False
                    once.fail(
                        "prune", f"pruning stored clients failed: {type(exc).__name__}: {exc}"
                    )
                with contextlib.suppress(sqlite3.Error):  # busy: the next round catches up
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()

    threading.Thread(target=work, name="wal-checkpoint", daemon=True).start()
    return stop
