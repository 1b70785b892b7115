"""The console scripts end the process without tearing the interpreter down
(``ospp.cli.base.console``): every byte printed, every ``atexit`` handler run, the same exit
status, and Python's own exit wherever it does more than that.

Each case runs in a fresh process, once through ``console(main)`` and, where the two must
agree, once with ``main()`` ending the usual way.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(
    body: str, *, through_console: bool = True, closed: int | None = None
) -> subprocess.CompletedProcess[bytes]:
    """``body`` defines ``main()``; run it as a console script would, in a fresh process
    (started with descriptor ``closed`` closed, as ``ospp ... >&-`` does)."""
    end = (
        "from ospp.cli.base import console\nconsole(main)\n"
        if through_console
        else "import sys\nsys.exit(main())\n"
    )
    # Output buffered as it is for most users: PYTHONUNBUFFERED would write it at once.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run(
        [sys.executable, "-c", body + "\n" + end],
        capture_output=True,
        env=env,
        timeout=60,
        preexec_fn=None if closed is None else lambda: os.close(closed),
    )


def test_the_installed_commands_end_through_console():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"ospp": "ospp.cli:script", "slmgr": "ospp.cli.slmgr:script"}


@pytest.mark.parametrize("how", ["python -m ospp", "console script"])
def test_a_profiler_sees_the_whole_run(tmp_path: Path, how: str):
    """Profilers and tracers write their results at exit: with one at work, the process
    ends the way Python ends it."""
    profile = tmp_path / "run.prof"
    if how == "python -m ospp":
        target = ["-m", "ospp"]
    else:
        script = tmp_path / "ospp"
        script.write_text("import sys\nfrom ospp.cli import script\nsys.exit(script())\n")
        target = [str(script)]
    done = subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(profile), *target, "--version"],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert b"ospp, version" in done.stdout
    assert profile.stat().st_size > 0


@pytest.mark.skipif(sys.platform == "win32", reason="starts a process with a descriptor closed")
@pytest.mark.parametrize("closed", [1, 2])
def test_a_closed_standard_stream_changes_nothing(closed: int):
    # Python starts with sys.stdout (or sys.stderr) None when its descriptor is closed.
    body = "import sys\ndef main():\n    print('done')\n    print('note', file=sys.stderr)\n"
    done = run(body, closed=closed)
    before = run(body, through_console=False, closed=closed)
    assert done.returncode == before.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == (before.stdout, before.stderr)


def test_buffered_output_is_all_written():
    # 2 MB without a flush: far more than a pipe holds, so the reader drains it while the
    # writer waits, and nothing may be left in Python's buffer when the process ends.
    body = (
        "import sys\n"
        "def main():\n"
        "    sys.stdout.write('x' * 2_000_000 + '\\n')\n"
        "    sys.stderr.write('to stderr')\n"
    )
    done = run(body)
    assert done.returncode == 0
    assert done.stdout == b"x" * 2_000_000 + b"\n"
    assert done.stderr == b"to stderr"


@pytest.mark.parametrize("status", [0, 1, 2, 3, 70])
def test_the_exit_status_is_kept(status: int):
    body = f"import sys\ndef main():\n    print('done')\n    sys.exit({status})\n"
    done = run(body)
    assert (done.returncode, done.stdout) == (status, b"done\n")


def test_atexit_handlers_run_once_and_may_print():
    body = (
        "import atexit, sys\n"
        "def main():\n"
        "    atexit.register(lambda: print('handler ran'))\n"
        "    sys.exit(3)\n"
    )
    done = run(body)
    assert (done.returncode, done.stdout) == (3, b"handler ran\n")


def test_a_running_thread_is_waited_for():
    body = (
        "import threading, time\n"
        "def late():\n"
        "    time.sleep(0.3)\n"
        "    print('the thread finished')\n"
        "def main():\n"
        "    threading.Thread(target=late).start()\n"
    )
    done = run(body)
    assert (done.returncode, done.stdout) == (0, b"the thread finished\n")


def test_a_message_given_to_sys_exit_is_printed_as_python_does():
    body = "import sys\ndef main():\n    sys.exit('ospp: something went wrong')\n"
    done = run(body)
    before = run(body, through_console=False)
    assert (done.returncode, done.stdout, done.stderr) == (1, b"", b"ospp: something went wrong\n")
    assert (before.returncode, before.stdout, before.stderr) == (1, b"", done.stderr)


@pytest.mark.skipif(sys.platform == "win32", reason="closes the read end of a POSIX pipe")
def test_a_reader_that_went_away_ends_as_it_did_before():
    # Output still buffered when the reader has gone: Python's own exit reports it (status
    # 120), with or without console().
    body = (
        "import os, sys\n"
        "def main():\n"
        "    sys.stdout.write('x' * 100)\n"
        "    r, w = os.pipe()\n"
        "    os.close(r)\n"
        "    os.dup2(w, 1)\n"
    )
    done = run(body)
    before = run(body, through_console=False)
    assert done.returncode == before.returncode != 0
    assert b"BrokenPipeError" in done.stderr
    assert done.stderr == before.stderr


def test_stores_are_closed_before_the_end(tmp_path: Path):
    # A store left open by a command is closed (and its write-ahead log checkpointed and
    # removed) as at any other exit.
    body = (
        "from pathlib import Path\n"
        "from ospp.core.db import Database\n"
        "def main():\n"
        f"    db = Database(Path({str(tmp_path / 'x.db')!r}), 'test', ['CREATE TABLE t (v)'])\n"
        "    with db.write() as conn:\n"
        "        conn.execute('INSERT INTO t VALUES (1)')\n"
    )
    done = run(body)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "x.db").exists()
    assert not (tmp_path / "x.db-wal").exists()
