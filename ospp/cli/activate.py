"""Activation verbs: /act, /dinstid, /actcid, /dhistoryacterr, /dhistorykms."""

from __future__ import annotations

import os

import click

from ospp.cli.base import Result, error_lines, json_wanted, run, verb
from ospp.core.catalog import Channel
from ospp.core.clock import iso
from ospp.core.errors import LicensingError, OsppError
from ospp.core.printable import printable
from ospp.machine import client
from ospp.machine.store import License, MachineStore
from ospp.protocol.phone import CID_GROUP_DATA, CID_GROUPS, check_group, format_groups

E_NO_KMS = 0xC004F074


def _keyed(store: MachineStore) -> list[License]:
    return [lic for lic in store.licenses() if lic.product_key]


def _product_lines(lic: License) -> list[str]:
    return [
        f"SKU ID: {lic.sku.sku_id}",
        f"LICENSE NAME: {lic.sku.license_name}",
        f"LICENSE DESCRIPTION: {lic.sku.license_description}",
        f"Last 5 characters of installed product key: {lic.last5}",
    ]


def activate_licences(
    store: MachineStore, lines: list[str], data: list[dict[str, object]]
) -> OsppError | None:
    """Activate every keyed licence; returns the first failure (all are recorded)."""
    from ospp.machine import activation

    first: OsppError | None = None
    statuses = {st.license.sku.sku_id: st.status for st in client.statuses(store)}
    licences = [lic for lic in _keyed(store) if lic.sku.channel is not Channel.KMS_HOST]
    if not licences:
        lines.append("<No installed product keys detected>")
    for lic in licences:
        lines.append(
            "Installed product key detected - attempting to activate the following product:"
        )
        lines += _product_lines(lic)
        try:
            extra: dict[str, object] = {}
            if lic.sku.channel is Channel.MAK:
                activation.activate_mak(store, lic, os.environ)
            else:
                from ospp.machine import kmsclient

                status = statuses.get(lic.sku.sku_id, "OOB_GRACE")
                outcome = kmsclient.activate(store, lic, os.environ, status)
                extra = {
                    "kms_host": outcome.host,
                    "count": outcome.count,
                    "valid_until": iso(outcome.valid_until),
                }
            lines.append("<Product activation successful>")
            data.append(
                {"sku_id": lic.sku.sku_id, "product": lic.sku.product.id, "ok": True, **extra}
            )
        except OsppError as exc:
            if lic.sku.channel is Channel.MAK:  # KMS attempts are recorded by the KMS client
                with store.db.write() as conn:
                    store.record(conn, "acterr", exc.code, exc.message, lic.sku)
            if exc.code == E_NO_KMS and exc.hint is None:
                exc.hint = "Run /dhistorykms to see each attempt."
            lines += error_lines(exc)
            data.append(
                {
                    "sku_id": lic.sku.sku_id,
                    "product": lic.sku.product.id,
                    "ok": False,
                    "error": exc.to_json(),
                }
            )
            first = first or exc
        lines.append("-" * 39)
    if lines and lines[-1] == "-" * 39:
        lines.pop()
    return first


@verb("act")
@click.pass_context
def act(ctx: click.Context, computer: str | None, as_json: bool) -> None:
    """Activate every installed key: MAK online with the authority, GVLKs with KMS."""

    def body() -> Result:
        store = client.open_machine(computer)
        lines: list[str] = []
        data: list[dict[str, object]] = []
        first = activate_licences(store, lines, data)
        return Result(lines, {"machine": store.name, "products": data}, failed=first)

    run("act", json_wanted(ctx, as_json), body)


@verb("dinstid")
@click.pass_context
def dinstid(ctx: click.Context, computer: str | None, as_json: bool) -> None:
    """Show the installation ID (IID) of each MAK / KMS host product, for phone activation."""

    def body() -> Result:
        from ospp.machine.activation import installation_id

        store = client.open_machine(computer)
        lines, rows = [], []
        for lic in _keyed(store):
            if lic.sku.channel is Channel.KMS_CLIENT:
                continue
            iid = installation_id(store, lic)
            groups = iid.groups()
            lines.append(f"Installation ID for: {lic.sku.license_name}: {''.join(groups)}")
            lines.append(f"\tRead aloud: {' '.join(groups)}")
            rows.append(
                {
                    "sku_id": lic.sku.sku_id,
                    "product": lic.sku.product.id,
                    "license_name": lic.sku.license_name,
                    "installation_id": "".join(groups),
                    "groups": groups,
                }
            )
        if not rows:
            lines.append("<No installed product keys detected>")
        return Result(lines, {"machine": store.name, "products": rows})

    run("dinstid", json_wanted(ctx, as_json), body)


def _phone_target(store: MachineStore, sku: str | None) -> License:
    candidates = [lic for lic in _keyed(store) if lic.sku.channel is not Channel.KMS_CLIENT]
    if sku:
        candidates = [lic for lic in candidates if lic.sku.sku_id == sku.strip("{}").lower()]
    if not candidates:
        raise LicensingError(
            0xC004F014,
            "no MAK or KMS host key is installed to activate",
            "Install a MAK with /inpkey first.",
        )
    if len(candidates) > 1:
        raise LicensingError(
            0xC004F014,
            "several products could take this CID",
            "Name one with --sku SKUID (see /dinstid).",
        )
    return candidates[0]


@verb(
    "actcid",
    slash_value="argument",
    value_required=False,
    params=[
        click.argument("cid", required=False),
        click.option("--sku", metavar="SKUID", help="The product to activate."),
        click.option(
            "--interactive",
            "-i",
            is_flag=True,
            help="Ask for the CID group by group, like the phone wizard.",
        ),
    ],
)
@click.pass_context
def actcid(
    ctx: click.Context,
    cid: str | None,
    sku: str | None,
    interactive: bool,
    computer: str | None,
    as_json: bool,
) -> None:
    """Activate offline with a confirmation ID (CID) from the phone centre."""

    def body() -> Result:
        from ospp.machine import activation

        store = client.open_machine(computer)
        lic = _phone_target(store, sku)
        text = cid
        if interactive or text is None:
            text = _ask_groups()
        activation.apply_cid(store, lic, text, os.environ)
        return Result(
            ["<Offline product activation successful>"],
            {"machine": store.name, "sku_id": lic.sku.sku_id, "product": lic.sku.product.id},
        )

    run("actcid", json_wanted(ctx, as_json), body)


def _ask_groups() -> str:
    groups = []
    size = CID_GROUP_DATA + 1
    index = 1
    while index <= CID_GROUPS:
        typed = click.prompt(
            f"Group {index} of {CID_GROUPS}", err=True, default="", show_default=False
        )
        typed = "".join(typed.split()).replace("-", "")
        if not typed:
            raise LicensingError(0xC004F02F, f"the confirmation ID stopped at group {index}")
        try:
            check_group(typed, index, "confirmation ID", size)
        except LicensingError as exc:
            click.echo(printable(f"  {exc.message}; type it again."), err=True)
            continue
        groups.append(typed)
        index += 1
    return format_groups("".join(groups), size)


def _history(ctx: click.Context, name: str, kind: str, computer: str | None, as_json: bool) -> None:
    def body() -> Result:
        from ospp.core.errors import DESCRIPTIONS, hex_code

        store = client.open_machine(computer)
        entries = store.history(kind)
        lines = []
        for e in entries:
            lines += [f"Time: {iso(e.at)}", f"SKU ID: {e.sku_id}"]
            if e.target:
                lines.append(f"Target: {e.target}")
            if e.code:
                lines += [
                    f"ERROR CODE: {hex_code(e.code)}",
                    f"ERROR DESCRIPTION: {DESCRIPTIONS.get(e.code, '')}",
                    f"ERROR DETAIL: {e.detail}",
                ]
            else:
                lines.append(f"RESULT: {e.detail}")
            lines.append("-" * 39)
        if lines:
            lines.pop()
        else:
            lines.append("<No history found>")
        return Result(
            lines,
            {
                "machine": store.name,
                "entries": [
                    {
                        "at": iso(e.at),
                        "sku_id": e.sku_id,
                        "target": e.target,
                        "code": hex_code(e.code),
                        "code_int": e.code,
                        "detail": e.detail,
                    }
                    for e in entries
                ],
            },
        )

    run(name, json_wanted(ctx, as_json), body)


@verb("dhistoryacterr")
@click.pass_context
def dhistoryacterr(ctx: click.Context, computer: str | None, as_json: bool) -> None:
    """Show the history of failed MAK (online) activations."""
    _history(ctx, "dhistoryacterr", "acterr", computer, as_json)


@verb("dhistorykms")
@click.pass_context
def dhistorykms(ctx: click.Context, computer: str | None, as_json: bool) -> None:
    """Show the history of KMS client activation requests."""
    _history(ctx, "dhistorykms", "kms", computer, as_json)


COMMANDS = [act, dinstid, actcid, dhistoryacterr, dhistorykms]
