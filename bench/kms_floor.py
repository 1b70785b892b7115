"""What one persistent KMS client's latency is made of: the floor of the host's stack.

    python bench/kms_floor.py                  # 6,000 requests per server and client, 3 rounds
    python bench/kms_floor.py --rounds 5 --out floor.json
    python bench/kms_floor.py --loop uvloop --servers frames +both   # uvloop's floor instead

One client sends the bench's activation requests one after another on one connection (what
``bench/kms_load.py --concurrency 1 --mode persistent`` does), first to minimal servers that
do only part of a KMS host's work, then to a real ``ospp kms serve``:

- ``frames``: asyncio protocol, one ``json.loads`` per frame, a fixed answer of the real
  answer's size;
- ``+sqlite``: and one SQLite transaction per request (the host's ``clients`` table and
  index, WAL, ``synchronous=NORMAL``, an upsert), committed before the answer is sent;
- ``+ed25519``: and one Ed25519 signature over the answer (no store);
- ``+both``: the transaction and the signature, the least a durable, signed answer costs
  with SQLite;
- ``+append`` and ``+append+ed25519``: instead of the transaction, one ``os.write`` of the
  client's line to a file opened for appending, before the answer (as durable as the WAL
  commit: it survives the server's kill, not the machine's power loss), without and with
  the signature: what a host that journals its counts and applies them to SQLite off the
  request's path would pay on it;
- ``ospp``: ``ospp kms serve`` (activated host key, request log to a file, batch-signed
  answers), checked afterwards to have stored one client per acknowledged request.

Each server is driven by two clients in turn: ``asyncio`` (the load generator of
``bench/kms_load.py``) and ``blocking`` (one ``sendall`` and two ``recv`` per request, the
cheapest a Python client gets). ``--loop uvloop`` runs the minimal servers on uvloop's
event loop instead of asyncio's (uvloop is not a dependency of ospp: ``pip install uvloop``
first), to see what a faster event loop takes off the floor. It prints p50 and p99 latency
and the server's CPU time per request (user + system, from /proc), the median over the
rounds; rounds alternate the order.
All traffic stays on 127.0.0.1; every run stops after its request count.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import typing
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kms_load  # the load generator and host set-up this bench shares

HEADER = struct.Struct(">I")
MODES = ("frames", "+sqlite", "+ed25519", "+both", "+append", "+append+ed25519")
ANSWER_BYTES = 1400  # about the size of a real batch-signed answer with its certificate


def serve(mode: str, directory: str, loop: str = "asyncio") -> None:
    """A minimal server doing part of a KMS host's work (see the module docstring), on
    asyncio's event loop or on uvloop's."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    db = sqlite3.connect(Path(directory) / "floor.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE clients (app TEXT NOT NULL, cmid TEXT NOT NULL, last_seen INTEGER NOT NULL,"
        " requests INTEGER NOT NULL, PRIMARY KEY (app, cmid)) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX clients_recent ON clients (app, last_seen)")
    upsert = (
        "INSERT INTO clients VALUES (?, ?, ?, 1) ON CONFLICT (app, cmid) DO UPDATE "
        "SET last_seen=excluded.last_seen, requests=requests+1 RETURNING requests"
    )
    store = mode in ("+sqlite", "+both")
    sign = mode in ("+ed25519", "+both", "+append+ed25519")
    journal = (
        os.open(Path(directory) / "floor.journal", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if mode.startswith("+append")
        else None
    )
    filler = "x" * (ANSWER_BYTES - 200)

    class Floor(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            # uvloop's transports are not asyncio.Transport instances, but behave as one
            self.transport = typing.cast(asyncio.Transport, transport)
            self.buffer = bytearray()

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while len(self.buffer) >= 4:
                (length,) = HEADER.unpack_from(self.buffer)
                if len(self.buffer) < 4 + length:
                    return
                request = json.loads(bytes(self.buffer[4 : 4 + length]))
                del self.buffer[: 4 + length]
                if store:
                    db.execute("BEGIN IMMEDIATE")
                    db.execute(upsert, (request["app_id"], request["cmid"], int(time.time())))
                    db.execute("COMMIT")
                if journal is not None:
                    line = f"{request['app_id']} {request['cmid']} {int(time.time())}\n"
                    os.write(journal, line.encode())
                body = json.dumps(
                    {"cmid": request["cmid"], "nonce": request["nonce"], "x": filler}
                ).encode()
                if sign:
                    body = body[:-1] + b',"ok":true,"signature":"%b"}' % base64.b64encode(
                        key.sign(body)
                    )
                else:
                    body = body[:-1] + b',"ok":true,"signature":"%b"}' % (b"A" * 88)
                self.transport.write(HEADER.pack(len(body)) + body)

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Floor, "127.0.0.1", 0)
        print("LISTENING", server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    factory = None
    if loop == "uvloop":
        import importlib  # uvloop is not a dependency of ospp: pip install uvloop to compare

        factory = importlib.import_module("uvloop").new_event_loop
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main())
    finally:
        if journal is not None:
            os.close(journal)


def blocking_client(port: int, frames: list[bytes]) -> list[float]:
    """One request at a time on one connection, with plain blocking calls."""
    lat = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for data in frames:
            start = time.perf_counter()
            sock.sendall(data)
            (length,) = HEADER.unpack(_recv_exactly(sock, 4))
            body = _recv_exactly(sock, length)
            if b'"ok":true' not in body:
                raise RuntimeError(body[:200])
            lat.append(time.perf_counter() - start)
    return lat


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = sock.recv(n)
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed by the server")
        data += chunk
    return data


def asyncio_client(port: int, frames: list[bytes]) -> list[float]:
    """The load generator of bench/kms_load.py with one persistent client (its own process,
    frames of the same form, as many as ``frames``)."""
    _, lat = kms_load.run_load(port, 1, len(frames), "persistent", 1)
    return lat


CLIENTS = {"asyncio": asyncio_client, "blocking": blocking_client}


def measure(server: str, client: str, requests: int, loop: str) -> dict[str, float]:
    """Start ``server``, drive it with ``client`` (after 200 warm-up requests), stop it."""
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        if server == "ospp":
            env = kms_load.prepare(home)
            proc, port = kms_load.start_host(env, home)
        else:
            proc = subprocess.Popen(
                [sys.executable, __file__, "--serve", server, tmp, "--loop", loop],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert proc.stdout is not None
            port = int(proc.stdout.readline().split()[1])
        try:
            drive = CLIENTS[client]
            drive(port, [kms_load.frame(str(uuid.uuid4())) for _ in range(kms_load.WARM_UP)])
            frames = [kms_load.frame(str(uuid.uuid4())) for _ in range(requests)]
            stored = kms_load.stored_bench_clients(home) if server == "ospp" else 0
            cpu = kms_load.cpu_seconds(proc.pid)
            lat = drive(port, frames)
            cpu = kms_load.cpu_seconds(proc.pid) - cpu
            if server == "ospp" and kms_load.stored_bench_clients(home) - stored != len(lat):
                raise SystemExit("the host did not store one client per acknowledged request")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return {
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": kms_load.pct(lat, 0.99),
        "cpu_ms_per_request": cpu * 1000 / len(lat),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=6000, help="requests per run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (the median is shown)")
    parser.add_argument("--out", help="also write the results as JSON to this file")
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the minimal servers' event loop (uvloop: pip install uvloop first)",
    )
    parser.add_argument(
        "--servers",
        nargs="+",
        choices=(*MODES, "ospp"),
        help="only these servers (by default every one)",
    )
    parser.add_argument("--serve", nargs=2, metavar=("MODE", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], args.serve[1], args.loop)
        return
    servers = args.servers or [*MODES, "ospp"]
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    for round_ in range(args.rounds):
        order = servers if round_ % 2 == 0 else servers[::-1]
        for server in order:
            for client in CLIENTS:
                runs.setdefault((server, client), []).append(
                    measure(server, client, args.requests, args.loop)
                )
        print(f"round {round_ + 1} of {args.rounds} done", file=sys.stderr, flush=True)
    print(f"{'server':<17}{'client':<10}{'p50 ms':>9}{'p99 ms':>9}{'server CPU ms/req':>19}")
    results = []
    for server in servers:
        for client in CLIENTS:
            got = runs[(server, client)]
            row = {
                "server": server,
                "client": client,
                "rounds": len(got),
                **{k: round(statistics.median(r[k] for r in got), 4) for k in got[0]},
            }
            results.append(row)
            print(
                f"{server:<17}{client:<10}{row['p50_ms']:>9.3f}{row['p99_ms']:>9.3f}"
                f"{row['cpu_ms_per_request']:>19.3f}"
            )
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                {"kind": "kms-floor", "loop": args.loop, "cpus": os.cpu_count(), "rows": results},
                indent=2,
            )
            + "\n"
        )
        print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
