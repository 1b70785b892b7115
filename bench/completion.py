"""TAB latency: what one completion request costs, next to a hello-world click command.

    python bench/completion.py [--runs 20]

The shell runs ``ospp`` on every TAB. For each line below this runs the request the bash script
from completions/ sends, in fresh processes on a store with two machines, and prints the median
and p90 wall time and the ratio to hello-world click.
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
LINES = [
    "ospp /cachst:",
    "ospp /dst",
    "ospp /dstatus ",
    "ospp install-product Pro",
    "ospp center issue-key --product Visio",
    "ospp kms ",
]


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "OSPP_HOME": tmp}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        import ospp as package

        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", os.path.dirname(package.__file__)],
            env=env,
            check=True,
        )
        for machine in ("pc01", "lab-7"):
            subprocess.run(
                [sys.executable, "-m", "ospp", "install-product", "ProPlus2021", machine],
                env=env,
                stdout=subprocess.DEVNULL,
                check=True,
            )
        hello = os.path.join(tmp, "hello.py")
        with open(hello, "w") as f:
            f.write(HELLO)
        base = [timed([sys.executable, hello], env) for _ in range(args.runs)]
        reference = statistics.median(base)
        print(f"{'hello-world click':<40} median {reference * 1000:6.1f} ms")
        for line in LINES:
            request = {
                **env,
                "_OSPP_COMPLETE": "bash_complete",
                "COMP_LINE": line,
                "COMP_POINT": str(len(line)),
                "COMP_WORDBREAKS": " \t\n\"'><=;|&(:",
                "COMP_WORDS": "",
                "COMP_CWORD": "0",
            }
            times = sorted(timed([sys.executable, "-m", "ospp"], request) for _ in range(args.runs))
            median = statistics.median(times)
            p90 = times[int(len(times) * 0.9) - 1]
            print(
                f"{line!r:<40} median {median * 1000:6.1f} ms  p90 {p90 * 1000:6.1f} ms  "
                f"x{median / reference:.2f}"
            )


if __name__ == "__main__":
    main()
