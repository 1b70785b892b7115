"""The authority's store: choosing it, migrating it, and several nodes on one PostgreSQL database
(exact MAK counts, a node killed, the database restarted, a bad URL or password)."""

from __future__ import annotations

import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from ospp.core.background import start_server
from ospp.core.endpoint import Endpoint
from ospp.core.errors import OsppError
from ospp.protocol.phone import machine_tag
from ospp.protocol.wire import Connection
from tests import pgcluster
from tests.conftest import Ospp
from tests.test_authority import issue

E_NO_CONNECTION = 0x80072EFD
E_MAK_LIMIT = 0xC004C020


def pg_query(url: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql.encode())
        return cur.fetchall() if cur.description else []


class Nodes:
    """``ospp center serve`` nodes sharing one database; each has its own OSPP_CENTER_HOME
    holding copies of the authority's key files."""

    def __init__(self, ospp: Ospp, tmp: Path, count: int) -> None:
        assert ospp("center", "init").code == 0  # the authority's keys and records
        first = Path(ospp.env["OSPP_CENTER_HOME"])
        self.procs: list[subprocess.Popen[str]] = []
        self.endpoints: list[str] = []
        for i in range(count):
            home = tmp / f"node{i}"
            home.mkdir(mode=0o700)
            for name in ("authority-ed25519.pem", "authority-dsa.pem"):
                (home / name).write_bytes((first / name).read_bytes())
                (home / name).chmod(0o600)
            env = {**os.environ, **ospp.env, "OSPP_CENTER_HOME": str(home)}
            proc, port = start_server(
                ["center", "serve", "--listen", "127.0.0.1:0"], env, subprocess.DEVNULL
            )
            self.procs.append(proc)
            self.endpoints.append(f"127.0.0.1:{port}")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=10)


@pytest.fixture
def pg_ospp(tmp_path: Path, pg_url: str) -> Ospp:
    ospp = Ospp(tmp_path / "authority")
    ospp.env["OSPP_CENTER_DB"] = pg_url
    return ospp


@pytest.fixture
def two_nodes(pg_ospp: Ospp, tmp_path: Path) -> Iterator[Nodes]:
    nodes = Nodes(pg_ospp, tmp_path, 2)
    try:
        yield nodes
    finally:
        nodes.stop()


def activate(endpoint: str, key: str, cmid: str) -> dict[str, Any]:
    """One online activation over the ospp protocol, as a client sends it."""
    host, port = endpoint.rsplit(":", 1)
    request = {
        "op": "activate",
        "key": key,
        "cmid": cmid,
        "hardware": "00000000aa",
        "nonce": secrets.token_hex(16),
    }
    with Connection(Endpoint(host, int(port)), "activation authority", timeout=30) as conn:
        return conn.call(request)


def tags_in_db(url: str) -> set[str]:
    return {str(r[0]) for r in pg_query(url, "SELECT machine FROM activations")}


def tag(cmid: str) -> str:
    return f"tag:{machine_tag(cmid):08x}"


# -- choosing and migrating the store ------------------------------------------------------


def test_cli_start_up_never_imports_the_postgresql_driver(center: Ospp):
    issue(center)
    code = (
        "import sys; from ospp.cli import main; sys.argv=['ospp','center','keys','--json'];\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('PSYCOPG', 'psycopg' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **center.env},
        timeout=60,
    )
    assert '"used": 0' in done.stdout, done.stdout + done.stderr
    wanted = center.env["OSPP_CENTER_DB"] != ""  # imported only when PostgreSQL is configured
    assert f"PSYCOPG {wanted}" in done.stdout


def test_migrate_reports_and_refuses_a_newer_schema(center: Ospp):
    ran = center("center", "migrate", "--json")
    assert ran.code == 0, ran.out
    data = ran.data()
    assert data["to"] == 1 and data["from"] == 0
    assert data["backend"] == ("postgresql" if center.env["OSPP_CENTER_DB"] else "sqlite")
    key = issue(center)
    again = center("center", "migrate")
    assert again.code == 0 and "schema version 1 (current)" in again.out
    url = center.env["OSPP_CENTER_DB"]
    if url:
        pg_query(url, "UPDATE ospp_schema SET version = 99 RETURNING version")
    else:
        with sqlite3.connect(center.home / "center" / "center.db") as conn:
            conn.execute("PRAGMA user_version=99")
    for args in (("center", "migrate"), ("center", "block", key)):
        refused = center(*args)
        assert refused.code == 3, refused.out
        assert "schema version 99, newer than this ospp understands (1)" in refused.out
    if url:
        assert pg_query(url, "SELECT blocked FROM keys") == [(False,)]  # nothing changed


def test_init_db_remembers_the_database(pg_ospp: Ospp, pg_url: str):
    env = {**pg_ospp.env, "OSPP_CENTER_DB": ""}
    ran = pg_ospp("center", "init", "--db", pg_url, "--json", env=env)
    assert ran.code == 0, ran.out
    parts = urlsplit(pg_url)
    assert ran.data()["database"] == f"postgresql://postgres@127.0.0.1:{parts.port}{parts.path}"
    if parts.password:
        assert parts.password not in ran.out
    saved = Path(pg_ospp.env["OSPP_CENTER_HOME"]) / "database.url"
    assert saved.read_text().strip() == pg_url
    if os.name == "posix":
        assert saved.stat().st_mode & 0o077 == 0
    issue(pg_ospp, limit=7)  # without OSPP_CENTER_DB: the remembered database is used
    assert pg_query(pg_url, "SELECT activation_limit FROM keys") == [(7,)]
    assert not (Path(pg_ospp.env["OSPP_CENTER_HOME"]) / "center.db").exists()


def test_a_database_that_is_not_ours_is_refused(pg_ospp: Ospp, pg_url: str):
    pg_query(pg_url, "CREATE TABLE payroll (id int)")
    ran = pg_ospp("center", "keys")
    assert ran.code == 3 and "not an ospp authority database" in ran.out
    assert pg_query(pg_url, "SELECT to_regclass('keys') IS NULL") == [(True,)]


def _with(url: str, **change: Any) -> str:
    parts = urlsplit(url)
    user = parts.username or ""
    password = change.get("password", parts.password)
    netloc = f"{user}{':' + password if password else ''}@{parts.hostname}:"
    netloc += str(change.get("port", parts.port))
    return urlunsplit(parts._replace(netloc=netloc, path=change.get("path", parts.path)))


def test_bad_urls_and_passwords_are_named_without_the_password(pg_ospp: Ospp, pg_url: str):
    parts = urlsplit(pg_url)
    db = parts.path.lstrip("/")
    with socketless_port() as closed:
        down = pg_ospp("center", "keys", env={"OSPP_CENTER_DB": _with(pg_url, port=closed)})
    assert down.code == 4 and "0x80072EFD" in down.out
    assert f"database '{db}' on 127.0.0.1:{closed}" in down.out
    missing = pg_ospp("center", "keys", env={"OSPP_CENTER_DB": _with(pg_url, path="/nosuch")})
    assert missing.code == 3 and "database 'nosuch' on 127.0.0.1" in missing.out
    assert 'database "nosuch" does not exist' in missing.out
    bad = pg_ospp("center", "keys", env={"OSPP_CENTER_DB": "mysql://root@db/x"})
    assert bad.code == 3 and "postgresql://user@host:port/database" in bad.out
    for ran in (down, missing):
        assert not parts.password or parts.password not in ran.out
    wrong = "Wr0ng-" + secrets.token_hex(4)
    refused = pg_ospp("center", "keys", env={"OSPP_CENTER_DB": _with(pg_url, password=wrong)})
    if refused.code == 0:
        pytest.skip("this PostgreSQL server does not check passwords (trust authentication)")
    assert refused.code == 3 and f"database '{db}' on 127.0.0.1:{parts.port}" in refused.out
    assert "password authentication failed" in refused.out
    assert wrong not in refused.out and (not parts.password or parts.password not in refused.out)


class socketless_port:
    """A loopback port nothing listens on (bound, then closed)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        pass


# -- several nodes -------------------------------------------------------------------------


def test_two_nodes_count_one_mak_exactly(pg_ospp: Ospp, two_nodes: Nodes, tmp_path: Path):
    key = issue(pg_ospp, limit=25)
    pub = tmp_path / "authority.pub.json"
    pub.write_text(pg_ospp("center", "pubkey").out)
    clients = [Ospp(tmp_path / f"m{i}") for i in range(60)]
    for c in clients:
        assert c("trust", "add", str(pub)).code == 0
        c.install()
        assert c("/inpkey:" + key).code == 0

    def act(i: int) -> tuple[int, int, str]:
        node = two_nodes.endpoints[i % 2]
        ran = clients[i].proc("/act", env={"OSPP_AUTHORITY": node}, timeout=120)
        return i, ran.code, ran.out

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(act, range(60)))
    won = [i for i, code, _ in results if code == 0]
    lost = [(i, out) for i, code, out in results if code != 0]
    assert len(won) == 25 and len(lost) == 35, [r[1] for r in results]
    assert all("ERROR CODE: 0xC004C020" in out for _, out in lost)
    used = pg_ospp("center", "keys", "--json").data()["keys"]
    assert [(k["used"], k["limit"]) for k in used] == [(25, 25)]
    # the same machine reactivating, on the other node and on the same one: no second count
    for i in won[:3]:
        for node in two_nodes.endpoints:
            ran = clients[i].proc("/act", env={"OSPP_AUTHORITY": node})
            assert ran.code == 0, ran.out
    loser = lost[0][0]
    again = clients[loser].proc("/act", env={"OSPP_AUTHORITY": two_nodes.endpoints[loser % 2]})
    assert again.code == 1 and "0xC004C020" in again.out
    used = pg_ospp("center", "keys", "--json").data()["keys"]
    assert [k["used"] for k in used] == [25]


def test_a_killed_node_loses_nothing_it_acknowledged(pg_ospp: Ospp, pg_url: str, two_nodes: Nodes):
    key = issue(pg_ospp, limit=1000)
    killed_at: list[float] = []
    acked: list[tuple[int, str, float]] = []
    lock = threading.Lock()
    enough = threading.Event()

    def one(i: int) -> None:
        cmid = str(uuid.uuid4())
        try:
            answer = activate(two_nodes.endpoints[i % 2], key, cmid)
        except OsppError:
            return  # the killed node: refused or cut off, never acknowledged
        if answer.get("ok"):
            with lock:
                acked.append((i % 2, cmid, time.monotonic()))
                if sum(1 for n, _, _ in acked if n == 0) >= 8:
                    enough.set()

    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(one, i) for i in range(80)]
        assert enough.wait(60)
        two_nodes.procs[0].send_signal(signal.SIGKILL)
        killed_at.append(time.monotonic())
        for f in futures:
            f.result(timeout=120)
    assert two_nodes.procs[0].wait(timeout=10) == -signal.SIGKILL
    in_db = tags_in_db(pg_url)
    assert {tag(c) for _, c, _ in acked} <= in_db
    # the other node answered everything, before and after the kill
    assert sum(1 for n, _, _ in acked if n == 1) == 40
    assert any(n == 1 and t > killed_at[0] for n, _, t in acked)
    assert activate(two_nodes.endpoints[1], key, str(uuid.uuid4()))["ok"] is True


def test_nodes_ride_out_a_database_restart(
    pg_ospp: Ospp, pg_url: str, pg_cluster: pgcluster.Cluster, two_nodes: Nodes, tmp_path: Path
):
    if not pg_cluster.controllable:
        pytest.skip("the PostgreSQL server comes from OSPP_TEST_PG_URL: it cannot be restarted")
    key = issue(pg_ospp, limit=1000)
    pub = tmp_path / "authority.pub.json"
    pub.write_text(pg_ospp("center", "pubkey").out)
    client = Ospp(tmp_path / "client")
    assert client("trust", "add", str(pub)).code == 0
    client.install()
    assert client("/inpkey:" + key).code == 0
    acked: list[tuple[int, str, float]] = []
    codes: list[int] = []
    stop = threading.Event()
    lock = threading.Lock()

    def load(node: int) -> None:
        for _ in range(400):  # bounded; stopped earlier by the test
            if stop.is_set():
                return
            cmid = str(uuid.uuid4())
            answer = activate(two_nodes.endpoints[node], key, cmid)
            with lock:
                if answer.get("ok"):
                    acked.append((node, cmid, time.monotonic()))
                else:
                    codes.append(int(answer["code"]))
            time.sleep(0.02)

    threads = [threading.Thread(target=load, args=(n,)) for n in (0, 1)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while len(acked) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        pg_cluster.pg_stop()
        try:
            time.sleep(0.5)
            ran = client.proc("/act", env={"OSPP_AUTHORITY": two_nodes.endpoints[0]})
            assert ran.code == 4 and "ERROR CODE: 0x80072EFD" in ran.out, ran.out
            assert "is unavailable" in ran.out
        finally:
            pg_cluster.pg_start()
        restarted = time.monotonic()
        while time.monotonic() < deadline and not all(
            any(n == node and t > restarted for n, _, t in acked) for node in (0, 1)
        ):
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert all(p.poll() is None for p in two_nodes.procs)  # never restarted
    assert codes and set(codes) == {E_NO_CONNECTION}
    for node in (0, 1):  # each node reconnected by itself
        assert any(n == node and t > restarted for n, _, t in acked)
    assert {tag(c) for _, c, _ in acked} <= tags_in_db(pg_url)
    assert client.proc("/act", env={"OSPP_AUTHORITY": two_nodes.endpoints[1]}).code == 0


def test_a_burst_over_the_protocol_never_overshoots(pg_ospp: Ospp, pg_url: str, two_nodes: Nodes):
    # many keys with small limits: every key's last activation is raced by both nodes at once
    keys = [issue(pg_ospp, limit=2) for _ in range(30)]
    cmids = [str(uuid.uuid4()) for _ in range(120)]

    def one(i: int) -> tuple[bool, int]:
        answer = activate(two_nodes.endpoints[i % 2], keys[i // 4], cmids[i])
        return bool(answer.get("ok")), int(answer.get("code", 0))

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, range(120)))
    assert {code for ok, code in results if not ok} == {E_MAK_LIMIT}
    counts = pg_query(pg_url, "SELECT serial, count(*) FROM activations GROUP BY serial")
    assert sorted(n for _, n in counts) == [2] * 30
    assert sum(ok for ok, _ in results) == 60


def test_a_kms_host_is_counted_by_its_signing_key_on_either_store(center: Ospp):
    """Online activation counts a host by its signing key (as the phone centre does): one
    key under several CMIDs is one host; a host recorded by its CMID before stays one."""
    from ospp.authority.state import Authority
    from ospp.core.clock import clock_from_env
    from ospp.protocol import keys
    from ospp.protocol.crypto import HostKey, b64
    from ospp.protocol.phone import machine_tag

    authority = Authority.open(
        Path(center.env["OSPP_CENTER_HOME"]), clock_from_env({}), environ=center.env
    )
    try:
        key = authority.issue_key("ProPlus2024", "kms-host", 6)

        def activate(cmid: str, signing: str) -> None:
            request = {"key": key, "cmid": cmid, "hardware": "01", "nonce": "n"}
            authority.activate({**request, "host_key": signing})

        def hosts() -> int:
            return int(authority.key_records()[0].used)

        one = b64(HostKey(HostKey.generate()).public_raw)
        activate(str(uuid.uuid4()), one)
        activate(str(uuid.uuid4()), one)  # the same host, its CMID changed
        assert hosts() == 1
        old_cmid, parsed = str(uuid.uuid4()), keys.parse(key)
        tag = f"tag:{machine_tag(old_cmid):08x}"
        authority.store.count(
            parsed.serial, lambda tx: authority._count(tx, parsed, tag, "01", "online")
        )
        assert hosts() == 2
        activate(old_cmid, b64(HostKey(HostKey.generate()).public_raw))
        assert hosts() == 2
    finally:
        authority.close()


def test_kms_host_key_limits_on_either_store(center: Ospp):
    """A KMS host key: 6 hosts by default, each activating at most 10 times (both stores)."""
    from ospp.authority.state import Authority
    from ospp.core.clock import clock_from_env
    from ospp.core.errors import LicensingError
    from ospp.protocol.crypto import HostKey, b64

    authority = Authority.open(
        Path(center.env["OSPP_CENTER_HOME"]), clock_from_env({}), environ=center.env
    )
    try:
        key = authority.issue_key("ProPlus2024", "kms-host", 2)

        signing: dict[str, str] = {}  # each host's public key in base64, as hosts send it

        def host(cmid: str) -> dict[str, Any]:
            public = signing.setdefault(cmid, b64(HostKey(HostKey.generate()).public_raw))
            request = {"key": key, "cmid": cmid, "hardware": "01", "nonce": "n", "host_key": public}
            return authority.activate(request)

        first, second = str(uuid.uuid4()), str(uuid.uuid4())
        for _ in range(10):
            assert host(first)["licence"]["kind"] == "kms-host"
        with pytest.raises(LicensingError) as too_often:
            host(first)
        assert too_often.value.code == 0xC004C008 and "10 times" in too_often.value.message
        host(second)
        with pytest.raises(LicensingError) as third:
            host(str(uuid.uuid4()))
        assert third.value.code == 0xC004C008 and "already activated 2 hosts" in str(third.value)
        assert [(r.used, r.limit) for r in authority.key_records()] == [(2, 2)]
    finally:
        authority.close()


def test_a_new_node_without_the_key_files_is_told_what_is_missing(pg_ospp: Ospp, tmp_path: Path):
    assert pg_ospp("center", "init").code == 0
    bare = pg_ospp("center", "keys", env={"OSPP_CENTER_HOME": str(tmp_path / "newnode")})
    assert bare.code == 3 and "authority key files" in bare.out and "newnode" in bare.out


def test_an_authority_on_sqlite_given_a_database_is_told_to_start_in_a_new_home(
    pg_ospp: Ospp, pg_url: str
):
    """A home whose authority is on SQLite, pointed at an empty database: refused (exit 3),
    saying the records are not moved and where to start; never 'restore center.db', which
    is right there, untouched."""
    sqlite_env = {"OSPP_CENTER_DB": ""}
    assert pg_ospp("center", "init", "--name", "Lab", env=sqlite_env).code == 0
    center = Path(pg_ospp.env["OSPP_CENTER_HOME"])
    before = {p.name: p.read_bytes() for p in center.iterdir()}
    ran = pg_ospp("center", "init", "--db", pg_url, "--json", env=sqlite_env).json()
    assert ran["error"]["exit_status"] == 3 and ran["error"]["code"] == "0x8007000D", ran
    assert "whose records are not in postgresql://" in ran["error"]["message"]
    assert "new OSPP_CENTER_HOME" in ran["error"]["hint"] and "restore center.db" not in str(ran)
    assert {p.name: p.read_bytes() for p in center.iterdir()} == before
    assert pg_ospp("center", "keys", env=sqlite_env).code == 0  # still the SQLite authority


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://ospp:s3cret@db.example:5433/auth", "postgresql://ospp@db.example:5433/auth"),
        ("postgres://ospp@db.example/auth", "postgresql://ospp@db.example:5432/auth"),
        (
            "postgresql://ospp:s3cret@db1:5432,db2:5432/auth?target_session_attrs=read-write",
            "postgresql://ospp@db1:5432,db2:5432/auth",
        ),
        ("postgresql://ospp:s3cret@[::1]:5433/auth", "postgresql://ospp@[::1]:5433/auth"),
    ],
)
def test_urls_are_shown_without_their_password(url: str, shown: str):
    from ospp.authority.storage import parse_url

    target = parse_url(url)
    assert str(target) == shown and "s3cret" not in target.named
    assert target.password in (None, "s3cret")


@pytest.mark.parametrize("url", ["mysql://root:s3cret@db/x", "postgresql://h:port/x", "/srv/db"])
def test_urls_that_are_not_postgresql_are_refused(url: str):
    from ospp.authority.storage import parse_url
    from ospp.core.errors import StoreError

    with pytest.raises(StoreError) as info:
        parse_url(url)
    assert info.value.exit_status == 3 and "s3cret" not in info.value.message


def test_serialization_failures_are_retried_a_bounded_number_of_times(pg_url: str, tmp_path: Path):
    """The database's own serialization_failure (SQLSTATE 40001), raised for real by the server."""
    from ospp.authority.backend import open_store
    from ospp.authority.pg_store import RETRIES, PgStore
    from ospp.core.errors import NetworkError

    store = open_store(tmp_path, {}, url=pg_url)
    assert isinstance(store, PgStore)
    conflict = (
        b"DO $$ BEGIN RAISE EXCEPTION 'simulated conflict' "
        b"USING ERRCODE = 'serialization_failure'; END $$"
    )
    attempts: list[int] = []

    def flaky(conn: Any) -> str:
        attempts.append(1)
        conn.execute(b"INSERT INTO meta VALUES ('attempt-' || random()::text, 'x')")
        if len(attempts) < 3:
            conn.execute(conflict)
        return "done"

    def always(conn: Any) -> None:
        attempts.append(1)
        conn.execute(conflict)

    try:
        assert store._run(flaky) == "done" and len(attempts) == 3
        # the two failed attempts were rolled back: one row written
        assert pg_query(pg_url, "SELECT count(*) FROM meta WHERE name LIKE 'attempt-%'") == [(1,)]
        attempts.clear()
        with pytest.raises(NetworkError) as info:
            store._run(always)
        assert len(attempts) == RETRIES and info.value.code == E_NO_CONNECTION
        assert "too busy" in info.value.message
    finally:
        store.close()


def test_a_missing_postgresql_driver_is_explained(pg_ospp: Ospp):
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from ospp.cli import main; sys.argv = ['ospp', 'center', 'keys']\n"
        "main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **pg_ospp.env},
        timeout=60,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "pip install 'ospp[postgres]'" in done.stdout
