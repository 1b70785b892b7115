"""Online activations per second at the activation authority, on loopback.

    python bench/authority_load.py                          # the three set-ups, ~1 minute
    python bench/authority_load.py --requests 400 --concurrency 8 --setups pg-2

Set-ups: ``sqlite-1`` (one ``ospp center serve`` on center.db), ``pg-1`` (one node on
PostgreSQL) and ``pg-2`` (two nodes sharing one PostgreSQL database, the load split evenly).
PostgreSQL is ``OSPP_TEST_PG_URL`` (a superuser URL; each run gets a new database, dropped
afterwards) or, when that is unset, a throwaway cluster like the tests'. Each run issues one
MAK, then sends ``--requests`` activations, every one from a new machine (so every one is
counted and written), from ``--concurrency`` client threads each opening one connection per
activation, as clients do. Reports activations/s, p50/p99 latency, and checks that the
authority counted exactly the activations it acknowledged. Every run is bounded by its
request count and a timeout; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ospp.core.background import start_server
from ospp.core.endpoint import Endpoint
from ospp.protocol.wire import Connection
from tests import pgcluster


def ospp(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ospp", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def run(setup: str, requests: int, concurrency: int, cluster: pgcluster.Cluster | None) -> str:
    nodes = 2 if setup.endswith("-2") else 1
    tmp = Path(tempfile.mkdtemp(prefix="ospp-bench-"))
    env = {**os.environ, "OSPP_CENTER_HOME": str(tmp / "node0"), "OSPP_CENTER_DB": ""}
    url = None
    if setup.startswith("pg"):
        assert cluster is not None
        url = cluster.create_database()
        env["OSPP_CENTER_DB"] = url
    procs: list[subprocess.Popen[str]] = []
    try:
        ospp(env, "center", "init")
        key = ospp(env, "center", "issue-key", "--product", "ProPlus2021", "--limit", "1000000")
        key = key.strip()
        ports = []
        for i in range(nodes):
            home = tmp / f"node{i}"
            if i:
                home.mkdir(mode=0o700)
                for name in ("authority-ed25519.pem", "authority-dsa.pem"):
                    (home / name).write_bytes((tmp / "node0" / name).read_bytes())
            node_env = {**env, "OSPP_CENTER_HOME": str(home)}
            proc, port = start_server(
                ["center", "serve", "--listen", "127.0.0.1:0"], node_env, subprocess.DEVNULL
            )
            procs.append(proc)
            ports.append(port)

        def one(i: int) -> float:
            started = time.perf_counter()
            request = {
                "op": "activate",
                "key": key,
                "cmid": str(uuid.uuid4()),
                "hardware": "00000000aa",
                "nonce": secrets.token_hex(16),
            }
            with Connection(Endpoint("127.0.0.1", ports[i % nodes]), "authority", 30) as c:
                answer = c.call(request)
            if not answer.get("ok"):
                raise RuntimeError(f"activation refused: {answer}")
            return time.perf_counter() - started

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(one, range(min(20, requests))))  # warm up: connections, caches
            started = time.perf_counter()
            latencies = sorted(pool.map(one, range(requests), timeout=600))
            elapsed = time.perf_counter() - started
        warm = min(20, requests)
        keys = ospp(env, "center", "keys", "--json")
        counted = f'"used": {requests + warm},' in keys
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        return (
            f"{setup:<9}{nodes:>6}{requests / elapsed:>14.0f}{p50:>10.1f}{p99:>10.1f}"
            f"   {'exact' if counted else 'COUNT MISMATCH'}"
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)
        if url and cluster:
            cluster.drop_database(url)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="activations per set-up")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads")
    parser.add_argument(
        "--setups",
        default="sqlite-1,pg-1,pg-2",
        help="comma-separated: sqlite-1, pg-1, pg-2",
    )
    args = parser.parse_args()
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    cluster = None
    if any(s.startswith("pg") for s in setups):
        try:
            cluster = pgcluster.start()
        except pgcluster.Unavailable as exc:
            print(f"PostgreSQL unavailable ({exc}); running SQLite only", file=sys.stderr)
            setups = [s for s in setups if not s.startswith("pg")]
    print(f"{args.requests} activations, {args.concurrency} concurrent clients, loopback")
    print(f"{'SETUP':<9}{'NODES':>6}{'ACTIVATIONS/S':>14}{'P50 MS':>10}{'P99 MS':>10}   COUNT")
    try:
        for setup in setups:
            print(run(setup, args.requests, args.concurrency, cluster), flush=True)
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
