"""Status-page clients that never read their answer: what they cost the KMS host.

    python bench/http_stalled.py                 # 200 such clients (about 20 s)
    python bench/http_stalled.py --clients 1000

Starts a real ``ospp kms serve --http`` on 127.0.0.1 port 0 with 50 stored clients whose CMID
and workstation name are made of quotes (the largest first page a store can hold, about 48
KB; hosts now take only GUIDs as CMIDs, but stores kept from before may hold any), then
opens ``--clients`` connections that each ask for the page and never read, with the smallest
receive buffer and 300-byte segments, as a slow distant client has: the host's kernel takes
only about 17 KB of each answer, the rest stays in the host. Prints the host's RSS and open
descriptors when idle, once every stalled client has had the first byte of its
answer, and after the sending deadline (10 s), and how long a normal fetch of the page takes
while they wait. Linux only (reads /proc). Every client is closed when the script ends.
"""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kms_load import APP, SKU, prepare, start_host

RCVBUF = 1024
MSS = 300


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def store_wide_clients(home: Path) -> None:
    now = int(time.time())
    db = sqlite3.connect(home / "kms" / "kms.db")
    with db:
        db.executemany(
            "INSERT INTO clients VALUES (?, ?, ?, ?, ?, ?, 1, 'licensed')",
            ((APP, '"' * 36 + f"{i:04d}", SKU, '"' * 60 + f"{i:04d}", now, now) for i in range(50)),
        )
        db.execute("INSERT OR REPLACE INTO stats SELECT 'clients', count(*) FROM clients")
    db.close()


def stalled(host: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, MSS)
    s.settimeout(30)
    s.connect((host, port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    s.recv(1, socket.MSG_PEEK)  # the host has started sending the answer
    return s


def fetch(base: str) -> tuple[int, float]:
    started = time.perf_counter()
    with urllib.request.urlopen(base + "/", timeout=30) as resp:
        size = len(resp.read())
    return size, time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=200, help="stalled clients (default 200)")
    ap.add_argument("--wait", type=float, default=12.0, help="seconds to wait after (12)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        env = prepare(home)
        store_wide_clients(home)
        proc, _ = start_host(env, home, http=True)
        assert proc.stdout is not None
        hostport = proc.stdout.readline().split()[1]
        host, port = hostport.rsplit(":", 1)
        base = f"http://{hostport}"
        held: list[socket.socket] = []
        try:
            size, _ = fetch(base)
            time.sleep(0.5)
            rows = [("idle", rss_kib(proc.pid), fds(proc.pid), fetch(base)[1])]
            for _ in range(args.clients):
                held.append(stalled(host, int(port)))
            time.sleep(0.5)
            rows.append(
                (f"{args.clients} stalled", rss_kib(proc.pid), fds(proc.pid), fetch(base)[1])
            )
            time.sleep(args.wait)
            rows.append(
                (f"{args.wait:g} s later", rss_kib(proc.pid), fds(proc.pid), fetch(base)[1])
            )
        finally:
            for s in held:
                s.close()
            proc.terminate()
            proc.wait(timeout=30)
        print(f"page: {size} bytes; {args.clients} clients that never read it")
        print(f"{'when':<20} {'RSS KiB':>9} {'fds':>6} {'GET / ms':>9}")
        for when, rss, n, seconds in rows:
            print(f"{when:<20} {rss:>9} {n:>6} {seconds * 1000:>9.1f}")


if __name__ == "__main__":
    main()
