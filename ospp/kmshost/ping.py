"""The host's answer to ``kms-ping``: is a KMS host listening, and is its key activated?

A ping without a nonce gets the plain answer ``ospp dnsdiag`` uses. A ping with a nonce (what
``ospp kms ping`` sends) gets an answer signed by the host key, with the host's certificate, so
the caller knows it reached a real, working host and not something that answers on its port.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ospp.core.canonical import canonical
from ospp.core.clock import iso
from ospp.core.errors import LicensingError, OsppError
from ospp.kmshost.state import KmsHost, ServingState


def ping_reply(host: KmsHost, state: ServingState, message: Mapping[str, Any]) -> dict[str, Any]:
    """Answered for the newest activated licence pack (its ePID and certificate)."""
    pack = state.first_activated
    epid = pack.epid if pack is not None else state.packs[0].epid if state.packs else ""
    reply: dict[str, Any] = {"v": 1, "ok": True, "epid": epid, "activated": pack is not None}
    nonce = message.get("nonce")
    if (
        pack is None
        or not isinstance(nonce, str)
        or not 0 < len(nonce) <= 64
        or not nonce.isprintable()  # as a request's nonce: nothing a terminal acts on
    ):
        return reply
    from ospp.protocol.crypto import b64

    try:
        now = host.clock.now()
    except OsppError as exc:  # a damaged lab clock: no path of the host's goes to a client
        raise LicensingError(exc.code, "the KMS host cannot read its clock") from exc
    body = {
        "op": "kms-ping",
        "nonce": nonce,
        "epid": pack.epid,
        "activated": True,
        "host_time": iso(now),
    }
    signature = b64(host.signer().sign(canonical(body)))
    return {"v": 1, "ok": True, **body, "signature": signature, "certificate": pack.certificate}
