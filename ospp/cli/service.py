"""``ospp service``: what the client licensing service would do now, on one machine or a fleet
(KMS retries and renewals, the licensing service's state, and the reminders its user sees)."""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterator
from itertools import chain
from typing import TYPE_CHECKING, Any

import click

from ospp.cli import complete, stream
from ospp.cli.base import JSON_OPTION, Result, command_name, json_wanted, quiet, reports
from ospp.core.errors import OsppError, hex_code, reported

if TYPE_CHECKING:
    from ospp.machine.service import Action


@click.command("service")
@click.argument(
    "computers", nargs=-1, metavar="[COMPUTERNAME]...", shell_complete=complete.machines
)
@click.option("--all", "all_machines", is_flag=True, help="Every simulated machine.")
@click.option(
    "--notify",
    is_flag=True,
    help="Only print what the user would be told on this simulated day (grace left, "
    "notifications); activate nothing.",
)
@click.option(
    "--lang",
    type=click.Choice(["sv", "en"]),
    help="Language of the reminders (default: from LANGUAGE, LC_ALL, LC_MESSAGES or LANG).",
)
@JSON_OPTION
@reports
def service(
    computers: tuple[str, ...], all_machines: bool, notify: bool, lang: str | None
) -> Result:
    """Do what the licensing service would do now (OSPP_NOW): retry unactivated KMS products
    every activation interval and renew activated ones every renewal interval.

    Up to 100 machines, each machine's service, what it did and what its user is told are
    printed; beyond that, the first 20 failures and the counts (--json lists everything)."""
    from ospp.core.paths import ospp_home
    from ospp.machine import client
    from ospp.machine.fleet import require

    names: list[str | None] = list(computers) or [None]
    if all_machines:  # none: 0x800706BA, as for 'fleet act' and a computer name that names none
        names = list(require(ospp_home(), None))
    if notify:
        return _notify_all(names, lang, listed=all_machines)
    from ospp.cli.fleetbase import MAX_SHOWN, progress, stopped, summary
    from ospp.machine import fleetact

    ctx = click.get_current_context()
    counts: Counter[str] = Counter()
    first: list[OsppError] = []  # the first failure of each kind (exit status), in machine order

    unreadable: set[str | None] = set()  # with --all: reported by the pass, machine by machine

    def services() -> Iterator[dict[str, Any]]:
        for name in names:  # /osppsvcauto and /osppsvcrestart set it; the pass runs regardless
            try:
                store = client.open_machine(name)
            except OsppError:
                if not all_machines:
                    raise
                unreadable.add(name)
                continue
            try:
                yield {"machine": store.name, **client.service_state(store)}
            finally:
                store.db.close()

    def actions(pools: fleetact.Pools) -> Iterator[dict[str, Any]]:
        done_all = fleetact.service(names, os.environ, pools, ordered=True, listed=all_machines)
        done = progress(done_all, len(names), "service")
        if not all_machines:  # machines named on the command line: reported by name
            done = iter(sorted(done, key=lambda a: a.machine))
        try:
            for action in done:
                counts[fleetact.outcome(action)] += 1
                error = action.error
                if error is not None:  # the first of its kind; one tried before one not sent
                    same = [n for n, e in enumerate(first) if e.exit_status == error.exit_status]
                    sent = not fleetact.not_tried(action)
                    if not same:
                        first.append(error)
                    elif sent and fleetact.not_tried_error(first[same[0]]):
                        first[same[0]] = error
                yield action_row(action)
        except KeyboardInterrupt:
            raise stopped(counts, len(names)) from None

    def failure() -> OsppError | None:  # what failed decides the exit status, not where
        return reported(first)

    def readable() -> list[str | None]:
        return [n for n in names if n not in unreadable]

    def reminders() -> Iterator[tuple[str, Any]]:
        if len(names) <= REMINDERS_UP_TO:
            yield from _notify(readable(), lang, listed=all_machines).data.items()

    pools = fleetact.Pools()  # one connection per KMS host, shared by the worker threads
    try:
        if json_wanted(ctx, bool(ctx.params.get("as_json"))):
            fields = [("services", services()), ("actions", actions(pools)), ("summary", counts)]
            stream.json_report(command_name(ctx), chain(fields, reminders()), failure)
            return Result(banners=False, failed=failure(), printed=True)
        fleet_sized = len(names) > REMINDERS_UP_TO  # counts and failures, as 'fleet act'
        with stream.Held(quiet()) as out:  # a store that cannot be opened: only the error
            for state in () if fleet_sized else services():
                since = f" since {state['started_at']}" if state["started_at"] else ""
                out.line(
                    f"{state['machine']}: {state['name']}: {state['state']}{since}, "
                    f"startup type {state['start_mode']}"
                )
            if not sys.stderr.isatty():  # else a progress bar is shown: the lines come after it
                out.go()
            failed = 0
            for row in actions(pools):
                if not fleet_sized:
                    out.line(action_line(row))
                elif row.get("ok") is False:  # in machine order: the first failures by name
                    failed += 1
                    if failed <= MAX_SHOWN:
                        out.line(action_line(row))
            if failed > MAX_SHOWN:
                out.line(f"... and {failed - MAX_SHOWN} more failures (--json lists them all)")
            if len(names) > 1:
                out.line(summary(counts))
            if not fleet_sized:
                for line in _notify(readable(), lang, listed=all_machines).lines:
                    out.line(line)
            out.go()  # after a progress bar, every line now
            out.release = bool(first)  # with --quiet, the lines are printed only on failure
    finally:
        pools.close()
    return Result(banners=False, failed=failure(), printed=True)


def action_row(done: Action) -> dict[str, Any]:
    row: dict[str, Any] = {
        "machine": done.machine,
        "product_id": done.product,
        "status": done.status,
        "action": done.action,
    }
    if done.action is not None and done.error is None:
        row.update(ok=True, kms_host=done.host, count=done.count)
    elif done.action is not None and done.error is not None:
        from ospp.machine.fleetact import not_tried

        row.update(ok=False, tried=not not_tried(done), error=done.error.to_json())
    return row


def action_line(row: dict[str, Any]) -> str:
    if row["product_id"] is None:  # the store could not be read
        error = row["error"]
        return f"{row['machine']}: cannot be read: {error['code']} {error['message']}"
    where = f"{row['machine']}: {row['product_id']}"
    if row["action"] is None:
        return f"{where}: nothing due ({row['status']})"
    if row["ok"]:
        return f"{where}: {row['action']} succeeded at {row['kms_host']} (count {row['count']})"
    error = row["error"]
    failed = "failed" if row.get("tried", True) else "not tried"
    return f"{where}: {row['action']} {failed}: {error['code']} {error['message']}"


REMINDERS_UP_TO = 100  # a fleet-sized pass reports counts; 'service --notify' tells each user


def _notify(names: list[str | None], lang: str | None, listed: bool = False) -> Result:
    """What each machine's user would be told now: reminders and notices, translated.
    ``listed`` (--all): a machine removed meanwhile is passed over."""
    lines: list[str] = []
    rows: list[dict[str, Any]] = []
    for said, told in _told(names, lang, listed=listed):
        lines += said
        rows += told
    return Result(lines, {"reminders": rows}, banners=False)


def _notify_all(names: list[str | None], lang: str | None, listed: bool = False) -> Result:
    """:func:`_notify` for any number of machines, printed as it is read. ``listed`` (--all):
    a store that cannot be read is said on its machine's line, and the others are told; the
    first such error is the command's."""
    first: list[OsppError] = []
    told = _told(names, lang, first if listed else None, listed)
    ctx = click.get_current_context()
    if json_wanted(ctx, bool(ctx.params.get("as_json"))):
        rows = (row for _, rows in told for row in rows)
        # a store that cannot be read mid-way (a named machine) is the one JSON error
        stream.json_report(
            command_name(ctx), [("reminders", rows)], lambda: first[0] if first else None
        )
        return Result(banners=False, failed=first[0] if first else None, printed=True)
    with stream.Held(quiet()) as out:  # a store that cannot be read: only the error, as before
        for said, _ in told:
            for line in said:
                out.line(line)
        out.release = not quiet()
    return Result(banners=False, failed=first[0] if first else None, printed=True)


def _told(
    names: list[str | None],
    lang: str | None,
    unreadable: list[OsppError] | None = None,
    listed: bool = False,
) -> Iterator[tuple[list[str], list[dict[str, Any]]]]:
    """Each machine's reminders: (lines, JSON rows). With ``unreadable``, a store that cannot
    be read is one line, its error kept there; else its error ends the list. ``listed``: the
    names come from the list of machines (--all), so one removed since ('fleet remove' at the
    same time) is passed over, as the pass passes over it."""
    from ospp.cli.reminders import lines as words
    from ospp.core.paths import ospp_home
    from ospp.machine import client, fleet
    from ospp.machine.reminders import notices
    from ospp.machine.store import NoMachine

    for name in names:
        try:
            store = client.open_machine(name, os.environ)
            try:
                found = notices(client.statuses(store, environ=os.environ))
            finally:
                store.db.close()
        except NoMachine:
            if listed:
                continue
            raise
        except OsppError as exc:
            if listed and name is not None and fleet.removed(ospp_home(), name):
                continue  # removed while it was read
            if unreadable is None:
                raise
            unreadable.append(exc)
            yield [f"{name}: cannot be read: {hex_code(exc.code)} {exc.message}"], []
            continue
        yield (
            [f"{store.name}: {line}" for line in words(found, lang)],
            [{"machine": store.name, **n.to_json()} for n in found],
        )


COMMANDS = [service]
