"""The KMS rules that host and client share, and the check of a host's certificate.

Semantics (REFERENCE 4): threshold 5 for Office; the host counts unique CMIDs seen in the last
30 days per application group, capped at twice the threshold. Activation validity is 180 days;
clients retry every activation interval and renew every renewal interval (both 15-43200
minutes, set on the host and adopted by clients from its responses).

Trust: every response is signed with the host's Ed25519 key, and carries the certificate the
activation authority issued when the host's KMS host key was activated (online: a signed
licence naming the host key; by phone: the IID/CID pair, whose machine tag is derived from
the host key). Clients accept a response only if the certificate chains to an authority they
trust, the signature verifies, and nonce, CMID and client time echo their request.
"""

from __future__ import annotations

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


def host_tag_source(host_key_b64: str) -> str:
    """What the machine tag of a KMS host's installation ID is derived from: its key."""
    return f"kms-host:{host_key_b64}"


def check_certificate(cert: object, trusted: Anchors) -> tuple[Product, str]:
    """Verify a host certificate; return (the host key's product, the host key, base64).

    Raises LicensingError 0xC004F042 saying why the host cannot be used.
    """
    from ospp.protocol.phone import (
        IID_CHANNEL_KMS_HOST,
        InstallationId,
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
    elif cert.get("kind") == "phone":
        host_key = str(cert.get("host_key"))
        try:
            iid = InstallationId.parse(str(cert.get("iid")))
            r, s = parse_cid(str(cert.get("cid")))
        except OsppError as exc:
            raise refuse(f"the KMS host's phone certificate is damaged: {exc.message}") from exc
        if iid.channel_code != IID_CHANNEL_KMS_HOST or iid.machine_tag != machine_tag(
            host_tag_source(host_key)
        ):
            raise refuse("the KMS host's phone certificate is for another key or host")
        if not any(b.verify_cid(iid.message(), r, s) for b in trusted.values()):
            raise refuse("the KMS host's confirmation ID is not from a trusted authority")
        product = catalog().by_index(iid.product_index)
    else:
        raise refuse("the KMS host sent no certificate from an activation authority")
    if product is None:
        raise refuse("the KMS host's key names a product this client does not know")
    return product, host_key
