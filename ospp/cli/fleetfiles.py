"""``ospp fleet export`` and ``ospp fleet import``: the fleet's CSV file (machine, product,
key, KMS host, lookup domain), written owner-only and read all or nothing."""

from __future__ import annotations

import contextlib
from collections import Counter
from pathlib import Path

import click

from ospp.cli.base import JSON_OPTION, Result, reports
from ospp.cli.fleetbase import MACHINES_OPTION, fleet_admin, progress, summary
from ospp.core.clock import clock_from_env
from ospp.core.errors import UsageError
from ospp.core.paths import ospp_home


@click.command("export")
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
    fleet_admin("export")  # it writes full product keys, which a standard user never sees
    n = sum(1 for _ in fleetview.export(ospp_home(), glob, file, clock_from_env()))
    return Result([f"Exported {n} machine(s) to {file}"], {"machines": n, "file": str(file)},
                  banners=False)  # fmt: skip


IMPORT_LIMIT = 64 * 1024 * 1024  # a fleet file from standard input: 10,000 machines is ~1 MB


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@JSON_OPTION
@reports
def import_(file: Path) -> Result:
    """Create the machines listed in FILE.csv ('-' reads standard input); all or nothing (a bad
    row names its line). One that exists is refused unless it holds nothing (as the localhost
    most commands make): that one is filled."""
    from ospp.core.files import read_user_file
    from ospp.machine import fleet, fleetcsv

    fleet_admin("import")
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


FILE_COMMANDS = [export, import_]
