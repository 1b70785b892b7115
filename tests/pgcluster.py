"""A throwaway PostgreSQL cluster for the tests and the benchmark.

``OSPP_TEST_PG_URL`` (a superuser URL, e.g. ``postgresql://postgres:pw@127.0.0.1:5432/postgres``)
names an existing server. Without it, :func:`start` creates a cluster in a temporary directory
with the server binaries Debian installs (``/usr/lib/postgresql/*/bin``), as the ``postgres``
user when running as root (PostgreSQL refuses to run as root), with password authentication on
a loopback port; :meth:`Cluster.stop` removes it. Every test gets a database of its own.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

URL_ENV = "OSPP_TEST_PG_URL"
TMP_ENV = "OSPP_TEST_PG_TMP"  # where the throwaway cluster's directory goes (CI cleans it up)


class Unavailable(Exception):
    """PostgreSQL cannot be used here; the message says why (the tests print it as skip)."""


def _bindir() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3])
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise Unavailable(
        f"no PostgreSQL server binaries (initdb) found and {URL_ENV} is not set; "
        "install Debian's 'postgresql' package or set it"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A PostgreSQL server: one we started (``datadir`` set) or an existing one."""

    def __init__(self, admin_url: str, datadir: Path | None = None, user: str | None = None):
        self.admin_url = admin_url
        self.datadir = datadir
        self.user = user  # run pg_ctl as this user (root runs the server as 'postgres')
        self._bin = _bindir() if datadir else None

    # -- our own cluster -----------------------------------------------------------------------

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self._bin is not None and self.datadir is not None
        cmd = [str(self._bin / "pg_ctl"), "-D", str(self.datadir), *args]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=check)

    def pg_stop(self) -> None:
        self._ctl("-m", "fast", "-w", "stop")

    def pg_start(self) -> None:
        port = urlsplit(self.admin_url).port
        opts = f"-p {port} -k {self.datadir} -c listen_addresses=127.0.0.1 -c fsync=on"
        log = str(Path(str(self.datadir)) / "server.log")
        self._ctl("-w", "-t", "30", "-l", log, "-o", opts, "start")

    @property
    def controllable(self) -> bool:
        return self.datadir is not None

    def stop(self) -> None:
        """Stop our cluster and remove its directory (an existing server is left alone)."""
        if self.datadir is None:
            return
        self._ctl("-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.datadir.parent, ignore_errors=True)

    # -- databases -----------------------------------------------------------------------------

    def url_for(self, database: str) -> str:
        parts = urlsplit(self.admin_url)
        return urlunsplit(parts._replace(path="/" + database))

    def create_database(self) -> str:
        import psycopg

        name = "ospp_" + secrets.token_hex(6)
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}".encode())
        return self.url_for(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = urlsplit(url).path.lstrip("/")
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(self.admin_url, autocommit=True) as conn,
        ):
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


def start() -> Cluster:
    """The server to test against: ``OSPP_TEST_PG_URL``, or a new throwaway cluster."""
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise Unavailable("psycopg is not installed (pip install 'ospp[postgres]')") from exc
    url = os.environ.get(URL_ENV)
    if url:
        return Cluster(url)
    bindir = _bindir()
    user = None
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        user = "postgres"
        try:
            import pwd

            owner = pwd.getpwnam(user)
        except (ImportError, KeyError) as exc:
            raise Unavailable("running as root, and there is no 'postgres' user") from exc
    base = Path(tempfile.mkdtemp(prefix="ospp-pg-", dir=os.environ.get(TMP_ENV) or None))
    datadir = base / "data"
    password = secrets.token_hex(12)
    pwfile = base / "pw"
    pwfile.write_text(password + "\n")
    if user:
        os.chown(base, owner.pw_uid, owner.pw_gid)
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    os.chmod(base, 0o700)
    cmd = [
        str(bindir / "initdb"),
        "-D",
        str(datadir),
        "-U",
        "postgres",
        "-A",
        "scram-sha-256",
        f"--pwfile={pwfile}",
        "--no-sync",
    ]
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode:
        shutil.rmtree(base, ignore_errors=True)
        raise Unavailable(f"initdb failed: {done.stderr.strip()[-300:]}")
    last = ""
    for _ in range(3):  # the free port may be taken before the server binds it
        cluster = Cluster(
            f"postgresql://postgres:{password}@127.0.0.1:{_free_port()}/postgres", datadir, user
        )
        try:
            cluster.pg_start()
            return cluster
        except subprocess.CalledProcessError as exc:
            last = (exc.stderr or exc.stdout or "").strip()[-300:]
            time.sleep(0.5)
    shutil.rmtree(base, ignore_errors=True)
    raise Unavailable(f"PostgreSQL did not start: {last}")
