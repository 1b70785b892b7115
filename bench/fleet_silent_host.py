"""``fleet act`` against a KMS host that accepts connections and never answers.

    python bench/fleet_silent_host.py [--machines 500]

Creates the machines in a throw-away home, each with /sethst pointing at a TCP listener on
127.0.0.1 that accepts and never reads or answers, runs the real CLI once, and prints its wall
time, summary and the connections the host got. The pass should cost about two request
timeouts (5 s each), whatever the number of machines (one more every 30 s of a longer pass):
the first machine waits for the host, a second looks at it again, and the others are reported
'not tried'.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=500, help="How many (1 to 10,000).")
    count = max(1, min(10_000, parser.parse_args().machines))
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(server.accept()[0])  # never read, never answered

    listener = threading.Thread(target=accept, daemon=True)
    listener.start()
    address = f"127.0.0.1:{server.getsockname()[1]}"
    try:
        with tempfile.TemporaryDirectory() as home:
            env = {**os.environ, "OSPP_HOME": home, "OSPP_RESOLV_CONF": os.devnull}
            ospp = [sys.executable, "-m", "ospp"]
            create = ["fleet", "create", "b", str(count), "--product", "ProPlus2021"]
            subprocess.run([*ospp, *create, "--sethst", address], env=env, check=True,
                           capture_output=True, timeout=600)  # fmt: skip
            start = time.perf_counter()
            ran = subprocess.run([*ospp, "fleet", "act"], env=env, capture_output=True,
                                 text=True, timeout=600)  # fmt: skip
            wall = time.perf_counter() - start
    finally:
        stop.set()
        listener.join(timeout=5)
        server.close()
        for conn in held:
            conn.close()
    print(f"machines {count}: fleet act {wall:.1f} s, exit {ran.returncode}, "
          f"{len(held)} connection(s) to the silent host")  # fmt: skip
    print(ran.stdout.splitlines()[-1] if ran.stdout else ran.stderr)


if __name__ == "__main__":
    main()
