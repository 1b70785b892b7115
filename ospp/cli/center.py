"""``ospp center``: the activation authority's console and its online endpoint."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ospp.cli import complete, serving
from ospp.cli.base import COMPUTER_ARGUMENT, JSON_OPTION, Result, needs_admin, reports, reports_text
from ospp.cli.serving import HTTP_OPTION, LOG_FORMAT_OPTION, LOG_LEVEL_OPTION
from ospp.cli.slash import Group
from ospp.core.clock import clock_from_env
from ospp.core.errors import N_, Cancelled, OsppError, StoreError, UsageError, os_error_code
from ospp.core.files import atomic_writer, read_user_file
from ospp.core.paths import center_home

if TYPE_CHECKING:
    from ospp.authority.state import Authority
    from ospp.authority.storage import KeyRecord


def _open() -> Authority:
    from ospp.authority.state import Authority

    return Authority.open(Path(center_home()), clock_from_env())


def _issuer() -> Authority:
    """The authority that is to know the keys it is shown: none is made (see
    Authority.existing)."""
    from ospp.authority.state import Authority

    return Authority.existing(Path(center_home()), clock_from_env())


def _record_json(r: KeyRecord) -> dict[str, Any]:
    return {
        "serial": r.serial,
        "product_id": r.product_id,
        "channel": r.channel,
        "key_last5": r.last5,
        "limit": r.limit,
        "used": r.used,
        "remaining": r.remaining,
        "blocked": r.blocked,
        "created_at": r.created_at,
    }


@click.group("center", cls=Group)
def center() -> None:
    """The activation authority: keys, online activation, the phone centre."""


@center.command("init")
@click.option("--name", help="A name for this authority (shown to clients).")
@click.option(
    "--db",
    "db_url",
    metavar="URL",
    help="Keep the records in this PostgreSQL database (postgresql://user@host:port/db), "
    "shared by several 'ospp center serve' nodes; remembered in OSPP_CENTER_HOME.",
)
@JSON_OPTION
@reports
def init(name: str | None, db_url: str | None) -> Result:
    """Create the authority's key pair and store (done on first use otherwise)."""
    from ospp.authority.state import Authority

    if db_url is not None:
        _check_db_option(db_url)
    authority = Authority.open(Path(center_home()), clock_from_env(), name, db_url=db_url)
    pub = authority.home / "authority.pub.json"
    result = Result(
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
    if db_url:
        from ospp.authority.backend import remember_url

        remember_url(authority.home, db_url)
        result.lines.append(f"Records: {authority.store.where}")
        result.data["database"] = authority.store.where
    return result


def _check_db_option(url: str) -> None:
    """--db must name a PostgreSQL database: an empty value (an unset variable in a script)
    would otherwise make an authority on SQLite. The URL is not shown: it may hold a
    password."""
    from ospp.authority.storage import UrlError, parse_url

    hint = "Leave out --db for an authority on SQLite in OSPP_CENTER_HOME."
    if not url.strip():
        raise UsageError("--db must be a postgresql://user@host:port/database URL, not empty", hint)
    try:
        parse_url(url)
    except UrlError as exc:
        what = "--db must be a postgresql://user@host:port/database URL"
        if exc.reason:
            raise UsageError(f"{what}: {exc.reason}", exc.hint) from exc
        raise UsageError(what, hint) from exc


@center.command("migrate")
@JSON_OPTION
@reports
def migrate() -> Result:
    """Upgrade the authority's store to this ospp's schema (once, on one node)."""
    from ospp.authority.backend import migrate as migrate_store

    store, before, after = migrate_store(Path(center_home()), os.environ)
    state = "current" if before == after else f"upgraded from {before}"
    return Result(
        [f"Authority store {store.where}: schema version {after} ({state})"],
        {"backend": store.backend, "store": store.where, "from": before, "to": after},
        banners=False,
    )


@center.command("pubkey")
@reports_text
def pubkey() -> Result:
    """Print the public key file clients install with 'ospp trust add FILE' (JSON)."""
    authority = _open()
    text = json.dumps(authority.public.to_json(), indent=2)
    return Result(text.splitlines(), authority.public.to_json(), banners=False)


@center.command("issue-key")
@click.option(
    "--product",
    required=True,
    help="Short product id, e.g. ProPlus2021.",
    shell_complete=complete.products,
)
@click.option(
    "--channel",
    type=click.Choice(["mak", "kms-host"]),
    default="mak",
    show_default=True,
    help="mak: a Multiple Activation Key for clients; kms-host: a KMS host key (CSVLK) for "
    "'ospp kms install-key'.",
)
@click.option("--limit", type=int, help="Activations allowed (MAK default 100, KMS host 6).")
@JSON_OPTION
@reports
def issue_key(product: str, channel: str, limit: int | None) -> Result:
    """Mint a new MAK or KMS host key and print it."""
    from ospp.protocol import keys

    key = _open().issue_key(product, channel, limit)
    product_id = keys.parse(key).product.id  # the catalog's spelling, as 'center keys' shows it
    return Result([key], {"key": key, "product_id": product_id, "channel": channel}, banners=False)


@center.command("keys")
@JSON_OPTION
@reports
def keys_() -> Result:
    """List issued keys with used and remaining activations."""
    records = _open().key_records()
    # A space before each count, however many digits it has: a limit of a million or more
    # never runs into its neighbours.
    lines = [
        f"{'KEY ID':<12}{'KEY':<12}{'PRODUCT':<16}{'CHANNEL':<10}{'USED':>6} {'LIMIT':>6}"
        f" {'LEFT':>5}  STATE"
    ]
    for r in records:
        lines.append(
            f"{r.serial:<12}*****-{r.last5:<6}{r.product_id:<16}{r.channel:<10}{r.used:>6}"
            f" {r.limit:>6} {r.remaining:>5}  {'blocked' if r.blocked else 'active'}"
        )
    return Result(lines, {"keys": [_record_json(r) for r in records]}, banners=False)


@center.command("block")
@click.argument("key", metavar="KEY|KEYID|LAST5")
@JSON_OPTION
@reports
def block(key: str) -> Result:
    """Block a key (the whole key, its key id from 'center keys', or its last five characters
    when unambiguous): further activations get 0xC004C003."""
    r = _open().block(key)
    return Result([f"Blocked *****-{r.last5}"], _record_json(r), banners=False)


@center.command("extend")
@click.argument("key", metavar="KEY|KEYID|LAST5")
@click.option("--by", type=int, required=True, help="How many activations to add.")
@JSON_OPTION
@reports
def extend(key: str, by: int) -> Result:
    """Grant a MAK more activations (KEY as for 'center block')."""
    r = _open().extend(key, by)
    return Result(
        [f"*****-{r.last5}: limit {r.limit}, {r.remaining} left"],
        _record_json(r),
        banners=False,
    )


@center.command("confirm")
@click.argument("iid", nargs=-1, required=True)
@JSON_OPTION
@reports
def confirm(iid: tuple[str, ...]) -> Result:
    """The phone operator's tool: turn an installation ID into a confirmation ID."""
    from ospp.protocol.digit_groups import format_groups
    from ospp.protocol.phone import InstallationId

    text = " ".join(iid)
    InstallationId.parse(text)  # a mistyped ID is said before any authority is opened
    cid = _issuer().confirm(text)
    return Result(
        [format_groups(cid, 6)],
        {"cid": cid, "groups": format_groups(cid, 6).split("-")},
        banners=False,
    )


@center.command("confirm-batch")
@click.argument("infile", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.argument("outfile", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default=None,
    help="Output format (default: from OUTFILE's extension).",
)
@JSON_OPTION
@reports
def confirm_batch(infile: Path, outfile: Path, fmt: str | None) -> Result:
    """Proxy activation: one IID per line in INFILE; CIDs (or errors) to OUTFILE. Exits 1
    when any line could not be confirmed (3 or 4 if the first failure was the store's or the
    network's); OUTFILE still holds every line's answer."""
    if str(outfile) == "-":  # what other commands read as standard input: never a file "-"
        raise UsageError(
            "confirm-batch writes its answers to a file, not standard output",
            "Name the file: ospp center confirm-batch INFILE answers.csv.",
        )
    if str(infile) != "-" and _same_file(infile, outfile):
        raise UsageError(
            f"OUTFILE {outfile} is INFILE: the answers would replace the installation IDs",
            "Write the answers to another file.",
        )
    # A file saved by Notepad or Excel may start with a byte order mark.
    lines = read_user_file(infile, "installation ID file").removeprefix("\ufeff").splitlines()
    from ospp.authority import batch

    kind = fmt or ("json" if outfile.suffix.lower() == ".json" else "csv")

    def unwritable(exc: OSError) -> StoreError:
        return StoreError(
            os_error_code(exc),
            f"cannot write {outfile}: {exc.strerror or exc}",
            "Check that its directory exists and is writable.",
        )

    with contextlib.ExitStack() as stack:
        # OUTFILE is made (as a temporary file beside it) before any installation ID is
        # confirmed: one that cannot be created stops the batch before it uses activations.
        try:
            out = stack.enter_context(atomic_writer(outfile))
        except OSError as exc:
            raise unwritable(exc) from exc
        rows: list[dict[str, Any]] = []
        errors: list[OsppError] = []
        interrupted = False
        try:
            for row, error in batch.confirm_rows(_issuer(), lines):
                rows.append(row)
                errors += [error] if error else []
        except KeyboardInterrupt:  # the answers so far are written: activations were used
            interrupted = True
        if interrupted and not rows:  # OUTFILE is not made
            # The first ID may have been counted just before the interrupt, its answer not
            # yet in hand: "nothing was changed" cannot be said.
            raise Cancelled(
                interrupted=True,
                kept=N_(
                    "no answer was written, but the first installation ID may have used an "
                    "activation (confirming it again uses no further one)"
                ),
            )
        try:
            out.write(batch.render(rows, kind))
            stack.close()  # flushed, synced and renamed into place
        except OSError as exc:
            raise unwritable(exc) from exc
    ok = len(rows) - len(errors)
    if interrupted:
        raise Cancelled(
            interrupted=True,
            kept=N_(
                "the answers to the first {answered} installation IDs ({ok} confirmed) are in "
                "{outfile}; confirming one again uses no further activation",
                answered=len(rows),
                ok=ok,
                outfile=str(outfile),
            ),
        )
    problem = None
    if errors:  # OUTFILE holds every line's answer; the exit status says not all were confirmed
        first = next(r for r in rows if r["error"])
        problem = OsppError(
            errors[0].code,
            f"{len(errors)} of {len(rows)} installation IDs could not be confirmed (see "
            f"{outfile}); the first, on line {first['line']}: {errors[0].message}",
            errors[0].hint,
        )
        problem.exit_status = errors[0].exit_status  # the first failure's kind: 1, 3 or 4
    return Result(
        [f"{ok} of {len(rows)} installation IDs confirmed; written to {outfile}"],
        {"confirmed": ok, "total": len(rows), "outfile": str(outfile)},
        error=problem,
        banners=False,
    )


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
@reports_text
def serve(listen: tuple[str, ...], http: str | None, log_level: str, log_format: str) -> Result:
    """Serve online activation and the phone centre over the ospp protocol; prints 'LISTENING
    PORT' when ready (and 'HTTP HOST:PORT' after it with --http). Speaks sd_notify."""
    from ospp.authority.backend import open_store
    from ospp.authority.operations import Operations
    from ospp.authority.server import serve as serve_authority
    from ospp.core import logs
    from ospp.core.endpoint import listen_set, parse_host, parse_listen

    hosts, port = listen_set([parse_listen(text, 1689) for text in listen])
    http_at = parse_host(http, 8080, "--http", listen=True) if http is not None else None
    logs.setup(serving.log_level(log_level), log_format)
    authority = _open()
    home = Path(center_home())
    ops = Operations(
        lambda: open_store(home, os.environ),
        f"{authority.public.name} ({authority.public.fingerprint})",
        http_at,
    )

    def ready(shown: str, bound: int) -> None:
        click.echo(f"LISTENING {bound}")
        if ops.http_address:
            click.echo(f"HTTP {ops.http_address}")

    serve_authority(authority, hosts, port, ready, ops)
    return Result([], banners=False)


@click.group("trust", cls=Group)
def trust() -> None:
    """Trust anchors: which activation authorities this client believes."""


@trust.command("add")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@JSON_OPTION
@reports
def trust_add(file: Path) -> Result:
    """Trust the authority whose public key file is FILE ('ospp center pubkey')."""
    from ospp.core.paths import ospp_home
    from ospp.protocol.trust import add_anchor

    # Every machine of this home believes what it trusts, whatever /puserops allows on one.
    needs_admin("trusting an activation authority (ospp trust add)")
    bundle = add_anchor(ospp_home(), file)
    return Result(
        [f"Trusted authority {bundle.name} ({bundle.fingerprint})"],
        {"name": bundle.name, "fingerprint": bundle.fingerprint},
        banners=False,
    )


@trust.command("list")
@JSON_OPTION
@reports
def trust_list() -> Result:
    """List the trusted authorities."""
    from ospp.core.paths import ospp_home
    from ospp.protocol.trust import anchors

    found = anchors(ospp_home(), os.environ)
    lines = [f"{fp}  {b.name}" for fp, b in found.items()] or ["<No trusted authority>"]
    lines += [f"UNREADABLE {why}" for why in found.unreadable]
    return Result(
        lines,
        {
            "anchors": [{"fingerprint": fp, "name": b.name} for fp, b in found.items()],
            "unreadable": found.unreadable,
        },
        banners=False,
    )


@click.group("hardware", cls=Group)
def hardware_group() -> None:
    """The simulated hardware of a machine (for the tolerance model)."""


@hardware_group.command("show")
@COMPUTER_ARGUMENT
@JSON_OPTION
@reports
def hardware_show(computer: str | None) -> Result:
    """Show the hardware profile and hash."""
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


@hardware_group.command("change")
@click.argument(
    "words",
    nargs=-1,
    required=True,
    metavar="COMPONENT... [COMPUTERNAME]",
    shell_complete=complete.components_or_machines,
)
@click.option(
    "--machine",
    "machine",
    metavar="COMPUTERNAME",
    hidden=True,
    deprecated=True,
    help="Deprecated: give the computer name last, as with every other command.",
)
@JSON_OPTION
@reports
def hardware_change(words: tuple[str, ...], machine: str | None) -> Result:
    """Replace hardware components (e.g. nic_mac disk) of the machine named last (this one when
    none is). Components: volume_serial, nic_mac (3 votes), optical_drive, display_adapter,
    cpu_serial, disk, scsi_adapter, ide_controller, cpu_model, ram_size; 7 of the 12 votes
    must still match (4 on a dockable machine) for an activation to hold."""
    from ospp.core.errors import UsageError
    from ospp.machine import client, hardware

    components = list(words)
    computer = machine
    if components and components[-1].lower() not in hardware.COMPONENTS:
        if len(components) == 1:
            raise UsageError(
                f"unknown hardware component {components[0]!r}",
                f"Components: {', '.join(hardware.COMPONENTS)}.",
            )
        if machine is not None:
            raise UsageError(
                f"two computer names: {components[-1]!r} and --machine {machine!r}",
                "Give the computer name last: ospp hardware change disk PC01",
            )
        computer = components.pop()
    store = client.open_machine(computer)
    names = [c.lower() for c in components]
    hw = hardware.change(store.directory, names, store.clock.now())
    return Result(
        [f"Changed: {', '.join(names)}; hash now {hw.hash():010x}"],
        {"machine": store.name, "hash": f"{hw.hash():010x}"},
        banners=False,
    )


COMMANDS = [center, trust, hardware_group]


def _add_phone_console() -> None:
    from ospp.cli.phone_console import phone

    center.add_command(phone)


_add_phone_console()


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (through links or another spelling)."""
    try:
        return a.samefile(b)
    except OSError:  # one of them does not exist (yet): not the same file
        return False
