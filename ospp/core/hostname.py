"""Whether text is a host as admins type it (name, IPv4, IPv6) and splitting ``HOST:PORT``.

These are the checks of :mod:`ospp.core.endpoint` without its ``Endpoint`` class, so that
reading a machine's stored hosts on the way of /dstatus checks them with the very rules
/sethst applies and imports nothing heavy: ``ipaddress`` only for a host that could be IPv6.
"""

from __future__ import annotations

import re

from ospp.core.errors import UsageError

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_ZONE = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def parse_port(text: str, what: str = "port", allow_zero: bool = False) -> int:
    low = 0 if allow_zero else 1
    # at most 5 digits: int() refuses strings of more than 4,300 digits with a ValueError
    if not (text.isascii() and text.isdigit() and len(text) <= 5) or not low <= int(text) < 65536:
        raise UsageError(f"{what} {text!r} is not a TCP port", f"Use a number from {low} to 65535.")
    return int(text)


def _ipv4(host: str) -> bool:
    """Whether ``host`` is a dotted-quad IPv4 address, as ``ipaddress`` reads one: four
    decimal octets of at most 3 digits, none above 255, none with a leading zero."""
    octets = host.split(".")
    return len(octets) == 4 and all(
        o.isascii() and o.isdigit() and len(o) <= 3 and int(o) <= 255 and (o == "0" or o[0] != "0")
        for o in octets
    )


def valid_host(host: str) -> bool:
    if ":" in host:  # only an IPv6 address has one (a name or IPv4 address never does)
        import ipaddress

        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        # an IPv6 zone (fe80::1%eth0) is an interface name or number, nothing else
        zone = getattr(address, "scope_id", None)
        return zone is None or bool(_ZONE.fullmatch(zone))
    if _ipv4(host):
        return True
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if all(label.isdigit() for label in labels):
        return False  # 999.1.1.1 is a bad IPv4 address, not a host name (RFC 1123 2.1)
    return 0 < len(name) <= 253 and all(_LABEL.match(label) for label in labels)


def valid_target(host: str) -> bool:
    """Whether ``host`` is one a client may connect to: a valid host that is not a bare
    number (what /sethst accepts)."""
    return valid_host(host) and not ("." not in host and ":" not in host and host.isdigit())


def valid_domain(domain: str) -> bool:
    """Whether ``domain`` is a DNS domain to search (what /skms-domain accepts)."""
    return bool(domain) and valid_host(domain) and ":" not in domain


def split_host(
    text: str, default_port: int | None, what: str = "host", listen: bool = False
) -> tuple[str, int]:
    """The host and port of ``name``, ``1.2.3.4``, ``[::1]``, ``::1`` or any of them with
    ``:port`` (:func:`ospp.core.endpoint.parse_host`)."""
    value = text.strip()
    port_text: str | None = None
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise UsageError(f"{what} {text!r} is not valid", "Write IPv6 as [2001:db8::1]:1688.")
        port_text = rest[1:] if rest else None
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    else:
        host = value
    if not valid_target(host):
        raise UsageError(
            f"{what} {text!r} is not a host name, IPv4 address or [IPv6] address",
            "Examples: kms1.example.com, 192.0.2.10, [2001:db8::10], kms1:1688.",
        )
    if port_text is not None:
        port = parse_port(port_text, f"port of {what}", allow_zero=listen)
    elif default_port is None:
        raise UsageError(f"{what} {text!r} has no port", "Write it as HOST:PORT.")
    else:
        port = default_port
    return host, port
