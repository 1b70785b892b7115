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
    ("Describe an error code.", ["/ddescr:0xC004F074"], {}),
    (
        "The activation authority mints a MAK with 2 activations.",
        ["center", "issue-key", "--product", "Standard2021", "--limit", "2"],
        {},
    ),
    ("Install the MAK and activate online, at once.", ["/inpkey:{MAK}", "--act"], {}),
    (
        "An isolated machine: install the MAK and read its installation ID.",
        ["/inpkey:{MAK}", "PC-ISOLATED"],
        {},
    ),
    ("", ["/dinstid", "PC-ISOLATED"], {}),
    (
        "The phone operator turns the installation ID into a confirmation ID.",
        ["center", "confirm", "{IID}"],
        {},
    ),
    (
        "Type the confirmation ID: verified offline with the authority's public key.",
        ["/actcid:{CID}", "PC-ISOLATED"],
        {},
    ),
    ("", ["/dstatus", "PC-ISOLATED"], {}),
    ("A third machine: the MAK has no activations left.", ["/inpkey:{MAK}", "--act", "PC-3"], {}),
    ("What the authority has counted.", ["center", "keys"], {}),
]


def run_demo(echo: Callable[[str], None], keep: Path | None = None) -> int:
    """Run every step; returns 1 when a step broke (usage, store or internal error)."""
    with tempfile.TemporaryDirectory(prefix="ospp-demo-") as tmp:
        home = keep or Path(tmp)
        env = {
            **os.environ,
            "OSPP_HOME": str(home / "client"),
            "OSPP_CENTER_HOME": str(home / "center"),
        }
        env.pop("OSPP_NOW", None)
        echo(f"# ospp demo: a throw-away home in {home}\n")
        found: dict[str, str] = {}
        broken = 0
        for explanation, raw, extra in STEPS:
            args = [a.format(**found) for a in raw]
            prefix = " ".join(f"{k}={v}" for k, v in extra.items())
            if explanation:
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
            _harvest(args, done.stdout, found)
            broken += done.returncode not in (0, 1)  # 1 is a licensing "no", shown on purpose
        echo("# Done. Try it on your own store: ospp /?")
    return 1 if broken else 0


def _harvest(args: list[str], out: str, found: dict[str, str]) -> None:
    """Carry values from one step into the next (the key, the IID, the CID)."""
    if args[:2] == ["center", "issue-key"]:
        found["MAK"] = out.strip()
    elif args[0] == "/dinstid":
        for line in out.splitlines():
            if line.startswith("Installation ID for:"):
                found["IID"] = line.rsplit(": ", 1)[1]
    elif args[:2] == ["center", "confirm"]:
        found["CID"] = out.strip()
