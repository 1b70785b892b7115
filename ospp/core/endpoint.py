"""Host and port values as admins type them: name, IPv4, [IPv6], each with an optional :port."""

from __future__ import annotations

import errno
import ipaddress
from dataclasses import dataclass

from ospp.core.errors import (
    E_ACCESS_DENIED,
    E_ADDRESS_IN_USE,
    E_ADDRESS_NOT_AVAILABLE,
    E_NO_CONNECTION,
    UsageError,
)
from ospp.core.hostname import parse_port, split_host, valid_host

__all__ = [
    "Endpoint",
    "listen_failure",
    "listen_set",
    "parse_address",
    "parse_host",
    "parse_listen",
    "parse_port",
    "valid_host",
]


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_host(
    text: str, default_port: int | None, what: str = "host", listen: bool = False
) -> Endpoint:
    """Parse ``name``, ``1.2.3.4``, ``[::1]``, ``::1`` or any of them with ``:port``.

    ``default_port`` is used when no port is given; None makes the port mandatory.
    """
    return Endpoint(*split_host(text, default_port, what, listen))


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
            "Give every address the same port: a server listens on one port.",
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
