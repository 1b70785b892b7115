"""``ospp fleet``: many simulated machines at once, in the manner of VAMT.

Long operations show a progress bar on stderr when it is a terminal (nothing when piped or
with --json) and end with counts by outcome. Text and CSV rows are printed as they are read.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from ospp.cli.base import (
    JSON_OPTION,
    Result,
    command_name,
    json_wanted,
    needs_admin,
    quiet,
    reports,
)
from ospp.core.clock import clock_from_env, iso, parse_duration, parse_time
from ospp.core.errors import (
    N_,
    Cancelled,
    LicensingError,
    OsppError,
    StoreError,
    UsageError,
    hex_code,
)
from ospp.core.paths import ospp_home
from ospp.core.printable import csv_cell, printable

T = TypeVar("T")
MAX_SHOWN = 20  # failures listed in text output; --json lists them all


def _glob(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A GLOB must name something: an empty one (an unset variable in a script, as in
    ``ospp fleet remove "$GLOB"``) is refused, never read as every machine."""
    if value is not None and not value.strip():
        raise click.BadParameter("is empty; give '*' for every machine", ctx, param)
    return value


MACHINES_OPTION = click.option(
    "--machines",
    "glob",
    metavar="GLOB",
    callback=_glob,
    help="Only machines whose name matches (ws*, lab-0?).",
)


def _needs_admin(command: str) -> None:
    """Fleet commands that change machines, or export their full product keys, are an
    administrator's tool, as VAMT is."""
    needs_admin(f"ospp fleet {command}")


def _as_json() -> bool:
    ctx = click.get_current_context()
    return json_wanted(ctx, bool(ctx.params.get("as_json")))


def progress(items: Iterable[T], length: int, label: str) -> Iterator[T]:
    """``items``, with a progress bar on stderr when it is a terminal and not --json."""
    if _as_json() or not sys.stderr.isatty():
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
    if not done:
        return Cancelled(interrupted=True)
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


@click.group("fleet")
def fleet_group() -> None:
    """Many simulated machines at once (VAMT style): create, key, activate, report, plot."""


@fleet_group.command("create")
@click.argument("prefix")
@click.argument("count", type=int)
@click.option("--product", required=True, metavar="ID", help="Product to install (ospp products).")
@click.option("--sethst", metavar="HOST[:PORT]", help="KMS host every machine uses (/sethst).")
@click.option("--skms-domain", metavar="FQDN", help="Domain for KMS discovery (/skms-domain).")
@click.option("--key", help="Product key to install instead of the product's GVLK.")
@JSON_OPTION
@reports
def create(
    prefix: str,
    count: int,
    product: str,
    sethst: str | None,
    skms_domain: str | None,
    key: str | None,
) -> Result:
    """Create COUNT machines PREFIX1..PREFIXn (zero-padded) with a product installed."""
    from ospp.machine import client, fleet

    _needs_admin("create")
    if sethst and skms_domain:
        raise UsageError("--sethst and --skms-domain exclude each other", "Give one of them.")
    spec = fleet.Spec.one(product, sethst, skms_domain, key)
    fleet.check_spec(spec)
    product = client.find_product(product).id  # as the catalog spells it: proplus2021 too
    names = fleet.create_names(prefix, count)
    home = ospp_home()
    taken = [n for n in fleet.names(home, f"{names.base}*") if n in names]
    if taken:
        raise UsageError(
            f"{len(taken)} of these machines exist already, e.g. {min(taken)}",
            "Nothing was created. Use another prefix, or 'ospp fleet remove' them first.",
        )
    clock = clock_from_env()
    templates = fleet.Templates(clock)
    counts: Counter[str] = Counter()
    try:
        made = fleet.create(home, names, spec, clock, templates)
        with contextlib.closing(made):  # interrupted, its workers finish before it ends
            for done in progress(made, count, "creating"):
                counts[done.outcome] += 1
    except KeyboardInterrupt:
        # What was created stays (each machine is whole); say so, and how to go on.
        kept = [n for n in fleet.names(home, f"{names.base}*") if n in names]
        raise Cancelled(
            interrupted=True,
            kept=N_(
                "{done} of the {count} machines were created ({first} .. {last}); remove "
                "them with ospp fleet remove '{glob}' before creating them again",
                done=len(kept),
                count=count,
                first=kept[0] if kept else names[0],
                last=kept[-1] if kept else names[0],
                glob=names.base + "[0-9]" * names.width,  # theirs alone: not labsrv for lab
            )
            if kept
            else None,
        ) from None
    finally:
        templates.close()
    lines = [f"{names[0]} .. {names[-1]}: {product}", summary(counts)]
    failed = None
    if counts["exists"]:
        failed = LicensingError(
            0xC004F014, f"{counts['exists']} machine(s) were created meanwhile by another command"
        )
    data = {"first": names[0], "last": names[-1], "product_id": product, "summary": counts}
    return Result(lines, data, banners=False, failed=failed)


HEADER = ("machine", "product", "status", "error_code", "key_last5", "remaining_days",
          "last_activation", "kms_host")  # fmt: skip
# the fields of a row under HEADER (the CSV keeps its column names)
COLUMNS = ("machine", "product_id", "status", "error_code", "key_last5", "remaining_days",
           "last_activated_at", "kms_host")  # fmt: skip
_TABLE = "{:<16} {:<15} {:<19} {:<10} {:<5} {:>9}  {:<20} {}"


@fleet_group.command("status")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row instead of a table.")
@click.option("--status", "wanted", metavar="NAME", help="Only rows in this state (LICENSED...).")
@MACHINES_OPTION
@JSON_OPTION
@reports
def status(as_csv: bool, wanted: str | None, glob: str | None) -> Result:
    """One row per machine and product: status, code, key, days left, last activation, host."""
    import csv

    from ospp.cli import stream
    from ospp.machine import fleetview

    as_json = _as_json()
    if as_csv and as_json:
        raise UsageError("--csv and --json exclude each other")
    if wanted is not None and wanted.upper() not in fleetview.ROW_STATES:
        raise UsageError(
            f"--status {wanted!r} is not a licence status",
            f"Use one of {', '.join(fleetview.ROW_STATES)} (in any case).",
        )
    clock = clock_from_env()
    clock.now()  # a bad OSPP_NOW or a damaged lab clock is said before any row is printed
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


@fleet_group.command("act")
@MACHINES_OPTION
@JSON_OPTION
@reports
def act(glob: str | None) -> Result:
    """Activate every keyed product (kept connections to each KMS host); exit 1 if any fail."""
    import heapq

    _needs_admin("act")

    from ospp.cli import stream
    from ospp.machine import fleet, fleetact

    home = ospp_home()
    total = len(fleet.require(home, glob))
    counts: Counter[str] = Counter()
    first: list[OsppError] = []  # the first failure, as it came

    def failures(done: Iterable[Any]) -> Iterator[dict[str, Any]]:
        try:
            for action in progress(done, total, "activating"):
                counts[fleetact.outcome(action)] += 1
                if action.error is not None:
                    if not first:
                        first.append(action.error)
                    yield {"machine": action.machine, "product_id": action.product,
                           "action": action.action, "error": action.error.to_json()}  # fmt: skip
        except KeyboardInterrupt:
            raise stopped(counts, total) from None

    def failed() -> int:
        return sum(n for what, n in counts.items() if what.startswith(("failed", "not tried")))

    def problem() -> OsppError | None:
        if not first:
            return None
        message = f"{failed()} activation(s) failed; the first: {first[0].message}"
        return LicensingError(first[0].code, message, first[0].hint)

    pools = fleetact.Pools()
    try:
        rows = failures(fleetact.act(home, glob, os.environ, clock_from_env(), pools))
        if _as_json():  # --json lists every failure
            fields = [("summary", counts), ("failures", rows)]
            stream.json_report(command_name(click.get_current_context()), fields, problem)
            return Result(banners=False, failed=problem(), printed=True)
        shown = heapq.nsmallest(MAX_SHOWN, rows, key=lambda row: row["machine"])
    finally:
        pools.close()
    lines = [
        f"{r['machine']}: {r['product_id']}: {r['action']} failed: {r['error']['code']} "
        f"{r['error']['message']}"
        if r["product_id"]
        else f"{r['machine']}: cannot be read: {r['error']['code']} {r['error']['message']}"
        for r in shown  # no product: the machine's store could not be opened
    ]
    if failed() > len(shown):
        lines.append(f"... and {failed() - len(shown)} more failures (--json lists them all)")
    lines.append(summary(counts))
    return Result(lines, {}, banners=False, failed=problem())


@fleet_group.command("inpkey")
@click.argument("key")
@click.option(
    "--machines", "glob", required=True, metavar="GLOB", callback=_glob, help="Machines to key."
)
@JSON_OPTION
@reports
def inpkey(key: str, glob: str) -> Result:
    """Install KEY on every machine matching GLOB (and no other)."""
    from ospp.machine import fleet

    _needs_admin("inpkey")
    home = ospp_home()
    total = len(fleet.require(home, glob))
    done = fleet.install_key(home, glob, key, os.environ, clock_from_env())
    return _counted(done, total, "installing", coded=True)


def _counted(done: Iterable[Any], total: int, label: str, coded: bool = False) -> Result:
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
                    if not first:
                        first.append(d.error)
                    if len(lines) < MAX_SHOWN:
                        lines.append(f"{d.machine}: {hex_code(d.error.code)} {d.error.message}")
                    yield {"machine": d.machine, "error": d.error.to_json()}
        except KeyboardInterrupt:
            raise stopped(counts, total) from None

    def problem() -> OsppError | None:
        return first[0] if first else None

    if coded and _as_json():  # every failure, streamed: memory does not grow with the fleet
        from ospp.cli import stream

        fields = [("summary", counts), ("failures", failures())]
        stream.json_report(command_name(click.get_current_context()), fields, problem)
        return Result(banners=False, failed=problem(), printed=True)
    for _ in failures():
        pass
    lines.append(summary(counts))
    return Result(lines, {"summary": counts}, banners=False, failed=problem())


@fleet_group.command("remove")
@click.argument("glob", callback=_glob)
@JSON_OPTION
@reports
def remove(glob: str) -> Result:
    """Delete every machine whose name matches GLOB (and no other); this machine
    (localhost) is kept."""
    from ospp.machine import fleet

    _needs_admin("remove")
    home = ospp_home()
    total = len(fleet.removable(home, glob))
    return _counted(fleet.remove(home, glob), total, "removing")


@fleet_group.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@MACHINES_OPTION
@JSON_OPTION
@reports
def export(file: Path, glob: str | None) -> Result:
    """Write machine, product, key, KMS host, lookup domain to FILE.csv (owner-only: full keys)."""
    from ospp.machine import fleetview

    if str(file) == "-":  # not standard output: the full keys would go wherever it goes
        raise UsageError(
            "fleet export writes a file, not standard output: it holds full product keys",
            "Give a file name; it is created owner-only.",
        )
    _needs_admin("export")  # it writes full product keys, which a standard user never sees
    n = sum(1 for _ in fleetview.export(ospp_home(), glob, file, clock_from_env()))
    return Result([f"Exported {n} machine(s) to {file}"], {"machines": n, "file": str(file)},
                  banners=False)  # fmt: skip


IMPORT_LIMIT = 64 * 1024 * 1024  # a fleet file from standard input: 10,000 machines is ~1 MB


@fleet_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@JSON_OPTION
@reports
def import_(file: Path) -> Result:
    """Create the machines listed in FILE.csv ('-' reads standard input); all or nothing (a bad
    row names its line). One that exists is refused unless it holds nothing (as the localhost
    most commands make): that one is filled."""
    from ospp.core.files import read_user_file
    from ospp.machine import fleet, fleetcsv

    _needs_admin("import")
    home = ospp_home()
    text = read_user_file(file, "fleet file", IMPORT_LIMIT) if str(file) == "-" else None
    clock = clock_from_env()
    total = fleetcsv.check_import(home, file, text, clock)
    templates = fleet.Templates(clock)
    counts: Counter[str] = Counter()
    try:
        rows = fleetcsv.import_rows(home, file, clock, templates, text)
        with contextlib.closing(rows):  # interrupted, it undoes what it made before it ends
            for done in progress(rows, total, "importing"):
                counts[done.outcome] += 1
    finally:
        templates.close()
    return Result([summary(counts)], {"summary": counts}, banners=False)


@fleet_group.command("timeline")
@click.option("--from", "start", metavar="TIME", help="First day (default: now).")
@click.option("--to", "end", metavar="TIME", help="Last day (default: 210 days after --from).")
@click.option(
    "--step", default="1d", show_default=True, metavar="DURATION", help="Between points: 1d, 12h."
)
@click.option("--svg", "svg_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the chart as SVG.")  # fmt: skip
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path),
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
    from ospp.machine import fleetview

    clock = clock_from_env()
    first = parse_time(start, "--from") if start else clock.now()
    last = parse_time(end, "--to") if end else first + timedelta(days=210)
    by = parse_duration(step, "--step")
    if by <= timedelta(0) or last < first or (last - first) / by > 10_000:
        raise UsageError(
            "--from, --to and --step must give 1 to 10,000 points forward in time",
            "For example: --from 2027-01-01 --to 2027-07-30 --step 1d.",
        )
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


COMMANDS = [fleet_group]
