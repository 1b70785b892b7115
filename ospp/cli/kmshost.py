"""``ospp kms``: install and activate a KMS host's key, serve clients, show its counts."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ospp.cli import serving
from ospp.cli.base import (
    JSON_OPTION,
    Result,
    json_wanted,
    needs_admin,
    quiet,
    reports,
    reports_text,
    run,
)
from ospp.cli.kmsdns import dns_group
from ospp.cli.kmskeys import KEY_COMMANDS
from ospp.cli.serving import HTTP_OPTION, LOG_FORMAT_OPTION, LOG_LEVEL_OPTION
from ospp.cli.slash import Group
from ospp.core.errors import UsageError

if TYPE_CHECKING:
    from ospp.cli.stream import Guarded
    from ospp.kmshost.state import KmsHost, ServingState


def _host() -> KmsHost:
    from ospp.kmshost.state import KmsHost

    return KmsHost.from_env()


@click.group("kms", cls=Group)
def kms_group() -> None:
    """A KMS host: install and activate its key, serve clients, show its counts."""


@kms_group.command("set")
@click.option(
    "--activation-interval",
    type=int,
    metavar="MINUTES",
    help="How often unactivated clients retry (15-43200, default 120).",
)
@click.option(
    "--renewal-interval",
    type=int,
    metavar="MINUTES",
    help="How often activated clients renew (15-43200, default 10080).",
)
@click.option(
    "--max-clients",
    type=int,
    metavar="N",
    help="Most client machines the host keeps; beyond it the least recently seen are "
    "dropped (at least 100, default 1000000).",
)
@JSON_OPTION
@reports
def set_(
    activation_interval: int | None, renewal_interval: int | None, max_clients: int | None
) -> Result:
    """Change the intervals the host hands to its clients, or how many clients it keeps."""
    from ospp.kmshost.identity import interval_settings
    from ospp.kmshost.retention import check_max_clients

    needs_admin("ospp kms set")
    if activation_interval is None and renewal_interval is None and max_clients is None:
        raise UsageError(
            "nothing to set: give --activation-interval, --renewal-interval, --max-clients "
            "or several",
            "ospp kms status shows the settings in use.",
        )
    interval_settings(activation_interval, renewal_interval)  # refused before a store is made
    if max_clients is not None:
        check_max_clients(max_clients)
    host = _host()
    host.status()  # what it shows after the change is read first: damaged, nothing is changed
    host.configure(activation_interval, renewal_interval, max_clients)
    st = host.status()
    return Result(
        ["Successfully applied setting."],
        {
            "activation_interval_minutes": st["activation_interval"],
            "renewal_interval_minutes": st["renewal_interval"],
            "max_clients": st["max_clients"],
        },
        banners=False,
    )


@kms_group.command("status")
@JSON_OPTION
@reports
def status() -> Result:
    """The host's key, activation, counts and request statistics (like slmgr /dlv)."""
    from ospp.cli.slmgr_render import REQUEST_LINES
    from ospp.kmshost.settings import request_counts
    from ospp.kmshost.state import KmsHost
    from ospp.kmshost.status import empty_status

    host = KmsHost.stored_from_env()  # reading a host that has no store yet makes none
    st = host.status() if host is not None else empty_status()
    if st["activated"]:
        lines = ["Key Management Service is enabled on this machine"]
    elif st["packs"]:
        lines = ["Key Management Service host key is not activated"]
    else:
        lines = ["No Key Management Service host key is installed: ospp kms install-key KEY"]
    if len(st["packs"]) > 1:
        lines += _pack_lines(st)
    else:
        if st["key_last5"]:
            lines.append(f"    Partial Product Key: {st['key_last5']}")
        if st["attention"]:
            lines.append(f"    ATTENTION: {st['attention']}")
        if st["epid"]:
            lines.append(f"    KMS host ePID: {st['epid']}")
        for app, count in sorted(st["current_count"].items()) or [("-", 0)]:
            lines.append(
                f"    Current count: {count}" + (f" (application {app})" if app != "-" else "")
            )
    lines += [
        f"    Listening on Port: {st.get('port', 1688)}",
        "    DNS publishing " + ("enabled" if st["dns_publishing"] else "disabled"),
        f"    KMS priority: {st['priority'].capitalize()}",
        f"    Activation interval: {st['activation_interval']} minutes",
        f"    Renewal interval: {st['renewal_interval']} minutes",
        "",
        "Key Management Service cumulative requests received from clients",
        f"    Total requests received: {st['requests_total']}",
        f"    Failed requests received: {st['requests_failed']}",
    ]
    counts = request_counts(st)
    for name, label in REQUEST_LINES:  # slmgr /dlv's lines, every one
        lines.append(f"    {label}{counts[name]}")
    extended = st["requests_by_status"].get("extended_grace", 0)
    if extended:  # a state clients may report that slmgr.vbs has no line for
        lines.append(f"    Requests with License Status Extended grace period: {extended}")
    lines.append(f"    Stored client machines: {st['stored_clients']}")
    lines.append(f"    Stored client machines at most: {st['max_clients']}")
    if st["dns_last_publish"]:
        last = st["dns_last_publish"]
        lines.append(f"    Last DNS publishing: {last['at']}: {last['result']}")
    return Result(lines, status_json(st), banners=False)


def status_json(st: dict[str, Any]) -> dict[str, Any]:
    """``kms status --json``: the host's status in the names of docs/JSON.md."""
    renamed = {"activation_interval": "activation_interval_minutes",
               "renewal_interval": "renewal_interval_minutes"}  # fmt: skip
    data = {renamed.get(k, k): v for k, v in st.items()}
    last = st.get("dns_last_publish")
    if last:
        data["dns_last_publish"] = {"published_at": last["at"], "result": last["result"]}
    return data


def _pack_lines(st: dict[str, Any]) -> list[str]:
    """One block per licence pack, then the counts of groups no pack holds any more."""
    lines = []
    for pack in st["packs"]:
        state = "activated" if pack["activated"] else "not activated"
        lines += [
            f"    Licence pack: {pack['product_id']} ({pack['group']}), {state}",
            f"        Partial Product Key: {pack['key_last5']}",
        ]
        if pack["attention"]:
            lines.append(f"        ATTENTION: {pack['attention']}")
        if pack["epid"]:
            lines.append(f"        KMS host ePID: {pack['epid']}")
        lines.append(
            f"        Current count: {pack['current_count']} (application {pack['application_id']})"
        )
    held = {pack["application_id"] for pack in st["packs"]}
    for app, count in sorted(st["current_count"].items()):
        if app not in held:
            lines.append(f"    Current count: {count} (application {app}, no licence pack)")
    return lines


@kms_group.command("clients")
@click.option(
    "--limit",
    type=click.IntRange(min=0, max=2**31 - 1),
    default=100,
    show_default=True,
    help="Show at most this many clients, most recent first; 0 shows them all.",
)
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (with a header line) instead.")
@JSON_OPTION
@click.pass_context
def clients(ctx: click.Context, limit: int, as_csv: bool, as_json: bool) -> None:
    """Which client machines asked this host, most recent first (printed as they are read,
    so --limit 0 lists a million clients in constant memory). The host keeps at most
    'kms set --max-clients' of them (1000000 by default), the least recently seen dropped
    first."""
    from ospp.cli import stream
    from ospp.core.db import close_all
    from ospp.kmshost.report import Reader
    from ospp.kmshost.state import KmsHost

    wanted_json = json_wanted(ctx, as_json)
    reader: Reader | None = None
    try:
        if as_csv and wanted_json:
            raise UsageError("--csv and --json exclude each other", "Give one of them.")
        host = KmsHost.stored_from_env()  # reading a host makes no store
        if host is not None:
            reader = Reader(Path(host.db.path), host.clock)
            rows = stream.started(reader.iter_clients(limit))
        else:
            rows = stream.started(iter(()))
    except Exception as exc:  # reported like any command's failure (run exits)
        failure = exc

        def fail() -> Result:
            raise failure

        run("kms clients", wanted_json, fail)
        return
    guarded = stream.Guarded(rows)
    try:
        _print_clients(guarded, as_csv, wanted_json)
    finally:
        if reader is not None:
            reader.close()
        close_all()
    damaged = guarded.error
    if damaged is None:
        return
    if wanted_json and not as_csv:  # the envelope carried it
        sys.exit(int(damaged.exit_status))

    def report() -> Result:  # after the rows printed
        raise damaged

    run("kms clients", False, report)


def _as_csv_text(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The rows with what clients sent (CMID, workstation name) made safe for a CSV cell."""
    from ospp.core.printable import csv_cell

    for row in rows:
        row["cmid"] = csv_cell(row["cmid"])
        row["workstation"] = csv_cell(row["workstation"])
        yield row


def _print_clients(rows: Guarded, as_csv: bool, wanted_json: bool) -> None:
    from ospp.cli import stream

    if as_csv:
        columns = (
            "last_seen_at",
            "cmid",
            "workstation",
            "sku_id",
            "application_id",
            "first_seen_at",
        )
        header = ("last_seen", "cmid", "workstation", "sku_id", "app_id", "first_seen")
        stream.csv_rows(
            (*columns, "requests"), _as_csv_text(iter(rows)), header=(*header, "requests")
        )
    elif wanted_json:
        stream.json_report("kms clients", [("clients", iter(rows))], lambda: rows.error)
    elif not quiet():
        stream.text_lines(
            rows,
            lambda r: (
                f"{r['last_seen_at']}  {stream.printable(r['cmid'])}  "
                f"{stream.pad(stream.printable(r['workstation']) or '-', 16)} "
                f"{r['requests']:>5} request(s)"
            ),
            "<No clients>",
        )


@kms_group.command("ping")
@click.argument("address", metavar="HOST[:PORT]")
@JSON_OPTION
@reports
def ping(address: str) -> Result:
    """One signed round trip to a KMS host (for health checks): exit 0 if a working, activated
    host answered, 4 otherwise."""
    from ospp.core.endpoint import parse_host
    from ospp.machine.kmsping import ping as ping_host

    pong = ping_host(parse_host(address, 1688, "HOST[:PORT]"), os.environ)
    trust = (
        f"certified for {pong.product} by a trusted authority"
        if pong.trusted
        else "signature checked against the host key its certificate names (no trusted "
        "authority installed)"
    )
    return Result(
        [
            f"KMS host at {pong.endpoint} answered in {pong.seconds * 1000:.1f} ms",
            f"    KMS host ePID: {pong.epid}",
            f"    {trust}",
        ],
        {
            "kms_host": str(pong.endpoint),
            "epid": pong.epid,
            "product_id": pong.product,
            "trusted": pong.trusted,
            "round_trip_ms": round(pong.seconds * 1000, 3),
        },
        banners=False,
    )


NO_PORT = -1  # a --listen address that names no port


def _finite(param: click.Parameter, value: float) -> float:
    """A range check NaN passes (every comparison with it is false): refuse it here."""
    if value != value:
        raise click.BadParameter("NaN is not a number of seconds", param=param)
    return value


@kms_group.command("serve")
@click.option(
    "--listen",
    multiple=True,
    metavar="HOST[:PORT]",
    help="Address to listen on: IPv4, [IPv6] or a name; * or :PORT for every IPv4 and IPv6 "
    "address; port 0 picks a free one. Repeatable, one port for all: an address without a "
    "port takes the one another names, else the host's (slmgr /sprt; 1688 unless set). "
    "[default: 0.0.0.0]",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=0.1, max=86400.0),
    callback=lambda ctx, param, value: _finite(param, value),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="Close connections idle this long (0.1 to 86400).",
)
@click.option(
    "--log",
    "log_to",
    default="-",
    show_default=True,
    metavar="PATH|-|none",
    help="Where the one-line JSON log of each request goes (- is stderr). SIGHUP reopens it.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Most connections open at once; a new client closes the longest-idle one "
    "[default: the open-file limit less 96, at most 10000].",
)
@HTTP_OPTION
@LOG_LEVEL_OPTION
@LOG_FORMAT_OPTION
@reports_text
def serve(
    listen: tuple[str, ...],
    idle_timeout: float,
    log_to: str,
    max_connections: int | None,
    http: str | None,
    log_level: str,
    log_format: str,
) -> Result:
    """Serve KMS clients until SIGTERM or Ctrl+C; prints 'LISTENING PORT' when ready (and
    'HTTP HOST:PORT' after it with --http). Speaks sd_notify under systemd."""
    from ospp.core import logs
    from ospp.core.endpoint import listen_set, parse_host, parse_listen
    from ospp.kmshost import server
    from ospp.kmshost.operations import Operations
    from ospp.kmshost.requestlog import open_log

    given = [parse_listen(text, NO_PORT) for text in listen or ("0.0.0.0",)]
    named = [e for e in given if e.port != NO_PORT]
    if named:  # one port for all, refused before anything is opened
        listen_set(named)
    http_at = parse_host(http, 8080, "--http", listen=True) if http is not None else None
    logs.setup(serving.log_level(log_level), log_format)
    log = open_log(log_to)
    host = _host()
    hosts, port = [e.host for e in given], named[0].port if named else host.configured_port()
    ops = Operations(host, http_at)

    def ready(shown: str, bound: int, state: ServingState) -> None:
        click.echo(f"LISTENING {bound}")
        if ops.http_address:
            click.echo(f"HTTP {ops.http_address}")

    def event(record: dict[str, Any]) -> None:
        logging.getLogger("ospp.kms.dns").debug("dns publish", extra={"fields": record})

    server.serve(
        host,
        hosts,
        port,
        idle_timeout=idle_timeout,
        log=log,
        ready=ready,
        events=event,
        max_connections=max_connections,
        ops=ops,
    )
    return Result([], banners=False)


for command in KEY_COMMANDS:
    kms_group.add_command(command)
kms_group.add_command(dns_group)

COMMANDS = [kms_group]
