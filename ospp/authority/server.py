"""``ospp center serve``: online activation and the phone centre over the ospp protocol.

Every field of a request from the network is checked here, before the authority sees it
(docs/PROTOCOL.md): a malformed one gets ``0x80070057`` naming the field.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ospp.authority.state import Authority
from ospp.core.errors import E_INVALID_ARG, OsppError, UsageError
from ospp.protocol import serving, wire

if TYPE_CHECKING:
    from ospp.authority.operations import Operations

# field: (required, longest). Every value is a string of printable characters (no control or
# format characters, no lone surrogates).
ACTIVATE_FIELDS = {
    "key": (True, 64),
    "sku_id": (False, 40),
    "cmid": (True, 40),
    "hardware": (True, 32),
    "nonce": (True, 64),
    "client_time": (False, 64),
    "host_key": (False, 64),
}
CONFIRM_FIELDS = {"iid": (True, 128)}


def checked(request: Mapping[str, Any], fields: Mapping[str, tuple[bool, int]]) -> dict[str, Any]:
    """The request with its fields checked; raise UsageError (0x80070057) naming a bad one."""
    for name, (required, longest) in fields.items():
        if name not in request and not required:
            continue
        value = request.get(name)
        if not isinstance(value, str) or not 0 < len(value) <= longest or not value.isprintable():
            raise UsageError(
                f"request field {name!r} is missing or malformed "
                f"(expected 1-{longest} printable characters)"
            )
    return dict(request)


def serve(
    authority: Authority,
    host: serving.Listen,
    port: int,
    ready: Callable[[str, int], None],
    ops: Operations | None = None,
) -> None:
    """Serve until SIGTERM or Ctrl+C; ``ready(shown_host, port)`` runs once listening.

    ``ops`` adds sd_notify, the operational log and the HTTP status side.
    """
    asyncio.run(_serve(authority, host, port, ready, ops))


async def _serve(
    authority: Authority,
    host: serving.Listen,
    port: int,
    ready: Callable[[str, int], None],
    ops: Operations | None = None,
) -> None:
    # A store that takes several threads (PostgreSQL) runs requests side by side, each waiting
    # on the database in its own thread; SQLite's one connection is used by the loop alone.
    workers = authority.store.threads
    pool = ThreadPoolExecutor(workers, "authority") if workers > 1 else None
    loop = asyncio.get_running_loop()

    async def run(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        return fn() if pool is None else await loop.run_in_executor(pool, fn)

    async def answer(request: dict[str, Any]) -> serving.Reply:
        op = request.get("op")
        if op == "activate":
            fields = checked(request, ACTIVATE_FIELDS)
            licence = await run(lambda: authority.activate(fields))
            return {"v": wire.VERSION, "ok": True, **licence}
        if op == "confirm":
            iid = checked(request, CONFIRM_FIELDS)["iid"]
            cid = await run(lambda: {"cid": authority.confirm(iid)})
            return {"v": wire.VERSION, "ok": True, **cid}
        return wire.error_response(E_INVALID_ARG, f"unknown op {wire.shown(op)}")

    async def handle(request: dict[str, Any]) -> serving.Reply:
        if ops is None:
            return await answer(request)
        try:
            reply = await answer(request)
        except OsppError as exc:
            ops.answered({"ok": False, "code": exc.code})
            raise
        ops.answered(reply if isinstance(reply, dict) else {"ok": True})
        return reply

    def listening(server: asyncio.Server) -> None:
        shown, bound = serving.bound_address(server)
        if ops is not None:
            ops.ready(shown, bound)
        ready(shown, bound)

    if ops is not None:
        await ops.open()
    try:
        await serving.serve_until_stopped(handle, host, port, listening)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    if ops is not None:
        await ops.close()
