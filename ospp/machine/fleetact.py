"""Activating a fleet: every keyed product of every selected machine, as /act would.

Machines are handled by a few worker threads (``workers.parallel``), which share one open
connection per KMS host. MAK activations go to the activation authority. Each store is opened,
used and closed by one worker, so a fleet of any size holds a handful of stores open.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from ospp.core.catalog import Channel
from ospp.core.clock import Clock
from ospp.core.errors import OsppError
from ospp.core.paths import StrPath, ospp_home
from ospp.machine import client
from ospp.machine.fleet import removed, require
from ospp.machine.kmspool import NotTried, Pool
from ospp.machine.service import READ, Action
from ospp.machine.store import MachineStore, NoMachine
from ospp.machine.workers import parallel


def not_tried_error(error: BaseException | None) -> bool:
    """Whether a failure is a request not sent (its host stopped answering earlier)."""
    return isinstance(error, NotTried)


def not_tried(done: Action) -> bool:
    return not_tried_error(done.error)


def outcome(done: Action) -> str:
    """The name an action is counted under in a summary."""
    if done.action is None:
        return "nothing due"
    if done.error is None:
        return {"activate": "activated", "renew": "renewed"}.get(done.action, done.action)
    if isinstance(done.error, NotTried):  # its host did not answer earlier in the pass
        return f"not tried 0x{done.error.code:08X}"
    return f"failed 0x{done.error.code:08X}"


class Pools:
    """The connections of a fleet operation: one per KMS host, shared by the worker threads."""

    def __init__(self) -> None:
        self._pool = Pool()

    def get(self) -> Pool:
        return self._pool

    def close(self) -> None:
        self._pool.close()


def prepare(home: StrPath) -> None:
    """Create what every store shares before the threads start (the seal key)."""
    from ospp.machine.seal import require_key

    require_key(home)


def act(
    home: StrPath, glob: str | None, environ: Mapping[str, str], clock: Clock, pools: Pools
) -> Iterator[Action]:
    """Activate every keyed product on each machine matching ``glob``."""
    prepare(home)

    def one(name: str) -> Iterator[Action]:
        try:
            store = MachineStore.open(home, name, clock)
        except NoMachine:
            return  # a directory that holds no machine, or one removed meanwhile
        except OsppError as exc:
            if not removed(home, name):
                yield Action(name, "", "", "activate", error=exc)
            return
        try:
            for done in _act_one(store, environ, pools.get()):
                if done.error is not None and removed(home, name):
                    return  # removed meanwhile: passed over, as one removed before
                yield done
        except OsppError:
            if not removed(home, name):
                raise
        finally:
            store.db.close()

    yield from parallel(require(home, glob), one, stopping=pools.close)


def _act_one(store: MachineStore, environ: Mapping[str, str], pool: Pool) -> Iterator[Action]:
    from ospp.machine import activation, kmsclient

    for st in client.statuses(store, environ=environ):
        if pool.closed:  # the pass was stopped: no request more, to any server
            return
        lic = st.licence
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
                activation.record_failure(store, lic, exc)
            yield Action(base.machine, base.product, base.status, "activate", error=exc)


def service(
    names: list[str | None],
    environ: Mapping[str, str],
    pools: Pools,
    ordered: bool = False,
    listed: bool = False,
) -> Iterator[Action]:
    """``ospp service`` over many machines, in worker threads (results in any order, or in the
    order of ``names`` when ``ordered``). ``listed``: the names come from the list of machines
    (``--all``), so one removed since (``fleet remove``) is passed over, as the fleet commands
    do; a machine named on the command line that does not exist is an error."""
    from ospp.core.clock import clock_from_env
    from ospp.machine.service import run_one

    clock = clock_from_env(environ)
    home = ospp_home(environ)
    prepare(home)

    def one(name: str | None) -> Iterator[Action]:
        try:
            store = client.open_machine(name, environ, clock)
        except NoMachine:
            if listed:
                return
            raise
        except OsppError as exc:  # a store that cannot be read
            if not listed:
                raise
            if removed(home, str(name)):
                return  # removed meanwhile, as above
            # one machine of many: reported with the others', the pass goes on
            yield Action(str(name), None, "ERROR", READ, error=exc)
            return
        try:
            for done in run_one(store, environ, pools.get()):
                if listed and done.error is not None and removed(home, str(name)):
                    return  # removed meanwhile: passed over, as one removed before
                yield done
        except OsppError:
            if not (listed and removed(home, str(name))):
                raise
        finally:
            store.db.close()

    yield from parallel(names, one, ordered=ordered, stopping=pools.close)
