"""Start-up time: `ospp /dstatus` against a hello-world click command, in pairs.

    python bench/startup.py [--runs 40] [--case installed|activated|both] [--callgrind]

For each case (a store with one product installed; the same product MAK-activated, so that
`/dstatus` checks its seal and hardware binding) it runs `ospp /dstatus` (through a script
like the one pip installs as `ospp`) and a hello-world click script back to back in fresh
processes, `--runs` rounds, rotating which goes first, with bytecode cached as a
pip install leaves it. It prints the median wall time of
each with its spread (10th to 90th percentile), their CPU time (user + system), and the ratio
`/dstatus` / hello-world: the median of the per-pair ratios (the target is <= 1.15) with its
spread, and the ratio of the medians. A third script runs in each round too: hello world
importing the standard modules `/dstatus` is built on (sqlite3; json too on the activated
store) and doing nothing with them, the floor of that ratio for ospp as it is
designed. The load average before and after is printed too: on a shared machine it moves
every figure.

It times the ``ospp`` package that its Python imports, copied into a fresh virtual environment
as a wheel install lays it out, with this environment's packages (click...) visible through a
``.pth`` file. A development install (``pip install -e``) loads its import finder at every
start, and that finder imports pathlib, re and urllib.parse, which would then count as part of
the floor; ``--in-place`` times this Python as it is anyway. To compare two commits in one
session, run it with the Python of a virtual environment holding each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence

HELLO = "import click\n@click.command()\ndef hello():\n    click.echo('hello')\nhello()\n"
# The same hello world importing, beside click, the standard modules that `/dstatus` cannot do
# without: sqlite3 (the store), and json (the activation) on an activated store. It does no
# work, so its ratio to hello world is the lowest any `/dstatus` built on them can reach. (Its
# paths are os.path strings: pathlib would add a tenth of hello world, see ospp.core.paths.)
FLOOR = {
    "installed": "import sqlite3\n" + HELLO,
    "activated": "import json, sqlite3\n" + HELLO,
}


def console_script() -> str:
    """What pip writes as the ``ospp`` command, for the entry point that the ospp installed for
    this Python declares (so that a virtual environment holding another commit times that
    commit's), run by the same Python as the hello-world script (``python -m ospp`` would add
    runpy's imports)."""
    from importlib.metadata import entry_points

    found = entry_points(group="console_scripts", name="ospp")
    if not found:
        raise SystemExit("ospp is not installed for this Python: pip install -e .")
    module, function = next(iter(found)).value.split(":")
    return (
        f"import re\nimport sys\nfrom {module} import {function}\n"
        "if __name__ == '__main__':\n"
        "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
        f"    sys.exit({function}())\n"
    )


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of ``cmd``."""
    if os.name == "nt":  # no getrusage: wall time only (CPU reads 0)
        start = time.perf_counter()
        subprocess.run(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
        )
        return time.perf_counter() - start, 0.0
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # stderr hidden too: /dstatus words its grace-period reminder there
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu


def spread(xs: Sequence[float], scale: float = 1000.0, fmt: str = "6.1f") -> str:
    q = statistics.quantiles(xs, n=10)
    return (
        f"{statistics.median(xs) * scale:{fmt}} "
        f"({q[0] * scale:{fmt}} - {q[8] * scale:{fmt}})".replace("( ", "(")
    )


PYTHON = sys.executable  # the Python that runs both commands (see plain_install)


def ospp(args: list[str], env: dict[str, str]) -> str:
    ran = subprocess.run(
        [PYTHON, "-m", "ospp", *args], env=env, capture_output=True, text=True, check=True
    )
    return ran.stdout


def plain_install(tmp: str, package: str, env: dict[str, str]) -> str:
    """A virtual environment in ``tmp`` with a copy of the ``package`` directory in its
    site-packages, seeing this Python's packages through a .pth file; its Python."""
    venv = os.path.join(tmp, "venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    scripts, exe = ("Scripts", "python.exe") if os.name == "nt" else ("bin", "python")
    python = os.path.join(venv, scripts, exe)
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    target = os.path.join(site, "ospp")
    shutil.copytree(package, target, ignore=shutil.ignore_patterns("__pycache__"))
    with open(os.path.join(site, "dependencies.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([python, "-m", "compileall", "-q", target], env=env, check=True)
    probe = "import ospp, sys; print(ospp.__file__, sorted(m for m in sys.modules if 'edit' in m))"
    seen = subprocess.run(
        [python, "-c", probe], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    if not seen[0].startswith(target) or seen[1] != "[]":
        raise SystemExit(f"the plain install is not what runs: {seen}")
    return python


def setup(case: str, env: dict[str, str]) -> None:
    ospp(["install-product", "ProPlus2021"], env)
    if case == "activated":
        key = ospp(["center", "issue-key", "--product", "ProPlus2021"], env).strip()
        ospp(["inpkey", key, "--act"], env)
        if "---LICENSED---" not in ospp(["/dstatus"], env):
            raise SystemExit("setup failed: the product is not LICENSED")


def instructions(cmd: list[str], env: dict[str, str]) -> int:
    """Instructions one run of ``cmd`` executes, counted by valgrind's callgrind: unlike wall
    or CPU time, the same from one run to the next on a busy machine (string hashing is fixed
    with PYTHONHASHSEED so that dictionaries grow alike), but blind to the kernel's share
    (opening files, mapping libraries) and to cache misses."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + os.devnull, *cmd],
        env={**env, "PYTHONHASHSEED": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
    )
    for line in done.stderr.splitlines():
        if "Collected :" in line:
            return int(line.split(":")[-1])
    raise SystemExit(f"callgrind counted nothing: {done.stderr[-500:]}")


def run_case(
    case: str, runs: int, base_env: dict[str, str], default_home: bool, callgrind: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in base_env.items() if not k.startswith("OSPP_")}
        if default_home:  # the per-user data directory, found by platformdirs, in tmp
            env.update(HOME=tmp, XDG_DATA_HOME=os.path.join(tmp, "data"), OSPP_CENTER_DB="")
        else:
            env.update(
                OSPP_HOME=os.path.join(tmp, "client"),
                OSPP_CENTER_HOME=os.path.join(tmp, "center"),
                OSPP_KMS_HOME=os.path.join(tmp, "kms"),
                OSPP_CENTER_DB="",
            )
        hello = os.path.join(tmp, "hello.py")
        with open(hello, "w") as f:
            f.write(HELLO)
        floor = os.path.join(tmp, "floor.py")
        with open(floor, "w") as f:
            f.write(FLOOR[case])
        script = os.path.join(tmp, "ospp")
        with open(script, "w") as f:
            f.write(console_script())
        setup(case, env)
        cmds = {
            "ospp": [PYTHON, script, "/dstatus"],
            "hello": [PYTHON, hello],
            "floor": [PYTHON, floor],
        }
        for cmd in cmds.values():  # warm the page cache and the bytecode cache
            timed(cmd, env)
        load_before = os.getloadavg()[0]
        wall: dict[str, list[float]] = {name: [] for name in cmds}
        cpu: dict[str, list[float]] = {name: [] for name in cmds}
        names = list(cmds)
        for i in range(runs):
            order = names[i % 3 :] + names[: i % 3]  # each goes first, second, third in turn
            if i % 6 >= 3:
                order.reverse()
            for name in order:
                w, c = timed(cmds[name], env)
                wall[name].append(w)
                cpu[name].append(c)
        load_after = os.getloadavg()[0]
        counted = {name: instructions(cmd, env) for name, cmd in cmds.items()} if callgrind else {}
    ratios = [a / b for a, b in zip(wall["ospp"], wall["hello"], strict=True)]
    cpu_ratios = [a / b for a, b in zip(cpu["ospp"], cpu["hello"], strict=True) if b > 0]
    where = "the default data directory" if default_home else "OSPP_HOME"
    print(f"{case}, in {where}: {runs} pairs, load average {load_before:.2f} -> {load_after:.2f}")
    print("                      wall ms, median (p10 - p90)   CPU ms, median (p10 - p90)")
    print(f"  hello-world click   {spread(wall['hello']):<29} {spread(cpu['hello'])}")
    print(f"  ospp /dstatus       {spread(wall['ospp']):<29} {spread(cpu['ospp'])}")
    print(f"  floor (see FLOOR)   {spread(wall['floor']):<29} {spread(cpu['floor'])}")
    of_medians = statistics.median(wall["ospp"]) / statistics.median(wall["hello"])
    print(
        f"  ratio, median of pairs: {spread(ratios, 1, '.2f')}   "
        f"ratio of medians: {of_medians:.2f}   CPU: {spread(cpu_ratios, 1, '.2f')}"
    )
    floor_ratios = [a / b for a, b in zip(wall["floor"], wall["hello"], strict=True)]
    floor_cpu = [a / b for a, b in zip(cpu["floor"], cpu["hello"], strict=True) if b > 0]
    print(
        f"  floor / hello-world, median of pairs: {spread(floor_ratios, 1, '.2f')}   "
        f"CPU: {spread(floor_cpu, 1, '.2f')}"
    )
    if counted:
        print(
            f"  instructions (callgrind), millions: hello {counted['hello'] / 1e6:.1f}, "
            f"/dstatus {counted['ospp'] / 1e6:.1f} ({counted['ospp'] / counted['hello']:.3f}x), "
            f"floor {counted['floor'] / 1e6:.1f} ({counted['floor'] / counted['hello']:.3f}x)"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40, help="pairs per case (default 40)")
    parser.add_argument(
        "--case",
        choices=["installed", "activated", "both"],
        default="both",
        help="a store with one installed product, the same product MAK-activated, or both",
    )
    parser.add_argument(
        "--activated", action="store_true", help="the same as --case activated (older name)"
    )
    parser.add_argument(
        "--in-place",
        action="store_true",
        help="time this Python and the ospp it imports as they are (a development install "
        "included), not a plain copy of the package",
    )
    parser.add_argument(
        "--default-home",
        action="store_true",
        help="leave OSPP_HOME unset, as most users do, so that /dstatus finds its store in the "
        "per-user data directory (platformdirs; XDG_DATA_HOME and HOME point into a temporary "
        "directory, which keeps it there on Linux only)",
    )
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="also count each command's instructions once under valgrind's callgrind (needs "
        "valgrind): a ratio that load on the machine does not move",
    )
    args = parser.parse_args()
    if args.callgrind and shutil.which("valgrind") is None:
        raise SystemExit("--callgrind needs valgrind (Debian: apt install valgrind)")
    if args.default_home and not sys.platform.startswith("linux"):
        raise SystemExit("--default-home keeps the store in a temporary directory on Linux only")
    env = dict(os.environ)
    # `python -m` puts the working directory first on sys.path: leave a checkout's directory so
    # that the ospp timed is the one installed for this Python.
    os.chdir(tempfile.gettempdir())
    # Time what an installed ospp does: bytecode cached, as pip writes it at install.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    where = subprocess.run(
        [sys.executable, "-c", "import os, ospp; print(os.path.dirname(ospp.__file__))"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    cases = ["installed", "activated"] if args.case == "both" else [args.case]
    if args.activated:
        cases = ["activated"]
    global PYTHON
    with tempfile.TemporaryDirectory() as tmp:
        if args.in_place:
            subprocess.run([PYTHON, "-m", "compileall", "-q", where], env=env, check=True)
        else:
            PYTHON = plain_install(tmp, where, env)
        how = "in place" if args.in_place else "copied into a plain virtual environment"
        print(f"python {sys.version.split()[0]}, ospp from {where}, {how}")
        for case in cases:
            run_case(case, args.runs, env, args.default_home, args.callgrind)


if __name__ == "__main__":
    main()
