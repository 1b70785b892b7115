"""Client-side activation: online MAK activation, phone (IID/CID) activation, and the checks
that keep a stored activation honest (signature, binding to key and machine, hardware).

Trust: a client accepts only what chains to a public key it trusts. The local authority (in
``OSPP_CENTER_HOME``) is trusted when no remote authority is configured; any other authority is
trusted only after ``ospp trust add FILE`` put its public key file in ``<OSPP_HOME>/trust/``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ospp import hardware, keys
from ospp.authority import Authority, canonical, machine_tag
from ospp.catalog import Channel
from ospp.clock import Clock, iso
from ospp.crypto import PublicBundle, unb64
from ospp.endpoint import Endpoint, parse_host
from ospp.errors import E_INVALID_DATA, LicensingError, OsppError, StoreError, UsageError
from ospp.integrity import seal
from ospp.paths import center_home, write_atomic
from ospp.phone import E_MISMATCH, InstallationId, parse_cid
from ospp.status import Problem
from ospp.store import License, MachineStore

E_UNTRUSTED = 0xC004E003  # licence evaluation failed: tampered or from an untrusted authority
AUTHORITY_PORT = 1689


# -- trust --------------------------------------------------------------------------------------


def trust_dir(store_home: Path) -> Path:
    return store_home / "trust"


def remote_authority(environ: Mapping[str, str]) -> Endpoint | None:
    value = environ.get("OSPP_AUTHORITY")
    return parse_host(value, AUTHORITY_PORT, "OSPP_AUTHORITY") if value else None


def anchors(home: Path, environ: Mapping[str, str]) -> dict[str, PublicBundle]:
    """Trusted authority keys by fingerprint (may be empty: callers fail closed)."""
    from ospp.integrity import anchor_files

    found: dict[str, PublicBundle] = {}
    for path in anchor_files(home, environ):
        try:
            bundle = PublicBundle.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                E_INVALID_DATA,
                f"the trust anchor {path} cannot be read: {exc}",
                "Remove it or install a good copy with 'ospp trust add FILE'.",
            ) from exc
        found[bundle.fingerprint] = bundle
    return found


def add_anchor(home: Path, source: Path) -> PublicBundle:
    try:
        bundle = PublicBundle.from_json(json.loads(source.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{source} is not an authority public key file: {exc}") from exc
    target = trust_dir(home)
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = target / f"{bundle.fingerprint}.json"
    write_atomic(path, json.dumps(bundle.to_json(), indent=2) + "\n")
    return bundle


def _require_anchors(found: dict[str, PublicBundle]) -> dict[str, PublicBundle]:
    if not found:
        raise LicensingError(
            E_UNTRUSTED,
            "no trusted activation authority: the trust store is empty",
            "Install the authority's public key: ospp trust add authority.pub.json "
            "(from 'ospp center pubkey' on the authority).",
        )
    return found


# -- talking to the authority ------------------------------------------------------------------


def call_authority(
    request: dict[str, Any], environ: Mapping[str, str], clock: Clock
) -> dict[str, Any]:
    endpoint = remote_authority(environ)
    if endpoint is None:
        authority = Authority.open(center_home(environ), clock)
        try:
            if request["op"] == "activate":
                return {"ok": True, **authority.activate(request)}
            return {"ok": True, "cid": authority.confirm(request["iid"])}
        finally:
            authority.db.close()
    from ospp.wire import Connection

    with Connection(endpoint, "activation authority") as conn:
        response = conn.call(request)
    if not response.get("ok"):
        raise LicensingError(
            int(response.get("code", E_UNTRUSTED)),
            f"the activation authority at {endpoint} refused: {response.get('message')}",
        )
    return response


# -- the checks ---------------------------------------------------------------------------------


def _hardware_hex(store: MachineStore) -> tuple[str, hardware.Hardware]:
    hw = hardware.load(store.directory)
    return f"{hw.hash():010x}", hw


def verify_licence(
    lic_payload: dict[str, Any], signature: str, trusted: Mapping[str, PublicBundle]
) -> str | None:
    """Return why a signed licence is not acceptable, or None."""
    bundle = trusted.get(str(lic_payload.get("authority")))
    if bundle is None:  # 1. issued by an authority we trust
        return (
            f"the licence was issued by authority {lic_payload.get('authority')}, which is "
            "not trusted"
        )
    try:
        sig = unb64(signature)
    except ValueError:
        return "the licence signature is not base64"
    if not bundle.verify(canonical(lic_payload), sig):  # 2. signed by it, unchanged
        return "the licence signature does not verify: the licence was altered"
    return None


def installation_id(store: MachineStore, lic: License, hw_hex: str | None = None) -> InstallationId:
    if not lic.product_key:
        raise LicensingError(0xC004F014, f"no product key is installed for {lic.sku.product.id}")
    key = keys.parse(lic.product_key)
    if key.channel is Channel.KMS_CLIENT:
        raise LicensingError(
            0xC004F056,
            f"{lic.sku.product.id} has a KMS client key (GVLK); phone activation needs a MAK "
            "or KMS host key",
            "Install a MAK with /inpkey first.",
        )
    hw = hw_hex or _hardware_hex(store)[0]
    return InstallationId(
        key.product.index,
        {Channel.MAK: 1, Channel.KMS_HOST: 2}[key.channel],
        key.serial,
        key.security,
        int(hw, 16),
        machine_tag(store.settings()["cmid"]),
    )


def full_checker(store: MachineStore, environ: Mapping[str, str]) -> Any:
    """Verify stored activations cryptographically (integrity.make_checker's slow path)."""
    from ospp.integrity import hardware_problem

    trusted = anchors(store.directory.parent.parent, environ)
    cmid = store.settings()["cmid"]

    def check(lic: License) -> Problem | None:
        act = lic.activation or {}
        kind = act.get("kind")
        if kind == "mak":
            payload = act.get("licence") or {}
            why = verify_licence(payload, str(act.get("signature")), trusted)
            if why is None and (
                payload.get("cmid") != cmid
                or payload.get("sku_id") != lic.sku.sku_id
                or payload.get("key_last5") != lic.last5
            ):
                why = "the licence was issued for another machine or key"
        elif kind == "phone":
            why = _check_phone(store, lic, act, trusted)
        elif kind == "kms":
            from ospp.kmsclient import verify_stored

            why = verify_stored(act, lic, trusted)
        else:
            why = f"unknown activation kind {kind!r}"
        if why is not None:
            return Problem(E_UNTRUSTED, why)
        return hardware_problem(store, act)

    return check


def _check_phone(
    store: MachineStore, lic: License, act: dict[str, Any], trusted: dict[str, PublicBundle]
) -> str | None:
    try:
        iid = installation_id(store, lic, str(act.get("hardware")))
        r, s = parse_cid(str(act.get("cid")))
    except (OsppError, ValueError):
        return "the stored phone activation is damaged"
    if not any(b.verify_cid(iid.message(), r, s) for b in trusted.values()):
        return "the confirmation ID does not verify for this key and machine"
    return None


# -- the flows ----------------------------------------------------------------------------------


def activate_mak(store: MachineStore, lic: License, environ: Mapping[str, str]) -> None:
    """Online activation of one MAK licence; stores the verified licence or raises."""
    assert lic.product_key is not None
    trusted = _require_anchors(anchors(store.directory.parent.parent, environ))
    hw_hex, _ = _hardware_hex(store)
    cmid = store.settings()["cmid"]
    nonce = secrets.token_hex(16)
    response = call_authority(
        {
            "op": "activate",
            "key": lic.product_key,
            "sku_id": lic.sku.sku_id,
            "cmid": cmid,
            "hardware": hw_hex,
            "nonce": nonce,
            "client_time": iso(store.clock.now()),
        },
        environ,
        store.clock,
    )
    payload = response.get("licence")
    if not isinstance(payload, dict):
        raise LicensingError(E_UNTRUSTED, "the authority's answer holds no licence")
    why = verify_licence(payload, str(response.get("signature")), trusted)
    if why is None and (
        payload.get("nonce"),
        payload.get("cmid"),
        payload.get("hardware"),
        payload.get("sku_id"),
    ) != (nonce, cmid, hw_hex, lic.sku.sku_id):
        why = "the licence answers another request (nonce, machine, hardware or SKU differ)"
    if why is not None:
        raise LicensingError(E_UNTRUSTED, f"the activation was refused by this client: {why}")
    activation = seal(
        store,
        lic,
        {
            "kind": "mak",
            "licence": payload,
            "signature": response["signature"],
            "activated_at": iso(store.clock.now()),
        },
        environ,
    )
    with store.db.write() as conn:
        store.set_activation(conn, lic.sku, activation)
        store.bump(conn)


def apply_cid(store: MachineStore, lic: License, cid_text: str, environ: Mapping[str, str]) -> None:
    """Offline activation: verify the CID with the trusted public key(s) alone, then store it."""
    trusted = _require_anchors(anchors(store.directory.parent.parent, environ))
    r, s = parse_cid(cid_text)
    hw_hex, _ = _hardware_hex(store)
    iid = installation_id(store, lic, hw_hex)
    if not any(b.verify_cid(iid.message(), r, s) for b in trusted.values()):
        raise LicensingError(
            E_MISMATCH,
            "the confirmation ID does not match this installation ID (it was made for another "
            "installation ID, machine or key)",
            "Read the installation ID again with /dinstid and ask for a new confirmation ID.",
        )
    activation = seal(
        store,
        lic,
        {
            "kind": "phone",
            "cid": "".join(cid_text.split()).replace("-", ""),
            "hardware": hw_hex,
            "activated_at": iso(store.clock.now()),
        },
        environ,
    )
    with store.db.write() as conn:
        store.set_activation(conn, lic.sku, activation)
        store.bump(conn)
