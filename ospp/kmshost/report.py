"""Read-only views of a KMS host's store for its status page and ``/metrics``.

A :class:`Reader` has its own SQLite connection, opened read-only, so the serving connection
never waits for a page; the HTTP side calls it from a worker thread, never on the event loop.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ospp.core.catalog import Channel, catalog
from ospp.core.clock import Clock, iso
from ospp.core.db import sqlite_uri
from ospp.core.errors import E_INVALID_DATA, StoreError
from ospp.kmshost.identity import check_settings
from ospp.kmshost.packs import read_packs
from ospp.kmshost.status import (
    current_counts,
    damaged_statistic,
    dns_publishing,
    last_publish,
    read_stats,
)
from ospp.protocol.kms import WINDOW

PAGE_SIZE = 50


@dataclass(frozen=True)
class ClientQuery:
    """A page of the clients seen in the last 30 days, newest first, optionally filtered."""

    product: str = ""  # a product id (ProPlus2021); "" for all
    status: str = ""  # a reported licence status (licensed, grace, ...); "" for all
    page: int = 1


class Reader:
    """Queries a KMS host store through a read-only connection of its own."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = path
        self.clock = clock
        self._conn: sqlite3.Connection | None = None

    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            uri = f"{sqlite_uri(self.path.resolve())}?mode=ro"
            self._conn = sqlite3.connect(uri, uri=True, timeout=5.0, isolation_level=None)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _since(self) -> tuple[int, int]:
        now_s = int(self.clock.now().timestamp())
        return now_s, now_s - int(WINDOW.total_seconds())

    def gauges(self) -> dict[str, Any]:
        """What /metrics and /healthz need: activation, counts, stored clients."""
        now_s, since = self._since()
        c = self.conn()
        c.execute("BEGIN")
        try:
            activated = c.execute(
                "SELECT 1 FROM packs WHERE certificate IS NOT NULL LIMIT 1"
            ).fetchone()
            counts = current_counts(c, since, now_s)
            stored = c.execute("SELECT value FROM stats WHERE name='clients'").fetchone()
            packs = read_packs(c)
        finally:
            c.execute("COMMIT")
        if stored is not None and type(stored[0]) is not int:
            raise damaged_statistic(self.path, "clients", stored[0])
        return {
            "activated": activated is not None,
            "current_count": counts,
            "stored_clients": stored[0] if stored else 0,
            "packs": [p.status(counts.get(p.app, 0)) for p in packs],
        }

    def summary(self) -> dict[str, Any]:
        """Everything on the status page except the client list."""
        now = self.clock.now()
        c = self.conn()
        c.execute("BEGIN")
        try:
            meta = dict(c.execute("SELECT name, value FROM meta").fetchall())
            stats = read_stats(c, self.path)
        finally:
            c.execute("COMMIT")
        check_settings(self.path, meta)  # damaged: a StoreError, which the page shows
        gauges = self.gauges()
        first = gauges["packs"][0] if gauges["packs"] else {}
        days = []
        for back in range(29, -1, -1):
            day = (now - timedelta(days=back)).date().isoformat()
            days.append((day, stats.get(f"day.{day}", 0)))
        return {
            "key_last5": first.get("key_last5"),
            "epid": first.get("epid"),
            "activated": gauges["activated"],
            "activated_at": first.get("activated_at"),
            "packs": gauges["packs"],
            "current_count": gauges["current_count"],
            "stored_clients": gauges["stored_clients"],
            "requests_total": stats.get("total", 0),
            "requests_failed": stats.get("failed", 0),
            "requests_by_status": {
                k.split(".", 1)[1]: v for k, v in stats.items() if k.startswith("requests.")
            },
            "failures_by_code": {
                k.split(".", 1)[1]: v for k, v in stats.items() if k.startswith("failed.")
            },
            "per_day": days,
            "dns_publishing": dns_publishing(meta),
            "dns_last_publish": last_publish(meta.get("dns_last")),
            "now": iso(now),
        }

    def clients(self, query: ClientQuery) -> tuple[list[dict[str, Any]], int]:
        """One page of clients (newest first) and how many match in all."""
        now_s, since = self._since()
        # Naming every application group lets SQLite use the (app, last_seen) index: only the
        # clients of the last 30 days are read, however many older ones are stored.
        apps = sorted({p.application_id for p in catalog().products})
        where = [f"app IN ({','.join('?' * len(apps))})", "last_seen>=?", "last_seen<=?"]
        args: list[Any] = [*apps, since, now_s]
        if query.product:
            product = catalog().product(query.product)
            skus = []
            if product is not None:
                with contextlib.suppress(KeyError):
                    skus.append(product.sku(Channel.KMS_CLIENT).sku_id)
            where.append(f"sku_id IN ({','.join('?' * len(skus)) or 'NULL'})")
            args += skus
        if query.status:
            where.append("status=?")
            args.append(query.status)
        sql_where = " AND ".join(where)
        c = self.conn()
        total = c.execute(f"SELECT count(*) FROM clients WHERE {sql_where}", args).fetchone()[0]
        rows = c.execute(
            "SELECT cmid, sku_id, workstation, first_seen, last_seen, requests, status "
            f"FROM clients WHERE {sql_where} ORDER BY last_seen DESC, cmid LIMIT ? OFFSET ?",
            [*args, PAGE_SIZE, (max(query.page, 1) - 1) * PAGE_SIZE],
        ).fetchall()

        def t(v: int) -> str:
            return iso(datetime.fromtimestamp(v, UTC))

        out = []
        for cmid, sku_id, workstation, first, last, requests, status in rows:
            try:
                if not all(isinstance(v, str) for v in (cmid, sku_id, workstation, status)):
                    raise ValueError("a value of the wrong type")
                if type(requests) is not int:
                    raise ValueError("a value of the wrong type")
                sku = catalog().sku(sku_id)
                out.append(
                    {
                        "cmid": cmid,
                        "product": sku.product.id if sku else sku_id,
                        "workstation": workstation,
                        "first_seen_at": t(first),
                        "last_seen_at": t(last),
                        "requests": requests,
                        "status": status,
                    }
                )
            except (ValueError, TypeError, OverflowError, OSError) as exc:
                raise self._damaged_client(cmid, exc) from exc
        return out, total

    def _damaged_client(self, cmid: object, exc: Exception) -> StoreError:
        return StoreError(
            E_INVALID_DATA,
            f"the KMS host store {self.path} has a damaged client record ({cmid!r:.60}): {exc}",
            "It was left as it is. Restore it from a backup, or remove the record.",
        )

    def iter_clients(self, limit: int = 0) -> Iterator[dict[str, Any]]:
        """Every stored client (at most ``limit``; 0 for all), most recent first, read as the
        caller consumes them: memory stays flat however many there are. The same fields as
        :meth:`ospp.kmshost.state.KmsHost.clients`."""

        def t(v: int) -> str:
            return iso(datetime.fromtimestamp(v, UTC))

        cursor = self.conn().execute(
            "SELECT app, cmid, sku_id, workstation, first_seen, last_seen, requests "
            "FROM clients ORDER BY last_seen DESC LIMIT ?",
            (limit if limit > 0 else -1,),
        )
        while rows := cursor.fetchmany(1000):
            for r in rows:
                try:
                    if not all(isinstance(v, str) for v in r[:4]) or type(r[6]) is not int:
                        raise ValueError("a value of the wrong type")
                    yield {
                        "application_id": r[0],
                        "cmid": r[1],
                        "sku_id": r[2],
                        "workstation": r[3],
                        "first_seen_at": t(r[4]),
                        "last_seen_at": t(r[5]),
                        "requests": r[6],
                    }
                except (ValueError, TypeError, OverflowError, OSError) as exc:
                    raise self._damaged_client(r[1], exc) from exc

    def statuses(self) -> list[str]:
        """The licence statuses clients reported, for the filter's choices."""
        rows = (
            self.conn()
            .execute("SELECT substr(name, 10) FROM stats WHERE name LIKE 'requests.%' ORDER BY 1")
            .fetchall()
        )
        return [r[0] for r in rows]
