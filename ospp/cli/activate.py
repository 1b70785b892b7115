"""Activation verbs: /act, /dinstid, /actcid, /dhistoryacterr, /dhistorykms."""

from __future__ import annotations

import os
import sys

import click

from ospp.cli.base import DASHES, Result, error_lines, reports, tolerant_input
from ospp.cli.slash import CID_DIGITS, verb
from ospp.core.catalog import Channel
from ospp.core.clock import iso
from ospp.core.errors import (
    E_KEY_NOT_AVAILABLE,
    E_NO_KMS,
    E_SKU_NOT_FOUND,
    Cancelled,
    LicensingError,
    OsppError,
    UsageError,
)
from ospp.core.printable import printable
from ospp.machine import client
from ospp.machine.history import HistoryEntry
from ospp.machine.store import Licence, MachineStore
from ospp.protocol.phone import CID_GROUPS, cid_entry, parse_cid


def _keyed(store: MachineStore) -> list[Licence]:
    return [lic for lic in store.licences() if lic.product_key]


def _product_lines(lic: Licence) -> list[str]:
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
    statuses = {st.licence.sku.sku_id: st.status for st in client.statuses(store)}
    licences = [lic for lic in _keyed(store) if lic.sku.channel is not Channel.KMS_HOST]
    if not licences:
        lines += ["<No installed product keys detected>", DASHES]
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
                    "expires_at": iso(outcome.valid_until),
                }
            lines.append("<Product activation successful>")
            data.append(
                {"sku_id": lic.sku.sku_id, "product_id": lic.sku.product.id, "ok": True, **extra}
            )
        except OsppError as exc:
            if lic.sku.channel is Channel.MAK:  # KMS attempts are recorded by the KMS client
                activation.record_failure(store, lic, exc)
            if exc.code == E_NO_KMS and exc.hint is None:
                exc.hint = "Run /dhistorykms to see each attempt."
            lines += error_lines(exc)
            data.append(
                {
                    "sku_id": lic.sku.sku_id,
                    "product_id": lic.sku.product.id,
                    "ok": False,
                    "error": exc.to_json(),
                }
            )
            first = first or exc
        lines.append(DASHES)  # as ospp.vbs: every block closed, then the exit banner's own
    return first


@verb("act")
@reports
def act(computer: str | None) -> Result:
    """Activate every installed key: MAK online with the authority, GVLKs with KMS."""
    store = client.open_machine(computer)
    client.check_operation(store)
    lines: list[str] = []
    data: list[dict[str, object]] = []
    first = activate_licences(store, lines, data)
    # Nothing to activate exits 0, as ospp.vbs; "activated": 0 tells a script so.
    activated = sum(1 for row in data if row["ok"])
    return Result(
        lines, {"machine": store.name, "activated": activated, "products": data}, failed=first
    )


@verb("dinstid")
@reports
def dinstid(computer: str | None) -> Result:
    """Show the installation ID (IID) of each MAK / KMS host product, for phone activation."""
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
        lines.append(DASHES)
        rows.append(
            {
                "sku_id": lic.sku.sku_id,
                "product_id": lic.sku.product.id,
                "license_name": lic.sku.license_name,
                "installation_id": "".join(groups),
                "groups": groups,
            }
        )
    if not rows:
        lines += ["<No installed product keys detected>", DASHES]
    return Result(lines, {"machine": store.name, "products": rows})


def _phone_targets(store: MachineStore, sku: str | None) -> list[Licence]:
    """The licences a CID may be for: the one ``--sku`` names, else every one with a MAK."""
    if sku:
        wanted = sku.strip().strip("{}").lower()
        named = [lic for lic in store.licences() if lic.sku.sku_id == wanted]
        if not named:
            raise LicensingError(
                E_SKU_NOT_FOUND,
                f"no licence with SKU ID {sku.strip()} is installed on {store.name}",
                "Run /dstatus for the SKU IDs of the installed products.",
            )
        return named  # its lack of a key, or a KMS client key, is said when it is checked
    candidates = [lic for lic in _keyed(store) if lic.sku.channel is not Channel.KMS_CLIENT]
    if not candidates:
        raise LicensingError(
            E_KEY_NOT_AVAILABLE,
            "no MAK or KMS host key is installed to activate",
            "Install a MAK first: ospp /inpkey:KEY, or slmgr /ipk KEY.",
        )
    return candidates


@verb(
    "actcid",
    slash_value="argument",
    value_required=False,
    digit_groups=("confirmation ID", CID_DIGITS),
    params=[
        click.argument("cid", required=False),
        click.option(
            "--sku",
            metavar="SKUID",
            help="The product to activate (default: the one whose installation ID the CID "
            "answers).",
        ),
        click.option(
            "--interactive",
            "-i",
            is_flag=True,
            help="Ask for the CID group by group, like the phone wizard.",
        ),
    ],
)
@reports
def actcid(cid: str | None, sku: str | None, interactive: bool, computer: str | None) -> Result:
    """Activate offline with a confirmation ID (CID) from the phone centre; with
    --interactive, ask for it group by group (a lone argument is then the computer name)."""
    from ospp.machine import activation

    if interactive and cid is not None:
        if computer is not None:
            raise UsageError(
                "--interactive asks for the confirmation ID; give only the computer name",
                "For example: ospp actcid --interactive PC01",
            )
        cid, computer = None, cid
    if cid is not None:
        try:
            parse_cid(cid)  # a malformed CID is reported as such, before anything else
        except LicensingError as exc:
            if computer is None and any(c.isalpha() for c in cid):  # /actcid PC1
                exc.hint = exc.hint or (
                    f"/actcid takes the confirmation ID first: ospp /actcid:CID {cid}, or "
                    f"ospp actcid --interactive {cid} to type it group by group."
                )
            raise
    store = client.open_machine(computer)
    client.check_operation(store)
    candidates = _phone_targets(store, sku)
    if cid is None:  # no trusted authority: said before the CID is typed, not after
        activation.check_trust(store, os.environ)
    text = cid if cid is not None else _ask_groups()
    # Several products each read out their own installation ID: the CID says which it answers.
    lic = candidates[0]
    if len(candidates) > 1:
        lic = activation.cid_licence(store, candidates, text, os.environ)
    activation.apply_cid(store, lic, text, os.environ)
    return Result(
        [
            f"LICENSE NAME: {lic.sku.license_name}",
            "<Offline product activation successful>",
            DASHES,
        ],
        {"machine": store.name, "sku_id": lic.sku.sku_id, "product_id": lic.sku.product.id},
    )


def _read_line(prompt: str) -> str:
    """One line typed at the prompt; the end of input cancels (Ctrl+C raises as usual)."""
    click.echo(f"{prompt}: ", nl=False, err=True)
    line = tolerant_input(sys.stdin).readline()
    if not line:
        click.echo("", err=True)
        raise Cancelled(interrupted=False)
    return line


def _ask_groups() -> str:
    """The CID, asked group by group as the phone wizard does. A person may type one group,
    several, or paste the whole CID: each group is checked as it comes, and only a wrong
    group is asked for again. An empty line (Enter pressed twice while listening) asks for
    the same group again, keeping those typed; the end of input cancels."""
    entry = cid_entry()
    while not entry.done:
        typed = _read_line(f"Group {entry.index} of {CID_GROUPS}")
        if not "".join(typed.split()).replace("-", ""):
            continue
        wrong = entry.feed(typed)
        if wrong is not None:
            click.echo(printable(f"  {wrong.message}; type it again."), err=True)
    return entry.text()


# The event-log layout of ospp.vbs: heading, event id, then one block per event.
_EVENTS = {
    # kind: (event id, heading, nothing found)
    "kms": (
        12288,
        "Searching for KMS activation events on machine: ",
        "No KMS activation events found on machine: ",
    ),
    "acterr": (
        8200,
        "Searching for Internet activation failure events on machine: ",
        "No failure events found on machine: ",
    ),
}


def _event_lines(kind: str, e: HistoryEntry) -> list[str]:
    from ospp.core.errors import DESCRIPTIONS, hex_code

    code = hex_code(e.code)
    lines = [f"Coordinated Universal Time Written: {iso(e.at)}"]
    if kind == "kms":
        # ospp.vbs prints the event's code and the host it tried as one ERROR/HOST line
        lines.append(f"ERROR/HOST: {code}" + (f", {e.target}" if e.target else ""))
        description = DESCRIPTIONS.get(e.code, "Not available.") if e.code else "N/A"
    else:
        lines.append(f"MESSAGE: License acquisition failure details. hr={code}")
        description = DESCRIPTIONS.get(e.code, "Not available.")
    lines.append(f"ERROR DESCRIPTION: {description}")
    # ospp's own detail, after the lines ospp.vbs prints
    lines.append(f"{'ERROR DETAIL' if e.code else 'RESULT'}: {e.detail}")
    if e.sku_id:
        lines.append(f"SKU ID: {e.sku_id}")
    return [*lines, DASHES]


def _history(kind: str, computer: str | None) -> Result:
    from ospp.core.errors import hex_code

    store = client.open_machine(computer)
    entries = store.history(kind)
    event_id, heading, none_found = _EVENTS[kind]
    lines = [f"{heading}{store.name}", f"Event ID: {event_id}", ""]
    for e in entries:
        lines += _event_lines(kind, e)
    if not entries:
        lines += [DASHES, f"{none_found}{store.name}", DASHES]
    return Result(
        lines,
        {
            "machine": store.name,
            "event_id": event_id,
            "entries": [
                {
                    "written_at": iso(e.at),
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


@verb("dhistoryacterr")
@reports
def dhistoryacterr(computer: str | None) -> Result:
    """Show the history of failed MAK (online) activations."""
    return _history("acterr", computer)


@verb("dhistorykms")
@reports
def dhistorykms(computer: str | None) -> Result:
    """Show the history of KMS client activation requests."""
    return _history("kms", computer)


COMMANDS = [act, dinstid, actcid, dhistoryacterr, dhistorykms]
