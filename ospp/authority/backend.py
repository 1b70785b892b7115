"""Which store an authority uses: SQLite in ``OSPP_CENTER_HOME`` unless a PostgreSQL URL is
configured (``OSPP_CENTER_DB``, or the URL file 'ospp center init --db' writes), and schema
migration of either (``ospp center migrate``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ospp.authority.storage import Store, database_url, parse_url


def open_store(
    home: Path, environ: Mapping[str, str], *, url: str | None = None, upgrade: bool = False
) -> Store:
    """The store of the authority in ``home``; ``upgrade`` runs pending schema migrations.

    A fresh store (an empty file or database) is created at the current schema either way.
    """
    url = url or database_url(home, environ)
    if url is None:
        from ospp.authority.sqlite_store import SqliteStore

        return SqliteStore(home / "center.db")
    target = parse_url(url)
    from ospp.authority.pg_store import PgStore

    return PgStore(url, target, upgrade=upgrade)
