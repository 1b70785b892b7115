"""``ospp kms ping``: one signed round trip to a KMS host, for health checks and scripts.

The host must answer a fresh nonce with a reply its host key signed, carrying its certificate.
With trusted authorities installed, the certificate must chain to one of them; without, the
signature is checked against the host key the certificate names (and the result says so).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ospp.core.canonical import canonical
from ospp.core.endpoint import Endpoint
from ospp.core.errors import (
    E_CANNOT_USE,
    E_HOST_NOT_ACTIVATED,
    E_NO_CONNECTION,
    LicensingError,
    NetworkError,
)
from ospp.core.paths import ospp_home
from ospp.protocol import kms
from ospp.protocol.crypto import unb64, verify_ed25519
from ospp.protocol.trust import anchors
from ospp.protocol.wire import Connection

PING_TIMEOUT = 5.0


@dataclass(frozen=True)
class Pong:
    endpoint: Endpoint
    epid: str
    product: str | None  # the host key's product, when the certificate was checked
    trusted: bool  # the certificate chains to an authority this machine trusts
    seconds: float


def _claimed_host_key(cert: Any) -> str | None:
    if not isinstance(cert, Mapping):
        return None
    lic = cert.get("licence")
    value = lic.get("host_key") if isinstance(lic, Mapping) else cert.get("host_key")
    return value if isinstance(value, str) else None


def ping(endpoint: Endpoint, environ: Mapping[str, str]) -> Pong:
    """Ask the host at ``endpoint``; NetworkError (exit 4) unless it answers as a working host."""

    def bad(why: str, code: int = E_NO_CONNECTION) -> NetworkError:
        return NetworkError(code, f"the KMS host at {endpoint} {why}")

    nonce = secrets.token_hex(16)
    started = time.perf_counter()
    with Connection(endpoint, "KMS host", PING_TIMEOUT) as conn:
        reply = conn.call({"op": "kms-ping", "nonce": nonce})
    seconds = time.perf_counter() - started
    if not reply.get("ok"):
        # The host was reached and said why not: its code (the wire checked that it is an
        # error code) and its reason, as for a refused activation.
        code = reply.get("code", E_CANNOT_USE)  # a refusal with no code: unusable, not absent
        raise bad(f"refused the ping: {reply.get('message') or 'no reason given'}", code)
    if reply.get("activated") is not True:
        raise bad("answered, but its host key is not activated", E_HOST_NOT_ACTIVATED)
    if reply.get("nonce") != nonce or reply.get("op") != "kms-ping":
        raise bad("answered another request (or is too old to sign pings)", E_CANNOT_USE)
    trusted = anchors(ospp_home(environ), environ)
    product = None
    if trusted:
        try:
            found, host_key = kms.check_certificate(reply.get("certificate"), trusted)
        except LicensingError as exc:
            raise bad(f"is not certified: {exc.message}", exc.code) from exc
        product = found.id
    else:
        claimed = _claimed_host_key(reply.get("certificate"))
        if claimed is None:
            raise bad("sent no certificate naming its host key", E_CANNOT_USE)
        host_key = claimed
    body = {k: v for k, v in reply.items() if k not in ("v", "ok", "signature", "certificate")}
    try:
        signed = verify_ed25519(
            unb64(host_key), canonical(body), unb64(str(reply.get("signature")))
        )
    except ValueError:
        signed = False
    if not signed:
        raise bad("sent a reply its host key did not sign", E_CANNOT_USE)
    return Pong(endpoint, _printable(str(reply.get("epid"))[:80]), product, bool(trusted), seconds)


def _printable(text: str) -> str:
    """A peer's text, safe for a terminal: control characters shown as escapes."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
