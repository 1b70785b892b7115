"""The KMS rules that host and client share, and the check of a host's certificate.

Semantics (REFERENCE 4): threshold 5 for Office; the host counts unique CMIDs seen in the last
30 days per application group, capped at twice the threshold. Activation validity is 180 days;
clients retry every activation interval and renew every renewal interval (both 15-43200
minutes, set on the host and adopted by clients from its responses).

Trust: every response is signed with the host's Ed25519 key, and carries the certificate the
activation authority issued when the host's KMS host key was activated (online: a signed
licence naming the host key; by phone: the CID over the public fields of the host's IID,
whose 72-bit key tag is derived from the host key). Clients accept a response only if the
certificate chains to an authority they trust, the signature verifies, and nonce, CMID and
client time echo their request. A certificate never carries the host key's security value:
the old phone certificate (format 1, which held the whole IID) disclosed it, and is refused.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import timedelta

from ospp.core.catalog import Channel, Product, catalog
from ospp.core.errors import E_CANNOT_USE, LicensingError, OsppError
from ospp.protocol.trust import Anchors

THRESHOLD = 5
CAP = 2 * THRESHOLD
WINDOW = timedelta(days=30)
MAX_SKEW = timedelta(hours=4)
VALIDITY = timedelta(days=180)
INTERVAL_RANGE = (15, 43200)
DEFAULT_ACTIVATION_INTERVAL = 120
DEFAULT_RENEWAL_INTERVAL = 10080
DEFAULT_PORT = 1688


def covers(host: Product, client: Product) -> bool:
    """A host key activates clients of its application group and of its year or older."""
    return host.application_id == client.application_id and host.year >= client.year


PHONE_CERTIFICATE_FORMAT = 2
LEGACY_PHONE_CERTIFICATE = (
    "the KMS host's certificate is an old-style phone certificate, which discloses the host's "
    "product key to every client; the host must be activated again, with a new host key"
)
REACTIVATE_HINT = (
    "On the host: get a new KMS host key from the authority (ospp center issue-key --channel "
    "kms-host, and ospp center block OLDKEY), install it (ospp kms install-key NEWKEY), then "
    "activate it (ospp kms activate, or ospp kms dinstid and ospp kms actcid)."
)


def host_tag_source(host_key_b64: str) -> str:
    """What the 32-bit machine tag of an old-style (version 1) KMS host IID came from."""
    return f"kms-host:{host_key_b64}"


def is_legacy_phone(cert: object) -> bool:
    """A format 1 phone certificate: it holds the host's whole IID, security value included."""
    return isinstance(cert, Mapping) and cert.get("kind") == "phone" and "iid" in cert


def check_certificate(
    cert: object, trusted: Anchors, legacy_phone: bool = False
) -> tuple[Product, str]:
    """Verify a host certificate; return (the host key's product, the host key, base64).

    ``legacy_phone`` accepts a format 1 phone certificate: only for activations a client
    stored before the format changed, never for a new answer.
    Raises LicensingError 0xC004F042 saying why the host cannot be used.
    """
    from ospp.protocol.edpoint import usable_ed25519_key
    from ospp.protocol.phone import (
        IID_CHANNEL_KMS_HOST,
        KEY_IID_VERSION,
        InstallationId,
        host_certificate_message,
        host_key_tag,
        machine_tag,
        parse_cid,
    )
    from ospp.protocol.trust import verify_licence

    def refuse(why: str) -> LicensingError:
        return LicensingError(E_CANNOT_USE, why)

    if not isinstance(cert, Mapping):
        raise refuse("the KMS host sent no certificate from an activation authority")
    product: Product | None
    if cert.get("kind") == "online":
        lic = cert.get("licence")
        if not isinstance(lic, Mapping):
            raise refuse("the KMS host's certificate holds no licence")
        why = verify_licence(lic, str(cert.get("signature")), trusted)  # 1. chain, 2. signature
        if why is not None:
            raise refuse(f"the KMS host is not certified: {why}")
        if lic.get("kind") != Channel.KMS_HOST.value or not isinstance(lic.get("host_key"), str):
            raise refuse("the KMS host's certificate is not for a KMS host key")
        product = catalog().product(str(lic.get("product")))
        host_key = str(lic["host_key"])
    elif is_legacy_phone(cert):
        if not legacy_phone:
            raise refuse(LEGACY_PHONE_CERTIFICATE)
        host_key = str(cert.get("host_key"))
        try:
            iid = InstallationId.parse(str(cert.get("iid")))
            r, s = parse_cid(str(cert.get("cid")))
        except OsppError as exc:
            raise refuse(f"the KMS host's phone certificate is damaged: {exc.message}") from exc
        if iid.version != KEY_IID_VERSION:  # older ospp made them from version 1 IIDs only
            raise refuse(
                f"the KMS host's phone certificate is damaged: it holds a version "
                f"{iid.version} installation ID"
            )
        if iid.channel_code != IID_CHANNEL_KMS_HOST or iid.machine_tag != machine_tag(
            host_tag_source(host_key)
        ):
            raise refuse("the KMS host's phone certificate is for another key or host")
        if not any(b.verify_cid(iid.message(), r, s) for b in trusted.values()):
            raise refuse("the KMS host's confirmation ID is not from a trusted authority")
        product = catalog().by_index(iid.product_index)
    elif cert.get("kind") == "phone":
        named = cert.get("host_key")
        index, serial = cert.get("product_index"), cert.get("key_serial")
        try:
            if cert.get("format") != PHONE_CERTIFICATE_FORMAT:
                raise ValueError(f"its format is not {PHONE_CERTIFICATE_FORMAT}")
            if not isinstance(named, str):
                raise ValueError("it names no host key")
            host_key = named
            raw = base64.b64decode(host_key.encode("ascii"), validate=True)
            if len(raw) != 32:
                raise ValueError("the host key is not an Ed25519 public key")
            if type(index) is not int or not 0 <= index < 256:
                raise ValueError("the product is not a product number")
            if type(serial) is not int or not 0 <= serial < 1 << 32:
                raise ValueError("the key serial is not a 32-bit number")
            r, s = parse_cid(str(cert.get("cid")))
        except (OsppError, ValueError, UnicodeEncodeError) as exc:
            why = exc.message if isinstance(exc, OsppError) else str(exc)
            raise refuse(f"the KMS host's phone certificate is damaged: {why}") from exc
        # 1. the CID signs this product, serial and the tag of the key that signs the answers
        message = host_certificate_message(index, serial, host_key_tag(raw))
        if not any(b.verify_cid(message, r, s) for b in trusted.values()):
            raise refuse(
                "the KMS host's confirmation ID is not from a trusted authority, or is for "
                "another host key"
            )
        product = catalog().by_index(index)
    else:
        raise refuse("the KMS host sent no certificate from an activation authority")
    if product is None:
        raise refuse("the KMS host's key names a product this client does not know")
    try:
        usable = usable_ed25519_key(base64.b64decode(host_key.encode("ascii"), validate=True))
    except (ValueError, UnicodeEncodeError):
        usable = False
    if not usable:
        raise refuse(
            "the KMS host's certified key is not one that can sign (a point of small order "
            "or not an Ed25519 key): anyone could answer in its name"
        )
    return product, host_key
