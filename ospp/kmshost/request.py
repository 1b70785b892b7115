"""A KMS activation request as the host receives it: every field validated before the request
joins a group-commit batch, so nothing in one request can fail another (docs/PROTOCOL.md
lists the rules).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ospp.core.catalog import Channel, Product, catalog
from ospp.core.clock import parse_time
from ospp.core.errors import E_CANNOT_USE, E_KMS_REFUSED, LicensingError, OsppError
from ospp.protocol.cmid import canonical_cmid


@dataclass(frozen=True)
class Request:
    """A validated KMS activation request."""

    app: str
    sku_id: str
    product: Product
    cmid: str  # canonical (ospp.protocol.cmid): what is counted and stored
    cmid_text: str  # echoed exactly as the client sent it
    client_time: datetime
    client_time_text: str  # echoed exactly as the client sent it
    nonce: str
    status: str
    workstation: str
    # The client understands batch signatures (docs/PROTOCOL.md): its answer is signed with
    # its batch's Merkle root and carries an inclusion proof.
    batch_signed: bool = False


# The licence states a KMS client reports (those of the Software Licensing Service).
LICENSE_STATUSES = frozenset(
    {
        "UNLICENSED",
        "LICENSED",
        "OOB_GRACE",
        "OOT_GRACE",
        "NON_GENUINE_GRACE",
        "NOTIFICATIONS",
        "EXTENDED_GRACE",
    }
)


def _malformed(name: str) -> LicensingError:
    return LicensingError(E_KMS_REFUSED, f"request field {name!r} is missing or malformed")


def parse_request(message: Mapping[str, Any]) -> Request:
    """Validate every field of a request, or raise LicensingError (never anything else).

    Strings must be strings of printable characters (no control or format characters, no
    lone surrogates, which SQLite cannot store) within their length; the client time must
    be an ISO 8601 time that converts to UTC. A request that passes can be stored and
    answered: nothing in it can fail the group-commit batch it joins.
    """

    def text(name: str, limit: int = 64) -> str:
        value = message.get(name)
        if not isinstance(value, str) or not 0 < len(value) <= limit or not value.isprintable():
            raise _malformed(name)
        return value

    sku = catalog().sku(text("sku_id", 40))
    if sku is None or sku.channel is not Channel.KMS_CLIENT:
        raise LicensingError(E_CANNOT_USE, "the request names no KMS client product")
    app = text("app_id", 40).lower()
    if app != sku.product.application_id:
        raise LicensingError(E_CANNOT_USE, "the application id does not match the product")
    client_text = text("client_time")
    try:
        client_time = parse_time(client_text, "client_time")
    except OsppError as exc:
        raise LicensingError(E_KMS_REFUSED, exc.message) from exc
    except (OverflowError, ValueError):  # in range as written, out of range in UTC
        raise LicensingError(
            E_KMS_REFUSED, "request field 'client_time' is outside the years 1-9999 in UTC"
        ) from None
    status = text("license_status", 32)
    # One of the names in any case, in ASCII: upper() also maps "ı" to "I" and "ſ" to "S",
    # and a lookalike would be counted and shown as a status of its own.
    if not status.isascii() or status.upper() not in LICENSE_STATUSES:
        raise _malformed("license_status")
    workstation = message.get("workstation", "")
    if not isinstance(workstation, str) or not workstation.isprintable():
        raise _malformed("workstation")
    batch_signed = message.get("batch_signatures", False)
    if batch_signed is not True and batch_signed is not False:
        raise _malformed("batch_signatures")
    cmid_text = text("cmid", 40)
    cmid = canonical_cmid(cmid_text)
    if cmid is None:
        raise LicensingError(
            E_KMS_REFUSED, "request field 'cmid' is not a client machine ID (a GUID)"
        )
    return Request(
        app,
        sku.sku_id,
        sku.product,
        cmid,
        cmid_text,
        client_time,
        client_text,
        text("nonce"),
        status,
        workstation[:64],
        batch_signed,
    )


def parse_item(message: Mapping[str, Any]) -> Request | OsppError:
    """A request, or the error that answers it (what a group-commit batch holds)."""
    try:
        return parse_request(message)
    except OsppError as exc:
        return exc
