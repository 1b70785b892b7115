"""``ospp fleet``: many simulated machines at once, in the manner of VAMT.

The commands that create, key, activate and remove machines are here; those that report
(status, timeline: :mod:`ospp.cli.fleetreports`) and those that write or read the fleet's
file (export, import: :mod:`ospp.cli.fleetfiles`) are added to the group from their modules.
Long operations show a progress bar on stderr when it is a terminal (nothing when piped or
with --json) and end with counts by outcome. Text and CSV rows are printed as they are read.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import click

from ospp.cli.base import JSON_OPTION, Result, command_name, reports
from ospp.cli.fleetbase import (
    MACHINES_OPTION,
    MAX_SHOWN,
    check_glob,
    counted,
    fleet_admin,
    progress,
    stopped,
    summary,
    wants_json,
)
from ospp.cli.fleetfiles import FILE_COMMANDS
from ospp.cli.fleetreports import REPORT_COMMANDS
from ospp.core.clock import clock_from_env
from ospp.core.errors import N_, Cancelled, LicensingError, OsppError, UsageError
from ospp.core.paths import ospp_home


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

    fleet_admin("create")
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


@fleet_group.command("act")
@MACHINES_OPTION
@JSON_OPTION
@reports
def act(glob: str | None) -> Result:
    """Activate every keyed product (kept connections to each KMS host); exit 1 if any fail."""
    import heapq

    fleet_admin("act")

    from ospp.cli import stream
    from ospp.machine import fleet, fleetact

    home = ospp_home()
    total = len(fleet.require(home, glob))
    counts: Counter[str] = Counter()
    first: list[OsppError] = []  # the first failure tried, as it came (else the first)

    def failures(done: Iterable[Any]) -> Iterator[dict[str, Any]]:
        try:
            for action in progress(done, total, "activating"):
                counts[fleetact.outcome(action)] += 1
                if action.error is not None:
                    tried = not fleetact.not_tried(action)
                    if not first or (tried and fleetact.not_tried_error(first[0])):
                        first[:] = [action.error]
                    yield {"machine": action.machine, "product_id": action.product,
                           "action": action.action, "tried": tried,
                           "error": action.error.to_json()}  # fmt: skip
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
        if wants_json():  # --json lists every failure
            fields = [("summary", counts), ("failures", rows)]
            stream.json_report(command_name(click.get_current_context()), fields, problem)
            return Result(banners=False, failed=problem(), printed=True)
        shown = heapq.nsmallest(MAX_SHOWN, rows, key=lambda row: row["machine"])
    finally:
        pools.close()
    lines = [
        f"{r['machine']}: {r['product_id']}: {r['action']} "
        f"{'failed' if r['tried'] else 'not tried'}: {r['error']['code']} {r['error']['message']}"
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
    "--machines",
    "glob",
    required=True,
    metavar="GLOB",
    callback=check_glob,
    help="Machines to key.",
)
@JSON_OPTION
@reports
def inpkey(key: str, glob: str) -> Result:
    """Install KEY on every machine matching GLOB (and no other)."""
    from ospp.machine import fleet

    fleet_admin("inpkey")
    home = ospp_home()
    total = len(fleet.require(home, glob))
    done = fleet.install_key(home, glob, key, os.environ, clock_from_env())
    return counted(done, total, "installing", coded=True)


@fleet_group.command("remove")
@click.argument("glob", callback=check_glob)
@JSON_OPTION
@reports
def remove(glob: str) -> Result:
    """Delete every machine whose name matches GLOB (and no other); this machine
    (localhost) is kept."""
    from ospp.machine import fleet

    fleet_admin("remove")
    home = ospp_home()
    total = len(fleet.removable(home, glob))
    return counted(fleet.remove(home, glob), total, "removing")


for command in (*REPORT_COMMANDS, *FILE_COMMANDS):
    fleet_group.add_command(command)

COMMANDS = [fleet_group]
