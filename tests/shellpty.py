"""Drive a real interactive shell (bash, zsh, fish) in a pseudo-terminal and read its screen.

The shell runs with ospp's completion script from completions/ sourced and the ``ospp`` of this
Python environment first on PATH. Keystrokes go in through the terminal; what comes out is
rendered by a terminal emulator (pyte), so a test reads what a user would see, including a
traceback printed over the prompt.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pyte

ROOT = Path(__file__).resolve().parent.parent
COLUMNS, LINES = 200, 50
PROMPT = "READY> "
TIMEOUT = 30.0  # seconds for one expected screen; every TAB starts a Python process


def _setup(shell: str, home: Path, prog: str) -> list[str]:
    """The command starting ``shell`` interactively with only the completion of ``prog``
    (ospp or slmgr) configured."""
    name = {"bash": f"bash/{prog}", "zsh": f"zsh/_{prog}", "fish": f"fish/{prog}.fish"}[shell]
    script = ROOT / "completions" / name
    if shell == "bash":
        rc = home / "bashrc"
        rc.write_text(
            f"PS1='{PROMPT}'\nbind 'set bell-style none'\nsource '{script}'\n", encoding="utf-8"
        )
        return ["bash", "--noprofile", "--rcfile", str(rc), "-i"]
    if shell == "zsh":
        (home / ".zshrc").write_text(
            "autoload -U compinit && compinit -u -D\n"
            f"PS1='{PROMPT}'\nunsetopt beep\nsource '{script}'\n",
            encoding="utf-8",
        )
        return ["zsh", "-i"]
    return [
        "fish",
        "--no-config",
        "-i",
        "-C",
        f"function fish_prompt; printf '{PROMPT}'; end; source '{script}'",
    ]


def missing(shell: str) -> str | None:
    """Why ``shell`` cannot be driven here, or None."""
    if sys.platform == "win32":
        return "pseudo-terminals need a POSIX system"
    if shutil.which(shell) is None:
        return f"{shell} is not installed (apt-get install {shell})"
    return None


class Terminal:
    """One interactive shell in a pseudo-terminal, with the screen it draws."""

    def __init__(self, shell: str, home: Path, env: dict[str, str], prog: str = "ospp") -> None:
        self.shell = shell
        home.mkdir(parents=True, exist_ok=True)
        bindir = str(Path(sys.executable).parent)
        full_env = {
            "PATH": os.pathsep.join([bindir, "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": str(home),
            "ZDOTDIR": str(home),
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "TERM": "xterm",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            **env,
        }
        self.screen = pyte.Screen(COLUMNS, LINES)
        self.stream = pyte.ByteStream(self.screen)
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
        self.fd = master
        self.proc = subprocess.Popen(
            _setup(shell, home, prog),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=full_env,
            cwd=home,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        self.wait_for(lambda text: PROMPT.strip() in text, "the first prompt")

    def read(self, seconds: float) -> None:
        """Feed the emulator whatever the shell prints within ``seconds``."""
        ready, _, _ = select.select([self.fd], [], [], seconds)
        if ready:
            try:
                data = os.read(self.fd, 65536)
            except OSError:  # the shell exited
                return
            self.stream.feed(data)
            # Answer "where is the cursor?" as a terminal would (zsh and fish may ask).
            if b"\x1b[6n" in data:
                y, x = self.screen.cursor.y + 1, self.screen.cursor.x + 1
                os.write(self.fd, f"\x1b[{y};{x}R".encode())

    @property
    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    def wait_for(self, check: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + TIMEOUT
        while not check(self.text):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.shell}: timed out waiting for {what}:\n{self.text}")
            self.read(0.1)
        return self.text

    def type(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def line(self) -> str:
        """The text of the line the cursor is on."""
        return self.screen.display[self.screen.cursor.y].rstrip()

    def complete(self, typed: str, tabs: int = 1) -> str:
        """Type ``typed``, press TAB ``tabs`` times, then a '@' and wait for it to show.

        A shell reads keys in order, so the '@' appears only after the completion has
        finished. Returns the screen; the '@' marks where the cursor was.
        """
        self.type(typed)
        self.wait_for(lambda _: self.line().endswith(typed), f"{typed!r} to be echoed")
        for _ in range(tabs):
            self.type("\t")
            time.sleep(0.05)
        self.type("@")
        return self.wait_for(lambda _: "@" in self.line(), "the completion to finish")

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        os.close(self.fd)
