"""Load generator for the KMS host: throughput, latency and memory on loopback.

    python bench/kms_load.py                       # the full table (about a minute)
    python bench/kms_load.py --requests 4000 --concurrency 64 --mode new
    python bench/kms_load.py --stored 1000000      # latency with 1,000,000 stored clients
    python bench/kms_load.py --prune 1000000       # ... and while the host prunes 100,000
    python bench/kms_load.py --scrape 20           # while /, /metrics are fetched 20 times/s
    python bench/kms_load.py --out before.json     # also write the results as JSON
    python bench/kms_load.py --v1                  # version-1 requests: a signature per answer

It starts a real ``ospp kms serve`` on 127.0.0.1 port 0 (activated host key, request log
written to a file, durable counts, signed responses: by default the requests ask for batch
signatures, one per group-commit batch, as ``ospp /act`` does), then runs a bounded number of
activation requests from ``--procs`` load processes, each an asyncio loop holding its share
of the concurrent clients. ``--mode new`` opens a connection per activation; ``--mode
persistent`` keeps one connection per client. Each request has a fresh CMID, so every one is
an insert into the host's store. Reports requests/s, p50/p99 latency, the host's CPU time
(user + system, from /proc) per acknowledged activation, the host's peak RSS and the largest
its WAL file grew. After each run it checks, reading kms.db read-only, that the host stored
exactly one new client per acknowledged activation. All traffic stays on 127.0.0.1 and every
run stops after its request count (and each load process after --timeout seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import socket
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

APP = "0ff1ce15-a989-479d-af46-f275c6370663"
DEFAULT_MAX_CLIENTS = 1_000_000  # the host's default limit on stored clients
WARM_UP = 200  # requests before a measured run
SKU = "fbdb3e18-a8ef-4fb3-9183-dffd60bd0984"  # ProPlus2021 KMS client


def frame(cmid: str, batch: bool = True) -> bytes:
    """A request frame; ``batch`` asks for a batch-signed answer (what ``ospp /act`` sends)."""
    request = {
        "v": 1,
        "op": "kms-activate",
        "app_id": APP,
        "sku_id": SKU,
        "cmid": cmid,
        "nonce": uuid.uuid4().hex,
        "client_time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "license_status": "OOB_GRACE",
        "workstation": "bench",
    }
    if batch:
        request["batch_signatures"] = True
    body = json.dumps(request).encode()
    return struct.pack(">I", len(body)) + body


async def _recv_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await loop.sock_recv(sock, n - len(data))
        if not chunk:
            raise ConnectionError("closed by the host")
        data += chunk
    return data


async def _connect(loop: asyncio.AbstractEventLoop, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    return sock


async def _client(
    port: int, count: int, mode: str, lat: list[float], deadline: float, batch: bool
) -> None:
    """One simulated client: raw non-blocking sockets keep the load generator's own cost low."""
    loop = asyncio.get_running_loop()
    sock = None
    frames = [
        frame(str(uuid.uuid4()), batch) for _ in range(count)
    ]  # built before the clock starts
    await asyncio.sleep(0)
    for data in frames:
        if time.monotonic() > deadline:
            raise TimeoutError("the run took longer than --timeout")
        start = time.perf_counter()
        if sock is None:
            sock = await _connect(loop, port)
        await loop.sock_sendall(sock, data)
        (n,) = struct.unpack(">I", await _recv_exactly(loop, sock, 4))
        body = await _recv_exactly(loop, sock, n)
        if b'"ok":true' not in body:
            raise RuntimeError(body[:200])
        if mode == "new":
            sock.close()
            sock = None
        lat.append(time.perf_counter() - start)
    if sock is not None:
        sock.close()


def _worker(
    port: int,
    clients: int,
    per_client: int,
    mode: str,
    timeout: float,
    out: multiprocessing.Queue[list[float]],
    batch: bool,
) -> None:
    lat: list[float] = []
    deadline = time.monotonic() + timeout

    async def main() -> None:
        await asyncio.gather(
            *(_client(port, per_client, mode, lat, deadline, batch) for _ in range(clients))
        )

    asyncio.run(main())
    out.put(lat)


def run_load(
    port: int,
    concurrency: int,
    requests: int,
    mode: str,
    procs: int,
    timeout: float = 300,
    batch: bool = True,
) -> tuple[float, list[float]]:
    procs = max(1, min(procs, concurrency))
    per_client = max(1, requests // concurrency)
    out: multiprocessing.Queue[list[float]] = multiprocessing.Queue()
    shares = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    workers = [
        multiprocessing.Process(
            target=_worker, args=(port, n, per_client, mode, timeout, out, batch)
        )
        for n in shares
    ]
    start = time.perf_counter()
    for w in workers:
        w.start()
    lat: list[float] = []
    for _ in workers:
        lat += out.get(timeout=timeout + 60)
    elapsed = time.perf_counter() - start
    for w in workers:
        w.join(timeout=60)
    return len(lat) / elapsed, lat


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), from /proc/PID/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def stored_rows(home: Path) -> tuple[int, int]:
    """Every client row in the host's store and its ``clients`` statistic (read-only)."""
    uri = (home / "kms" / "kms.db").resolve().as_uri() + "?mode=ro"
    db = sqlite3.connect(uri, uri=True, timeout=10, isolation_level=None)
    try:
        db.execute("BEGIN")  # one snapshot for both: the host may be pruning meanwhile
        (rows,) = db.execute("SELECT count(*) FROM clients").fetchone()
        (stat,) = db.execute("SELECT value FROM stats WHERE name='clients'").fetchone()
        db.execute("COMMIT")
    finally:
        db.close()
    return int(rows), int(stat)


def stored_bench_clients(home: Path) -> int:
    """How many clients the load generator's requests left in the host's store (read-only)."""
    uri = (home / "kms" / "kms.db").resolve().as_uri() + "?mode=ro"
    db = sqlite3.connect(uri, uri=True, timeout=10)
    try:
        (n,) = db.execute("SELECT count(*) FROM clients WHERE workstation='bench'").fetchone()
    finally:
        db.close()
    return int(n)


class Row:
    """One measured run: what the host spent on it and whether every answer was stored."""

    def __init__(self, host_pid: int, home: Path) -> None:
        self.pid = host_pid
        self.home = home
        self.stored_before = stored_bench_clients(home)
        self.cpu_before = cpu_seconds(host_pid)

    def finish(self, mode: str, clients: int, rate: float, lat: list[float]) -> dict[str, object]:
        cpu = cpu_seconds(self.pid) - self.cpu_before
        stored = stored_bench_clients(self.home) - self.stored_before
        if stored != len(lat):
            raise SystemExit(
                f"host stored {stored} new clients for {len(lat)} acknowledged activations"
            )
        return {
            "mode": mode,
            "clients": clients,
            "requests": len(lat),
            "req_per_s": round(rate, 1),
            "p50_ms": round(statistics.median(lat) * 1000, 3),
            "p99_ms": round(pct(lat, 0.99), 3),
            "host_cpu_ms_per_activation": round(cpu * 1000 / len(lat), 4),
            "stored_matches_acknowledged": True,
        }


def write_out(path: str | None, kind: str, args: argparse.Namespace, data: object) -> None:
    if path is None:
        return
    import platform

    result = {
        "kind": kind,
        "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "results": data,
    }
    Path(path).write_text(json.dumps(result, indent=2) + "\n")
    print(f"results written to {path}")


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def prepare(home: Path, max_clients: int | None = None) -> dict[str, str]:
    """An activated KMS host in ``home``; ``max_clients``: the most clients it keeps."""
    env = {
        **os.environ,
        "OSPP_HOME": str(home / "c"),
        "OSPP_CENTER_HOME": str(home / "a"),
        "OSPP_KMS_HOME": str(home / "kms"),
    }
    env.pop("OSPP_NOW", None)

    def ospp(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "ospp", *args],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    key = ospp("center", "issue-key", "--product", "ProPlus2021", "--channel", "kms-host").strip()
    ospp("kms", "install-key", key)
    ospp("kms", "activate")
    if max_clients is not None:
        ospp("kms", "set", "--max-clients", str(max_clients))
    return env


def prefill(home: Path, rows: int) -> None:
    """Store ``rows`` clients seen long ago, as a host with a long history would have."""
    db = sqlite3.connect(home / "kms" / "kms.db")
    old = int(time.time()) - 90 * 86400
    batch = 100_000
    with db:
        for start in range(0, rows, batch):
            db.executemany(
                "INSERT OR IGNORE INTO clients VALUES (?, ?, ?, 'old', ?, ?, 1, 'licensed')",
                (
                    (APP, str(uuid.UUID(int=i)), SKU, old, old)
                    for i in range(start, min(rows, start + batch))
                ),
            )
        db.execute("INSERT OR REPLACE INTO stats SELECT 'clients', count(*) FROM clients")
    db.close()


def start_host(
    env: dict[str, str], home: Path, http: bool = False
) -> tuple[subprocess.Popen[str], int]:
    from ospp.core.background import start_server

    args = ["kms", "serve", "--listen", "127.0.0.1:0", "--log", str(home / "requests.log")]
    if http:
        args += ["--http", "127.0.0.1:0"]
    return start_server(args, env, subprocess.DEVNULL)


class WalWatch:
    """The largest the host's WAL file (kms.db-wal) grew, looked at every 10 ms."""

    def __init__(self, home: Path) -> None:
        import threading

        self.path = home / "kms" / "kms.db-wal"
        self.peak = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)
        self.thread.start()

    def watch(self) -> None:
        while not self.done.wait(0.01):
            with contextlib.suppress(OSError):  # none yet
                self.peak = max(self.peak, self.path.stat().st_size)

    def finish(self) -> float:
        self.done.set()
        self.thread.join()
        return self.peak / 1e6


class Scraper:
    """Fetches the status page and /metrics, alternately, ``rate`` times a second."""

    def __init__(self, base: str, rate: float) -> None:
        import threading

        self.base = base
        self.rate = rate
        self.times: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.work, daemon=True)
        self.thread.start()

    def work(self) -> None:
        import urllib.request

        paths = ["/", "/metrics"]
        while not self.stop.wait(1 / self.rate):
            t = time.perf_counter()
            with urllib.request.urlopen(self.base + paths[len(self.times) % 2], timeout=10) as r:
                r.read()
            self.times.append(time.perf_counter() - t)

    def finish(self) -> str:
        self.stop.set()
        self.thread.join(timeout=15)
        if not self.times:
            return "no scrapes"
        return (
            f"{len(self.times)} scrapes, p50 {statistics.median(self.times) * 1000:.1f} ms, "
            f"p99 {pct(self.times, 0.99):.1f} ms"
        )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def table(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        env = prepare(home)
        host, port = start_host(env, home, http=args.scrape > 0)
        scraper = None
        if args.scrape > 0:
            assert host.stdout is not None
            scraper = Scraper("http://" + host.stdout.readline().split()[1], args.scrape)
        print(
            f"{'mode':<11}{'clients':>8}{'requests':>10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'host CPU ms/act':>17}"
        )
        rows = []
        wal = WalWatch(home)
        try:
            for mode in args.mode:
                for conc in args.concurrency:
                    row = Row(host.pid, home)
                    rate, lat = run_load(
                        port, conc, args.requests, mode, args.procs, args.timeout, not args.v1
                    )
                    rows.append(row.finish(mode, conc, rate, lat))
                    print(
                        f"{mode:<11}{conc:>8}{len(lat):>10}{rate:>10.0f}"
                        f"{statistics.median(lat) * 1000:>9.2f}{pct(lat, 0.99):>9.2f}"
                        f"{rows[-1]['host_cpu_ms_per_activation']:>17.3f}",
                        flush=True,
                    )
            rss = peak_rss_mb(host.pid)
            wal_mb = wal.finish()
            print(f"host peak RSS: {rss:.1f} MB; largest WAL (kms.db-wal): {wal_mb:.1f} MB")
            print("every run: stored clients = acknowledged activations")
            if scraper is not None:
                print(f"status page and /metrics meanwhile: {scraper.finish()}")
            write_out(
                args.out,
                "table",
                args,
                {"rows": rows, "host_peak_rss_mb": round(rss, 1), "peak_wal_mb": round(wal_mb, 1)},
            )
        finally:
            host.terminate()
            host.wait(timeout=30)


def stored_latency(args: argparse.Namespace) -> None:
    results = {}
    for rows in (1000, args.stored):
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            # The host keeps every client of the run (the prefilled ones, the warm-up's and the
            # measured run's): this measures serving with that many stored, not pruning
            # (--prune measures that).
            env = prepare(home, max(DEFAULT_MAX_CLIENTS, rows + WARM_UP + args.requests))
            t = time.perf_counter()
            prefill(home, rows)
            fill = time.perf_counter() - t
            host, port = start_host(env, home)
            try:
                run_load(port, 1, WARM_UP, "persistent", 1, args.timeout, not args.v1)
                row = Row(host.pid, home)
                rate, lat = run_load(
                    port, 1, args.requests, "persistent", 1, args.timeout, not args.v1
                )
                result = row.finish("persistent", 1, rate, lat)
                if stored_rows(home) != (rows + WARM_UP + len(lat),) * 2:
                    raise SystemExit(
                        f"host stores {stored_rows(home)} (rows, statistic), not the "
                        f"{rows} prefilled and {WARM_UP + len(lat)} acknowledged"
                    )
                result["stored"] = rows
                result["host_peak_rss_mb"] = round(peak_rss_mb(host.pid), 1)
                results[rows] = result
                print(
                    f"{rows:>9} stored clients (filled in {fill:.1f} s): "
                    f"p50 {result['p50_ms']:.3f} ms, p99 {result['p99_ms']:.3f} ms, "
                    f"host CPU {result['host_cpu_ms_per_activation']:.3f} ms/act, "
                    f"host peak RSS {result['host_peak_rss_mb']:.1f} MB",
                    flush=True,
                )
            finally:
                host.terminate()
                host.wait(timeout=30)
    small, big = results[1000], results[args.stored]
    ratios = {
        "p50": float(big["p50_ms"]) / float(small["p50_ms"]),  # type: ignore[arg-type]
        "cpu": float(big["host_cpu_ms_per_activation"])  # type: ignore[arg-type]
        / float(small["host_cpu_ms_per_activation"]),  # type: ignore[arg-type]
    }
    print(
        f"ratio {args.stored} / 1000 stored clients: p50 {ratios['p50']:.2f}, "
        f"host CPU {ratios['cpu']:.2f}"
    )
    print("every run: stored clients = acknowledged activations")
    write_out(args.out, "stored", args, {"runs": list(results.values()), "ratios": ratios})


def prune_latency(args: argparse.Namespace) -> None:
    """Latency and CPU with --prune old clients stored, first with nothing to prune, then
    while the host prunes a backlog of --backlog of them (its limit set below what it
    holds), on a fresh host each."""
    rows = args.prune
    runs = len(args.concurrency)
    keep_all = max(DEFAULT_MAX_CLIENTS, rows + WARM_UP + runs * args.requests)
    results = []
    print(
        f"{'':<12}{'clients':>8}{'requests':>10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'host CPU ms/act':>17}{'pruned':>9}{'left':>8}"
    )
    for label, limit in (("not pruning", keep_all), ("pruning", rows - args.backlog)):
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            env = prepare(home, limit)
            prefill(home, rows)
            host, port = start_host(env, home)
            try:
                run_load(port, 1, WARM_UP, "persistent", 1, args.timeout, not args.v1)
                time.sleep(1.5)  # the host's background thread starts pruning within a second
                for conc in args.concurrency:
                    before = stored_rows(home)[0]
                    row = Row(host.pid, home)
                    rate, lat = run_load(
                        port, conc, args.requests, "persistent", args.procs, args.timeout,
                        not args.v1,
                    )  # fmt: skip
                    result = row.finish("persistent", conc, rate, lat)
                    after, stat = stored_rows(home)
                    if after != stat:
                        raise SystemExit(f"{after} clients stored, the statistic says {stat}")
                    result.update(
                        pruning=label == "pruning",
                        max_clients=limit,
                        pruned=before + len(lat) - after,
                        left_to_prune=max(0, after - limit),
                    )
                    results.append(result)
                    print(
                        f"{label:<12}{conc:>8}{len(lat):>10}{rate:>10.0f}"
                        f"{result['p50_ms']:>9.2f}{result['p99_ms']:>9.2f}"
                        f"{result['host_cpu_ms_per_activation']:>17.3f}"
                        f"{result['pruned']:>9}{result['left_to_prune']:>8}",
                        flush=True,
                    )
            finally:
                host.terminate()
                host.wait(timeout=30)
    print(f"{rows} old clients prefilled; 'left' > 0: the run ended while pruning went on")
    print("every run: stored clients = acknowledged activations, rows = statistic")
    write_out(args.out, "prune", args, {"runs": results})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=4000, help="per run (bounded)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument(
        "--mode", nargs="+", choices=["new", "persistent"], default=["new", "persistent"]
    )
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes")
    parser.add_argument(
        "--stored",
        type=int,
        default=0,
        help="instead: compare latency at 1,000 and this many stored clients",
    )
    parser.add_argument(
        "--prune",
        type=int,
        default=0,
        metavar="ROWS",
        help="instead: with this many old clients stored, compare latency with nothing to "
        "prune and while the host prunes --backlog of them (--concurrency, persistent)",
    )
    parser.add_argument(
        "--backlog",
        type=int,
        default=100_000,
        help="with --prune: how many clients beyond its limit the host holds at the start",
    )
    parser.add_argument(
        "--scrape",
        type=float,
        default=0,
        help="serve --http and fetch / and /metrics this many times a second during the runs",
    )
    parser.add_argument(
        "--timeout", type=float, default=300, help="seconds a run may take at most (bounded)"
    )
    parser.add_argument(
        "--v1",
        action="store_true",
        help="send version-1 requests: each answer signed on its own, not once per batch",
    )
    parser.add_argument("--out", metavar="FILE", help="also write the results to FILE as JSON")
    args = parser.parse_args()
    if args.prune and args.prune - args.backlog < 100:  # kms set --max-clients takes >= 100
        parser.error("--prune ROWS must exceed --backlog by at least 100 (the least limit)")
    if args.prune:
        prune_latency(args)
    elif args.stored:
        stored_latency(args)
    else:
        table(args)


if __name__ == "__main__":
    main()
