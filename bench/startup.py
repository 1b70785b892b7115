"""Start-up time: `ospp /dstatus` against a hello-world click command, side by side.

    python bench/startup.py [--runs 30]

Runs each command alternately in fresh processes on a store holding one installed product and
prints the median and p90 wall time of each, and their ratio (the target is <= 1.5).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HELLO = "import click\n@click.command()\ndef hello():\n    click.echo('hello')\nhello()\n"


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument(
        "--activated",
        action="store_true",
        help="time a store whose product is MAK-activated (status verifies its signature)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "OSPP_HOME": tmp}
        # Time what an installed ospp does: bytecode cached, as pip writes it at install.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        import ospp as package

        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", os.path.dirname(package.__file__)],
            env=env,
            check=True,
        )
        hello = os.path.join(tmp, "hello.py")
        with open(hello, "w") as f:
            f.write(HELLO)
        env["OSPP_CENTER_HOME"] = os.path.join(tmp, "center")
        if args.activated:
            key = subprocess.run(
                [sys.executable, "-m", "ospp", "center", "issue-key", "--product", "ProPlus2021"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            setup = ["inpkey", key, "--act"]
        else:
            setup = ["install-product", "ProPlus2021"]
        subprocess.run(
            [sys.executable, "-m", "ospp", *setup], env=env, stdout=subprocess.DEVNULL, check=True
        )
        ospp = [sys.executable, "-m", "ospp", "/dstatus"]
        base = [sys.executable, hello]
        for cmd in (ospp, base):  # warm the page cache and the bytecode cache
            timed(cmd, env)
        a, b = [], []
        for _ in range(args.runs):
            a.append(timed(ospp, env))
            b.append(timed(base, env))

    def row(name: str, xs: list[float]) -> str:
        q = statistics.quantiles(xs, n=10)
        return (
            f"{name:<22} median {statistics.median(xs) * 1000:6.1f} ms   p90 {q[8] * 1000:6.1f} ms"
        )

    print(f"runs: {args.runs} each, python {sys.version.split()[0]}")
    print(row("hello-world click", b))
    print(row("ospp /dstatus", a))
    print(f"ratio (median): {statistics.median(a) / statistics.median(b):.2f}")


if __name__ == "__main__":
    main()
