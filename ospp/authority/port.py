"""How clients and KMS hosts reach the activation authority: in process, when it is the local
authority of ``OSPP_CENTER_HOME``, or over the ospp protocol at ``OSPP_AUTHORITY``.

Either way the caller gets the authority's answer as a dict and checks it itself: the port
carries requests, it does not vouch for what comes back.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ospp.core.clock import Clock
from ospp.core.endpoint import Endpoint, parse_host
from ospp.core.errors import E_NO_CONNECTION, E_UNTRUSTED, N_, LicensingError, NetworkError
from ospp.core.paths import center_home

AUTHORITY_PORT = 1689


def remote_authority(environ: Mapping[str, str]) -> Endpoint | None:
    """The ``OSPP_AUTHORITY`` endpoint, or None for the local authority."""
    value = environ.get("OSPP_AUTHORITY")
    return parse_host(value, AUTHORITY_PORT, "OSPP_AUTHORITY") if value else None


def call_authority(
    request: dict[str, Any], environ: Mapping[str, str], clock: Clock
) -> dict[str, Any]:
    """Send ``request`` (op ``activate`` or ``confirm``) and return the authority's answer.

    A refusal raises LicensingError with the authority's code; an unreachable authority
    raises NetworkError.
    """
    endpoint = remote_authority(environ)
    if endpoint is None:
        from ospp.authority.state import Authority

        authority = Authority.open(Path(center_home(environ)), clock, environ=environ)
        try:
            if request["op"] == "activate":
                return {"ok": True, **authority.activate(request)}
            return {"ok": True, "cid": authority.confirm(request["iid"])}
        finally:
            authority.close()
    from ospp.protocol.wire import Connection

    with Connection(endpoint, N_("activation authority")) as conn:
        response = conn.call(request)
    if not response.get("ok"):
        if response.get("code") == E_NO_CONNECTION:  # the node is up, its database is not
            raise NetworkError(
                E_NO_CONNECTION,
                N_(
                    "the activation authority at {endpoint} is unavailable: {message}",
                    endpoint=str(endpoint),
                    message=str(response.get("message") or "no reason given"),
                ),
                N_("Try again later, or another node of the authority."),
            )
        raise LicensingError(
            int(response.get("code", E_UNTRUSTED)),
            N_(
                "the activation authority at {endpoint} refused: {message}",
                endpoint=str(endpoint),
                message=str(response.get("message") or "no reason given"),
            ),
        )
    return response
