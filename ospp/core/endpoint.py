"""Host and port values as admins type them: name, IPv4, [IPv6], each with an optional :port."""

from __future__ import annotations

import errno
import ipaddress
import re
from dataclasses import dataclass

from ospp.core.errors import (
    E_ACCESS_DENIED,
    E_ADDRESS_IN_USE,
    E_ADDRESS_NOT_AVAILABLE,
    E_NO_CONNECTION,
    UsageError,
)

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_ZONE = re.compile(r"[A-Za-z0-9_.-]{1,32}")


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_port(text: str, what: str = "port", allow_zero: bool = False) -> int:
    low = 0 if allow_zero else 1
    # at most 5 digits: int() refuses strings of more than 4,300 digits with a ValueError
    if not (text.isascii() and text.isdigit() and len(text) <= 5) or not low <= int(text) < 65536:
        raise UsageError(f"{what} {text!r} is not a TCP port", f"Use a number from {low} to 65535.")
    return int(text)


def valid_host(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:  # an IPv6 zone (fe80::1%eth0) is an interface name or number, nothing else
        zone = getattr(address, "scope_id", None)
        return zone is None or bool(_ZONE.fullmatch(zone))
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if all(label.isdigit() for label in labels):
        return False  # 999.1.1.1 is a bad IPv4 address, not a host name (RFC 1123 2.1)
    return 0 < len(name) <= 253 and all(_LABEL.match(label) for label in labels)


def parse_host(
    text: str, default_port: int | None, what: str = "host", listen: bool = False
) -> Endpoint:
    """Parse ``name``, ``1.2.3.4``, ``[::1]``, ``::1`` or any of them with ``:port``.

    ``default_port`` is used when no port is given; None makes the port mandatory.
    """
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
    if not valid_host(host) or ("." not in host and ":" not in host and host.isdigit()):
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
    return Endpoint(host, port)


def parse_address(text: str, default_port: int, what: str) -> Endpoint:
    """As :func:`parse_host`, for a nameserver: the host must be an IP address (dnspython asks
    a nameserver by its address, and resolving its name would need a nameserver first)."""
    endpoint = parse_host(text, default_port, what)
    try:
        ipaddress.ip_address(endpoint.host)
    except ValueError:
        raise UsageError(
            f"{what} {text!r} is not an IP address: a nameserver is given by its address",
            "Examples: 192.0.2.53, 192.0.2.53:5353, [2001:db8::53].",
        ) from None
    return endpoint


def parse_listen(text: str, default_port: int, what: str = "--listen") -> Endpoint:
    """An address to listen on: as :func:`parse_host` (port 0 allowed), or ``:PORT`` / ``*:PORT``
    for every address of both families (dual stack); the host is then ""."""
    value = text.strip()
    for prefix in (":", "*:"):
        if value.startswith(prefix) and value[len(prefix) :].isdigit():
            return Endpoint("", parse_port(value[len(prefix) :], f"port of {what}", True))
    if value == "*":
        return Endpoint("", default_port)
    return parse_host(value, default_port, what, listen=True)


def listen_set(endpoints: list[Endpoint], what: str = "--listen") -> tuple[list[str], int]:
    """The hosts and the one port of several listen addresses (they must share the port)."""
    ports = {e.port for e in endpoints}
    if len(ports) != 1:
        raise UsageError(
            f"the {what} addresses use different ports ({', '.join(map(str, sorted(ports)))})",
            "Give every address the same port; run a second server for a second port.",
        )
    return [e.host for e in endpoints], ports.pop()


def listen_failure(exc: OSError) -> int:
    """The code for a server that cannot listen, as Windows names the socket error: the port
    taken, the address not this machine's, a port only an administrator may open."""
    codes = {
        errno.EADDRINUSE: E_ADDRESS_IN_USE,
        errno.EADDRNOTAVAIL: E_ADDRESS_NOT_AVAILABLE,
        errno.EACCES: E_ACCESS_DENIED,
        errno.EPERM: E_ACCESS_DENIED,
    }
    # Windows reports a socket's errors by their WSA numbers, which errno has beside the C ones
    for name, code in (
        ("WSAEADDRINUSE", E_ADDRESS_IN_USE),
        ("WSAEADDRNOTAVAIL", E_ADDRESS_NOT_AVAILABLE),
        ("WSAEACCES", E_ACCESS_DENIED),
    ):
        if hasattr(errno, name):
            codes[getattr(errno, name)] = code
    return codes.get(exc.errno or 0, E_NO_CONNECTION)
