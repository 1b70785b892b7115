"""``ospp center serve``: online activation and the phone centre over the ospp protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ospp.authority.state import Authority
from ospp.core.errors import E_INVALID_ARG
from ospp.protocol import wire


def serve(authority: Authority, host: str, port: int, ready: Callable[[str, int], None]) -> None:
    """Serve until SIGTERM or Ctrl+C; ``ready(shown_host, port)`` runs once listening."""
    asyncio.run(_serve(authority, host, port, ready))


async def _serve(
    authority: Authority, host: str, port: int, ready: Callable[[str, int], None]
) -> None:
    async def handle(request: dict[str, Any]) -> wire.Reply:
        op = request.get("op")
        if op == "activate":
            return {"v": wire.VERSION, "ok": True, **authority.activate(request)}
        if op == "confirm":
            return {"v": wire.VERSION, "ok": True, "cid": authority.confirm(str(request["iid"]))}
        return wire.error_response(E_INVALID_ARG, f"unknown op {wire.shown(op)}")

    def listening(server: asyncio.Server) -> None:
        shown, bound = wire.bound_address(server)
        ready(shown, bound)

    await wire.serve_until_stopped(handle, host, port, listening)
