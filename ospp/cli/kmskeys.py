"""``ospp kms install-key``, ``uninstall-key``, ``activate``, ``dinstid``, ``actcid``: a KMS
host's keys, one licence pack per application group (see :mod:`ospp.kmshost.packs`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ospp.cli.base import JSON_OPTION, Result, needs_admin, reports
from ospp.cli.slash import CID_DIGITS, GroupedValueCommand

if TYPE_CHECKING:
    from ospp.kmshost.state import KmsHost


def _host() -> KmsHost:
    from ospp.kmshost.state import KmsHost

    return KmsHost.from_env()


def _keyed_host(last5: str | None = None) -> KmsHost:
    """The host, for a command on its keys: none installed where it has no store, and
    none made."""
    from ospp.core.clock import clock_from_env
    from ospp.core.paths import kms_home
    from ospp.kmshost.settings import keyed_host

    return keyed_host(Path(kms_home()), clock_from_env(), last5)


KEY_OPTION = click.option(
    "--key",
    "last5",
    metavar="XXXXX",
    default=None,
    help="The licence pack to act on, by the last five characters of its KMS host key "
    "(needed only when the host holds several).",
)


def _last5(value: str | None) -> str | None:
    if value is not None and len(value.strip()) != 5:
        from ospp.core.errors import UsageError

        raise UsageError(
            f"--key takes exactly the last 5 characters of a key, not {len(value.strip())} "
            f"({value!r})",
            "See the installed keys with: ospp kms status",
        )
    return value


@click.command("install-key")
@click.argument("key")
@JSON_OPTION
@reports
def install_key(key: str) -> Result:
    """Install a KMS host key (from 'ospp center issue-key --channel kms-host').

    A key of another application group (Office 2010 beside Office 2013 and later) adds a
    licence pack; a key of a group the host already holds replaces that group's key."""
    from ospp.kmshost.identity import parse_host_key
    from ospp.kmshost.packs import group_name

    needs_admin("ospp kms install-key")
    parse_host_key(key)  # a refused key leaves no store behind
    host = _host()
    installed, replaced = host.add_key(key)
    packs = host.packs()
    lines = [f"Installed KMS host key *****-{installed.last5} for {installed.product.id}"]
    if replaced is not None and replaced.key.compact != installed.compact:
        lines.append(
            f"It replaces the key *****-{replaced.last5} ({replaced.product.id}) of the same "
            f"application group ({group_name(installed.product.application_id)})."
        )
        if installed.product.year < replaced.product.year:
            lines.append(
                f"Note: this key activates clients up to {installed.product.year}; clients of "
                f"{replaced.product.year} are refused (0xC004F042) until a newer key is installed."
            )
    if len(packs) > 1:
        lines.append(
            f"This host now holds {len(packs)} licence packs: "
            + ", ".join(f"*****-{p.last5} ({p.product.id})" for p in packs)
            + "."
        )
        lines.append(
            f"Activate it: ospp kms activate --key {installed.last5} (online) or "
            f"ospp kms dinstid / actcid --key {installed.last5} (phone)."
        )
    else:
        lines.append(
            "Activate it: ospp kms activate (online) or ospp kms dinstid / actcid (phone)."
        )
    data: dict[str, Any] = {"product_id": installed.product.id, "key_last5": installed.last5}
    data["application_id"] = installed.product.application_id
    data["replaced"] = (
        {"product_id": replaced.product.id, "key_last5": replaced.last5} if replaced else None
    )
    return Result(lines, data, banners=False)


@click.command("uninstall-key")
@click.argument("last5", metavar="XXXXX")
@JSON_OPTION
@reports
def uninstall_key(last5: str) -> Result:
    """Remove one licence pack: the KMS host key ending XXXXX, with its activation. Clients
    of its application group are refused from then on; the other packs and every count stay."""
    from ospp.kmshost.packs import group_name

    needs_admin("ospp kms uninstall-key")
    host = _keyed_host(_last5(last5))
    removed = host.uninstall_key(_last5(last5))
    group = group_name(removed.app)
    return Result(
        [
            f"Uninstalled KMS host key *****-{removed.last5} ({removed.product.id})",
            f"This host no longer activates {group} clients "
            "(a running 'ospp kms serve' refuses them too, without a restart).",
        ],
        {
            "product_id": removed.product.id,
            "key_last5": removed.last5,
            "application_id": removed.app,
            "packs_left": len(host.packs()),
        },
        banners=False,
    )


@click.command("activate")
@KEY_OPTION
@JSON_OPTION
@reports
def activate(last5: str | None) -> Result:
    """Activate the host key online with the activation authority.

    With several licence packs and no --key: every pack not yet activated."""
    from ospp.core.errors import OsppError

    needs_admin("ospp kms activate")
    host = _keyed_host(_last5(last5))
    packs = host.packs()
    if _last5(last5) is not None or len(packs) <= 1:
        targets = [host.pack(last5).last5]
    else:
        targets = [p.last5 for p in packs if not p.activated] or [p.last5 for p in packs]
    lines: list[str] = []
    done: list[dict[str, Any]] = []
    for target in targets:
        try:
            product = host.activate_online(os.environ, target)
        except OsppError as exc:
            if done:  # say which packs were activated before this one failed
                exc.message = (
                    f"the key *****-{target} was not activated: {exc.message} (activated: "
                    + ", ".join(f"*****-{d['key_last5']}" for d in done)
                    + ")"
                )
            raise
        epid = host.pack(target).epid
        lines += [f"<KMS host activated for {product.id}>", f"KMS host ePID: {epid}"]
        done.append({"product_id": product.id, "epid": epid, "key_last5": target})
    data: dict[str, Any] = {"product_id": done[0]["product_id"], "epid": done[0]["epid"]}
    if len(packs) > 1:
        data["packs"] = done
    return Result(lines, data, banners=False)


@click.command("dinstid")
@KEY_OPTION
@JSON_OPTION
@reports
def dinstid(last5: str | None) -> Result:
    """Show the host key's installation ID, for phone activation (every pack's, when the
    host holds several and no --key is given)."""
    host = _keyed_host(_last5(last5))
    packs = host.packs()
    if _last5(last5) is not None or len(packs) <= 1:
        iid = host.installation_id(last5)
        return Result(
            [f"Installation ID for the KMS host key: {iid.text()}"],
            {"installation_id": iid.text(), "groups": iid.groups()},
            banners=False,
        )
    lines = []
    listed = []
    for pack in packs:
        iid = host.installation_id(pack.last5)
        lines.append(
            f"Installation ID for the KMS host key *****-{pack.last5} ({pack.product.id}): "
            f"{iid.text()}"
        )
        listed.append(
            {
                "product_id": pack.product.id,
                "key_last5": pack.last5,
                "installation_id": iid.text(),
                "groups": iid.groups(),
            }
        )
    return Result(
        lines,
        {"installation_id": listed[0]["installation_id"], "groups": listed[0]["groups"]}
        | {"packs": listed},
        banners=False,
    )


@click.command("actcid", cls=GroupedValueCommand, digit_groups=("confirmation ID", CID_DIGITS))
@click.argument("cid")
@KEY_OPTION
@JSON_OPTION
@reports
def actcid(cid: str, last5: str | None) -> Result:
    """Activate the host key with a confirmation ID from the phone centre (on a host with
    several licence packs, the pack whose installation ID it answers)."""
    needs_admin("ospp kms actcid")
    host = _keyed_host(_last5(last5))
    pack = host.apply_cid(cid, os.environ, _last5(last5))
    return Result(
        [f"<KMS host activated by phone for {pack.product.id}>"],
        {"product_id": pack.product.id, "epid": pack.epid, "key_last5": pack.last5},
        banners=False,
    )


KEY_COMMANDS = [install_key, uninstall_key, activate, dinstid, actcid]
