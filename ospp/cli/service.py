"""``ospp service``: what the client licensing service would do now, on one machine or a fleet
(KMS retries and renewals, the licensing service's state, and the reminders its user sees)."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import click

from ospp.cli import complete
from ospp.cli.base import JSON_OPTION, Result, reports
from ospp.core.errors import E_KEY_NOT_AVAILABLE, LicensingError, hex_code


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
    every activation interval and renew activated ones every renewal interval."""
    from ospp.core.paths import ospp_home
    from ospp.machine import client
    from ospp.machine import service as licensing

    names: list[str | None] = list(computers) or [None]
    if all_machines:
        names = list(licensing.machine_names(ospp_home()))
    if not names:
        raise LicensingError(E_KEY_NOT_AVAILABLE, "there are no simulated machines yet")
    if notify:
        return _notify(names, lang)
    from ospp.cli.fleet import progress, summary
    from ospp.machine import fleetact

    lines: list[str] = []
    services: list[dict[str, Any]] = []
    for name in names:  # /osppsvcauto and /osppsvcrestart set it; the pass runs regardless
        store = client.open_machine(name)
        state = {"machine": store.name, **client.service_state(store)}
        store.db.close()
        services.append(state)
        since = f" since {state['started_at']}" if state["started_at"] else ""
        lines.append(
            f"{store.name}: {state['name']}: {state['state']}{since}, "
            f"startup type {state['start_mode']}"
        )
    rows: list[dict[str, Any]] = []
    first = None
    counts: Counter[str] = Counter()
    pools = fleetact.Pools()  # worker threads, one connection per KMS host in each
    done_all = fleetact.service(names, os.environ, pools)
    for done in sorted(progress(done_all, len(names), "service"), key=lambda a: a.machine):
        counts[fleetact.outcome(done)] += 1
        row: dict[str, Any] = {
            "machine": done.machine,
            "product_id": done.product,
            "status": done.status,
            "action": done.action,
        }
        where = f"{done.machine}: {done.product}"
        if done.action is None:
            lines.append(f"{where}: nothing due ({done.status})")
        elif done.error is None:
            row.update(ok=True, kms_host=done.host, count=done.count)
            lines.append(f"{where}: {done.action} succeeded at {done.host} (count {done.count})")
        else:
            row.update(ok=False, error=done.error.to_json())
            lines.append(
                f"{where}: {done.action} failed: {hex_code(done.error.code)} {done.error.message}"
            )
            first = first or done.error
        rows.append(row)
    pools.close()
    if len(names) > 1:
        lines.append(summary(counts))
    data: dict[str, Any] = {"services": services, "actions": rows, "summary": counts}
    if len(names) <= REMINDERS_UP_TO:
        reminders = _notify(names, lang)
        lines += reminders.lines
        data.update(reminders.data)
    return Result(lines, data, banners=False, failed=first)


REMINDERS_UP_TO = 100  # a fleet-sized pass reports counts; 'service --notify' tells each user


def _notify(names: list[str | None], lang: str | None) -> Result:
    """What each machine's user would be told now: reminders and notices, translated."""
    from ospp.cli.reminders import lines as words
    from ospp.machine import client
    from ospp.machine.reminders import notices

    lines: list[str] = []
    rows: list[dict[str, Any]] = []
    for name in names:
        store = client.open_machine(name, os.environ)
        found = notices(client.statuses(store, environ=os.environ))
        store.db.close()
        lines += [f"{store.name}: {line}" for line in words(found, lang)]
        rows += [{"machine": store.name, **n.to_json()} for n in found]
    return Result(lines, {"reminders": rows}, banners=False)


COMMANDS = [service]
