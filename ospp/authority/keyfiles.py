"""The authority's private key files, created as one unit on first use.

``authority-ed25519.pem`` and ``authority-dsa.pem`` are created while the authority store's
write lock is held and before the store records the authority's secret. A failure in between
(a full disk, a crash) must not leave key files that later runs take for a lost store, so:

1. both keys are written to temporary files in the home and flushed to disk;
2. ``authority-keys.pending`` is created: from here on, key files belong to an unfinished
   first use;
3. the temporary files are renamed to their names, and the caller commits the store;
4. after the commit, :func:`settle` removes the marker.

A later first use that finds the marker removes the unfinished key files and starts again;
key files without the marker (the store itself was lost) are still refused.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from ospp.core.errors import E_INVALID_DATA, StoreError, os_error_code
from ospp.core.files import write_fd

PENDING = "authority-keys.pending"


def create(
    home: Path,
    ed_path: Path,
    dsa_path: Path,
    ed_pem: bytes,
    dsa_pem: bytes,
    database: str | None = None,
) -> None:
    """Create both key files (steps 1-3); the caller holds the store's write lock and has
    found no secret in it (``database``: a PostgreSQL store, as shown). Raises StoreError,
    leaving nothing a later run cannot undo."""
    marker = home / PENDING
    finals = (ed_path, dsa_path)
    refuse_orphans(home, finals, database)
    temps: list[Path] = []
    try:
        if marker.exists():
            _unfinished(marker, finals)  # an earlier first use that never committed
        for pem in (ed_pem, dsa_pem):
            temps.append(_write_temp(home, pem))
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        _sync_dir(home)
        for temp, final in zip(temps, finals, strict=True):
            os.replace(temp, final)
        _sync_dir(home)
    except OSError as exc:
        with contextlib.suppress(OSError):
            for temp in temps:
                temp.unlink(missing_ok=True)
            if marker.exists():
                _unfinished(marker, finals)
        raise StoreError(
            os_error_code(exc),
            f"cannot write the authority keys in {home}: {exc.strerror or exc}",
            "Free some space or make the directory writable, then run 'ospp center init' "
            "again; nothing was kept.",
        ) from exc


def refuse_orphans(
    home: Path, finals: tuple[Path, ...] | None = None, database: str | None = None
) -> None:
    """Refuse key files that no unfinished first use left: the store they belong with was
    lost, and a new one would hold another secret (every key issued so far unknown). With
    ``database`` (a PostgreSQL store found empty), they may as well be an authority on
    SQLite, which is not moved into PostgreSQL."""
    finals = finals or (home / "authority-ed25519.pem", home / "authority-dsa.pem")
    if not (home / PENDING).exists() and any(p.exists() or p.is_symlink() for p in finals):
        if database is not None:
            raise StoreError(
                E_INVALID_DATA,
                f"{home} holds the key files of an authority whose records are not in "
                f"{database} (the database holds no authority yet)",
                "Give the PostgreSQL authority a new OSPP_CENTER_HOME (ospp does not move an "
                "authority on SQLite, center.db, into PostgreSQL); if this home's records were "
                f"in {database}, restore them from a backup. Nothing was changed.",
            )
        raise StoreError(
            E_INVALID_DATA,
            f"{home} holds authority key files but no authority store",
            "Restore center.db from a backup; nothing was changed.",
        )


def _unfinished(marker: Path, finals: tuple[Path, ...]) -> None:
    """Remove the key files of a first use that never committed; the marker goes last."""
    for path in finals:
        path.unlink(missing_ok=True)
    marker.unlink(missing_ok=True)
    _sync_dir(marker.parent)


def settle(home: Path) -> None:
    """After the store committed the secret: the key files are final (step 4)."""
    marker = home / PENDING
    if marker.exists():
        with contextlib.suppress(OSError):  # left behind, it is removed by the next open
            marker.unlink(missing_ok=True)
            _sync_dir(home)


def _write_temp(home: Path, data: bytes) -> Path:
    fd, name = tempfile.mkstemp(prefix=".authority-key.", suffix=".tmp", dir=home)
    write_fd(fd, data, name)
    return Path(name)


def _sync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
