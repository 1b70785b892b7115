"""slmgr.vbs's KMS options: the client's (/skms, /ckms, /skms-domain, /ckms-domain, /skhc,
/ckhc, /act-type) on a simulated machine, and the host's (/sprt, /sai, /sri, /sdns, /cdns,
/spri, /cpri) on the KMS host in OSPP_KMS_HOME.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ospp.cli.base import Result, needs_admin
from ospp.cli.slmgr_group import (
    COMPUTER_WORD,
    open_machine,
    option,
    split_words,
    words_argument,
)
from ospp.core.errors import UsageError

if TYPE_CHECKING:
    from ospp.kmshost.state import KmsHost
    from ospp.machine.store import MachineStore


# -- KMS client options ------------------------------------------------------------------------


def _client_setting(
    words: tuple[str, ...], change: Callable[[MachineStore, str | None], None], line: str
) -> Result:
    """Apply a KMS client setting; warn as slmgr.vbs does when /skms and /skms-domain meet."""
    from ospp.cli.render import kms_json

    act_id, computer = split_words(words)
    store = open_machine(computer)
    change(store, act_id)
    kms = store.kms()
    lines = [line.replace("%DOMAIN%", kms.lookup_domain or "")]
    fixed = None
    if kms.host:
        fixed = f"[{kms.host}]:{kms.port}" if ":" in kms.host else f"{kms.host}:{kms.port}"
    if fixed and kms.lookup_domain:
        lines.append(
            f"Warning: /skms setting overrides the /skms-domain setting. {fixed} will be used "
            "for activation."
        )
    elif line.startswith("Key Management Service machine name cleared") and kms.lookup_domain:
        lines.append(
            f"Warning: /skms-domain setting is in effect. {kms.lookup_domain} will be used for "
            "DNS SRV record lookup."
        )
    elif line.startswith("Key Management Service lookup domain cleared") and fixed:
        lines.append(f"Warning: /skms setting is in effect. {fixed} will be used for activation.")
    return Result(lines, {"machine": store.name, "kms": kms_json(kms)})


@option("skms", click.argument("host", metavar="NAME[:PORT]|:PORT"), words_argument())
def skms(host: str, words: tuple[str, ...]) -> Result:
    """Set the KMS host: NAME[:PORT], [IPv6]:PORT or :PORT."""
    from ospp.machine import slmgr as sl

    return _client_setting(
        words,
        lambda store, act: sl.set_kms(store, host, act),
        f"Key Management Service machine name set to {host} successfully.",
    )


@option("ckms", words_argument())
def ckms(words: tuple[str, ...]) -> Result:
    """Clear the KMS host name (the port goes back to 1688)."""
    from ospp.machine import slmgr as sl

    return _client_setting(
        words, sl.clear_kms, "Key Management Service machine name cleared successfully."
    )


@option("skms-domain", click.argument("fqdn"), words_argument())
def skms_domain(fqdn: str, words: tuple[str, ...]) -> Result:
    """Look for KMS SRV records only in this DNS domain.

    No effect while /skms is set."""
    from ospp.machine import slmgr as sl

    return _client_setting(
        words,
        lambda store, act: sl.set_kms_domain(store, fqdn, act),
        "Key Management Service lookup domain set to %DOMAIN% successfully.",
    )


@option("ckms-domain", words_argument())
def ckms_domain(words: tuple[str, ...]) -> Result:
    """Clear the KMS lookup domain."""
    from ospp.machine import slmgr as sl

    return _client_setting(
        words, sl.clear_kms_domain, "Key Management Service lookup domain cleared successfully."
    )


@option("skhc", words_argument(COMPUTER_WORD))
def skhc(words: tuple[str, ...]) -> Result:
    """Enable KMS host caching."""
    from ospp.machine import client

    return _client_setting(
        _no_act(words),
        lambda store, _act: client.set_kms_caching(store, "TRUE"),
        "KMS host caching is enabled",
    )


@option("ckhc", words_argument(COMPUTER_WORD))
def ckhc(words: tuple[str, ...]) -> Result:
    """Disable KMS host caching."""
    from ospp.machine import client

    return _client_setting(
        _no_act(words),
        lambda store, _act: client.set_kms_caching(store, "FALSE"),
        "KMS host caching is disabled",
    )


def _no_act(words: tuple[str, ...]) -> tuple[str, ...]:
    """Options without an Activation ID: the one optional word is the computer name."""
    _, computer = split_words(words, act_id=False)
    return (computer,) if computer else ()


@option("act-type", words_argument("[0|1|2|3] [ActID] [COMPUTERNAME]"), values=True)
def act_type(words: tuple[str, ...]) -> Result:
    """Set the activation type: 0 all (default), 2 KMS.

    1 (AD) and 3 (token) are refused with their licensing codes."""
    from ospp.machine import slmgr as sl

    value = "0"
    rest = words
    if words and (words[0].isdigit() or words[0].lstrip("-+").isdigit()):  # -1: said below
        value, rest = words[0], words[1:]
    return _client_setting(
        rest,
        lambda store, act: sl.set_activation_type(store, value, act),
        "Volume activation type set successfully.",
    )


# -- KMS host options --------------------------------------------------------------------------


def _host_setting(setting: str, change: Callable[[KmsHost], None], lines: list[str]) -> Result:
    from ospp.core.clock import clock_from_env
    from ospp.core.paths import kms_home
    from ospp.kmshost import settings

    needs_admin(f"setting the {setting} of the KMS host")
    host = settings.kms_machine(Path(kms_home()), clock_from_env(), setting)
    change(host)
    st = host.status()

    return Result(
        [*lines, "Warning: a KMS reboot is needed for this setting to take effect."],
        {
            "is_kms_host": True,
            "port": st["port"],
            "dns_publishing": st["dns_publishing"],
            "priority": settings.priority(host),
            "activation_interval_minutes": st["activation_interval"],
            "renewal_interval_minutes": st["renewal_interval"],
        },
    )


def _minutes(text: str, what: str) -> int:
    # "²" is a digit to isdigit(), not to int(); int() refuses more than 4,300 digits
    if not (text.isascii() and text.isdigit() and len(text) < 10):
        raise UsageError(f"the {what} must be a number of minutes (15-43200), not {text!r}")
    return int(text)


@option("sprt", click.argument("port"), values=True)
def sprt(port: str) -> Result:
    """Set the TCP port of the KMS host."""
    from ospp.core.endpoint import parse_port
    from ospp.kmshost import settings

    value = parse_port(port, "KMS port")
    return _host_setting(
        "KMS port",
        lambda host: settings.set_port(host, value),
        [f"KMS port set to {value} successfully."],
    )


@option("sai", click.argument("minutes", metavar="MINUTES"), values=True)
def sai(minutes: str) -> Result:
    """Set the activation interval (15-43200 minutes).

    How often unactivated clients retry; default 120."""
    from ospp.kmshost import settings

    value = _minutes(minutes, "activation interval")
    return _host_setting(
        "activation interval",
        lambda host: settings.set_intervals(host, value, None),
        [f"Volume activation interval set to {value} minutes successfully."],
    )


@option("sri", click.argument("minutes", metavar="MINUTES"), values=True)
def sri(minutes: str) -> Result:
    """Set the renewal interval (15-43200 minutes).

    How often activated clients renew; default 10080."""
    from ospp.kmshost import settings

    value = _minutes(minutes, "renewal interval")
    return _host_setting(
        "renewal interval",
        lambda host: settings.set_intervals(host, None, value),
        [f"Volume renewal interval set to {value} minutes successfully."],
    )


@option("sdns")
def sdns() -> Result:
    """Enable DNS publishing by the KMS host.

    Configure it first with 'ospp kms dns set'."""
    from ospp.kmshost import settings

    return _host_setting(
        "DNS publishing",
        lambda host: settings.set_dns_publishing(host, True),
        ["DNS publishing enabled"],
    )


@option("cdns")
def cdns() -> Result:
    """Disable DNS publishing by the KMS host."""
    from ospp.kmshost import settings

    return _host_setting(
        "DNS publishing",
        lambda host: settings.set_dns_publishing(host, False),
        ["DNS publishing disabled"],
    )


@option("spri")
def spri() -> Result:
    """Set the KMS host's priority to normal (default)."""
    from ospp.kmshost import settings

    return _host_setting(
        "KMS priority",
        lambda host: settings.set_priority(host, False),
        ["KMS priority set to Normal"],
    )


@option("cpri")
def cpri() -> Result:
    """Set the KMS host's priority to low."""
    from ospp.kmshost import settings

    return _host_setting(
        "KMS priority", lambda host: settings.set_priority(host, True), ["KMS priority set to Low"]
    )


OPTIONS = [skms, ckms, skms_domain, ckms_domain, skhc, ckhc, act_type]
OPTIONS += [sprt, sai, sri, sdns, cdns, spri, cpri]
