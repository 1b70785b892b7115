"""The changes commands make to the licences of a machine's licence store: a product's licences
installed, a key installed or removed, an activation recorded, the grace period restarted.

Functions on a connection inside ``MachineStore.write()`` (ospp.machine.store), whose methods
of the same names call them, importing this module only then: a command that only reads the
store (/dstatus) does without it.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from ospp.core.catalog import Channel, Product, Sku
from ospp.core.clock import Clock, iso

if TYPE_CHECKING:
    from ospp.protocol.keys import ProductKey


def ensure_product(conn: sqlite3.Connection, product: Product, clock: Clock) -> list[Sku]:
    """Install the licences of a volume product (all its channels); keep existing ones."""
    now = iso(clock.now())
    added = []
    for channel in (Channel.KMS_CLIENT, Channel.MAK):
        sku = product.sku(channel)
        cur = conn.execute(
            "INSERT OR IGNORE INTO licenses (sku_id, product_id, channel, installed_at, "
            "grace_start) VALUES (?, ?, ?, ?, ?)",
            (sku.sku_id, product.id, channel.value, now, now),
        )
        if cur.rowcount:
            added.append(sku)
    return added


def install_key(conn: sqlite3.Connection, key: ProductKey, clock: Clock) -> Sku:
    """Install ``key``: it replaces whatever key the product had, in any channel."""
    ensure_product(conn, key.product, clock)
    sku = key.product.sku(key.channel)
    now = iso(clock.now())
    if key.channel is Channel.KMS_HOST:
        conn.execute(
            "INSERT OR IGNORE INTO licenses (sku_id, product_id, channel, installed_at, "
            "grace_start) VALUES (?, ?, ?, ?, ?)",
            (sku.sku_id, key.product.id, key.channel.value, now, now),
        )
    conn.execute(
        "UPDATE licenses SET product_key=NULL, key_installed_at=NULL, activation=NULL "
        "WHERE product_id=? AND sku_id<>?",
        (key.product.id, sku.sku_id),
    )
    conn.execute(
        "UPDATE licenses SET product_key=?, key_installed_at=?, activation=NULL WHERE sku_id=?",
        (key.compact, now, sku.sku_id),
    )
    return sku


def clear_key(conn: sqlite3.Connection, sku: Sku) -> None:
    """Remove the key (and so the activation) of one licence."""
    conn.execute(
        "UPDATE licenses SET product_key=NULL, key_installed_at=NULL, activation=NULL "
        "WHERE sku_id=?",
        (sku.sku_id,),
    )


def set_activation(conn: sqlite3.Connection, sku: Sku, activation: dict[str, Any] | None) -> None:
    """Record a licence's activation (None: none), as JSON with its keys sorted."""
    import json

    conn.execute(
        "UPDATE licenses SET activation=? WHERE sku_id=?",
        (json.dumps(activation, sort_keys=True) if activation else None, sku.sku_id),
    )


def restart_grace(conn: sqlite3.Connection, sku: Sku, clock: Clock) -> None:
    """Start a licence's grace period again, now (/rearm)."""
    conn.execute("UPDATE licenses SET grace_start=? WHERE sku_id=?", (iso(clock.now()), sku.sku_id))
