"""A KMS host's licence packs: one KMS host key (CSVLK) per application group.

A real KMS host holds one host key per application group (Office 2010 beside Office 2013 and
later). Each pack keeps what the single host key kept before: the key, the certificate from
the activation authority (online or by phone), the host's ePID for that key and when it was
activated. A key for a group that already has a pack replaces that pack (a newer key of the
group is an upgrade: it also activates the older versions); a key for another group adds a
pack. Packs live in the ``packs`` table of ``kms.db``; a store from before packs (one key in
the ``meta`` table) is moved there by the schema migration, unchanged.

Every pack's certificate names the same host signing key (``host-ed25519.pem``): what a
client verifies for an answer (certificate chain, signature, echo, the certificate's product
covers its own) is exactly what it verified with one key. See docs/PROTOCOL.md.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ospp.core.catalog import APP_OFFICE_2010, Channel, Product, catalog
from ospp.core.errors import (
    E_CANNOT_USE,
    E_HOST_NOT_ACTIVATED,
    E_INVALID_DATA,
    E_KEY_NOT_AVAILABLE,
    LicensingError,
    OsppError,
    StoreError,
    UsageError,
)
from ospp.protocol.kms import LEGACY_PHONE_CERTIFICATE, REACTIVATE_HINT, is_legacy_phone

if TYPE_CHECKING:
    from ospp.protocol.keys import ProductKey

NOT_ACTIVATED = "this KMS host's key is not activated with the activation authority"

# Moves a store from one host key (in meta) to the packs table; nothing is dropped unless it
# was copied. Statements are separated by ';' and hold none inside (Database splits on it).
MIGRATION = """
    CREATE TABLE IF NOT EXISTS packs (
        key TEXT PRIMARY KEY,
        certificate TEXT,
        epid TEXT,
        activated_at TEXT,
        installed_at TEXT
    );
    INSERT INTO packs (key, certificate, epid, activated_at)
        SELECT k.value,
            (SELECT value FROM meta WHERE name='certificate'),
            (SELECT value FROM meta WHERE name='epid'),
            (SELECT value FROM meta WHERE name='activated_at')
        FROM meta AS k WHERE k.name='key' AND k.value<>'';
    DELETE FROM meta WHERE name IN ('key', 'certificate', 'epid', 'activated_at')
        AND EXISTS (SELECT 1 FROM packs);
"""


def group_name(app: str) -> str:
    """An application group as admins name it."""
    return "Office 2010" if app == APP_OFFICE_2010 else "Office 2013 and later"


@dataclass(frozen=True)
class Pack:
    """One licence pack: a KMS host key and its activation."""

    key: ProductKey
    certificate: dict[str, Any] | None
    epid: str | None
    activated_at: str | None

    @property
    def product(self) -> Product:
        return self.key.product

    @property
    def app(self) -> str:
        return self.key.product.application_id

    @property
    def last5(self) -> str:
        return self.key.last5

    @property
    def legacy(self) -> bool:
        """Its certificate is an old-style phone one, which must not be sent to clients."""
        return is_legacy_phone(self.certificate)

    @property
    def activated(self) -> bool:
        return self.certificate is not None and not self.legacy

    @property
    def sku_id(self) -> str:
        return self.key.product.sku(Channel.KMS_HOST).sku_id

    def status(self, count: int) -> dict[str, Any]:
        """This pack as ``kms status --json`` lists it."""
        cert = self.certificate
        certified = None if cert is None else "phone-disclosing" if self.legacy else cert["kind"]
        return {
            "product_id": self.product.id,
            "application_id": self.app,
            "group": group_name(self.app),
            "key_last5": self.last5,
            "activated": self.activated,
            "certified": certified,
            "attention": f"{LEGACY_PHONE_CERTIFICATE}. {REACTIVATE_HINT}" if self.legacy else None,
            "activated_at": self.activated_at,
            "epid": self.epid,
            "current_count": count,
        }


def _damaged(why: str) -> StoreError:
    return StoreError(
        E_INVALID_DATA,
        f"the KMS host store holds a damaged licence pack: {why}",
        "The store was left as it is. Restore kms.db from a backup, or remove the pack with "
        "'ospp kms uninstall-key LAST5' and install its key again.",
    )


def read_packs(conn: sqlite3.Connection) -> list[Pack]:
    """Every pack, newest application group first; a damaged row is reported, not skipped."""
    from ospp.protocol import keys

    packs = []
    rows = conn.execute("SELECT key, certificate, epid, activated_at FROM packs").fetchall()
    for key_text, cert_text, epid, activated_at in rows:
        try:
            key = keys.parse(str(key_text))
        except OsppError as exc:
            raise _damaged(f"its key does not decode ({exc.message})") from exc
        if key.channel is not Channel.KMS_HOST:
            raise _damaged(f"the key ending {key.last5} is not a KMS host key")
        cert = None
        if cert_text is not None:
            try:
                cert = json.loads(cert_text)
            except ValueError as exc:
                raise _damaged(f"the certificate of *****-{key.last5} is not JSON") from exc
            if not isinstance(cert, dict) or not isinstance(cert.get("kind"), str):
                raise _damaged(f"the certificate of *****-{key.last5} is not a certificate")
        for name, value in (("ePID", epid), ("activation time", activated_at)):
            if value is not None and not isinstance(value, str):  # a blob, put there by hand
                raise _damaged(f"the {name} of *****-{key.last5} is not text ({value!r:.40})")
        packs.append(Pack(key, cert, epid, activated_at))
    groups = [p.app for p in packs]
    if len(set(groups)) != len(groups):
        raise _damaged("two packs hold keys of the same application group")
    return sorted(packs, key=lambda p: (-p.product.year, p.app))


def choose(packs: list[Pack], last5: str | None) -> Pack:
    """The pack a command acts on: the one whose key ends ``last5``, or the only one."""
    if last5 is not None:
        found = [p for p in packs if p.last5.upper() == last5.strip().upper()]
        if not found:
            installed = ", ".join(f"*****-{p.last5}" for p in packs) or "none"
            raise LicensingError(
                E_KEY_NOT_AVAILABLE,
                f"no KMS host key ending {last5.strip().upper()!r} is installed "
                f"(installed: {installed})",
                "See them with: ospp kms status",
            )
        return found[0]
    if not packs:
        raise LicensingError(
            E_KEY_NOT_AVAILABLE, "no KMS host key is installed", "Run: ospp kms install-key KEY"
        )
    if len(packs) > 1:
        raise UsageError(
            f"this host holds {len(packs)} licence packs ("
            + ", ".join(f"*****-{p.last5} {p.product.id}" for p in packs)
            + "); say which one",
            "Name it by the last five characters of its key: --key XXXXX.",
        )
    return packs[0]


@dataclass(frozen=True)
class ServingPack:
    """What answering a client of one pack's group needs, read when serving starts and when
    the store changes."""

    product: Product
    certificate: dict[str, Any] | None
    certificate_json: bytes
    epid: str
    not_activated: str = NOT_ACTIVATED

    @classmethod
    def of(cls, pack: Pack) -> ServingPack:
        cert, why = pack.certificate, NOT_ACTIVATED
        if pack.legacy:
            # Sending it would disclose the host key to every client: serve as not activated.
            cert, why = None, f"{LEGACY_PHONE_CERTIFICATE}. {REACTIVATE_HINT}"
        # The certificate was checked when it was installed; clients check it again.
        data = json.dumps(cert, separators=(",", ":")).encode() if cert else b""
        return cls(pack.product, cert, data, pack.epid or "", why)


def pack_for(packs: tuple[ServingPack, ...], client: Product) -> ServingPack:
    """The pack that answers a client of ``client``, or the refusal it gets.

    The pack of the client's application group, activated, whose key covers the client's
    version. A host with no activated pack refuses everything with 0xC004F041, as a host
    with an unactivated key always did; a product no pack covers gets 0xC004F042.
    """
    from ospp.protocol.kms import covers

    mine = [p for p in packs if p.product.application_id == client.application_id]
    if not mine:
        active = [p for p in packs if p.certificate is not None]
        if not active:
            raise LicensingError(
                E_HOST_NOT_ACTIVATED, packs[0].not_activated if packs else NOT_ACTIVATED
            )
        held = ", ".join(p.product.id for p in packs)
        raise LicensingError(
            E_CANNOT_USE,
            f"this host's key{'s' if len(packs) > 1 else ''} ({held}) cannot activate {client.id}",
        )
    pack = mine[0]
    if pack.certificate is None:
        raise LicensingError(E_HOST_NOT_ACTIVATED, pack.not_activated)
    if not covers(pack.product, client):
        raise LicensingError(
            E_CANNOT_USE, f"this host's key ({pack.product.id}) cannot activate {client.id}"
        )
    return pack


def known_groups() -> list[str]:
    """Every application group of the catalog."""
    return sorted({p.application_id for p in catalog().products})
