"""Fleet operations at scale: create, act, renew a week later, status, timeline.

    python bench/fleet.py [--machines 10000] [--timeline-machines 1000]
    python bench/fleet.py --machines 1000,10000     # peak RSS side by side: is it flat?

Runs the real CLI in fresh processes against a throw-away home and a real `ospp kms serve`
on 127.0.0.1, and prints the wall time and peak RSS of each step. Targets on the project's
2-core machine (10,000 machines): create <= 20 s, act <= 60 s, service --all after
'clock advance 7d' <= 60 s, status --csv <= 3 s; a 210-day timeline of 1,000 <= 30 s.
Memory should not grow with the fleet: given several sizes, the script runs every step at
each size (a fresh home and host each time) and ends with a table of peak RSS by size.
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

PEAKS: dict[str, dict[int, float]] = {}  # step -> fleet size -> peak RSS in MB

# Linux counts the RSS of the process that forked a command in the command's peak RSS (the
# forked copy is exec'd, but its peak is kept), so each command is started by this small
# process (about 9 MB), which reports the command's CPU time and peak RSS, and not by this
# script, which grows as it runs.
RUSAGE = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, "-m", "ospp", *sys.argv[2:]])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{usage.ru_utime + usage.ru_stime} {usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def step(
    label: str,
    args: list[str],
    env: dict[str, str],
    ok: tuple[int, ...] = (0,),
    size: int = 0,
    name: str = "",
) -> str:
    """Run ``ospp ARGS``; print its wall time, its own CPU time and peak RSS (Linux; not the
    KMS host's) and its summary (the output's last 64 KB). The peak is kept under ``name`` and
    ``size`` for the table."""
    with tempfile.TemporaryFile("w+b") as out, tempfile.TemporaryDirectory() as tmp:
        usage = os.path.join(tmp, "rusage")
        start = time.perf_counter()
        if hasattr(os, "wait4"):
            command = [sys.executable, "-c", RUSAGE, usage, *args]
        else:
            command = [sys.executable, "-m", "ospp", *args]
        code = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
        wall = time.perf_counter() - start
        rss = ""
        if os.path.exists(usage):
            with open(usage) as f:
                cpu, peak = (float(x) for x in f.read().split())
            rss = f"{cpu:6.2f} s CPU {peak / 1024:6.1f} MB peak"
            if name:
                PEAKS.setdefault(name, {})[size] = peak / 1024
        out.seek(max(0, out.seek(0, os.SEEK_END) - 65536))
        text = out.read().decode("utf-8", "replace")
    if code not in ok:
        raise SystemExit(f"{label}: exit {code}\n{text[-3000:]}")
    last = [line for line in text.splitlines() if line.startswith("Summary")]
    print(f"{label:<34} {wall:7.2f} s  {rss}  {last[-1] if last else ''}", flush=True)
    return text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--machines", default="10000", help="Fleet size, or sizes separated by commas."
    )
    parser.add_argument("--timeline-machines", type=int, default=1_000)
    args = parser.parse_args()
    sizes = [int(n) for n in args.machines.split(",")]
    for n in sizes:
        run_size(n, min(args.timeline_machines, n))
    if len(sizes) > 1:
        print(f"\npeak RSS (MB) {'':<26}" + "".join(f"{n:>10,}" for n in sizes))
        for label, peaks in PEAKS.items():
            cells = "".join(f"{peaks[n]:10.1f}" if n in peaks else f"{'-':>10}" for n in sizes)
            print(f"{label:<40}{cells}")


def run_size(n: int, tl: int) -> None:
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
                 "ProPlus2021", "--sethst", f"127.0.0.1:{port}"], env, size=n,
                 name="fleet create")  # fmt: skip
            # the first four stay below the KMS threshold of 5: exit 1 is expected
            step(f"fleet act ({n})", ["fleet", "act"], env, ok=(0, 1), size=n, name="fleet act")
            step(f"fleet status --csv ({n})", ["fleet", "status", "--csv"], env, size=n,
                 name="fleet status --csv")  # fmt: skip
            step("clock advance 7d", ["clock", "advance", "7d"], env)
            step(f"service --all ({n})", ["service", "--all"], env, size=n,
                 name="service --all (renewals)")  # fmt: skip
            step(f"service --all --json ({n})", ["service", "--all", "--json"], env, size=n,
                 name="service --all --json (none due)")  # fmt: skip
            step(f"fleet status --csv ({n})", ["fleet", "status", "--csv"], env)
            step(f"fleet status --json ({n})", ["fleet", "status", "--json"], env, size=n,
                 name="fleet status --json")  # fmt: skip
            exported = os.path.join(tmp, "fleet.csv")
            step(f"fleet export ({n})", ["fleet", "export", exported], env, size=n,
                 name="fleet export")  # fmt: skip
            other = {**env, "OSPP_HOME": os.path.join(tmp, "imported")}
            step(f"fleet import ({n})", ["fleet", "import", exported], other, size=n,
                 name="fleet import")  # fmt: skip
            # ws00* of 10,000 machines is ws00001..ws00999: 999 machines
            glob = "ws*" if tl == n else f"ws{'0' * (len(str(n)) - len(str(tl)) + 1)}*"
            step(
                f"timeline 210 days ({glob})",
                ["fleet", "timeline", "--step", "1d", "--machines", glob, "--svg",
                 os.path.join(tmp, "t.svg")],
                env, size=n, name=f"timeline 210 days ({tl} machines)",
            )  # fmt: skip
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
