"""The guided demo: a tour of ospp on a throw-away home, run as real ``ospp`` processes."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

# (explanation, arguments, environment overrides)
Step = tuple[str, list[str], dict[str, str]]

STEPS: list[Step] = [
    (
        "Install Office LTSC Professional Plus 2021 (volume edition): its licences and its KMS "
        "client key (GVLK). The 30-day grace starts now.",
        ["install-product", "ProPlus2021"],
        {"OSPP_NOW": "2026-03-01T09:00:00Z"},
    ),
    ("Status, exactly as ospp.vbs prints it.", ["/dstatus"], {"OSPP_NOW": "2026-03-02T09:00:00Z"}),
    (
        "The same facts as JSON, for scripts.",
        ["dstatus", "--json"],
        {"OSPP_NOW": "2026-03-02T09:00:00Z"},
    ),
    (
        "A mistyped key is refused with the licensing code and the reason; nothing changes.",
        ["/inpkey:FXYTK-NJJ8C-GB6DW-3DYQT-6F7TB"],
        {},
    ),
    (
        "Day 31 without activation: the grace period has run out.",
        ["/dstatus"],
        {"OSPP_NOW": "2026-03-31T10:00:00Z"},
    ),
    (
        "Rearm: grace back to 30 days (5 rearms allowed).",
        ["/rearm"],
        {"OSPP_NOW": "2026-03-31T10:00:00Z"},
    ),
    ("Point the machine at a KMS host.", ["/sethst:kms1.corp.example:1688"], {}),
    ("Describe an error code.", ["/ddescr:0xC004F074"], {}),
]


def run_demo(echo: Callable[[str], None], keep: Path | None = None) -> int:
    """Run every step; returns 0 when each behaved as the demo expects."""
    with tempfile.TemporaryDirectory(prefix="ospp-demo-") as tmp:
        home = keep or Path(tmp)
        env = {
            **os.environ,
            "OSPP_HOME": str(home / "client"),
            "OSPP_CENTER_HOME": str(home / "center"),
        }
        env.pop("OSPP_NOW", None)
        echo(f"# ospp demo: a throw-away home in {home}\n")
        for explanation, args, extra in STEPS:
            prefix = " ".join(f"{k}={v}" for k, v in extra.items())
            echo(f"# {explanation}")
            echo(f"$ {prefix + ' ' if prefix else ''}ospp {' '.join(args)}")
            done = subprocess.run(
                [sys.executable, "-m", "ospp", *args],
                env={**env, **extra},
                capture_output=True,
                text=True,
                check=False,
            )
            echo(done.stdout.rstrip("\n"))
            if done.stderr:
                echo(done.stderr.rstrip("\n"))
            echo(f"(exit status {done.returncode})\n")
        echo("# Done. Try it on your own store: ospp /?")
    return 0
