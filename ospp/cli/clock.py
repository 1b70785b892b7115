"""``ospp clock``: the lab clock every role on this machine (or sharing its directory) reads."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from ospp.cli.base import JSON_OPTION, Result, reports
from ospp.core import clock as lab

PRECEDENCE = (
    "Precedence: OSPP_NOW (a fixed time for one process, or an offset such as +7d from the "
    "lab clock), then the lab clock, then real time."
)


def _span(delta: timedelta) -> str:
    sign = "-" if delta < timedelta(0) else "+"
    seconds = int(abs(delta).total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return f"{sign}{days}d {hours:02d}h{rest // 60:02d}m"


def _changing(lab_at: Callable[[], datetime]) -> None:
    """A bad OSPP_NOW would fail the report after the change: it is refused before, as is an
    offset that would move the new lab time (``lab_at()``, asked only then) out of range."""
    clock = lab.clock_from_env()
    if isinstance(clock, lab.LabClock) and clock.offset:
        lab.shifted(lab_at(), clock.offset, "OSPP_NOW's offset")


def _lab_now() -> datetime:
    """The lab clock's time now (real time without one)."""
    real = datetime.now(UTC)
    state = lab.read_state(lab.clock_file())
    return state.now(real) if state else real


def _report(
    state: lab.LabState | None, action: str | None = None, moved_by: timedelta | None = None
) -> Result:
    path = lab.clock_file()
    real = datetime.now(UTC)
    ospp_now = os.environ.get("OSPP_NOW", "").strip() or None
    now = lab.clock_from_env().now()
    if ospp_now and ospp_now[0] not in "+-":
        source = "OSPP_NOW"
    else:
        source = "lab clock" if state is not None else "real time"
    offset = f" {ospp_now} (OSPP_NOW)" if ospp_now and source != "OSPP_NOW" else ""
    lines = [action] if action else []
    lines.append(f"Now: {lab.iso(now)} (from {source}{offset})")
    if state is None:
        lines.append("Lab clock: not set (real time)")
    else:
        lab_now = state.now(real)
        how = "frozen" if state.frozen else "running"
        lines.append(
            f"Lab clock: {lab.iso(lab_now)}, {how}, {_span(lab_now - real)} from real time"
        )
    lines += [f"Real time: {lab.iso(real)}", f"Clock file: {path}", PRECEDENCE]
    data: dict[str, Any] = {
        "now_at": lab.iso(now),
        "source": source,
        "ospp_now": ospp_now,
        "real_time_at": lab.iso(real),
        "clock_file": str(path),
        "lab_clock": None
        if state is None
        else {
            "now_at": lab.iso(state.now(real)),
            "frozen": state.frozen,
            "offset_seconds": int((state.now(real) - real).total_seconds()),
        },
    }
    if moved_by is not None:
        data["moved_by_seconds"] = int(moved_by.total_seconds())
    return Result(lines, data, banners=False)


@click.group("clock")
def clock_group() -> None:
    """The lab clock: one simulated time for clients, KMS hosts and the authority.

    It lives in OSPP_CLOCK_FILE (default clock.json in OSPP_HOME or the data directory), runs
    at real speed from the instant set unless frozen, and running servers follow a change at
    their next request.
    """


@clock_group.command("show")
@JSON_OPTION
@reports
def show() -> Result:
    """Show the time every command sees now, where it comes from, and the lab clock."""
    return _report(lab.read_state(lab.clock_file()))


@clock_group.command("set")
@click.argument("time", metavar="TIME")
@JSON_OPTION
@reports
def set_(time: str) -> Result:
    """Set the lab clock to TIME (ISO 8601, e.g. 2026-06-01T09:00Z; no zone means UTC)."""
    at = lab.parse_time(time, "TIME")
    _changing(lambda: at)
    state = lab.lab_set(lab.clock_file(), at)
    return _report(state, f"Lab clock set to {lab.iso(at)}")


# '-2h' is a value, not options: no '-h' help alias here, and unknown options pass through.
@clock_group.command(
    "advance",
    context_settings={"ignore_unknown_options": True, "help_option_names": ["--help"]},
)
@click.argument("duration", metavar="DURATION")
@JSON_OPTION
@reports
def advance(duration: str) -> Result:
    """Move the lab clock by DURATION: 7d, 3h, 90m, 30s, 2w; -2h goes back."""
    by = lab.parse_duration(duration, "DURATION")
    _changing(lambda: lab.shifted(_lab_now(), by, "the lab clock"))
    state = lab.lab_advance(lab.clock_file(), by)
    return _report(state, f"Lab clock moved by {_span(by)}", moved_by=by)


@clock_group.command("freeze")
@JSON_OPTION
@reports
def freeze() -> Result:
    """Stop the lab clock where it is now (it stays there until 'ospp clock run')."""
    _changing(_lab_now)
    return _report(lab.lab_freeze(lab.clock_file(), True), "Lab clock frozen")


@clock_group.command("run")
@JSON_OPTION
@reports
def run_() -> Result:
    """Let the lab clock run on at real speed from where it is."""
    _changing(_lab_now)
    return _report(lab.lab_freeze(lab.clock_file(), False), "Lab clock running")


@clock_group.command("reset")
@JSON_OPTION
@reports
def reset() -> Result:
    """Remove the lab clock: every command uses real time again (unless OSPP_NOW is set)."""
    _changing(lambda: datetime.now(UTC))  # after it, real time
    removed = lab.lab_reset(lab.clock_file())
    return _report(None, "Lab clock removed" if removed else "There was no lab clock")


COMMANDS = [clock_group]
