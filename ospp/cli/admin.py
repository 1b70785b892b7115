"""ospp.vbs options about the machine rather than a licence: /puserops, /duserops,
/osppsvcauto, /osppsvcrestart, /version, and the token-activation options ospp refuses."""

from __future__ import annotations

import click

from ospp import __version__
from ospp.cli.base import Result, reports
from ospp.cli.slash import verb
from ospp.core.errors import UsageError
from ospp.machine import client

# What ospp.vbs prints for /version (its VER_INFO line).
SCRIPT_VERSION = "2013 1.0 (RTM)"


def _user_ops(computer: str | None, allow: bool) -> Result:
    store = client.open_machine(computer)
    client.set_user_operations(store, allow)
    return Result(
        ["Successfully applied setting."],
        {"machine": store.name, "user_operations": "allowed" if allow else "denied"},
    )


@verb("puserops")
@reports
def puserops(computer: str | None) -> Result:
    """Allow standard users to install keys, activate and change settings."""
    return _user_ops(computer, allow=True)


@verb("duserops")
@reports
def duserops(computer: str | None) -> Result:
    """Allow only administrators to change licensing (the default)."""
    return _user_ops(computer, allow=False)


@verb("osppsvcauto")
@reports
def osppsvcauto(computer: str | None) -> Result:
    """Set the simulated licensing service to start automatically."""
    store = client.open_machine(computer)
    changed = client.set_service_auto(store)
    name = client.SERVICE_NAME
    # ospp.vbs's own wording, its missing space after the colon included
    line = (
        f"Successfully set service startup to automatic:{name}"
        if changed
        else f"Service startup type already set to automatic: {name}"
    )
    return Result(
        [line], {"machine": store.name, "changed": changed, "service": client.service_state(store)}
    )


@verb("osppsvcrestart")
@reports
def osppsvcrestart(computer: str | None) -> Result:
    """Restart the simulated licensing service (start it when it is stopped)."""
    store = client.open_machine(computer)
    client.restart_service(store)
    return Result(
        [f"Successfully restarted: {client.SERVICE_NAME}"],
        {"machine": store.name, "service": client.service_state(store)},
    )


@verb("version")
@reports
def version(computer: str | None) -> Result:
    """Show the version of the ospp.vbs script ospp follows, and of ospp itself."""
    return Result(
        [f"Version Info: {SCRIPT_VERSION}", f"ospp Version Info: {__version__}"],
        {"script_version": SCRIPT_VERSION, "ospp_version": __version__},
    )


# -- token-based activation: out of scope ------------------------------------------------------

TOKEN_HINT = (
    "ospp simulates MAK, KMS and phone activation; token-based activation (certificates "
    "and smart cards) is not simulated. Use /act, or /dinstid and /actcid."
)


def _refuse(option: str) -> Result:
    raise UsageError(f"{option}: token-based activation is not supported by ospp", TOKEN_HINT)


def _token_verb(name: str, metavar: str | None, summary: str) -> click.Command:
    params = [click.argument("value", required=False, metavar=metavar)] if metavar else []

    def refuse(computer: str | None, value: str | None = None) -> Result:
        return _refuse(f"/{name}")

    refuse.__doc__ = f"{summary}: not supported, refused (exit 2)."
    return verb(
        name,
        slash_value="argument" if metavar else None,
        value_required=False,
        params=params,
    )(reports(refuse))


dtokils = _token_verb("dtokils", None, "List token activation licences")
rtokil = _token_verb("rtokil", "ILID", "Remove a token activation licence")
stokflag = _token_verb("stokflag", None, "Set the token-only activation flag")
ctokflag = _token_verb("ctokflag", None, "Clear the token-only activation flag")
dtokcerts = _token_verb("dtokcerts", None, "List token activation certificates")
tokact = _token_verb("tokact", "THUMBPRINT[:PIN]", "Activate with a token certificate")

COMMANDS = [
    puserops,
    duserops,
    osppsvcauto,
    osppsvcrestart,
    version,
    dtokils,
    rtokil,
    stokflag,
    ctokflag,
    dtokcerts,
    tokact,
]
