"""``ospp center serve``: online activation and the phone centre over the ospp protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
    # A store that takes several threads (PostgreSQL) runs requests side by side, each waiting
    # on the database in its own thread; SQLite's one connection is used by the loop alone.
    workers = authority.store.threads
    pool = ThreadPoolExecutor(workers, "authority") if workers > 1 else None
    loop = asyncio.get_running_loop()

    async def run(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        return fn() if pool is None else await loop.run_in_executor(pool, fn)

    async def handle(request: dict[str, Any]) -> wire.Reply:
        op = request.get("op")
        if op == "activate":
            licence = await run(lambda: authority.activate(request))
            return {"v": wire.VERSION, "ok": True, **licence}
        if op == "confirm":
            iid = str(request["iid"])
            answer = await run(lambda: {"cid": authority.confirm(iid)})
            return {"v": wire.VERSION, "ok": True, **answer}
        return wire.error_response(E_INVALID_ARG, f"unknown op {op!r}")

    def listening(server: asyncio.Server) -> None:
        shown, bound = wire.bound_address(server)
        ready(shown, bound)

    try:
        await wire.serve_until_stopped(handle, host, port, listening)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
