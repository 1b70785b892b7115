"""Re-checking stored activations on every status read, cheaply.

An activation is verified with the authority's (or the KMS host's) public key when it arrives.
It is then sealed: an HMAC-SHA256 under a per-home key (``seal.key``, owner-only) over the
activation, the SKU, the installed key, the CMID and the fingerprints of the trusted
authorities. A status read checks the seal with the standard library alone; when it does not
match (the activation or the key was edited, the trust store changed, the store was copied
from elsewhere) the full signature verification runs again, and a failure shows 0xC004E003.
So ``/dstatus`` does not load ``cryptography`` for activations it has already verified.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ospp import hardware
from ospp.paths import center_home, write_atomic
from ospp.status import E_HARDWARE, Checker, Problem
from ospp.store import License, MachineStore

SEAL_FILE = "seal.key"


def anchor_files(home: Path, environ: Mapping[str, str]) -> list[Path]:
    """The trust anchors' files: <home>/trust/*.json, plus the local authority's public key
    file when no remote authority (OSPP_AUTHORITY) is configured."""
    trust = home / "trust"
    files = sorted(trust.glob("*.json")) if trust.is_dir() else []
    if not environ.get("OSPP_AUTHORITY"):
        files.insert(0, center_home(environ) / "authority.pub.json")
    return [f for f in files if f.exists()]


def trusted_fingerprints(home: Path, environ: Mapping[str, str]) -> list[str]:
    """Fingerprints of the trust anchors, computed as crypto.PublicBundle does."""
    found = set()
    for path in anchor_files(home, environ):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            raw = base64.b64decode(data["ed25519"], validate=True) + data["dsa"].encode("ascii")
        except (OSError, ValueError, KeyError, TypeError, binascii.Error):
            continue  # the full check reports an unreadable anchor
        found.add(hashlib.sha256(raw).hexdigest()[:16])
    return sorted(found)


def _seal_key(home: Path, create: bool) -> bytes | None:
    path = home / SEAL_FILE
    if not path.exists():
        if not create:
            return None
        write_atomic(path, secrets.token_hex(32), private=True)
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def _mac(
    key: bytes,
    lic_sku: str,
    product_key: str | None,
    cmid: str,
    fingerprints: list[str],
    activation: Mapping[str, Any],
) -> str:
    body = {k: v for k, v in activation.items() if k != "seal"}
    message = json.dumps(
        [lic_sku, product_key, cmid, fingerprints, body], sort_keys=True, separators=(",", ":")
    ).encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def seal(
    store: MachineStore, lic: License, activation: dict[str, Any], environ: Mapping[str, str]
) -> dict[str, Any]:
    """``activation`` with its seal, for an activation that was just verified."""
    home = store.directory.parent.parent
    key = _seal_key(home, create=True)
    assert key is not None
    mac = _mac(
        key,
        lic.sku.sku_id,
        lic.product_key,
        store.settings()["cmid"],
        trusted_fingerprints(home, environ),
        activation,
    )
    return {**activation, "seal": mac}


def bound_hardware(activation: Mapping[str, Any]) -> str | None:
    kind = activation.get("kind")
    if kind == "mak":
        return str((activation.get("licence") or {}).get("hardware", ""))
    if kind == "phone":
        return str(activation.get("hardware", ""))
    return None  # KMS activations are not bound to hardware


def hardware_problem(store: MachineStore, activation: Mapping[str, Any]) -> Problem | None:
    bound = bound_hardware(activation)
    if bound is None:
        return None
    hw = hardware.load(store.directory)
    current = hw.hash()
    try:
        stored = int(bound, 16)
    except ValueError:
        return Problem(0xC004E003, "the activation holds no valid hardware hash")
    if hardware.within_tolerance(stored, current, hw.dockable):
        return None
    path = store.directory / "hardware.json"
    since = hw.changed_at or datetime.fromtimestamp(path.stat().st_mtime, UTC)
    needed = hardware.NEEDED_DOCKABLE if hw.dockable else hardware.NEEDED
    return Problem(
        E_HARDWARE,
        f"the hardware changed beyond tolerance ({hardware.votes(stored, current)} of 12 votes "
        f"match, {needed} needed); reactivate",
        since=since,
    )


def make_checker(store: MachineStore, environ: Mapping[str, str]) -> Checker:
    home = store.directory.parent.parent
    key = _seal_key(home, create=False)
    cmid = store.settings()["cmid"]
    fingerprints = trusted_fingerprints(home, environ)
    full: list[Checker] = []

    def check(lic: License) -> Problem | None:
        act = lic.activation or {}
        given = act.get("seal")
        if (
            key is not None
            and isinstance(given, str)
            and hmac.compare_digest(
                given, _mac(key, lic.sku.sku_id, lic.product_key, cmid, fingerprints, act)
            )
        ):
            return hardware_problem(store, act)
        if not full:
            from ospp.activation import full_checker  # loads cryptography

            full.append(full_checker(store, environ))
        return full[0](lic)

    return check
