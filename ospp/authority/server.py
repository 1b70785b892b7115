"""``ospp center serve``: online activation and the phone centre over the ospp protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ospp.authority.state import Authority
from ospp.core.errors import E_INVALID_ARG, OsppError
from ospp.protocol import wire

if TYPE_CHECKING:
    from ospp.authority.operations import Operations


def serve(
    authority: Authority,
    host: wire.Listen,
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
    host: wire.Listen,
    port: int,
    ready: Callable[[str, int], None],
    ops: Operations | None = None,
) -> None:
    def answer(request: dict[str, Any]) -> wire.Reply:
        op = request.get("op")
        if op == "activate":
            return {"v": wire.VERSION, "ok": True, **authority.activate(request)}
        if op == "confirm":
            return {"v": wire.VERSION, "ok": True, "cid": authority.confirm(str(request["iid"]))}
        return wire.error_response(E_INVALID_ARG, f"unknown op {op!r}")

    async def handle(request: dict[str, Any]) -> wire.Reply:
        if ops is None:
            return answer(request)
        try:
            reply = answer(request)
        except OsppError as exc:
            ops.answered({"ok": False, "code": exc.code})
            raise
        ops.answered(reply if isinstance(reply, dict) else {"ok": True})
        return reply

    def listening(server: asyncio.Server) -> None:
        shown, bound = wire.bound_address(server)
        if ops is not None:
            ops.ready(shown, bound)
        ready(shown, bound)

    if ops is not None:
        await ops.open()
    await wire.serve_until_stopped(handle, host, port, listening)
    if ops is not None:
        await ops.close()
