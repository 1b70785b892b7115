"""Fleet operations at scale: create, act, renew a week later, status, timeline.

    python bench/fleet.py [--machines 10000] [--timeline-machines 1000]

Runs the real CLI in fresh processes against a throw-away home and a real `ospp kms serve`
on 127.0.0.1, and prints the wall time and peak RSS of each step. Targets on the project's
2-core machine (10,000 machines): create <= 20 s, act <= 60 s, service --all after
'clock advance 7d' <= 60 s, status --csv <= 3 s; a 210-day timeline of 1,000 <= 30 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from ospp.core.background import start_server


def step(label: str, args: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> str:
    """Run ``ospp ARGS``; print its wall time, its own CPU time and peak RSS (Linux; not the
    KMS host's) and its summary."""
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "ospp", *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )
        rss = ""
        if hasattr(os, "wait4"):
            _, status, usage = os.wait4(proc.pid, 0)
            code = os.waitstatus_to_exitcode(status)
            proc.returncode = code
            cpu = usage.ru_utime + usage.ru_stime
            rss = f"{cpu:6.2f} s CPU {usage.ru_maxrss / 1024:6.1f} MB peak"
        else:
            code = proc.wait()
        wall = time.perf_counter() - start
        out.seek(0)
        text = out.read()
    if code not in ok:
        raise SystemExit(f"{label}: exit {code}\n{text[-3000:]}")
    last = [line for line in text.splitlines() if line.startswith("Summary")]
    print(f"{label:<34} {wall:7.2f} s  {rss}  {last[-1] if last else ''}", flush=True)
    return text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--machines", type=int, default=10_000)
    parser.add_argument("--timeline-machines", type=int, default=1_000)
    args = parser.parse_args()
    n, tl = args.machines, min(args.timeline_machines, args.machines)
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "OSPP_HOME": os.path.join(tmp, "client"),
            "OSPP_CENTER_HOME": os.path.join(tmp, "center"),
            "OSPP_KMS_HOME": os.path.join(tmp, "kms"),
        }
        env.pop("OSPP_NOW", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        key = json.loads(
            subprocess.run(
                [sys.executable, "-m", "ospp", "center", "issue-key", "--product",
                 "ProPlus2021", "--channel", "kms-host", "--json"],
                env=env, capture_output=True, text=True, check=True,
            ).stdout
        )["data"]["key"]  # fmt: skip
        for cmd in (["kms", "install-key", key], ["kms", "activate"]):
            subprocess.run([sys.executable, "-m", "ospp", *cmd], env=env, check=True,
                           stdout=subprocess.DEVNULL)  # fmt: skip
        log = os.path.join(tmp, "kms-requests.log")
        server, port = start_server(
            ["kms", "serve", "--listen", "127.0.0.1:0", "--log", log], env, subprocess.DEVNULL
        )
        try:
            print(f"{n} machines, KMS host on 127.0.0.1:{port}, python {sys.version.split()[0]}")
            step("clock set (now, running)", ["clock", "set", time.strftime("%Y-%m-%dT%H:%M:%SZ",
                 time.gmtime())], env)  # fmt: skip
            step(f"fleet create {n}", ["fleet", "create", "ws", str(n), "--product",
                 "ProPlus2021", "--sethst", f"127.0.0.1:{port}"], env)  # fmt: skip
            # the first four stay below the KMS threshold of 5: exit 1 is expected
            step(f"fleet act ({n})", ["fleet", "act"], env, ok=(0, 1))
            step(f"fleet status --csv ({n})", ["fleet", "status", "--csv"], env)
            step("clock advance 7d", ["clock", "advance", "7d"], env)
            step(f"service --all ({n})", ["service", "--all"], env)
            step(f"fleet status --csv ({n})", ["fleet", "status", "--csv"], env)
            # ws00* of 10,000 machines is ws00001..ws00999: 999 machines
            glob = "ws*" if tl == n else f"ws{'0' * (len(str(n)) - len(str(tl)) + 1)}*"
            step(
                f"timeline 210 days ({glob})",
                ["fleet", "timeline", "--step", "1d", "--machines", glob, "--svg",
                 os.path.join(tmp, "t.svg")],
                env,
            )  # fmt: skip
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
