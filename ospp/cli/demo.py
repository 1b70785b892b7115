"""The guided demo: a tour of ospp on a throw-away home, run as real ``ospp`` processes.

Grace and rearm, a refused key, MAK activation online and by phone, then a KMS host on
127.0.0.1 with five clients: the first four are below the threshold (0xC004F038) until the
fifth asks, and the simulated licensing service activates them on its next retry.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

# (explanation, arguments, environment overrides). "{NAME}" is filled from earlier output;
# "@kms-serve" starts the KMS host in the background.
Step = tuple[str, list[str], dict[str, str]]
DAY1 = {"OSPP_NOW": "2026-03-01T09:00:00Z"}


def _workstations(count: int) -> list[Step]:
    steps: list[Step] = []
    for n in range(1, count + 1):
        steps += [
            (
                f"Workstation WS{n}: install Office, point it at the host, activate.",
                ["install-product", "ProPlus2021", f"WS{n}"],
                {},
            ),
            ("", ["/sethst:127.0.0.1:{PORT}", f"WS{n}"], {}),
            ("", ["/act", f"WS{n}"], {}),
        ]
    return steps


STEPS: list[Step] = [
    (
        "Install Office LTSC Professional Plus 2021 (volume edition): its licences and its KMS "
        "client key (GVLK). The 30-day grace starts now.",
        ["install-product", "ProPlus2021"],
        DAY1,
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
    # -- MAK ------------------------------------------------------------------------------
    (
        "The activation authority mints a MAK with 2 activations.",
        ["center", "issue-key", "--product", "Standard2021", "--limit", "2"],
        {},
    ),
    (
        "A key needs its product: this machine has no Office Standard 2021, so it is refused.",
        ["/inpkey:{MAK}"],
        {},
    ),
    (
        "Machine PC-MAK gets the product, installs the MAK and activates online.",
        ["install-product", "Standard2021", "PC-MAK"],
        {},
    ),
    ("", ["/inpkey:{MAK}", "--act", "PC-MAK"], {}),
    (
        "An isolated machine installs the MAK and reads its installation ID.",
        ["install-product", "Standard2021", "PC-ISOLATED"],
        {},
    ),
    ("", ["/inpkey:{MAK}", "PC-ISOLATED"], {}),
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
    (
        "A third machine: the MAK has no activations left.",
        ["install-product", "Standard2021", "PC-3"],
        {},
    ),
    ("", ["/inpkey:{MAK}", "--act", "PC-3"], {}),
    ("What the authority has counted.", ["center", "keys"], {}),
    # -- KMS ------------------------------------------------------------------------------
    (
        "KMS: the authority mints a KMS host key; the host installs and activates it.",
        ["center", "issue-key", "--product", "ProPlus2021", "--channel", "kms-host"],
        {},
    ),
    ("", ["kms", "install-key", "{HOSTKEY}"], {}),
    ("", ["kms", "activate"], {}),
    ("Start the KMS host on 127.0.0.1 (a free port).", ["@kms-serve"], {}),
    *_workstations(5),
    (
        "Three hours later the licensing service retries WS1-WS4: the count is 5 now.",
        ["service", "WS1", "WS2", "WS3", "WS4"],
        {"OSPP_NOW": "{LATER}"},
    ),
    ("", ["/dstatus", "WS1"], {}),
    ("The host's view (slmgr /dlv style).", ["kms", "status"], {}),
    ("", ["/dhistorykms", "WS1"], {}),
]


def run_demo(echo: Callable[[str], None], keep: Path | None = None) -> int:
    """Run every step; returns 1 when a step broke (usage, store, network or internal error)."""
    with tempfile.TemporaryDirectory(prefix="ospp-demo-") as tmp:
        home = keep or Path(tmp)
        env = {
            **os.environ,
            "OSPP_HOME": str(home / "client"),
            "OSPP_CENTER_HOME": str(home / "center"),
            "OSPP_KMS_HOME": str(home / "kms"),
        }
        for name in ("OSPP_NOW", "OSPP_AUTHORITY", "OSPP_DNS"):
            env.pop(name, None)
        later = datetime.now(UTC) + timedelta(hours=3)
        found: dict[str, str] = {"LATER": later.strftime("%Y-%m-%dT%H:%M:%SZ")}
        broken = 0
        host: subprocess.Popen[str] | None = None
        echo(f"# ospp demo: a throw-away home in {home}\n")
        try:
            for explanation, raw, extra in STEPS:
                args = [a.format(**found) for a in raw]
                extra = {k: v.format(**found) for k, v in extra.items()}
                if explanation:
                    echo(f"# {explanation}")
                if args == ["@kms-serve"]:
                    host = _start_host(env, home, found, echo)
                    continue
                prefix = " ".join(f"{k}={v}" for k, v in extra.items())
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
        finally:
            if host is not None:
                host.terminate()
                host.wait(timeout=10)
        echo("# Done. Try it on your own store: ospp /?")
    return 1 if broken else 0


def _start_host(
    env: dict[str, str], home: Path, found: dict[str, str], echo: Callable[[str], None]
) -> subprocess.Popen[str]:
    log = home / "kms-requests.log"
    echo(f"$ ospp kms serve --listen 127.0.0.1:0 --log {log} &")
    from ospp.core.background import start_server

    host, port = start_server(
        ["kms", "serve", "--listen", "127.0.0.1:0", "--log", str(log)], env, subprocess.DEVNULL
    )
    found["PORT"] = str(port)
    echo(f"LISTENING {port}\n")
    return host


def _harvest(args: list[str], out: str, found: dict[str, str]) -> None:
    """Carry values from one step into the next (keys, the IID, the CID)."""
    if args[:2] == ["center", "issue-key"]:
        found["HOSTKEY" if "kms-host" in args else "MAK"] = out.strip()
    elif args[0] == "/dinstid":
        for line in out.splitlines():
            if line.startswith("Installation ID for:"):
                found["IID"] = line.rsplit(": ", 1)[1]
    elif args[:2] == ["center", "confirm"]:
        found["CID"] = out.strip()
