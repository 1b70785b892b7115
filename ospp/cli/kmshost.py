"""``ospp kms``: run a KMS host; ``ospp service``: what the client licensing service does."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from ospp.cli import serving
from ospp.cli.base import JSON_OPTION, Result, json_wanted, quiet, reports, run
from ospp.cli.serving import HTTP_OPTION, LOG_FORMAT_OPTION, LOG_LEVEL_OPTION
from ospp.core.clock import clock_from_env
from ospp.core.errors import LicensingError, hex_code
from ospp.core.paths import kms_home


def _host() -> Any:
    from ospp.kmshost.state import KmsHost

    return KmsHost.open(kms_home(), clock_from_env())


@click.group("kms")
def kms_group() -> None:
    """A KMS host: install and activate its key, serve clients, show its counts."""


@kms_group.command("install-key")
@click.argument("key")
@JSON_OPTION
@click.pass_context
def install_key(ctx: click.Context, key: str, as_json: bool) -> None:
    """Install a KMS host key (from 'ospp center issue-key --channel kms-host')."""

    def body() -> Result:
        installed = _host().install_key(key)
        return Result(
            [
                f"Installed KMS host key *****-{installed.last5} for {installed.product.id}",
                "Activate it: ospp kms activate (online) or ospp kms dinstid / actcid (phone).",
            ],
            {"product": installed.product.id, "key_last5": installed.last5},
            banners=False,
        )

    run("kms install-key", json_wanted(ctx, as_json), body)


@kms_group.command("activate")
@JSON_OPTION
@click.pass_context
def activate(ctx: click.Context, as_json: bool) -> None:
    """Activate the host key online with the activation authority."""

    def body() -> Result:
        host = _host()
        product = host.activate_online(os.environ)
        epid = host.meta()["epid"]
        return Result(
            [f"<KMS host activated for {product.id}>", f"KMS host ePID: {epid}"],
            {"product": product.id, "epid": epid},
            banners=False,
        )

    run("kms activate", json_wanted(ctx, as_json), body)


@kms_group.command("dinstid")
@JSON_OPTION
@click.pass_context
def dinstid(ctx: click.Context, as_json: bool) -> None:
    """Show the host key's installation ID, for phone activation."""

    def body() -> Result:
        iid = _host().installation_id()
        return Result(
            [f"Installation ID for the KMS host key: {iid.text()}"],
            {"installation_id": iid.text(), "groups": iid.groups()},
            banners=False,
        )

    run("kms dinstid", json_wanted(ctx, as_json), body)


@kms_group.command("actcid")
@click.argument("cid")
@JSON_OPTION
@click.pass_context
def actcid(ctx: click.Context, cid: str, as_json: bool) -> None:
    """Activate the host key with a confirmation ID from the phone centre."""

    def body() -> Result:
        host = _host()
        product = host.apply_cid(cid, os.environ)
        return Result(
            [f"<KMS host activated by phone for {product.id}>"],
            {"product": product.id, "epid": host.meta()["epid"]},
            banners=False,
        )

    run("kms actcid", json_wanted(ctx, as_json), body)


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
@JSON_OPTION
@click.pass_context
def set_(
    ctx: click.Context, activation_interval: int | None, renewal_interval: int | None, as_json: bool
) -> None:
    """Change the intervals the host hands to its clients."""

    def body() -> Result:
        host = _host()
        host.set_intervals(activation_interval, renewal_interval)
        st = host.status()
        return Result(
            ["Successfully applied setting."],
            {
                "activation_interval": st["activation_interval"],
                "renewal_interval": st["renewal_interval"],
            },
            banners=False,
        )

    run("kms set", json_wanted(ctx, as_json), body)


@kms_group.command("status")
@JSON_OPTION
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """The host's key, activation, counts and request statistics (like slmgr /dlv)."""

    def body() -> Result:
        st = _host().status()
        lines = [
            "Key Management Service is enabled on this machine"
            if st["activated"]
            else "Key Management Service host key is not activated"
        ]
        if st["key_last5"]:
            lines.append(f"    Partial Product Key: {st['key_last5']}")
        if st["epid"]:
            lines.append(f"    KMS host ePID: {st['epid']}")
        for app, count in sorted(st["current_count"].items()) or [("-", 0)]:
            lines.append(
                f"    Current count: {count}" + (f" (application {app})" if app != "-" else "")
            )
        lines += [
            f"    Listening on Port: {st.get('port', 1688)}",
            "    DNS publishing " + ("enabled" if st["dns_publishing"] else "disabled"),
            "    KMS priority: Normal",
            f"    Activation interval: {st['activation_interval']} minutes",
            f"    Renewal interval: {st['renewal_interval']} minutes",
            "",
            "Key Management Service cumulative requests received from clients",
            f"    Total requests received: {st['requests_total']}",
            f"    Failed requests received: {st['requests_failed']}",
        ]
        for label, n in sorted(st["requests_by_status"].items()):
            lines.append(f"    Requests with License Status {label.upper()}: {n}")
        lines.append(f"    Stored client machines: {st['stored_clients']}")
        if st["dns_last_publish"]:
            last = st["dns_last_publish"]
            lines.append(f"    Last DNS publishing: {last['at']}: {last['result']}")
        return Result(lines, st, banners=False)

    run("kms status", json_wanted(ctx, as_json), body)


@kms_group.command("clients")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="At most this many clients, most recent first; 0 for all.",
)
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (with a header line) instead.")
@JSON_OPTION
@click.pass_context
def clients(ctx: click.Context, limit: int, as_csv: bool, as_json: bool) -> None:
    """Which client machines asked this host, most recent first (printed as they are read,
    so --limit 0 lists a million clients in constant memory)."""
    from ospp.cli import stream
    from ospp.core.db import close_all
    from ospp.kmshost.report import Reader

    wanted_json = json_wanted(ctx, as_json)
    try:
        host = _host()
        reader = Reader(host.db.path, host.clock)
        rows = stream.started(reader.iter_clients(limit))
    except Exception as exc:  # reported like any command's failure (run exits)
        failure = exc

        def fail() -> Result:
            raise failure

        run("kms clients", wanted_json and not as_csv, fail)
        return
    try:
        _print_clients(rows, as_csv, wanted_json)
    finally:
        reader.close()
        close_all()


def _print_clients(rows: Iterator[dict[str, Any]], as_csv: bool, wanted_json: bool) -> None:
    from ospp.cli import stream

    if as_csv:
        columns = ("last_seen", "cmid", "workstation", "sku_id", "app_id", "first_seen")
        stream.csv_rows((*columns, "requests"), rows)
    elif wanted_json:
        stream.json_list("kms clients", "clients", rows)
    elif not quiet():
        stream.text_lines(
            rows,
            lambda r: (
                f"{r['last_seen']}  {r['cmid']}  "
                f"{stream.printable(r['workstation']) or '-':<16} {r['requests']:>5} request(s)"
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
            "host": str(pong.endpoint),
            "epid": pong.epid,
            "product": pong.product,
            "trusted": pong.trusted,
            "ms": round(pong.seconds * 1000, 3),
        },
        banners=False,
    )


@kms_group.command("serve")
@click.option(
    "--listen",
    multiple=True,
    default=("0.0.0.0:1688",),
    show_default=True,
    metavar="HOST:PORT",
    help="Address to listen on: IPv4, [IPv6] or a name; :PORT for every IPv4 and IPv6 address; "
    "port 0 picks a free port. Repeatable (one port for all).",
)
@click.option(
    "--idle-timeout",
    type=float,
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="Close connections idle this long.",
)
@click.option(
    "--log",
    "log_to",
    default="-",
    show_default=True,
    metavar="PATH|-|none",
    help="Where the one-line JSON log of each request goes (- is stderr). SIGHUP reopens it.",
)
@HTTP_OPTION
@LOG_LEVEL_OPTION
@LOG_FORMAT_OPTION
def serve(
    listen: tuple[str, ...],
    idle_timeout: float,
    log_to: str,
    http: str | None,
    log_level: str,
    log_format: str,
) -> None:
    """Serve KMS clients until SIGTERM or Ctrl+C; prints 'LISTENING PORT' when ready (and
    'HTTP HOST:PORT' after it with --http). Speaks sd_notify under systemd."""

    def body() -> Result:
        from ospp.core import logs
        from ospp.core.endpoint import listen_set, parse_host, parse_listen
        from ospp.kmshost import server
        from ospp.kmshost.operations import Operations

        hosts, port = listen_set([parse_listen(text, 1688) for text in listen])
        http_at = parse_host(http, 8080, "--http", listen=True) if http else None
        logs.setup(serving.log_level(log_level), log_format)
        log = server.open_log(log_to)
        host = _host()
        ops = Operations(host, http_at)

        def ready(shown: str, bound: int, state: Any) -> None:
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
            ops=ops,
        )
        return Result([], banners=False)

    run("kms serve", False, body)


@click.command("service")
@click.argument("computers", nargs=-1, metavar="[COMPUTERNAME]...")
@click.option("--all", "all_machines", is_flag=True, help="Every simulated machine.")
@JSON_OPTION
@click.pass_context
def service(
    ctx: click.Context, computers: tuple[str, ...], all_machines: bool, as_json: bool
) -> None:
    """Do what the licensing service would do now (OSPP_NOW): retry unactivated KMS products
    every activation interval and renew activated ones every renewal interval."""

    def body() -> Result:
        from ospp.core.paths import ospp_home
        from ospp.machine import service as licensing

        names: list[str | None] = list(computers) or [None]
        if all_machines:
            names = list(licensing.machine_names(ospp_home()))
        if not names:
            raise LicensingError(0xC004F014, "there are no simulated machines yet")
        lines: list[str] = []
        rows: list[dict[str, Any]] = []
        first = None
        for done in licensing.run(names, os.environ):
            row: dict[str, Any] = {
                "machine": done.machine,
                "product": done.product,
                "status": done.status,
                "action": done.action,
            }
            where = f"{done.machine}: {done.product}"
            if done.action is None:
                lines.append(f"{where}: nothing due ({done.status})")
            elif done.error is None:
                row.update(ok=True, host=done.host, count=done.count)
                lines.append(
                    f"{where}: {done.action} succeeded at {done.host} (count {done.count})"
                )
            else:
                row.update(ok=False, error=done.error.to_json())
                lines.append(
                    f"{where}: {done.action} failed: "
                    f"{hex_code(done.error.code)} {done.error.message}"
                )
                first = first or done.error
            rows.append(row)
        return Result(lines, {"actions": rows}, banners=False, failed=first)

    run("service", json_wanted(ctx, as_json), body)


COMMANDS = [kms_group, service]


@kms_group.group("dns")
def dns_group() -> None:
    """Publishing the host's _vlmcs._tcp SRV record by DNS dynamic update (RFC 2136, TSIG)."""


@dns_group.command("set")
@click.option("--server", metavar="ADDR[:PORT]", help="DNS server that accepts the updates.")
@click.option("--domain", help="Domain to publish in, e.g. corp.example.com.")
@click.option("--hostname", help="The SRV target: this host's DNS name.")
@click.option(
    "--address",
    "addresses",
    multiple=True,
    metavar="IP",
    help="Also publish this A/AAAA address for --hostname (repeatable).",
)
@click.option("--ttl", type=int, help="Record TTL in seconds (default 3600).")
@click.option("--priority", type=int, help="SRV priority in the own domain (default 0).")
@click.option("--weight", type=int, help="SRV weight in the own domain (default 100).")
@click.option(
    "--extra",
    multiple=True,
    metavar="DOMAIN[,PRIORITY,WEIGHT]",
    help="Also publish in this domain (repeatable).",
)
@click.option("--interval-hours", type=float, help="Re-publish interval (default 24).")
@click.option(
    "--tsig-keyfile",
    type=click.Path(dir_okay=False, path_type=Path),
    help="BIND key file (tsig-keygen output) that signs the updates; '-' reads standard input.",
)
@JSON_OPTION
@click.pass_context
def dns_set(
    ctx: click.Context,
    server: str | None,
    domain: str | None,
    hostname: str | None,
    addresses: tuple[str, ...],
    ttl: int | None,
    priority: int | None,
    weight: int | None,
    extra: tuple[str, ...],
    interval_hours: float | None,
    tsig_keyfile: Path | None,
    as_json: bool,
) -> None:
    """Configure and enable DNS publishing (options not given keep their value)."""

    def body() -> Result:
        from ospp.dns.publish import read_key_file

        host = _host()
        pub = host.publishing()
        for name, value in (
            ("server", server),
            ("domain", domain),
            ("hostname", hostname),
            ("ttl", ttl),
            ("priority", priority),
            ("weight", weight),
            ("interval_hours", interval_hours),
        ):
            if value is not None:
                setattr(pub, name, value.rstrip(".") if isinstance(value, str) else value)
        if addresses:
            pub.addresses = list(addresses)
        if extra:
            pub.extra = list(extra)
        if tsig_keyfile is not None:
            from ospp.cli.stream import read_input

            text = (
                read_input(tsig_keyfile, "TSIG key file")[0] if str(tsig_keyfile) == "-" else None
            )
            pub.tsig_name, pub.tsig_algorithm, pub.tsig_secret = read_key_file(tsig_keyfile, text)
        pub.enabled = True
        host.set_publishing(pub)
        return Result(
            ["Successfully applied setting. DNS publishing enabled."], pub.shown(), banners=False
        )

    run("kms dns set", json_wanted(ctx, as_json), body)


@dns_group.command("disable")
@JSON_OPTION
@click.pass_context
def dns_disable(ctx: click.Context, as_json: bool) -> None:
    """Stop publishing (like slmgr /cdns); the settings are kept."""

    def body() -> Result:
        host = _host()
        pub = host.publishing()
        pub.enabled = False
        host.set_publishing(pub)
        return Result(["DNS publishing disabled."], pub.shown(), banners=False)

    run("kms dns disable", json_wanted(ctx, as_json), body)


@dns_group.command("enable")
@JSON_OPTION
@click.pass_context
def dns_enable(ctx: click.Context, as_json: bool) -> None:
    """Publish again with the kept settings (like slmgr /sdns)."""

    def body() -> Result:
        host = _host()
        pub = host.publishing()
        pub.enabled = True
        host.set_publishing(pub)
        return Result(["DNS publishing enabled."], pub.shown(), banners=False)

    run("kms dns enable", json_wanted(ctx, as_json), body)


@dns_group.command("publish")
@click.option("--port", type=int, help="Port to publish (default: the port the host serves).")
@JSON_OPTION
@click.pass_context
def dns_publish(ctx: click.Context, port: int | None, as_json: bool) -> None:
    """Publish now, once (the running host also publishes at start and every interval)."""

    def body() -> Result:
        from ospp.dns.publish import publish

        host = _host()
        pub = host.publishing()
        pub.check()
        done = publish(pub, port or host.status()["port"])
        host.record_publish("; ".join(done))
        return Result(done, {"published": done}, banners=False)

    run("kms dns publish", json_wanted(ctx, as_json), body)


@dns_group.command("records")
@click.option("--port", type=int, help="Port to publish (default: the port the host serves).")
@JSON_OPTION
@click.pass_context
def dns_records(ctx: click.Context, port: int | None, as_json: bool) -> None:
    """Print the zone-file lines, for admins who publish by hand."""

    def body() -> Result:
        from ospp.dns.publish import zone_lines

        host = _host()
        pub = host.publishing()
        if not pub.domain or not pub.hostname:
            from ospp.core.errors import UsageError

            raise UsageError("set --domain and --hostname first: ospp kms dns set ...")
        lines = zone_lines(pub, port or host.status()["port"])
        return Result(lines, {"records": lines}, banners=False)

    run("kms dns records", json_wanted(ctx, as_json), body)
