"""``ospp fleet status`` and ``ospp fleet timeline``: what the fleet's machines hold, as
rows (a table, CSV or JSON, printed as they are read) and as licence states over time."""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from ospp.cli.base import JSON_OPTION, Result, command_name, quiet, reports
from ospp.cli.fleetbase import MACHINES_OPTION, summary, wants_json
from ospp.core.clock import clock_from_env, iso, parse_duration, parse_time
from ospp.core.errors import StoreError, UsageError
from ospp.core.paths import ospp_home
from ospp.core.printable import csv_cell, printable

HEADER = ("machine", "product", "status", "error_code", "key_last5", "remaining_days",
          "last_activation", "kms_host")  # fmt: skip
# the fields of a row under HEADER (the CSV keeps its column names)
COLUMNS = ("machine", "product_id", "status", "error_code", "key_last5", "remaining_days",
           "last_activated_at", "kms_host")  # fmt: skip
_TABLE = "{:<16} {:<15} {:<19} {:<10} {:<5} {:>9}  {:<20} {}"


@click.command("status")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row instead of a table.")
@click.option("--status", "wanted", metavar="NAME", help="Only rows in this state (LICENSED...).")
@MACHINES_OPTION
@JSON_OPTION
@reports
def status(as_csv: bool, wanted: str | None, glob: str | None) -> Result:
    """One row per machine and product: status, code, key, days left, last activation, host."""
    import csv

    from ospp.cli import stream
    from ospp.machine import fleet, fleetview

    as_json = wants_json()
    if as_csv and as_json:
        raise UsageError("--csv and --json exclude each other")
    if wanted is not None and wanted.upper() not in fleetview.ROW_STATES:
        raise UsageError(
            f"--status {wanted!r} is not a licence status",
            f"Use one of {', '.join(fleetview.ROW_STATES)} (in any case).",
        )
    clock = clock_from_env()
    clock.now()  # a bad OSPP_NOW or a damaged lab clock is said before any row is printed
    if glob is not None:  # one that matches nothing is a mistake, as for 'fleet act'
        fleet.require(ospp_home(), glob)
    counts: Counter[str] = Counter()
    first_error: list[dict[str, Any]] = []  # the first ERROR row (a damaged store)

    def counted() -> Iterator[dict[str, Any]]:
        for values in fleetview.rows(ospp_home(), glob, os.environ, clock, wanted):
            counts[values["status"]] += 1
            if values["status"] == "ERROR" and not first_error:
                first_error.append(values)
            yield values

    def problem() -> StoreError | None:  # damaged stores are listed as ERROR rows and reported
        if not first_error:
            return None
        first = first_error[0]
        return StoreError(
            int(first["error_code"], 16),
            f"{counts['ERROR']} store(s) could not be read; the first, {first['machine']}: "
            f"{first['error']['message']}",
            "Those stores were left as they are.",
        )

    if as_json:
        command = command_name(click.get_current_context())
        stream.json_report(command, [("rows", counted()), ("summary", counts)], problem)
        return Result(banners=False, failed=problem(), printed=True)

    class Echo:
        def write(self, text: str) -> None:
            click.echo(text, nl=False)

    shown = not quiet()  # under --quiet only the exit status, and what failed, on stderr
    writer = csv.writer(Echo(), lineterminator="\n")
    if shown and as_csv:
        writer.writerow(HEADER)
    elif shown:
        click.echo(_TABLE.format("MACHINE", "PRODUCT", "STATUS", "CODE", "KEY", "DAYS LEFT",
                                 "LAST ACTIVATION", "KMS HOST"))  # fmt: skip
    try:
        for values in counted():
            if not shown:
                continue
            # the KMS host is the name a client was given (by DNS, say): outside text
            cells = ["" if values[c] is None else printable(str(values[c])) for c in COLUMNS]
            if as_csv:
                writer.writerow([*cells[:-1], csv_cell(cells[-1])])
            else:
                click.echo(_TABLE.format(*cells))
    except BrokenPipeError:  # the reader stopped early (| head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return Result([], {}, banners=False)
    failed = problem()
    if failed is not None:  # the rows say ERROR; what was wrong, and where, goes to stderr
        click.echo(f"ospp: {failed.message}", err=True)
    return Result([summary(counts)] if shown and not as_csv else [], banners=False, failed=failed)


def _chart_file(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    """A file to write a chart to: named, and not standard output (where the table goes)."""
    if value is None:
        return None
    if not value.strip():
        raise click.BadParameter("is empty; give a file name", ctx, param)
    if value == "-":
        raise click.BadParameter(
            "'-' is no file here: the table goes to standard output; give a file name",
            ctx,
            param,
        )
    return Path(value)


@click.command("timeline")
@click.option("--from", "start", metavar="TIME", help="First day (default: now).")
@click.option("--to", "end", metavar="TIME", help="Last day (default: 210 days after --from).")
@click.option(
    "--step", default="1d", show_default=True, metavar="DURATION", help="Between points: 1d, 12h."
)
@click.option("--svg", "svg_file", metavar="FILE", callback=_chart_file,
              help="Write the chart as SVG.")  # fmt: skip
@click.option("--html", "html_file", metavar="FILE", callback=_chart_file,
              help="Write the chart and the counts as an HTML page.")  # fmt: skip
@MACHINES_OPTION
@JSON_OPTION
@reports
def timeline(
    start: str | None,
    end: str | None,
    step: str,
    svg_file: Path | None,
    html_file: Path | None,
    glob: str | None,
) -> Result:
    """Machines in each licence state on each simulated day, as stored now (no renewals)."""
    from ospp.cli import fleetplot
    from ospp.core.files import write_atomic
    from ospp.machine import fleet, fleetview

    if svg_file and html_file and os.path.abspath(svg_file) == os.path.abspath(html_file):
        raise UsageError(
            f"--svg and --html both name {svg_file}: the page would replace the chart",
            "Give each its own file.",
        )
    clock = clock_from_env()
    first = parse_time(start, "--from") if start else clock.now()
    last = parse_time(end, "--to") if end else first + timedelta(days=210)
    by = parse_duration(step, "--step")
    if by <= timedelta(0) or last < first or (last - first) / by > 10_000:
        raise UsageError(
            "--from, --to and --step must give 1 to 10,000 points forward in time",
            "For example: --from 2027-01-01 --to 2027-07-30 --step 1d.",
        )
    if glob is not None:
        fleet.require(ospp_home(), glob)
    points = fleetview.timeline(ospp_home(), glob, first, last, by, os.environ, clock)
    states = fleetview.STATES
    when = "%Y-%m-%d" if by >= timedelta(days=1) else "%Y-%m-%d %H:%M"  # points within a day
    width = len(f"{first:{when}}")
    table = [f"{'day':<{width}}  " + " ".join(f"{s:>19}" for s in states)]
    for day, counts in points:
        table.append(f"{day:{when}}  " + " ".join(f"{counts.get(s, 0):>19}" for s in states))
    title = f"Licence states of {glob or 'all machines'}, {first:%Y-%m-%d} to {last:%Y-%m-%d}"
    picture = fleetplot.svg(points, states, title)
    charts = [(svg_file, picture)] if svg_file else []
    if html_file:
        charts.append((html_file, fleetplot.html(picture, title, table)))
    written = []
    for target, text in charts:
        try:
            write_atomic(target, text)
        except OSError as exc:
            raise UsageError(
                f"the chart {target} cannot be written: {exc.strerror or exc}",
                "Name a file in a directory that exists and may be written.",
            ) from exc
        written.append(f"Wrote {target}")
    data = {
        "states": list(states),
        "points": [
            {"counted_at": iso(day), **{s: c.get(s, 0) for s in states}} for day, c in points
        ],
    }
    return Result(table + written, data, banners=False)


REPORT_COMMANDS = [status, timeline]
