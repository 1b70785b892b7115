"""What the ``ospp fleet`` commands (and ``ospp service`` over many machines) share: the
--machines option, the administrator check, the progress bar, the summary by outcome, what an
interrupted pass says, and the counting of a pass that keys or removes machines.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import click

from ospp.cli.base import Result, command_name, json_wanted, needs_admin
from ospp.core.errors import N_, Cancelled, OsppError, hex_code, reported

T = TypeVar("T")
MAX_SHOWN = 20  # failures listed in text output; --json lists them all


def check_glob(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A GLOB must name something: an empty one (an unset variable in a script, as in
    ``ospp fleet remove "$GLOB"``) is refused, never read as every machine."""
    if value is not None and not value.strip():
        raise click.BadParameter("is empty; give '*' for every machine", ctx, param)
    return value


MACHINES_OPTION = click.option(
    "--machines",
    "glob",
    metavar="GLOB",
    callback=check_glob,
    help="Only machines whose name matches (ws*, lab-0?).",
)


def fleet_admin(command: str) -> None:
    """Fleet commands that change machines, or export their full product keys, are an
    administrator's tool, as VAMT is."""
    needs_admin(f"ospp fleet {command}")


def wants_json() -> bool:
    ctx = click.get_current_context()
    return json_wanted(ctx, bool(ctx.params.get("as_json")))


def progress(items: Iterable[T], length: int, label: str) -> Iterator[T]:
    """``items``, with a progress bar on stderr when it is a terminal and not --json."""
    if wants_json() or not sys.stderr.isatty():
        yield from items
        return
    with click.progressbar(items, length=length, label=label, file=sys.stderr) as bar:
        yield from bar


def summary(counts: Counter[str]) -> str:
    parts = [f"{n} {what}" for what, n in sorted(counts.items(), key=lambda kv: -kv[1])]
    return "Summary: " + (", ".join(parts) if parts else "nothing done")


def stopped(counts: Counter[str], total: int) -> Cancelled:
    """Ctrl+C during a pass over machines: what was done stays done, and the message says how
    much (machines in flight when it came may finish too: "at least")."""
    done = sum(counts.values())
    if not done:  # none reported yet; those in hand may still have sent their requests
        return Cancelled(
            interrupted=True,
            kept=N_(
                "none of the {total} machines was reported done, but those in hand when it "
                "came may have been; running it again does the rest",
                total=total,
            ),
        )
    return Cancelled(
        interrupted=True,
        kept=N_(
            "at least {done} of the {total} machines were done ({summary}); running it again "
            "does the rest",
            done=done,
            total=total,
            summary=summary(counts).removeprefix("Summary: "),
        ),
    )


def counted(done: Iterable[Any], total: int, label: str, coded: bool = False) -> Result:
    """Count what was done to each machine and list the first failures. ``coded``: a failure
    is counted under its licensing code ("failed 0xC004F069", as fleet act counts them), and
    --json lists every failure with its error."""
    counts: Counter[str] = Counter()
    first: list[OsppError] = []
    lines: list[str] = []

    def failures() -> Iterator[dict[str, Any]]:
        try:
            for d in progress(done, total, label):
                coded_ = coded and d.error is not None
                counts[f"failed {hex_code(d.error.code)}" if coded_ else d.outcome] += 1
                if d.error is not None:
                    if all(e.exit_status != d.error.exit_status for e in first):
                        first.append(d.error)  # the first of each kind (exit status)
                    if len(lines) < MAX_SHOWN:
                        lines.append(f"{d.machine}: {hex_code(d.error.code)} {d.error.message}")
                    yield {"machine": d.machine, "error": d.error.to_json()}
        except KeyboardInterrupt:
            raise stopped(counts, total) from None

    def problem() -> OsppError | None:  # what failed decides the exit status, not when
        return reported(first)

    if coded and wants_json():  # every failure, streamed: memory does not grow with the fleet
        from ospp.cli import stream

        fields = [("summary", counts), ("failures", failures())]
        stream.json_report(command_name(click.get_current_context()), fields, problem)
        return Result(banners=False, failed=problem(), printed=True)
    for _ in failures():
        pass
    lines.append(summary(counts))
    return Result(lines, {"summary": counts}, banners=False, failed=problem())
