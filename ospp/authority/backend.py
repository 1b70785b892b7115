"""Which store an authority uses: SQLite in ``OSPP_CENTER_HOME`` unless a PostgreSQL URL is
configured (``OSPP_CENTER_DB``, or the URL file 'ospp center init --db' writes), and schema
migration of either (``ospp center migrate``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ospp.authority.storage import URL_FILE, Store, database_url, parse_url
from ospp.core.errors import E_ACCESS_DENIED, StoreError
from ospp.core.files import write_atomic


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
    try:  # the key files still live here
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StoreError(
            E_ACCESS_DENIED,
            f"the authority's home {home} cannot be created: {exc.strerror or exc}",
            "Point OSPP_CENTER_HOME at a writable directory.",
        ) from exc
    from ospp.authority.pg_store import PgStore

    return PgStore(url, target, upgrade=upgrade)


def remember_url(home: Path, url: str) -> Path:
    """Write ``url`` (owner-only: it may hold a password) where :func:`open_store` finds it."""
    parse_url(url)
    path = home / URL_FILE
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(path, url.strip() + "\n", private=True)
    except OSError as exc:
        raise StoreError(
            E_ACCESS_DENIED,
            f"cannot write the authority's database setting {path}: {exc.strerror or exc}",
        ) from exc
    return path


def migrate(home: Path, environ: Mapping[str, str]) -> tuple[Store, int, int]:
    """Bring the authority's store to the current schema: (store, version before, after).

    A schema newer than this ospp understands raises StoreError and changes nothing.
    """
    store = open_store(home, environ, upgrade=True)
    try:
        after, _ = store.schema()
    finally:
        store.close()
    return store, store.migrated_from, after
