"""``ospp center``: the activation authority's console and its online endpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from ospp.cli import serving
from ospp.cli.base import JSON_OPTION, Result, json_wanted, run
from ospp.cli.serving import HTTP_OPTION, LOG_FORMAT_OPTION, LOG_LEVEL_OPTION
from ospp.core.clock import clock_from_env
from ospp.core.errors import UsageError
from ospp.core.paths import center_home, write_atomic


def _open() -> Any:
    from ospp.authority.state import Authority

    return Authority.open(center_home(), clock_from_env())


def _record_json(r: Any) -> dict[str, Any]:
    return {
        "serial": r.serial,
        "product": r.product_id,
        "channel": r.channel,
        "key_last5": r.last5,
        "limit": r.limit,
        "used": r.used,
        "remaining": r.remaining,
        "blocked": r.blocked,
        "created_at": r.created_at,
    }


@click.group("center")
def center() -> None:
    """The activation authority: keys, online activation, the phone centre."""


@center.command("init")
@click.option("--name", help="A name for this authority (shown to clients).")
@JSON_OPTION
@click.pass_context
def init(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """Create the authority's key pair and store (done on first use otherwise)."""

    def body() -> Result:
        from ospp.authority.state import Authority

        authority = Authority.open(center_home(), clock_from_env(), name)
        pub = authority.home / "authority.pub.json"
        return Result(
            [
                f"Authority {authority.public.name} ({authority.public.fingerprint})",
                f"Public key file for clients: {pub}",
            ],
            {
                "name": authority.public.name,
                "fingerprint": authority.public.fingerprint,
                "public_key_file": str(pub),
            },
            banners=False,
        )

    run("center init", json_wanted(ctx, as_json), body)


@center.command("pubkey")
@click.pass_context
def pubkey(ctx: click.Context) -> None:
    """Print the public key file clients install with 'ospp trust add FILE' (JSON)."""

    def body() -> Result:
        authority = _open()
        text = json.dumps(authority.public.to_json(), indent=2)
        return Result([text], authority.public.to_json(), banners=False)

    run("center pubkey", False, body)


@center.command("issue-key")
@click.option("--product", required=True, help="Short product id, e.g. ProPlus2021.")
@click.option("--channel", type=click.Choice(["mak", "kms-host"]), default="mak", show_default=True)
@click.option("--limit", type=int, help="Activations allowed (MAK default 100, KMS host 6).")
@JSON_OPTION
@click.pass_context
def issue_key(
    ctx: click.Context, product: str, channel: str, limit: int | None, as_json: bool
) -> None:
    """Mint a new MAK or KMS host key and print it."""

    def body() -> Result:
        key = _open().issue_key(product, channel, limit)
        return Result([key], {"key": key, "product": product, "channel": channel}, banners=False)

    run("center issue-key", json_wanted(ctx, as_json), body)


@center.command("keys")
@JSON_OPTION
@click.pass_context
def keys_(ctx: click.Context, as_json: bool) -> None:
    """List issued keys with used and remaining activations."""

    def body() -> Result:
        records = _open().key_records()
        lines = [
            f"{'KEY':<12}{'PRODUCT':<16}{'CHANNEL':<10}{'USED':>6}{'LIMIT':>7}{'LEFT':>6}  STATE"
        ]
        for r in records:
            lines.append(
                f"*****-{r.last5:<6}{r.product_id:<16}{r.channel:<10}{r.used:>6}"
                f"{r.limit:>7}{r.remaining:>6}  {'blocked' if r.blocked else 'active'}"
            )
        return Result(lines, {"keys": [_record_json(r) for r in records]}, banners=False)

    run("center keys", json_wanted(ctx, as_json), body)


@center.command("block")
@click.argument("key")
@JSON_OPTION
@click.pass_context
def block(ctx: click.Context, key: str, as_json: bool) -> None:
    """Block a key: further activations get 0xC004C003."""

    def body() -> Result:
        r = _open().block(key)
        return Result([f"Blocked *****-{r.last5}"], _record_json(r), banners=False)

    run("center block", json_wanted(ctx, as_json), body)


@center.command("extend")
@click.argument("key")
@click.option("--by", type=int, required=True, help="How many activations to add.")
@JSON_OPTION
@click.pass_context
def extend(ctx: click.Context, key: str, by: int, as_json: bool) -> None:
    """Grant a MAK more activations."""

    def body() -> Result:
        r = _open().extend(key, by)
        return Result(
            [f"*****-{r.last5}: limit {r.limit}, {r.remaining} left"],
            _record_json(r),
            banners=False,
        )

    run("center extend", json_wanted(ctx, as_json), body)


@center.command("confirm")
@click.argument("iid", nargs=-1, required=True)
@JSON_OPTION
@click.pass_context
def confirm(ctx: click.Context, iid: tuple[str, ...], as_json: bool) -> None:
    """The phone operator's tool: turn an installation ID into a confirmation ID."""

    def body() -> Result:
        from ospp.protocol.phone import format_groups

        cid = _open().confirm(" ".join(iid))
        return Result(
            [format_groups(cid, 6)],
            {"cid": cid, "groups": format_groups(cid, 6).split("-")},
            banners=False,
        )

    run("center confirm", json_wanted(ctx, as_json), body)


@center.command("confirm-batch")
@click.argument("infile", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("outfile", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default=None,
    help="Output format (default: from OUTFILE's extension).",
)
@JSON_OPTION
@click.pass_context
def confirm_batch(
    ctx: click.Context, infile: Path, outfile: Path, fmt: str | None, as_json: bool
) -> None:
    """Proxy activation: one IID per line in INFILE ('-' for standard input); CIDs (or errors)
    to OUTFILE."""

    def body() -> Result:
        from ospp.cli.stream import read_input

        lines = read_input(infile, "installation ID list")[0].splitlines()
        from ospp.authority import batch

        rows = batch.confirm_lines(_open(), lines)
        kind = fmt or ("json" if outfile.suffix.lower() == ".json" else "csv")
        text = batch.render(rows, kind)
        try:
            write_atomic(outfile, text)
        except OSError as exc:
            raise UsageError(f"cannot write {outfile}: {exc.strerror}") from exc
        ok = sum(1 for r in rows if r["cid"])
        return Result(
            [f"{ok} of {len(rows)} installation IDs confirmed; written to {outfile}"],
            {"confirmed": ok, "total": len(rows), "outfile": str(outfile)},
            banners=False,
        )

    run("center confirm-batch", json_wanted(ctx, as_json), body)


@center.command("serve")
@click.option(
    "--listen",
    multiple=True,
    default=("127.0.0.1:1689",),
    show_default=True,
    metavar="HOST:PORT",
    help="Address to listen on; :PORT for every IPv4 and IPv6 address; port 0 picks a free "
    "port (printed). Repeatable (one port for all).",
)
@HTTP_OPTION
@LOG_LEVEL_OPTION
@LOG_FORMAT_OPTION
def serve(listen: tuple[str, ...], http: str | None, log_level: str, log_format: str) -> None:
    """Serve online activation and the phone centre over the ospp protocol; prints 'LISTENING
    PORT' when ready (and 'HTTP HOST:PORT' after it with --http). Speaks sd_notify."""

    def body() -> Result:
        from ospp.authority.operations import Operations
        from ospp.authority.server import serve as serve_authority
        from ospp.core import logs
        from ospp.core.endpoint import listen_set, parse_host, parse_listen

        hosts, port = listen_set([parse_listen(text, 1689) for text in listen])
        http_at = parse_host(http, 8080, "--http", listen=True) if http else None
        logs.setup(serving.log_level(log_level), log_format)
        authority = _open()
        ops = Operations(
            authority.db.path,
            f"{authority.public.name} ({authority.public.fingerprint})",
            http_at,
        )

        def ready(shown: str, bound: int) -> None:
            click.echo(f"LISTENING {bound}")
            if ops.http_address:
                click.echo(f"HTTP {ops.http_address}")

        serve_authority(authority, hosts, port, ready, ops)
        return Result([], banners=False)

    run("center serve", False, body)


@click.group("trust")
def trust() -> None:
    """Trust anchors: which activation authorities this client believes."""


@trust.command("add")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@JSON_OPTION
@click.pass_context
def trust_add(ctx: click.Context, file: Path, as_json: bool) -> None:
    """Trust the authority whose public key file is FILE ('ospp center pubkey'; '-' reads
    standard input)."""

    def body() -> Result:
        from ospp.cli.stream import read_input
        from ospp.core.paths import ospp_home
        from ospp.protocol.trust import add_anchor

        text = read_input(file, "public key file")[0] if str(file) == "-" else None
        bundle = add_anchor(ospp_home(), file, text)
        return Result(
            [f"Trusted authority {bundle.name} ({bundle.fingerprint})"],
            {"name": bundle.name, "fingerprint": bundle.fingerprint},
            banners=False,
        )

    run("trust add", json_wanted(ctx, as_json), body)


@trust.command("list")
@JSON_OPTION
@click.pass_context
def trust_list(ctx: click.Context, as_json: bool) -> None:
    """List the trusted authorities."""

    def body() -> Result:
        from ospp.core.paths import ospp_home
        from ospp.protocol.trust import anchors

        found = anchors(ospp_home(), os.environ)
        lines = [f"{fp}  {b.name}" for fp, b in found.items()] or ["<No trusted authority>"]
        return Result(
            lines,
            {"anchors": [{"fingerprint": fp, "name": b.name} for fp, b in found.items()]},
            banners=False,
        )

    run("trust list", json_wanted(ctx, as_json), body)


@click.group("hardware")
def hardware_group() -> None:
    """The simulated hardware of a machine (for the tolerance model)."""


@hardware_group.command("show")
@click.argument("computer", required=False, metavar="[COMPUTERNAME]")
@JSON_OPTION
@click.pass_context
def hardware_show(ctx: click.Context, computer: str | None, as_json: bool) -> None:
    """Show the hardware profile and hash."""

    def body() -> Result:
        from ospp.machine import client, hardware

        store = client.open_machine(computer)
        hw = hardware.load(store.directory)
        lines = [f"{k:<16}{v}" for k, v in hw.components.items()]
        lines.append(f"{'hash':<16}{hw.hash():010x}")
        return Result(
            lines,
            {
                "machine": store.name,
                "components": hw.components,
                "dockable": hw.dockable,
                "hash": f"{hw.hash():010x}",
            },
            banners=False,
        )

    run("hardware show", json_wanted(ctx, as_json), body)


@hardware_group.command("change")
@click.argument("components", nargs=-1, required=True)
@click.option("--machine", "computer", metavar="COMPUTERNAME", help="The simulated machine.")
@JSON_OPTION
@click.pass_context
def hardware_change(
    ctx: click.Context, components: tuple[str, ...], computer: str | None, as_json: bool
) -> None:
    """Replace components (e.g. nic_mac disk): a new motherboard is most of them."""

    def body() -> Result:
        from ospp.machine import client, hardware

        store = client.open_machine(computer)
        hw = hardware.change(store.directory, list(components), store.clock.now())
        return Result(
            [f"Changed: {', '.join(components)}; hash now {hw.hash():010x}"],
            {"machine": store.name, "hash": f"{hw.hash():010x}"},
            banners=False,
        )

    run("hardware change", json_wanted(ctx, as_json), body)


COMMANDS = [center, trust, hardware_group]
