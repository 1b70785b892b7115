"""The licensing service of a simulated machine: what it would do now, and doing it.

Unactivated KMS products are retried every activation interval; activated ones renew every
renewal interval, and a failed renewal is retried every activation interval (both intervals
adopted from the KMS host). ``ospp service`` runs one pass at the
simulated time; :func:`run` yields one :class:`Action` per KMS licence it looked at.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ospp.core.catalog import Channel
from ospp.core.errors import OsppError
from ospp.core.paths import StrPath
from ospp.machine.status import LICENSED
from ospp.machine.store import Licence, MachineStore

if TYPE_CHECKING:
    from ospp.machine.kmspool import Pool


# The action of a machine whose store could not be read: its error says why.
READ = "read"


@dataclass(frozen=True)
class Action:
    """What the service did (or found not due) for one licence of one machine."""

    machine: str
    product: str | None  # None when the machine's store could not be read (READ)
    status: str
    action: str | None  # "activate", "renew", READ, or None (nothing due)
    host: str | None = None
    count: int | None = None
    error: OsppError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def due(
    lic: Licence,
    status: str,
    now: datetime,
    settings: Mapping[str, str],
    last_attempt: datetime | None,
    last_failure: datetime | None = None,
) -> str | None:
    """What the licensing service would do for ``lic`` now: 'activate', 'renew' or None.

    ``last_attempt``, ``last_failure``: when the last KMS request for it was made, and the last
    that failed. A renewal that failed is tried again every activation interval, as an
    activation is, not at every pass."""
    if lic.sku.channel is not Channel.KMS_CLIENT or not lic.product_key:
        return None
    act = lic.activation or {}
    if status == LICENSED and act.get("kind") == "kms":
        activated = datetime.fromisoformat(str(act["activated_at"]).replace("Z", "+00:00"))
        if not _reached(now, activated, settings["renewal_interval"]):
            return None
        if (
            last_failure is not None
            and last_failure > activated
            and not _reached(now, last_failure, settings["activation_interval"])
        ):
            return None
        return "renew"
    if last_attempt is None:
        return "activate"
    return "activate" if _reached(now, last_attempt, settings["activation_interval"]) else None


def _reached(now: datetime, since: datetime, minutes: str) -> bool:
    """Whether ``minutes`` have passed since ``since``. An interval edited into the store
    that would end after the last time datetime holds (a lab clock near the year 9999) has
    not passed: it is never due, rather than an internal error."""
    try:
        return now >= since + timedelta(minutes=int(minutes))
    except OverflowError:
        return False


def machine_names(home: StrPath) -> list[str]:
    """Every simulated machine under ``home`` (a directory with a machine's name holding a
    store), sorted."""
    from ospp.machine.fleet import names

    return names(home)


def run(
    names: Iterable[str | None],
    environ: Mapping[str, str],
    pool: Pool | None = None,
) -> Iterator[Action]:
    """One pass of the licensing service over the named machines (None: this machine).

    Each store is closed before the next opens; a ``pool`` keeps one connection per KMS host.
    """
    from ospp.core.clock import clock_from_env
    from ospp.machine import client

    clock = clock_from_env(environ)
    for name in names:
        store = client.open_machine(name, environ, clock)
        try:
            yield from run_one(store, environ, pool)
        finally:
            store.db.close()


def run_one(store: MachineStore, environ: Mapping[str, str], pool: Pool | None) -> Iterator[Action]:
    from ospp.machine import client, kmsclient

    now = store.clock.now()
    settings = store.settings()
    history = store.history("kms")
    for st in client.statuses(store, environ=environ):
        if pool is not None and pool.closed:  # the pass was stopped: no request more
            return
        lic = st.licence
        attempts = [h for h in history if h.sku_id == lic.sku.sku_id]
        last = max((h.at for h in attempts), default=None)
        failed = max((h.at for h in attempts if h.code != 0), default=None)
        action = due(lic, st.status, now, settings, last, failed)
        base = Action(store.name, lic.sku.product.id, st.status, action)
        if action is None:
            if lic.sku.channel is Channel.KMS_CLIENT:
                yield base
            continue
        try:
            outcome = kmsclient.activate(store, lic, environ, st.status, pool)
        except OsppError as exc:
            yield Action(base.machine, base.product, base.status, action, error=exc)
        else:
            yield Action(
                base.machine, base.product, base.status, action, outcome.host, outcome.count
            )
