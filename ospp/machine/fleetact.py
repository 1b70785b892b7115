"""Activating a fleet: every keyed product of every selected machine, as /act would.

KMS activations share one open connection per KMS host (a pool); MAK activations go to the
activation authority. Each store is opened, used and closed before the next, so a fleet of any
size holds one store open at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from ospp.core.catalog import Channel
from ospp.core.clock import Clock
from ospp.core.errors import OsppError
from ospp.machine import client
from ospp.machine.fleet import require
from ospp.machine.kmsclient import Pool
from ospp.machine.service import Action
from ospp.machine.store import MachineStore


def outcome(done: Action) -> str:
    """The name an action is counted under in a summary."""
    if done.action is None:
        return "nothing due"
    if done.error is None:
        return {"activate": "activated", "renew": "renewed"}.get(done.action, done.action)
    return f"failed 0x{done.error.code:08X}"


def close(pool: Pool) -> None:
    for conn in pool.values():
        conn.close()
    pool.clear()


def act(
    home: Path, glob: str | None, environ: Mapping[str, str], clock: Clock, pool: Pool
) -> Iterator[Action]:
    """Activate every keyed product on each machine matching ``glob``."""
    for name in require(home, glob):
        store = MachineStore.open(home, name, clock)
        try:
            yield from _act_one(store, environ, pool)
        finally:
            store.db.close()


def _act_one(store: MachineStore, environ: Mapping[str, str], pool: Pool) -> Iterator[Action]:
    from ospp.machine import activation, kmsclient

    for st in client.statuses(store, environ=environ):
        lic = st.license
        if lic.sku.channel is Channel.KMS_HOST:
            continue
        base = Action(store.name, lic.sku.product.id, st.status, "activate")
        try:
            if lic.sku.channel is Channel.MAK:
                activation.activate_mak(store, lic, environ)
                yield Action(base.machine, base.product, base.status, "activate", "authority")
            else:
                done = kmsclient.activate(store, lic, environ, st.status, pool)
                yield Action(
                    base.machine, base.product, base.status, "activate", done.host, done.count
                )
        except OsppError as exc:
            if lic.sku.channel is Channel.MAK:  # KMS attempts are recorded by the KMS client
                with store.db.write() as conn:
                    store.record(conn, "acterr", exc.code, exc.message, lic.sku)
            yield Action(base.machine, base.product, base.status, "activate", error=exc)
