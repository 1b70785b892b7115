"""``ospp kms``: run a KMS host; ``ospp service``: what the client licensing service does."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import click

from ospp.cli import complete
from ospp.cli.base import JSON_OPTION, Group, Result, reports, reports_text
from ospp.cli.kmsdns import dns_group
from ospp.core.errors import E_KEY_NOT_AVAILABLE, LicensingError, hex_code

if TYPE_CHECKING:
    from ospp.kmshost.state import KmsHost, ServingState


def _host() -> KmsHost:
    from ospp.kmshost.state import KmsHost

    return KmsHost.from_env()


@click.group("kms", cls=Group)
def kms_group() -> None:
    """A KMS host: install and activate its key, serve clients, show its counts."""


@kms_group.command("install-key")
@click.argument("key")
@JSON_OPTION
@reports
def install_key(key: str) -> Result:
    """Install a KMS host key (from 'ospp center issue-key --channel kms-host')."""
    installed = _host().install_key(key)
    return Result(
        [
            f"Installed KMS host key *****-{installed.last5} for {installed.product.id}",
            "Activate it: ospp kms activate (online) or ospp kms dinstid / actcid (phone).",
        ],
        {"product": installed.product.id, "key_last5": installed.last5},
        banners=False,
    )


@kms_group.command("activate")
@JSON_OPTION
@reports
def activate() -> Result:
    """Activate the host key online with the activation authority."""
    host = _host()
    product = host.activate_online(os.environ)
    epid = host.meta()["epid"]
    return Result(
        [f"<KMS host activated for {product.id}>", f"KMS host ePID: {epid}"],
        {"product": product.id, "epid": epid},
        banners=False,
    )


@kms_group.command("dinstid")
@JSON_OPTION
@reports
def dinstid() -> Result:
    """Show the host key's installation ID, for phone activation."""
    iid = _host().installation_id()
    return Result(
        [f"Installation ID for the KMS host key: {iid.text()}"],
        {"installation_id": iid.text(), "groups": iid.groups()},
        banners=False,
    )


@kms_group.command("actcid")
@click.argument("cid")
@JSON_OPTION
@reports
def actcid(cid: str) -> Result:
    """Activate the host key with a confirmation ID from the phone centre."""
    host = _host()
    product = host.apply_cid(cid, os.environ)
    return Result(
        [f"<KMS host activated by phone for {product.id}>"],
        {"product": product.id, "epid": host.meta()["epid"]},
        banners=False,
    )


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
@reports
def set_(activation_interval: int | None, renewal_interval: int | None) -> Result:
    """Change the intervals the host hands to its clients."""
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


@kms_group.command("status")
@JSON_OPTION
@reports
def status() -> Result:
    """The host's key, activation, counts and request statistics (like slmgr /dlv)."""
    st = _host().status()
    lines = [
        "Key Management Service is enabled on this machine"
        if st["activated"]
        else "Key Management Service host key is not activated"
    ]
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


@kms_group.command("clients")
@click.option(
    "--limit", type=int, default=100, show_default=True, help="List at most this many clients."
)
@JSON_OPTION
@reports
def clients(limit: int) -> Result:
    """Which client machines asked this host, most recent first."""
    rows = _host().clients(limit)
    lines = [
        f"{r['last_seen']}  {r['cmid']}  {r['workstation'] or '-':<16} "
        f"{r['requests']:>5} request(s)"
        for r in rows
    ] or ["<No clients>"]
    return Result(lines, {"clients": rows}, banners=False)


@kms_group.command("serve")
@click.option(
    "--listen",
    default="0.0.0.0:1688",
    show_default=True,
    metavar="HOST:PORT",
    help="Address to listen on: IPv4, [IPv6] or a name; port 0 picks a free port.",
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
    help="Where the one-line JSON log of each request goes (- is stderr).",
)
@reports_text
def serve(listen: str, idle_timeout: float, log_to: str) -> Result:
    """Serve KMS clients until SIGTERM or Ctrl+C; prints 'LISTENING PORT' when ready."""
    from ospp.core.endpoint import parse_host
    from ospp.kmshost import server

    endpoint = parse_host(listen, 1688, "--listen", listen=True)
    log = server.open_log(log_to)
    host = _host()

    def ready(shown: str, bound: int, state: ServingState) -> None:
        activated = "activated" if state.certificate else "NOT ACTIVATED (clients get 0xC004F041)"
        click.echo(f"ospp KMS host listening on {shown}:{bound}, key {activated}", err=True)
        click.echo(f"LISTENING {bound}")

    def event(record: dict[str, Any]) -> None:
        click.echo(json.dumps(record), err=True)

    server.serve(
        host,
        endpoint.host,
        endpoint.port,
        idle_timeout=idle_timeout,
        log=log,
        ready=ready,
        events=event,
    )
    click.echo("ospp KMS host stopped", err=True)
    return Result([], banners=False)


@click.command("service")
@click.argument(
    "computers", nargs=-1, metavar="[COMPUTERNAME]...", shell_complete=complete.machines
)
@click.option("--all", "all_machines", is_flag=True, help="Every simulated machine.")
@JSON_OPTION
@reports
def service(computers: tuple[str, ...], all_machines: bool) -> Result:
    """Do what the licensing service would do now (OSPP_NOW): retry unactivated KMS products
    every activation interval and renew activated ones every renewal interval."""
    from ospp.core.paths import ospp_home
    from ospp.machine import service as licensing

    names: list[str | None] = list(computers) or [None]
    if all_machines:
        names = list(licensing.machine_names(ospp_home()))
    if not names:
        raise LicensingError(E_KEY_NOT_AVAILABLE, "there are no simulated machines yet")
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
            lines.append(f"{where}: {done.action} succeeded at {done.host} (count {done.count})")
        else:
            row.update(ok=False, error=done.error.to_json())
            lines.append(
                f"{where}: {done.action} failed: {hex_code(done.error.code)} {done.error.message}"
            )
            first = first or done.error
        rows.append(row)
    return Result(lines, {"actions": rows}, banners=False, failed=first)


kms_group.add_command(dns_group)

COMMANDS = [kms_group, service]
