"""``ospp kms dns``: configure, run and print the KMS host's DNS publishing (its SRV record)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from ospp.cli.base import JSON_OPTION, Result, needs_admin, reports
from ospp.cli.slash import Group

if TYPE_CHECKING:
    from collections.abc import Callable

    from ospp.dns.publish import Publishing
    from ospp.kmshost.state import KmsHost


def _host() -> KmsHost:
    from ospp.kmshost.state import KmsHost

    return KmsHost.from_env()


def _changed_host(change: Callable[[Publishing], None]) -> KmsHost:
    """The host whose publishing settings ``change`` changes. Where it has no store yet,
    ``change`` is tried on the default settings first: a refused change makes no store."""
    from ospp.dns.publish import Publishing
    from ospp.kmshost.state import KmsHost

    host = KmsHost.stored_from_env()
    if host is None:
        trial = Publishing()
        change(trial)
        if trial.enabled:
            trial.check()
    return host or _host()


@click.group("dns", cls=Group)
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
    help="Also publish this A/AAAA address for --hostname (repeatable), in the zone updated "
    "that holds it; one outside every zone updated is said not published.",
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
@click.option(
    "--no-address",
    "no_addresses",
    is_flag=True,
    help="Publish no A/AAAA address any more (forget every --address).",
)
@click.option(
    "--no-extra", is_flag=True, help="Publish in no other domain any more (forget every --extra)."
)
@click.option(
    "--interval-hours", type=float, help="Re-publish interval, 0.1-720 hours (default 24)."
)
@click.option(
    "--tsig-keyfile",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="BIND key file (tsig-keygen output) that signs the updates; '-' reads standard input.",
)
@click.option(
    "--no-publish",
    is_flag=True,
    help="Keep the settings but do not publish (no --server needed): for admins who publish "
    "'ospp kms dns records' by hand. 'ospp kms dns enable' publishes later.",
)
@JSON_OPTION
@reports
def dns_set(
    server: str | None,
    domain: str | None,
    hostname: str | None,
    addresses: tuple[str, ...],
    ttl: int | None,
    priority: int | None,
    weight: int | None,
    extra: tuple[str, ...],
    no_addresses: bool,
    no_extra: bool,
    interval_hours: float | None,
    tsig_keyfile: Path | None,
    no_publish: bool,
) -> Result:
    """Configure and enable DNS publishing (options not given keep their value)."""
    from ospp.core.errors import UsageError
    from ospp.dns.publish import read_key_file

    if addresses and no_addresses:
        raise UsageError("--address and --no-address exclude each other", "Give one of them.")
    if extra and no_extra:
        raise UsageError("--extra and --no-extra exclude each other", "Give one of them.")
    needs_admin("ospp kms dns set")
    tsig = read_key_file(tsig_keyfile) if tsig_keyfile is not None else None

    def change(pub: Publishing) -> None:
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
        if addresses or no_addresses:
            pub.addresses = list(addresses)
        if extra or no_extra:
            pub.extra = list(extra)
        if tsig is not None:
            pub.tsig_name, pub.tsig_algorithm, pub.tsig_secret = tsig
        pub.enabled = not no_publish
        if no_publish:
            pub.check(updates=False)  # enabled, they are checked whole when stored

    pub = _changed_host(change).change_publishing(change)
    said = (
        "DNS publishing disabled; print the records with: ospp kms dns records"
        if no_publish
        else "DNS publishing enabled."
    )
    return Result([f"Successfully applied setting. {said}"], pub.shown(), banners=False)


@dns_group.command("disable")
@JSON_OPTION
@reports
def dns_disable() -> Result:
    """Stop publishing (like slmgr /cdns); the settings are kept."""
    from ospp.dns.publish import Publishing
    from ospp.kmshost.state import KmsHost

    needs_admin("ospp kms dns disable")
    host = KmsHost.stored_from_env()
    if host is None:  # no host here: nothing publishes, and no store is made to say so
        pub = Publishing()
    else:
        pub = host.change_publishing(lambda pub: setattr(pub, "enabled", False))
    return Result(["DNS publishing disabled."], pub.shown(), banners=False)


@dns_group.command("enable")
@JSON_OPTION
@reports
def dns_enable() -> Result:
    """Publish again with the kept settings (like slmgr /sdns)."""
    needs_admin("ospp kms dns enable")

    def change(pub: Publishing) -> None:
        pub.enabled = True

    pub = _changed_host(change).change_publishing(change)
    return Result(["DNS publishing enabled."], pub.shown(), banners=False)


@dns_group.command("publish")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    metavar="PORT",
    help="Port to publish, 1-65535 (default: the port the host serves).",
)
@JSON_OPTION
@reports
def dns_publish(port: int | None) -> Result:
    """Publish now, once (the running host also publishes at start and every interval).

    Refused while publishing is disabled ('ospp kms dns enable' turns it on again)."""
    from ospp.core.errors import UsageError
    from ospp.dns.publish import Publishing, publish
    from ospp.kmshost.state import KmsHost

    needs_admin("ospp kms dns publish")  # with the host's TSIG key
    host = KmsHost.stored_from_env()
    if host is None:  # nothing is set: refused as the empty settings are, and no store made
        Publishing().check()
        raise UsageError("set DNS publishing up first: ospp kms dns set ...")
    pub = host.publishing()
    pub.require_enabled()  # as the running host, which publishes only enabled settings
    pub.check()
    done = publish(pub, host.status()["port"] if port is None else port)
    host.record_publish("; ".join(done.lines))
    return Result(
        done.lines, {"published": done.done, "not_published": done.left_out}, banners=False
    )


@dns_group.command("records")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    metavar="PORT",
    help="Port to publish, 1-65535 (default: the port the host serves).",
)
@JSON_OPTION
@reports
def dns_records(port: int | None) -> Result:
    """Print the zone-file lines, for admins who publish by hand."""
    from ospp.dns.publish import Publishing, zone_lines
    from ospp.kmshost.state import KmsHost

    host = KmsHost.stored_from_env()  # reading makes no store
    pub = host.publishing() if host is not None else Publishing()
    if host is None or not pub.domain or not pub.hostname:
        from ospp.core.errors import UsageError

        raise UsageError("set --domain and --hostname first: ospp kms dns set ...")
    lines = zone_lines(pub, host.status()["port"] if port is None else port)
    return Result(lines, {"records": lines}, banners=False)
