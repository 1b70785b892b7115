"""The activation wizard's steps that touch the store or the authority (the dialogue is in
``ospp.cli.wizard``).

The wizard changes the store once, at the end: a key typed into the wizard is installed in the
same transaction that stores its activation, so cancelling at any prompt leaves the store as it
was. Only "not now" installs the key alone (the product then stays unactivated and reminds).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ospp.core.catalog import Channel
from ospp.core.errors import (
    E_INVALID_KEY,
    E_MAK_LIMIT,
    E_SERVER_BLOCKED,
    E_SKU_NOT_FOUND,
    N_,
    LicensingError,
    OsppError,
)
from ospp.machine import activation, client
from ospp.machine.status import LICENSED
from ospp.machine.store import Licence, MachineStore
from ospp.protocol.phone import InstallationId

# The authority's answers after which the article warns "It is no longer possible to activate
# this product by telephone" (the person may still call).
PHONE_WARNING_CODES = frozenset({E_MAK_LIMIT, E_SERVER_BLOCKED})

CENTRES_FILE = Path(__file__).resolve().parent.parent / "core" / "data" / "phone_centres.json"


@dataclass(frozen=True)
class Centre:
    """A simulated activation centre: fictitious numbers, for rehearsal only."""

    code: str
    names: Mapping[str, str]  # language code -> country or region name
    phone: str
    tty: str | None

    def name(self, lang: str) -> str:
        return self.names.get(lang) or self.names["en"]


def centres() -> list[Centre]:
    raw: dict[str, Any] = json.loads(CENTRES_FILE.read_text(encoding="utf-8"))
    return [
        Centre(
            c["code"],
            {k[5:]: v for k, v in c.items() if k.startswith("name_")},
            c["phone"],
            c.get("tty"),
        )
        for c in raw["centres"]
    ]


@dataclass(frozen=True)
class Plan:
    """The licence the wizard activates, and the key to install with it (None: installed).
    ``found_key`` is the key the licence held when the plan was made: the wizard stores
    nothing if another command changed it meanwhile."""

    licence: Licence
    new_key: str | None = None
    found_key: str | None = None

    @property
    def sku(self) -> str:
        return self.licence.sku.sku_id


def products(store: MachineStore) -> list[str]:
    """The ids of the products installed on this machine."""
    return sorted({lic.sku.product.id for lic in store.licences()})


def pending(store: MachineStore, environ: Mapping[str, str]) -> Plan | None:
    """An installed MAK still waiting for activation, if any. (A KMS host key is activated
    with ``ospp kms``, a KMS client key by a KMS host.)"""
    for st in client.statuses(store, environ=environ):
        if st.licence.sku.channel is Channel.MAK and st.status != LICENSED:
            return Plan(st.licence, found_key=st.licence.product_key)
    return None


def activated(store: MachineStore, environ: Mapping[str, str]) -> list[Licence]:
    """MAK licences already activated."""
    return [
        st.licence
        for st in client.statuses(store, environ=environ)
        if st.licence.sku.channel is Channel.MAK and st.status == LICENSED
    ]


def plan_for_key(store: MachineStore, text: str) -> Plan:
    """Check a typed key without installing it: it must decode, be a MAK, and be for a product
    installed on this machine."""
    from ospp.protocol import keys

    key = keys.parse(text)
    if key.channel is not Channel.MAK:
        raise LicensingError(
            E_INVALID_KEY,
            N_(
                "the key ending {last5} is a {channel} key; the wizard activates a multiple "
                "activation key (MAK)",
                last5=key.last5,
                channel=key.channel.value,
            ),
            N_(
                "Type a MAK. A KMS client key is activated with /act, a KMS host key with ospp kms."
            ),
        )
    sku = key.product.sku(key.channel)
    found = next((lic for lic in store.licences() if lic.sku.sku_id == sku.sku_id), None)
    if found is None:
        raise LicensingError(
            E_SKU_NOT_FOUND,
            N_(
                "the key is for {product}, which is not installed on this machine",
                product=key.product.id,
            ),
            N_("Install it first: ospp install-product {product}", product=key.product.id),
        )
    return Plan(
        found._replace(product_key=key.compact, activation=None), key.compact, found.product_key
    )


def installation_id(store: MachineStore, plan: Plan) -> InstallationId:
    return activation.installation_id(store, plan.licence)


def _unchanged(store: MachineStore, conn: sqlite3.Connection | None, plan: Plan) -> None:
    """Refuse (0xC004F014) when another command changed the product's key while the wizard
    waited at a prompt: an activation stored beside another key reads as altered, and a typed
    key would replace, unseen, a key (and its activation) installed meanwhile."""
    store.require_key(
        conn,
        plan.licence.sku,
        plan.found_key,
        N_(
            "the product key of {product} was changed by another command while the "
            "wizard was waiting; nothing was stored",
            product=plan.licence.sku.product.id,
        ),
        N_("See what is installed now (ospp /dstatus), then run the wizard again."),
    )


def _commit(store: MachineStore, plan: Plan, act: dict[str, Any] | None) -> None:
    from ospp.protocol import keys

    with store.write() as conn:
        _unchanged(store, conn, plan)
        if plan.new_key is not None:
            store.install_key(conn, keys.parse(plan.new_key))
        if act is not None:
            store.set_activation(conn, plan.licence.sku, act)
        store.bump(conn)


def activate_online(store: MachineStore, plan: Plan, environ: Mapping[str, str]) -> None:
    """Activate via the Internet (the configured authority); stores key and activation. A
    failure is written to the activation-failure history (/dhistoryacterr), as /act writes it;
    the typed key is still not installed."""
    client.check_operation(store, environ)
    _unchanged(store, None, plan)  # changed while the wizard waited: the authority is not asked
    try:
        _commit(store, plan, activation.mak_activation(store, plan.licence, environ))
    except OsppError as exc:
        activation.record_failure(store, plan.licence, exc)
        raise


def activate_by_phone(
    store: MachineStore, plan: Plan, cid: str, environ: Mapping[str, str]
) -> None:
    """Activate with a confirmation ID read over the phone; stores key and activation."""
    client.check_operation(store, environ)
    _commit(store, plan, activation.cid_activation(store, plan.licence, cid, environ))


def install_only(store: MachineStore, plan: Plan) -> None:
    """'Not now': install a typed key and leave the product unactivated."""
    client.check_operation(store)
    if plan.new_key is not None:
        _commit(store, plan, None)
