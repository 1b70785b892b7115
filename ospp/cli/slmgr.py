"""``ospp slmgr /OPTION ...`` and the ``slmgr`` command: slmgr.vbs's global and advanced
options (/ipk, /ato, /dli, /dlv, /xpr, /upk, /cpky, /dti, /atp, /rearm) on the simulated
machines and the KMS host. The KMS options are in ``slmgr_kms``; the syntax in ``slmgr_group``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, NoReturn

import click

from ospp.cli.base import Result, console, needs_admin
from ospp.cli.slmgr_group import (
    COMPUTER_WORD,
    host_sku,
    local_host,
    open_host,
    open_machine,
    option,
    slmgr,
    split_words,
    words_argument,
)
from ospp.cli.slmgr_render import error_lines
from ospp.core.errors import OsppError, UsageError

if TYPE_CHECKING:
    from ospp.kmshost.state import KmsHost
    from ospp.machine.store import MachineStore


# -- global options ------------------------------------------------------------------------------


@option("ipk", click.argument("key"), words_argument(COMPUTER_WORD))
def ipk(key: str, words: tuple[str, ...]) -> Result:
    """Install a product key (replaces the product's key).

    A KMS host key (CSVLK) goes to this machine's KMS host (OSPP_KMS_HOME)."""
    from ospp.core.catalog import Channel
    from ospp.core.paths import LOCAL_MACHINE, machine_name
    from ospp.machine import client
    from ospp.protocol import keys

    _, computer = split_words(words, act_id=False)
    parsed = keys.parse(key)
    masked = f"*****-*****-*****-*****-{parsed.last5}"
    data: dict[str, Any] = {
        "product_id": parsed.product.id,
        "channel": parsed.channel.value,
        "activation_id": parsed.product.sku(parsed.channel).sku_id,
        "key_last5": parsed.last5,
    }
    if parsed.channel is Channel.KMS_HOST:
        if machine_name(computer) != LOCAL_MACHINE:
            raise UsageError(
                f"a KMS host key goes to this machine's KMS host, not to {computer!r}",
                "Run 'slmgr /ipk KEY' without a computer name (the host is OSPP_KMS_HOME).",
            )
        needs_admin("installing the KMS host's key (slmgr /ipk)")
        open_host().install_key(key)
        data["is_kms_host"] = True
    else:
        store = open_machine(computer)
        client.install_key(store, key)
        data["machine"] = store.name
    return Result([f"Installed product key {masked} successfully."], data)


@option("ato", words_argument())
def ato(words: tuple[str, ...]) -> Result:
    """Activate: a MAK online, a GVLK with KMS, a host key."""
    from ospp.machine import slmgr as sl

    act_id, computer = split_words(words)
    host = local_host(computer, act_id)
    if host is not None:
        from ospp.kmshost import settings

        needs_admin("activating the KMS host (slmgr /ato)")
        key = settings.host_pack(host, act_id).key
        sku = key.product.sku(key.channel)
        lines = [f"Activating {sku.license_name} ({sku.sku_id}) ..."]
        try:
            host.activate_online(os.environ, key.last5)
        except OsppError as exc:
            return Result(lines + error_lines(exc), {"activation_id": sku.sku_id}, failed=exc)
        return Result(
            [*lines, "Product activated successfully."],
            {"activation_id": sku.sku_id, "is_kms_host": True, "epid": host.pack(key.last5).epid},
        )
    store = open_machine(computer)
    lic = sl.target(store, act_id)
    lines = [f"Activating {lic.sku.license_name} ({lic.sku.sku_id}) ..."]
    data: dict[str, Any] = {"machine": store.name, "activation_id": lic.sku.sku_id}
    try:
        data.update(sl.activate(store, lic, os.environ))
    except OsppError as exc:
        return Result(lines + error_lines(exc), data, failed=exc)
    return Result([*lines, "Product activated successfully."], data)


def _display(words: tuple[str, ...], verbose: bool) -> Result:
    from ospp.cli.slmgr_render import host_lines, licence_lines, reading_json
    from ospp.machine import slmgr as sl
    from ospp.machine.store import MAX_REARMS

    which, computer = split_words(words, all_ok=True)
    lines: list[str] = []
    products: list[dict[str, Any]] = []
    host = local_host(computer, which)
    everything = which is not None and which.lower() == "all"
    store = open_machine(computer)
    settings = store.settings() if verbose or host is None or everything else {}
    # What slmgr shows of the licensing service for every licence: the host's licence is on
    # this machine, in its Office application, so it shares the machine's rearm count.
    rearms = (
        {"rearms_left": MAX_REARMS - int(settings["rearms_used"]), "now": store.clock.now()}
        if verbose
        else None
    )
    if verbose:
        from ospp import __version__

        lines.append(f"Software licensing service version: ospp {__version__}")
    if host is not None:
        from ospp.kmshost.settings import host_pack

        for pack in host.packs() if everything else [host_pack(host, which)]:
            view = _host_view(host, verbose, pack.sku_id)
            lines += host_lines(view, rearms)
            products.append(view)
    if host is None or everything:
        kms = store.kms()
        extra = None
        for st in sl.selected(store, which, os.environ):
            reading = sl.read(st)
            info = sl.kms_client_info(st.licence)
            if rearms is not None:
                extra = {**rearms, "installation_id": _iid(store, st.licence)}
            lines += licence_lines(reading, kms, settings["cmid"], info, extra)
            products.append(reading_json(reading, kms, settings["cmid"], info))
    return Result(lines, {"machine": store.name, "products": products})


def _iid(store: MachineStore, lic: Any) -> str | None:
    from ospp.core.catalog import Channel
    from ospp.machine import slmgr as sl

    if not lic.product_key or lic.sku.channel is Channel.KMS_CLIENT:
        return None
    try:
        return sl.installation_id(store, lic)
    except OsppError:
        return None


def _host_view(host: KmsHost, verbose: bool, act_id: str) -> dict[str, Any]:
    from ospp.kmshost import settings

    st = host.status()
    pack = settings.host_pack(host, act_id)
    key = pack.key
    sku = key.product.sku(key.channel)
    view: dict[str, Any] = {
        "activation_id": sku.sku_id,
        "product_id": key.product.id,
        "name": sku.license_name,
        "description": sku.license_description,
        "application_id": key.product.application_id,
        "partial_product_key": key.last5,
        "license_status": 1 if pack.activated else 0,
        "license_status_text": "Licensed" if pack.activated else "Unlicensed",
        "activated": pack.activated,
        "epid": pack.epid,
        "current_count": settings.current_count(host, st, act_id),
        "port": st["port"],
        "dns_publishing": st["dns_publishing"],
        "priority": settings.priority(host),
        "activation_interval_minutes": st["activation_interval"],
        "renewal_interval_minutes": st["renewal_interval"],
        "requests_total": st["requests_total"],
        "requests_failed": st["requests_failed"],
        "requests": settings.request_counts(st),
    }
    if verbose:
        view["installation_id"] = "".join(host.installation_id(key.last5).groups())
    return {**view, "is_kms_host": True}


@option("dli", words_argument("[ActID|all] [COMPUTERNAME]"))
def dli(words: tuple[str, ...]) -> Result:
    """Display licence information.

    Default: the current licence; 'all' shows every installed licence."""
    return _display(words, verbose=False)


@option("dlv", words_argument("[ActID|all] [COMPUTERNAME]"))
def dlv(words: tuple[str, ...]) -> Result:
    """Display detailed licence information.

    Default: the current licence; 'all' shows every installed licence."""
    return _display(words, verbose=True)


@option("xpr", words_argument())
def xpr(words: tuple[str, ...]) -> Result:
    """Expiration date of the current licence state."""
    from ospp.cli.slmgr_render import expiration_line
    from ospp.core.clock import iso
    from ospp.machine import slmgr as sl

    act_id, computer = split_words(words)
    host = local_host(computer, act_id)
    if host is not None:
        from ospp.kmshost import settings

        pack = settings.host_pack(host, act_id)
        sku = pack.key.product.sku(pack.key.channel)
        activated = pack.certificate is not None
        text = "The machine is permanently activated." if activated else "Unlicensed"
        return Result(
            [f"{sku.license_name}:", f"    {text}"],
            {
                "is_kms_host": True,
                "products": [
                    {
                        "activation_id": sku.sku_id,
                        "license_status": 1 if activated else 0,
                        "text": text,
                        "expires_at": None,
                    }
                ],
            },
        )
    store = open_machine(computer)
    lic = sl.target(store, act_id)
    (st,) = [s for s in sl.selected(store, lic.sku.sku_id, os.environ)]
    reading = sl.read(st)
    text = expiration_line(reading)
    ends = st.expires_at if reading.license_status in (1, 2, 3) and reading.grace_minutes else None
    return Result(
        [f"{lic.sku.license_name}:", f"    {text}"],
        {
            "machine": store.name,
            "products": [
                {
                    "activation_id": lic.sku.sku_id,
                    "license_status": reading.license_status,
                    "text": text,
                    "expires_at": iso(ends) if ends else None,
                }
            ],
        },
    )


@option(
    "ilc",
    click.argument("path", metavar="LICENSE_FILE", type=click.Path()),
    words_argument(COMPUTER_WORD),
)
def ilc(path: str, words: tuple[str, ...]) -> Result:
    """Install a licence file (as ospp /inslic does)."""
    from ospp.cli.extra import licence_file_data
    from ospp.machine.licence_files import install_licence_file

    _, computer = split_words(words, act_id=False)
    store, product, added = install_licence_file(path, computer)
    return Result(
        [f"License file {path} installed successfully.", ""],
        licence_file_data(store, path, product, added),
    )


@option("upk", words_argument())
def upk(words: tuple[str, ...]) -> Result:
    """Uninstall the product key of one licence.

    Only that licence's key: slmgr.vbs would remove the primary one."""
    from ospp.kmshost import settings
    from ospp.machine import slmgr as sl

    act_id, computer = split_words(words)
    host = local_host(computer, act_id)
    if host is not None:
        needs_admin("uninstalling the KMS host's key (slmgr /upk)")
        sku_id = settings.uninstall_key(host, act_id).sku_id
        return Result(
            ["Uninstalled product key successfully."],
            {"activation_id": sku_id, "is_kms_host": True},
        )
    store = open_machine(computer)
    lic = sl.target(store, act_id)
    sl.uninstall(store, lic)
    return Result(
        ["Uninstalled product key successfully."],
        {"machine": store.name, "activation_id": lic.sku.sku_id},
    )


# -- advanced options ------------------------------------------------------------------------


@option("cpky", words_argument(COMPUTER_WORD))
def cpky(words: tuple[str, ...]) -> Result:
    """Clear the product key from the registry.

    ospp keeps keys in the licence store only, so nothing changes."""
    from ospp.machine import client

    _, computer = split_words(words, act_id=False)
    store = open_machine(computer)
    client.check_operation(store)  # a change, as on Windows, even though nothing is stored
    return Result(["Product key from registry cleared successfully."], {"machine": store.name})


@option("dti", words_argument())
def dti(words: tuple[str, ...]) -> Result:
    """Display the Installation ID for offline (phone) activation."""
    from ospp.machine import slmgr as sl

    act_id, computer = split_words(words)
    host = local_host(computer, act_id)
    if host is not None:
        sku_id = host_sku(host, act_id)
        from ospp.kmshost import settings

        iid = "".join(host.installation_id(settings.host_pack(host, act_id).last5).groups())
        data: dict[str, Any] = {"activation_id": sku_id, "is_kms_host": True}
    else:
        store = open_machine(computer)
        lic = sl.target(store, act_id)
        iid = sl.installation_id(store, lic)
        data = {"machine": store.name, "activation_id": lic.sku.sku_id}
    return Result([f"Installation ID: {iid}", "", PHONE_NUMBERS], {**data, "installation_id": iid})


PHONE_NUMBERS = (
    "Product activation telephone numbers: this is a simulation; get the confirmation ID "
    "from the activation authority with 'ospp center confirm IID'."
)


@option("atp", click.argument("cid"), words_argument())
def atp(cid: str, words: tuple[str, ...]) -> Result:
    """Activate with a Confirmation ID from the phone centre."""
    from ospp.cli.slash import CID_DIGITS, split_groups, split_groups_message
    from ospp.machine import slmgr as sl

    split = split_groups((cid, *words), CID_DIGITS)
    if split:  # typed with spaces and no quotes: not an ActID and a computer name
        raise UsageError(split_groups_message("confirmation ID", (cid, *words), split))
    act_id, computer = split_words(words)
    host = local_host(computer, act_id)
    if host is not None:
        from ospp.kmshost import settings

        needs_admin("activating the KMS host by phone (slmgr /atp)")
        last5 = settings.host_pack(host, act_id).last5 if act_id else None
        sku_id = host.apply_cid(cid, os.environ, last5).sku_id
        data: dict[str, Any] = {"activation_id": sku_id, "is_kms_host": True}
    else:
        from ospp.protocol.phone import parse_cid

        parse_cid(cid)  # a malformed CID is said before anything else, as /actcid says it
        store = open_machine(computer)
        lic = sl.target(store, act_id)
        sl.deposit_cid(store, lic, cid, os.environ)
        sku_id = lic.sku.sku_id
        data = {"machine": store.name, "activation_id": sku_id}
    return Result([f"Confirmation ID for product {sku_id} deposited successfully."], data)


@option("rearm", words_argument(COMPUTER_WORD))
def rearm(words: tuple[str, ...]) -> Result:
    """Reset the licensing status: grace back to 30 days.

    At most 5 times per machine."""
    from ospp.machine import client
    from ospp.machine.store import MAX_REARMS

    _, computer = split_words(words, act_id=False)
    store = open_machine(computer)
    skus = client.rearm(store)
    used = int(store.settings()["rearms_used"])
    return Result(
        [
            "Command completed successfully.",
            "Please restart the system for the changes to take effect.",
        ],
        {
            "machine": store.name,
            "rearmed": [s.sku_id for s in skus],
            "rearms_left": MAX_REARMS - used,
        },
    )


def main() -> None:
    """The ``slmgr`` console script."""
    if "_SLMGR_COMPLETE" in os.environ:  # the shell asks for completions (completions/)
        from ospp.cli.shells import register

        register()
    slmgr(prog_name="slmgr")


def script() -> NoReturn:
    """The ``slmgr`` console script: :func:`main`, ended quickly."""
    console(main)


# Importing the KMS options registers them on the group.
from ospp.cli.slmgr_kms import OPTIONS as KMS_OPTIONS  # noqa: E402

COMMANDS = [slmgr]
OPTIONS = [ipk, ato, dli, dlv, xpr, ilc, upk, cpky, dti, atp, rearm, *KMS_OPTIONS]
