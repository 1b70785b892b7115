"""The ospp.vbs verbs that manage a simulated machine's keys, status and settings."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from ospp.cli import complete
from ospp.cli.base import DASHES, Result, json_wanted, quiet, reports
from ospp.cli.render import kms_json, status_json, status_lines
from ospp.cli.slash import verb
from ospp.core.catalog import Channel
from ospp.core.clock import iso
from ospp.core.errors import DESCRIPTIONS, E_INVALID_ARG, LicensingError, UsageError, hex_code
from ospp.machine import client
from ospp.machine.store import MAX_REARMS, MachineStore

if TYPE_CHECKING:
    from ospp.machine.status import LicenceStatus

_HEX = r"^0[xX][0-9a-fA-F]{1,8}$"


def _machine_data(store: MachineStore) -> dict[str, object]:
    return {"machine": store.name}


@verb(
    "inpkey",
    slash_value="argument",
    params=[
        click.argument("key"),
        click.option(
            "--act",
            "activate",
            is_flag=True,
            help="Activate right away (online), like the setup wizard's checkbox.",
        ),
    ],
)
@reports
def inpkey(key: str, activate: bool, computer: str | None) -> Result:
    """Install a product key for an installed product (replaces that product's key)."""
    if not key.strip():
        raise UsageError("/inpkey needs a product key: /inpkey:XXXXX-XXXXX-XXXXX-XXXXX-XXXXX")
    store = client.open_machine(computer)
    installed = client.install_key(store, key)
    sku = installed.product.sku(installed.channel)
    lines = ["<Product key installation successful>"]
    failed = None
    acted: list[dict[str, object]] = []
    if activate:
        from ospp.cli.activate import activate_licences

        lines.append("-" * 39)
        failed = activate_licences(store, lines, acted)
    return Result(
        lines,
        {
            "activation": acted,
            **_machine_data(store),
            "product_id": installed.product.id,
            "channel": installed.channel.value,
            "sku_id": sku.sku_id,
            "license_name": sku.license_name,
            "key_last5": installed.last5,
        },
        failed=failed,
    )


@verb("unpkey", slash_value="argument", params=[click.argument("last5", metavar="XXXXX")])
@reports
def unpkey(last5: str, computer: str | None) -> Result:
    """Uninstall the key whose last 5 characters are given."""
    if len(last5) != 5:
        raise UsageError(
            f"/unpkey takes exactly the last 5 characters of a key, not {len(last5)} ({last5!r})",
            "Run /dstatus to see 'Last 5 characters of installed product key'.",
        )
    store = client.open_machine(computer)
    try:
        removed = client.uninstall_key(store, last5)
    except LicensingError as exc:
        data = {**_machine_data(store), "uninstalled": []}  # the report's shape, empty
        return Result(["<Product key not found>"], data, error=exc)
    lines = []
    for sku in removed:
        lines += [f"Uninstalling product key for: {sku.license_name}"]
    lines.append("<Product key uninstall successful>")
    return Result(
        lines,
        {**_machine_data(store), "uninstalled": [s.sku_id for s in removed]},
    )


def _status(computer: str | None, all_: bool, verify: bool) -> Result:
    store = client.open_machine(computer)
    found = client.statuses(store, include_unkeyed=all_, verify=verify)
    kms = store.kms()
    # ospp.vbs shows neither in /dstatus; JSON carries them for scripts
    machine = {
        **_machine_data(store),
        "user_operations": "allowed" if client.user_operations_allowed(store) else "denied",
        "service": client.service_state(store),
    }
    data: dict[str, object] = {**machine, "now_at": iso(store.clock.now())}
    if not found:  # the same fields as any machine's, for scripts that read them
        data.update(products=[], reminders=[])
        return Result(["<No installed product keys detected>", DASHES], data)
    lines: list[str] = []
    for st in found:
        lines += status_lines(st, kms)
    data["products"] = [status_json(st, kms) for st in found]
    _remind(found, data)
    return Result(lines, data)  # each block keeps its closing dashes; the banner adds its own


def _remind(found: list[LicenceStatus], data: dict[str, object]) -> None:
    """A keyed product not yet activated: say so on stderr (text) or as ``reminders`` (JSON),
    never in the ospp.vbs lines scripts parse."""
    from ospp.machine.reminders import notices

    pending = notices(found)
    ctx = click.get_current_context()
    if json_wanted(ctx, bool(ctx.params.get("as_json"))):
        data["reminders"] = [n.to_json() for n in pending]
    elif pending and not quiet():  # --quiet: nothing printed on success, on stderr neither
        from ospp.cli.reminders import echo_to_stderr

        echo_to_stderr(pending)


VERIFY_OPTION = click.option(
    "--verify",
    is_flag=True,
    help="Verify every activation's signature again, even when its seal matches (slower; "
    "catches an activation edited and re-sealed by whoever can write the store).",
)


@verb("dstatus", params=[VERIFY_OPTION])
@reports
def dstatus(verify: bool, computer: str | None) -> Result:
    """Show licence information for products that have a key."""
    return _status(computer, all_=False, verify=verify)


@verb("dstatusall", params=[VERIFY_OPTION])
@reports
def dstatusall(verify: bool, computer: str | None) -> Result:
    """Show licence information for every installed licence, keyed or not."""
    return _status(computer, all_=True, verify=verify)


@verb(
    "ddescr",
    slash_value="argument",
    params=[
        click.argument("code", metavar="0xCODE"),
        click.option(
            "--lang",
            type=click.Choice(["sv", "en"]),
            help="Print the description in this language. Without it the output is English, "
            "as ospp.vbs prints it, whatever LANG says.",
        ),
    ],
)
@reports
def ddescr(code: str, lang: str | None, computer: str | None) -> Result:
    """Print the description of a licensing error code (must start with 0x)."""
    if not re.match(_HEX, code):
        raise UsageError(
            f"/ddescr takes a hexadecimal code starting with 0x, not {code!r}",
            f"For example /ddescr:0x{code.upper()}"
            if code and not code.startswith("0")
            else "For example /ddescr:0xC004F074",
        )
    value = int(code, 16)
    if value not in DESCRIPTIONS:
        raise LicensingError(
            E_INVALID_ARG,
            f"no description is known for {hex_code(value)}",
            "ospp knows the codes of the Software Licensing Service that it can report; "
            "see the man page, section ERROR CODES.",
        )
    description = DESCRIPTIONS[value]
    if lang is not None:
        from ospp.cli.i18n import Text

        description = Text(lang)(description)
    return Result(
        [f"ERROR CODE: {hex_code(value)}", f"ERROR DESCRIPTION: {description}"],
        {"code": hex_code(value), "code_int": value, "description": description},
    )


@verb("dcmid")
@reports
def dcmid(computer: str | None) -> Result:
    """Show the KMS client machine ID (CMID) of the machine."""
    store = client.open_machine(computer)
    value = client.cmid(store)
    return Result([f"Client Machine ID (CMID): {value}"], {**_machine_data(store), "cmid": value})


@verb(
    "rearm",
    slash_value="--sku",
    value_required=False,
    params=[click.option("--sku", "sku", metavar="SKUID", help="Rearm only this SKU.")],
)
@reports
def rearm(sku: str | None, computer: str | None) -> Result:
    """Reset the grace period to 30 days (at most 5 times)."""
    store = client.open_machine(computer)
    skus = client.rearm(store, sku)
    used = int(store.settings()["rearms_used"])
    return Result(
        # what OSPPREARM.EXE prints, which ospp.vbs passes on
        ["Microsoft Office rearm successful." if skus else "<No licences needed a rearm>"],
        {
            **_machine_data(store),
            "rearmed": [s.sku_id for s in skus],
            "rearms_left": MAX_REARMS - used,
        },
    )


# -- KMS client settings ------------------------------------------------------------------------


NO_KMS_LICENCES = "No Office KMS licenses were found on the system."


def _setting(
    computer: str | None, change: Callable[[MachineStore], object], per_licence: bool = True
) -> Result:
    store = client.open_machine(computer)
    # Read first: a damaged licence record is reported before anything is changed.
    licences = store.licences() if per_licence else []
    change(store)
    kms = store.kms()
    message = "Successfully applied setting."
    if per_licence and not any(
        lic.sku.channel in (Channel.KMS_CLIENT, Channel.KMS_HOST) for lic in licences
    ):
        # ospp.vbs applies these to the Office KMS licences and says when there are none;
        # ospp keeps the machine-wide setting for the products installed later.
        message = NO_KMS_LICENCES
    return Result([message], {**_machine_data(store), "kms": kms_json(kms)})


@verb("sethst", slash_value="argument", params=[click.argument("host")])
@reports
def sethst(host: str, computer: str | None) -> Result:
    """Set the KMS host: name, IPv4, [IPv6], optionally with :port."""
    return _setting(computer, lambda s: client.set_kms_host(s, host))


@verb("setprt", slash_value="argument", params=[click.argument("port")])
@reports
def setprt(port: str, computer: str | None) -> Result:
    """Set the KMS port (default 1688)."""
    return _setting(computer, lambda s: client.set_kms_port(s, port))


@verb("remhst")
@reports
def remhst(computer: str | None) -> Result:
    """Remove the KMS host setting; the port goes back to 1688."""
    return _setting(computer, client.remove_kms_host)


CACHING_VALUES = complete.fixed(
    ("TRUE", "Allow KMS host caching"), ("FALSE", "Deny KMS host caching")
)
ACTYPE_VALUES = complete.fixed(("0", "All activation types"), ("2", "KMS activation only"))
POLICY_VALUES = complete.fixed(
    ("any", "Hosts certified online or by phone"), ("online-only", "Hosts certified online only")
)


@verb(
    "cachst",
    slash_value="argument",
    params=[click.argument("value", metavar="TRUE|FALSE", shell_complete=CACHING_VALUES)],
)
@reports
def cachst(value: str, computer: str | None) -> Result:
    """Allow (TRUE) or deny (FALSE) KMS host caching."""
    # the service's setting, not a licence's: ospp.vbs applies it with no Office installed
    return _setting(computer, lambda s: client.set_kms_caching(s, value), per_licence=False)


@verb(
    "actype",
    slash_value="argument",
    params=[click.argument("value", metavar="0-3", shell_complete=ACTYPE_VALUES)],
)
@reports
def actype(value: str, computer: str | None) -> Result:
    """Set the volume activation type: 0 all, 2 KMS (1 AD and 3 token are not supported)."""
    return _setting(computer, lambda s: client.set_actype(s, value))


@verb("skms-domain", slash_value="argument", params=[click.argument("fqdn")])
@reports
def skms_domain(fqdn: str, computer: str | None) -> Result:
    """Look for KMS SRV records only in this DNS domain."""
    return _setting(computer, lambda s: client.set_kms_domain(s, fqdn))


@verb("ckms-domain")
@reports
def ckms_domain(computer: str | None) -> Result:
    """Clear the KMS lookup domain."""
    return _setting(computer, client.clear_kms_domain)


@verb(
    "kms-policy",
    slash_value="argument",
    params=[click.argument("policy", metavar="POLICY", shell_complete=POLICY_VALUES)],
)
@reports
def kms_policy(policy: str, computer: str | None) -> Result:
    """Accept KMS hosts certified online or by phone (any, the default) or online only."""
    store = client.open_machine(computer)
    client.set_kms_policy(store, policy)
    return Result(
        ["Successfully applied setting."], {**_machine_data(store), "kms": kms_json(store.kms())}
    )


COMMANDS = [
    inpkey,
    unpkey,
    dstatus,
    dstatusall,
    ddescr,
    dcmid,
    rearm,
    sethst,
    setprt,
    remhst,
    cachst,
    actype,
    skms_domain,
    ckms_domain,
    kms_policy,
]
